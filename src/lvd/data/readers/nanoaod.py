"""CMS NanoAOD ROOT files: tree ``Events`` with ``Jet_*``, ``Electron_*``, ``Muon_*``, ``MET_*`` and, in
simulation, ``GenPart_*`` and ``genWeight``.

Detector level: jets (``Jet_pt/eta/phi/mass``, b-tagged when the named discriminant passes the working
point; jet ID ``Jet_jetId`` bit ``jet_id_bit``), electrons passing ``Electron_cutBased >= electron_id``,
muons with ``Muon_tightId`` and ``Muon_pfRelIso04_all < muon_iso``; ``<met>_pt/phi``. NanoAOD jets are
clustered from every particle, the lepton included: jets within ΔR 0.4 of the selected lepton are dropped
(:attr:`Cuts.lepton_jet_dr`). Truth: ``GenPart_pdgId/genPartIdxMother/pt/eta/phi/mass``; NanoAOD stores no
mass for light quarks and leptons (0 in the file, and so in the truth).

NaN/inf (:mod:`lvd.data.readers.root`): in ``<met>_pt/phi`` or the weight it refuses the file, naming the
branch and entry; in a float value of an object passing the integer IDs (jet ID, electron ``cutBased``,
muon ``tightId``): ``pt, eta, phi, mass``, the b-tag discriminant, the muon isolation, or in a truth
particle's ``GenPart_*`` it drops the event, counted in ``attrs['dropped_nonfinite']``. Objects failing
those IDs are never seen, so their values do not matter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvd.data.readers import root
from lvd.data.readers.selection import Jagged

HINT = "; a Delphes file (tree 'Delphes')? use lvd convert delphes"


@dataclass(frozen=True)
class NanoNames:
    """Tree, branch names and identification working points."""

    tree: str = "Events"
    btag: str = "Jet_btagDeepFlavB"  # b-tag discriminant
    btag_wp: float = 0.2783  # DeepJet medium working point of 2018 (UL); set the one of your era and tagger
    jet_id_bit: int = 1  # Jet_jetId bit required (1: tight); negative: no jet ID
    electron_id: int = 4  # Electron_cutBased >= this (4: tight, includes isolation); negative: no ID
    muon_tight_id: bool = True  # Muon_tightId required
    muon_iso: float = 0.15  # Muon_pfRelIso04_all below this; non-positive: no isolation cut
    met: str = "MET"  # MET, PuppiMET, ...
    weight: str | None = "genWeight"  # used when the branch exists unless weight_required
    weight_required: bool = False


class NanoSource:
    """A NanoAOD file as a :class:`lvd.data.readers.root.Source`."""

    def __init__(self, path: str | os.PathLike, names: NanoNames = NanoNames()):
        self.path, self.names = Path(path), names
        self.tree = root.open_tree(self.path, names.tree, HINT)
        self.n_entries = int(self.tree.num_entries)
        self.jet = {"pt": "Jet_pt", "eta": "Jet_eta", "phi": "Jet_phi", "mass": "Jet_mass", "btag": names.btag}
        if names.jet_id_bit >= 0:
            self.jet["jet_id"] = "Jet_jetId"
        kin = (("pt", "pt"), ("eta", "eta"), ("phi", "phi"), ("mass", "mass"), ("charge", "charge"))
        self.electron = {f: f"Electron_{b}" for f, b in kin}
        if names.electron_id >= 0:
            self.electron["id"] = "Electron_cutBased"
        self.muon = {f: f"Muon_{b}" for f, b in kin}
        if names.muon_tight_id:
            self.muon["id"] = "Muon_tightId"
        if names.muon_iso > 0:
            self.muon["iso"] = "Muon_pfRelIso04_all"
        self.met = {"met": f"{names.met}_pt", "phi": f"{names.met}_phi"}
        self.rec = {"pid": "GenPart_pdgId", "mother": "GenPart_genPartIdxMother", "pt": "GenPart_pt",
                    "eta": "GenPart_eta", "phi": "GenPart_phi", "mass": "GenPart_mass"}
        root.require(self.tree, self.path, [*self.jet.values(), *self.electron.values(), *self.muon.values(),
                                            *self.met.values()],
                     "NanoAOD objects; name the b-tag branch with --btag-branch, or relax the IDs")
        self.has_record = root.find_record(self.tree, self.path, self.rec)
        self.weight = root.find_weight(self.tree, self.path, names.tree, names.weight, names.weight_required)
        root.check_complete(self.tree, self.path, self.branches(with_record=True))

    def attrs(self) -> dict[str, Any]:
        n = self.names
        return {"generator": "CMS NanoAOD file (lvd convert nanoaod)", "reader": "nanoaod", "tree": n.tree,
                "detector": (f"CMS NanoAOD: jets with {n.btag} > {n.btag_wp}"
                             + (f", jetId bit {n.jet_id_bit}" if n.jet_id_bit >= 0 else "")
                             + (f"; electrons cutBased >= {n.electron_id}" if n.electron_id >= 0 else "")
                             + ("; muons tightId" if n.muon_tight_id else "")
                             + (f", pfRelIso04_all < {n.muon_iso}" if n.muon_iso > 0 else "")
                             + f"; {n.met}_pt/phi"),
                "weights": self.weight or "none"}

    def branches(self, with_record: bool) -> list[str]:
        out = [*self.jet.values(), *self.electron.values(), *self.muon.values(), *self.met.values()]
        if self.has_record and with_record:
            out += self.rec.values()
        return list(dict.fromkeys(out + ([self.weight] if self.weight else [])))

    def scan(self, step: int, with_record: bool = True) -> None:
        groups = self._groups(with_record)
        integers = [self.jet.get("jet_id"), self.electron.get("id"), self.muon.get("id"), self.rec["pid"],
                    self.rec["mother"]]
        root.check_types(self.tree, self.path, [b for group in groups for b in group], list(self._per_event()),
                         integers=[b for b in integers if b])
        root.scan(self.tree, self.path, self._per_event(), groups, step)

    def _per_event(self) -> dict[str, str]:
        return root.must_be_finite(self.met.values(), self.weight)

    def _groups(self, with_record: bool) -> list[list[str]]:
        """Branches of equal multiplicity."""
        groups = [list(self.jet.values()), list(self.electron.values()), list(self.muon.values())]
        return groups + ([list(self.rec.values())] if self.has_record and with_record else [])

    def chunks(self, step: int, with_record: bool = True) -> Iterator[root.Chunk]:
        for start, arrays in root.iterate(self.tree, self.path, self.branches(with_record), step):
            jets, electrons, muons = self._identified(arrays, start)
            # a NaN/inf value of an identified object drops the event; then the float cuts apply
            nonfinite = (root.nonfinite(jets, self.jet) | root.nonfinite(electrons, self.electron)
                         | root.nonfinite(muons, self.muon))
            jets.fields["btag"] = jets["btag"] > self.names.btag_wp
            if "iso" in muons.fields:
                muons = muons.where(muons.fields.pop("iso") < self.names.muon_iso)
            for lep, flavour in ((electrons, 11), (muons, 13)):
                lep.fields["flavour"] = np.full(len(lep["pt"]), flavour)
            met, weights = root.event_values(arrays, self.path, start, self.met, self.weight)
            record = root.record(arrays, self.path, start, self.rec) if self.has_record and with_record else None
            yield root.Chunk(jets=jets, leptons=Jagged.merge(electrons, muons), met=met, weights=weights,
                             record=record, nonfinite=nonfinite)

    def _identified(self, arrays: dict[str, Any], start: int) -> tuple[Jagged, Jagged, Jagged]:
        """Jets, electrons and muons passing the integer IDs (jet ID bit, cutBased, tightId)."""
        jets = root.jagged(arrays, self.jet, self.path, {"jet_id": np.int64}, start)
        if "jet_id" in jets.fields:
            jets = jets.where(((jets.fields.pop("jet_id") >> self.names.jet_id_bit) & 1).astype(bool))
        electrons = root.jagged(arrays, self.electron, self.path, {"id": np.int64}, start)
        if "id" in electrons.fields:
            electrons = electrons.where(electrons.fields.pop("id") >= self.names.electron_id)
        muons = root.jagged(arrays, self.muon, self.path, {"id": np.int64}, start)
        if "id" in muons.fields:
            muons = muons.where(muons.fields.pop("id") > 0)
        return jets, electrons, muons
