"""lvd's lepton+jets selection on reconstructed objects read from a file, and the packing into lvd's layout.

The thresholds default to those of lvd's own generators (:class:`lvd.data.generate.detector.DetectorConfig`):
exactly one lepton with pT > 25 GeV and |η| < 2.5 and no other lepton above 10 GeV, at least four jets with
pT > 25 GeV and |η| < 2.5, at least one of them b-tagged. The selected event is packed as the generators
pack theirs: the lepton in slot 0, then up to ``max_jets`` selected jets by decreasing pT.

Objects arrive flattened over a chunk of events (:class:`Jagged`), as columnar readers deliver them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvd import physics
from lvd.data.generate.detector import DetectorConfig
from lvd.errors import LvdError

_GEN = DetectorConfig()


@dataclass(frozen=True)
class Cuts:
    """Selection thresholds (GeV); defaults are the generators'."""

    lepton_pt: float = _GEN.sel_lepton_pt  # the one selected lepton
    veto_lepton_pt: float = _GEN.lepton_min_pt  # any further lepton above this vetoes the event
    lepton_eta: float = _GEN.lepton_max_eta  # leptons counted at all (selected and veto)
    jet_pt: float = _GEN.sel_jet_pt
    max_eta: float = _GEN.sel_max_eta  # selected lepton and jets
    min_jets: int = _GEN.min_jets
    min_btags: int = _GEN.min_btags
    max_jets: int = _GEN.max_jets  # jets kept per event (the object axis is 1 + max_jets wide)
    lepton_jet_dr: float = 0.0  # drop jets within this ΔR of the selected lepton (0: keep every jet)

    def __post_init__(self):
        problems = [
            (min(self.lepton_pt, self.veto_lepton_pt, self.jet_pt) < 0, "pT thresholds must be >= 0"),
            (self.veto_lepton_pt > self.lepton_pt, f"the veto-lepton pT ({self.veto_lepton_pt}) must not exceed "
                                                   f"the lepton pT ({self.lepton_pt})"),
            (min(self.max_eta, self.lepton_eta) <= 0, "|η| limits must be positive"),
            (self.min_jets < 0 or self.min_btags < 0, "jet and b-tag counts must be >= 0"),
            (self.max_jets < max(self.min_jets, 1), f"max_jets ({self.max_jets}) must be >= max(min_jets, 1)"),
            (self.lepton_jet_dr < 0, "the lepton-jet ΔR must be >= 0"),
        ]
        for bad, msg in problems:
            if bad:
                raise LvdError(f"selection: {msg}")


