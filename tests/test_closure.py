"""Closure statistics (lvd.measurement.closure) against closed forms.

The model: a conjugate Gaussian. Truth t ~ N(μ, s²), detector x = t + N(0, σ²), exact posterior
t | x ~ N((x s² + μ σ²)/(s² + σ²), s² σ²/(s² + σ²)), K draws per event. Given the detector data the bin
probabilities p_ib of each event are known exactly, so the covariance of h − T is too:
Σ = (1 + 1/K) Σ_i w_i² (diag p_i − p_i p_iᵀ) (K draws and the truth: K + 1 independent one-hot vectors).
"""

import json

import numpy as np
import pytest
from scipy import stats

from lvd.measurement import closure as cl
from lvd.measurement.histogram import histogram

ALPHA = 1e-3  # a test here fails only when a closed form is off: false alarms at this level are negligible


def conjugate(n: int, k: int, sigma: float, seed: int, s: float = 1.0, mu: float = 0.3):
    """Truth ``[N]``, exact posterior draws ``[N, K]``, posterior means ``[N]``, posterior sd, the generator."""
    rng = np.random.default_rng(seed)
    t = rng.normal(mu, s, n)
    x = t + rng.normal(0.0, sigma, n)
    mean = (x * s**2 + mu * sigma**2) / (s**2 + sigma**2)
    sd = s * sigma / np.sqrt(s**2 + sigma**2)
    return t, mean[:, None] + sd * rng.normal(size=(n, k)), mean, sd, rng


def exact_cov(mean: np.ndarray, sd: float, edges: np.ndarray, w: np.ndarray, k: int, open_ends: bool) -> np.ndarray:
    """Σ = Cov(h − T | detector) from the exact posterior bin probabilities (open outermost bins: draws beyond
    the edges are counted in them)."""
    e = np.array(edges, np.float64)
    if open_ends:
        e[0], e[-1] = -np.inf, np.inf
    p = np.diff(stats.norm.cdf((e[None, :] - mean[:, None]) / sd), axis=1)
    w2 = w**2
    return (1 + 1 / k) * (np.diag(w2 @ p) - (p * w2[:, None]).T @ p)


def two_sided_p(chi2: float, a: np.ndarray, sigma: np.ndarray) -> float:
    """Two-sided p-value of χ² = Dᵀ A D for D ~ N(0, Σ): a weighted sum of χ²₁ with the eigenvalues λ of AΣ,
    matched in mean Σλ and variance 2Σλ² by a scaled χ² (Satterthwaite)."""
    lam = np.linalg.eigvals(a @ sigma).real
    mean, var = lam.sum(), 2 * np.sum(lam**2)
    scale, ndf = var / (2 * mean), 2 * mean**2 / var
    z = chi2 / scale
    return float(2 * min(stats.chi2.sf(z, ndf), stats.chi2.cdf(z, ndf)))


def paired_p_two_sided(r: dict) -> float:
    c = r["chi2_paired"]
    return float(2 * min(c["p_value"], stats.chi2.cdf(c["chi2"], c["ndf"])))


def shift_one_bin(draws: np.ndarray, edges: np.ndarray, b: int, fraction: float, rng) -> np.ndarray:
    """Move ``fraction`` of the draws in bin ``b`` into bin ``b + 1`` (to its centre)."""
    moved = (cl.bin_index(draws, edges) == b) & (rng.random(draws.shape) < fraction)
    out = draws.copy()
    out[moved] = 0.5 * (edges[b + 1] + edges[b + 2])
    return out


@pytest.fixture(scope="module")
def broad():
    """Posteriors spanning several of the 12 bins (σ = 0.6 s), K = 8, 30k events, unit weights."""
    t, x, mean, sd, _ = conjugate(30_000, 8, 0.6, seed=1)
    w = np.ones(len(t))
    return t, x, mean, sd, w, cl.closure(t, x, w, seed=1)


def test_paired_chi2_of_exact_posteriors_is_chi2_at_small_k(broad):
    """D = Σ w d is mean-zero and S = Σ w² d dᵀ estimates its covariance without bias at K = 8: no correction."""
    t, x, mean, sd, w, r = broad
    edges = np.array(r["edges"])
    assert len(edges) == cl.N_BINS + 1 and r["open_ends"]
    assert r["chi2_paired"]["ndf"] == cl.N_BINS - 1, "each d_i sums to 0: rank B − 1"
    assert paired_p_two_sided(r) > ALPHA, r["chi2_paired"]
    # S against the closed form Σ (its trace: a 1/K term too many or too few is 10 standard errors away)
    assert_s_matches_closed_form(t, x, w, mean, sd, edges, 8)


