"""The toy generator against closed forms: cross sections, conservation, masses, helicity, reproducibility."""

import h5py
import numpy as np
import pytest
from scipy import integrate
from tolerance import tolerance

from lvd import physics
from lvd.data.generate import toy
from lvd.data.schema import read_events


@pytest.fixture(scope="module")
def internals():
    """Truth four-vectors in float64 straight from the generator (before writing)."""
    gen = toy.ToyGenerator(seed=3)
    rng = np.random.default_rng(7)
    prop = gen.hard.propose(rng, 60_000)
    w = gen.hard.weight(prop)
    keep = rng.random(w.shape) * gen.w_max < w
    vectors, pdgid, _, _, _ = gen.partons(rng, {k: v[keep] for k, v in prop.items()})
    return vectors, pdgid


@pytest.mark.parametrize("shat", [350.0**2, 500.0**2, 1500.0**2])
def test_partonic_cross_sections_match_closed_form(shat):
    m = physics.M_TOP
    rho = 4 * m**2 / shat
    beta = np.sqrt(1 - rho)

    def integrated(channel):
        f = lambda c: toy.matrix_element_sq((1 - beta * c) / 2, (1 + beta * c) / 2, rho)[channel]  # noqa: E731
        return beta / (32 * np.pi * shat) * (4 * np.pi) ** 2 * integrate.quad(f, -1, 1)[0]

    # σ̂/αs² (Combridge 1979 / ESW eq. 10.14)
    qq = 4 * np.pi * beta * (2 + rho) / (27 * shat)
    gg = np.pi / (3 * shat) * ((1 + rho + rho**2 / 16) * np.log((1 + beta) / (1 - beta)) - beta * (7 / 4 + 31 * rho / 16))
    assert integrated(1) == pytest.approx(qq, rel=1e-9)
    assert integrated(0) == pytest.approx(gg, rel=1e-9)


def test_four_momentum_conserved_in_decays(internals):
    v, _ = internals
    for top, b, w, f1, f2 in (("t_lep", "b_lep", "W_lep", "lepton", "neutrino"),
                              ("t_had", "b_had", "W_had", "q1", "q2")):
        scale = v[top][:, 3:4]
        np.testing.assert_allclose((v[b] + v[w] - v[top]) / scale, 0.0, atol=1e-10)
        np.testing.assert_allclose((v[f1] + v[f2] - v[w]) / scale, 0.0, atol=1e-10)


def test_conservation_survives_the_file(toy_file):
    data = read_events(toy_file, require_truth=True)
    p = {name: physics.p4_from_ptetaphim(*(data.truth[name][k].astype(np.float64)
                                           for k in ("pt", "eta", "phi", "mass")))
         for name in data.truth}
    for top, parts in (("t_lep", ("b_lep", "lepton", "neutrino")), ("t_had", ("b_had", "q1", "q2")),
                       ("W_lep", ("lepton", "neutrino")), ("W_had", ("q1", "q2"))):
        total = sum(p[x] for x in parts)
        # float32 storage rounds pT, η, φ, m by ε/2 each; η's rounding moves a momentum by up to |η| of that.
        # Measured (3 files of 8000 events): four-vectors ≤ 1.6 ε·(1 + |η|), masses ≤ 2.6 ε·(1 + |η|) relative,
        # |η| the largest of the system; a daughter missing from the sum is off by O(1).
        eta = np.max([np.abs(data.truth[x]["eta"]) for x in (*parts, top)], axis=0)
        bound = tolerance(np.float32, ops=4, scale=1 + eta.astype(np.float64))
        rel = np.abs(total - p[top]).max(axis=1) / p[top][:, 3]
        assert (rel < bound).all(), (top, (rel / bound).max())
        # the masses too
        m = data.truth[top]["mass"].astype(np.float64)
        assert (np.abs(physics.mass(total) - m) < bound * m).all(), top


def test_masses_are_breit_wigner_at_configured_values(internals):
    v, _ = internals
    cfg = toy.ToyConfig()
    m_top, gamma_top = cfg.top.mass, float(cfg.top.width_at(cfg.top.mass))
    for name, m0, width in (("t_lep", m_top, gamma_top), ("t_had", m_top, gamma_top),
                            ("W_lep", cfg.m_w, cfg.gamma_w), ("W_had", cfg.m_w, cfg.gamma_w)):
        m = physics.mass(v[name])
        q25, q50, q75 = np.quantile(m, [0.25, 0.5, 0.75])
        assert q50 == pytest.approx(m0, abs=0.05 * width + 0.02), name
        # a Breit–Wigner's interquartile range is its full width (truncation at ±10Γ shrinks it ~6 %)
        assert q75 - q25 == pytest.approx(width, rel=0.12), name


