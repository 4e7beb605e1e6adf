"""Ensembles: `lvd train --ensemble N`, pooled unfolding of several runs, and the model uncertainty (the spread of
the members' histograms) in `lvd histogram` and the closure tests (docs/histogram.md, "Ensembles")."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import TINY

from lvd import physics
from lvd.data.schema import read_events, write_events
from lvd.measurement import closure as cl
from lvd.measurement.histogram import histogram

# what every tiny training and unfolding here uses (the physics monitor would compile a sampler per member)
TRAIN = [*TINY, "train.physics_events=0"]
SAMPLE = ["-k", "2", "--steps", "2", "--sampler", "ddim"]


@pytest.fixture(scope="module")
def ensemble(tiny_file, tmp_path_factory):
    """A 2-member ensemble of the tiny LVD trained with `lvd train ... --ensemble 2` (runs/ens-0, runs/ens-1),
    and the CLI's output."""
    import sys

    from lvd.cli import main as cli

    runs = tmp_path_factory.mktemp("ensemble") / "runs"
    argv = ["lvd", "train", "small", str(tiny_file), *TRAIN, "--ensemble", "2", "-n", "ens", "--runs-dir", str(runs),
            "--quiet"]
    old, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
    finally:
        sys.argv = old
    assert done.value.code in (0, None)
    return runs


