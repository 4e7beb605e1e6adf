"""The top-mass extraction against a problem with an exact posterior: masses smeared by a Gaussian detector, a
training prior nearly flat over the masses of interest (a Breit–Wigner 25 GeV wide: it factorises in the two
tops, so each top's posterior can be drawn exactly and alone), posterior samples drawn exactly. The likelihood
must find the generated mass (within its statistical error) and follow it with slope 1; the posterior-mean
statistic must equal its closed form E_x[E[m | x]] and, calibrated, find the generated mass with slope 1."""

import json

import numpy as np
import pytest

from lvd.data import decay_chain
from lvd.data.generate.top_mass import top_width
from lvd.data.prior import PRIOR_ATTR
from lvd.data.schema import EventData, write_events
from lvd.measurement.top_mass import Calibration, breit_wigner, extract, measure
from lvd.sampling.unfold import daughters_to_particles

SIGMA = 6.0  # GeV, the toy detector's top-mass resolution
PRIOR_MASS, PRIOR_WIDTH = np.array([172.5]), np.array([25.0])


def _bw_masses(rng, n, mass, width):
    a, b = np.arctan((100.0**2 - mass**2) / (mass * width)), np.arctan((260.0**2 - mass**2) / (mass * width))
    return np.sqrt(mass**2 + mass * width * np.tan(a + (b - a) * rng.random(n)))


def _expected_posterior_mean(true_mass: float) -> float:
    """E_x[E[m | x]] for data at ``true_mass``, by quadrature: the truth mass is the Breit–Wigner truncated to
    [100, 260] GeV (as drawn), x = m + σ·ε, and E[m | x] is the mean of the exact posterior on its grid."""
    grid = np.linspace(110.0, 240.0, 1301)
    prior = breit_wigner(grid, PRIOR_MASS[0], PRIOR_WIDTH[0])
    x = np.linspace(60.0, 310.0, 2501)
    like = np.exp(-0.5 * ((x[:, None] - grid) / SIGMA) ** 2)  # [x, m]
    post_mean = (like * prior) @ grid / ((like * prior).sum(axis=1) + 1e-300)  # [x]
    m = np.linspace(100.0, 260.0, 16001)
    truth = breit_wigner(m, true_mass, float(top_width(true_mass)))
    truth /= truth.sum()
    p_x = np.exp(-0.5 * ((x[:, None] - m) / SIGMA) ** 2) @ truth  # [x], unnormalised on the uniform x grid
    return float(post_mean @ p_x / p_x.sum())


