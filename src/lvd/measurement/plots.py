"""Figures of measurements (the top-mass calibration), and the house style every lvd figure is drawn in:
PNG and PDF, in mplhep's ATLAS style when mplhep is installed. The style lives here, in the lower of the two
packages that draw, so that measurements and evaluation's figures (:mod:`lvd.evaluation.plots`) share it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"truth": "black", "unfolded": "#d62728", "naive": "#1f77b4"}


def style() -> None:
    try:
        import mplhep

        plt.style.use(mplhep.style.ATLAS)
    except Exception:  # mplhep is optional here (not on every machine): plain matplotlib then
        plt.style.use("default")
    # Plain tick labels: mathtext tick labels are re-parsed on every draw and made up most of a report's time.
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "font.size": 11, "axes.formatter.use_mathtext": False})


def save(fig, path: Path) -> list[str]:
    # Fixed margins or one tight_layout, then one plain render per format (bbox_inches="tight" draws twice).
    fig.savefig(path.with_suffix(".png"))
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return [path.with_suffix(".png").name, path.with_suffix(".pdf").name]


def top_mass(path: Path, report: dict) -> list[str]:
    """Left: each measurement's log-likelihood in θ (likelihood method) or its events' posterior-mean top masses
    (mean method). Right: the calibration curve (the raw statistic against the generated mass, the fitted line, and
    for the likelihood the identity) with the measured points at their generated mass and the calibrated values."""
    fig, (lx, cx) = plt.subplots(1, 2, figsize=(11, 4.4))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.13, wspace=0.28)
    # one method per report; reports written before the mean method existed are likelihoods
    mean_method = any(e.get("method", "likelihood") == "mean" for e in report["measurements"])
    for e in report["measurements"]:
        name = Path(e["file"]).stem
        label = f"{name}: {e['raw']:.2f} ± {e['stat']:.2f}"
        if mean_method:
            edges, counts = np.asarray(e["event_mean_edges"]), np.asarray(e["event_mean_counts"])
            lx.stairs(counts / max(counts.sum(), 1e-300), edges, lw=1.4, label=label)
            filled = np.flatnonzero(counts > 1e-3 * counts.max())
            if filled.size:
                lx.set_xlim(edges[filled[0]] - 2, edges[filled[-1] + 1] + 2)
            lx.set_xlabel("an event's posterior-mean top mass [GeV]")
            lx.set_ylabel("fraction of events")
        else:
            grid, ll = np.asarray(e["grid"]), np.asarray(e["log_likelihood"])
            near = ll > ll.max() - 12
            lx.plot(grid[near], ll[near], lw=1.4, label=label)
            lx.set_xlabel("top mass θ [GeV]")
            lx.set_ylabel("Δ log L")
    lx.legend(fontsize=8, frameon=False, loc="upper left")
    cal = report.get("calibration")
    pts = cal["points"] if cal else []
    x_all = [p["true"] for p in pts] + [e["true_mass"] for e in report["measurements"] if e["true_mass"]]
    if x_all:
        xs = np.linspace(min(x_all) - 1, max(x_all) + 1, 2)
        if not mean_method:  # the mean method's raw statistic is not a mass: no identity to compare with
            cx.plot(xs, xs, color="grey", lw=1, ls=":", label="raw = true")
        if cal:
            cx.errorbar([p["true"] for p in pts], [p["raw"] for p in pts], yerr=[p["stat"] for p in pts], fmt="o",
                        color="black", label="calibration samples")
            cx.plot(xs, cal["offset"] + cal["slope"] * xs, color="black", lw=1.2,
                    label=f"fit: slope {cal['slope']:.3f}, offset {cal['offset'] + 172.5 * cal['slope'] - 172.5:+.2f} "
                          "at 172.5")
        m = [e for e in report["measurements"] if e["true_mass"]]
        cx.errorbar([e["true_mass"] for e in m], [e["raw"] for e in m], yerr=[e["stat"] for e in m], fmt="s",
                    color=COLORS["unfolded"], label="measured (raw)")
    cx.set_xlabel("generated top mass [GeV]")
    cx.set_ylabel("posterior-mean statistic S [GeV]" if mean_method else "extracted θ̂ (raw) [GeV]")
    if "closure" in report:
        c = report["closure"]
        lines = [f"{e['true_mass']:g}: {e['calibrated']:.2f} ± {e['calibrated_stat']:.2f} ± {e['calibration_stat']:.2f}"
                 for e in report["measurements"] if e["true_mass"] is not None]
        cx.text(0.97, 0.04, "calibrated (± stat ± calib.):\n" + "\n".join(lines)
                + f"\nclosure slope {c['slope']:.2f} ± {c['slope_stat']:.2f}", transform=cx.transAxes,
                ha="right", va="bottom", fontsize=8)
    cx.legend(fontsize=8, frameon=False)
    return save(fig, path)
