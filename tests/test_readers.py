"""Readers of Delphes, NanoAOD and SPANet files: the truth comes back, the selection counts are exact, and
every bad input is one line and exit status 2."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

pytest.importorskip("uproot", reason="the [hep] extra (uproot) is not installed")

import root_files as rf  # noqa: E402

from lvd import physics  # noqa: E402
from lvd.data.readers import selection, truth  # noqa: E402
from lvd.data.schema import FileLayout, read_events  # noqa: E402

TRUTH = (*physics.DECAY_PRODUCTS, "W_lep", "W_had", "t_lep", "t_had")


@pytest.fixture(scope="module")
def toy(tiny_file):
    """2000 toy events, every one of them selected by the generator, and a plan of failures/categories."""
    data = read_events(tiny_file, require_truth=True)
    return data, rf.make_plan(data.n_events, seed=5)


@pytest.fixture(scope="module")
def delphes_file(toy, tmp_path_factory):
    path = tmp_path_factory.mktemp("delphes") / "events.root"
    rf.write_delphes(path, *toy, seed=1, chunk=700)  # several baskets
    return path


@pytest.fixture(scope="module")
def nanoaod_file(toy, tmp_path_factory):
    path = tmp_path_factory.mktemp("nanoaod") / "events.root"
    rf.write_nanoaod(path, *toy, seed=2)
    return path


def _expected_cutflow(plan: rf.Plan, jets_ok=True, btags_ok=True) -> dict[str, int]:
    semi = ~np.isin(plan.kind, rf.CATEGORIES)
    lep = semi & ~np.isin(plan.kind, ("veto_lepton", "soft_lepton"))
    jets = lep & (plan.kind != "few_jets") & jets_ok
    return {"generated": int(semi.sum()), "one_lepton": int(lep.sum()), "min_jets": int(jets.sum()),
            "min_btags": int((jets & (plan.kind != "no_btag") & btags_ok).sum())}


def _check_truth(converted, toy_data, keep):
    for p in TRUTH:
        for f in ("pt", "eta", "phi", "mass"):
            np.testing.assert_allclose(converted.truth[p][f], toy_data.truth[p][f][keep], rtol=1e-6, atol=1e-6,
                                       err_msg=f"{p}.{f}")
        np.testing.assert_array_equal(converted.truth[p]["pdgid"], toy_data.truth[p]["pdgid"][keep])
    # the decay products' masses, and the resonances rebuilt from them
    p4 = converted.truth_p4()
    res = physics.resonances(p4)
    for i, name in enumerate(("W_lep", "W_had", "t_lep", "t_had")):
        np.testing.assert_allclose(physics.mass(res[:, i]), physics.mass(toy_data.truth_p4()[keep][:, list(
            physics.RESONANCE_DAUGHTERS[name])].sum(1)), rtol=1e-5, err_msg=name)


def test_delphes_truth_selection_and_weights(toy, delphes_file, tmp_path, run_cli):
    data, plan = toy
    out = tmp_path / "out.h5"
    code, _, err = run_cli("convert", "delphes", delphes_file, out, "--chunk", "600")
    assert code == 0, err
    conv = read_events(out, require_truth=True)
    keep = plan.kind == ""
    assert conv.n_events == keep.sum()
    assert conv.attrs["cutflow"] == _expected_cutflow(plan)
    assert conv.attrs["truth_cutflow"] == {"read": data.n_events, "semileptonic": int((~np.isin(plan.kind, rf.CATEGORIES)).sum()),
                                           **{c: plan.count(c) for c in rf.CATEGORIES}}
    _check_truth(conv, data, keep)
    # detector level: the lepton in slot 0, the toy's jets by pT after it, MET and the (signed) weights
    for k in ("pt", "eta", "phi", "btag", "is_electron", "is_muon", "charge"):
        np.testing.assert_allclose(conv.source[k], data.source[k][keep], rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(conv.source["mass"][:, 1:], data.source["mass"][keep][:, 1:], rtol=1e-6)
    np.testing.assert_array_equal(conv.mask, data.mask[keep])
    np.testing.assert_allclose(conv.met["met"], data.met["met"][keep], rtol=1e-6)
    np.testing.assert_array_equal(conv.weights, plan.weights[keep].astype(np.float32))
    assert (conv.weights < 0).any()


@pytest.mark.parametrize("option, value, recovered", [("--jet-pt", "15", "few_jets"), ("--min-btags", "0", "no_btag"),
                                                      ("--veto-lepton-pt", "16", "veto_lepton")])
def test_delphes_cut_options(toy, delphes_file, tmp_path, run_cli, option, value, recovered):
    data, plan = toy
    out = tmp_path / "out.h5"
    code, _, err = run_cli("convert", "delphes", delphes_file, out, option, value)
    assert code == 0, err
    keep = np.isin(plan.kind, ("", recovered))
    conv = read_events(out, require_truth=True)
    assert conv.n_events == keep.sum()
    _check_truth(conv, data, keep)


def test_nanoaod_truth_overlap_removal_and_no_truth(toy, nanoaod_file, tmp_path, run_cli):
    data, plan = toy
    out = tmp_path / "out.h5"
    code, _, err = run_cli("convert", "nanoaod", nanoaod_file, out)
    assert code == 0, err
    # NanoAOD jets hold the lepton: jets within ΔR 0.4 of it are dropped, also the toy's own
    src = data.source
    dr = physics.delta_r(src["eta"][:, 1:], src["phi"][:, 1:], src["eta"][:, :1], src["phi"][:, :1])
    jet = data.mask[:, 1:] & (dr >= 0.4)
    jets_ok, btags_ok = jet.sum(1) >= 4, (jet & (src["btag"][:, 1:] > 0.5)).sum(1) >= 1
    conv = read_events(out, require_truth=True)
    assert conv.attrs["cutflow"] == _expected_cutflow(plan, jets_ok, btags_ok)
    keep = (plan.kind == "") & jets_ok & btags_ok
    _check_truth(conv, data, keep)
    assert np.all(conv.source["btag"][:, 1:][conv.mask[:, 1:]] <= 1)
    np.testing.assert_array_equal(conv.weights, plan.weights[keep].astype(np.float32))

    # real data: no TRUTH group, every event enters the selection
    code, _, err = run_cli("convert", "nanoaod", nanoaod_file, tmp_path / "data.h5", "--no-truth",
                           "--lepton-jet-dr", "0")
    assert code == 0, err
    with h5py.File(tmp_path / "data.h5") as f:
        assert "TRUTH" not in f
    nt = read_events(tmp_path / "data.h5")
    assert nt.attrs["cutflow"]["generated"] == data.n_events
    # without overlap removal the lepton's own jet counts (and is b-tagged): only the lepton cuts remain
    assert nt.n_events == (~np.isin(plan.kind, ("veto_lepton", "soft_lepton"))).sum()


def test_truth_of_pythia_records_matches_the_generator():
    """On real Pythia 8 event records the reader's chain rules find the generator's own truth particles."""
    pytest.importorskip("pythia8mc")
    from lvd.data.generate import pythia

    gen = pythia.PythiaGenerator(pythia.PythiaConfig(batch_size=150, mpi=False), seed=3)
    batch = gen.next_batch(np.random.default_rng(0), keep_internals=True)
    f, idx = batch.internals["flat"], batch.internals["truth_index"]
    rec = truth.Record(f.counts, f.id, f.mother1, f.pt, f.eta, f.phi, f.m)
    found, category = truth.extract(rec)
    assert np.all(category == truth.SEMILEPTONIC)
    for p in (*physics.DECAY_PRODUCTS, "t_lep", "t_had"):  # W: the generator takes its first copy after recoil
        np.testing.assert_array_equal(found[p]["pdgid"], f.id[idx[p]])
        np.testing.assert_array_equal(found[p]["pt"], f.pt[idx[p]].astype(np.float32))
        np.testing.assert_array_equal(found[p]["mass"], f.m[idx[p]].astype(np.float32))


def test_selection_counts_and_packing_by_hand():
    """Three events: selected (jets out of pT order, one beyond max_jets), a vetoed second lepton, too few jets."""
    J = selection.Jagged
    jets = J(np.array([6, 4, 3]), {
        "pt": np.array([30, 80, 26, 50, 40, 90, 30, 30, 30, 30, 100, 100, 100.0]),
        "eta": np.zeros(13), "phi": np.zeros(13), "mass": np.ones(13),
        "btag": np.array([0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], bool)})
    leps = J(np.array([1, 2, 1]), {"pt": np.array([40, 40, 12.0, 30]), "eta": np.zeros(4), "phi": np.ones(4),
                                   "mass": np.zeros(4), "charge": np.array([1, -1, 1, 1.0]),
                                   "flavour": np.array([11, 13, 13, 13])})
    s = selection.select(jets, leps, selection.Cuts(max_jets=5))
    np.testing.assert_array_equal(s.stage, [3, 0, 1])
    np.testing.assert_array_equal(s.index, [0])
    np.testing.assert_array_equal(s.source["pt"][0], [40, 90, 80, 50, 40, 30])  # by pT; the 6th jet (26) is beyond max_jets
    np.testing.assert_array_equal(s.source["btag"][0], [0, 0, 1, 0, 0, 0])
    assert s.source["is_electron"][0, 0] == 1 and s.source["charge"][0, 0] == 1 and s.mask[0].all()


def test_bad_inputs_are_one_line(toy, delphes_file, nanoaod_file, tmp_path, run_cli):
    import uproot

    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(delphes_file.read_bytes()[: delphes_file.stat().st_size // 2])
    empty = tmp_path / "empty.root"
    with uproot.recreate(empty) as f:
        f.mktree("Delphes", {"Jet.PT": "var * float32"})
    hdf5 = tmp_path / "not_root.root"
    with h5py.File(hdf5, "w") as f:
        f["x"] = 1
    cases = [
        (("delphes", nanoaod_file), "no tree 'Delphes' (the file has Events)"),
        (("nanoaod", delphes_file), "no tree 'Events'"),
        (("delphes", truncated), "truncated"),
        (("delphes", empty), "has no events"),
        (("delphes", hdf5), "not a readable ROOT file"),
        (("delphes", tmp_path / "missing.root"), "no such file"),
        (("nanoaod", nanoaod_file, "--btag-branch", "Jet_btagPNetB"), "no branch 'Jet_btagPNetB'"),
        (("delphes", delphes_file, "--weight-branch", "Weight.Weight"), "no branch 'Weight.Weight'"),
        (("delphes", delphes_file, "--min-jets", "12"), "max_jets"),
        (("delphes", delphes_file, "--particles", "GenParticle"), "convert with --no-truth"),
        (("delphes", delphes_file, "--chunk", "0"), "chunk size 0"),
        (("delphes", delphes_file, "--min-jets", "10", "--max-eta", "0.01"), "no event passed the selection"),
    ]
    for (kind, inp, *extra), needle in cases:
        out = tmp_path / "out.h5"
        code, _, err = run_cli("convert", kind, inp, out, *extra)
        assert code == 2 and needle in err, (kind, inp, err)
        if "passed the selection" in needle:  # known only once the whole file is read: the bar is hidden
            err = err.strip() + "\n"
        assert err.count("\n") == 1 and err.startswith("lvd: error:"), err  # one line, no progress bar before it
        assert not out.exists()


def _changed(path, tree: str, dst, **changes):
    """A copy of a tree with branches changed: ``changes`` maps branch (``.`` as ``__``) -> f(awkward array)."""
    branches = rf.read_tree(path, tree)
    for name, change in changes.items():
        name = name.replace("__", ".")
        branches[name] = change(branches[name])
    rf.write_tree(dst, tree, branches)
    return dst


def _set(entry: int, value: float, first_only: bool = True):
    """In entry ``entry``: the first object's value (every object's) set to ``value``."""
    import awkward as ak

    def change(a):
        if a.ndim == 1:
            v = np.array(a, np.float64)
            v[entry] = value
            return ak.Array(v)
        counts, v = np.asarray(ak.num(a)), np.array(ak.flatten(a), np.float64)
        start = int(np.cumsum(counts)[entry - 1]) if entry else 0
        v[start: start + (1 if first_only else int(counts[entry]))] = value
        return ak.unflatten(v, counts)
    return change


def test_nonfinite_met_and_weights_are_refused_before_reading(toy, delphes_file, nanoaod_file, tmp_path, run_cli):
    """A NaN/inf MET or weight makes the event meaningless (or the sample's normalisation wrong): the file is
    refused, naming branch and entry (counted from the file's start, whatever the chunk), before any bar."""
    cases = [("delphes", _changed(delphes_file, "Delphes", tmp_path / "met.root", MissingET__MET=_set(1234, np.nan)),
              "branch 'MissingET.MET' is NaN at entry 1234"),
             ("delphes", _changed(delphes_file, "Delphes", tmp_path / "w.root", Event__Weight=_set(5, -np.inf)),
              "branch 'Event.Weight' is -inf at entry 5"),
             ("nanoaod", _changed(nanoaod_file, "Events", tmp_path / "phi.root", MET_phi=_set(1999, np.inf)),
              "branch 'MET_phi' is inf at entry 1999"),
             ("nanoaod", _changed(nanoaod_file, "Events", tmp_path / "gw.root", genWeight=_set(700, np.nan)),
              "branch 'genWeight' is NaN at entry 700")]
    for kind, inp, needle in cases:
        out = tmp_path / "out" / "out.h5"
        code, _, err = run_cli("convert", kind, inp, out, "--chunk", "600")
        assert code == 2 and needle in err and str(inp) in err and err.count("\n") == 1, err
        assert not out.parent.exists() or not list(out.parent.iterdir())


def test_nonfinite_objects_and_truth_drop_the_event_and_are_counted(toy, delphes_file, nanoaod_file, tmp_path,
                                                                    run_cli):
    """A NaN/inf object or truth value drops its event (it fails the first cut), counted by branch and printed;
    a NaN in an object the reader does not identify (NanoAOD: failing the ID) changes nothing."""
    data, plan = toy
    kept = np.flatnonzero(plan.kind == "")
    a, b = int(kept[10]), int(kept[900])
    inp = _changed(delphes_file, "Delphes", tmp_path / "d.root", Jet__PT=_set(a, np.nan),
                   Particle__Eta=_set(b, np.inf, first_only=False), Jet__Eta=_set(b, np.nan))
    code, _, err = run_cli("convert", "delphes", inp, tmp_path / "d.h5", "--chunk", "600")
    assert code == 0, err
    conv = read_events(tmp_path / "d.h5", require_truth=True)
    keep = (plan.kind == "") & ~np.isin(np.arange(data.n_events), (a, b))
    assert conv.n_events == keep.sum()
    _check_truth(conv, data, keep)
    expected = _expected_cutflow(plan)
    dropped = {k: expected[k] - 2 for k in ("one_lepton", "min_jets", "min_btags")}  # they fail the first cut
    assert conv.attrs["cutflow"] == {**expected, **dropped}
    # an event counts once, under each branch it has a NaN/inf in
    assert conv.attrs["dropped_nonfinite"] == {"events": 2, "branches": {"Jet.Eta": 1, "Jet.PT": 1, "Particle.Eta": 1}}
    assert "dropped 2 events with NaN/inf values (Jet.Eta 1, Jet.PT 1, Particle.Eta 1)" in " ".join(err.split())

    # NanoAOD: a NaN isolation of a muon passing the tight ID drops its event; a NaN of an electron failing
    # the ID (the writer adds one, cutBased 1, to some events) does not
    import awkward as ak

    has_e = np.asarray(ak.num(rf.read_tree(nanoaod_file, "Events")["Electron_pt"])) > 0
    muon_events = (plan.kind == "") & (data.source["is_muon"][:, 0] > 0.5)
    loose, other = int(np.flatnonzero(muon_events & has_e)[2]), int(np.flatnonzero(muon_events & ~has_e)[3])
    inp = _changed(nanoaod_file, "Events", tmp_path / "n.root", Electron_eta=_set(loose, np.nan),
                   Muon_pfRelIso04_all=_set(other, np.nan))
    code, _, err = run_cli("convert", "nanoaod", inp, tmp_path / "n.h5", "--no-truth")
    assert code == 0, err
    conv = read_events(tmp_path / "n.h5")
    assert conv.attrs["dropped_nonfinite"] == {"events": 1, "branches": {"Muon_pfRelIso04_all": 1}}
    assert conv.attrs["cutflow"]["generated"] == data.n_events


def test_spanet_convert_and_direct_read(toy, tmp_path, run_cli):
    from lvd import config
    from lvd.data.representation import layout

    data, _ = toy
    spanet = tmp_path / "spanet.h5"
    rf.write_spanet(spanet, data)
    code, _, err = run_cli("convert", "spanet", spanet, tmp_path / "bare.h5")
    assert code == 2 and "missing dataset INPUTS/Source/MASK" in err and err.strip().count("\n") == 0

    code, _, err = run_cli("convert", "spanet", spanet, tmp_path / "lvd.h5", *rf.SPANET_FLAGS, "--chunk", "700")
    assert code == 0, err
    conv = read_events(tmp_path / "lvd.h5", require_truth=True)
    for k in ("pt", "eta", "mass", "btag", "is_electron", "is_muon", "charge"):
        np.testing.assert_array_equal(conv.source[k], data.source[k])
    real = data.mask
    np.testing.assert_allclose(conv.source["phi"][real], data.source["phi"][real], atol=1e-6)  # from sin/cos
    np.testing.assert_allclose(conv.met["met"], data.met["met"])
    for p in physics.DECAY_PRODUCTS:
        np.testing.assert_array_equal(conv.truth[p]["pdgid"], data.truth[p]["pdgid"])
        np.testing.assert_array_equal(conv.truth[p]["pt"], data.truth[p]["pt"])

    # the same names as training options: lvd train / unfold read the file as it is
    opts = config.load_options(None, ["data.source_group=INPUTS/Momenta",
                                      "data.feature_names=[is_electron=etag,is_muon=utag,charge=qtag,met=MET]",
                                      "data.particle_names=[" + ",".join(f"{k}={v}" for k, v in rf.SPANET_NAMES.items()) + "]"])
    direct = read_events(spanet, layout(opts.data), require_truth=True)
    np.testing.assert_array_equal(direct.source["is_muon"], data.source["is_muon"])
    np.testing.assert_array_equal(direct.truth["q1"]["eta"], data.truth["q1"]["eta"])


def test_spanet_empty_file_and_padding(toy, tmp_path, run_cli):
    """A file of no events is refused naming it (not the output), before any bar; whatever a file holds in its
    padded objects (NaN here) is written as zeros."""
    data, _ = toy
    empty = tmp_path / "empty.h5"
    rf.write_spanet(empty, data.take(slice(0, 0)))
    code, _, err = run_cli("convert", "spanet", empty, tmp_path / "out" / "none.h5", *rf.SPANET_FLAGS)
    assert code == 2 and err == f"lvd: error: {empty}: no events (INPUTS/Momenta/MASK has 0 rows)\n", err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())

    padded = tmp_path / "padded.h5"
    rf.write_spanet(padded, data)
    event = int(np.argmin(data.mask[:, -1]))  # one with a padded last slot
    with h5py.File(padded, "a") as f:
        f["INPUTS/Momenta/pt"][event, -1] = np.nan
    code, _, err = run_cli("convert", "spanet", padded, tmp_path / "padded_lvd.h5", *rf.SPANET_FLAGS)
    assert code == 0, err
    conv = read_events(tmp_path / "padded_lvd.h5")
    assert conv.source["pt"][event, -1] == 0 and np.isfinite(conv.source["pt"]).all()


def test_layout_names_are_checked():
    from lvd.errors import LvdError

    with pytest.raises(LvdError, match="lvd_name=name_in_file"):
        FileLayout(feature_names=("is_muon",))
    with pytest.raises(LvdError, match="named twice"):
        FileLayout(particle_names=("q1=a", "q1=b"))
