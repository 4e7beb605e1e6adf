"""Retrain the LVD model shipped with lvd (``src/lvd/pretrained/toy``), the one ``lvd demo`` uses.

    python scripts/train_demo_model.py --work /tmp/demo-model [--minutes 150] [key=value ...]

1. generate ``--events`` toy events with seed 101 (the demo draws its events from seeds ≥ 7,000,000);
2. train ``--options`` (default: the packaged ``small``) with the overrides for ``--steps`` steps or
   ``--minutes`` of wall time, logging the physics metrics at every validation;
3. export the latest EMA parameters (a sampling-only checkpoint, a few MB) into ``--out`` with the resolved
   options, the training log (``metrics.csv``) and this command;
4. unfold 20,000 fresh toy events (seed 7,000,000, K = 16, dpm++ 20 steps), evaluate them, and write the report
   beside the model (``evaluation/``) with the headline in ``README.md``.

The result depends only on the options, the seeds and the machine's floating-point behaviour; a run stopped
by a signal resumes with the same command (``-c`` is passed automatically when ``--work`` holds the run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from lvd import config
from lvd.cli.demo import SHIPPED
from lvd.cli.progress import console, progress_bar
from lvd.data.generate import toy
from lvd.evaluation.report import KEY_OBSERVABLES, evaluate
from lvd.runs.run import Checkpoint
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train
from lvd.training.monitor import physics_monitor

TRAIN_SEED, TEST_SEED = 101, 7_000_000
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, run)")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "lvd" / "pretrained" / "toy")
    ap.add_argument("--options", default="small")
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--steps", type=int, default=0, help="train.steps (0: the options')")
    ap.add_argument("--minutes", type=float, default=0.0, help="wall-time limit of the training (0: none)")
    ap.add_argument("--stop-at", type=int, default=0, help="train.stop_at: stop at this step, the schedules still "
                    "running to --steps (0: none)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    data = a.work / f"toy_train_{a.events}_seed{TRAIN_SEED}.h5"
    if not data.exists():
        with progress_bar(a.events, "generate training events") as advance:
            toy.generate_file(data, a.events, seed=TRAIN_SEED, on_progress=advance)
    overrides = [*a.overrides, "name=lvd-demo-toy"]
    if a.steps:
        overrides.append(f"train.steps={a.steps}")
    if a.stop_at:
        overrides.append(f"train.stop_at={a.stop_at}")
    if a.minutes:
        overrides.append(f"train.time_limit_minutes={a.minutes}")
    opts = config.load_options(a.options, overrides)
    previous = a.work / "runs" / opts.name
    t0 = time.time()
    result = train(opts, data, runs_dir=a.work / "runs", checkpoint=previous if previous.exists() else None,
                   report=console.print, progress=progress_bar, hooks=physics_monitor(opts))
    console.print(f"training {result.stopped_by} at step {result.step} after {(time.time() - t0) / 60:.1f} min")

    # the model, its options, its log and how it was made
    if a.out.exists():
        shutil.rmtree(a.out)
    ck = Checkpoint.open(result.run_dir, prefer="latest")
    trained_for = f"{ck.step:,} steps of {opts.train.batch_size} events on {a.events:,} toy events"
    ck.export(a.out, trained_for=trained_for)
    shutil.copy(result.run_dir / "options.yaml", a.out / "options.yaml")
    shutil.copy(result.run_dir / "metrics.csv", a.out / "metrics.csv")
    command = " ".join(["python", "scripts/train_demo_model.py", *sys.argv[1:]])

    test = a.work / f"toy_test_20000_seed{TEST_SEED}.h5"
    if not test.exists():
        toy.generate_file(test, 20_000, seed=TEST_SEED)
    unfolded = a.work / "unfolded_demo_model.h5"
    plan = SHIPPED  # evaluated exactly as lvd demo runs it
    with progress_bar(20_000, f"unfold fresh events (K = {plan.samples})") as advance:
        unfold_file(a.out, test, unfolded, samples=plan.samples, sampler=plan.sampler, steps=plan.sampler_steps,
                    on_progress=advance)
    report = a.out / "evaluation"
    m = evaluate(unfolded, report, n_boot=10, seed=0, plots="key", c2st_steps=1500)
    for big in report.glob("*.csv"):
        big.unlink()  # the per-bin tables stay in metrics.json; the model folder ships with the package
    write_readme(a.out, m, trained_for, command)
    console.print(f"shipped model written to {a.out}")


def write_readme(out: Path, m: dict, trained_for: str, command: str) -> None:
    obs = m["observables"]
    rows = []
    for n in KEY_OBSERVABLES:
        e = obs[n]
        d = e["distances"]
        cov = e.get("calibration", {})
        rows.append(f"| {e['label']} | {d['unfolded']['wasserstein']['value']:.2f} | "
                    + (f"{d['naive']['wasserstein']['value']:.2f}" if "naive" in d else "–") + " | "
                    + (f"{cov['coverage_68']['coverage']:.3f} / {cov['coverage_68']['nominal']:.3f} | "
                       f"{cov['coverage_95']['coverage']:.3f} / {cov['coverage_95']['nominal']:.3f}" if cov else "– | –")
                    + " |")
    for n in ("pt_ttbar",):
        rows.append(f"| {obs[n]['label']} | {obs[n]['distances']['unfolded']['wasserstein']['value']:.2f} | – | "
                    f"{obs[n]['calibration']['coverage_68']['coverage']:.3f} / "
                    f"{obs[n]['calibration']['coverage_68']['nominal']:.3f} | "
                    f"{obs[n]['calibration']['coverage_95']['coverage']:.3f} / "
                    f"{obs[n]['calibration']['coverage_95']['nominal']:.3f} |")
    text = f"""# The LVD model shipped with lvd (toy tt̄)

`lvd demo` unfolds fresh toy events with this model. It is an ordinary lvd run folder reduced to what sampling
needs (the EMA parameters): `lvd unfold {out.relative_to(out.parents[2]) if len(out.parents) > 2 else out} EVENTS.h5 OUT.h5`
and `lvd.load(...)` use it like any run.

* trained for {trained_for}; options in `options.yaml`, training log (losses and the physics metrics at every
  validation) in `metrics.csv`;
* made by `{command}`.

Held-out evaluation as `lvd demo` runs it (20,000 toy events generated with seed 7,000,000; K = {SHIPPED.samples}
samples per event, {SHIPPED.sampler} sampler, {SHIPPED.sampler_steps} steps; full report in `evaluation/report.md`):

| observable | W1 unfolded | W1 detector-level estimate | coverage 68 % (nominal) | coverage 95 % (nominal) |
|---|---|---|---|---|
{chr(10).join(rows)}

Classifier two-sample test AUC {m['c2st']['auc']:.3f} ± {m['c2st']['error']:.3f} (0.5: indistinguishable).
"""
    (out / "README.md").write_text(text)
    (out / "evaluation" / "headline.json").write_text(json.dumps(
        {"w1": {n: obs[n]["distances"]["unfolded"]["wasserstein"]["value"] for n in (*KEY_OBSERVABLES, "pt_ttbar")},
         "c2st_auc": m["c2st"]["auc"]}, indent=1))


if __name__ == "__main__":
    main()
