"""Every model at the same training budget (same events seen) on the toy generator, side by side (issue 4).

    python benchmarks/compare_models.py --steps 1500 --out bench-compare

For each of lvd, vdm, ldm (stage 1 ``vae`` + stage 2), cvae and cinn: train with the model's ``*_small``
options for ``--steps`` steps of the same batch size on the same toy file and seed, unfold the same held-out
file, and report the time per training step (median over the logged intervals, compilation excluded), the
peak position and width of the top and W masses built from the unfolded decay products, and the neutrino pz
Wasserstein-1 distance to the truth next to the W-mass-constraint quadratic solution's. Writes
``compare.md`` and ``compare.json`` into ``--out`` and prints the table.

The width is the σ-equivalent of the interquartile range of the values inside the mass window (1.349 σ
for a Gaussian), so a model that smears a resonance shows a larger width than the truth's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from lvd import config
from lvd.data.generate import toy
from lvd.data.schema import read_events
from lvd.evaluation.observables import derived, peak_position, w_constraint_pz
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train

WINDOWS = {"m_t_had": (140.0, 205.0), "m_t_lep": (140.0, 205.0), "m_W_had": (60.0, 100.0), "m_W_lep": (60.0, 100.0)}
OPTIONS = {"lvd": "small", "vdm": "vdm_small", "ldm": "ldm_small", "cvae": "cvae_small", "cinn": "cinn_small"}


def width(values: np.ndarray, lo: float, hi: float) -> float:
    v = np.asarray(values, np.float64).ravel()
    v = v[(v > lo) & (v < hi)]
    return float(np.subtract(*np.percentile(v, [75, 25])) / 1.349)


def ms_per_step(history: list[dict], batch: int) -> float:
    rates = [r["events_per_s"] for r in history if r.get("split") == "train" and "events_per_s" in r][1:]
    return float(1000 * batch / np.median(rates)) if rates else float("nan")


def quality(path: Path) -> dict[str, float]:
    d = read_events(path, require_truth=True)
    unf, tru = derived(d.unfolded), derived(d.truth)
    out: dict[str, float] = {}
    for name, (lo, hi) in WINDOWS.items():
        out[f"{name}_peak"] = peak_position(unf[name], lo, hi)
        out[f"{name}_width"] = width(unf[name], lo, hi)
        out[f"{name}_in_window"] = float(np.mean((unf[name] > lo) & (unf[name] < hi)))
        out[f"{name}_truth_peak"] = peak_position(tru[name], lo, hi)
        out[f"{name}_truth_width"] = width(tru[name], lo, hi)
    out["nu_pz_w1"] = float(wasserstein_distance(unf["nu_pz"].ravel(), tru["nu_pz"]))
    out["nu_pz_w1_quadratic"] = float(wasserstein_distance(w_constraint_pz(d.source, d.met), tru["nu_pz"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--train-events", type=int, default=200_000)
    ap.add_argument("--test-events", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--sampler-steps", type=int, default=20)
    ap.add_argument("--models", default="lvd,vdm,ldm,cvae,cinn")
    ap.add_argument("--out", type=Path, default=Path("bench-compare"))
    ap.add_argument("overrides", nargs="*", help="extra options for every model, e.g. train.batch_size=256")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, n, seed in (("train", a.train_events, 1), ("test", a.test_events, 1000)):
        files[role] = a.out / f"toy_{role}_{n}.h5"
        if not files[role].exists():
            toy.generate_file(files[role], n, seed=seed)
    common = [f"train.steps={a.steps}", "train.validate_every=500", "train.checkpoint_every=500", *a.overrides]
    # the consistency term starts after `consistency_start` steps in the small presets; scale it into the budget
    common += [f"loss.consistency_start={a.steps // 7}", f"loss.consistency_warmup={a.steps // 7}"]
    rows = {}
    for kind in a.models.split(","):
        extra = []
        row: dict[str, float | str] = {"model": kind}
        if kind == "ldm":
            vae_opts = config.load_options(OPTIONS["ldm"], [*common, "model.kind=vae", "name=cmp-vae"])
            t0 = time.time()
            vae = train(vae_opts, files["train"], runs_dir=a.out / "runs")
            row["stage1_s"] = time.time() - t0
            row["stage1_ms_per_step"] = ms_per_step(vae.history, vae_opts.train.batch_size)
            extra.append(f"model.vae_checkpoint={vae.run_dir}")
        opts = config.load_options(OPTIONS[kind], [*common, *extra, f"model.kind={kind}", f"name=cmp-{kind}"])
        t0 = time.time()
        r = train(opts, files["train"], runs_dir=a.out / "runs")
        row["train_s"] = time.time() - t0
        row["ms_per_step"] = ms_per_step(r.history, opts.train.batch_size)
        row["events_seen"] = r.step * opts.train.batch_size
        row["best_validation"] = r.best_validation
        out = a.out / f"unfolded_{kind}.h5"
        t0 = time.time()
        unfold_file(r.run_dir, files["test"], out, samples=a.samples, steps=a.sampler_steps)
        row["unfold_s"] = time.time() - t0
        row.update(quality(out))
        rows[kind] = row
        print(json.dumps(row), flush=True)
    (a.out / "compare.json").write_text(json.dumps(rows, indent=1))
    lines = ["| model | ms/step | events seen | m_t_had peak (σ) | m_t_lep peak (σ) | m_W_had peak (σ) | m_W_lep peak (σ) "
             "| ν pz W1 [GeV] (quadratic) |", "|---|---|---|---|---|---|---|---|"]
    first = next(iter(rows.values()))
    for kind, r in rows.items():
        ms = f"{r['ms_per_step']:.0f}" + (f" (+ VAE {r['stage1_ms_per_step']:.0f})" if "stage1_ms_per_step" in r else "")
        cells = [f"{r[f'{n}_peak']:.1f} ({r[f'{n}_width']:.1f})" for n in WINDOWS]
        lines.append(f"| {kind} | {ms} | {r['events_seen']:,} | " + " | ".join(cells)
                     + f" | {r['nu_pz_w1']:.1f} ({r['nu_pz_w1_quadratic']:.1f}) |")
    lines.append("| truth | | | " + " | ".join(f"{first[f'{n}_truth_peak']:.1f} ({first[f'{n}_truth_width']:.1f})"
                                             for n in WINDOWS) + " | 0 |")
    table = "\n".join(lines)
    (a.out / "compare.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
