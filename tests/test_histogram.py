"""``lvd histogram``: binned unfolded distributions, their uncertainties against closed forms, and the files
(ROOT read back, a HEPData folder the validator accepts, CSV, PNG)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lvd import physics
from lvd.measurement.histogram import histogram, parse_edges

pytest.importorskip("uproot", reason="the [hep] extra (uproot) is not installed")


def _signed_weights(rng, n, negative=0.1):
    return rng.uniform(0.5, 1.5, n) * np.where(rng.random(n) < negative, -1.0, 1.0)


@pytest.mark.parametrize("k", [1, 4])
def test_bootstrap_error_matches_the_analytic_one(k):
    """Poisson(1) multiplicities: Var(bin) = Σ w² over the bin's events, bins uncorrelated (here with 10 %
    negative weights; K identical samples change nothing and have no posterior spread)."""
    rng = np.random.default_rng(1)
    n = 20_000
    x, w = rng.exponential(50.0, n), _signed_weights(rng, n)
    edges = np.array([0, 10, 20, 40, 60, 90, 130, 200.0])
    values = np.repeat(x[:, None], k, axis=1) if k > 1 else x
    h, sum_w2 = histogram(values, w, edges, n_boot=400, seed=2)
    analytic = np.histogram(x, edges, weights=w**2)[0]
    np.testing.assert_allclose(sum_w2, analytic, rtol=1e-12)
    np.testing.assert_allclose(h.values, np.histogram(x, edges, weights=w)[0], rtol=1e-12)
    ratio = h.error("stat") / np.sqrt(analytic)
    assert np.all(np.abs(ratio - 1) < 0.10), ratio
    corr = h.cov_stat / np.outer(h.error("stat"), h.error("stat"))
    assert np.abs(corr[~np.eye(len(corr), dtype=bool)]).max() < 0.2
    if k > 1:
        np.testing.assert_allclose(h.cov_posterior, 0.0, atol=1e-9)
    else:
        assert h.cov_posterior is None


def test_posterior_covariance_and_density_normalisation():
    """Every event's draws from N(0, 1): the posterior covariance of the histogram is known in closed form,
    Σ_i w_i² (diag p − p pᵀ) with p the normal's bin probabilities (1 % outside the range)."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    n, k = 3000, 6
    x = rng.normal(0, 1, (n, k))
    w = _signed_weights(rng, n)
    edges = np.linspace(-2.5, 2.5, 7)
    h, _ = histogram(x, w, edges, n_boot=50, seed=0)
    per_sample = np.stack([np.histogram(x[:, j], edges, weights=w)[0] for j in range(k)])
    np.testing.assert_allclose(h.values, per_sample.mean(0), rtol=1e-12)
    p = np.diff(norm.cdf(edges))
    exact = np.sum(w**2) * (np.diag(p) - np.outer(p, p))
    # the estimate averages N·K draws: its relative error on the diagonal is ~ 1/√(N K p) ≤ 5 %; 5σ
    tol = 5 / np.sqrt(n * k * p.min())
    np.testing.assert_allclose(np.diag(h.cov_posterior), np.diag(exact), rtol=tol)
    assert np.abs(h.cov_posterior - exact).max() < tol * np.diag(exact).max()
    assert np.linalg.matrix_rank(h.cov_posterior) == len(p)  # full rank although K = 6 ≤ the 6 bins
    np.testing.assert_allclose(h.cov_total, h.cov_stat + h.cov_posterior)
    d, _ = histogram(x, w, edges, n_boot=50, seed=0, density=True)
    width = np.diff(edges)
    assert np.sum(d.values * width) == pytest.approx(1.0)
    # every sample and replica is normalised: the covariances conserve the integral
    np.testing.assert_allclose(width @ d.cov_stat, 0.0, atol=1e-12)
    np.testing.assert_allclose(width @ d.cov_posterior, 0.0, atol=1e-12)


def test_edges_parsing():
    np.testing.assert_allclose(parse_edges("0:100:4"), [0, 25, 50, 75, 100])
    np.testing.assert_allclose(parse_edges("1,2,4"), [1, 2, 4])


