"""Differential cross sections corrected for efficiency and fakes, against closed forms."""

import numpy as np
import pytest
from scipy import stats

from lvd.errors import DataError, LvdError
from lvd.measurement.cross_section import Acceptance, cross_section
from lvd.measurement.histogram import histogram

EDGES = np.array([0.0, 20.0, 40.0, 70.0, 110.0, 160.0, 250.0])


def efficiency(x):
    return 0.1 + 0.6 * x / (x + 60.0)


def _experiment(seed: int, n_generated: int = 200_000, fake_share: float = 0.15):
    """Truth x ~ Gamma of every generated signal event; selection with probability ε(x); fakes mixed in. The
    detector measures a signal event's x exactly and a variable u ~ N(0, 1) (fakes: their own x distribution
    and u ~ N(1.5, 1)), so the exact posterior of a selected event is x itself and its exact signal probability
    follows by Bayes from both densities. Returns (x of the selected events, their signal probability, ε of x,
    truth per bin, the number generated)."""
    from scipy import integrate

    rng = np.random.default_rng(seed)
    x = rng.gamma(1.6, 40.0, n_generated)
    kept = x[rng.random(n_generated) < efficiency(x)]
    n_fake = int(fake_share / (1 - fake_share) * len(kept))
    x_sel = np.concatenate([kept, rng.gamma(3.0, 30.0, n_fake)])
    u = np.concatenate([rng.normal(0.0, 1.0, len(kept)), rng.normal(1.5, 1.0, n_fake)])
    signal_x = lambda v: stats.gamma.pdf(v, 1.6, scale=40.0) * efficiency(v)  # noqa: E731  (unnormalised)
    z = integrate.quad(signal_x, 0, np.inf)[0]
    prior = 1 - fake_share
    sig = prior * stats.norm.pdf(u, 0.0, 1.0) * signal_x(x_sel) / z
    fake = (1 - prior) * stats.norm.pdf(u, 1.5, 1.0) * stats.gamma.pdf(x_sel, 3.0, scale=30.0)
    truth_counts = np.histogram(x, EDGES)[0]
    return x_sel, sig / (sig + fake), efficiency(x_sel), truth_counts, n_generated


def test_exact_corrections_give_the_truths_cross_section():
    x, signal, eff, truth_counts, n_gen = _experiment(1)
    sigma_true = 500.0 * 1000  # fb: the generated events stand for 500 pb
    lumi = n_gen / sigma_true
    r, tot = cross_section(x, np.ones(len(x)), Acceptance(signal, eff[:, None]), lumi, EDGES, n_boot=100, seed=2)
    truth = truth_counts / lumi / np.diff(EDGES)
    resid = r.values - truth
    # the statistical covariance alone (K = 1: no posterior spread); the truth's own Poisson noise is shared
    # only in part (the selected events are a subset), so the χ² is ≲ ndf when the estimator is unbiased
    chi2 = resid @ np.linalg.solve(r.cov_total, resid)
    assert stats.chi2.sf(chi2, len(truth)) > 1e-3, chi2
    assert r.cov_posterior is None and tot["posterior_fb"] == 0.0
    # the total within its statistical error of the truth's (the range's events: all but the far tail)
    in_range = truth_counts.sum() / lumi
    assert abs(r.values @ np.diff(EDGES) - in_range) < 4 * tot["stat_fb"]
    assert abs(tot["sigma_fb"] - sigma_true) < 4 * tot["stat_fb"]
    # without the corrections the same events are far from the truth: the test has power
    plain, _ = cross_section(x, np.ones(len(x)), Acceptance(np.ones(len(x)), np.ones((len(x), 1))), lumi, EDGES,
                             n_boot=100, seed=2)
    resid = plain.values - truth
    assert resid @ np.linalg.solve(plain.cov_total, resid) > 100 * len(truth)


def test_normalised_cross_section_integrates_to_one():
    x, signal, eff, _, n_gen = _experiment(3, n_generated=20_000)
    r, _ = cross_section(x, np.ones(len(x)), Acceptance(signal, eff[:, None]), 1.0, EDGES, n_boot=20, normalised=True)
    assert r.values @ np.diff(EDGES) == pytest.approx(1.0, rel=1e-12)


