"""The headline table of an evaluation, as ``lvd evaluate`` and ``lvd demo`` print it."""

from __future__ import annotations

from rich.table import Table

from lvd.cli.progress import console
from lvd.evaluation.report import KEY_OBSERVABLES
from lvd.measurement.closure import format_ratio


def print_headline(result) -> None:
    t = Table(title="unfolded vs truth", title_justify="left")
    for col in ("observable", "W1 unfolded", "W1 naive", "peak (truth)", "cov. 68%"):
        t.add_column(col, justify="left" if col == "observable" else "right")
    for n in KEY_OBSERVABLES:
        e = result["observables"][n]
        d = e["distances"]
        cal = e.get("calibration", {}).get("coverage_68")
        t.add_row(e["label"], f"{d['unfolded']['wasserstein']['value']:.3g}",
                  f"{d['naive']['wasserstein']['value']:.3g}" if "naive" in d else "–",
                  f"{e['peak']['unfolded']:.2f} ({e['peak']['truth']:.2f})" if "peak" in e else "–",
                  f"{cal['coverage']:.3f}/{cal['nominal']:.3f}" if cal else "–")
    console.print(t)
    c = result["c2st"]
    console.print(f"classifier two-sample test AUC {c['auc']:.3f} ± {c['error']:.3f} (0.5 is perfect)")
    if "closure" in result:
        s = result["closure"]["summary"]
        n, st, pa = s["n_observables"], s["chi2_stat"], s["chi2_paired"]
        console.print(f"closure ({n} observables, {result['closure']['n_bins']} bins): χ²/bin against the sample's "
                      f"statistical precision ≤ 1.5 for {st['at_most_1.5']}/{n} (median {format_ratio(st['median'])}); "
                      f"paired test χ²/ndf median {format_ratio(pa['median'])} (≈ 1 for a perfect posterior)")
