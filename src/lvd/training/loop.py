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
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import lvd
from lvd import config, distributed
from lvd.config import Options
from lvd.data import convert
from lvd.data.loader import Loader, make_mesh, split_indices
from lvd.data.representation import Normalizer, layout, raw_arrays
from lvd.data.schema import EventData, count_events, read_events
from lvd.errors import CheckpointError, LvdError
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.training import checkpoint as ckpt
from lvd.training.state import init_state
from lvd.training.step import make_eval_step, make_train_step

# Options that may change when a run is resumed without making it a different run.
RESUMABLE_CHANGES = ("name", "train.steps", "train.time_limit_minutes", "train.log_every", "train.validate_every",
                     "train.checkpoint_every", "train.validation_batches", "sample.")


STOP_CODES = (None, "interrupt", "time limit")


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
    multi = distributed.process_count() > 1
    if path.suffix == ".npz":
        data = convert.read_original_npz(path, weights)
        if multi:  # the .npz layout cannot be read in pieces: every process loads it and keeps its slice
            data = data.take(distributed.local_slice(data.n_events))
        kinematic = all(k in data.source for k in ("pt", "eta", "phi", "mass")) and {"met", "phi"} <= set(data.met)
        opts = dataclasses.replace(opts, data=dataclasses.replace(
            opts.data, source_features=tuple(data.source), met_features=tuple(data.met),
            detector_representation="kinematic" if kinematic else "raw"))
    else:
        n_total = count_events(path, layout(opts.data))
        if opts.data.max_events:
            n_total = min(n_total, opts.data.max_events)
        rows = distributed.local_slice(n_total) if multi else slice(0, n_total)
        data = read_events(path, layout(opts.data), require_truth=True, rows=rows)
        if weights is not None:
            data.weights = convert._load_weights(Path(weights), n_total if not multi else count_events(path))[rows]
    w = data.event_weights()
    if not np.isfinite(w.sum()) or w.sum() <= 0:
        raise LvdError(f"{path}: the event weights sum to {w.sum()}; need a positive total")
    return data, opts


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """``runs_dir/name/version_K`` with K one past the highest existing version (chosen by process 0)."""
    base = Path(runs_dir) / name
    version = -1
    if distributed.is_main():
        base.mkdir(parents=True, exist_ok=True)
        versions = [int(d.name.split("_")[-1]) for d in base.glob("version_*") if d.name.split("_")[-1].isdigit()]
        version = max(versions, default=-1) + 1
        (base / f"version_{version}").mkdir()
    version = int(distributed.broadcast(np.int32(version)))
    distributed.barrier("run folder")
    return base / f"version_{version}"


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
    say = report if (report is not None and distributed.is_main()) else (lambda s: None)
    progress = progress and distributed.is_main()
    allsum = distributed.allsum if distributed.process_count() > 1 else None
    data, opts = load_training_data(data_path, opts, weights)
    t = opts.train
    raw = raw_arrays(data, opts.data)
    train_idx, val_idx = split_indices(raw.n_events, opts.data.validation_fraction, t.seed)
    mode, step_dir, meta, norm = "new", None, None, None
    if checkpoint is not None:
        step_dir = ckpt.resolve(checkpoint, prefer="latest")
        meta = ckpt.read_meta(step_dir)
        stored = config.from_dict(meta["options"])
        if stored.model.kind != opts.model.kind:
            raise CheckpointError(f"{step_dir}: holds a '{stored.model.kind}' model, options ask for '{opts.model.kind}'")
        mode = "resume" if _resumable(stored, opts) else "warm start"
        norm = Normalizer.from_dict(meta["normalizer"])
        norm.check(opts.data)
    vae = None
    if opts.model.kind == "ldm" and mode == "new":
        vae = _frozen_vae(opts)
        norm = vae[0]  # the latents only mean something in the VAE's normalisation
        norm.check(opts.data)
    elif mode == "new":
        norm = Normalizer.fit(raw.take(train_idx), opts.data, allsum)
    arrays = norm.apply(raw)
    del raw

    mesh = mesh or make_mesh()
    replicated = NamedSharding(mesh, P())
    # a resumed run needs only shapes to restore into; a new one draws its initial parameters
    model = build_model(opts, Dims.from_normalizer(norm), abstract=mode == "resume")
    graphdef, state = init_state(model, opts, abstract=mode == "resume")
    del model
    if mode == "resume":
        state = ckpt.restore_state(step_dir, state, replicated)
        run_dir = step_dir.parents[2]
    else:
        state = jax.device_put(state, replicated)
        if mode == "warm start":
            loaded = ckpt.restore_state(step_dir, state, replicated)
            state = state.replace(main=loaded.main, sched=loaded.sched, rest=loaded.rest,
                                  ema_main=loaded.ema_main, ema_sched=loaded.ema_sched)
        if vae is not None:
            state = state.replace(rest=_with_vae(state.rest, vae[1], replicated))
        run_dir = new_run_dir(runs_dir, opts.name)
    if distributed.is_main():
        (run_dir / "options.yaml").write_text(config.to_yaml(opts))
    n_train, n_val = (int(x) for x in (allsum or (lambda a: a))(np.array([len(train_idx), len(val_idx)])))
    say(f"{mode} run {run_dir} ({n_train:,} training / {n_val:,} validation events, {jax.device_count()} device(s)"
        + (f" in {distributed.process_count()} processes" if allsum else "") + ")" + (f" from {step_dir}" if step_dir else ""))

    train_loader = Loader(arrays, train_idx, t.batch_size, t.seed, mesh)
    val_loader = Loader(arrays, val_idx, t.batch_size, t.seed, mesh) if n_val else None
    train_step, eval_step = make_train_step(graphdef, opts, mesh), make_eval_step(graphdef, opts, mesh)
    writer, log = ckpt.CheckpointWriter(run_dir), (MetricsLog(run_dir) if distributed.is_main() else _NoLog())
    best = float(meta.get("best_validation", math.inf)) if (meta and mode == "resume") else math.inf
    base_meta = {"lvd_version": lvd.__version__, "options": config.to_dict(opts), "normalizer": norm.to_dict(),
                 "data_file": str(Path(data_path).absolute()), "n_train": n_train,
                 "n_validation": n_val, "model": opts.model.kind, "processes": distributed.process_count()}

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

    multi = distributed.process_count() > 1
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
            if multi:  # every process must stop at the same step: process 0 decides, at logging steps
                decided = None
                if step % t.log_every == 0 or step == t.steps:
                    code = int(distributed.broadcast(np.int32(STOP_CODES.index(stop))))
                    decided = STOP_CODES[code]
                stop = decided
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


