"""The state of a training run between steps: what :func:`lvd.training.loop.fit` and its hooks work on."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from lvd import distributed
from lvd.config import Options
from lvd.data.loader import Loader
from lvd.data.representation import Arrays, Normalizer
from lvd.models.base import UnfoldingModel
from lvd.models.registry import model_class
from lvd.runs import checkpoint as ckpt
from lvd.runs.state import TrainState
from lvd.training.logs import MetricsLog, NoLog
from lvd.training.signals import STOP_SIGNALS, StopRequest
from lvd.training.step import make_eval_step, make_train_step

# what may stop a run early, in the order process 0 broadcasts them (index 0: no stop)
STOP_REASONS = (None, "time limit", *STOP_SIGNALS.values())


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
