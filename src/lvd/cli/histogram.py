"""``lvd histogram``: binned unfolded distributions with their uncertainties, written as ROOT, HEPData, CSV, PNG.

Registered in :mod:`lvd.cli.main`; parses, calls :mod:`lvd.measurement.histogram` and
:mod:`lvd.measurement.publish`, and prints. Heavy imports (hepdata_lib, matplotlib) happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lvd.errors import LvdError


def histogram_cmd(
    unfolded: Annotated[Path, typer.Argument(help="Output of lvd unfold (UNFOLDED [N, K], optional TRUTH, WEIGHTS).")],
    observable: Annotated[list[str] | None, typer.Option("--observable", help="Observable name (repeatable; e.g. m_ttbar, pt_t_had, y_ttbar).")] = None,
    bins: Annotated[list[str] | None, typer.Option("--bins", help="Edges a,b,c or lo:hi:nbins, one per --observable.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML of observables: name: {bins, label, unit, description}.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: <unfolded>_histograms).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicas over events.")] = 200,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    density: Annotated[bool, typer.Option(help="Normalised differential distribution 1/σ dσ/dx instead of event counts.")] = False,
    formats: Annotated[str, typer.Option(help="Comma-separated: root, hepdata, csv, png.")] = "root,hepdata,csv,png",
    cross_section: Annotated[bool, typer.Option("--cross-section", help="Differential cross section dσ/dx in fb per unit (with --density: 1/σ dσ/dx), corrected for the selection efficiency and the non-signal events by the file's ACCEPTANCE or --acceptance.")] = False,
    luminosity: Annotated[float | None, typer.Option(help="Integrated luminosity in fb^-1 (default: the file's luminosity_inv_fb, which simulated samples state).")] = None,
    acceptance: Annotated[Path | None, typer.Option(help="Folder with the efficiency/ and fakes/ classifiers (lvd.training.acceptance), applied when the file has no ACCEPTANCE group.")] = None,
    phase_space: Annotated[str, typer.Option(help="Parton-level phase space of the cross section: full, or fiducial (the cuts of --fiducial-cuts).")] = "full",
    fiducial_cuts: Annotated[Path | None, typer.Option(help="YAML of fiducial cuts on parton observables (default: the package's measurement/fiducial.yaml).")] = None,
) -> None:
    """Binned unfolded distributions with bootstrap and posterior uncertainties (and, for an ensemble's file,
    the members' spread): ROOT, HEPData, CSV, PNG."""
    import numpy as np

    from lvd.cli.progress import console
    from lvd.measurement.closure import histogram_closure
    from lvd.measurement.closure import summary_line as closure_line
    from lvd.measurement.histogram import Spec, histogram_file, load_specs, parse_edges
    from lvd.measurement.publish import write_all

    observable, bins = observable or [], bins or []
    if len(observable) != len(bins):
        raise LvdError(f"{len(observable)} --observable and {len(bins)} --bins: give one --bins per --observable")
    specs = (load_specs(config) if config is not None else []) + [
        Spec(name, parse_edges(b)) for name, b in zip(observable, bins, strict=True)]
    if not specs:
        raise LvdError("nothing to histogram: give --observable NAME --bins EDGES, or --config FILE.yaml")
    out = out or unfolded.with_name(unfolded.stem + "_histograms")
    if not cross_section and (luminosity is not None or acceptance is not None or phase_space != "full"
                              or fiducial_cuts is not None):
        raise LvdError("--luminosity, --acceptance, --phase-space and --fiducial-cuts belong to --cross-section")
    with console.status("histogramming"):
        if cross_section:
            from lvd.measurement.cross_section import cross_section_file
            from lvd.measurement.phase_space import load_phase_space
            from lvd.runs.acceptance import acceptance_weights

            space = load_phase_space(phase_space, fiducial_cuts)
            apply = None if acceptance is None else (lambda data: acceptance_weights(data, acceptance))
            results, summary = cross_section_file(unfolded, specs, luminosity_inv_fb=luminosity, acceptance=apply,
                                                  n_boot=bootstrap, seed=seed, normalised=density, phase_space=space)
        else:
            results, summary = histogram_file(unfolded, specs, n_boot=bootstrap, seed=seed, density=density)
        if summary["has_truth"]:  # closure against the file's own truth, in the user's binning
            summary["closure"] = histogram_closure(results)
        summary = write_all(results, summary, out, tuple(f.strip() for f in formats.split(",") if f.strip()))
    if "ensemble_members" in summary:
        console.print(f"ensemble of {len(summary['ensemble_members'])} members, "
                      f"{summary['ensemble_samples_per_member']} samples each: the total includes their spread (model)")

    def span(h, which: str) -> str:  # the smallest and largest relative uncertainty over the filled bins
        filled = h.values != 0
        rel = h.error(which)[filled] / np.abs(h.values[filled])
        return f"{rel.min() if filled.any() else np.nan:.3g}–{rel.max() if filled.any() else np.nan:.3g}"

    if cross_section:
        xs = summary["cross_section"]
        console.print(f"σ in the {xs['phase_space']} phase space: {xs['sigma_fb'] / 1000:.4g} pb ± "
                      f"{xs['stat_fb'] / 1000:.2g} (stat) ± {xs['posterior_fb'] / 1000:.2g} (posterior) for "
                      f"{xs['luminosity_inv_fb']:.4g} fb⁻¹; signal fraction {xs['signal_fraction']:.3f}, mean "
                      f"efficiency {xs['mean_efficiency']:.3f}")
    for r in results:
        u = r.unfolded
        console.print(f"{r.spec.name}: {len(r.spec.edges) - 1} bins ({(u.values != 0).sum()} filled), relative "
                      f"total uncertainty {span(u, 'total')}"
                      + (f" (model {span(u, 'model')})" if u.cov_model is not None else ""))
        if r.spec.name in summary.get("closure", {}):
            console.print(f"  {closure_line(summary['closure'][r.spec.name])}")
    hepdata = "" if "hepdata_valid" not in summary else f"; HEPData submission valid: {summary['hepdata_valid']}"
    console.print(f"written to {out}: " + ", ".join(summary["files"]) + hepdata)
