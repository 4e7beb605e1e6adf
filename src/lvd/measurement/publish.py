"""Write :class:`~lvd.measurement.histogram.Result` histograms the ways analyses publish them.

* ``histograms.root`` (uproot): per observable a folder with TH1D ``unfolded`` (total uncertainty as the
  errors), ``unfolded_stat``, ``unfolded_posterior``, ``truth``, and TH2D covariances ``covariance_total``,
  ``covariance_stat``, ``covariance_posterior``; for an ensemble also ``unfolded_model`` and ``covariance_model``;
* ``hepdata/`` (hepdata_lib): ``submission.yaml`` and one table per observable (bins, unfolded values with the
  statistical and posterior uncertainties, and ``model`` for an ensemble, the truth) plus one covariance table
  each; ``hepdata.tar.gz``;
* ``csv/<name>.csv`` and ``csv/<name>_covariance.csv``; ``plots/<name>.png`` (mplhep, ratio panel to the
  truth where there is one); ``histograms.json`` with everything above as numbers.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lvd.data.readers import hep_module
from lvd.errors import LvdError
from lvd.measurement.histogram import Result

FORMATS = ("root", "hepdata", "csv", "png")


def write_all(results: list[Result], summary: dict[str, Any], out: str | Path,
              formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Write ``formats`` into ``out``; returns the summary with the written files (and the HEPData verdict)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise LvdError(f"--formats: unknown {unknown}; choose from {', '.join(FORMATS)}")
    out = Path(out).absolute()  # hepdata_lib works from inside the folder: a relative path would nest there
    if out.exists() and not out.is_dir():
        raise LvdError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # everything is written into a staging folder and moved into ``out`` only when all of it (the HEPData
    # validation included) succeeded: a refusal leaves no half-written record behind
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        summary = _write_formats(results, summary, staging, formats)
        out.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _write_formats(results: list[Result], summary: dict[str, Any], out: Path,
                   formats: tuple[str, ...]) -> dict[str, Any]:
    files: dict[str, Any] = {}
    if "root" in formats:
        files["root"] = write_root(results, out / "histograms.root")
    if "hepdata" in formats:
        files["hepdata"], summary["hepdata_valid"] = write_hepdata(results, summary, out)
    if "csv" in formats:
        files["csv"] = write_csv(results, out / "csv")
    if "png" in formats:
        files["png"] = write_plots(results, out / "plots")
    summary = {**summary, "files": files, "observables": {r.spec.name: as_dict(r) for r in results}}
    (out / "histograms.json").write_text(json.dumps(summary, indent=1))
    return summary


def as_dict(r: Result) -> dict[str, Any]:
    d: dict[str, Any] = {"label": r.spec.label, "unit": r.spec.unit, "edges": r.spec.edges.tolist(),
                         "density": r.density, "unfolded": r.unfolded.values.tolist(),
                         "error_stat": r.unfolded.error("stat").tolist(),
                         "error_posterior": r.unfolded.error("posterior").tolist()}
    if r.unfolded.cov_model is not None:  # an ensemble: the members' spread, and the members themselves
        d |= {"error_model": r.unfolded.error("model").tolist(), "covariance_model": r.unfolded.cov_model.tolist(),
              "unfolded_members": r.unfolded.per_member.tolist()}
    if r.unfolded.cov_acceptance is not None:  # a cross section: the efficiency and fake classifiers' spread
        d |= {"error_acceptance": r.unfolded.error("acceptance").tolist(),
              "covariance_acceptance": r.unfolded.cov_acceptance.tolist()}
    if r.cross_section is not None:
        d |= {"cross_section": r.cross_section, "y_unit": _y_unit(r)}
    d |= {"error_total": r.unfolded.error("total").tolist(), "covariance_total": r.unfolded.cov_total.tolist()}
    if r.truth is not None:
        d |= {"truth": r.truth.values.tolist(), "truth_error": r.truth.error("stat").tolist()}
    return d


# --- ROOT ---------------------------------------------------------------------------------------------

def write_root(results: list[Result], path: Path) -> str:
    import hist

    uproot = hep_module("uproot")
    with uproot.recreate(path) as f:
        for r in results:
            name = r.spec.name
            f[f"{name}/unfolded"] = r.to_hist("unfolded", "total")
            f[f"{name}/unfolded_stat"] = r.to_hist("unfolded", "stat")
            f[f"{name}/unfolded_posterior"] = r.to_hist("unfolded", "posterior")
            for which in ("model", "acceptance"):
                if r.unfolded.covariance(which) is not None:
                    f[f"{name}/unfolded_{which}"] = r.to_hist("unfolded", which)
            if r.truth is not None:
                f[f"{name}/truth"] = r.to_hist("truth", "stat")
            for which in ("total", "stat", "posterior", "model", "acceptance"):
                cov = r.unfolded.covariance(which)
                if cov is None:
                    continue
                h2 = hist.Hist(hist.axis.Variable(r.spec.edges, name="x"), hist.axis.Variable(r.spec.edges, name="y"))
                h2.view()[...] = np.nan_to_num(cov)
                f[f"{name}/covariance_{which}"] = h2
    return path.name


# --- HEPData ------------------------------------------------------------------------------------------

def write_hepdata(results: list[Result], summary: dict[str, Any], out: Path) -> tuple[list[str], bool]:
    """The submission folder ``out/hepdata`` and ``out/hepdata.tar.gz``; returns them and the validator's verdict."""
    hd = hep_module("hepdata_lib")
    validator_mod = hep_module("hepdata_validator.full_submission_validator")
    sub = hd.Submission()
    sub.comment = (f"Unfolded with lvd (Latent Variational Diffusion) from {summary['n_events']:,} events, "
                   f"{summary['samples_per_event']} posterior samples per event.")
    for r in results:
        table, cov = _tables(hd, r, summary)
        sub.add_table(table)
        sub.add_table(cov)
    out = out.absolute()
    folder = out / "hepdata"
    # hepdata_lib writes its tarball into the working directory: give it ours
    with contextlib.chdir(out):
        sub.create_files(str(folder.absolute()), validate=False, remove_old=True)
    shutil.move(out / "submission.tar.gz", out / "hepdata.tar.gz")
    validator = validator_mod.FullSubmissionValidator()
    valid = bool(validator.validate(directory=str(folder)))
    if not valid:
        problems = "; ".join(f"{Path(k).name}: {m.message}" for k, ms in validator.get_messages().items()
                             for m in ms)
        raise LvdError(f"the HEPData submission (hepdata/) does not validate, nothing written: {problems}")
    return [f"hepdata/{p.name}" for p in sorted(folder.iterdir())] + ["hepdata.tar.gz"], valid


