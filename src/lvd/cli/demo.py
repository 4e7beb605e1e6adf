"""``lvd demo``: the whole chain on the embedded toy generator, on a fresh install, with no arguments.

generate (train and held-out test files) -> train a small LVD -> unfold the test events with several samples
each -> evaluate. Everything lands in one folder; the report's path is printed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lvd import config
from lvd.cli.headline import print_headline
from lvd.cli.progress import console, progress_bar
from lvd.data.generate import toy
from lvd.evaluation.monitor import physics_monitor
from lvd.evaluation.report import evaluate
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train


@dataclass(frozen=True)
class DemoPlan:
    n_train: int
    n_test: int
    overrides: tuple[str, ...]
    samples: int
    sampler_steps: int
    bootstrap: int
    c2st_steps: int
    plots: str = "all"


FULL = DemoPlan(n_train=200_000, n_test=20_000, samples=8, sampler_steps=20, bootstrap=10, c2st_steps=1500,
                overrides=("train.steps=2500", "loss.consistency_start=250", "loss.consistency_warmup=250", "train.warmup_steps=300",
                           "train.validate_every=500", "train.checkpoint_every=500", "train.validation_batches=8"))
QUICK = DemoPlan(n_train=3000, n_test=1000, samples=4, sampler_steps=10, bootstrap=2, c2st_steps=200, plots="key",
                 overrides=("model.hidden=32", "model.num_heads=2", "model.detector_layers=1", "model.encoder_layers=1",
                            "model.decoder_layers=1", "model.denoiser_layers=2", "schedule.hidden=32",
                            "train.batch_size=128", "train.steps=60", "train.warmup_steps=10",
                            "loss.consistency_warmup=30", "train.validate_every=30", "train.checkpoint_every=30",
                            "train.log_every=10", "train.validation_batches=2"))


def run_demo(out: Path, quick: bool = False, seed: int = 0) -> Path:
    plan = QUICK if quick else FULL
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    console.rule(f"lvd demo{' (quick)' if quick else ''}: output in {out}")
    files = {}
    for role, n, s in (("train", plan.n_train, seed), ("test", plan.n_test, seed + 1_000_003)):
        path = out / f"toy_{role}.h5"
        with progress_bar(n, f"generate {role}") as advance:
            toy.generate_file(path, n, seed=s, on_progress=advance)
        files[role] = path
    opts = config.load_options("small", [*plan.overrides, f"train.seed={seed}", f"sample.seed={seed}",
                                         "name=demo-lvd"])
    console.print(f"training a small LVD ({opts.train.steps} steps of {opts.train.batch_size} events)")
    result = train(opts, files["train"], runs_dir=out / "runs", report=console.print, progress=progress_bar,
                   hooks=physics_monitor(opts))
    unfolded = out / "unfolded_test.h5"
    with progress_bar(plan.n_test, f"unfold ({plan.samples} samples/event)") as advance:
        unfold_file(result.run_dir, files["test"], unfolded, samples=plan.samples, steps=plan.sampler_steps,
                    on_progress=advance)
    report_dir = out / "report"
    with console.status("evaluating") as status:
        metrics = evaluate(unfolded, report_dir, n_boot=plan.bootstrap, seed=seed, c2st_steps=plan.c2st_steps, plots=plan.plots,
                           on_progress=lambda s: status.update(f"evaluating: {s}"))
    print_headline(metrics)
    console.print(f"demo finished in {time.time() - t0:.0f} s; report: {report_dir / 'report.md'}")
    return report_dir