def test_weighted_draws_posterior_covariance_is_the_draws_covariance():
    """With weighted draws the event-wise posterior covariance (the draws' second moments on the diagonal)
    equals the covariance of the per-draw histograms, estimated from many draws."""
    rng = np.random.default_rng(4)
    n, k = 30, 4000
    x = rng.gamma(2.0, 40.0, (n, 1)) * rng.lognormal(0.0, 0.3, (n, k))
    s = 1.0 / efficiency(x)
    w = rng.uniform(0.5, 2.0, n)
    b, _ = histogram(x, w, EDGES, n_boot=2, sample_weights=s)
    empirical = np.cov(b.per_sample, rowvar=False, ddof=1)
    scale = np.sqrt(np.outer(np.diag(empirical), np.diag(empirical)))
    # a covariance estimated from K draws has a relative error of about sqrt(2/K) ≈ 0.02; 5 of them
    np.testing.assert_allclose(b.cov_posterior / scale, empirical / scale, atol=5 * np.sqrt(2 / k))
    # a constant draw weight c scales the covariance by c²
    b1, _ = histogram(x, w, EDGES, n_boot=2)
    b3, _ = histogram(x, w, EDGES, n_boot=2, sample_weights=np.full((n, k), 3.0))
    np.testing.assert_allclose(b3.cov_posterior, 9 * b1.cov_posterior, rtol=1e-12, atol=1e-12)


def test_acceptance_replicas_give_their_spread():
    x, signal, eff, _, _ = _experiment(5, n_generated=20_000)
    n = len(x)
    reps_s = np.stack([signal, signal, np.clip(signal * 1.1, 0, 1)])
    reps_e = np.stack([eff, eff * 0.9, eff])[..., None]
    r, _ = cross_section(x, np.ones(n), Acceptance(signal, eff[:, None], reps_s, reps_e), 1.0, EDGES, n_boot=10)
    hists = [cross_section(x, np.ones(n), Acceptance(a, e), 1.0, EDGES, n_boot=2)[0].values
             for a, e in zip(reps_s, reps_e, strict=True)]
    np.testing.assert_allclose(r.cov_acceptance, np.cov(np.stack(hists), rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(r.cov_total, r.cov_stat + r.cov_acceptance, rtol=1e-12)
    assert r.components() == ["stat", "acceptance"]


def test_undefined_requests_are_refused():
    x = np.full((3, 2), 50.0)
    ok = Acceptance(np.ones(3), np.full((3, 2), 0.5))
    with pytest.raises(DataError, match="luminosity 0"):
        cross_section(x, np.ones(3), ok, 0.0, EDGES)
    with pytest.raises(DataError, match="efficiency 0 at event 1, draw 0: below 0.001"):
        cross_section(x, np.ones(3), Acceptance(np.ones(3), np.array([[0.5, 0.5], [0.0, 0.5], [0.5, 0.5]])), 1.0,
                      EDGES)
    with pytest.raises(LvdError, match=r"efficiency: shape \(3,\), expected \(3, 2\)"):
        cross_section(x, np.ones(3), Acceptance(np.ones(3), np.full(3, 0.5)), 1.0, EDGES)
    with pytest.raises(DataError, match="signal probability: values outside"):
        cross_section(x, np.ones(3), Acceptance(np.array([1.0, np.nan, 1.0]), np.full((3, 2), 0.5)), 1.0, EDGES)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """A --keep-unselected toy sample 'unfolded' by its own truth (K = 3 jittered copies), and tiny classifiers."""
    from lvd import physics
    from lvd.data.generate import toy
    from lvd.data.schema import read_events, write_events
    from lvd.runs.acceptance import AcceptanceOptions, save
    from lvd.training.acceptance import train_acceptance

    folder = tmp_path_factory.mktemp("xs")
    sample = folder / "all.h5"
    toy.generate_file(sample, 300, seed=51, keep_unselected=True)
    # the options of test_acceptance.py's TINY: one compilation serves both files
    opts = AcceptanceOptions(width=16, blocks=1, batch_size=128, detector_width=16, detector_layers=1,
                      detector_batch_size=128, num_heads=2, steps=30, validate_every=10)
    eff, fakes = train_acceptance(sample, opts=opts)
    save(eff, folder / "acceptance" / "efficiency")
    save(fakes, folder / "acceptance" / "fakes")
    data = read_events(sample, require_truth=True)
    rng = np.random.default_rng(5)
    data.unfolded = {p: {f: (np.repeat(v[:, None], 3, 1) * (1 + 0.02 * rng.normal(size=(len(v), 3))) if f == "pt"
                             else np.repeat(v[:, None], 3, 1)).astype(np.float32)
                         for f, v in data.truth[p].items() if f != "pdgid"}
                     for p in physics.DECAY_PRODUCTS}
    unfolded = folder / "unfolded.h5"
    write_events(unfolded, data)
    return unfolded, folder / "acceptance"


def test_histogram_cross_section_writes_fb_per_gev_everywhere(oracle, tmp_path, run_cli):
    import json

    import uproot

    from lvd.data.unfolded import read_acceptance, read_unfolded, write_acceptance
    from lvd.runs.acceptance import acceptance_weights

    unfolded, acc = oracle
    code, out, err = run_cli("histogram", unfolded, "--cross-section", "--acceptance", acc, "--observable", "pt_t_had",
                             "--bins", "0,100,200,400", "--bootstrap", "20", "-o", tmp_path / "a")
    assert code == 0, err
    text = " ".join((out + err).split())
    assert "σ in the full phase space" in text and "HEPData submission valid: True" in text
    summary = json.loads((tmp_path / "a" / "histograms.json").read_text())
    obs = summary["observables"]["pt_t_had"]
    assert obs["y_unit"] == "fb/GeV" and "error_acceptance" not in obs
    lumi = summary["cross_section"]["luminosity_inv_fb"]
    with uproot.open(tmp_path / "a" / "histograms.root") as f:
        np.testing.assert_allclose(f["pt_t_had/unfolded"].values(), obs["unfolded"], rtol=1e-12)
    table = (tmp_path / "a" / "hepdata" / "pt_t_had.yaml").read_text()
    import yaml

    docs = {d["name"]: d for d in yaml.safe_load_all((tmp_path / "a" / "hepdata" / "submission.yaml").read_text())
            if d and "name" in d}
    assert "units: fb/GeV" in table
    assert docs["pt_t_had"]["keywords"][0]["values"] == ["DSIG/DX"]
    description = " ".join(docs["pt_t_had"]["description"].split())
    assert f"{lumi:.6g} fb⁻¹" in description and "full parton-level phase space" in description
    # the file's own ACCEPTANCE group gives the same numbers as the classifiers applied on the fly
    data = read_unfolded(unfolded)
    signal, efficiency = acceptance_weights(data, acc)
    copy = tmp_path / "with_acceptance.h5"
    copy.write_bytes(unfolded.read_bytes())
    write_acceptance(copy, signal, efficiency)
    back = read_acceptance(copy, data.n_events, 3)
    np.testing.assert_allclose(back[1], efficiency, rtol=1e-6)
    code, _, err = run_cli("histogram", copy, "--cross-section", "--observable", "pt_t_had", "--bins", "0,100,200,400",
                           "--bootstrap", "20", "-o", tmp_path / "b", "--formats", "csv")
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "histograms.json").read_text())["observables"]["pt_t_had"]
    np.testing.assert_allclose(again["unfolded"], obs["unfolded"], rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--cross-section"], "no ACCEPTANCE group; a cross section needs the efficiency and fake classifiers"),
    (["--cross-section", "--acceptance", "ACC", "--luminosity", "0"], "luminosity 0 fb^-1: must be positive"),
    (["--luminosity", "3"], "--luminosity, --acceptance, --phase-space and --fiducial-cuts belong to --cross-section"),
    (["--cross-section", "--acceptance", "ACC", "--phase-space", "inside"], "--phase-space 'inside': choose full or"),
])
def test_cross_section_requests_that_cannot_be_met_are_refused(oracle, tmp_path, run_cli, args, message):
    unfolded, acc = oracle
    args = [str(acc) if a == "ACC" else a for a in args]
    code, out, err = run_cli("histogram", unfolded, *args, "--observable", "pt_t_had", "--bins", "0,100,400",
                             "-o", tmp_path / "x")
    assert code == 2 and message in " ".join((out + err).split()) and "Traceback" not in out + err
    assert not (tmp_path / "x").exists()


