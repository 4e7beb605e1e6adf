"""``lvd evaluate``: distances, calibration and a classifier test between unfolded samples and the truth,
written as ``metrics.json`` (versioned keys), ``metrics.csv``, ``report.md`` and plots (docs/design.md §6)."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lvd import physics
from lvd.data.schema import EventData, read_events, source_layout
from lvd.data.unfolded import positive_weights, read_unfolded, samples_per_event
from lvd.errors import DataError
from lvd.evaluation import calibration as cal
from lvd.evaluation import metrics as mt
from lvd.evaluation.c2st import c2st
from lvd.measurement import closure
from lvd.measurement.cross_section import total_closure
from lvd.measurement.histogram import ensemble_size
from lvd.measurement.observables import (
    OBSERVABLES,
    consistency_residuals,
    derived,
    peak_position,
    w_constraint_pz,
)
from lvd.version import __version__

SCHEMA = "lvd-metrics/1"
KEY_OBSERVABLES = ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep", "m_ttbar", "pt_t_had", "pt_t_lep", "nu_pz")
MASS_WINDOWS = {"m_t_had": (150.0, 195.0, physics.M_TOP), "m_t_lep": (150.0, 195.0, physics.M_TOP),
                "m_W_had": (65.0, 95.0, physics.M_W), "m_W_lep": (65.0, 95.0, physics.M_W)}
DISTANCES = ("wasserstein", "energy", "ks", "kl", "js")


def observable_table() -> dict[str, tuple[str, str]]:
    """Name -> (label, unit) of every evaluated observable: derived ones, then each decay product's features."""
    table = dict(OBSERVABLES)
    for p in physics.DECAY_PRODUCTS:
        table |= {f"{p}_pt": (f"{p} pT", "GeV"), f"{p}_eta": (f"{p} η", ""), f"{p}_phi": (f"{p} φ", "")}
    return table


def edges_for(name: str, truth: np.ndarray) -> np.ndarray:
    """Fixed binning: physics windows for the masses (0.5 GeV bins), 50 bins over the truth's 0.5–99.5 % else."""
    if name in MASS_WINDOWS:
        lo, hi, _ = MASS_WINDOWS[name]
        return np.arange(lo, hi + 0.25, 0.5)
    if name.endswith("_phi"):
        return np.linspace(-np.pi, np.pi, 41)
    return mt.default_edges(truth)


def naive_estimates(data: EventData) -> dict[str, np.ndarray]:
    """Detector-level stand-ins where one exists: the reconstructed lepton, MET as the neutrino's transverse
    momentum, and the W-mass-constraint neutrino pz."""
    src, met = data.source, data.met
    flags = sum(np.asarray(src[k]) > 0.5 for k in ("is_electron", "is_muon") if k in src)
    if isinstance(flags, int):
        return {}
    slot = np.argmax(flags, axis=1)
    pick = lambda k: np.take_along_axis(np.asarray(src[k], np.float64), slot[:, None], 1)[:, 0]  # noqa: E731
    out = {"lepton_pt": pick("pt"), "lepton_eta": pick("eta"), "lepton_phi": pick("phi"),
           "neutrino_pt": np.asarray(met["met"], np.float64), "neutrino_phi": np.asarray(met["phi"], np.float64),
           "nu_pz": w_constraint_pz(src, met)}
    return out


