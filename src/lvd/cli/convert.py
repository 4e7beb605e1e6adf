"""``lvd convert delphes|nanoaod|spanet``: other people's files (Delphes, CMS NanoAOD, SPANet HDF5) in, lvd
files out.

The command functions are registered in :mod:`lvd.cli.main`; each parses, calls one library function and
prints. Heavy imports (uproot, h5py) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lvd.errors import LvdError

# --- options shared by the ROOT readers --------------------------------------------------------------
LeptonPt = Annotated[float, typer.Option(help="Selected lepton: pT above this [GeV].")]
VetoPt = Annotated[float, typer.Option(help="Veto: no further lepton above this pT [GeV].")]
JetPt = Annotated[float, typer.Option(help="Selected jets: pT above this [GeV].")]
MaxEta = Annotated[float, typer.Option(help="Selected lepton and jets: |η| below this.")]
MinJets = Annotated[int, typer.Option(help="At least this many selected jets.")]
MinBtags = Annotated[int, typer.Option(help="At least this many b-tagged selected jets.")]
MaxJets = Annotated[int, typer.Option(help="Jets kept per event, by pT (object axis = 1 + this).")]
NoTruth = Annotated[bool, typer.Option("--no-truth", help="Real data / no tt̄ chain: write no TRUTH group.")]
Chunk = Annotated[int, typer.Option("--chunk", help="Events per chunk read (memory is bounded by it).")]
Weight = Annotated[str | None, typer.Option("--weight-branch", help="Event-weight branch ('none': unweighted; default: used when present).")]


def _cuts(lepton_pt, veto_lepton_pt, jet_pt, max_eta, min_jets, min_btags, max_jets, lepton_jet_dr):
    from lvd.data.readers.selection import Cuts

    return Cuts(lepton_pt=lepton_pt, veto_lepton_pt=veto_lepton_pt, jet_pt=jet_pt, max_eta=max_eta,
                min_jets=min_jets, min_btags=min_btags, max_jets=max_jets, lepton_jet_dr=lepton_jet_dr)


def _weight(branch: str | None, default: str) -> tuple[str | None, bool]:
    """(branch, required) from --weight-branch."""
    if branch is None:
        return default, False
    return (None, False) if branch.lower() == "none" else (branch, True)


def _run_root(source, out: Path, cuts, no_truth: bool, chunk: int, what: str) -> None:
    from lvd.cli.progress import console, progress_bar
    from lvd.data.readers import root

    # every refusal that needs no pass over the objects comes before the progress bar: it stays one line
    root.prepare(source, out, with_truth=not no_truth, step=chunk)
    with progress_bar(source.n_entries, f"{what} → lvd") as advance:
        try:
            attrs = root.convert(source, out, cuts, with_truth=not no_truth, step=chunk, on_progress=advance,
                                 prepared=True)
        except LvdError:  # a late refusal (damaged basket, nothing selected): hide the bar, one line is left
            advance(0, visible=False)
            raise
    cf = attrs["cutflow"]
    text = (f"wrote {out}: {attrs['n_events']:,} events of {attrs['n_read']:,} read; selection "
            f"{cf['min_btags']:,}/{cf['generated']:,} = {cf['min_btags'] / max(cf['generated'], 1):.3f}")
    if "truth_cutflow" in attrs:
        skipped = {k: v for k, v in attrs["truth_cutflow"].items() if k not in ("read", "semileptonic") and v}
        if skipped:
            text += "; skipped (no semi-leptonic e/μ tt̄ chain): " + ", ".join(f"{k} {v:,}" for k, v in skipped.items())
    dropped = attrs["dropped_nonfinite"]
    if dropped["events"]:
        text += (f"; dropped {dropped['events']:,} events with NaN/inf values ("
                 + ", ".join(f"{k} {v:,}" for k, v in dropped["branches"].items()) + ")")
    console.print(text)


def convert_delphes(
    inp: Annotated[Path, typer.Argument(help="Delphes ROOT file (tree 'Delphes').")],
    out: Annotated[Path, typer.Argument(help="Output lvd .h5 file (written atomically).")],
    tree: Annotated[str, typer.Option(help="Tree name.")] = "Delphes",
    jets: Annotated[str, typer.Option(help="Jet collection (e.g. JetPUPPI).")] = "Jet",
    electrons: Annotated[str, typer.Option(help="Electron collection.")] = "Electron",
    muons: Annotated[str, typer.Option(help="Muon collection.")] = "Muon",
    met: Annotated[str, typer.Option(help="Missing-ET collection (e.g. PuppiMissingET).")] = "MissingET",
    particles: Annotated[str, typer.Option(help="Generator-record collection.")] = "Particle",
    btag_bit: Annotated[int, typer.Option(help="Bit of Jet.BTag that is the b-tag working point.")] = 0,
    weight_branch: Weight = None,
    lepton_pt: LeptonPt = 25.0, veto_lepton_pt: VetoPt = 10.0, jet_pt: JetPt = 25.0, max_eta: MaxEta = 2.5,
    min_jets: MinJets = 4, min_btags: MinBtags = 1, max_jets: MaxJets = 10,
    lepton_jet_dr: Annotated[float, typer.Option(help="Drop jets within this ΔR of the lepton (Delphes' "
                                                      "UniqueObjectFinder already did: 0).")] = 0.0,
    no_truth: NoTruth = False,
    chunk: Chunk = 20_000,
) -> None:
    """Delphes ROOT file -> lvd file: lvd's selection, truth from the Particle record's tt̄ chain."""
    from lvd.data.readers.delphes import DelphesNames, DelphesSource

    weight, required = _weight(weight_branch, "Event.Weight")
    names = DelphesNames(tree=tree, jets=jets, electrons=electrons, muons=muons, met=met, particles=particles,
                         weight=weight, weight_required=required, btag_bit=btag_bit)
    cuts = _cuts(lepton_pt, veto_lepton_pt, jet_pt, max_eta, min_jets, min_btags, max_jets, lepton_jet_dr)
    _run_root(DelphesSource(inp, names), out, cuts, no_truth, chunk, "delphes")


def convert_nanoaod(
    inp: Annotated[Path, typer.Argument(help="CMS NanoAOD ROOT file (tree 'Events').")],
    out: Annotated[Path, typer.Argument(help="Output lvd .h5 file (written atomically).")],
    tree: Annotated[str, typer.Option(help="Tree name.")] = "Events",
    btag_branch: Annotated[str, typer.Option(help="b-tag discriminant branch.")] = "Jet_btagDeepFlavB",
    btag_wp: Annotated[float, typer.Option(help="b-tag working point (discriminant above it; default: DeepJet medium, 2018 UL).")] = 0.2783,
    jet_id_bit: Annotated[int, typer.Option(help="Required bit of Jet_jetId (1: tight); -1: none.")] = 1,
    electron_id: Annotated[int, typer.Option(help="Electron_cutBased at least this (4: tight); -1: none.")] = 4,
    muon_tight_id: Annotated[bool, typer.Option(help="Require Muon_tightId.")] = True,
    muon_iso: Annotated[float, typer.Option(help="Muon_pfRelIso04_all below this; 0: no cut.")] = 0.15,
    met: Annotated[str, typer.Option(help="MET branch prefix (MET, PuppiMET, ...).")] = "MET",
    weight_branch: Weight = None,
    lepton_pt: LeptonPt = 25.0, veto_lepton_pt: VetoPt = 10.0, jet_pt: JetPt = 25.0, max_eta: MaxEta = 2.5,
    min_jets: MinJets = 4, min_btags: MinBtags = 1, max_jets: MaxJets = 10,
    lepton_jet_dr: Annotated[float, typer.Option(help="Drop jets within this ΔR of the lepton (NanoAOD jets "
                                                      "contain it); 0: keep all.")] = 0.4,
    no_truth: NoTruth = False,
    chunk: Chunk = 20_000,
) -> None:
    """CMS NanoAOD ROOT file -> lvd file: lvd's selection, truth from GenPart's tt̄ chain (--no-truth for data)."""
    from lvd.data.readers.nanoaod import NanoNames, NanoSource

    weight, required = _weight(weight_branch, "genWeight")
    names = NanoNames(tree=tree, btag=btag_branch, btag_wp=btag_wp, jet_id_bit=jet_id_bit, electron_id=electron_id,
                      muon_tight_id=muon_tight_id, muon_iso=muon_iso, met=met, weight=weight,
                      weight_required=required)
    cuts = _cuts(lepton_pt, veto_lepton_pt, jet_pt, max_eta, min_jets, min_btags, max_jets, lepton_jet_dr)
    _run_root(NanoSource(inp, names), out, cuts, no_truth, chunk, "nanoaod")


def convert_spanet(
    inp: Annotated[Path, typer.Argument(help="SPANet-style HDF5 file.")],
    out: Annotated[Path, typer.Argument(help="Output lvd .h5 file (written atomically).")],
    options: Annotated[str | None, typer.Option("--options", help="Options .yaml whose data.* names describe the file (flags override).")] = None,
    source_group: Annotated[str | None, typer.Option(help="Group of the padded objects (e.g. INPUTS/Momenta).")] = None,
    met_group: Annotated[str | None, typer.Option(help="Group of the MET features.")] = None,
    truth_group: Annotated[str | None, typer.Option(help="Group holding the parton-level truth.")] = None,
    mask: Annotated[str | None, typer.Option(help="Name of the mask dataset.")] = None,
    source_features: Annotated[str | None, typer.Option(help="lvd names of the object features, comma-separated.")] = None,
    met_features: Annotated[str | None, typer.Option(help="lvd names of the MET features, comma-separated.")] = None,
    names: Annotated[str | None, typer.Option("--names", help="lvd_name=file_name pairs, e.g. is_muon=utag,met=MET (phi also from sin_phi/cos_phi).")] = None,
    particles: Annotated[str | None, typer.Option("--particles", help="particle=subgroup pairs under the truth group, e.g. b_lep=lt/b,lepton=lt/l.")] = None,
    no_truth: NoTruth = False,
    chunk: Chunk = 100_000,
) -> None:
    """SPANet-style HDF5 -> lvd file, with the group and feature names given (or taken from --options)."""
    import dataclasses

    from lvd.cli.progress import console, progress_bar
    from lvd.data.readers import spanet
    from lvd.data.schema import DEFAULT_LAYOUT

    base = DEFAULT_LAYOUT
    if options is not None:
        from lvd import config
        from lvd.data.representation import layout

        base = layout(config.load_options(options).data)
    given = {"source_group": source_group, "met_group": met_group, "truth_group": truth_group, "mask_name": mask,
             "source_features": _tuple(source_features), "met_features": _tuple(met_features),
             "feature_names": _tuple(names), "particle_names": _tuple(particles)}
    lay = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    # every refusal that needs no pass over the values comes before the progress bar: it stays one line
    n = spanet.prepare(inp, out, lay, with_truth=not no_truth, step=chunk)
    with progress_bar(n, "spanet → lvd") as advance:
        try:
            attrs = spanet.convert(inp, out, lay, with_truth=not no_truth, step=chunk, on_progress=advance)
        except LvdError:  # a late refusal (NaN in a later chunk): hide the bar, one line is left
            advance(0, visible=False)
            raise
    console.print(f"wrote {out}: {attrs['n_events']:,} events, object features {', '.join(lay.source_features)}"
                  + ("" if no_truth else ", with truth"))


def _tuple(s: str | None) -> tuple[str, ...] | None:
    return None if s is None else tuple(x.strip() for x in s.split(",") if x.strip())
