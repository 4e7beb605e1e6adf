"""What happens around the train steps: logging, validation, checkpoints, progress — each a :class:`Hook`.

``fit`` calls every hook's :meth:`Hook.after_step` after each step, then (after deciding whether to stop) the
hooks that are due: those whose ``every`` divides the step, and all of them at the last step and at a stop.
Hooks run in the order given; the standard order is log, progress, validation, extra metrics, checkpoint, so a
checkpoint's metadata carries the validation of its own step. A hook outside this module (e.g. the physics
metrics of :mod:`lvd.training.monitor`) uses the same interface and :meth:`Trainer.record` to log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lvd.errors import TrainingError
from lvd.training.trainer import Trainer


class Hook:
    """Something done every ``every`` steps (0: only at the last step or a stop), plus optional per-step,
    start and end actions."""

    every: int = 0

    def start(self, t: Trainer) -> None:
        """Before the first step."""

    def after_step(self, t: Trainer, step: int) -> None:
        """After every step (keep it cheap: no device-to-host copies)."""

    def due(self, step: int, final: bool) -> bool:
        return final or (self.every > 0 and step % self.every == 0)

    def __call__(self, t: Trainer, step: int) -> None:
        """When due."""

    def end(self, t: Trainer) -> None:
        """After the last step, also when training fails."""


class LogTrain(Hook):
    """Averages the step metrics since the last log, stops on NaN/inf, writes a ``train`` row."""

    def __init__(self, every: int):
        self.every = every

    def start(self, t: Trainer) -> None:
        self.tick, self.tick_step = t.clock(), t.step

    def __call__(self, t: Trainer, step: int) -> None:
        host = jax.device_get(t.pending)
        row = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "nonfinite"}
        if any(m["nonfinite"] for m in host):
            raise TrainingError(f"the loss became NaN/inf before step {step}; last good checkpoint: "
                                f"{t.latest or 'none'} (lower train.learning_rate or check the data)")
        now = t.clock()
        row["events_per_s"] = (step - self.tick_step) * t.opts.train.batch_size / max(now - self.tick, 1e-9)
        row["epoch"] = step / t.train_loader.steps_per_epoch
        t.record("train", step, row)
        t.pending.clear()
        self.tick, self.tick_step = now, step


class Progress(Hook):
    """A progress bar from ``factory(total, description, unit=..., extra=...)`` (a context manager yielding
    ``advance(n, **fields)``, e.g. :func:`lvd.cli.progress.progress_bar`), updated at log steps."""

    def __init__(self, factory: Callable[..., Any], every: int):
        self.factory, self.every = factory, every

    def start(self, t: Trainer) -> None:
        self.stack = contextlib.ExitStack()
        bar = self.factory(t.opts.train.steps, f"train {t.opts.model.kind}", unit="steps", extra="{task.fields[info]}")
        self.advance = self.stack.enter_context(bar)
        self.advance(t.step, info="")
        self.shown = t.step

    def __call__(self, t: Trainer, step: int) -> None:
        row = t.last_row("train")
        info = f"loss {row['loss']:.4f}" if row else ""
        for key, label in t.model_class.PROGRESS.items():
            if key in row:
                info += f" {label} {row[key]:.2f}"
        if row:
            info += f" {row['events_per_s']:,.0f} ev/s"
        self.advance(step - self.shown, info=info)
        self.shown = step

    def end(self, t: Trainer) -> None:
        self.stack.close()


class Validate(Hook):
    """The validation loss under the EMA parameters; a new best is saved as the ``best`` checkpoint."""

    def __init__(self, every: int):
        self.every = every

    def __call__(self, t: Trainer, step: int) -> None:
        val = t.validation_loss()
        if not val:
            return
        t.last_validation = val["loss"]
        t.record("validation", step, val)
        better = t.last_validation < t.best_validation
        t.say(f"step {step}: validation loss {t.last_validation:.5f}" + (" (best)" if better else ""))
        if better:
            t.best_validation = t.last_validation
            t.best = t.save("best", step)


class SaveLatest(Hook):
    """The ``latest`` checkpoint (also at the last step and at a stop, so a stopped run resumes)."""

    def __init__(self, every: int):
        self.every = every

    def __call__(self, t: Trainer, step: int) -> None:
        t.latest = t.save("latest", step)


class OnStep(Hook):
    """Calls ``fn(step)`` after every step (tests and embedding applications)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def after_step(self, t: Trainer, step: int) -> None:
        self.fn(step)