def test_w_helicity_fractions():
    """⟨cosθ*⟩ of the charged lepton in the W frame, w.r.t. the W direction in the top frame, is −FL/2."""
    cfg = toy.ToyConfig()
    rng = np.random.default_rng(11)
    n = 40_000
    top = physics.p4_from_ptetaphim(rng.uniform(0, 400, n), rng.uniform(-3, 3, n), rng.uniform(-3, 3, n),
                                    np.full(n, cfg.top.mass))
    m_w = np.full(n, cfg.m_w)
    d = toy.decay_top(rng, top, m_w, 4.8, np.full(n, 0.000511), np.zeros(n), cfg)
    w_in_top = physics.boost(d["W"], -physics.velocity(top))
    lep_in_w = physics.boost(physics.boost(d["down"], -physics.velocity(top)), -physics.velocity(w_in_top))
    axis = w_in_top[:, :3] / np.linalg.norm(w_in_top[:, :3], axis=1, keepdims=True)
    cos = (lep_in_w[:, :3] * axis).sum(1) / np.linalg.norm(lep_in_w[:, :3], axis=1)
    se = cos.std() / np.sqrt(n)
    assert cos.mean() == pytest.approx(-cfg.fl / 2, abs=4 * se)
    # second moment: F0·(1/5) + FL·(2/5)
    assert (cos**2).mean() == pytest.approx(cfg.f0 / 5 + cfg.fl * 2 / 5, abs=4 * (cos**2).std() / np.sqrt(n))
    # exact decay kinematics at any top momentum
    np.testing.assert_allclose(physics.mass(d["down"] + d["up"]), cfg.m_w, rtol=1e-9)
    np.testing.assert_allclose(physics.mass(d["W"] + d["b"]), cfg.top.mass, rtol=1e-9)


def test_charges_and_flavours_consistent(internals):
    _, ids = internals
    # leptonic b and the charged lepton: b (5) goes with ℓ⁺ (pdgid < 0), b̄ with ℓ⁻
    assert np.all(np.sign(ids["b_lep"]) == -np.sign(ids["lepton"]))
    assert np.all(ids["b_lep"] == -ids["b_had"])
    assert set(np.unique(np.abs(ids["lepton"]))) == {11, 13}
    assert np.all(np.abs(ids["neutrino"]) == np.abs(ids["lepton"]) + 1)


def test_selection_holds_in_the_file(toy_file):
    d = read_events(toy_file)
    lepton = (d.source["is_electron"] + d.source["is_muon"]) > 0.5
    assert np.all(lepton[:, 0]) and not lepton[:, 1:].any()
    assert np.all(d.source["pt"][:, 0] > 25.0)
    jets = d.mask & ~lepton
    assert np.all(jets.sum(1) >= 4)
    assert np.all(d.source["pt"][jets] > 25.0) and np.all(np.abs(d.source["eta"][jets]) < 2.5)
    assert np.all(((d.source["btag"] > 0.5) & jets).sum(1) >= 1)
    # jets are pT-ordered after the lepton
    pt = np.where(jets, d.source["pt"], -1)[:, 1:]
    assert np.all(np.diff(pt, axis=1) <= 0)
    cf = d.attrs["cutflow"]
    # counted through the last written event: the efficiencies are exact
    assert cf["generated"] > cf["one_lepton"] > cf["min_jets"] > cf["min_btags"] == d.n_events


