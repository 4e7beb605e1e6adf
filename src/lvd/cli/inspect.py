"""``lvd inspect``: a readable summary of an event file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lvd.data.schema import read_events, source_layout
from lvd.data.summary import summarize


def _row(name: str, s: dict[str, float]) -> list[str]:
    return [name] + [f"{s[k]:.4g}" for k in ("min", "median", "mean", "max")]


def _stats_table(title: str, stats: dict[str, dict[str, float]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("feature", "min", "median", "mean", "max"):
        t.add_column(col, justify="left" if col == "feature" else "right")
    for name, s in stats.items():
        t.add_row(*_row(name, s))
    return t


def _top_mass_line(attrs: dict, generator: dict[str, dict[str, float]]) -> str:
    """The generated top masses: as asked (root attributes) and as found in the events (GENERATOR)."""
    m = generator["top_mass"]
    if "top_mass" in attrs:
        asked = f"{attrs['top_mass']:g} GeV"
    elif "top_mass_range" in attrs:
        lo, hi = attrs["top_mass_range"]
        asked = f"range {lo:g}-{hi:g} GeV"
    else:
        asked = "per event"
    line = f"{asked}; events {m['min']:.4g}-{m['max']:.4g} GeV, mean {m['mean']:.4g}"
    if "top_width" in generator:
        w = generator["top_width"]
        line += f"; width {w['min']:.3g}-{w['max']:.3g} GeV"
    if "top_width_rule" in attrs:
        line += f" ({attrs['top_width_rule']})"
    return line


def inspect_file(path: Path, as_json: bool = False) -> None:
    data = read_events(path, source_layout(path))
    summary = summarize(data)
    console = Console()
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    a = summary["attrs"]
    console.print(f"[bold]{path}[/bold]: {summary['n_events']:,} events, up to {summary['max_objects']} objects "
                  f"per event ({summary['objects_per_event']['mean']:.2f} on average)")
    for key in ("generator", "process", "truth_definition", "detector", "seed", "sqrt_s", "cross_section_pb"):
        if key in a:
            console.print(f"  {key}: {a[key]}")
    if "cutflow" in a and a["cutflow"].get("generated"):
        cf = a["cutflow"]
        steps = " → ".join(f"{k} {v:,} ({v / cf['generated']:.3f})" for k, v in cf.items())
        console.print(f"  selection: {steps}")
    if "top_mass" in summary.get("generator", {}):
        console.print(f"  generated top mass: {_top_mass_line(a, summary['generator'])}")
    mult = summary["jet_multiplicity"]
    console.print("  jets per event: " + ", ".join(f"{k}: {v / summary['n_events']:.3f}" for k, v in mult.items() if v))
    if "btag_multiplicity" in summary:
        bm = summary["btag_multiplicity"]
        console.print("  b-tags per event: " + ", ".join(f"{k}: {v / summary['n_events']:.3f}" for k, v in bm.items() if v))
    w = summary["weights"]
    console.print(f"  weights: {'present' if w['present'] else 'absent (all 1)'}, sum {w['sum']:.6g}, "
                  f"sum of squares {w['sum_sq']:.6g}, negative {w['negative']:,}")
    console.print(_stats_table("detector objects (real entries)", summary["source"]))
    console.print(_stats_table("missing transverse momentum", summary["met"]))
    if "truth" in summary:
        rows = {f"{p}.{k}": s for p, feats in summary["truth"].items() for k, s in feats.items()}
        console.print(_stats_table("parton-level truth", rows))
    if "unfolded_samples_per_event" in summary:
        console.print(f"  unfolded: {summary['unfolded_samples_per_event']} samples per event")