def _tables(hd, r: Result, summary: dict[str, Any]):
    s = r.spec
    xs = r.cross_section
    quantity = (f"1/σ dσ/d({s.label})" if r.density else f"dσ/d({s.label})" if xs else f"Events ({s.label})")
    table = hd.Table(s.name)
    model = r.unfolded.cov_model is not None
    acceptance = r.unfolded.cov_acceptance is not None
    what = (f"Differential cross section of {s.label} in the {xs['phase_space']} parton-level phase space of "
            f"tt̄ → (bℓν)(bqq̄'), ℓ = e, μ, corrected for the selection efficiency and the non-signal events, for "
            f"{xs['luminosity_inv_fb']:.6g} fb⁻¹" if xs else f"Unfolded distribution of {s.label}")
    table.description = (s.description or what) + (
        f". Uncertainties: 'stat' from a Poisson bootstrap over events ({r.n_boot} replicas), 'posterior' "
        f"from the spread of the {r.samples_per_event} per-event posterior samples"
        + (f", 'model' from the spread of the histograms of an ensemble of {r.members} independently trained "
           "models (their mean is the central value)" if model else "")
        + (", 'acceptance' from the spread over replicas of the efficiency and fake classifiers" if acceptance else "")
        + f"; their covariances are in table '{s.name} covariance'.")
    table.location = "lvd histogram"
    table.keywords["observables"] = ["1/SIG*DSIG/DX" if r.density else "DSIG/DX" if xs else "N"]
    table.keywords["reactions"] = ["P P --> TOP TOPBAR X"]
    x = hd.Variable(s.label, is_independent=True, is_binned=True, units=s.unit)
    x.values = list(zip(s.edges[:-1].tolist(), s.edges[1:].tolist(), strict=True))
    table.add_variable(x)
    y = hd.Variable(quantity, is_independent=False, is_binned=False, units=_y_unit(r),
                    zero_uncertainties_warning=False)
    y.values = r.unfolded.values.tolist()
    y.add_qualifier("SOURCE", "unfolded (lvd)")
    if summary.get("sqrt_s"):
        y.add_qualifier("SQRT(S)", float(summary["sqrt_s"]), "GeV")
    for which in ("stat", "posterior", *(c for c in ("model", "acceptance") if r.unfolded.covariance(c) is not None)):
        unc = hd.Uncertainty(which, is_symmetric=True)
        unc.values = np.nan_to_num(r.unfolded.error(which)).tolist()
        y.add_uncertainty(unc)
    table.add_variable(y)
    if r.truth is not None:
        t = hd.Variable(quantity, is_independent=False, is_binned=False, units=_y_unit(r),
                    zero_uncertainties_warning=False)
        t.values = r.truth.values.tolist()
        t.add_qualifier("SOURCE", "generator truth")
        unc = hd.Uncertainty("stat", is_symmetric=True)
        unc.values = np.nan_to_num(r.truth.error("stat")).tolist()
        t.add_uncertainty(unc)
        table.add_variable(t)

    cov = hd.Table(f"{s.name} covariance")
    cov.description = (f"Covariance (total = stat + posterior{' + model' if model else ''}"
                       f"{' + acceptance' if acceptance else ''}) between the bins of {s.label}.")
    cov.location = "lvd histogram"
    cov.keywords["observables"] = ["COV"]
    lo, hi = s.edges[:-1], s.edges[1:]
    ii, jj = np.meshgrid(np.arange(len(lo)), np.arange(len(lo)), indexing="ij")
    for axis_name, idx in ((f"{s.label} (bin i)", ii.ravel()), (f"{s.label} (bin j)", jj.ravel())):
        v = hd.Variable(axis_name, is_independent=True, is_binned=True, units=s.unit)
        v.values = list(zip(lo[idx].tolist(), hi[idx].tolist(), strict=True))
        cov.add_variable(v)
    c = hd.Variable("covariance", is_independent=False, is_binned=False)
    c.values = np.nan_to_num(r.unfolded.cov_total).ravel().tolist()
    cov.add_variable(c)
    return table, cov


