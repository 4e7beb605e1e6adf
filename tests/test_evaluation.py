"""Evaluation metrics against closed forms, weights as counts, calibration, the classifier test, and the report."""

import json

import numpy as np
import pytest
from scipy import stats

from lvd.evaluation import calibration as cal
from lvd.evaluation import metrics as mt
from lvd.evaluation.c2st import c2st, weighted_auc
from lvd.measurement.closure import HEADLINE as CLOSURE_OBSERVABLES


def test_wasserstein_and_energy_of_shifted_gaussians():
    rng = np.random.default_rng(0)
    n, delta = 200_000, 0.7
    u, v = rng.normal(0, 1, n), rng.normal(delta, 1, n)
    assert mt.wasserstein(u, v) == pytest.approx(delta, abs=0.01)
    # E|X−Y| for X−Y ~ N(δ, 2); E|X−X'| = 2/√π
    s = np.sqrt(2.0)
    e_xy = s * np.sqrt(2 / np.pi) * np.exp(-(delta**2) / (2 * s**2)) + delta * (1 - 2 * stats.norm.cdf(-delta / s))
    expected = np.sqrt(2 * e_xy - 2 * (2 / np.sqrt(np.pi)))
    assert mt.energy(u, v) == pytest.approx(expected, rel=0.03)
    # KS of two shifted unit Gaussians: 2Φ(δ/2) − 1
    assert mt.ks(u, v) == pytest.approx(2 * stats.norm.cdf(delta / 2) - 1, abs=0.006)


def test_kl_and_js_of_known_histograms():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert mt.kl_divergence(p, q, eps=0) == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))
    assert mt.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(np.log(2))
    assert mt.js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    m = 0.5 * (p + q)
    assert mt.js_divergence(p, q) == pytest.approx(0.5 * mt.kl_divergence(p, m, 0) + 0.5 * mt.kl_divergence(q, m, 0))


def test_weights_act_as_counts():
    rng = np.random.default_rng(1)
    u, v = rng.normal(0, 1, 300), rng.normal(0.3, 1.2, 200)
    counts = rng.integers(1, 4, 200)
    dup = np.repeat(v, counts)
    edges = np.linspace(-4, 4, 21)
    for fn in (mt.wasserstein, mt.energy, mt.ks, mt.binned(mt.kl_divergence, edges), mt.binned(mt.js_divergence, edges)):
        assert fn(u, v, None, counts.astype(float)) == pytest.approx(fn(u, dup), rel=1e-9, abs=1e-12)
    # calibration: duplicated events equal weighted ones
    samples = rng.normal(0, 1, (200, 9))
    truth = rng.normal(0, 1, 200)
    ranks = cal.truth_ranks(samples, truth, seed=0)
    a = cal.coverage(ranks, 9, 0.68, counts.astype(float))["coverage"]
    b = cal.coverage(np.repeat(ranks, counts), 9, 0.68)["coverage"]
    assert a == pytest.approx(b)
    crps = cal.crps(samples, truth)
    assert np.sum(counts * crps) / counts.sum() == pytest.approx(cal.crps(np.repeat(samples, counts, 0),
                                                                          np.repeat(truth, counts)).mean())


def test_crps_closed_form_for_a_gaussian():
    """CRPS of N(0, 1) at y: y(2Φ(y)−1) + 2φ(y) − 1/√π; the fair ensemble estimate converges to it."""
    rng = np.random.default_rng(2)
    y = np.array([-1.0, 0.0, 0.5, 2.0])
    samples = rng.normal(0, 1, (4, 20000))
    exact = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
    np.testing.assert_allclose(cal.crps(samples, y), exact, atol=0.01)


@pytest.mark.parametrize("width,calibrated", [(1.0, True), (0.5, False)])
def test_coverage_of_calibrated_and_overconfident_posteriors(width, calibrated):
    rng = np.random.default_rng(3)
    n, k = 20_000, 19
    mu = rng.normal(0, 3, n)
    truth = mu + rng.normal(0, 1, n)
    samples = mu[:, None] + width * rng.normal(0, 1, (n, k))
    ranks = cal.truth_ranks(samples, truth)
    for level in (0.68, 0.95):
        c = cal.coverage(ranks, k, level)
        if calibrated:
            assert abs(c["coverage"] - c["nominal"]) < 3 * c["error"]
        else:
            assert c["coverage"] < c["nominal"] - 5 * c["error"]
    hist = cal.rank_histogram(ranks, k)
    flat = np.full(k + 1, 1 / (k + 1))
    assert (np.abs(hist - flat).max() < 0.01) == calibrated


def test_classifier_two_sample_test():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, (3000, 5)), rng.normal(0, 1, (3000, 5))
    same = c2st(a, b, steps=300, n_boot=30)
    assert abs(same["auc"] - 0.5) < max(4 * same["error"], 0.03)
    far = c2st(a, b + 6.0, steps=300, n_boot=30)
    assert far["auc"] > 0.99


def test_weighted_auc_matches_mann_whitney():
    rng = np.random.default_rng(5)
    s = rng.normal(0, 1, 500)
    y = rng.random(500) < 0.4
    s[y] += 0.8
    u = stats.mannwhitneyu(s[y], s[~y]).statistic
    assert weighted_auc(s, y) == pytest.approx(u / (y.sum() * (~y).sum()))


