"""Plots a physicist reads: truth vs unfolded (vs naive) with ratio panels and a band over the K samples,
mass peaks, calibration, single-event posteriors, closure pulls. PNG and PDF, in the house style
(:func:`lvd.measurement.plots.style`, which the caller applies)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lvd.measurement.plots import COLORS, save  # noqa: E402


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)
