"""Plots a physicist reads: truth vs unfolded (vs naive) with ratio panels and a band over the K samples,
mass peaks, calibration, single-event posteriors. PNG and PDF, in mplhep's ATLAS style when mplhep is installed."""

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


def _save(fig, path: Path) -> list[str]:
    # Fixed margins or one tight_layout, then one plain render per format (bbox_inches="tight" draws twice).
    fig.savefig(path.with_suffix(".png"))
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return [path.with_suffix(".png").name, path.with_suffix(".pdf").name]


def _steps(ax, edges, h, **kw):
    ax.stairs(h, edges, **kw)


def distribution(path: Path, label: str, unit: str, edges: np.ndarray, truth: np.ndarray, unfolded: np.ndarray,
                 band: np.ndarray | None, naive: np.ndarray | None) -> list[str]:
    """Normalised distributions (densities per unit) with a ratio-to-truth panel.

    ``band [2, bins]``: the 16–84 % range of the K single-sample histograms (the spread of one unfolding).
    """
    width = np.diff(edges)
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    fig.subplots_adjust(left=0.15, right=0.97, top=0.97, bottom=0.11)
    _steps(ax, edges, truth / width, color=COLORS["truth"], lw=1.6, label="truth")
    _steps(ax, edges, unfolded / width, color=COLORS["unfolded"], lw=1.6, label="unfolded")
    if band is not None:
        ax.stairs(band[1] / width, edges, baseline=band[0] / width, fill=True, color=COLORS["unfolded"], alpha=0.25,
                  label="unfolded, 16–84 % over samples")
    if naive is not None:
        _steps(ax, edges, naive / width, color=COLORS["naive"], lw=1.2, ls="--", label="detector / naive")
    ax.set_ylabel("normalised density" + (f" [1/{unit}]" if unit else ""))
    ax.legend(fontsize=9, frameon=False)
    ax.set_ylim(bottom=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rx.stairs(np.where(truth > 0, unfolded / truth, np.nan), edges, color=COLORS["unfolded"], lw=1.4)
        if band is not None:
            rx.stairs(np.where(truth > 0, band[1] / truth, np.nan), edges,
                      baseline=np.where(truth > 0, band[0] / truth, np.nan), fill=True, color=COLORS["unfolded"], alpha=0.25)
        if naive is not None:
            rx.stairs(np.where(truth > 0, naive / truth, np.nan), edges, color=COLORS["naive"], lw=1.0, ls="--")
    rx.axhline(1.0, color="black", lw=0.8)
    rx.set_ylim(0.5, 1.5)
    rx.set_ylabel("ratio to truth")
    rx.set_xlabel(label + (f" [{unit}]" if unit else ""))
    return _save(fig, path)


def mass_peaks(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]) -> list[str]:
    """``panels``: (label, edges, truth hist, unfolded hist, nominal mass)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (label, edges, t, u, nominal) in zip(np.atleast_1d(axes), panels, strict=True):
        # the first and last bins also hold the under/overflow: left out here (a pile-up at the frame's edge
        # reads like a feature of the distribution) and quoted instead
        w = np.diff(edges)[1:-1]
        _steps(ax, edges[1:-1], t[1:-1] / w, color=COLORS["truth"], lw=1.5, label=f"truth ({100 * (t[0] + t[-1]):.0f} % at the edges)")
        _steps(ax, edges[1:-1], u[1:-1] / w, color=COLORS["unfolded"], lw=1.5,
               label=f"unfolded ({100 * (u[0] + u[-1]):.0f} % at the edges)")
        ax.legend(fontsize=8, frameon=False)
        ax.axvline(nominal, color="gray", lw=0.8, ls=":")
        ax.set_xlabel(f"{label} [GeV]")
        ax.set_ylim(bottom=0)
    np.atleast_1d(axes)[0].set_ylabel("normalised density [1/GeV]")
    fig.tight_layout()
    return _save(fig, path)


def calibration(path: Path, ranks: dict[str, np.ndarray], coverage: dict[str, dict]) -> list[str]:
    """Truth-rank histograms (flat when calibrated) and 68 %/95 % coverage per observable."""
    names = list(ranks)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        h = ranks[name]
        x = (np.arange(len(h)) + 0.5) / len(h)
        axes[0].plot(x, h * len(h), lw=1.2, label=name)
    axes[0].axhline(1.0, color="black", lw=0.8)
    axes[0].set_xlabel("normalised rank of the truth among the samples")
    axes[0].set_ylabel("density (1 = calibrated)")
    axes[0].legend(fontsize=7, frameon=False, ncol=2)
    y = np.arange(len(names))
    for level, marker in (("68", "o"), ("95", "s")):
        cov = [coverage[n][level]["coverage"] for n in names]
        nom = [coverage[n][level]["nominal"] for n in names]
        axes[1].scatter(cov, y, marker=marker, label=f"{level} % interval")
        for v in set(np.round(nom, 4)):
            axes[1].axvline(v, color="gray", lw=0.8, ls=":")
    axes[1].set_yticks(y, names, fontsize=8)
    axes[1].set_xlabel("coverage (dotted: nominal)")
    axes[1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def single_events(path: Path, events: list[int], observables: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> list[str]:
    """Posterior samples of a few events (one row per observable, one column per event) with the truth."""
    fig, axes = plt.subplots(len(observables), len(events), figsize=(3.2 * len(events), 2.6 * len(observables)),
                             squeeze=False)
    for r, (label, samples, truth) in enumerate(observables.values()):
        for c, ev in enumerate(events):
            ax = axes[r, c]
            s = samples[ev]
            ax.hist(s, bins=max(5, min(30, len(s) // 2)), color=COLORS["unfolded"], alpha=0.6)
            ax.axvline(truth[ev], color="black", lw=1.5)
            ax.set_xlabel(label, fontsize=9)
            if r == 0:
                ax.set_title(f"event {ev}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def overlay(path: Path, label: str, unit: str, edges: np.ndarray, truth: np.ndarray,
            models: dict[str, np.ndarray]) -> list[str]:
    """Several models' unfolded distributions against the truth (``lvd compare``)."""
    width = np.diff(edges)
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    fig.subplots_adjust(left=0.15, right=0.97, top=0.97, bottom=0.11)
    _steps(ax, edges, truth / width, color="black", lw=1.8, label="truth")
    for name, h in models.items():
        line = ax.stairs(h / width, edges, lw=1.3, label=name)
        with np.errstate(divide="ignore", invalid="ignore"):
            rx.stairs(np.where(truth > 0, h / truth, np.nan), edges, lw=1.2, color=line.get_edgecolor())
    ax.legend(fontsize=9, frameon=False)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("normalised density" + (f" [1/{unit}]" if unit else ""))
    rx.axhline(1.0, color="black", lw=0.8)
    rx.set_ylim(0.5, 1.5)
    rx.set_ylabel("ratio to truth")
    rx.set_xlabel(label + (f" [{unit}]" if unit else ""))
    return _save(fig, path)


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
    return _save(fig, path)