def _datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_same_seed_same_file_different_seed_different(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    toy.generate_file(a, 3000, seed=5)
    toy.generate_file(b, 3000, seed=5)
    toy.generate_file(c, 3000, seed=6)
    da, db, dc = _datasets(a), _datasets(b), _datasets(c)
    assert da.keys() == db.keys() == dc.keys()
    for k in da:
        np.testing.assert_array_equal(da[k], db[k])
    assert not np.array_equal(da["TRUTH/lepton/pt"], dc["TRUTH/lepton/pt"])


def test_fewer_events_is_a_prefix(tmp_path):
    small, big = tmp_path / "s.h5", tmp_path / "b.h5"
    toy.generate_file(small, 1500, seed=9)
    toy.generate_file(big, 9000, seed=9)
    ds, db = _datasets(small), _datasets(big)
    for k in ds:
        np.testing.assert_array_equal(ds[k], db[k][: len(ds[k])])


def test_met_tracks_the_neutrino(toy_file):
    d = read_events(toy_file, require_truth=True)
    nu = d.truth["neutrino"]
    mx = d.met["met"] * np.cos(d.met["phi"]) - nu["pt"] * np.cos(nu["phi"])
    # parametric detector: resolution of tens of GeV, no bias beyond a few GeV
    assert abs(np.median(mx)) < 3.0
    assert 8.0 < np.std(mx) < 40.0


def _merge_reference(p4, flav, valid, radius):
    """One event at a time, pair by pair: the definition ``merge_close`` vectorises."""
    p4, flav, valid = p4.copy(), flav.copy(), valid.copy()
    for e in range(len(p4)):
        order = sorted(range(p4.shape[1]), key=lambda s: -physics.pt(p4[e, s]) if valid[e, s] else 1.0)
        p4[e], flav[e], valid[e] = p4[e, order], flav[e, order], valid[e, order]
        eta, phi = physics.eta(p4[e]), physics.phi(p4[e])
        for j in range(1, p4.shape[1]):
            for i in range(j):
                if valid[e, i] and valid[e, j] and physics.delta_r(eta[i], phi[i], eta[j], phi[j]) < radius:
                    p4[e, i] += p4[e, j]
                    flav[e, i] = max(flav[e, i], flav[e, j])
                    valid[e, j] = False
    return p4, flav, valid


def test_merge_close_matches_the_event_by_event_definition():
    rng = np.random.default_rng(0)
    n, slots = 400, 12
    # few partons in a small (η, φ) patch, so that chains of merges happen; some events use every slot
    count = np.where(rng.random(n) < 0.2, slots, rng.integers(2, 8, n))
    valid = np.arange(slots) < count[:, None]
    pt = rng.uniform(5, 100, (n, slots))
    p4 = physics.p4_from_ptetaphim(pt, rng.normal(0, 0.5, (n, slots)), rng.normal(np.pi, 0.5, (n, slots)),
                                   np.zeros((n, slots)))
    p4 = np.where(valid[..., None], p4, 0.0)
    flav = rng.choice([0, 4, 5], (n, slots))
    got = toy.merge_close(p4, flav, valid, 0.4)
    want = _merge_reference(p4, flav, valid, 0.4)
    assert (got[2] == want[2]).all() and (got[1][got[2]] == want[1][want[2]]).all()
    np.testing.assert_allclose(got[0][got[2]], want[0][want[2]], rtol=1e-12)
    assert 0 < (~got[2] & valid).sum() < valid.sum()  # merges happened, not everything merged


@pytest.mark.parametrize("pt, is_b", [(20.0, False), (60.0, False), (60.0, True)])
def test_jet_response_tail_has_the_configured_mean(pt, is_b):
    # the core is Gaussian with mean μ; with probability p = min(1, p0·(30/pT)^k) the jet keeps a uniform
    # fraction of it, so E[scale] = μ·(1 − p/2) (the 0.05 floor is > 5σ away at these pT)
    cfg = toy.detector.TOY_DETECTOR
    n = 400_000
    p4 = np.zeros((n, 1, 4))
    p4[..., 0], p4[..., 3] = pt, pt
    flavour = np.full((n, 1), 5 if is_b else 0)
    scale = toy.detector.jet_scale(cfg, p4, flavour, np.random.default_rng(1))[:, 0]
    mu = cfg.response_b if is_b else cfg.response_light
    p = min(1.0, (cfg.tail_probability_b if is_b else cfg.tail_probability) * (30.0 / pt) ** cfg.tail_power)
    assert scale.mean() == pytest.approx(mu * (1 - p / 2), abs=4 * scale.std() / np.sqrt(n))


def test_detector_stages_agree_with_the_cut_flow():
    gen = toy.ToyGenerator(seed=4)
    rng = gen._rng(0)
    prop = gen.hard.propose(rng, 30_000)
    w = gen.hard.weight(prop)
    keep = rng.random(w.shape) * gen.w_max < w
    _, _, cand, leptons, _ = gen.partons(rng, {k: v[keep] for k, v in prop.items()})
    reco = toy.detector.simulate(cand, gen.detector, rng, leptons=leptons)
    counts = np.bincount(reco.stage, minlength=4)
    assert counts[0] == 0  # the toy hands only one-lepton events to the jets
    cf = reco.cutflow
    assert [cf["one_lepton"], cf["min_jets"], cf["min_btags"]] == [counts[1:].sum(), counts[2:].sum(), counts[3]]
    assert (reco.selected == (reco.stage == 3)).all() and reco.mask.shape[0] == counts[3]
    # the packed jets are exactly the selected ones: ≥ min_jets real jets, ≥ min_btags tags among them
    assert (reco.mask[:, 1:].sum(1) >= gen.detector.min_jets).all()
    assert (reco.source["btag"][:, 1:].sum(1) >= gen.detector.min_btags).all()


def test_row_gathers_equal_numpy_indexing():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(50, 7, 4))
    order = np.argsort(rng.random((50, 7)), axis=1)[:, :5]
    index = rng.choice(50, 20)
    np.testing.assert_array_equal(toy.detector.reorder(a, order), np.take_along_axis(a, order[..., None], axis=1))
    np.testing.assert_array_equal(toy.detector.reorder(a[..., 0] > 0, order),
                                  np.take_along_axis(a[..., 0] > 0, order, axis=1))
    np.testing.assert_array_equal(toy.detector.rows(a, index), a[index])


def test_through_selected_counts_up_to_the_last_written_event():
    stage = np.array([0, 3, 1, 2, 3, 0, 3, 1], np.int8)
    assert toy.detector.through_selected(stage, 2).tolist() == [0, 3, 1, 2, 3]
    assert toy.detector.cutflow_of(toy.detector.through_selected(stage, 2)) == {
        "generated": 5, "one_lepton": 4, "min_jets": 3, "min_btags": 2}
    assert len(toy.detector.through_selected(stage, 0)) == 0
    assert toy.detector.through_selected(stage, 3).tolist() == stage.tolist()  # all written: trailing events count