def _posterior_samples(rng, x, k):
    """``[n, K]`` exact draws from p(m | x) ∝ N(x − m; σ) · BW(m; prior), by inverse CDF on a fine grid."""
    grid = np.linspace(110.0, 240.0, 6501)
    prior = breit_wigner(grid, PRIOR_MASS[0], PRIOR_WIDTH[0])
    dens = np.exp(-0.5 * ((x[:, None] - grid) / SIGMA) ** 2) * prior
    cdf = np.cumsum(dens, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random((len(x), k))
    return np.stack([np.interp(u[i], cdf[i], grid) for i in range(len(x))])


def _unfolded_file(path, true_mass, n=2000, k=32, seed=0):
    rng = np.random.default_rng(seed)
    width = float(top_width(true_mass))
    m_lep, m_had = (_posterior_samples(rng, _bw_masses(rng, n, true_mass, width) + SIGMA * rng.normal(size=n), k)
                    for _ in range(2))
    coords = np.zeros((n, k, decay_chain.DIM))
    coords[..., [0, 12]] = np.log(80.0)  # top pT 80 GeV, φ = 0, η = 0, W at its pole, fixed decay directions
    coords[..., [2, 14]] = 1.0
    coords[..., [6, 9, 18, 21]] = 1.0
    coords[..., 4] = decay_chain.top_mass_to_u(m_lep)
    coords[..., 16] = decay_chain.top_mass_to_u(m_had)
    unfolded = daughters_to_particles(decay_chain.decode(coords))
    ones = np.ones((n, 1), np.float32)
    data = EventData(source={f: ones for f in ("pt", "eta", "phi", "mass", "btag", "is_electron", "is_muon", "charge")},
                     mask=np.ones((n, 1), bool), met={"met": ones[:, 0], "phi": ones[:, 0]}, unfolded=unfolded,
                     attrs={"top_mass": float(true_mass),
                            PRIOR_ATTR: json.dumps({"mass": PRIOR_MASS.tolist(), "width": PRIOR_WIDTH.tolist()})})
    write_events(path, data)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("topmass")
    return {m: _unfolded_file(d / f"m{m}.h5", m, seed=int(10 * m)) for m in (169.0, 172.5, 176.0)}


def test_the_likelihood_finds_the_generated_mass(files):
    for m, path in files.items():
        e = extract(path, n_boot=50, method="likelihood")
        assert e.true_mass == m and e.samples_per_event == 32
        assert abs(e.raw - m) < 4 * e.stat + 0.15, (m, e.raw, e.stat)
        assert 0.02 < e.stat < 0.6


def test_calibration_has_slope_one_and_inverts(files, tmp_path):
    report = measure([files[172.5]], [files[169.0], files[176.0]], tmp_path / "out", n_boot=50, method="likelihood")
    cal = report["calibration"]
    assert abs(cal["slope"] - 1.0) < max(0.1, 3 * cal["cov"][1][1] ** 0.5), cal  # within its statistical error
    e = report["measurements"][0]
    assert abs(e["calibrated"] - 172.5) < 4 * e["calibrated_stat"] + 0.15
    assert (tmp_path / "out" / "top_mass.png").exists() and (tmp_path / "out" / "top_mass.json").exists()
    back = Calibration(cal["offset"], cal["slope"], cal["cov"], cal["points"])
    assert back.offset + back.slope * 172.5 == pytest.approx(cal["offset"] + 172.5 * cal["slope"])


def test_one_mass_is_not_a_calibration(files):
    from lvd.errors import DataError

    with pytest.raises(DataError, match="two or more"):
        Calibration.fit([extract(files[172.5], n_boot=2)])


def test_posterior_mean_statistic_is_its_closed_form(files):
    """S is E_x[E[m | x]] (the posterior mean leans toward the prior's 172.5: below the data's mass above it,
    above it below), within its bootstrap error; the bootstrap error is the spread of a mean of n events."""
    for m, path in files.items():
        e = extract(path, n_boot=200)
        assert e.method == "mean" and e.true_mass == m
        exact = _expected_posterior_mean(m)
        assert abs(e.raw - exact) < 4 * e.stat, (m, e.raw, exact, e.stat)
        assert 0.05 < e.stat < 0.5
        assert sum(e.event_mean_counts) == pytest.approx(e.n_events)
    # the lean toward the prior: a response below 1, and the statistic resolves it
    assert 0.6 < (_expected_posterior_mean(176.0) - _expected_posterior_mean(169.0)) / 7.0 < 0.98


def test_posterior_mean_calibration_closes(files, tmp_path):
    """Calibrated on independent samples, the mean method returns the generated masses with slope 1."""
    calib = {m: _unfolded_file(tmp_path / f"c{m}.h5", m, seed=int(10 * m) + 7) for m in (169.0, 172.5, 176.0)}
    report = measure(list(files.values()), list(calib.values()), tmp_path / "out", n_boot=100)
    cal, closure = report["calibration"], report["closure"]
    slope = (_expected_posterior_mean(176.0) - _expected_posterior_mean(169.0)) / 7.0
    assert abs(cal["slope"] - slope) < 4 * cal["cov"][1][1] ** 0.5, (cal["slope"], slope)
    for e in report["measurements"]:
        err = np.hypot(e["calibrated_stat"], e["calibration_stat"])
        assert abs(e["calibrated"] - e["true_mass"]) < 4 * err, e
        assert e["calibration_stat"] > 0 and e["calibrated_stat"] == pytest.approx(e["stat"] / abs(cal["slope"]))
    assert abs(closure["slope"] - 1.0) < 4 * closure["slope_stat"]
    assert report["method"].startswith("calibrated posterior mean")
    assert (tmp_path / "out" / "top_mass.png").exists()


def test_unknown_method_is_a_clear_error(files):
    from lvd.errors import DataError

    with pytest.raises(DataError, match="method 'median'"):
        extract(files[172.5], method="median")


def test_command_line_measures_and_refuses_an_unknown_method(files, tmp_path, run_cli):
    calib = [files[169.0], files[176.0]]
    code, text, err = run_cli("measure", "top-mass", files[172.5], "--calibration", calib[0], "--calibration", calib[1],
                              "-o", tmp_path / "mt", "--bootstrap", "20")
    assert code == 0, err
    report = json.loads((tmp_path / "mt" / "top_mass.json").read_text())
    e = report["measurements"][0]
    assert report["method"].startswith("calibrated posterior mean") and e["calibrated"] is not None
    assert f"calibrated {e['calibrated']:.2f}" in " ".join((text + err).split())
    code, text, err = run_cli("measure", "top-mass", files[172.5], "-o", tmp_path / "raw", "--bootstrap", "20")
    assert code == 0, err
    assert "not a measurement until calibrated" in " ".join((text + err).split())
    code, _, err = run_cli("measure", "top-mass", files[172.5], "--method", "median", "-o", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "'--method'" in err and "'median' is not one of" in err
