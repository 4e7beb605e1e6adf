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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import lvd
from lvd import config, distributed
from lvd.config import Options
from lvd.data.dataset import read_training_events
from lvd.data.loader import Loader, split_indices
from lvd.data.representation import Arrays, Normalizer, raw_arrays
from lvd.distributed import make_mesh
from lvd.errors import CheckpointError
from lvd.models.base import Dims, UnfoldingModel
from lvd.models.registry import build_model, model_class
from lvd.training import checkpoint as ckpt
from lvd.training.hooks import (
    Hook,
    LogTrain,
    MetricsLog,
    NoLog,
    OnStep,
    Progress,
    SaveLatest,
    TrainingError,
    Validate,
)
from lvd.training.run import Checkpoint, frozen_parts, graft, new_run_dir, resumable
from lvd.training.signals import STOP_SIGNALS, StopRequest
from lvd.training.state import TrainState, init_state
from lvd.training.step import make_eval_step, make_train_step

__all__ = ["TrainResult", "Trainer", "TrainingError", "fit", "prepare", "standard_hooks", "train"]

# what may stop a run early, in the order process 0 broadcasts them (index 0: no stop)
STOP_REASONS = (None, "time limit", *STOP_SIGNALS.values())


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_validation: float
    latest: Path | None
    best: Path | None
    stopped_by: str  # "steps", "time limit", "interrupt", "SIGTERM", "SIGUSR1"
    history: list[dict[str, Any]]


