"""Negative event weights (every NLO sample has them) through the distances, calibration, classifier test
and ``lvd evaluate``: exact where a pair of opposite weights must cancel, a clear refusal where a quantity
is undefined."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lvd import physics
from lvd.errors import DataError
from lvd.evaluation import calibration as cal
from lvd.evaluation import metrics as mt
from lvd.evaluation.c2st import c2st


def test_distances_equal_scipy_for_positive_weights():
    rng = np.random.default_rng(0)
    u, v = rng.normal(0, 1, 700), rng.normal(0.4, 1.3, 500)
    wu, wv = rng.uniform(0.1, 2, 700), rng.uniform(0.1, 2, 500)
    assert mt.wasserstein(u, v, wu, wv) == pytest.approx(stats.wasserstein_distance(u, v, wu, wv), rel=1e-12)
    assert mt.energy(u, v, wu, wv) == pytest.approx(stats.energy_distance(u, v, wu, wv), rel=1e-12)


def test_cancelling_weights_leave_every_distance_unchanged():
    """Events a, b and an event c counted once with +w and once with −w: the same distribution as a, b."""
    rng = np.random.default_rng(1)
    u, v = rng.normal(0, 1, 300), rng.normal(0.3, 1, 400)
    wu = rng.uniform(0.5, 1.5, 300)
    extra = rng.normal(2, 1, 50)
    w_extra = rng.uniform(0.5, 1.5, 50)
    u2 = np.concatenate([u, extra, extra])
    wu2 = np.concatenate([wu, w_extra, -w_extra])
    edges = np.linspace(-3, 4, 15)
    for fn in (mt.wasserstein, mt.energy, mt.ks, mt.binned(mt.js_divergence, edges)):
        assert fn(u2, v, wu2, None) == pytest.approx(fn(u, v, wu, None), rel=1e-9, abs=1e-12)


def test_undefined_quantities():
    p = np.array([0.6, 0.5, -0.1])
    q = np.array([0.3, 0.3, 0.4])
    assert np.isnan(mt.kl_divergence(p, q)) and np.isnan(mt.js_divergence(q, p))
    with pytest.raises(DataError, match="sum to"):
        mt.wasserstein(np.array([1.0, 2.0]), np.array([1.0]), np.array([1.0, -2.0]), None)
    with pytest.raises(DataError, match="positive total"):
        cal.coverage(np.array([0, 1, 2]), 3, 0.68, np.array([-1.0, -1.0, 1.0]))
    x = np.zeros((4, 2))
    with pytest.raises(DataError, match="positive total"):
        c2st(x, x, -np.ones(4), np.ones(4), steps=2, n_boot=2)


def test_calibration_with_cancelling_pairs():
    rng = np.random.default_rng(2)
    k = 8
    ranks = rng.integers(0, k + 1, 1000)
    w = rng.uniform(0.5, 1.5, 1000)
    extra = rng.integers(0, k + 1, 80)
    w_extra = rng.uniform(0.5, 1.5, 80)
    r2, w2 = np.concatenate([ranks, extra, extra]), np.concatenate([w, w_extra, -w_extra])
    assert cal.coverage(r2, k, 0.68, w2)["coverage"] == pytest.approx(cal.coverage(ranks, k, 0.68, w)["coverage"])
    np.testing.assert_allclose(cal.rank_histogram(r2, k, w2), cal.rank_histogram(ranks, k, w), atol=1e-12)


def test_c2st_runs_with_negative_weights():
    rng = np.random.default_rng(3)
    n = 600
    a, b = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    w = np.where(rng.random(n) < 0.1, -1.0, 1.0)
    r = c2st(a, b, w, w, steps=50, n_boot=20)
    assert 0.0 < r["auc"] < 1.0 and np.isfinite(r["error"])


def test_evaluate_a_file_with_ten_percent_negative_weights(tiny_file, tmp_path, run_cli):
    from lvd.data.schema import read_events, write_events

    data = read_events(tiny_file, require_truth=True).take(slice(0, 400))
    rng = np.random.default_rng(5)
    k = 4
    data.unfolded = {p: {f: (np.repeat(v[:, None], k, 1) * (1 + 0.05 * rng.normal(size=(len(v), k)))).astype(np.float32)
                         if f == "pt" else np.repeat(v[:, None], k, 1) for f, v in data.truth[p].items() if f != "pdgid"}
                     for p in physics.DECAY_PRODUCTS}
    data.weights = np.where(rng.random(data.n_events) < 0.1, -1.0, 1.0).astype(np.float32)
    write_events(tmp_path / "neg.h5", data)
    code, _, err = run_cli("evaluate", tmp_path / "neg.h5", "-o", tmp_path / "rep", "--bootstrap", "2",
                           "--plots", "none", "--c2st-steps", "20")
    assert code == 0, err
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["source"]["negative_weights"] == int((data.weights < 0).sum()) > 0
    w1 = m["observables"]["m_t_had"]["distances"]["unfolded"]["wasserstein"]["value"]
    assert np.isfinite(w1) and w1 >= 0
    assert "negative weights" in (tmp_path / "rep" / "report.md").read_text()

    data.weights = -np.abs(data.weights)
    write_events(tmp_path / "all_negative.h5", data)
    code, _, err = run_cli("evaluate", tmp_path / "all_negative.h5", "-o", tmp_path / "rep2")
    assert code == 2 and "sum to" in err and err.strip().count("\n") == 0
