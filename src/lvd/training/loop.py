"""The training loop: data, model, jitted steps, validation, logging, checkpoints, interruption and resume."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import lvd
from lvd import config
from lvd.config import Options
from lvd.data import convert
from lvd.data.loader import Loader, make_mesh, split_indices
from lvd.data.representation import Normalizer, layout, raw_arrays
from lvd.data.schema import EventData, read_events
from lvd.errors import CheckpointError, LvdError
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.training import checkpoint as ckpt
from lvd.training.state import init_state
from lvd.training.step import make_eval_step, make_train_step

# Options that may change when a run is resumed without making it a different run.
RESUMABLE_CHANGES = ("name", "train.steps", "train.time_limit_minutes", "train.log_every", "train.validate_every",
                     "train.checkpoint_every", "train.validation_batches", "sample.")


class TrainingError(LvdError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_validation: float
    latest: Path | None
    best: Path | None
    stopped_by: str  # "steps", "time limit", "interrupt"
    history: list[dict[str, Any]]


def load_training_data(path: str | os.PathLike, opts: Options, weights: str | os.PathLike | None = None
                       ) -> tuple[EventData, Options]:
    """Read an lvd file (or an original-layout ``.npz``) with truth; ``weights`` (a ``.npy``) replaces its weights.

    For an ``.npz`` the detector feature names come from the file; unless they include pt/eta/phi/mass the
    raw representation is used, and the options are adjusted (and say so).
    """
    path = Path(path)
    if path.suffix == ".npz":
        data = convert.read_original_npz(path, weights)
        kinematic = all(k in data.source for k in ("pt", "eta", "phi", "mass")) and {"met", "phi"} <= set(data.met)
        opts = dataclasses.replace(opts, data=dataclasses.replace(
            opts.data, source_features=tuple(data.source), met_features=tuple(data.met),
            detector_representation="kinematic" if kinematic else "raw"))
    else:
        data = read_events(path, layout(opts.data), require_truth=True)
        if weights is not None:
            data.weights = convert._load_weights(Path(weights), data.n_events)
    if opts.data.max_events:
        data = data.take(slice(0, opts.data.max_events))
    w = data.event_weights()
    if not np.isfinite(w.sum()) or w.sum() <= 0:
        raise LvdError(f"{path}: the event weights sum to {w.sum()}; need a positive total")
    return data, opts


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """``runs_dir/name/version_K`` with K one past the highest existing version."""
    base = Path(runs_dir) / name
    base.mkdir(parents=True, exist_ok=True)
    versions = [int(d.name.split("_")[-1]) for d in base.glob("version_*") if d.name.split("_")[-1].isdigit()]
    run = base / f"version_{max(versions, default=-1) + 1}"
    run.mkdir()
    return run


def _resumable(stored: Options, opts: Options) -> bool:
    diff = config.differences(opts, stored)
    return all(any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUMABLE_CHANGES) for k in diff)


class MetricsLog:
    """CSV (always) and TensorBoard (when tensorboardX is installed) side by side."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.csv"
        self.fields: list[str] | None = None
        if self.path.exists():
            with open(self.path) as f:
                self.fields = next(csv.reader(f), None)
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir))
        except ImportError:
            self.tb = None

    def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
        row = {"split": split, "step": step, **metrics}
        if self.fields is None:
            self.fields = ["split", "step", *sorted(metrics)]
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class _Interrupt:
    """First Ctrl-C asks the loop to save and stop; a second one aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(opts: Options, data_path: str | os.PathLike, *, runs_dir: str | os.PathLike = "runs",
          checkpoint: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
          report: Callable[[str], None] | None = None, progress: bool = True, mesh=None,
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``opts.model.kind`` on ``data_path``; resume from or warm-start with ``checkpoint``.

    With a checkpoint whose options equal ``opts`` (up to :data:`RESUMABLE_CHANGES`) the run is resumed in
    its own folder and continues exactly: the next step equals the step the uninterrupted run would have
    taken. Otherwise its parameters (and EMA) initialise a new run (e.g. the fine-tuning stage).
    """
    say = report or (lambda s: None)
    data, opts = load_training_data(data_path, opts, weights)
    t = opts.train
    raw = raw_arrays(data, opts.data)
    train_idx, val_idx = split_indices(raw.n_events, opts.data.validation_fraction, t.seed)
    mode, step_dir, meta = "new", None, None
    if checkpoint is not None:
        step_dir = ckpt.resolve(checkpoint, prefer="latest")
        meta = ckpt.read_meta(step_dir)
        stored = config.from_dict(meta["options"])
        if stored.model.kind != opts.model.kind:
            raise CheckpointError(f"{step_dir}: holds a '{stored.model.kind}' model, options ask for '{opts.model.kind}'")
        mode = "resume" if _resumable(stored, opts) else "warm start"
        norm = Normalizer.from_dict(meta["normalizer"])
        norm.check(opts.data)
    else:
        norm = Normalizer.fit(raw.take(train_idx), opts.data)
    arrays = norm.apply(raw)
    del raw

    mesh = mesh or make_mesh()
    model = build_model(opts, Dims.from_normalizer(norm))
    graphdef, state = init_state(model, opts)
    del model
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    if mode == "resume":
        state = ckpt.restore_state(step_dir, state, replicated)
        run_dir = step_dir.parents[2]
    else:
        if mode == "warm start":
            loaded = ckpt.restore_state(step_dir, state, replicated)
            state = state.replace(main=loaded.main, sched=loaded.sched, rest=loaded.rest,
                                  ema_main=loaded.ema_main, ema_sched=loaded.ema_sched)
        run_dir = new_run_dir(runs_dir, opts.name)
    (run_dir / "options.yaml").write_text(config.to_yaml(opts))
    say(f"{mode} run {run_dir} ({len(train_idx):,} training / {len(val_idx):,} validation events, "
        f"{jax.device_count()} device(s))" + (f" from {step_dir}" if step_dir else ""))

    train_loader = Loader(arrays, train_idx, t.batch_size, t.seed, mesh)
    val_loader = Loader(arrays, val_idx, t.batch_size, t.seed, mesh) if len(val_idx) else None
    train_step, eval_step = make_train_step(graphdef, opts, mesh), make_eval_step(graphdef, opts, mesh)
    writer, log = ckpt.CheckpointWriter(run_dir), MetricsLog(run_dir)
    best = float(meta.get("best_validation", math.inf)) if (meta and mode == "resume") else math.inf
    base_meta = {"lvd_version": lvd.__version__, "options": config.to_dict(opts), "normalizer": norm.to_dict(),
                 "data_file": str(Path(data_path).absolute()), "n_train": int(len(train_idx)),
                 "n_validation": int(len(val_idx)), "model": opts.model.kind}

    def meta_now(step: int, val: float) -> dict[str, Any]:
        epoch, batch = train_loader.position(step)
        return {**base_meta, "step": step, "epoch": epoch, "batch_in_epoch": batch, "validation_loss": val,
                "best_validation": best, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}

    def validate(step: int) -> dict[str, float]:
        if val_loader is None:
            return {}
        sums: dict[str, float] = {}
        for i, batch in enumerate(val_loader.sequential(t.validation_batches)):
            for k, v in jax.device_get(eval_step(state, batch, np.int32(i))).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        w = sums.pop("weight")
        return {k: v / w for k, v in sums.items()}

    start = int(jax.device_get(state.step))
    history: list[dict[str, Any]] = []
    pending: list[dict] = []
    last_val, stopped_by = math.nan, "steps"
    latest_path = best_path = None
    t0 = tick = time.time()
    tick_step = start
    from lvd.cli.progress import progress_bar

    bar = progress_bar(t.steps, f"train {opts.model.kind}", unit="steps", extra="{task.fields[info]}") \
        if progress else _null_bar()
    with _Interrupt() as interrupt, bar as advance:
        advance(start, info="")
        step = start
        while step < t.steps:
            state, metrics = train_step(state, train_loader.train_batch(step))
            step += 1
            pending.append(metrics)
            if on_step is not None:
                on_step(step)
            stop = None
            if interrupt.requested:
                stop = "interrupt"
            elif t.time_limit_minutes and time.time() - t0 > 60 * t.time_limit_minutes:
                stop = "time limit"
            if step % t.log_every == 0 or step == t.steps or stop:
                now = time.time()
                host = jax.device_get(pending)
                row = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "nonfinite"}
                if any(m["nonfinite"] for m in host):
                    raise TrainingError(f"the loss became NaN/inf before step {step}; last good checkpoint: "
                                        f"{latest_path or 'none'} (lower train.learning_rate or check the data)")
                row["events_per_s"] = (step - tick_step) * t.batch_size / max(now - tick, 1e-9)
                row["epoch"] = step / train_loader.steps_per_epoch
                log.write("train", step, row)
                history.append({"split": "train", "step": step, **row})
                info = f"loss {row['loss']:.4f}"
                if "gamma_0" in row:
                    info += f" γ₀ {row['gamma_0']:.2f} γ₁ {row['gamma_1']:.2f}"
                info += f" {row['events_per_s']:,.0f} ev/s"
                advance(step - tick_step, info=info)
                pending, tick, tick_step = [], now, step
            if step % t.validate_every == 0 or step == t.steps or stop:
                val = validate(step)
                if val:
                    last_val = val["loss"]
                    log.write("validation", step, val)
                    history.append({"split": "validation", "step": step, **val})
                    say(f"step {step}: validation loss {last_val:.5f}"
                        + ("" if last_val >= best else " (best)"))
                    if last_val < best:
                        best = last_val
                        best_path = writer.save("best", state, meta_now(step, last_val))
            if step % t.checkpoint_every == 0 or step == t.steps or stop:
                latest_path = writer.save("latest", state, meta_now(step, last_val))
            if stop:
                stopped_by = stop
                break
    writer.close()
    log.close()
    return TrainResult(run_dir=run_dir, step=step, best_validation=best, latest=latest_path, best=best_path,
                       stopped_by=stopped_by, history=history)


class _null_bar:
    def __enter__(self):
        return lambda *a, **k: None

    def __exit__(self, *exc):
        return False
