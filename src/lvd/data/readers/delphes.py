"""Delphes ROOT files: tree ``Delphes`` with the ``Jet``, ``Electron``, ``Muon``, ``MissingET``, ``Particle``
(and optionally ``Event``) collections, read by branch name (``Jet.PT``; real files nest it as ``Jet/Jet.PT``).

Detector level: jets (``PT, Eta, Phi, Mass``; b-tagged when bit ``btag_bit`` of ``BTag`` is set), electrons
and muons (``PT, Eta, Phi, Charge``; Delphes' output collections are already identified and isolated, and
carry no mass: the PDG mass is used), ``MissingET.MET/Phi``. Truth: ``Particle.PID/M1/PT/Eta/Phi/Mass``
(:mod:`lvd.data.readers.truth`). Weights: ``Event.Weight`` when present.

NaN/inf (:mod:`lvd.data.readers.root`): in ``MissingET.MET/Phi`` or the weight it refuses the file, naming
the branch and entry; in a jet's or lepton's ``PT/Eta/Phi/Mass/Charge`` or a truth particle's ``Particle.*``
it drops the event, counted in ``attrs['dropped_nonfinite']``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvd import physics
from lvd.data.readers import root
from lvd.data.readers.selection import Jagged
from lvd.errors import DataError

HINT = "; a NanoAOD file (tree 'Events')? use lvd convert nanoaod"


@dataclass(frozen=True)
class DelphesNames:
    """Tree and collection names (Delphes cards differ: e.g. ``JetPUPPI``, ``PuppiMissingET``)."""

    tree: str = "Delphes"
    jets: str = "Jet"
    electrons: str = "Electron"
    muons: str = "Muon"
    met: str = "MissingET"
    particles: str = "Particle"
    weight: str | None = "Event.Weight"  # None: no weights; used only when the branch exists unless named
    weight_required: bool = False  # the weight branch was asked for by name: its absence is an error
    btag_bit: int = 0  # bit of Jet.BTag that is the chosen working point

    def __post_init__(self):
        if not 0 <= self.btag_bit < 32:
            raise DataError(f"b-tag bit {self.btag_bit}: must be in 0..31 (Jet.BTag is a 32-bit mask)")


class DelphesSource:
    """A Delphes file as a :class:`lvd.data.readers.root.Source`."""

    def __init__(self, path: str | os.PathLike, names: DelphesNames = DelphesNames()):
        self.path, self.names = Path(path), names
        self.tree = root.open_tree(self.path, names.tree, HINT)
        self.n_entries = int(self.tree.num_entries)
        n = names
        self.jet = {f: f"{n.jets}.{b}" for f, b in (("pt", "PT"), ("eta", "Eta"), ("phi", "Phi"), ("mass", "Mass"),
                                                     ("btag", "BTag"))}
        self.lep = {flav: {f: f"{coll}.{b}" for f, b in (("pt", "PT"), ("eta", "Eta"), ("phi", "Phi"),
                                                           ("charge", "Charge"))}
                    for flav, coll in ((11, n.electrons), (13, n.muons))}
        self.met = {"met": f"{n.met}.MET", "phi": f"{n.met}.Phi"}
        self.rec = {f: f"{n.particles}.{b}" for f, b in (("pid", "PID"), ("mother", "M1"), ("pt", "PT"),
                                                          ("eta", "Eta"), ("phi", "Phi"), ("mass", "Mass"))}
        detector = [*self.jet.values(), *self.lep[11].values(), *self.lep[13].values(), *self.met.values()]
        root.require(self.tree, self.path, detector, "Delphes detector objects")
        self.has_record = root.find_record(self.tree, self.path, self.rec)
        self.weight = root.find_weight(self.tree, self.path, names.tree, names.weight, names.weight_required)
        root.check_complete(self.tree, self.path, self.branches(with_record=True))

    def attrs(self) -> dict[str, Any]:
        return {"generator": "Delphes file (lvd convert delphes)", "reader": "delphes", "tree": self.names.tree,
                "detector": f"Delphes: {self.names.jets}, {self.names.electrons}, {self.names.muons}, "
                            f"{self.names.met} as in the file; b-tag = bit {self.names.btag_bit} of "
                            f"{self.names.jets}.BTag",
                "weights": self.weight or "none"}

    def branches(self, with_record: bool) -> list[str]:
        out = [*self.jet.values(), *self.lep[11].values(), *self.lep[13].values(), *self.met.values()]
        if self.has_record and with_record:
            out += self.rec.values()
        return out + ([self.weight] if self.weight else [])

    def scan(self, step: int, with_record: bool = True) -> None:
        groups = self._groups(with_record)
        root.check_types(self.tree, self.path, [b for group in groups for b in group], list(self._per_event()),
                         integers=[self.jet["btag"], self.rec["pid"], self.rec["mother"]])
        root.scan(self.tree, self.path, self._per_event(), groups, step)

    def _per_event(self) -> dict[str, str]:
        return root.must_be_finite(self.met.values(), self.weight)

    def _groups(self, with_record: bool) -> list[list[str]]:
        """Branches of equal multiplicity."""
        groups = [list(self.jet.values()), list(self.lep[11].values()), list(self.lep[13].values())]
        return groups + ([list(self.rec.values())] if self.has_record and with_record else [])

    def chunks(self, step: int, with_record: bool = True) -> Iterator[root.Chunk]:
        for start, arrays in root.iterate(self.tree, self.path, self.branches(with_record), step):
            jets = root.jagged(arrays, self.jet, self.path, {"btag": np.int64}, start)
            jets.fields["btag"] = ((jets["btag"] >> self.names.btag_bit) & 1).astype(bool)
            electrons, muons = (self._leptons(arrays, flav, start) for flav in (11, 13))
            met, weights = root.event_values(arrays, self.path, start, self.met, self.weight)
            record = root.record(arrays, self.path, start, self.rec) if self.has_record and with_record else None
            nonfinite = (root.nonfinite(jets, self.jet) | root.nonfinite(electrons, self.lep[11])
                         | root.nonfinite(muons, self.lep[13]))
            yield root.Chunk(jets=jets, leptons=Jagged.merge(electrons, muons), met=met, weights=weights,
                             record=record, nonfinite=nonfinite)

    def _leptons(self, arrays: dict[str, Any], flavour: int, start: int) -> Jagged:
        lep = root.jagged(arrays, self.lep[flavour], self.path, start=start)
        lep.fields["flavour"] = np.full(len(lep["pt"]), flavour)
        lep.fields["mass"] = np.full(len(lep["pt"]), physics.PDG_MASS[flavour])
        return lep