@pytest.mark.slow  # trains a 2-member ensemble (~60 s on 2 cores, shared by the three)
def test_ensemble_members_differ_only_in_seed_and_a_rerun_continues(ensemble, tiny_file, run_cli):
    import jax

    from lvd import config
    from lvd.runs.run import Checkpoint
    from lvd.training.ensemble import plan

    a, b = (Checkpoint.open(ensemble / f"ens-{m}") for m in (0, 1))
    assert (a.options.name, b.options.name) == ("ens-0", "ens-1")
    assert b.options.train.seed == a.options.train.seed + 1
    assert config.differences(b.options, a.options).keys() == {"name", "train.seed"}
    wa, wb = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(c.ema()[1].main)]) for c in (a, b))
    assert not np.allclose(wa, wb)  # other initial parameters, batches and noise
    # a rerun of the same command trains nothing: both members reached their steps
    args = ["train", "small", tiny_file, *TRAIN, "--ensemble", "2", "-n", "ens", "--runs-dir", ensemble, "--quiet"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert err.count("already trained") == 2 and not list(ensemble.glob("ens-*/version_1"))
    # what a rerun would do: more steps resume both, a missing member is started, other options start anew
    opts = config.load_options("small", [*TRAIN, "name=ens"])
    assert [m.status for m in plan(opts, 2, ensemble)] == ["done", "done"]
    longer = config.load_options("small", [*TRAIN, "name=ens", "train.steps=20"])
    assert [(m.status, m.checkpoint) for m in plan(longer, 2, ensemble)] == [
        ("resume", a.run_dir / "checkpoints" / "latest" / "10"), ("resume", b.run_dir / "checkpoints" / "latest" / "10")]
    assert [m.status for m in plan(opts, 3, ensemble)] == ["done", "done", "new"]
    other = config.load_options("small", [*TRAIN, "name=ens", "model.hidden=32"])
    assert [m.status for m in plan(other, 2, ensemble)] == ["new", "new"]
    # refused: one member, and -c (one run) with --ensemble
    for extra in (["--ensemble", "1"], ["--ensemble", "2", "-c", ensemble / "ens-0"]):
        code, _, err = run_cli("train", "small", tiny_file, *TRAIN, "-n", "x", "--runs-dir", ensemble, *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # trains a 2-member ensemble (~60 s on 2 cores, shared by the three)
def test_pooled_unfolding_is_each_members_own_unfolding(ensemble, tiny_file, tmp_path, run_cli):
    """K·M draws per event; member m's block [m·K, (m+1)·K) is, bit for bit, what run m's own sampler gives with
    the draws numbered from m·K (same K, same batch size): for member 0 that is exactly `lvd unfold RUN_0` at
    K draws. Members' noise differs (member 1 unfolded alone, draws numbered from 0, differs from its block)."""
    from lvd.sampling.unfold import Unfolder, daughters_to_particles, unfold_file

    runs = [ensemble / "ens-0", ensemble / "ens-1"]
    out = tmp_path / "pooled.h5"
    code, _, err = run_cli("unfold", *runs, tiny_file, out, *SAMPLE, "sample.batch_size=256")
    assert code == 0, err
    pooled = read_events(out)
    k = 2
    assert pooled.unfolded["b_had"]["pt"].shape == (pooled.n_events, 2 * k)
    assert pooled.attrs["ensemble_members"] == [str(r.absolute()) for r in runs]
    assert pooled.attrs["ensemble_samples_per_member"] == k and pooled.attrs["samples_per_event"] == 2 * k
    single = tmp_path / "single.h5"
    unfold_file(runs[0], tiny_file, single, samples=k, sampler="ddim", steps=2, batch_size=256)
    alone = read_events(single).unfolded
    u1 = Unfolder.load(runs[1])
    arrays = u1.prepare(read_events(tiny_file))
    kw = dict(sampler="ddim", steps=2, batch_size=256)
    own = daughters_to_particles(u1.sample_arrays(arrays, k, sample_offset=k, **kw))
    for p in physics.DECAY_PRODUCTS:
        for f in ("pt", "eta", "phi"):
            np.testing.assert_array_equal(pooled.unfolded[p][f][:, :k], alone[p][f])
            np.testing.assert_array_equal(pooled.unfolded[p][f][:, k:], own[p][f])
    from_zero = daughters_to_particles(u1.sample_arrays(arrays.take(slice(0, 100)), k, **kw))
    assert not np.allclose(from_zero["b_had"]["pt"], own["b_had"]["pt"][:100])


@pytest.mark.slow  # trains a 2-member ensemble (~60 s on 2 cores, shared by the three)
def test_incompatible_runs_are_refused(ensemble, tiny_file, tmp_path, run_cli):
    from lvd.runs.run import Checkpoint

    ck = Checkpoint.open(ensemble / "ens-0")
    other = ck.export(tmp_path / "paper", normalizer={**ck.meta["normalizer"], "parton_representation": "paper"})
    out = tmp_path / "u.h5"
    code, _, err = run_cli("unfold", ensemble / "ens-0", other, tiny_file, out, *SAMPLE)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "parton representation" in err, err
    assert not out.exists()
    code, _, err = run_cli("unfold", ensemble / "ens-0", tiny_file)  # DATA and OUT are the last two paths
    assert code == 2 and "RUN [RUN ...] DATA OUT" in err


def test_arguments_split_into_runs_data_out_and_overrides():
    from pathlib import Path

    from lvd.cli.unfold import split_arguments

    assert split_arguments(["r", "d.h5", "o.h5", "sample.steps=3"]) == ([Path("r")], Path("d.h5"), Path("o.h5"),
                                                                        ["sample.steps=3"])
    assert split_arguments(["runs/a=1", "r2", "d.h5", "sample.seed=2", "o.h5"]) == (
        [Path("runs/a=1"), Path("r2")], Path("d.h5"), Path("o.h5"), ["sample.seed=2"])


# --- the model uncertainty -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shifted_file(tiny_file, tmp_path_factory):
    """500 toy events, 2 members × K = 3 draws: every draw is the truth, except that member 1's lepton pT is the
    truth's + 4 GeV (all three draws). Signed weights."""
    data = read_events(tiny_file, require_truth=True).take(slice(0, 500))
    k, delta = 3, 4.0
    data.unfolded = {p: {f: np.repeat(v[:, None], 2 * k, 1).astype(np.float32) for f, v in data.truth[p].items()
                         if f != "pdgid"} for p in physics.DECAY_PRODUCTS}
    data.unfolded["lepton"]["pt"][:, k:] += delta
    data.weights = np.where(np.random.default_rng(0).random(data.n_events) < 0.1, -1.0, 1.0).astype(np.float32)
    data.attrs = {**data.attrs, "ensemble_members": ["runs/a-0", "runs/a-1"], "ensemble_samples_per_member": k}
    path = tmp_path_factory.mktemp("shifted") / "shifted.h5"
    write_events(path, data)
    return path, data, delta


def test_model_covariance_of_shifted_members_is_the_closed_form(shifted_file):
    """Two members whose histograms are h₀ = hist(t) and h₁ = hist(t + δ): their covariance (ddof = 1) is
    d dᵀ / 2 with d = h₁ − h₀, the central value (h₀ + h₁)/2; other observables get no model uncertainty."""
    _, data, delta = shifted_file
    t = np.asarray(data.truth["lepton"]["pt"], np.float64)
    w = data.weights.astype(np.float64)
    edges = np.array([20.0, 30, 40, 60, 90, 150])
    x = np.asarray(data.unfolded["lepton"]["pt"], np.float64)
    h, _ = histogram(x, w, edges, n_boot=20, members=2)
    d = np.histogram(t + delta, edges, weights=w)[0] - np.histogram(t, edges, weights=w)[0]
    assert np.abs(d).max() > 5  # the shift moves events between bins
    np.testing.assert_allclose(h.cov_model, np.outer(d, d) / 2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.values, np.histogram(t, edges, weights=w)[0] + d / 2, rtol=1e-12)
    np.testing.assert_allclose(h.cov_total, h.cov_stat + h.cov_posterior + h.cov_model, rtol=1e-12)
    np.testing.assert_allclose(h.error("model"), np.abs(d) / np.sqrt(2), rtol=1e-12)
    # normalised: each member's histogram on its own, so the model covariance conserves the integral
    hd, _ = histogram(x, w, edges, n_boot=20, density=True, members=2)
    np.testing.assert_allclose(np.diff(edges) @ hd.cov_model, 0.0, atol=1e-15)
    same, _ = histogram(np.asarray(data.unfolded["b_had"]["pt"], np.float64), w, edges, n_boot=20, members=2)
    np.testing.assert_array_equal(same.cov_model, 0.0)


def test_histogram_command_writes_the_model_component(shifted_file, tmp_path, run_cli):
    import uproot

    path, data, _ = shifted_file
    out = tmp_path / "h"
    formats = "root,csv" + (",hepdata" if _has("hepdata_lib") else "")
    code, _, err = run_cli("histogram", path, "--observable", "lepton_pt", "--bins", "20,30,40,60,90,150",
                                "-o", out, "--bootstrap", "20", "--formats", formats)
    assert code == 0, err
    assert "ensemble of 2 members" in err and "(model " in err
    entry = json.loads((out / "histograms.json").read_text())["observables"]["lepton_pt"]
    cov = {c: np.asarray(entry[f"covariance_{c}"]) for c in ("model", "total")}
    assert np.diag(cov["model"]).max() > 0
    np.testing.assert_allclose(np.asarray(entry["unfolded_members"]).mean(0), entry["unfolded"], rtol=1e-12)
    np.testing.assert_allclose(np.square(entry["error_total"]), np.square(entry["error_stat"])
                               + np.square(entry["error_posterior"]) + np.square(entry["error_model"]), rtol=1e-10)
    with uproot.open(out / "histograms.root") as f:
        np.testing.assert_allclose(np.sqrt(f["lepton_pt/unfolded_model"].variances()), entry["error_model"])
        np.testing.assert_allclose(f["lepton_pt/covariance_model"].values(), cov["model"])
        np.testing.assert_allclose(f["lepton_pt/covariance_total"].values(), cov["total"])
    csv = np.genfromtxt(out / "csv" / "lepton_pt.csv", delimiter=",", names=True)
    np.testing.assert_allclose(csv["error_model"], entry["error_model"], rtol=1e-12)
    if _has("hepdata_lib"):
        import yaml

        table = yaml.safe_load((out / "hepdata" / "lepton_pt.yaml").read_text())
        errors = [e for v in table["dependent_variables"][0]["values"] for e in v["errors"]]
        assert {e["label"] for e in errors} == {"stat", "posterior", "model"}
    # the same file without the ensemble attributes: one run's draws, no model component anywhere
    bare = tmp_path / "bare.h5"
    data.attrs = {k: v for k, v in data.attrs.items() if not k.startswith("ensemble_")}
    write_events(bare, data)
    code, _, err = run_cli("histogram", bare, "--observable", "lepton_pt", "--bins", "20,30,40,60,90,150",
                           "-o", tmp_path / "b", "--bootstrap", "20", "--formats", "root,csv")
    assert code == 0, err
    entry = json.loads((tmp_path / "b" / "histograms.json").read_text())["observables"]["lepton_pt"]
    assert not {"error_model", "covariance_model", "unfolded_members"} & set(entry)
    with uproot.open(tmp_path / "b" / "histograms.root") as f:
        assert "lepton_pt/unfolded_model" not in f and "lepton_pt/covariance_model" not in f
    assert "error_model" not in (tmp_path / "b" / "csv" / "lepton_pt.csv").read_text().splitlines()[0]
    # malformed: K·M does not match the draws
    with h5py.File(bare, "a") as f:
        f.attrs["ensemble_members"] = json.dumps(["a", "b", "c"])
        f.attrs["ensemble_samples_per_member"] = 3
    code, _, err = run_cli("histogram", bare, "--observable", "lepton_pt", "--bins", "20,40", "-o", tmp_path / "c")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "3 ensemble members" in err, err


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_closure_with_the_model_component_covers_a_biased_ensemble():
    """Exact Gaussian posteriors (t ~ N(0, 1), y = t + N(0, 0.5²)) drawn by 3 members biased by −0.05, +0.10 and
    +0.25: the pooled draws are off by +0.10, far beyond the sample's precision, and the total χ² without the
    members' spread fails (χ²/ndf 15.9); with it (the spread, 0.15, covers the truth) χ²/ndf 0.63 ≤ 1. The stat
    and paired tests do not use the stated covariance and are unchanged."""
    rng = np.random.default_rng(7)
    n, k, sigma = 20_000, 4, 0.5
    t = rng.normal(size=n)
    y = t + sigma * rng.normal(size=n)
    mean, sd = y / (1 + sigma**2), sigma / np.sqrt(1 + sigma**2)
    bias = np.array([-0.05, 0.10, 0.25])
    draws = np.concatenate([mean[:, None] + sd * rng.normal(size=(n, k)) + b for b in bias], axis=1)
    w = np.ones(n)
    one = cl.closure(t, draws, w, n_boot=100, seed=1)
    pooled = cl.closure(t, draws, w, n_boot=100, seed=1, members=3)
    assert one["chi2_total"]["p_value"] < 1e-6 and one["chi2_total"]["chi2_per_ndf"] > 3, one["chi2_total"]
    assert pooled["chi2_total"]["chi2_per_ndf"] <= 1.0, pooled["chi2_total"]
    assert pooled["members"] == 3 and len(pooled["error_model"]) == len(pooled["edges"]) - 1
    assert pooled["chi2_paired"] == one["chi2_paired"] and pooled["chi2_stat"] == one["chi2_stat"]
    # lvd evaluate's closure section: every observable with the model component, and the report's column
    from lvd.evaluation.report import closure_markdown

    section = cl.closure_all({"x": t}, {"x": draws}, w, names=("x",), n_boot=100, members=3)
    assert section["members"] == 3
    assert section["observables"]["x"]["chi2_total"]["chi2_per_ndf"] <= 1.0
    assert "model / total" in "\n".join(closure_markdown(section, with_plot=False))


def test_evaluate_states_the_ensemble_and_its_model_component(shifted_file, tmp_path):
    """`lvd evaluate` on an ensemble's file: the source names the members, every closure entry has the model
    component (lepton pT: the members' 4 GeV shift; b_had pT: members that agree, none) in its total."""
    from lvd.evaluation.report import evaluate

    path, _, _ = shifted_file
    result = evaluate(path, tmp_path / "report", n_boot=2, plots="none", c2st_steps=5, closure_boot=20)
    assert result["source"]["ensemble_members"] == ["runs/a-0", "runs/a-1"]
    assert result["source"]["ensemble_samples_per_member"] == 3
    c = result["closure"]
    assert c["members"] == 2
    assert max(c["observables"]["lepton_pt"]["error_model"]) > 0
    assert max(c["observables"]["b_had_pt"]["error_model"]) == 0
    assert "model / total" in (tmp_path / "report" / "report.md").read_text()