@dataclass
class Jagged:
    """One object collection of n events, flattened in event order: ``counts [n]``, each field ``[total]``."""

    counts: np.ndarray
    fields: dict[str, np.ndarray]

    @property
    def n_events(self) -> int:
        return len(self.counts)

    @property
    def event(self) -> np.ndarray:
        """``[total]`` event index of every object."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]

    def where(self, keep: np.ndarray) -> Jagged:
        """Only the objects where ``keep [total]`` is True."""
        counts = np.bincount(self.event[keep], minlength=self.n_events)
        return Jagged(counts, {k: v[keep] for k, v in self.fields.items()})

    @staticmethod
    def merge(a: Jagged, b: Jagged) -> Jagged:
        """Both collections' objects per event (a's first), with the fields both have."""
        event = np.concatenate([a.event, b.event])
        order = np.argsort(event, kind="stable")
        fields = {k: np.concatenate([a[k], b[k]])[order] for k in a.fields if k in b.fields}
        return Jagged(a.counts + b.counts, fields)


@dataclass
class Selected:
    """The selection's outcome for n events.

    ``stage [n]``: cuts passed (0 none, 1 one lepton, 2 + enough jets, 3 + enough b-tags = selected), as
    :func:`lvd.data.generate.detector.cutflow_of` counts them; ``index [S]``: the selected events; ``source``:
    feature -> ``[S, 1 + max_jets]`` in lvd's layout and ``mask [S, 1 + max_jets]``.
    """

    stage: np.ndarray
    index: np.ndarray
    source: dict[str, np.ndarray]
    mask: np.ndarray


def select(jets: Jagged, leptons: Jagged, cuts: Cuts) -> Selected:
    """Apply the selection. ``jets`` has pt, eta, phi, mass, btag (bool); ``leptons`` (identified, isolated
    electrons and muons) has pt, eta, phi, mass, charge, flavour (11 or 13)."""
    n = jets.n_events
    l_evt = leptons.event
    lpt, leta = leptons["pt"], np.abs(leptons["eta"])
    counted = (lpt > cuts.veto_lepton_pt) & (leta < cuts.lepton_eta)
    good_lep = counted & (lpt > cuts.lepton_pt) & (leta < cuts.max_eta)
    one_lepton = ((np.bincount(l_evt[good_lep], minlength=n) == 1)
                  & (np.bincount(l_evt[counted], minlength=n) == 1))
    lep = np.flatnonzero(good_lep & one_lepton[l_evt])  # the lepton of each one-lepton event, in event order

    j_evt = jets.event
    good_jet = (jets["pt"] > cuts.jet_pt) & (np.abs(jets["eta"]) < cuts.max_eta)
    if cuts.lepton_jet_dr > 0:
        # a jet that is the selected lepton (NanoAOD jets are clustered from every particle) is not a jet
        lep_eta, lep_phi = np.full(n, np.nan), np.full(n, np.nan)
        lep_eta[l_evt[lep]], lep_phi[l_evt[lep]] = leptons["eta"][lep], leptons["phi"][lep]
        dr = physics.delta_r(jets["eta"], jets["phi"], lep_eta[j_evt], lep_phi[j_evt])
        good_jet &= ~(dr < cuts.lepton_jet_dr)  # NaN (no lepton in the event) compares False: kept
    enough_jets = one_lepton & (np.bincount(j_evt[good_jet], minlength=n) >= cuts.min_jets)
    selected = enough_jets & (np.bincount(j_evt[good_jet & jets["btag"]], minlength=n) >= cuts.min_btags)
    stage = one_lepton.astype(np.int8) + enough_jets + selected
    index = np.flatnonzero(selected)
    source, mask = _pack(jets, leptons, lep[selected[l_evt[lep]]], good_jet & selected[j_evt], index, n, cuts)
    return Selected(stage=stage, index=index, source=source, mask=mask)


def _pack(jets: Jagged, leptons: Jagged, lep: np.ndarray, jet_ok: np.ndarray, index: np.ndarray, n: int,
          cuts: Cuts) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``source [S, 1 + max_jets]`` and ``mask``: lepton ``lep [S]`` in slot 0, the ``jet_ok`` jets by pT after it."""
    s, width = len(index), 1 + cuts.max_jets
    row_of = np.full(n, -1)
    row_of[index] = np.arange(s)
    names = ("pt", "eta", "phi", "mass", "btag", "is_electron", "is_muon", "charge")
    source = {k: np.zeros((s, width), np.float32) for k in names}
    mask = np.zeros((s, width), bool)
    mask[:, 0] = True
    for k in ("pt", "eta", "phi", "mass", "charge"):
        source[k][:, 0] = leptons[k][lep]
    source["is_electron"][:, 0] = leptons["flavour"][lep] == 11
    source["is_muon"][:, 0] = leptons["flavour"][lep] == 13

    jj = np.flatnonzero(jet_ok)
    jj = jj[np.lexsort((-jets["pt"][jj], jets.event[jj]))]  # by event, then decreasing pT
    row = row_of[jets.event[jj]]
    per_row = np.bincount(row, minlength=s)
    rank = np.arange(len(jj)) - (np.cumsum(per_row) - per_row)[row]
    keep = rank < cuts.max_jets
    jj, row, col = jj[keep], row[keep], 1 + rank[keep]
    for k in ("pt", "eta", "phi"):
        source[k][row, col] = jets[k][jj]
    source["mass"][row, col] = np.maximum(jets["mass"][jj], 0.0)
    source["btag"][row, col] = jets["btag"][jj]
    mask[row, col] = True
    return source, mask
