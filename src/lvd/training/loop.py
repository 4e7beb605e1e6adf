"""Training: :func:`prepare` builds everything a run needs, :func:`fit` runs the jitted steps with hooks.

``train`` is the two together with the standard hooks (log, progress, validation, checkpoints)::

    trainer = prepare(opts, "train.h5", runs_dir="runs")         # data, mesh, model, state, run folder
    result = fit(trainer, standard_hooks(opts) + [my_hook])

A run stops at ``train.steps``, at ``train.time_limit_minutes`` or at a stop signal (Ctrl-C, SIGTERM, SIGUSR1),
always with a checkpoint from which ``-c`` resumes exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd import config, distributed, physics
from lvd.config import Options
from lvd.data.dataset import read_training_events
from lvd.data.loader import Loader, split_indices
from lvd.data.prior import training_prior, truth_histograms
from lvd.data.representation import Normalizer, raw_arrays
from lvd.distributed import make_mesh
from lvd.errors import CheckpointError, TrainingError
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.runs.run import Checkpoint, frozen_parts, graft, new_run_dir, resumable
from lvd.runs.state import TrainState
from lvd.training.hooks import (
    Hook,
    LogTrain,
    OnStep,
    Progress,
    SaveLatest,
    Validate,
)
from lvd.training.signals import StopRequest
from lvd.training.state import init_state
from lvd.training.trainer import Trainer
from lvd.version import __version__

__all__ = ["TrainResult", "Trainer", "TrainingError", "fit", "prepare", "standard_hooks", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_validation: float
    latest: Path | None
    best: Path | None
    stopped_by: str  # "steps", "time limit", "stop_at", "interrupt", "SIGTERM", "SIGUSR1"
    history: list[dict[str, Any]]



def fit(t: Trainer, hooks: Sequence[Hook]) -> TrainResult:
    """Train from ``t.state`` to ``train.steps`` or a stop; ``hooks`` log, validate, checkpoint and show progress."""
    steps, step, stopped_by = t.opts.train.steps, t.step, "steps"
    if 0 < t.opts.train.stop_at < steps:  # an early stop that leaves the schedules as they were
        steps, stopped_by = t.opts.train.stop_at, "stop_at"
    for h in hooks:
        h.start(t)
    try:
        with StopRequest() as request:
            while step < steps:
                t.state, metrics = t.train_step(t.state, t.train_loader.train_batch(step))
                step += 1
                t.pending.append(metrics)
                for h in hooks:
                    h.after_step(t, step)
                stop = t.stop_vote(step, request)
                for h in hooks:
                    if h.due(step, final=stop is not None or step == steps):
                        h(t, step)
                if stop is not None:
                    stopped_by = stop
                    break
    finally:
        for h in reversed(hooks):
            h.end(t)
        t.close()
    return TrainResult(run_dir=t.run_dir, step=step, best_validation=t.best_validation, latest=t.latest,
                       best=t.best, stopped_by=stopped_by, history=t.history)


def standard_hooks(opts: Options, progress: Callable[..., Any] | None = None,
                   on_step: Callable[[int], None] | None = None, extra: Sequence[Hook] = ()) -> list[Hook]:
    """Log, progress (when a bar factory is given), validation, ``extra``, latest checkpoint; ``on_step`` first."""
    t = opts.train
    hooks: list[Hook] = [OnStep(on_step)] if on_step is not None else []
    hooks.append(LogTrain(t.log_every))
    if progress is not None and distributed.is_main():
        hooks.append(Progress(progress, t.log_every))
    return [*hooks, Validate(t.validate_every), *extra, SaveLatest(t.checkpoint_every)]


def train(opts: Options, data_path: str | os.PathLike, *, runs_dir: str | os.PathLike = "runs",
          checkpoint: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
          report: Callable[[str], None] | None = None, progress: Callable[..., Any] | None = None, mesh=None,
          on_step: Callable[[int], None] | None = None, hooks: Sequence[Hook] = ()) -> TrainResult:
    """Train ``opts.model.kind`` on ``data_path`` with the standard hooks (plus ``hooks``); see :func:`prepare`."""
    trainer = prepare(opts, data_path, runs_dir=runs_dir, checkpoint=checkpoint, weights=weights, report=report,
                      mesh=mesh)
    result = fit(trainer, standard_hooks(trainer.opts, progress, on_step, hooks))
    if result.stopped_by == "steps":
        train_acceptance_of_run(trainer.opts, data_path, result.run_dir, report)
    return result


def train_acceptance_of_run(opts: Options, data_path: str | os.PathLike, run_dir: Path,
                            report: Callable[[str], None] | None = None) -> Path | None:
    """The efficiency and fake classifiers of a finished run, in ``run_dir/acceptance`` (once), when the training
    file holds every generated event (``--keep-unselected``) and ``acceptance.train`` is on; else None."""
    from lvd.data.schema import has_generated
    from lvd.runs.acceptance import ACCEPTANCE_FOLDER, save
    from lvd.training.acceptance import train_acceptance

    folder = run_dir / ACCEPTANCE_FOLDER
    if (not opts.acceptance.train or Path(data_path).suffix == ".npz" or distributed.process_index() != 0
            or (folder / "fakes" / "meta.json").exists() or not has_generated(data_path)):
        return None
    (report or (lambda _: None))("training the efficiency and fake classifiers (docs/cross_section.md)")
    eff, fakes = train_acceptance(data_path, opts.data, opts.acceptance)
    save(eff, folder / "efficiency")
    save(fakes, folder / "fakes")
    return folder


def prepare(opts: Options, data_path: str | os.PathLike, *, runs_dir: str | os.PathLike = "runs",
            checkpoint: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
            report: Callable[[str], None] | None = None, mesh=None) -> Trainer:
    """Data, mesh, model, state and run folder of a new, resumed or warm-started run.

    With a checkpoint whose options equal ``opts`` (up to :data:`lvd.runs.run.RESUMABLE_CHANGES`) the run is
    resumed in its own folder and continues exactly: the next step equals the step the uninterrupted run would
    have taken. Otherwise its parameters (and EMA) initialise a new run (e.g. the fine-tuning stage).
    """
    say = report if (report is not None and distributed.is_main()) else (lambda s: None)
    allsum = distributed.allsum if distributed.process_count() > 1 else None
    data, opts = read_training_events(data_path, opts, weights)
    raw = raw_arrays(data, opts.data)
    train_idx, val_idx = split_indices(raw.n_events, opts.data.validation_fraction, opts.train.seed)
    source, mode = _source(checkpoint, opts)
    frozen = frozen_parts(opts) if mode == "new" else None
    if source is not None:
        norm = source.normalizer
    elif frozen is not None:
        norm = frozen[0]  # the frozen part only means something in its own normalisation
    else:
        norm = Normalizer.fit(raw.take(train_idx), opts.data, allsum)
    norm.check(opts.data)
    arrays = norm.apply(raw)
    del raw

    mesh = mesh or make_mesh()
    graphdef, state, run_dir = _state(opts, mode, source, frozen, norm, NamedSharding(mesh, P()), runs_dir)
    if distributed.is_main():
        (run_dir / "options.yaml").write_text(config.to_yaml(opts))
    n_train, n_val = (int(x) for x in (allsum or (lambda a: a))(np.array([len(train_idx), len(val_idx)])))
    say(f"{mode} run {run_dir} ({n_train:,} training / {n_val:,} validation events, {jax.device_count()} device(s)"
        + (f" in {distributed.process_count()} processes" if allsum else "") + ")"
        + (f" from {source.step_dir}" if source else ""))
    meta = {"lvd_version": __version__, "options": config.to_dict(opts), "normalizer": norm.to_dict(),
            "data_file": str(Path(data_path).absolute()), "n_train": n_train, "n_validation": n_val,
            "model": opts.model.kind, "processes": distributed.process_count(), **_prior(data, opts, say)}
    t = opts.train
    trainer = Trainer(opts=opts, run_dir=run_dir, mode=mode, graphdef=graphdef, state=state, normalizer=norm,
                      arrays=arrays, train_loader=Loader(arrays, train_idx, t.batch_size, t.seed, mesh),
                      val_loader=Loader(arrays, val_idx, t.batch_size, t.seed, mesh) if n_val else None,
                      base_meta=meta, say=say)
    if mode == "resume":
        trainer.best_validation = float(source.meta.get("best_validation", math.inf))
    return trainer


def _source(checkpoint: str | os.PathLike | None, opts: Options) -> tuple[Checkpoint | None, str]:
    """The checkpoint to start from (its latest) and how: ``new`` (none), ``resume`` (the same run) or ``warm
    start`` (its parameters initialise a new run)."""
    source = Checkpoint.open(checkpoint, prefer="latest") if checkpoint is not None else None
    if source is not None and source.options.model.kind != opts.model.kind:
        raise CheckpointError(f"{source.step_dir}: holds a '{source.options.model.kind}' model, options ask for "
                              f"'{opts.model.kind}'")
    return source, "new" if source is None else ("resume" if resumable(source.options, opts) else "warm start")


def _state(opts: Options, mode: str, source: Checkpoint | None, frozen, norm: Normalizer, replicated,
           runs_dir) -> tuple[nnx.GraphDef, TrainState, Path]:
    """Graph definition, train state (restored, warm-started or fresh, with the frozen parts grafted in) and run
    folder (the resumed run's own, else a new version)."""
    if mode == "resume":
        graphdef, state = _restored(source, source.options, replicated)
        return graphdef, state, source.run_dir
    graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
    state = jax.device_put(state, replicated)
    if mode == "warm start":
        _, loaded = _restored(source, opts, replicated)
        state = state.replace(main=loaded.main, sched=loaded.sched, rest=loaded.rest, ema_main=loaded.ema_main,
                              ema_sched=loaded.ema_sched)
    if frozen is not None:
        state = state.replace(rest=graft(state.rest, frozen[1], replicated))
    return graphdef, state, new_run_dir(runs_dir, opts.name)


def _prior(data, opts: Options, say) -> dict[str, Any]:
    """The training sample's prior for the checkpoint's metadata (docs/design.md §8), with a note when its top
    masses are wider than the mass coordinate's line width."""
    prior = training_prior(data)
    spread = max(prior["mass"]) - min(prior["mass"])
    if opts.data.parton_representation != "paper" and spread > 4 * opts.data.top_line_width:
        say(f"note: the training top masses span {spread:.1f} GeV but data.top_line_width is "
            f"{opts.data.top_line_width:g} GeV: masses away from {physics.M_TOP} fall in the coordinate's tails "
            f"(consider data.top_line_width={spread / 2:.1f})")
    return {"top_mass_prior": prior, "truth_histograms": truth_histograms(data, data.event_weights())}


def _restored(source: Checkpoint, opts: Options, sharding) -> tuple[nnx.GraphDef, TrainState]:
    """Graph definition and the train state of ``source`` restored for training with ``opts`` (the stored options to
    resume; other options, which must build the same architecture, to warm-start)."""
    graphdef, template = init_state(source.abstract_model(opts), opts, abstract=True)
    return graphdef, source.train_state(template, sharding)
