"""Smoke tests of the Pythia 8 + FastJet generator (skipped without the [generate] extra)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from tolerance import tolerance

pytest.importorskip("pythia8mc", reason="the [generate] extra (pythia8mc) is not installed")
pytest.importorskip("fastjet", reason="the [generate] extra (fastjet) is not installed")
pytest.importorskip("awkward", reason="the [generate] extra (awkward) is not installed")

from lvd import physics  # noqa: E402
from lvd.data.generate import pythia  # noqa: E402
from lvd.data.generate.top_mass import TopMass, top_width  # noqa: E402
from lvd.data.schema import read_events  # noqa: E402
from lvd.errors import LvdError  # noqa: E402

# Small batches, and MPI off in every call (~5x faster); the physics checks below do not need the UE.
FAST = pythia.PythiaConfig(batch_size=250)


def _arrays(data) -> dict[str, np.ndarray]:
    out = {f"source/{k}": v for k, v in data.source.items()}
    out |= {f"met/{k}": v for k, v in data.met.items()}
    out["mask"] = data.mask
    for p, feats in data.truth.items():
        out |= {f"truth/{p}/{k}": v for k, v in feats.items()}
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("pythia") / "smoke.h5"
    seen = []
    attrs = pythia.generate_file(path, 200, seed=1, mpi=False, cfg=FAST, on_progress=seen.append)
    return path, attrs, seen


def test_smoke_physics(smoke, capfd):
    path, attrs, seen = smoke
    data = read_events(path, require_truth=True)
    assert data.n_events == 200 and sum(seen) == 200
    # exactly one lepton, in slot 0, and >= 4 jets (>= 1 b-tag) in every event
    lep = data.source["is_electron"] + data.source["is_muon"]
    assert np.all(lep[:, 0] == 1) and np.all(lep[:, 1:] == 0)
    assert np.all(data.mask[:, 0])
    assert np.all(data.mask[:, 1:].sum(1) >= 4)
    assert np.all(data.source["btag"][:, 1:].sum(1) >= 1)
    assert np.all(np.abs(data.source["charge"][:, 0]) == 1)
    # the reconstructed lepton is the truth lepton, with the same flavour and charge
    t = data.truth
    dr = physics.delta_r(data.source["eta"][:, 0], data.source["phi"][:, 0], t["lepton"]["eta"], t["lepton"]["phi"])
    assert np.median(dr) < 0.01
    is_mu = np.abs(t["lepton"]["pdgid"]) == 13
    assert np.array_equal(data.source["is_muon"][:, 0] == 1, is_mu)
    assert np.array_equal(data.source["charge"][:, 0], -np.sign(t["lepton"]["pdgid"]))
    # truth: ids, the top and W masses, and t = W + b in the event record
    sign = np.sign(t["b_lep"]["pdgid"])
    assert np.all(np.abs(t["b_lep"]["pdgid"]) == 5) and np.all(t["b_had"]["pdgid"] == -t["b_lep"]["pdgid"])
    assert np.all(t["t_lep"]["pdgid"] == 6 * sign) and np.all(t["W_lep"]["pdgid"] == 24 * sign)
    assert np.all(np.sign(t["lepton"]["pdgid"]) == -sign)
    assert np.all(np.abs(t["q1"]["pdgid"]) <= 5) and np.all(t["q1"]["pt"] >= t["q2"]["pt"])
    p4 = data.truth_p4(("b_lep", "lepton", "neutrino", "b_had", "q1", "q2", "W_lep", "W_had", "t_lep", "t_had"))
    m = physics.mass
    assert abs(np.median(m(p4[:, 0] + p4[:, 1] + p4[:, 2])) - 172.5) < 3.0
    assert abs(np.median(m(p4[:, 3] + p4[:, 4] + p4[:, 5])) - 172.5) < 3.0
    assert abs(np.median(m(p4[:, 4] + p4[:, 5])) - 80.4) < 1.5
    assert abs(np.median(t["t_had"]["mass"]) - 172.5) < 1.0
    np.testing.assert_allclose(p4[:, 8], p4[:, 6] + p4[:, 0], rtol=1e-4, atol=2e-3 * p4[:, 8, 3:].max())
    # attrs and the cut flow
    cf = attrs["cutflow"]
    assert cf["generated"] >= cf["one_lepton"] >= cf["min_jets"] >= cf["min_btags"] == 200
    assert 0.12 < cf["min_btags"] / cf["generated"] < 0.40
    assert attrs["generator"].startswith("lvd pythia8 8.")
    assert attrs["truth"] == "event" and "-62" in attrs["truth_definition"]
    assert attrs["mpi"] is False and attrs["sqrt_s"] == 13000.0 and attrs["seed"] == 1
    assert data.attrs["cutflow"] == cf
    assert capfd.readouterr().out == ""  # Pythia and FastJet stay silent


def test_seed_reproducibility(smoke, tmp_path):
    path, _, _ = smoke
    first = _arrays(read_events(path, require_truth=True))
    again = tmp_path / "again.h5"
    pythia.generate_file(again, 200, seed=1, mpi=False, cfg=FAST)
    for k, v in _arrays(read_events(again, require_truth=True)).items():
        np.testing.assert_array_equal(v, first[k], err_msg=k)
    other = tmp_path / "other.h5"
    pythia.generate_file(other, 20, seed=2, mpi=False, cfg=FAST)
    diff = _arrays(read_events(other, require_truth=True))
    assert not np.array_equal(diff["truth/t_had/pt"], first["truth/t_had/pt"][:20])
    assert not np.array_equal(diff["source/pt"], first["source/pt"][:20])


def test_process_truth(tmp_path):
    path = tmp_path / "process.h5"
    attrs = pythia.generate_file(path, 20, seed=3, truth="process", mpi=False, cfg=FAST)
    data = read_events(path, require_truth=True)
    assert attrs["truth"] == "process" and "process record" in attrs["truth_definition"]
    names = ("b_lep", "lepton", "neutrino", "b_had", "q1", "q2", "W_lep", "W_had", "t_lep", "t_had")
    p4 = data.truth_p4(names)
    scale = p4[..., 3:].max(axis=1)  # energy scale per event for the absolute tolerance
    for res, parts in (("W_had", (4, 5)), ("W_lep", (1, 2)), ("t_lep", (0, 1, 2)), ("t_had", (3, 4, 5))):
        diff = np.abs(p4[:, names.index(res)] - p4[:, list(parts)].sum(1))
        assert np.all(diff <= 1e-4 * scale), res
    # before the shower the tt̄ system has no transverse momentum
    ptt = physics.pt(p4[:, 8] + p4[:, 9])
    assert np.all(ptt < 1e-3 * scale[:, 0])


def test_workers_deterministic(tmp_path, capfd):
    start = time.time()
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    attrs = pythia.generate_file(a, 40, seed=4, workers=2, mpi=False, cfg=pythia.PythiaConfig(batch_size=100))
    pythia.generate_file(b, 40, seed=4, workers=2, mpi=False, cfg=pythia.PythiaConfig(batch_size=100))
    da, db = (_arrays(read_events(p, require_truth=True)) for p in (a, b))
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    assert attrs["workers"] == 2 and len(set(attrs["pythia_seeds"])) == 2
    assert time.time() - start < 60
    assert capfd.readouterr().out == ""  # worker processes are silent too


def test_missing_extra_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes `import pythia8mc` raise ImportError
    with pytest.raises(LvdError, match=r"pip install 'lvd\[generate\]'"):
        pythia.generate_file(tmp_path / "x.h5", 10)
    assert not (tmp_path / "x.h5").exists()


# --- the top mass ----------------------------------------------------------------------------------

def _decay_product_top_masses(data) -> np.ndarray:
    """``[2N]`` masses of t_lep and t_had rebuilt from their decay products."""
    res = physics.mass(physics.resonances(data.truth_p4()))
    return res[:, [physics.RESONANCES.index("t_lep"), physics.RESONANCES.index("t_had")]].ravel()


def _bootstrap_se(a: np.ndarray, b: np.ndarray, n_boot: int = 400) -> float:
    """Bootstrap standard error of ``median(a) - median(b)`` for independent samples."""
    rng = np.random.default_rng(0)
    diffs = [np.median(rng.choice(a, a.size)) - np.median(rng.choice(b, b.size)) for _ in range(n_boot)]
    return float(np.std(diffs))


def test_fixed_top_mass_shifts_the_truth(smoke, tmp_path):
    path, _, _ = smoke  # 172.5 GeV
    heavy_path = tmp_path / "175.h5"
    attrs = pythia.generate_file(heavy_path, 200, seed=2, mpi=False, cfg=replace(FAST, top=TopMass(175.0)))
    nominal, heavy = read_events(path), read_events(heavy_path)
    # the truth tops move by the change of the pole mass: those rebuilt from the decay products (their median
    # sits ~0.7 GeV below the pole, the same at both masses) and the event record's own tops
    for a, b in ((_decay_product_top_masses(heavy), _decay_product_top_masses(nominal)),
                 (np.concatenate([heavy.truth[t]["mass"] for t in ("t_lep", "t_had")]),
                  np.concatenate([nominal.truth[t]["mass"] for t in ("t_lep", "t_had")]))):
        shift = np.median(a) - np.median(b)
        assert abs(shift - 2.5) < 5.0 * _bootstrap_se(a, b), shift
    for data, mass in ((nominal, 172.5), (heavy, 175.0)):
        np.testing.assert_array_equal(data.generator["top_mass"], np.float32(mass))
        np.testing.assert_array_equal(data.generator["top_width"], np.float32(top_width(mass)))
    assert attrs["top_mass"] == 175.0 and "6:m0 = 175.0" in attrs["pythia_settings"]
    assert "6:doForceWidth = on" in attrs["pythia_settings"]


def test_mass_range_draws_one_mass_per_batch_reproducibly(tmp_path):
    cfg = pythia.PythiaConfig(batch_size=100, top=TopMass(mass_range=(169.0, 176.0)))
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    attrs = pythia.generate_file(a, 60, seed=5, mpi=False, cfg=cfg)
    pythia.generate_file(b, 60, seed=5, mpi=False, cfg=cfg)
    data = read_events(a)
    m = data.generator["top_mass"]
    assert 169.0 <= m.min() and m.max() <= 176.0
    # one mass per batch: constant runs of events, several batches in 60 events of ~20 % selection efficiency
    assert len(np.unique(m)) >= 2 and np.count_nonzero(np.diff(m)) == len(np.unique(m)) - 1
    # float32 storage of the mass (ε/2, ×3.5 through Γ ∝ ~m^3.5) and of the width (ε/2): 2.25 ε at most
    np.testing.assert_allclose(data.generator["top_width"], top_width(m.astype(np.float64)), rtol=tolerance(np.float32, ops=3))
    # the event record's tops sit at their batch's mass
    diff = np.concatenate([data.truth[t]["mass"] - m for t in ("t_lep", "t_had")])
    q25, q75 = np.quantile(diff, [0.25, 0.75])
    assert abs(np.median(diff)) < 5.0 * np.pi * (q75 - q25) / (4.0 * np.sqrt(diff.size)) + 0.03
    assert attrs["top_mass_range"] == [169.0, 176.0] and not any(s.startswith("6:m0") for s in attrs["pythia_settings"])
    again = read_events(b)
    for k in ("top_mass", "top_width"):
        np.testing.assert_array_equal(again.generator[k], data.generator[k])
    for k, v in _arrays(data).items():
        np.testing.assert_array_equal(_arrays(again)[k], v, err_msg=k)


def test_reinitialising_gives_the_events_of_a_fresh_pythia():
    """What the range relies on: init() at a new mass forgets the previous run (its mass, its random stream)."""
    used = pythia.PythiaGenerator(pythia.PythiaConfig(mpi=False), seed=5)
    used.pythia.nextBatch(20)
    used._init_at(175.0, 777)
    fresh = pythia.PythiaGenerator(pythia.PythiaConfig(mpi=False, top=TopMass(mass_range=(170.0, 180.0))), seed=6)
    fresh._init_at(175.0, 777)
    ak = used.ak
    a, b = (pythia._Flat(ak, g.pythia.nextBatch(20)["prt"]) for g in (used, fresh))
    for k in pythia._Flat.FIELDS:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)


def test_pythia_own_width_scales_like_the_rule():
    """Pythia's own top width (its formula with QCD corrections, not forced) grows with the mass as lvd's LO rule."""
    p8, _, _ = pythia._backends()

    def own_width(mass: float) -> float:
        p = p8.Pythia("", False)
        for s in ("Print:quiet = on", "Top:gg2ttbar = on", "PartonLevel:all = off", f"6:m0 = {mass}"):
            assert p.readString(s)
        assert p.init()
        return p.particleData.mWidth(6)

    assert own_width(175.0) / own_width(172.5) == pytest.approx(top_width(175.0) / top_width(172.5), rel=1e-3)


def test_every_channel_with_the_generated_truth(tmp_path):
    """--keep-unselected: every W decay at Pythia's branching fractions, each event labelled by what its Ws
    decayed to; the selected events are the generated rows that pass, in order; the cross section is Pythia's
    estimate with its error, and the luminosity follows from it."""
    from lvd.data import channels
    from lvd.data.schema import read_generated

    path = tmp_path / "all.h5"
    attrs = pythia.generate_file(path, 40, seed=4, mpi=False, cfg=FAST, keep_unselected=True)
    g, d = read_generated(path), read_events(path)
    assert g.n_events == attrs["cutflow"]["generated"] - attrs["n_malformed"]
    rows = np.flatnonzero(g.pass_selection)
    np.testing.assert_array_equal(g.truth["b_had"]["pt"][rows], d.truth["b_had"]["pt"])
    np.testing.assert_array_equal(g.channel[rows], d.generator["channel"])
    lep, q1 = np.abs(g.truth["lepton"]["pdgid"]), np.abs(g.truth["q1"]["pdgid"])
    expected = np.select([np.isin(lep, (11, 13)) & (q1 <= 5), (lep == 15) & (q1 <= 5), lep >= 11],
                         [channels.LEPTON_JETS, channels.TAU_JETS, channels.DILEPTON], channels.ALL_HADRONIC)
    np.testing.assert_array_equal(g.channel, expected)
    # the four channels at their binomial spread around Pythia's own branching fractions (PDG-like)
    f = channels.fractions()
    np.testing.assert_array_less(np.abs(np.bincount(g.channel, minlength=4) / g.n_events - f),
                                 5 * np.sqrt(f * (1 - f) / g.n_events) + 0.01)
    # each side's slots belong to one top: b and top of the same sign, the W's charge that of its down-type
    # daughter (ℓ⁺ or d̄ from a W⁺); the two sides are the two tops
    ids = {p: g.truth[p]["pdgid"] for p in ("b_lep", "lepton", "b_had", "W_lep", "W_had", "t_lep", "t_had")}
    np.testing.assert_array_equal(np.sign(ids["b_lep"]), np.sign(ids["t_lep"]))
    np.testing.assert_array_equal(np.sign(ids["b_had"]), np.sign(ids["t_had"]))
    np.testing.assert_array_equal(np.sign(ids["W_lep"]), -np.sign(ids["lepton"]))
    np.testing.assert_array_equal(ids["t_lep"], -ids["t_had"])
    # Pythia's LO tt̄ cross section at 13 TeV is ~500 pb
    assert 400 < attrs["cross_section_pb"] < 650 and 0 < attrs["cross_section_error_pb"] < 0.1 * attrs["cross_section_pb"]
    assert attrs["luminosity_inv_fb"] == pytest.approx(attrs["cutflow"]["generated"]
                                                       / (1000 * attrs["cross_section_pb"]), rel=1e-12)
    with pytest.raises(LvdError, match="truth='event'"):
        pythia.generate_file(tmp_path / "p.h5", 5, seed=4, mpi=False, truth="process", cfg=FAST, keep_unselected=True)
