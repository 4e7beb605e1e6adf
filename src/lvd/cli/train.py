"""``lvd train``: resolve options, print what differs from the defaults, run the training loop."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from rich.table import Table

from lvd import config
from lvd.cli.progress import console, progress_bar
from lvd.errors import LvdError
from lvd.training.ensemble import FINISHED, train_ensemble
from lvd.training.loop import TrainResult, train
from lvd.training.monitor import physics_monitor


def resolve_options(options: str, overrides: list[str], model: str | None, name: str | None) -> config.Options:
    extra = list(overrides)
    if model is not None:
        if model not in config.MODEL_KINDS:
            raise LvdError(f"--model {model!r}: choose one of {', '.join(config.MODEL_KINDS)}")
        extra.insert(0, f"model.kind={model}")
    opts = config.load_options(options, extra)
    if name:
        opts = dataclasses.replace(opts, name=name)
    return opts


def print_options(opts: config.Options, source: str, overrides: list[str]) -> None:
    diff = config.differences(opts)
    table = Table(title=f"options ({source}; non-default values)", title_justify="left")
    table.add_column("option")
    table.add_column("default", style="dim")
    table.add_column("value", style="bold yellow")
    for k, (ref, v) in sorted(diff.items()):
        table.add_row(k, str(ref), str(v))
    console.print(table)
    if overrides:
        console.print("overrides applied: " + " ".join(overrides))


def run_train(options: str, data: Path, overrides: list[str], *, model: str | None, checkpoint: Path | None,
              name: str | None, weights: Path | None, start_batch: int | None, runs_dir: Path, quiet: bool,
              ensemble: int | None = None) -> None:
    if ensemble is not None and ensemble < 2:  # refused before anything is printed
        raise LvdError(f"--ensemble {ensemble}: an ensemble needs at least 2 members")
    if ensemble is not None and checkpoint is not None:
        raise LvdError("--ensemble with -c: an ensemble continues by running the same command again; "
                       "-c resumes or warm-starts one run")
    opts = resolve_options(options, overrides, model, name)
    print_options(opts, options, overrides)
    if start_batch is not None:
        console.print("note: -s/--start-batch is ignored; a resumed run continues from its checkpoint's step")
    if ensemble is not None:
        members = train_ensemble(opts, data, ensemble, runs_dir=runs_dir, weights=weights, report=console.print,
                                 progress=None if quiet else progress_bar, hooks=physics_monitor)
        again = shlex.join(["lvd", "train", options, str(data), *overrides, "--ensemble", str(ensemble), "-n",
                            opts.name] + (["-m", model] if model else []))
        for _, result in members:
            if result is not None:
                print_result(result, again)
        finished = len(members) == ensemble and all(r is None or r.stopped_by in FINISHED for _, r in members)
        if finished:
            console.print(f"ensemble of {ensemble}: " + " ".join(str(runs_dir / m.name) for m, _ in members))
        return
    result = train(opts, data, runs_dir=runs_dir, checkpoint=checkpoint, weights=weights,
                   report=console.print, progress=None if quiet else progress_bar, hooks=physics_monitor(opts))
    print_result(result, f"lvd train {options} {data} -c {result.run_dir}")


def print_result(result: TrainResult, resume: str) -> None:
    """How a run stopped, its checkpoints, and the command that continues it when it stopped early."""
    how = {"steps": "finished", "time limit": "stopped at the time limit", "interrupt": "interrupted"}.get(
        result.stopped_by, f"stopped by {result.stopped_by}")
    console.print(f"{how} at step {result.step}; run folder {result.run_dir}")
    if result.latest:
        console.print(f"latest checkpoint {result.latest}")
    if result.best:
        console.print(f"best checkpoint {result.best} (validation loss {result.best_validation:.5f})")
    if result.stopped_by != "steps":
        console.print(f"resume with: {resume}")