def test_bootstrap_error_shrinks_with_statistics():
    rng = np.random.default_rng(6)
    small = mt.bootstrap(mt.wasserstein, rng.normal(0, 1, 500), rng.normal(0, 1, 500), np.ones(500), np.ones(500), 30, 0)
    big = mt.bootstrap(mt.wasserstein, rng.normal(0, 1, 20000), rng.normal(0, 1, 20000), np.ones(20000), np.ones(20000), 30, 0)
    assert big.error < small.error / 3


def fake_unfolded(tiny_file, path, k: int = 6, weights: np.ndarray | None = None):
    """``tiny_file``'s events with K samples per event (the truth, its pT smeared by 5 %), written to ``path``."""
    from lvd.data.schema import read_events, write_events

    data = read_events(tiny_file, require_truth=True)
    rng = np.random.default_rng(7)
    data.unfolded = {}
    for p, feats in data.truth.items():
        if p in ("b_lep", "lepton", "neutrino", "b_had", "q1", "q2"):
            data.unfolded[p] = {f: (np.repeat(v[:, None], k, 1) * (1 + 0.05 * rng.normal(size=(len(v), k))) if f == "pt"
                                    else np.repeat(v[:, None], k, 1)).astype(np.float32)
                                for f, v in feats.items() if f != "pdgid"}
    data.weights = None if weights is None else weights.astype(np.float32)
    write_events(path, data)
    return path


def signed_weights(n: int, seed: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, n) * np.where(rng.random(n) < 0.1, -1.0, 1.0)


def test_evaluate_and_compare_end_to_end(tiny_file, tmp_path, run_cli):
    """A fake unfolding (truth smeared, K samples, signed weights in the unfolded file, the truth from the
    unweighted original via --truth) evaluated through the CLI: every output is there and sane."""
    k = 6
    w = signed_weights(2000)
    fake_unfolded(tiny_file, tmp_path / "fake.h5", k, w)
    code, out, err = run_cli("evaluate", tmp_path / "fake.h5", "--truth", tiny_file, "-o", tmp_path / "rep",
                             "--bootstrap", "3", "--plots", "key", "--c2st-steps", "200")
    assert code == 0, err
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["schema"] == "lvd-metrics/1" and m["source"]["samples_per_event"] == k
    # the unfolded file's weights, not the truth file's (it has none)
    assert m["source"]["negative_weights"] == (w < 0).sum()
    assert m["source"]["weight_sum"] == pytest.approx(w.astype(np.float32).sum(), rel=1e-5)
    closure = m["closure"]
    assert list(closure["observables"]) == list(CLOSURE_OBSERVABLES) and len(closure["observables"]) == 16
    for e in closure["observables"].values():
        assert len(e["edges"]) == 13 and {"chi2_stat", "chi2_total", "chi2_paired"} <= set(e)
        assert len(e["pull_stat"]) == 12 and e["chi2_paired"]["ndf"] == 11
    assert closure["summary"]["n_observables"] == 16
    assert "## Closure" in (tmp_path / "rep" / "report.md").read_text()
    assert "closure (16 observables" in err
    nu = m["observables"]["nu_pz"]
    assert nu["distances"]["unfolded"]["wasserstein"]["value"] < nu["distances"]["naive"]["wasserstein"]["value"]
    assert abs(m["observables"]["m_W_lep"]["peak"]["unfolded"] - 80.4) < 3
    for f in ("metrics.csv", "report.md", "plots/mass_peaks.png", "plots/nu_pz.pdf", "plots/calibration.png",
              "plots/closure_pulls.png"):
        assert (tmp_path / "rep" / f).exists(), f
    assert not (tmp_path / "rep" / "plots" / "b_lep_eta.png").exists(), "--plots key: headline observables only"
    code, out, err = run_cli("compare", tmp_path / "rep", tmp_path / "rep", "-o", tmp_path / "cmp")
    assert code == 0, err
    assert "**" in (tmp_path / "cmp" / "compare.md").read_text()
    code, _, err = run_cli("evaluate", tiny_file, "-o", tmp_path / "bad")
    assert code == 2 and "UNFOLDED" in err


def test_evaluate_takes_one_source_of_weights(tiny_file, tmp_path, run_cli):
    """The unfolded file's weights when it has them, else the truth file's; both present and different: refused
    in one line naming both files (before any work)."""
    from lvd.errors import DataError
    from lvd.evaluation.report import read_inputs

    w = signed_weights(2000)
    with_w = fake_unfolded(tiny_file, tmp_path / "with_w.h5", 2, w)
    without = fake_unfolded(tiny_file, tmp_path / "without.h5", 2)
    other = fake_unfolded(tiny_file, tmp_path / "other.h5", 2, signed_weights(2000, seed=9))
    expect = w.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(read_inputs(with_w, without)[2], expect)
    np.testing.assert_array_equal(read_inputs(without, with_w)[2], expect)
    np.testing.assert_array_equal(read_inputs(with_w, with_w)[2], expect)
    with pytest.raises(DataError, match="weights differ"):
        read_inputs(with_w, other)
    code, _, err = run_cli("evaluate", with_w, "--truth", other, "-o", tmp_path / "rep")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert str(with_w) in err and str(other) in err and "weights differ" in err
    assert not (tmp_path / "rep" / "metrics.json").exists()
