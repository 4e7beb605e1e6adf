"""``lvd demo``: a converged unfolding on this machine, with no arguments.

By default the LVD model shipped with the package (``lvd/pretrained/toy``: trained by
``scripts/train_demo_model.py``, its options, training log and evaluation beside it) unfolds freshly generated
toy events — drawn with a seed the model never saw — which are then evaluated against their truth.
``--train`` keeps the from-scratch chain instead: generate training events, train a small LVD, unfold, evaluate.
``--quick`` shrinks either to about a minute (the test suite runs both). Everything lands in one folder; the
report's path is printed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lvd import config
from lvd.cli.headline import print_headline
from lvd.cli.progress import console, progress_bar
from lvd.data.generate import toy
from lvd.evaluation.report import evaluate
from lvd.runs.run import Checkpoint
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train
from lvd.training.monitor import physics_monitor

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "toy"
# demo events come from seeds far from any the shipped model was trained or validated on (its training file
# used seed 101, scripts/train_demo_model.py)
FRESH_SEED = 7_000_000


@dataclass(frozen=True)
class DemoPlan:
    n_test: int
    samples: int
    sampler_steps: int
    bootstrap: int
    c2st_steps: int
    plots: str = "all"
    sampler: str = "dpm++"
    n_train: int = 0  # from-scratch path only
    overrides: tuple[str, ...] = ()


# The shipped model is sampled with the ancestral sampler: the deterministic DPM-Solver++ ODE draws are too wide
# for it (68 % coverage of m(tt̄) 0.699, of the rapidities 0.75, nominal 0.647), the stochastic sampler's are
# calibrated (0.669, 0.73) and its masses sharper (W1 0.45 against 0.72 GeV), measured on validation events
# (seed 7,100,000, benchmarks/results/sampler_coverage.md); it costs ~4x the sampling time.
SHIPPED = DemoPlan(n_test=20_000, samples=16, sampler="ancestral", sampler_steps=100, bootstrap=10,
                   c2st_steps=1500)
SHIPPED_QUICK = DemoPlan(n_test=2000, samples=4, sampler="ancestral", sampler_steps=20, bootstrap=2, c2st_steps=200,
                         plots="key")
FULL = DemoPlan(n_train=200_000, n_test=20_000, samples=8, sampler_steps=20, bootstrap=10, c2st_steps=1500,
                overrides=("train.steps=2500", "train.warmup_steps=300", "train.validate_every=500",
                           "train.checkpoint_every=500", "train.validation_batches=8"))
QUICK = DemoPlan(n_train=3000, n_test=1000, samples=4, sampler_steps=10, bootstrap=2, c2st_steps=200, plots="key",
                 overrides=("model.hidden=32", "model.num_heads=2", "model.detector_layers=1", "model.encoder_layers=1",
                            "model.decoder_layers=1", "model.denoiser_layers=2", "schedule.hidden=32",
                            "train.batch_size=128", "train.steps=60", "train.warmup_steps=10",
                            "train.validate_every=30", "train.checkpoint_every=30", "train.log_every=10",
                            "train.validation_batches=2", "train.physics_events=200"))


def _generate(path: Path, n: int, seed: int, role: str) -> Path:
    with progress_bar(n, f"generate {role}") as advance:
        toy.generate_file(path, n, seed=seed, on_progress=advance)
    return path


def _train_from_scratch(out: Path, plan: DemoPlan, seed: int) -> Path:
    train_file = _generate(out / "toy_train.h5", plan.n_train, seed, "train")
    opts = config.load_options("small", [*plan.overrides, f"train.seed={seed}", f"sample.seed={seed}", "name=demo-lvd"])
    console.print(f"training a small LVD ({opts.train.steps} steps of {opts.train.batch_size} events, "
                  f"{opts.data.parton_representation} representation)")
    result = train(opts, train_file, runs_dir=out / "runs", report=console.print, progress=progress_bar,
                   hooks=physics_monitor(opts))
    return result.run_dir


def run_demo(out: Path, quick: bool = False, seed: int = 0, from_scratch: bool = False,
             model: Path | None = None) -> Path:
    """The demo into ``out``; ``model`` replaces the shipped model (the default path only)."""
    plan = (QUICK if quick else FULL) if from_scratch else (SHIPPED_QUICK if quick else SHIPPED)
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    what = "training from scratch" if from_scratch else "the shipped model"
    console.rule(f"lvd demo ({what}{', quick' if quick else ''}): output in {out}")
    if from_scratch:
        run = _train_from_scratch(out, plan, seed)
    else:
        run = model or PRETRAINED
        ck = Checkpoint.open(run)
        console.print(f"shipped LVD: {ck.options.data.parton_representation} representation, {ck.step:,} training "
                      f"steps of {ck.options.train.batch_size} events ({ck.meta.get('trained_for', 'see its README')})")
    test_file = _generate(out / "toy_test.h5", plan.n_test, FRESH_SEED + seed, "fresh test events")
    unfolded = out / "unfolded_test.h5"
    with progress_bar(plan.n_test, f"unfold ({plan.samples} samples/event, {plan.sampler} {plan.sampler_steps} steps)") as advance:
        unfold_file(run, test_file, unfolded, samples=plan.samples, sampler=plan.sampler, steps=plan.sampler_steps,
                    seed=seed, on_progress=advance)
    report_dir = out / "report"
    with console.status("evaluating") as status:
        metrics = evaluate(unfolded, report_dir, n_boot=plan.bootstrap, seed=seed, c2st_steps=plan.c2st_steps,
                           plots=plan.plots, on_progress=lambda s: status.update(f"evaluating: {s}"))
    print_headline(metrics)
    console.print(f"demo finished in {time.time() - t0:.0f} s; report: {report_dir / 'report.md'}")
    return report_dir