def closure_pulls(path: Path, observables: dict[str, dict]) -> list[str]:
    """Per observable the per-bin pulls (unfolded − truth) / σ against the sample's statistical precision
    (dots) and against the stated total uncertainty (squares), over ±1 and ±2 bands; pulls beyond the frame
    sit on its edge as triangles."""
    n = len(observables)
    cols = min(4, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), sharey=True, squeeze=False)
    limit = 4.0
    for ax, e in zip(axes.flat, observables.values(), strict=False):
        for band, shade in ((2, 0.12), (1, 0.25)):
            ax.axhspan(-band, band, color="gray", alpha=shade, lw=0)
        ax.axhline(0.0, color="black", lw=0.6)
        for key, marker, color, dx in (("pull_stat", "o", "black", -0.12), ("pull_total", "s", COLORS["unfolded"], 0.12)):
            p = np.array([np.nan if v is None else v for v in e[key]], np.float64)
            x = np.arange(len(p)) + dx
            inside = np.abs(p) <= limit
            ax.plot(x[inside], p[inside], marker, ms=3.5, color=color, mfc=color if marker == "o" else "none",
                    label="stat" if key == "pull_stat" else "total")
            for sign, arrow in ((1, "^"), (-1, "v")):
                beyond = np.isfinite(p) & (sign * p > limit)
                ax.plot(x[beyond], np.full(beyond.sum(), sign * limit * 0.95), arrow, ms=4, color=color)
        ax.set_ylim(-limit, limit)
        ax.set_xlim(-0.6, len(e["pull_stat"]) - 0.4)
        # few fixed ticks, no minor ones: the ATLAS style's tick machinery made up most of this plot's time
        ax.set_xticks(np.arange(0, len(e["pull_stat"]), 2))
        ax.set_yticks([-4, -2, 0, 2, 4])
        ax.minorticks_off()
        ax.set_title(f"{e['label']}: χ²/bin {e['chi2_stat']['chi2_per_ndf']:.2f}" if e["chi2_stat"]["ndf"]
                     else e["label"], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[:2], labels[:2], fontsize=8, frameon=False, loc="upper right", ncol=2)
    for ax in axes[:, 0]:
        ax.set_ylabel("pull", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("bin (equal truth content)", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.93 if rows > 2 else 0.85, bottom=0.08 if rows > 2 else 0.15,
                        hspace=0.45, wspace=0.08)
    return _save(fig, path)
