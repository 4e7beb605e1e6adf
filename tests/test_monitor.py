"""Physics while training: the monitor's metrics against their definitions, and their place in metrics.csv."""

import csv

import jax
import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from tolerance import tolerance

from lvd import physics
from lvd.data.schema import read_events
from lvd.training.loop import train
from lvd.training.monitor import physics_metrics, physics_monitor


@pytest.fixture(scope="module")
def truth(tiny_file):
    return physics.daughters_on_shell(read_events(tiny_file, require_truth=True).truth_p4()[:500])  # [n, 6, 4]


def test_metrics_are_their_definitions(truth):
    rng = np.random.default_rng(0)
    k = 3
    # samples: the truth with every momentum scaled by a random factor per sample (masses move with it)
    scale = 1 + 0.02 * rng.normal(size=(len(truth), k, 1, 1))
    unfolded = physics.daughters_on_shell(np.repeat(truth[:, None], k, 1) * scale)
    got = jax.device_get(jax.jit(physics_metrics)(unfolded.astype(np.float32), truth.astype(np.float32)))
    m_u, m_t = physics.mass(physics.resonances(unfolded)), physics.mass(physics.resonances(truth))
    for i, name in enumerate(physics.RESONANCES):
        assert got[f"w1_m_{name}"] == pytest.approx(wasserstein_distance(m_u[..., i].ravel(), m_t[:, i]), rel=1e-3)
    assert got["w1_nu_pz"] == pytest.approx(wasserstein_distance(unfolded[..., 2, 2].ravel(), truth[:, 2, 2]),
                                            rel=1e-3)
    t_had = physics.RESONANCES.index("t_had")
    # a float32 mean of 0/1 flags: one rounding of the fraction (measured 3.4e-8); the nearest float32 mass is 17x
    # its round-off (6e-3 GeV) away from the window's edge, so no flag flips
    assert got["in_window_t_had"] == pytest.approx(np.mean(np.abs(m_u[..., t_had] - 172.5) < 15),
                                                   abs=tolerance(np.float32, ops=1))
    inside = m_t[:, t_had][np.abs(m_t[:, t_had] - 172.5) < 30]
    assert got["width_t_had_truth"] == pytest.approx(np.subtract(*np.quantile(inside, [0.84, 0.16])) / 2, rel=1e-3)
    # the truth against itself is at distance 0; a shift of the neutrino pz is seen exactly
    same = jax.device_get(physics_metrics(np.repeat(truth[:, None], 2, 1), truth))
    assert all(same[f"w1_m_{n}"] < 1e-6 for n in physics.RESONANCES)
    shifted = np.repeat(truth[:, None], 2, 1).copy()
    shifted[..., 2, 2] += 5.0
    assert float(physics_metrics(shifted, truth)["w1_nu_pz"]) == pytest.approx(5.0, rel=1e-6)


def test_training_logs_physics_next_to_the_losses(tiny_options, tiny_file, tmp_path):
    opts = tiny_options("train.physics_events=64", "train.physics_samples=2", "train.validate_every=5")
    r = train(opts, tiny_file, runs_dir=tmp_path, hooks=physics_monitor(opts))
    rows = [h for h in r.history if h["split"] == "physics"]
    assert [h["step"] for h in rows] == [5, 10]
    for h in rows:
        assert all(np.isfinite(h[k]) for k in ("w1_m_t_had", "w1_m_W_lep", "w1_nu_pz", "width_t_had"))
        assert 0 <= h["in_window_t_had"] <= 1 and h["in_window_t_had_truth"] > 0.9
    with open(r.run_dir / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert {"loss", "w1_m_t_had", "in_window_t_had"} <= set(table[0])  # one file, a header wide enough for both
    assert [row["split"] for row in table if row["w1_m_t_had"]] == ["physics", "physics"]
    assert physics_monitor(tiny_options("train.physics_events=0")) == []
