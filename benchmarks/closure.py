"""Closure of a run on events it never saw: nominal, and under stressed truth distributions.

    python benchmarks/closure.py RUN OUT [--events 20000] [--samples 16] [--sampler dpm++ --steps 20]
                                        [--seed 0] [--generator toy | --data TEST.h5 --reference REF.h5]

Measures what a referee asks first (docs/design.md §6, "Closure"): the unfolded histogram of simulated events
against their own truth in 12 equal-count bins, for the 16 headline observables: χ²/bin against the sample's
statistical precision, χ²/ndf against the tool's stated total uncertainty, and the paired per-event test.

Stress: the same events, their *truth* distribution tilted smoothly by event weights ``1 + a·f(truth)`` (f a
standardised, clipped function of top pT, m(tt̄), y(tt̄), and all three together, ±25 % over the bulk), so the
model — trained at the nominal distribution — unfolds data whose truth differs from its prior. For each: the
plain unfolding's χ², and after ``lvd reweight`` with its defaults and ``--reference`` an unfolding of
independent nominal events, the χ² in top pT, m(tt̄) and y(tt̄).

Writes ``OUT/closure.md`` (the tables, the command, the date) and ``OUT/closure.json``. Test and reference
events are generated (toy, seeds far from any training seed) unless ``--data``/``--reference`` are given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lvd.data.generate import toy
from lvd.data.schema import read_events, write_events
from lvd.data.unfolded import read_unfolded
from lvd.measurement.closure import HEADLINE, closure_all
from lvd.measurement.observables import derived
from lvd.measurement.reweight import reweight_file
from lvd.sampling.unfold import unfold_file

DATA_SEED, REFERENCE_SEED = 7_200_000, 7_300_000  # never used for training or the demo
STRESS_AMPLITUDE = 0.25
STRESSED = ("pt_t_had", "m_ttbar", "y_ttbar")
STRESSES = {"pt_t_had": ("pt_t_had",), "m_ttbar": ("m_ttbar",), "y_ttbar": ("y_ttbar",),
            "all three": ("pt_t_had", "m_ttbar", "y_ttbar")}


def stress_weights(truth: dict[str, np.ndarray], observables: tuple[str, ...], a: float = STRESS_AMPLITUDE
                   ) -> np.ndarray:
    """Event weights ``Π_o (1 + a·clip(z_o, −1.5, 1.5))``, z the standardised observable (|y| for rapidities:
    a tilt toward forward tops, not a shift): a smooth ±a change of the truth distribution over its bulk."""
    w = np.ones(len(next(iter(truth.values()))))
    for o in observables:
        v = np.abs(truth[o]) if o.startswith("y_") else truth[o]
        z = (v - np.mean(v)) / np.std(v)
        w *= 1.0 + a * np.clip(z, -1.5, 1.5)
    return w


def closure_table(entries: dict[str, dict], names=HEADLINE) -> list[str]:
    rows = ["| observable | χ²/bin stat (p) | χ²/ndf total (p) | paired χ²/ndf (p) | worst pull (stat) |",
            "|---|---|---|---|---|"]
    for name in names:
        e = entries["observables"].get(name)
        if e is None or "error" in e:
            rows.append(f"| {name} | — | — | — | — |")
            continue
        pulls = np.abs(np.nan_to_num(np.asarray(e["pull_stat"], float)))
        cells = [f"{e[k]['chi2_per_ndf'] or float('nan'):.2f} ({e[k]['p_value'] or 0:.2g})"
                 for k in ("chi2_stat", "chi2_total", "chi2_paired")]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {pulls.max():.1f} |")
    return rows


def summary_line(entries: dict[str, dict]) -> str:
    s = entries["summary"]
    n = s["n_observables"]
    return "; ".join(f"{k.removeprefix('chi2_')}: {v['at_most_1.5']} of {n} ≤ 1.5, {v['at_most_3']} ≤ 3, "
                     f"median {v['median']:.2f}" for k, v in s.items() if isinstance(v, dict))


def closure_of(path: Path, weights: np.ndarray | None = None, names=HEADLINE, seed: int = 0) -> dict:
    data = read_unfolded(path, truth_optional=False)
    w = data.event_weights().astype(np.float64) if weights is None else weights
    return closure_all(derived(data.truth), derived(data.unfolded), w, names=names, seed=seed)


def with_weights(src: Path, dst: Path, w: np.ndarray) -> Path:
    data = read_events(src)
    data.weights = w.astype(np.float32)
    attrs = {k: v for k, v in data.attrs.items() if k not in ("n_events", "source_features", "met_features")}
    data.attrs = attrs
    write_events(dst, data)
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="test events (default: fresh toy events)")
    ap.add_argument("--reference", type=Path, default=None, help="independent nominal events for lvd reweight")
    ap.add_argument("--no-stress", action="store_true")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sampling = {k: v for k, v in (("sampler", args.sampler), ("steps", args.steps)) if v is not None}

    def unfold(src: Path, name: str) -> Path:
        dst = out / name
        if not dst.exists():  # reruns reuse finished unfoldings
            unfold_file(args.run, src, dst, samples=args.samples, seed=args.seed, **sampling)
        return dst

    data = args.data or out / "data.h5"
    if args.data is None and not data.exists():
        toy.generate_file(data, args.events, seed=DATA_SEED + args.seed)
    unfolded = unfold(data, "unfolded.h5")
    nominal = closure_of(unfolded, seed=args.seed)
    report = {"run": str(args.run), "events": read_events(unfolded).n_events, "samples": args.samples,
              "sampling": sampling or "the run's default", "nominal": nominal, "stress": {}}
    lines = [f"# Closure of `{args.run}`", "",
             f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/closure.py {' '.join(sys.argv[1:])}`: "
             f"{report['events']:,} events never seen in training, K = {args.samples}, sampling "
             f"{sampling or 'as the run stores'}; 12 equal-count bins from the truth.", "",
             "## Nominal", "", summary_line(nominal), "", *closure_table(nominal), ""]
    if not args.no_stress:
        reference = args.reference or out / "reference.h5"
        if args.reference is None and not reference.exists():
            toy.generate_file(reference, args.events, seed=REFERENCE_SEED + args.seed)
        reference_unfolded = unfold(reference, "reference_unfolded.h5")
        truth = derived(read_unfolded(unfolded, truth_optional=False).truth)
        lines += ["## Stress: truth tilted by ±25 %", "",
                  "| tilted in | χ²/bin stat, plain: pt_t_had / m_ttbar / y_ttbar | after lvd reweight |", "|---|---|---|"]
        for label, obs in STRESSES.items():
            w = stress_weights(truth, obs)
            stressed = with_weights(unfolded, out / f"stressed_{'_'.join(obs)}.h5", w)
            reweighted = out / f"reweighted_{'_'.join(obs)}.h5"
            reweight_file(stressed, reweighted, reference=reference_unfolded, seed=args.seed)
            plain = closure_of(stressed, names=STRESSED, seed=args.seed)
            after = closure_of(reweighted, names=STRESSED, seed=args.seed)
            report["stress"][label] = {"plain": plain, "reweighted": after}

            def cell(r: dict) -> str:
                return " / ".join(f"{r['observables'][o]['chi2_stat']['chi2_per_ndf']:.2f}" for o in STRESSED)

            lines.append(f"| {label} | {cell(plain)} | {cell(after)} |")
    lines += ["", f"Wall time {time.time() - t0:.0f} s."]
    (out / "closure.md").write_text("\n".join(lines) + "\n")
    (out / "closure.json").write_text(json.dumps(report, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