def assert_s_matches_closed_form(t, x, w, mean, sd, edges, k):
    """The paired test's S = Σ w² d dᵀ against Σ = (1 + 1/K) Σ w² (diag p − p pᵀ): its trace and diagonal
    within 5 standard errors of the event sum."""
    c, onehot = cl.bin_fractions(np.clip(x, edges[0], edges[-1]), edges), cl.bin_fractions(t, edges)
    big_d, s = cl.paired_statistics(c, onehot, w)
    np.testing.assert_allclose(big_d, w @ c - w @ onehot, atol=1e-9 * np.abs(w).sum())
    terms = (w[:, None] * (c - onehot)) ** 2  # the event terms of diag S: their scatter gives its error
    se = np.sqrt(((terms - terms.mean(0)) ** 2).sum(0))
    se_trace = np.sqrt(((terms.sum(1) - terms.sum(1).mean()) ** 2).sum())
    sigma = exact_cov(mean, sd, edges, w, k, open_ends=True)
    assert abs(np.trace(s) - np.trace(sigma)) < 5 * se_trace, (np.trace(s), np.trace(sigma), se_trace)
    np.testing.assert_array_less(np.abs(np.diag(s) - np.diag(sigma)), 5 * se)


def test_stat_and_total_chi2_follow_their_closed_forms(broad):
    """χ²_stat = Σ (h − T)²/V and χ²_total = (h − T)ᵀ C⁺ (h − T) against their exact distributions given the
    covariance of h − T; the stat expectation lies below one per bin (h and T share the events)."""
    t, x, mean, sd, w, r = broad
    edges = np.array(r["edges"])
    sigma = exact_cov(mean, sd, edges, w, 8, open_ends=True)
    v = np.array(r["variance_stat"])
    np.testing.assert_allclose(v, np.bincount(cl.bin_index(t, edges), minlength=cl.N_BINS), rtol=1e-12)
    assert r["chi2_stat"]["ndf"] == cl.N_BINS
    assert two_sided_p(r["chi2_stat"]["chi2"], np.diag(1 / v), sigma) > ALPHA
    assert np.sum(np.diag(sigma) / v) < cl.N_BINS
    c_inv = np.linalg.pinv(np.array(r["covariance_total"]), rcond=1e-10)
    assert two_sided_p(r["chi2_total"]["chi2"], c_inv, sigma) > ALPHA
    # the unfolded histogram is lvd histogram's; pulls are the differences over the stated σ
    h = np.array(r["unfolded"])
    np.testing.assert_allclose(h, histogram(np.clip(x, edges[0], edges[-1]), w, edges, 2)[0].values)
    np.testing.assert_allclose(r["pull_stat"], (h - r["truth"]) / np.sqrt(v))
    np.testing.assert_allclose(r["pull_total"], (h - r["truth"]) / np.sqrt(np.diag(r["covariance_total"])))


def test_total_uncertainty_covers_exact_posteriors_when_k_is_large():
    """With K = 32 draws the stated covariance (bootstrap + posterior spread) is well estimated: no alarm."""
    t, x, mean, sd, _ = conjugate(20_000, 32, 0.6, seed=3)
    w = np.ones(len(t))
    r = cl.closure(t, x, w, seed=3)
    assert r["chi2_total"]["p_value"] > ALPHA, r["chi2_total"]
    assert paired_p_two_sided(r) > ALPHA, r["chi2_paired"]


@pytest.fixture(scope="module")
def sharp():
    """Posteriors narrower than a bin (σ = 0.05 s), K = 8, 50k events, unit weights."""
    t, x, mean, sd, rng = conjugate(50_000, 8, 0.05, seed=2)
    return t, x, np.ones(len(t)), rng


def test_sharp_exact_posterior_stat_chi2_per_bin_below_one(sharp):
    t, x, w, _ = sharp
    r = cl.closure(t, x, w, n_boot=50, seed=2)
    assert r["chi2_stat"]["chi2_per_ndf"] <= 1.0, r["chi2_stat"]
    assert r["chi2_total"]["p_value"] > ALPHA and paired_p_two_sided(r) > ALPHA


def test_a_five_percent_shift_of_one_bin_is_detected(sharp):
    t, x, w, rng = sharp
    edges = cl.equal_count_edges(t, w)
    shifted = shift_one_bin(np.clip(x, edges[0], edges[-1]), edges, 5, 0.05, rng)
    r = cl.closure(t, shifted, w, n_boot=50, seed=2)
    assert r["chi2_paired"]["p_value"] < ALPHA, r["chi2_paired"]
    assert r["worst_bin"]["bin"] in (5, 6)


