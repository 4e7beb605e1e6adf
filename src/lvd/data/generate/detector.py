"""Parametric Delphes-ATLAS-like detector and the semi-leptonic selection (docs/design.md §7), shared by all generators.

A generator hands over the visible truth-level objects (:class:`Candidates`): jet candidates with their
flavour (partons for the toy, FastJet particle jets for Pythia), lepton candidates with an isolation flag,
and the remaining visible transverse momentum. :func:`simulate` smears, tags and selects them and returns the
detector-level arrays in lvd's file layout. Numbers follow the Delphes ATLAS card (jet radius 0.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lvd import physics


@dataclass
class Candidates:
    """Visible truth-level objects of N events. Invalid (padding) slots are zero.

    Shapes: ``jet_p4 [N, J, 4]``, ``jet_flavour [N, J]`` (5 b, 4 c, 0 light/gluon), ``jet_valid [N, J]``,
    ``lep_p4 [N, L, 4]``, ``lep_pdgid [N, L]`` (signed), ``lep_isolated [N, L]``, ``lep_valid [N, L]``,
    ``soft_pxy [N, 2]`` (true visible momentum outside jets and leptons), ``soft_sumet [N]``.
    """

    jet_p4: np.ndarray
    jet_flavour: np.ndarray
    jet_valid: np.ndarray
    lep_p4: np.ndarray
    lep_pdgid: np.ndarray
    lep_isolated: np.ndarray
    lep_valid: np.ndarray
    soft_pxy: np.ndarray
    soft_sumet: np.ndarray


@dataclass(frozen=True)
class DetectorConfig:
    """Detector response and selection. ``jet_model='parton'`` maps partons to jets (toy);
    ``'particle'`` smears already-clustered particle jets with the calorimeter resolution (Pythia)."""

    jet_model: Literal["parton", "particle"] = "particle"
    # parton -> jet response (toy): mean pT response and σ/pT = sqrt(a²/pT + c²) (⊕ b_extra for b jets)
    response_light: float = 0.955
    response_b: float = 0.93
    resolution_stochastic: float = 0.79
    resolution_constant: float = 0.054
    resolution_b_extra: float = 0.12
    # low-side response tail (out-of-cone radiation, semileptonic b decays, hadronisation losses): with
    # probability min(1, tail_probability·(30 GeV / pT)^tail_power) the jet keeps only a uniform fraction
    # of its core response (b jets: tail_probability_b; they also lose semileptonic-decay neutrinos)
    tail_probability: float = 0.0
    tail_probability_b: float = 0.0
    tail_power: float = 1.0
    # jets entering MET, and reconstructed at all
    jet_min_pt_met: float = 20.0
    jet_max_eta: float = 4.9
    # lepton reconstruction
    lepton_min_pt: float = 10.0
    lepton_max_eta: float = 2.5
    lepton_eff_central: float = 0.95
    lepton_eff_forward: float = 0.85
    lepton_eff_eta_split: float = 1.5
    # MET: per-component Gaussian noise sqrt(const² + (coeff² · ΣET_soft))
    met_noise_const: float = 0.0
    met_noise_soft: float = 0.5
    # selection
    sel_lepton_pt: float = 25.0
    sel_jet_pt: float = 25.0
    sel_max_eta: float = 2.5
    min_jets: int = 4
    min_btags: int = 1
    max_jets: int = 10


# toy: response tails fitted to Pythia (MPI on) parton -> smeared-jet response, P(jet pT > 25 GeV) per
# parton-pT bin (scripts/calibrate_toy.py)
TOY_DETECTOR = DetectorConfig(jet_model="parton", met_noise_const=9.0, met_noise_soft=0.0,
                              tail_probability=0.25, tail_probability_b=0.5, tail_power=2.0)
PYTHIA_DETECTOR = DetectorConfig(jet_model="particle")


@dataclass
class Reconstructed:
    """Selected events in lvd's Source/Met layout plus bookkeeping.

    ``source``: feature -> ``[S, 1 + max_jets]`` with the lepton in slot 0 and jets pT-ordered after it;
    ``mask [S, 1 + max_jets]``; ``met``: feature -> ``[S]``; ``selected [N]`` bool over the input events;
    ``stage [N]``: how many cuts each input event passed (0 none, 1 one lepton, 2 + jets, 3 + b-tags = selected);
    ``cutflow``: counts after each cut.
    """

    source: dict[str, np.ndarray]
    mask: np.ndarray
    met: dict[str, np.ndarray]
    selected: np.ndarray
    stage: np.ndarray
    cutflow: dict[str, int]


# --- array helpers ----------------------------------------------------------------------------
# np.take on the leading axis is several times faster than fancy indexing, and a flattened np.take several
# times faster than np.take_along_axis; the generators gather event rows and reorder objects constantly.

def rows(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``a[index]`` for an integer ``index`` over the leading (event) axis."""
    return np.take(a, index, axis=0)


