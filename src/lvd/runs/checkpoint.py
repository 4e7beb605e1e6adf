"""Checkpoints with Orbax: latest and best-by-validation, atomic, restorable into a model rebuilt from options.

Layout of a run folder::

    runs/NAME/version_K/
        options.yaml                 resolved options
        checkpoints/latest/<step>/   state (parameters, both optimiser states, EMA, step) + meta (JSON)
        checkpoints/best/<step>/     the same, at the best validation loss so far
        metrics.csv, events.out.tfevents.*

``meta`` holds the options, the normalisation statistics and feature lists, the data file and position, the
validation loss and the lvd version: everything needed to rebuild the model without unpickling anything.
Orbax writes into a temporary folder and renames it when complete, so a crash during a save leaves the
previous checkpoint loadable.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd.distributed import make_mesh
from lvd.errors import CheckpointError
from lvd.runs.state import EmaParams, TrainState, from_pure, to_pure

KINDS = ("latest", "best")


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _manager(directory: Path, read_only: bool = False):
    ocp = _ocp()
    if read_only:
        options = ocp.CheckpointManagerOptions(max_to_keep=None, save_interval_steps=0, create=False, read_only=True,
                                               enable_async_checkpointing=False, cleanup_tmp_directories=False)
        # Orbax logs a warning that a read-only directory is read-only: noise in every `lvd unfold`
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)
        try:
            return ocp.CheckpointManager(directory.absolute(), options=options)
        finally:
            absl.setLevel(level)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class CheckpointWriter:
    """Saves ``latest`` and ``best`` checkpoints of one run (only process 0 writes metadata; Orbax handles arrays)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "checkpoints"
        self.managers = {k: _manager(self.dir / k) for k in KINDS}

    def save(self, kind: str, state: TrainState, meta: dict[str, Any]) -> Path:
        ocp = _ocp()
        step = int(jax.device_get(state.step))
        mgr = self.managers[kind]
        if step in mgr.all_steps():
            return self.dir / kind / str(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(to_pure(state)), meta=ocp.args.JsonSave(meta))
        mgr.save(step, args=args, force=True)
        mgr.wait_until_finished()
        return self.dir / kind / str(step)

    def close(self) -> None:
        for m in self.managers.values():
            m.close()


def resolve(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A step folder from a run name folder, a run version folder, a ``checkpoints/<kind>`` folder or a step folder.

    Run folders resolve to their ``prefer`` checkpoint (``best`` for unfolding, ``latest`` for resuming), or to
    the other kind when that one does not exist; a run name folder to its newest version.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such run or checkpoint")
    if (p / "_CHECKPOINT_METADATA").exists() or (p / "meta").is_dir():
        return p
    versions = sorted((d for d in p.glob("version_*") if d.is_dir()), key=lambda d: int(d.name.split("_")[-1]))
    if versions:
        p = versions[-1]
    other = "latest" if prefer == "best" else "best"
    for candidate in (p / "checkpoints" / prefer, p / "checkpoints" / other, p):
        steps = _steps(candidate)
        if steps:
            return candidate / str(max(steps))
    raise CheckpointError(f"{path}: contains no checkpoint (expected a run folder or checkpoints/<kind>/<step>)")


def _steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return [int(d.name) for d in folder.iterdir()
            if d.is_dir() and d.name.isdigit() and (d / "_CHECKPOINT_METADATA").exists()]


def _restore(step_dir: Path, **items):
    ocp = _ocp()
    mgr = _manager(step_dir.parent, read_only=True)
    try:
        return mgr.restore(int(step_dir.name), args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types for unreadable folders; report them as one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{step_dir}: checkpoint cannot be read ({type(e).__name__}: {reason[:300]})") from None
    finally:
        with contextlib.suppress(Exception):
            mgr.close()


def read_meta(step_dir: Path) -> dict[str, Any]:
    if not step_dir.name.isdigit():
        raise CheckpointError(f"{step_dir}: not a checkpoint step folder")
    meta = _restore(step_dir, meta=_ocp().args.JsonRestore()).meta
    if not isinstance(meta, dict) or "options" not in meta or "normalizer" not in meta:
        raise CheckpointError(f"{step_dir}: checkpoint metadata is incomplete (no options/normalizer)")
    return meta


def _replicated(sharding):
    """``sharding``, or replication over this process's devices when None."""
    return sharding if sharding is not None else NamedSharding(make_mesh(jax.local_devices()), P())


def _abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _check_shapes(step_dir: Path, wanted, restored) -> None:
    if not all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, wanted, restored))):
        raise CheckpointError(f"{step_dir}: parameter shapes differ from the model these options build")


def restore_state(step_dir: Path, template: TrainState, sharding=None) -> TrainState:
    """The whole train state (to resume or warm-start), restored into the structure of ``template``.

    ``template`` may be abstract (``jax.ShapeDtypeStruct`` leaves); the arrays must match in shape and dtype and
    are placed with ``sharding`` (default: replicated over this process's devices).
    """
    pure = to_pure(template)
    restored = _restore(step_dir, state=_ocp().args.StandardRestore(_abstract(pure, _replicated(sharding)))).state
    _check_shapes(step_dir, pure, restored)
    return from_pure(template, restored)


# EmaParams field -> the TrainState field it is stored under
_EMA_FIELDS = {"step": "step", "sched": "ema_sched", "main": "ema_main", "rest": "rest"}


def save_ema(folder: Path, ema: EmaParams, meta: dict[str, Any]) -> Path:
    """A checkpoint of only what sampling needs (``folder/checkpoints/best/<step>``): EMA parameters, frozen state
    and step under the names a full checkpoint uses, so :func:`restore_ema` reads both alike; a fraction of the
    size of a full checkpoint (no optimiser moments, no raw parameters). It cannot be resumed."""
    ocp = _ocp()
    step = int(jax.device_get(ema.step))
    pure = {stored: to_pure(getattr(ema, f)) for f, stored in _EMA_FIELDS.items()}
    mgr = _manager(Path(folder) / "checkpoints" / "best")
    try:
        mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(pure), meta=ocp.args.JsonSave(meta)),
                 force=True)
        mgr.wait_until_finished()
    finally:
        mgr.close()
    return Path(folder) / "checkpoints" / "best" / str(step)


def restore_ema(step_dir: Path, template: EmaParams, sharding=None) -> EmaParams:
    """Only what sampling needs (EMA parameters, frozen state, step): the optimiser states are not read."""
    pure = {stored: to_pure(getattr(template, f)) for f, stored in _EMA_FIELDS.items()}
    ocp = _ocp()
    target = _abstract(pure, _replicated(sharding))
    # PyTreeRestore takes the placement from restore_args, not from the target's shardings
    args = ocp.args.PyTreeRestore(item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                  partial_restore=True)
    restored = _restore(step_dir, state=args).state
    _check_shapes(step_dir, pure, restored)
    return EmaParams(**{f: from_pure(getattr(template, f), restored[stored]) for f, stored in _EMA_FIELDS.items()})
