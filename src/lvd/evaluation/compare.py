"""``lvd compare``: several evaluation reports side by side, best value per row marked, overlay plots."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lvd.errors import DataError
from lvd.evaluation.report import KEY_OBSERVABLES, SCHEMA


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    f = p / "metrics.json" if p.is_dir() else p
    if not f.exists():
        raise DataError(f"{p}: no metrics.json (make it with lvd evaluate)")
    try:
        r = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{f}: not valid JSON ({e})") from None
    if r.get("schema") != SCHEMA:
        raise DataError(f"{f}: metrics schema {r.get('schema')!r}, this lvd reads {SCHEMA!r}")
    return r


def _name(path: str | os.PathLike, r: dict[str, Any], taken: set[str]) -> str:
    base = str(r["source"].get("model") or Path(path).name)
    name = base if base not in taken else f"{base} ({Path(path).name})"
    taken.add(name)
    return name


def rows(reports: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, float], str]]:
    """``(row label, best rule, {model: value}, unit)`` for the comparison table."""
    out = []
    for obs in KEY_OBSERVABLES:
        vals = {m: r["observables"][obs]["distances"]["unfolded"]["wasserstein"]["value"] for m, r in reports.items()
                if obs in r["observables"]}
        unit = next(iter(reports.values()))["observables"][obs]["unit"]
        out.append((f"W1 {obs}", "min", vals, unit))
    for obs in ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep"):
        vals = {m: abs(r["observables"][obs]["peak"]["unfolded"] - r["observables"][obs]["peak"]["nominal"])
                for m, r in reports.items() if "peak" in r["observables"].get(obs, {})}
        out.append((f"|peak − nominal| {obs}", "min", vals, "GeV"))
    for obs in ("nu_pz", "m_t_lep", "pt_t_had"):
        vals = {m: abs(r["observables"][obs]["calibration"]["coverage_68"]["coverage"]
                       - r["observables"][obs]["calibration"]["coverage_68"]["nominal"])
                for m, r in reports.items() if "calibration" in r["observables"].get(obs, {})}
        out.append((f"|coverage 68 − nominal| {obs}", "min", vals, ""))
    out.append(("C2ST |AUC − 0.5|", "min", {m: abs(r["c2st"]["auc"] - 0.5) for m, r in reports.items()}, ""))
    return out


def compare(paths: list[str | os.PathLike], out_dir: str | os.PathLike, plots: bool = True) -> Path:
    if not paths:
        raise DataError("compare: give at least one report folder")
    taken: set[str] = set()
    reports = {}
    for p in paths:
        r = load_report(p)
        reports[_name(p, r, taken)] = r
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = list(reports)
    table = rows(reports)
    md = ["# Model comparison", "", "Lower is better in every row; the best value is **bold**.", "",
          "| quantity | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    with open(out / "compare.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["quantity", *models])
        for label, _, vals, unit in table:
            best = min(vals.values()) if vals else None
            cells = []
            for m in models:
                v = vals.get(m)
                txt = "–" if v is None else f"{v:.4g}"
                cells.append(f"**{txt}**" if v is not None and v == best else txt)
            md.append(f"| {label}{f' [{unit}]' if unit else ''} | " + " | ".join(cells) + " |")
            wr.writerow([label, *[("" if vals.get(m) is None else f"{vals[m]:.6g}") for m in models]])
    md += ["", "Sources:", ""] + [f"- {m}: `{r['source']['unfolded_file']}` ({r['source'].get('sampler')}, "
                                   f"{r['source']['samples_per_event']} samples/event)" for m, r in reports.items()]
    if plots:
        from lvd.evaluation import plots as pl
        from lvd.measurement.plots import style

        style()
        (out / "plots").mkdir(exist_ok=True)
        md += ["", "## Overlays", ""]
        for obs in KEY_OBSERVABLES:
            entries = {m: r["observables"][obs] for m, r in reports.items() if obs in r["observables"]}
            edges = [tuple(e["binning"]) for e in entries.values()]
            if len(set(edges)) != 1:
                md.append(f"- {obs}: binnings differ between reports (different truth samples); no overlay")
                continue
            first = next(iter(entries.values()))
            pl.overlay(out / "plots" / obs, first["label"], first["unit"], np.asarray(first["binning"]),
                       np.asarray(first["histograms"]["truth"]),
                       {m: np.asarray(e["histograms"]["unfolded"]) for m, e in entries.items()})
            md.append(f"![{obs}](plots/{obs}.png)")
    (out / "compare.md").write_text("\n".join(md) + "\n")
    return out / "compare.md"