def reorder(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``a[e, order[e, j], ...]`` for ``a [N, P, ...]`` and ``order [N, Q]`` (``np.take_along_axis`` on axis 1)."""
    n, p = a.shape[:2]
    flat = (order + (np.arange(n) * p)[:, None]).ravel()
    return np.take(a.reshape(n * p, *a.shape[2:]), flat, axis=0).reshape(*order.shape, *a.shape[2:])


def cutflow_of(stage: np.ndarray) -> dict[str, int]:
    """Cut-flow counts from per-event stages (:attr:`Reconstructed.stage`)."""
    return {"generated": len(stage), "one_lepton": int((stage >= 1).sum()), "min_jets": int((stage >= 2).sum()),
            "min_btags": int((stage >= 3).sum())}


def through_selected(stage: np.ndarray, n_selected: int) -> np.ndarray:
    """The events (in generation order) a file accounts for when it keeps the first ``n_selected`` selected
    events of a chunk: all of them if it keeps every selected one, else those up to and including the
    ``n_selected``-th selected one. Their cut flow makes the file's efficiencies exact."""
    selected = np.flatnonzero(stage >= 3)
    if n_selected >= len(selected):
        return stage
    return stage[: selected[n_selected - 1] + 1] if n_selected > 0 else stage[:0]


# --- response functions -----------------------------------------------------------------------

def btag_efficiency(pt: np.ndarray, flavour: np.ndarray) -> np.ndarray:
    """Delphes ATLAS b-tagging efficiency per jet for true flavour 5 (b), 4 (c) or other."""
    eff_b = 0.80 * np.tanh(0.003 * pt) * 30.0 / (1.0 + 0.086 * pt)
    eff_c = 0.20 * np.tanh(0.02 * pt) / (1.0 + 0.0034 * pt)
    eff_l = 0.002 + 7.3e-6 * pt
    return np.where(flavour == 5, eff_b, np.where(flavour == 4, eff_c, eff_l))


def hcal_resolution(e: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
    """Delphes ATLAS HCAL energy resolution σ(E) in GeV."""
    central = np.sqrt((0.0302 * e) ** 2 + 0.5205**2 * e + 1.59**2)
    endcap = np.sqrt((0.0500 * e) ** 2 + 0.706**2 * e)
    forward = np.sqrt((0.0942 * e) ** 2 + 0.075**2 * e)
    return np.where(abs_eta <= 1.7, central, np.where(abs_eta <= 3.2, endcap, forward))


def jet_scale(cfg: DetectorConfig, p4: np.ndarray, flavour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative smearing factor for each jet four-vector, ``[N, J, 4] -> [N, J]``."""
    pt = np.maximum(physics.pt(p4), 1e-3)
    z = rng.standard_normal(pt.shape)
    if cfg.jet_model == "parton":
        is_b = flavour == 5
        mean = np.where(is_b, cfg.response_b, cfg.response_light)
        rel = np.sqrt(cfg.resolution_stochastic**2 / pt + cfg.resolution_constant**2 + is_b * cfg.resolution_b_extra**2)
        core = np.maximum(mean + mean * rel * z, 0.05)
        if cfg.tail_probability <= 0.0 and cfg.tail_probability_b <= 0.0:
            return core
        u = rng.random((2, *pt.shape))
        p_tail = np.where(is_b, cfg.tail_probability_b, cfg.tail_probability) * (30.0 / pt) ** cfg.tail_power
        tail = u[0] < np.minimum(p_tail, 1.0)
        return np.where(tail, np.maximum(core * u[1], 0.05), core)
    e = np.maximum(p4[..., 3], 1e-3)
    return np.maximum(1.0 + hcal_resolution(e, np.abs(physics.eta(p4))) / e * z, 0.05)


def lepton_scale(p4: np.ndarray, pdgid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Electron ECAL energy resolution, muon tracker pT resolution (Delphes ATLAS), ``[N, L] -> [N, L]``."""
    e = np.maximum(p4[..., 3], 1e-3)
    pt = physics.pt(p4)
    aeta = np.abs(physics.eta(p4))
    sigma_e = np.sqrt((0.0017 * e) ** 2 + 0.101**2 * e) / e
    sigma_mu = np.where(aeta <= 0.5, np.hypot(0.01, 1.0e-4 * pt),
                        np.where(aeta <= 1.5, np.hypot(0.015, 1.5e-4 * pt), np.hypot(0.025, 3.5e-4 * pt)))
    rel = np.where(np.abs(pdgid) == 11, sigma_e, sigma_mu)
    return np.maximum(1.0 + rel * rng.standard_normal(rel.shape), 0.05)


# --- the detector -----------------------------------------------------------------------------

@dataclass
class Leptons:
    """Reconstructed lepton candidates of N events: smeared ``p4 [N, L, 4]``, ``reco [N, L]`` (reconstructed
    and identified), ``selected [N, L]`` (also inside the selection cuts), ``one_lepton [N]`` (exactly one
    selected lepton and no other reconstructed one)."""

    p4: np.ndarray
    reco: np.ndarray
    selected: np.ndarray
    one_lepton: np.ndarray

    def take(self, index: np.ndarray) -> Leptons:
        return Leptons(*(rows(a, index) for a in (self.p4, self.reco, self.selected, self.one_lepton)))


def reconstruct_leptons(p4: np.ndarray, pdgid: np.ndarray, isolated: np.ndarray, valid: np.ndarray,
                        cfg: DetectorConfig, rng: np.random.Generator) -> Leptons:
    """Smear, apply the identification efficiency and the lepton part of the selection (``[N, L]`` inputs)."""
    leps = p4 * lepton_scale(p4, pdgid, rng)[..., None]
    lpt, leta = physics.pt(leps), physics.eta(leps)
    eff = np.where(np.abs(leta) <= cfg.lepton_eff_eta_split, cfg.lepton_eff_central, cfg.lepton_eff_forward)
    reco = (valid & isolated & (rng.random(lpt.shape) < eff)
            & (lpt > cfg.lepton_min_pt) & (np.abs(leta) < cfg.lepton_max_eta))
    selected = reco & (lpt > cfg.sel_lepton_pt) & (np.abs(leta) < cfg.sel_max_eta)
    one_lepton = (selected.sum(1) == 1) & (reco.sum(1) == 1)
    return Leptons(p4=leps, reco=reco, selected=selected, one_lepton=one_lepton)


def simulate(cand: Candidates, cfg: DetectorConfig, rng: np.random.Generator,
             leptons: Leptons | None = None) -> Reconstructed:
    """Smear, tag, compute MET and select. Every random draw comes from ``rng`` in a fixed order.

    ``leptons``: the events' leptons already reconstructed (a generator may reconstruct them first to skip
    building the rest of events without exactly one lepton); by default they are reconstructed here.
    """
    n = cand.jet_p4.shape[0]
    if leptons is None:
        leptons = reconstruct_leptons(cand.lep_p4, cand.lep_pdgid, cand.lep_isolated, cand.lep_valid, cfg, rng)
    one_lepton = leptons.one_lepton
    # jets: only events with one lepton can be selected, so only theirs are smeared and tagged
    kept = np.flatnonzero(one_lepton)
    jet_p4, flavour = rows(cand.jet_p4, kept), rows(cand.jet_flavour, kept)
    jets = jet_p4 * jet_scale(cfg, jet_p4, flavour, rng)[..., None]
    jpt, jeta = physics.pt(jets), physics.eta(jets)
    jet_reco = rows(cand.jet_valid, kept) & (np.abs(jeta) < cfg.jet_max_eta) & (jpt > 1e-3)
    sel_jet = jet_reco & (jpt > cfg.sel_jet_pt) & (np.abs(jeta) < cfg.sel_max_eta)
    # b-tagging (tracker, |η| < 2.5) matters only for selected jets: draw it for those alone
    e, k = np.nonzero(sel_jet & (np.abs(jeta) < 2.5))
    btag = np.zeros(jpt.shape, bool)
    btag[e, k] = rng.random(len(e)) < btag_efficiency(jpt[e, k], flavour[e, k])

    # selection
    enough = sel_jet.sum(1) >= cfg.min_jets
    passed = enough & ((sel_jet & btag).sum(1) >= cfg.min_btags)
    enough_jets = np.zeros(n, bool)
    enough_jets[kept] = enough
    selected = np.zeros(n, bool)
    selected[kept] = passed

    # MET of the selected events: minus everything reconstructed, minus the soft term, plus noise. Jets below
    # the MET threshold count with their true momentum as part of the soft term (the calorimeter sees them).
    idx, sub = np.flatnonzero(selected), np.flatnonzero(passed)  # the same events, as rows of n and of kept
    jets, jpt, jeta, sel_jet, btag = (rows(a, sub) for a in (jets, jpt, jeta, sel_jet, btag))
    jet_reco, true_jets = rows(jet_reco, sub), rows(jet_p4, sub)
    lep = leptons.take(idx)
    met_jet = jet_reco & (jpt > cfg.jet_min_pt_met)
    soft_jet = jet_reco & ~met_jet
    visible = (np.where(met_jet[..., None], jets[..., :2], 0.0).sum(1)
               + np.where(soft_jet[..., None], true_jets[..., :2], 0.0).sum(1)
               + np.where(lep.reco[..., None], lep.p4[..., :2], 0.0).sum(1)
               + rows(cand.soft_pxy, idx))
    # an electron that is not reconstructed as a lepton still deposits its energy in the calorimeter
    lep_true, lep_id = rows(cand.lep_p4, idx), rows(cand.lep_pdgid, idx)
    lost_e = rows(cand.lep_valid, idx) & ~lep.reco & (np.abs(lep_id) == 11)
    visible += np.where(lost_e[..., None], lep_true[..., :2], 0.0).sum(1)
    sumet_soft = (rows(cand.soft_sumet, idx) + np.where(soft_jet, physics.pt(true_jets), 0.0).sum(1)
                  + np.where(lost_e, physics.pt(lep_true), 0.0).sum(1))
    noise = np.sqrt(cfg.met_noise_const**2 + cfg.met_noise_soft**2 * sumet_soft)[:, None]
    met_xy = -visible + noise * rng.standard_normal((len(idx), 2))

    # pack the selected events: lepton in slot 0, jets pT-ordered after it
    s_pt = np.where(sel_jet, jpt, -1.0)
    order = np.argsort(-s_pt, axis=1, kind="stable")[:, : cfg.max_jets]
    take = lambda a: reorder(a, order)  # noqa: E731
    jet_mask = take(sel_jet)
    j4 = reorder(jets, order)
    lep_slot = np.argmax(lep.selected, axis=1)
    rng_s = np.arange(len(idx))
    l4 = lep.p4[rng_s, lep_slot]
    lid = lep_id[rng_s, lep_slot]
    m_j = j4.shape[1]
    src_p4 = np.concatenate([l4[:, None], j4], axis=1)  # [S, 1 + J, 4]
    mask = np.concatenate([np.ones((len(idx), 1), bool), jet_mask], axis=1)
    zeros = np.zeros((len(idx), m_j))
    source = {
        "pt": physics.pt(src_p4), "eta": physics.eta(src_p4), "phi": physics.phi(src_p4),
        "mass": np.maximum(physics.mass(src_p4), 0.0),
        "btag": np.concatenate([np.zeros((len(idx), 1)), take(btag)], axis=1),
        "is_electron": np.concatenate([(np.abs(lid) == 11)[:, None], zeros], axis=1),
        "is_muon": np.concatenate([(np.abs(lid) == 13)[:, None], zeros], axis=1),
        # a charged lepton with pdgid > 0 (e⁻, μ⁻) has charge −1
        "charge": np.concatenate([-np.sign(lid)[:, None], zeros], axis=1),
    }
    source = {k: np.where(mask, v, 0.0).astype(np.float32) for k, v in source.items()}
    if m_j < cfg.max_jets:  # pad the object axis to a fixed width
        pad = [(0, 0), (0, cfg.max_jets - m_j)]
        source = {k: np.pad(v, pad) for k, v in source.items()}
        mask = np.pad(mask, pad)
    met = {"met": np.hypot(met_xy[:, 0], met_xy[:, 1]).astype(np.float32),
           "phi": np.arctan2(met_xy[:, 1], met_xy[:, 0]).astype(np.float32)}
    stage = one_lepton.astype(np.int8) + enough_jets + selected
    return Reconstructed(source=source, mask=mask, met=met, selected=selected, stage=stage,
                         cutflow=cutflow_of(stage))