def test_evaluate_states_the_total_cross_section_and_the_generators(oracle, tmp_path):
    from lvd.data import channels
    from lvd.data.schema import read_generated, with_attrs, write_events
    from lvd.data.unfolded import read_unfolded, write_acceptance
    from lvd.measurement.cross_section import total_closure
    from lvd.runs.acceptance import acceptance_weights

    unfolded, acc = oracle
    data = read_unfolded(unfolded)
    sample = unfolded.with_name("all.h5")
    path = tmp_path / "u.h5"
    write_events(path, with_attrs(data, input_file=str(sample)))
    assert total_closure(path, read_unfolded(path), data.event_weights().astype(float)) is None  # no acceptance yet
    signal, efficiency = acceptance_weights(data, acc)
    write_acceptance(path, signal, efficiency)
    data = read_unfolded(path)
    x = total_closure(path, data, data.event_weights().astype(float), n_boot=10)
    lumi = data.attrs["luminosity_inv_fb"]
    e32 = efficiency.astype(np.float32).astype(float)  # the file stores float32
    assert x["unfolded"] == pytest.approx((signal.astype(np.float32) / e32.T).T.mean(1).sum() / lumi, rel=1e-6)
    g = read_generated(sample)
    assert x["truth"] == pytest.approx((g.channel == channels.SIGNAL).sum() / lumi, rel=1e-12)
    assert x["uncertainty"] == pytest.approx(np.hypot(x["stat"], x["posterior"]))