def _y_unit(r: Result) -> str:
    if r.density:
        return f"1/{r.spec.unit}" if r.spec.unit else ""
    if r.cross_section is not None:  # fb per unit of x
        return f"fb/{r.spec.unit}" if r.spec.unit else "fb"
    return ""


# --- CSV and plots ------------------------------------------------------------------------------------

def write_csv(results: list[Result], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        cols = {"bin_low": r.spec.edges[:-1], "bin_high": r.spec.edges[1:], "unfolded": r.unfolded.values,
                "error_stat": r.unfolded.error("stat"), "error_posterior": r.unfolded.error("posterior")}
        for which in ("model", "acceptance"):
            if r.unfolded.covariance(which) is not None:
                cols[f"error_{which}"] = r.unfolded.error(which)
        cols["error_total"] = r.unfolded.error("total")
        if r.truth is not None:
            cols |= {"truth": r.truth.values, "truth_error": r.truth.error("stat")}
        with open(folder / f"{r.spec.name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows(zip(*(np.asarray(v).tolist() for v in cols.values()), strict=True))
        np.savetxt(folder / f"{r.spec.name}_covariance.csv", r.unfolded.cov_total, delimiter=",", fmt="%.8g")
        written += [f"csv/{r.spec.name}.csv", f"csv/{r.spec.name}_covariance.csv"]
    return written


def write_plots(results: list[Result], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from lvd.measurement import plots

    plots.style()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        s, u = r.spec, r.unfolded
        panels = 2 if r.truth is not None else 1
        fig, axes = plt.subplots(panels, 1, figsize=(6, 5.4 if panels == 2 else 4.2), sharex=True, squeeze=False,
                                 gridspec_kw={"height_ratios": [3, 1][:panels], "hspace": 0.05})
        ax = axes[0, 0]
        fig.subplots_adjust(left=0.16, right=0.97, top=0.97, bottom=0.12)
        if r.truth is not None:
            mplhep.histplot(r.truth.values, s.edges, ax=ax, color="black", label="truth")
        mplhep.histplot(u.values, s.edges, yerr=np.nan_to_num(u.error("total")), ax=ax, color="#d62728",
                        histtype="errorbar",
                        label=f"unfolded (stat + posterior{' + model' if u.cov_model is not None else ''})")
        ax.set_ylabel(f"1/σ dσ/dx [1/{s.unit}]" if r.density and s.unit else "1/σ dσ/dx" if r.density else
                      f"dσ/dx [{_y_unit(r)}]" if r.cross_section is not None else "events")
        ax.legend(fontsize=9, frameon=False)
        if r.truth is not None:
            rx = axes[1, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                ref = np.where(r.truth.values != 0, r.truth.values, np.nan)
                ratio, rerr = u.values / ref, np.nan_to_num(u.error("total") / np.abs(ref))
                mplhep.histplot(ratio, s.edges, yerr=rerr, ax=rx, color="#d62728", histtype="errorbar")
            rx.axhline(1.0, color="black", lw=0.8)
            # at least 0.5–1.5, wider to show every point, never beyond -1–3
            shown = np.isfinite(ratio)
            lo = min(0.5, np.min(ratio[shown] - rerr[shown], initial=0.5))
            hi = max(1.5, np.max(ratio[shown] + rerr[shown], initial=1.5))
            rx.set_ylim(max(lo - 0.05, -1.0), min(hi + 0.05, 3.0))
            rx.set_ylabel("unfolded / truth")
        axes[-1, 0].set_xlabel(s.axis_label)
        fig.savefig(folder / f"{s.name}.png")
        plt.close(fig)
        written.append(f"plots/{s.name}.png")
    return written