def _frozen_vae(opts: Options) -> tuple[Normalizer, dict]:
    """Normaliser and (EMA) parameters of the stage-1 VAE run named by ``model.vae_checkpoint``."""
    if not opts.model.vae_checkpoint:
        raise CheckpointError("model.kind=ldm needs model.vae_checkpoint=RUN (a run trained with --model vae)")
    step_dir = ckpt.resolve(opts.model.vae_checkpoint)
    meta = ckpt.read_meta(step_dir)
    vae_opts = config.from_dict(meta["options"])
    if vae_opts.model.kind != "vae":
        raise CheckpointError(f"{step_dir}: model.vae_checkpoint must be a --model vae run, not '{vae_opts.model.kind}'")
    norm = Normalizer.from_dict(meta["normalizer"])
    _, template = init_state(build_model(vae_opts, Dims.from_normalizer(norm), abstract=True), vae_opts, abstract=True)
    state = ckpt.restore_state(step_dir, template)
    return norm, nnx.to_pure_dict(state.ema_main)


def _with_vae(rest, vae_params: dict, sharding):
    """``rest`` with its ``vae`` subtree replaced by the pre-trained parameters (shapes must agree)."""
    pure = nnx.to_pure_dict(rest)
    shapes_ok = jax.tree.structure(pure["vae"]) == jax.tree.structure(vae_params["vae"]) and all(
        a.shape == b.shape for a, b in zip(jax.tree.leaves(pure["vae"]), jax.tree.leaves(vae_params["vae"]), strict=True))
    if not shapes_ok:
        raise CheckpointError("the VAE checkpoint's architecture differs from this LDM's model options "
                              "(train both stages with the same model.hidden/latent_dim/encoder_layers/decoder_layers)")
    pure["vae"] = jax.device_put(vae_params["vae"], sharding)
    new = jax.tree.map(lambda x: x, rest)
    nnx.replace_by_pure_dict(new, pure)
    return new


class _NoLog:
    """Processes other than 0 write no logs."""

    def write(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


class _null_bar:
    def __enter__(self):
        return lambda *a, **k: None

    def __exit__(self, *exc):
        return False
