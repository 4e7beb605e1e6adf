"""Generated top masses: the width rule, the toy at a fixed mass and over a range, the GENERATOR group through
files, merge and take, and the command-line options (the Pythia side is in test_pythia.py)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from scipy import stats
from tolerance import tolerance

from lvd import physics
from lvd.data.generate import toy
from lvd.data.generate.top_mass import G_F, TopMass, lo_top_width, top_width
from lvd.data.schema import concatenate, read_events, write_events
from lvd.errors import DataError, LvdError

RANGE = (169.0, 176.0)


def truth_top_masses(data) -> np.ndarray:
    """``[N, 2]`` masses of (t_lep, t_had) rebuilt from the six decay products."""
    res = physics.mass(physics.resonances(data.truth_p4()))
    return res[:, [physics.RESONANCES.index("t_lep"), physics.RESONANCES.index("t_had")]]


def median_tolerance(x: np.ndarray) -> float:
    """Allowed distance of the median of Breit–Wigner distributed ``x [n]`` from the pole mass.

    Five standard errors of the median, π·IQR/(4√n) (exact for a Cauchy, whose IQR is its full width), plus
    0.03 GeV: the tops' lineshape is the Breit–Wigner times the falling parton luminosity, which moves the
    median by 0.75·k·Γ² for a logarithmic slope k (about −1.3 %/GeV per top here, i.e. −0.017 GeV); 0.03 GeV
    allows |k| up to 2.3 %/GeV.
    """
    q25, q75 = np.quantile(x, [0.25, 0.75])
    return 5.0 * np.pi * (q75 - q25) / (4.0 * np.sqrt(x.size)) + 0.03


@pytest.fixture(scope="module")
def range_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("range") / "range.h5"
    toy.generate_file(path, 5000, seed=3, cfg=toy.ToyConfig(top=TopMass(mass_range=RANGE)))
    return path


# --- the width rule ------------------------------------------------------------------------------

def test_width_rule_is_the_lo_width_scaled_to_1_32_gev_at_172_5():
    assert top_width(physics.M_TOP) == pytest.approx(physics.GAMMA_TOP, rel=1e-12)
    m = np.array([150.0, 169.0, 172.5, 176.0, 250.0])
    x = (physics.M_W / m) ** 2
    lo = G_F * m**3 / (8 * np.pi * np.sqrt(2)) * (1 - x) ** 2 * (1 + 2 * x)
    np.testing.assert_allclose(lo_top_width(m), lo, rtol=1e-12)
    np.testing.assert_allclose(top_width(m) / top_width(physics.M_TOP), lo / lo[2], rtol=1e-12)
    # the closed form's limits: no width at the W threshold (massless b), Γ ∝ m³ far above it
    assert lo_top_width(physics.M_W) == 0.0
    assert lo_top_width(2e5) / lo_top_width(1e5) == pytest.approx(8.0, rel=1e-6)
    # a fixed width is used at every mass
    np.testing.assert_array_equal(TopMass(width=2.0).width_at(m), 2.0)


# --- the toy at one mass -------------------------------------------------------------------------

@pytest.mark.parametrize("mass", [physics.M_TOP, 175.0])
def test_toy_truth_top_mass_is_at_the_chosen_mass(mass, toy_file, tmp_path):
    if mass == physics.M_TOP:
        data = read_events(toy_file)  # the default generator: 20k events
    else:
        toy.generate_file(tmp_path / "m.h5", 5000, seed=4, cfg=toy.ToyConfig(top=TopMass(mass)))
        data = read_events(tmp_path / "m.h5")
    m = truth_top_masses(data).ravel()
    assert abs(np.median(m) - mass) < median_tolerance(m)
    # a Breit–Wigner's interquartile range is its full width (the ±10 Γ truncation narrows it by ~6 %)
    q25, q75 = np.quantile(m, [0.25, 0.75])
    assert q75 - q25 == pytest.approx(top_width(mass), rel=0.12)
    np.testing.assert_array_equal(data.generator["top_mass"], np.float32(mass))
    np.testing.assert_array_equal(data.generator["top_width"], np.float32(top_width(mass)))
    assert data.attrs["top_mass"] == mass and "top_mass_range" not in data.attrs
    assert "LO SM" in data.attrs["top_width_rule"]


# --- the toy over a range ------------------------------------------------------------------------

def test_range_unweighting_makes_the_generated_masses_uniform():
    """Accepted hard processes (every generated event, before the detector) are uniform in the top mass;
    without dividing by σ(m_t) they would not be (σ falls by ~3 %/GeV)."""
    gen = toy.ToyGenerator(toy.ToyConfig(top=TopMass(mass_range=RANGE)), seed=8)
    uniform = stats.uniform(RANGE[0], RANGE[1] - RANGE[0]).cdf
    flat, raw = [], []
    for chunk in range(3):
        rng = gen._rng(chunk)
        prop = gen.hard.propose(rng, 100_000)
        w = gen.hard.weight(prop)
        u = rng.random(w.shape) * gen.w_max
        flat.append(prop["m_top"][u < gen.unweighting_weight(prop, w)])
        raw.append(prop["m_top"][u < w])
    flat, raw = np.concatenate(flat), np.concatenate(raw)
    assert len(flat) > 50_000
    assert stats.kstest(flat, uniform).pvalue > 1e-3
    assert stats.kstest(raw, uniform).pvalue < 1e-6
    assert np.mean(raw < np.mean(RANGE)) > 0.5  # lighter tops are produced more often


def test_range_file_stores_uniform_masses_that_the_truth_follows(range_file):
    data = read_events(range_file)
    m_gen, w_gen = data.generator["top_mass"], data.generator["top_width"]
    assert m_gen.shape == w_gen.shape == (data.n_events,)
    assert RANGE[0] <= m_gen.min() and m_gen.max() <= RANGE[1]
    # uniform among the selected events too: the selection efficiency rises by ~0.6 %/GeV with m_t, which
    # moves the CDF by at most 7 · 0.006 / 8 = 0.005, a quarter of the KS test's critical distance here (0.019)
    assert stats.kstest(m_gen, stats.uniform(RANGE[0], RANGE[1] - RANGE[0]).cdf).pvalue > 1e-3
    # the stored mass is rounded by ε/2, which Γ ∝ ~m^3.5 makes 1.75 ε, plus the width's own ε/2 (measured 1.7 ε)
    np.testing.assert_allclose(w_gen, top_width(m_gen.astype(np.float64)), rtol=tolerance(np.float32, ops=3))
    # event by event, the truth tops sit at the stored mass: their difference is a Breit–Wigner around 0
    diff = (truth_top_masses(data) - m_gen[:, None]).ravel()
    assert abs(np.median(diff)) < median_tolerance(diff)
    # ... and the stored mass explains the spread of the truth masses (slope 1 between the halves)
    m = truth_top_masses(data).mean(1)
    low = m_gen < np.median(m_gen)
    slope = (np.median(m[~low]) - np.median(m[low])) / (np.median(m_gen[~low]) - np.median(m_gen[low]))
    assert slope == pytest.approx(1.0, abs=0.05)
    assert data.attrs["top_mass_range"] == list(RANGE) and "top_mass" not in data.attrs


def _datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_range_same_seed_same_file(range_file, tmp_path):
    cfg = toy.ToyConfig(top=TopMass(mass_range=RANGE))
    toy.generate_file(tmp_path / "again.h5", 5000, seed=3, cfg=cfg)
    toy.generate_file(tmp_path / "other.h5", 5000, seed=4, cfg=cfg)
    first, again, other = (_datasets(p) for p in (range_file, tmp_path / "again.h5", tmp_path / "other.h5"))
    assert first.keys() == again.keys() and "GENERATOR/top_mass" in first
    for k in first:
        assert first[k].tobytes() == again[k].tobytes(), k
    assert not np.array_equal(first["GENERATOR/top_mass"], other["GENERATOR/top_mass"])


# --- the GENERATOR group through files, take, concatenate and merge ----------------------------------

def test_generator_group_round_trips_through_take_rows_and_merge(tmp_path, run_cli):
    a, b, merged = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "merged.h5"
    toy.generate_file(a, 300, seed=1)
    toy.generate_file(b, 200, seed=2, cfg=toy.ToyConfig(top=TopMass(175.0, width=1.5)))
    da, db = read_events(a), read_events(b)
    code, _, err = run_cli("merge", merged, a, b)
    assert code == 0, err
    dm = read_events(merged)
    for k in ("top_mass", "top_width"):
        np.testing.assert_array_equal(dm.generator[k], np.concatenate([da.generator[k], db.generator[k]]))
        np.testing.assert_array_equal(concatenate([da, db]).generator[k], dm.generator[k])
    np.testing.assert_array_equal(dm.generator["top_width"][300:], np.float32(1.5))
    # the merged file records the span of its inputs' masses, and each input's settings
    assert "top_mass" not in dm.attrs and dm.attrs["top_mass_range"] == [172.5, 175.0]
    assert [s["top_mass"] for s in dm.attrs["merged_from"]] == [172.5, 175.0]
    assert dm.attrs["top_width_rule"] == "differs between inputs: see merged_from"
    # a subset keeps each event's values, in memory and when read in part
    index = np.array([400, 3, 299, 300])
    np.testing.assert_array_equal(dm.take(index).generator["top_mass"], dm.generator["top_mass"][index])
    part = read_events(merged, rows=slice(290, 310))
    np.testing.assert_array_equal(part.generator["top_mass"], dm.generator["top_mass"][290:310])
    # files of one setting keep it
    code, _, err = run_cli("merge", tmp_path / "aa.h5", a, a)
    assert code == 0, err
    assert read_events(tmp_path / "aa.h5").attrs["top_mass"] == 172.5


def test_generator_group_is_optional_and_validated(tmp_path):
    path = tmp_path / "g.h5"
    toy.generate_file(path, 100, seed=1)
    data = read_events(path)
    write_events(tmp_path / "none.h5", dataclasses.replace(data, generator=None))
    assert read_events(tmp_path / "none.h5").generator is None
    with pytest.raises(DataError, match="datasets differ"):
        concatenate([data, read_events(tmp_path / "none.h5")])
    for name, event, value, message in (("top_mass", 3, 0.0, "not positive at event 3"),
                                        ("top_width", 7, -1.0, "not positive at event 7"),
                                        ("top_mass", 2, np.nan, "NaN/inf at event 2")):
        bad = {k: v.copy() for k, v in data.generator.items()}
        bad[name][event] = value
        write_events(tmp_path / "bad.h5", dataclasses.replace(data, generator=bad))
        with pytest.raises(DataError, match=f"GENERATOR/{name}.*{message}"):
            read_events(tmp_path / "bad.h5")


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("generator", ["toy", "pythia"])
@pytest.mark.parametrize("options, message", [
    (("--top-mass", "-3"), "must be above"),
    (("--top-mass-range", "176:169"), "need LO < HI"),
    (("--top-mass", "175", "--top-mass-range", "169:176"), "give one of them"),
    (("--top-mass-range", "169-176"), "expected LO:HI"),
    (("--top-width", "0"), "must be positive"),
])
def test_bad_top_mass_options_are_one_line_errors(generator, options, message, tmp_path, run_cli):
    out = tmp_path / "x.h5"
    code, _, err = run_cli("generate", generator, out, "-e", "10", *options)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lvd: error:") and message in err
    assert not out.exists()


def test_toy_window_must_leave_the_decay_open():
    with pytest.raises(LvdError, match="below its heaviest W"):
        toy.ToyConfig(top=TopMass(90.0))


def test_cli_range_is_stored_and_inspected(tmp_path, run_cli):
    out = tmp_path / "r.h5"
    code, _, err = run_cli("generate", "toy", out, "-e", "300", "-s", "2", "--top-mass-range", "170:174")
    assert code == 0, err
    data = read_events(out)
    assert data.attrs["top_mass_range"] == [170.0, 174.0]
    assert 170.0 <= data.generator["top_mass"].min() < data.generator["top_mass"].max() <= 174.0
    code, text, err = run_cli("inspect", out)
    assert code == 0, err
    assert "generated top mass: range 170-174 GeV" in " ".join(text.split())