def test_signed_weights():
    """Weights of magnitude 0.2–2, 15 % negative (E w² twice (E|w|)²: w², |w| or w in a variance differ):
    equal-content bins, V = Σ w² per truth bin, S against the closed form, exact posteriors pass the paired
    test and a 10 % shift of one bin is seen."""
    t, x, mean, sd, rng = conjugate(50_000, 8, 0.1, seed=4)
    w = rng.uniform(0.2, 2.0, len(t)) * np.where(rng.random(len(t)) < 0.15, -1.0, 1.0)
    r = cl.closure(t, x, w, n_boot=50, seed=4)
    edges = np.array(r["edges"])
    assert np.ptp(r["truth"]) < 2 * np.abs(w).max(), "equal truth content per bin, up to one event"
    np.testing.assert_allclose(r["variance_stat"], np.bincount(cl.bin_index(t, edges), weights=w**2), rtol=1e-10)
    assert_s_matches_closed_form(t, x, w, mean, sd, edges, 8)
    assert paired_p_two_sided(r) > ALPHA, r["chi2_paired"]
    shifted = shift_one_bin(np.clip(x, edges[0], edges[-1]), edges, 5, 0.10, rng)
    assert cl.closure(t, shifted, w, n_boot=20, seed=4)["chi2_paired"]["p_value"] < ALPHA


def test_given_edges_drop_values_outside_for_both():
    """A range narrower than the distribution: truth and draws outside are dropped, each d_i no longer sums
    to 0 and the paired test has B degrees of freedom; exact posteriors still pass."""
    t, x, mean, sd, _ = conjugate(30_000, 8, 0.3, seed=5)
    w = np.ones(len(t))
    edges = np.linspace(-0.7, 1.3, 9)
    r = cl.closure(t, x, w, edges=edges, n_boot=50, seed=5)
    assert not r["open_ends"] and r["chi2_paired"]["ndf"] == 8
    np.testing.assert_allclose(r["truth"], np.histogram(t, edges)[0])
    np.testing.assert_allclose(r["unfolded"], np.histogram(x, edges)[0] / 8)
    assert paired_p_two_sided(r) > ALPHA, r["chi2_paired"]
    sigma = exact_cov(mean, sd, edges, w, 8, open_ends=False)
    assert two_sided_p(r["chi2_stat"]["chi2"], np.diag(1 / np.array(r["variance_stat"])), sigma) > ALPHA


def test_quadratic_form_on_a_singular_covariance():
    cov = np.diag([4.0, 1.0, 0.0])
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    chi2, rank, unsupported = cl.quadratic_form(rot @ [2.0, 3.0, 0.0], rot @ cov @ rot.T)
    assert chi2 == pytest.approx(1 + 9) and rank == 2 and unsupported == 0
    chi2, rank, unsupported = cl.quadratic_form(rot @ [2.0, 3.0, 5.0], rot @ cov @ rot.T)
    assert chi2 == pytest.approx(10) and rank == 2 and unsupported == 1
    extra = cl.binned_tests(np.ones(3), np.zeros(3), np.ones(3), np.eye(3), extra_cov=np.eye(3))
    assert extra["chi2_total"]["chi2"] == pytest.approx(1.5) and extra["chi2_stat"]["chi2"] == pytest.approx(3)


def test_closure_all_summary_counts():
    t, x, *_ = conjugate(5000, 4, 0.5, seed=6)
    w = np.ones(len(t))
    res = cl.closure_all({"a": t, "b": t}, {"a": x, "b": x + 5.0}, w, names=("a", "b"), n_boot=20)
    json.dumps(res)
    s = res["summary"]
    assert s["n_observables"] == 2 and s["chi2_stat"]["at_most_3"] == 1, "a shift of 5 s fails, the exact one not"
    assert res["observables"]["b"]["chi2_paired"]["p_value"] < 1e-12


def test_histogram_prints_and_stores_closure(tiny_file, tmp_path, run_cli):
    """``lvd histogram`` on a file with truth: one closure line per observable and the figures in
    histograms.json."""
    from lvd import physics
    from lvd.data.schema import read_events, write_events

    data = read_events(tiny_file, require_truth=True)
    k, rng = 4, np.random.default_rng(0)
    data.unfolded = {p: {f: (np.repeat(np.asarray(v)[:, None], k, 1)
                             * (1 + 0.02 * rng.normal(size=(len(v), k)) if f == "pt" else 1)).astype(np.float32)
                         for f, v in feats.items() if f in ("pt", "eta", "phi", "mass")}
                     for p, feats in data.truth.items() if p in physics.DECAY_PRODUCTS}
    write_events(tmp_path / "u.h5", data)
    code, out, err = run_cli("histogram", tmp_path / "u.h5", "--observable", "m_ttbar", "--bins", "300:900:6",
                             "--observable", "dphi_tt", "--bins", "0:3.1416:6", "--bootstrap", "50",
                             "--formats", "csv", "-o", tmp_path / "h")
    assert code == 0, err
    assert err.count("closure vs truth: χ²/bin") == 2, err  # the console prints to stderr
    summary = json.loads((tmp_path / "h" / "histograms.json").read_text())
    for name in ("m_ttbar", "dphi_tt"):
        c = summary["closure"][name]
        assert c["chi2_stat"]["ndf"] == 6 and 0 <= c["chi2_total"]["p_value"] <= 1