@pytest.fixture(scope="module")
def unfolded_file(tiny_file, tmp_path_factory):
    """600 toy events with K = 5 smeared copies of the truth as 'posterior samples' and 10 % negative weights."""
    from lvd.data.schema import read_events, write_events

    data = read_events(tiny_file, require_truth=True).take(slice(0, 600))
    rng = np.random.default_rng(4)
    k = 5
    data.unfolded = {p: {f: (np.repeat(v[:, None], k, 1) * (1 + 0.05 * rng.normal(size=(len(v), k))) if f == "pt"
                             else np.repeat(v[:, None], k, 1)).astype(np.float32)
                         for f, v in data.truth[p].items() if f != "pdgid"}
                     for p in physics.DECAY_PRODUCTS}
    data.weights = np.where(rng.random(data.n_events) < 0.1, -1.0, 1.0).astype(np.float32)
    path = tmp_path_factory.mktemp("unfolded") / "unfolded.h5"
    write_events(path, data)
    return path


def test_histogram_command_writes_root_hepdata_csv_png(unfolded_file, tmp_path, run_cli):
    import uproot
    from hepdata_validator.full_submission_validator import FullSubmissionValidator

    config = tmp_path / "observables.yaml"
    config.write_text("m_ttbar: {bins: '300:1100:8', description: Invariant mass of the top pair}\n"
                      "y_ttbar: {bins: [-2, -1, 0, 1, 2], label: y(tt)}\n")
    out = tmp_path / "hist"
    code, _, err = run_cli("histogram", unfolded_file, "--config", config, "--observable", "pt_t_had",
                           "--bins", "0,50,100,200,400", "-o", out, "--bootstrap", "50")
    assert code == 0, err
    summary = json.loads((out / "histograms.json").read_text())
    assert summary["negative_weights"] > 0 and summary["hepdata_valid"] is True
    with uproot.open(out / "histograms.root") as f:
        for name in ("m_ttbar", "y_ttbar", "pt_t_had"):
            entry = summary["observables"][name]
            h = f[f"{name}/unfolded"]
            np.testing.assert_allclose(h.axis().edges(), entry["edges"])
            np.testing.assert_allclose(h.values(), entry["unfolded"], rtol=1e-12)
            np.testing.assert_allclose(np.sqrt(h.variances()), entry["error_total"], rtol=1e-12)
            np.testing.assert_allclose(f[f"{name}/truth"].values(), entry["truth"], rtol=1e-12)
            np.testing.assert_allclose(f[f"{name}/covariance_total"].values(), entry["covariance_total"], rtol=1e-12)
            stat, post = (np.sqrt(f[f"{name}/unfolded_{s}"].variances()) for s in ("stat", "posterior"))
            np.testing.assert_allclose(stat**2 + post**2, np.asarray(entry["error_total"]) ** 2, rtol=1e-10)
            csv = np.genfromtxt(out / "csv" / f"{name}.csv", delimiter=",", names=True)
            np.testing.assert_allclose(csv["unfolded"], entry["unfolded"], rtol=1e-12)
            assert (out / "plots" / f"{name}.png").stat().st_size > 0
    validator = FullSubmissionValidator()
    assert validator.validate(directory=str(out / "hepdata")), validator.get_messages()
    assert (out / "hepdata.tar.gz").exists()
    assert "y(tt)" in (out / "hepdata" / "y_ttbar.yaml").read_text()


def test_histogram_without_truth_and_errors(unfolded_file, tmp_path, run_cli):
    import shutil

    import h5py

    bare = tmp_path / "data.h5"
    shutil.copy(unfolded_file, bare)
    with h5py.File(bare, "a") as f:
        del f["TRUTH"]
    code, _, err = run_cli("histogram", bare, "--observable", "m_t_had", "--bins", "150:200:10", "-o",
                           tmp_path / "h", "--density", "--formats", "root,csv,png", "--bootstrap", "20")
    assert code == 0, err
    summary = json.loads((tmp_path / "h" / "histograms.json").read_text())
    assert not summary["has_truth"] and "truth" not in summary["observables"]["m_t_had"]

    with h5py.File(bare, "a") as f:
        f["WEIGHTS/weight"][...] = -np.abs(f["WEIGHTS/weight"][...])
    for args, needle in ((("--observable", "m_top", "--bins", "1,2"), "unknown observable"),
                         (("--observable", "m_t_had"), "one --bins per --observable"),
                         (("--observable", "m_t_had", "--bins", "3,2"), "increasing"),
                         (("--observable", "m_t_had", "--bins", "150:200:10"), "sum to")):
        code, _, err = run_cli("histogram", bare, *args, "-o", tmp_path / "bad")
        assert code == 2 and needle in err and err.strip().count("\n") == 0, err