@dataclass
class Trainer:
    """Everything :func:`fit` and the hooks work on; :func:`prepare` builds it."""

    opts: Options
    run_dir: Path
    mode: str  # "new", "resume" or "warm start"
    graphdef: nnx.GraphDef
    state: TrainState
    normalizer: Normalizer
    arrays: Arrays  # normalised events of this process
    train_loader: Loader
    val_loader: Loader | None
    base_meta: dict[str, Any]
    say: Callable[[str], None]
    best_validation: float = math.inf
    last_validation: float = math.nan
    latest: Path | None = None
    best: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, jax.Array]] = field(default_factory=list)  # step metrics not yet logged
    clock: Callable[[], float] = time.time

    def __post_init__(self):
        mesh = self.train_loader.mesh
        self.train_step, self.eval_step = make_train_step(self.graphdef, self.opts, mesh), make_eval_step(
            self.graphdef, self.opts, mesh)
        self.writer = ckpt.CheckpointWriter(self.run_dir)
        self.log = MetricsLog(self.run_dir) if distributed.is_main() else NoLog()
        self.started = self.clock()

    @property
    def step(self) -> int:
        return int(jax.device_get(self.state.step))

    @property
    def model_class(self) -> type[UnfoldingModel]:
        return model_class(self.opts.model.kind)

    @property
    def mesh(self):
        return self.train_loader.mesh

    def record(self, split: str, step: int, metrics: dict[str, float]) -> None:
        """Log a row (metrics.csv, TensorBoard) and keep it in the history."""
        self.log.write(split, step, metrics)
        self.history.append({"split": split, "step": step, **metrics})

    def last_row(self, split: str) -> dict[str, Any]:
        return next((h for h in reversed(self.history) if h["split"] == split), {})

    def validation_loss(self) -> dict[str, float]:
        """Weighted mean of each loss term over (at most ``train.validation_batches`` of) the validation events."""
        if self.val_loader is None:
            return {}
        sums: dict[str, float] = {}
        for i, batch in enumerate(self.val_loader.sequential(self.opts.train.validation_batches)):
            for k, v in jax.device_get(self.eval_step(self.state, batch, np.int32(i))).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        w = sums.pop("weight")
        return {k: v / w for k, v in sums.items()}

    def save(self, kind: str, step: int) -> Path:
        epoch, batch = self.train_loader.position(step)
        meta = {**self.base_meta, "step": step, "epoch": epoch, "batch_in_epoch": batch,
                "validation_loss": self.last_validation, "best_validation": self.best_validation,
                "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        return self.writer.save(kind, self.state, meta)

    def stop_vote(self, step: int, request: StopRequest) -> str | None:
        """Why to stop after ``step`` (None: go on). With several processes process 0 decides, at logging steps,
        so that all stop at the same step."""
        t = self.opts.train
        stop = request.reason
        if stop is None and t.time_limit_minutes and self.clock() - self.started > 60 * t.time_limit_minutes:
            stop = "time limit"
        if distributed.process_count() == 1:
            return stop
        if step % t.log_every and step != t.steps:
            return None
        return STOP_REASONS[int(distributed.broadcast(np.int32(STOP_REASONS.index(stop))))]

    def close(self) -> None:
        self.writer.close()
        self.log.close()


def fit(t: Trainer, hooks: Sequence[Hook]) -> TrainResult:
    """Train from ``t.state`` to ``train.steps`` or a stop; ``hooks`` log, validate, checkpoint and show progress."""
    steps, step, stopped_by = t.opts.train.steps, t.step, "steps"
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
    return fit(trainer, standard_hooks(trainer.opts, progress, on_step, hooks))


def prepare(opts: Options, data_path: str | os.PathLike, *, runs_dir: str | os.PathLike = "runs",
            checkpoint: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
            report: Callable[[str], None] | None = None, mesh=None) -> Trainer:
    """Data, mesh, model, state and run folder of a new, resumed or warm-started run.

    With a checkpoint whose options equal ``opts`` (up to :data:`lvd.training.run.RESUMABLE_CHANGES`) the run is
    resumed in its own folder and continues exactly: the next step equals the step the uninterrupted run would
    have taken. Otherwise its parameters (and EMA) initialise a new run (e.g. the fine-tuning stage).
    """
    say = report if (report is not None and distributed.is_main()) else (lambda s: None)
    allsum = distributed.allsum if distributed.process_count() > 1 else None
    data, opts = read_training_events(data_path, opts, weights)
    raw = raw_arrays(data, opts.data)
    train_idx, val_idx = split_indices(raw.n_events, opts.data.validation_fraction, opts.train.seed)
    source = Checkpoint.open(checkpoint, prefer="latest") if checkpoint is not None else None
    if source is not None and source.options.model.kind != opts.model.kind:
        raise CheckpointError(f"{source.step_dir}: holds a '{source.options.model.kind}' model, options ask for "
                              f"'{opts.model.kind}'")
    mode = "new" if source is None else ("resume" if resumable(source.options, opts) else "warm start")
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
    replicated = NamedSharding(mesh, P())
    if mode == "resume":
        graphdef, state = source.train_state(replicated)
        run_dir = source.run_dir
    else:
        graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
        state = jax.device_put(state, replicated)
        if mode == "warm start":
            _, loaded = source.train_state(replicated, opts)
            state = state.replace(main=loaded.main, sched=loaded.sched, rest=loaded.rest, ema_main=loaded.ema_main,
                                  ema_sched=loaded.ema_sched)
        if frozen is not None:
            state = state.replace(rest=graft(state.rest, frozen[1], replicated))
        run_dir = new_run_dir(runs_dir, opts.name)
    if distributed.is_main():
        (run_dir / "options.yaml").write_text(config.to_yaml(opts))
    n_train, n_val = (int(x) for x in (allsum or (lambda a: a))(np.array([len(train_idx), len(val_idx)])))
    say(f"{mode} run {run_dir} ({n_train:,} training / {n_val:,} validation events, {jax.device_count()} device(s)"
        + (f" in {distributed.process_count()} processes" if allsum else "") + ")"
        + (f" from {source.step_dir}" if source else ""))

    t = opts.train
    meta = {"lvd_version": lvd.__version__, "options": config.to_dict(opts), "normalizer": norm.to_dict(),
            "data_file": str(Path(data_path).absolute()), "n_train": n_train, "n_validation": n_val,
            "model": opts.model.kind, "processes": distributed.process_count()}
    trainer = Trainer(opts=opts, run_dir=run_dir, mode=mode, graphdef=graphdef, state=state, normalizer=norm,
                      arrays=arrays, train_loader=Loader(arrays, train_idx, t.batch_size, t.seed, mesh),
                      val_loader=Loader(arrays, val_idx, t.batch_size, t.seed, mesh) if n_val else None,
                      base_meta=meta, say=say)
    if mode == "resume":
        trainer.best_validation = float(source.meta.get("best_validation", math.inf))
    return trainer