def test_fiducial_phase_space_cuts_and_closes(tmp_path):
    from lvd.data.generate import toy
    from lvd.data.schema import read_events
    from lvd.measurement.phase_space import load_phase_space

    space = load_phase_space("fiducial")
    toy.generate_file(tmp_path / "t.h5", 300, seed=6)
    truth = read_events(tmp_path / "t.h5").truth
    inside = space.mask(truth)
    pt = {p: truth[p]["pt"] for p in ("lepton", "b_lep", "b_had", "q1", "q2")}
    eta = {p: truth[p]["eta"] for p in pt}
    expected = np.all([(pt[p] >= 25) & (np.abs(eta[p]) <= 2.5) for p in pt], axis=0)
    np.testing.assert_array_equal(inside, expected)
    assert 0 < inside.mean() < 1 and "|lepton_eta| ≤ 2.5" in space.describe()
    # a draw outside counts nowhere, its efficiency may even be 0; inside, the closure of the exact experiment holds
    x, signal, eff, _, n_gen = _experiment(7)
    eff_outside_zero = np.where(x < 110.0, eff, 0.0)
    inside = x < 110.0
    lumi = n_gen / 5e5
    r, tot = cross_section(x, np.ones(len(x)), Acceptance(signal, eff_outside_zero[:, None]), lumi, EDGES,
                           n_boot=50, seed=3, inside=inside[:, None])
    assert (r.values[EDGES[:-1] >= 110.0] == 0).all()
    rng = np.random.default_rng(7)
    truth_x = rng.gamma(1.6, 40.0, n_gen)  # the same draws as _experiment's generated truth
    truth_in = np.histogram(truth_x[truth_x < 110.0], EDGES)[0] / lumi / np.diff(EDGES)
    resid = (r.values - truth_in)[EDGES[:-1] < 110.0]
    cov = r.cov_total[np.ix_(EDGES[:-1] < 110.0, EDGES[:-1] < 110.0)]
    assert stats.chi2.sf(resid @ np.linalg.solve(cov, resid), len(resid)) > 1e-3


@pytest.mark.parametrize("text, message", [
    ("cuts: {lepton_pt: {min: 25}}\n", None),
    ("cuts: []\n", "expected 'cuts:'"),
    ("cuts: {lepton_pt: {above: 25}}\n", "cut 'lepton_pt': give min, max and/or abs_max"),
    ("cuts: {lepton_pt: {min: .nan}}\n", "cut lepton_pt.min is nan, expected a number"),
    ("cuts: [unclosed\n", "not a readable YAML file"),
])
def test_fiducial_files_are_checked(tmp_path, text, message):
    from lvd.measurement.phase_space import load_phase_space

    path = tmp_path / "cuts.yaml"
    path.write_text(text)
    if message is None:
        assert load_phase_space("fiducial", path).cuts == (("lepton_pt", "min", 25.0),)
    else:
        with pytest.raises(DataError, match=message):
            load_phase_space("fiducial", path)


@pytest.mark.slow  # trains a tiny model for its worker (~1 min): the chain's parts are tested apart above
def test_a_run_trains_its_classifiers_and_unfold_attaches_them(oracle, tiny_run, tiny_file, tmp_path, run_cli):
    """`lvd train` on a --keep-unselected file ends by training ε and f into RUN/acceptance (not on a file
    without the generated events); `lvd unfold` with such a run writes ACCEPTANCE, which `lvd histogram
    --cross-section` then uses without further options."""
    import shutil

    from lvd import config
    from lvd.data.unfolded import read_acceptance
    from lvd.sampling.unfold import unfold_file
    from lvd.training.loop import train_acceptance_of_run

    unfolded, _ = oracle
    sample = unfolded.with_name("all.h5")
    run = shutil.copytree(tiny_run, tmp_path / "run")
    opts = config.load_options(None, ["acceptance.width=16", "acceptance.blocks=1", "acceptance.detector_width=16",
                                      "acceptance.detector_batch_size=128", "acceptance.detector_layers=1",
                                      "acceptance.num_heads=2", "acceptance.steps=30", "acceptance.batch_size=128",
                                      "acceptance.validate_every=10"], defaults=config.small())
    assert train_acceptance_of_run(opts, tiny_file, run) is None  # signal only: nothing to learn from
    folder = train_acceptance_of_run(opts, sample, run)
    assert (folder / "efficiency" / "meta.json").exists() and (folder / "fakes" / "params.npz").exists()
    out = tmp_path / "u.h5"
    unfold_file(run, sample, out, samples=2, steps=3)
    signal, efficiency = read_acceptance(out, 300, 2)
    assert signal.shape == (300,) and efficiency.shape == (300, 2)
    code, text, err = run_cli("histogram", out, "--cross-section", "--observable", "m_ttbar", "--bins", "300,400,600,1000",
                              "--bootstrap", "10", "-o", tmp_path / "h", "--formats", "csv")
    assert code == 0, err