def c2st_features(particles: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """``[N, 24]``: (log pT, η, sin φ, cos φ) of the six decay products."""
    cols = []
    for p in physics.DECAY_PRODUCTS:
        f = particles[p]
        cols += [np.log(np.maximum(np.asarray(f["pt"], np.float64), 1e-3)), np.asarray(f["eta"], np.float64),
                 np.sin(f["phi"]), np.cos(f["phi"])]
    return np.stack(cols, axis=-1)


def evaluate(unfolded_path: str | os.PathLike, out_dir: str | os.PathLike, truth_path: str | os.PathLike | None = None,
             n_boot: int = 20, seed: int = 0, plots: str | bool = "all", c2st_steps: int = 1500,
             on_progress: Callable[[str], None] | None = None, closure_boot: int = closure.N_BOOT) -> dict[str, Any]:
    """Evaluate an ``lvd unfold`` output against the truth (its own TRUTH group, or ``truth_path``'s).

    ``plots``: "all" (every observable), "key" (the headline observables, mass peaks, calibration, closure
    pulls, single events) or "none". ``closure_boot``: bootstrap replicas of the closure section's stated
    covariance (a χ² needs its inverse: more replicas than ``n_boot``'s distance errors).
    """
    plots = {True: "all", False: "none"}.get(plots, plots)
    if plots not in ("all", "key", "none"):
        raise ValueError(f"plots={plots!r}: expected all, key or none")
    say = on_progress or (lambda s: None)
    path = Path(unfolded_path)
    data, truth_data, w = read_inputs(path, truth_path)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    k = samples_per_event(data)
    members = ensemble_size(data, path) or 1  # an ensemble's file: the closure's total includes the members' spread
    say("observables")
    tru, unf = derived(truth_data.truth), derived(data.unfolded)
    naive = naive_estimates(data)
    table = observable_table()
    result: dict[str, Any] = {"schema": SCHEMA, "source": _source(path, truth_path, data, w, k, n_boot, members),
                              "observables": {}}
    files: dict[str, list[str]] = {}
    ranks_for_plot, coverage_for_plot = {}, {}
    for i, (name, (label, unit)) in enumerate(table.items()):
        say(f"distances: {name}")
        entry, hists, band, calib = _observable(name, label, unit, tru[name], unf[name], naive.get(name), w,
                                                n_boot, seed, i)
        result["observables"][name] = entry
        if calib is not None and (name in KEY_OBSERVABLES or name.endswith("_pz")):
            ranks_for_plot[name], coverage_for_plot[name] = calib
        if plots == "all" or (plots == "key" and name in KEY_OBSERVABLES):
            files[name] = _plot_distribution(out, name, label, unit, np.asarray(entry["binning"]), hists, band)
    # physics consistency of what the model states (resonances it predicts explicitly)
    res = consistency_residuals(data.unfolded)
    result["consistency"] = {n: {"mean": float(v.mean()), "std": float(v.std()),
                                 "q16": float(np.quantile(v, 0.16)), "q84": float(np.quantile(v, 0.84))}
                             for n, v in res.items()}
    say("closure")
    result["closure"] = closure.closure_all(tru, unf, w, n_boot=closure_boot, seed=seed, members=members)
    xs = total_closure(path, data, w, n_boot=closure_boot, seed=seed)
    if xs is not None:  # the file carries its acceptance: the total cross section, against the generator's
        result["cross_section"] = xs
    say("classifier two-sample test")
    result["c2st"] = c2st(c2st_features(truth_data.truth), c2st_features({p: {f: v[:, 0] for f, v in d.items()}
                                                                          for p, d in data.unfolded.items()}),
                          w, w, seed=seed, steps=c2st_steps, paired=True)
    if plots != "none":
        say("plots")
        files |= _summary_plots(out, result, ranks_for_plot, coverage_for_plot, unf, tru, k)
    result["plots"] = {k_: [f"plots/{f}" for f in v] for k_, v in files.items()}
    write_outputs(out, result)
    return result


def read_inputs(path: Path, truth_path: str | os.PathLike | None) -> tuple[EventData, EventData, np.ndarray]:
    """The checked unfolded file, the events holding the truth (the same file, or ``truth_path``'s) and the
    event weights ``[N]`` (:func:`event_weights`)."""
    data = read_unfolded(path)
    truth_data = data if truth_path is None else read_events(truth_path, source_layout(truth_path), require_truth=True)
    if truth_data.truth is None:
        raise DataError(f"{path}: no TRUTH group; pass --truth FILE with the parton-level truth of these events")
    if truth_data.n_events != data.n_events:
        raise DataError(f"{truth_path}: {truth_data.n_events} events, the unfolded file has {data.n_events}")
    return data, truth_data, event_weights(data, path, truth_data, truth_path)


def event_weights(data: EventData, path: Path, truth_data: EventData,
                  truth_path: str | os.PathLike | None) -> np.ndarray:
    """One source of weights: the unfolded file's when it has them (those of the events that were unfolded,
    negative ones included), else the truth file's. Both present and different: refused, since the truth
    would then not be that of the unfolded events as they are weighted."""
    if truth_path is not None and data.weights is not None and truth_data.weights is not None:
        a, b = (np.asarray(x, np.float64) for x in (data.weights, truth_data.weights))
        differ = ~np.isclose(a, b, rtol=1e-6, atol=0.0)
        if differ.any():
            i = int(np.argmax(differ))
            raise DataError(f"{path} and {truth_path}: the event weights differ ({int(differ.sum()):,} events, the "
                            f"first {i}: {a[i]:.6g} and {b[i]:.6g}); give the truth file of the same weighted events")
    source, source_path = (data, path) if data.weights is not None or truth_path is None else (truth_data, truth_path)
    return positive_weights(source, source_path, "evaluation")


def _source(path: Path, truth_path, data: EventData, w: np.ndarray, k: int, n_boot: int,
            members: int = 1) -> dict[str, Any]:
    out = {"unfolded_file": str(path.absolute()), "truth_file": str(Path(truth_path or path).absolute()),
           "model": data.attrs.get("model"), "checkpoint": data.attrs.get("checkpoint"),
           "sampler": data.attrs.get("sampler"), "sampler_steps": data.attrs.get("sampler_steps"),
           "samples_per_event": k, "n_events": data.n_events, "weight_sum": float(w.sum()),
           "negative_weights": int((w < 0).sum()), "bootstrap": n_boot, "lvd_version": __version__,
           "evaluated_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if members > 1:
        out |= {"ensemble_members": data.attrs.get("ensemble_members"), "ensemble_samples_per_member": k // members}
    return out


def _observable(name: str, label: str, unit: str, t: np.ndarray, u: np.ndarray, naive: np.ndarray | None,
                w: np.ndarray, n_boot: int, seed: int, i: int):
    """One observable's entry: distances (unfolded, and naive where there is one), histograms, calibration,
    peak. Returns (entry, histograms, the 16–84 % band over samples or None, (ranks, coverage) or None)."""
    k = u.shape[1]
    edges = edges_for(name, t)
    distance_fns = {"wasserstein": mt.wasserstein, "energy": mt.energy, "ks": mt.ks,
                    "kl": mt.binned(mt.kl_divergence, edges), "js": mt.binned(mt.js_divergence, edges)}
    entry: dict[str, Any] = {"label": label, "unit": unit, "binning": edges.tolist(), "distances": {}}
    for source, values in (("unfolded", u), ("naive", naive)):
        if values is not None:
            entry["distances"][source] = {
                m: mt.bootstrap(fn, t, values, w, w, n_boot, seed + 1000 * i + j).as_dict()
                for j, (m, fn) in enumerate(distance_fns.items())}
    hists = {"truth": mt.histogram(t, w, edges), "unfolded": mt.histogram(u.reshape(-1), np.repeat(w / k, k), edges)}
    if naive is not None:
        hists["naive"] = mt.histogram(naive, w, edges)
    entry["histograms"] = {s: h.tolist() for s, h in hists.items()}
    band, calib = None, None
    if k > 1:
        per_sample = np.stack([mt.histogram(u[:, j], w, edges) for j in range(k)])
        band = np.quantile(per_sample, [0.16, 0.84], axis=0)
        ranks = cal.truth_ranks(u, t, seed=seed + i)
        cov = {lv: cal.coverage(ranks, k, int(lv) / 100, w) for lv in ("68", "95")}
        entry["calibration"] = {"coverage_68": cov["68"], "coverage_95": cov["95"],
                                "crps": float(np.sum(w * cal.crps(u, t)) / w.sum()),
                                "rank_histogram": cal.rank_histogram(ranks, k, w).tolist()}
        calib = (_rebin(cal.rank_histogram(ranks, k, w), 20), cov)
    if name in MASS_WINDOWS:
        lo, hi, nominal = MASS_WINDOWS[name]
        entry["peak"] = {"unfolded": peak_position(u, lo, hi, np.broadcast_to(w[:, None], u.shape)),
                         "truth": peak_position(t, lo, hi, w), "nominal": nominal}
    return entry, hists, band, calib


def _summary_plots(out: Path, result: dict[str, Any], ranks: dict, coverage: dict, unf: dict, tru: dict,
                   k: int) -> dict[str, list[str]]:
    """Mass peaks, calibration, closure pulls and single events (drawn for plots 'all' and 'key')."""
    from lvd.evaluation import plots as pl
    from lvd.measurement.plots import style

    style()
    obs, table, files = result["observables"], observable_table(), {}
    panels = [(table[n][0], np.asarray(obs[n]["binning"]), np.asarray(obs[n]["histograms"]["truth"]),
               np.asarray(obs[n]["histograms"]["unfolded"]), MASS_WINDOWS[n][2]) for n in MASS_WINDOWS]
    files["mass_peaks"] = pl.mass_peaks(out / "plots" / "mass_peaks", panels)
    if ranks:
        files["calibration"] = pl.calibration(out / "plots" / "calibration", ranks, coverage)
    files["closure_pulls"] = pl.closure_pulls(out / "plots" / "closure_pulls", result["closure"]["observables"])
    if k >= 4:
        events = list(range(min(4, len(next(iter(tru.values()))))))
        single = {n: (table[n][0], unf[n], tru[n]) for n in ("nu_pz", "m_t_lep", "pt_t_had")}
        files["single_events"] = pl.single_events(out / "plots" / "single_events", events, single)
    return files


def _rebin(h: np.ndarray, n: int) -> np.ndarray:
    if len(h) <= n:
        return h
    idx = np.linspace(0, len(h), n + 1).astype(int)
    return np.array([h[a:b].sum() for a, b in zip(idx[:-1], idx[1:], strict=True)])


def _plot_distribution(out: Path, name, label, unit, edges, hists, band) -> list[str]:
    from lvd.evaluation import plots as pl
    from lvd.measurement.plots import style

    style()
    return pl.distribution(out / "plots" / name, label, unit, edges, hists["truth"], hists["unfolded"], band,
                           hists.get("naive"))


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["observable", "source", "metric", "value", "error"])
        for name, entry in result["observables"].items():
            for source, ms in entry["distances"].items():
                for m, v in ms.items():
                    wr.writerow([name, source, m, f"{v['value']:.6g}", f"{v['error']:.3g}"])
            for m, v in entry.get("calibration", {}).items():
                if m.startswith("coverage"):
                    wr.writerow([name, "unfolded", m, f"{v['coverage']:.4f}", f"{v['error']:.4f}"])
                elif m == "crps":
                    wr.writerow([name, "unfolded", m, f"{v:.6g}", ""])
            if "peak" in entry:
                wr.writerow([name, "unfolded", "peak", f"{entry['peak']['unfolded']:.3f}", ""])
        c = result["c2st"]
        wr.writerow(["all", "unfolded", "c2st_auc", f"{c['auc']:.4f}", f"{c['error']:.4f}"])
        for name, entry in result.get("closure", {}).get("observables", {}).items():
            for test in ("chi2_stat", "chi2_total", "chi2_paired"):
                x = entry[test]
                for m, v in (("per_ndf", x["chi2_per_ndf"]), ("p_value", x["p_value"])):
                    wr.writerow([name, "unfolded", f"closure_{test}_{m}", "" if v is None else f"{v:.6g}", ""])
    (out / "report.md").write_text(markdown(result))


def _fmt(v: dict[str, float]) -> str:
    if not np.isfinite(v["value"]):
        return "undefined"  # KL/JS of a histogram with a negative bin (negative event weights)
    return f"{v['value']:.4g} ± {v['error']:.2g}" if np.isfinite(v["error"]) else f"{v['value']:.4g}"


def markdown(r: dict[str, Any]) -> str:
    s = r["source"]
    obs = r["observables"]
    lines = [f"# Unfolding report: {s.get('model') or 'model'}", "",
             f"- unfolded file: `{s['unfolded_file']}`", f"- truth: `{s['truth_file']}`",
             f"- checkpoint: `{s.get('checkpoint')}`",
             f"- sampler: {s.get('sampler')} ({s.get('sampler_steps')} steps), {s['samples_per_event']} samples per event",
             f"- events: {s['n_events']:,} (weight sum {s['weight_sum']:.6g}, {s.get('negative_weights', 0):,} "
             f"negative weights); bootstrap replicas: {s['bootstrap']}",
             f"- lvd {s['lvd_version']}, {s['evaluated_at']}", "",
             "## Headline", "",
             "| observable | W1 unfolded | W1 naive | peak unfolded (truth) | coverage 68 % | coverage 95 % |",
             "|---|---|---|---|---|---|"]
    for n in KEY_OBSERVABLES:
        e = obs[n]
        unit = f" {e['unit']}" if e["unit"] else ""
        w1 = _fmt(e["distances"]["unfolded"]["wasserstein"]) + unit
        w1n = _fmt(e["distances"]["naive"]["wasserstein"]) + unit if "naive" in e["distances"] else "–"
        peak = f"{e['peak']['unfolded']:.2f} ({e['peak']['truth']:.2f})" if "peak" in e else "–"
        c = e.get("calibration")
        cov = [f"{c[f'coverage_{lv}']['coverage']:.3f} (nominal {c[f'coverage_{lv}']['nominal']:.3f})" if c else "–"
               for lv in ("68", "95")]
        lines.append(f"| {e['label']} | {w1} | {w1n} | {peak} | {cov[0]} | {cov[1]} |")
    c = r["c2st"]
    lines += ["", f"Classifier two-sample test (six decay products, 24 features): AUC = {c['auc']:.4f} ± {c['error']:.4f} "
              f"(0.5: indistinguishable from the truth; {c['n_test']:,} held-out events).", ""]
    if "mass_peaks" in r.get("plots", {}):
        lines += ["![mass peaks](plots/mass_peaks.png)", ""]
    if "closure" in r:
        lines += closure_markdown(r["closure"], "closure_pulls" in r.get("plots", {}))
    if "cross_section" in r:
        x = r["cross_section"]
        truth = (f"; generator truth {x['truth'] / 1000:.4g} pb (pull {x['pull']:+.2f})" if "truth" in x else "")
        lines += ["## Cross section", "",
                  f"σ in the {x['phase_space']} phase space: {x['unfolded'] / 1000:.4g} ± {x['uncertainty'] / 1000:.2g} pb "
                  f"(stat {x['stat'] / 1000:.2g}, posterior {x['posterior'] / 1000:.2g}) for "
                  f"{x['luminosity_inv_fb']:.4g} fb⁻¹{truth}.", ""]
    lines += ["## Distances to the truth (all observables)", "",
              "Event-weighted; ± is the bootstrap standard deviation. KL and JS use the fixed binning stored in "
              "metrics.json (`binning`); they are undefined where negative event weights leave a bin "
              "negative. 'naive' is the detector-level estimate where one exists.", "",
              "| observable | source | Wasserstein-1 | energy | KS | KL | JS |", "|---|---|---|---|---|---|---|"]
    for e in obs.values():
        for source, ms in e["distances"].items():
            lines.append(f"| {e['label']} | {source} | " + " | ".join(_fmt(ms[m]) for m in DISTANCES) + " |")
    lines += ["", "## Calibration of the per-event posteriors", "",
              "| observable | coverage 68 % | coverage 95 % | CRPS |", "|---|---|---|---|"]
    for e in obs.values():
        if "calibration" in e:
            cc = e["calibration"]
            lines.append(f"| {e['label']} | {cc['coverage_68']['coverage']:.3f} ± {cc['coverage_68']['error']:.3f} "
                         f"(nominal {cc['coverage_68']['nominal']:.3f}) | {cc['coverage_95']['coverage']:.3f} ± "
                         f"{cc['coverage_95']['error']:.3f} (nominal {cc['coverage_95']['nominal']:.3f}) | {cc['crps']:.4g} |")
    if r.get("consistency"):
        lines += ["", "## Physics consistency (stated resonance mass − mass of its summed decay products)", "",
                  "| resonance | mean [GeV] | std [GeV] | 16 % | 84 % |", "|---|---|---|---|---|"]
        for n, v in r["consistency"].items():
            lines.append(f"| {n[3:]} | {v['mean']:.3f} | {v['std']:.3f} | {v['q16']:.3f} | {v['q84']:.3f} |")
    lines += ["", "## Plots", ""]
    for name, fs in r.get("plots", {}).items():
        png = [f for f in fs if f.endswith(".png")]
        if png and name not in ("mass_peaks", "closure_pulls"):
            lines.append(f"![{name}]({png[0]})")
    return "\n".join(lines) + "\n"


def _model_share(entry: dict[str, Any]) -> str:
    """The median over the bins of error_model / error_total of one closure entry (an ensemble's)."""
    model, total = np.asarray(entry["error_model"]), np.asarray(entry["error_total"])
    share = model[total > 0] / total[total > 0]
    return f"{np.median(share):.2f}" if share.size else "–"


def closure_markdown(c: dict[str, Any], with_plot: bool) -> list[str]:
    """The closure table (docs/design.md §6, "Closure")."""
    fr, fp = closure.format_ratio, closure.format_p
    sm = c["summary"]
    lines = ["## Closure: the binned unfolded histogram against the truth of the same events", "",
             f"{c['n_bins']} bins of equal truth content per observable (the outermost ones hold the draws beyond "
             "the truth's range). **stat**: χ²/bin with the truth's Poisson variance Σ w² per bin (the sample's "
             "statistical precision); below 1 for a perfect posterior, since unfolded and truth share the events. "
             f"**total**: χ²/ndf with the covariance `lvd histogram` states (bootstrap, {c['bootstrap']} replicas, + "
             "the posterior spread of one draw of the histogram, estimated event by event, + the members' spread "
             "for an ensemble); also below 1 for a perfect posterior. **paired**: "
             "per-event differences d_i = c_i − 1[t_i ∈ b] with their own covariance; χ²/ndf ≈ 1 for a perfect "
             "posterior at any K, the test to judge the model by. Pull: (unfolded − truth)/√(Σ w²) of the worst bin.",
             "", "| observable | χ²/bin stat | p | χ²/ndf total | p | paired χ²/ndf | p | worst pull (bin) |",
             "|---|---|---|---|---|---|---|---|"]
    ensemble = "members" in c
    if ensemble:  # one more column; a file of one run keeps the table as it was
        lines[2] += (f" An ensemble of {c['members']} members: the total also holds the spread of the members' "
                     "histograms (**model**; its share of the total error, median over the bins, in the last column).")
        lines[-2:] = [lines[-2] + " model / total |", lines[-1] + "---|"]
    for e in c["observables"].values():
        s, t, pr, wb = e["chi2_stat"], e["chi2_total"], e["chi2_paired"], e["worst_bin"]
        worst = "–" if wb is None else f"{wb['pull_stat']:+.2f} ({wb['bin']})"
        lines.append(f"| {e['label']} | {fr(s['chi2_per_ndf'])} | {fp(s['p_value'])} | {fr(t['chi2_per_ndf'])} | "
                     f"{fp(t['p_value'])} | {fr(pr['chi2_per_ndf'])} ({pr['ndf']}) | {fp(pr['p_value'])} | {worst} |"
                     + (f" {_model_share(e)} |" if ensemble else ""))
    lines += [""] + [f"- {what}: χ²/ndf ≤ 1.5 for {sm[test]['at_most_1.5']} of {sm['n_observables']}, ≤ 3 for "
                     f"{sm[test]['at_most_3']}, median {fr(sm[test]['median'])}"
                     for test, what in (("chi2_stat", "stat"), ("chi2_total", "total"), ("chi2_paired", "paired"))]
    lines.append("")
    if with_plot:
        lines += ["![closure pulls](plots/closure_pulls.png)", ""]
    return lines
