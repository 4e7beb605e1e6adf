"""A run on disk, restored: the one place that turns a checkpoint back into options, normaliser, model and state.

Training (resume, warm start, a frozen pre-trained part) and unfolding both go through
:class:`Checkpoint`; nothing else reads checkpoint metadata or rebuilds a model from it::

    ck = Checkpoint.open("runs/lvd-small")          # best checkpoint of the newest version (metadata only)
    graphdef, ema = ck.ema()                        # what sampling needs, no optimiser state
    model = ema.model(graphdef)

Run folders are created here too (:func:`new_run_dir`), and :func:`resumable` decides whether a checkpoint and a
set of options are the same run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from lvd import config, distributed
from lvd.config import Options
from lvd.data.representation import Normalizer, layout
from lvd.data.schema import FileLayout
from lvd.errors import CheckpointError
from lvd.models.base import Dims, UnfoldingModel
from lvd.models.registry import build_model, model_class
from lvd.runs import checkpoint as ckpt
from lvd.runs.state import EmaParams, TrainState, ema_template

# Options that may change when a run is resumed without making it a different run.
RESUMABLE_CHANGES = ("name", "train.steps", "train.time_limit_minutes", "train.stop_at", "train.log_every", "train.validate_every",
                     "train.checkpoint_every", "train.validation_batches", "train.physics_events",
                     "train.physics_samples", "sample.")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint step folder with its metadata read: options, normaliser and the rest of ``meta``."""

    step_dir: Path
    meta: dict[str, Any]
    options: Options
    normalizer: Normalizer

    @classmethod
    def open(cls, run_or_checkpoint: str | os.PathLike, prefer: str = "best") -> Checkpoint:
        """A run name or version folder (its ``prefer`` checkpoint), a ``checkpoints/<kind>`` or a step folder."""
        step_dir = ckpt.resolve(run_or_checkpoint, prefer=prefer)
        meta = ckpt.read_meta(step_dir)
        return cls(step_dir, meta, config.from_dict(meta["options"]), Normalizer.from_dict(meta["normalizer"]))

    @property
    def run_dir(self) -> Path:
        """``runs/NAME/version_K`` this checkpoint belongs to (``.../checkpoints/<kind>/<step>``)."""
        return self.step_dir.parents[2]

    @property
    def layout(self) -> FileLayout:
        """Where the run's events live in a file (group and feature names of its data options)."""
        return layout(self.options.data)

    @property
    def dims(self) -> Dims:
        return Dims.from_normalizer(self.normalizer)

    def abstract_model(self, opts: Options | None = None) -> UnfoldingModel:
        """The model these options (default: the stored ones) build, shapes only."""
        return build_model(opts or self.options, self.dims, abstract=True)

    def train_state(self, template: TrainState, sharding=None) -> TrainState:
        """The whole train state (parameters, optimisers, EMA, step) restored into the structure of ``template``
        (abstract or not: training builds it, since the optimisers are training's; it must be of the same
        architecture as :meth:`abstract_model`)."""
        return ckpt.restore_state(self.step_dir, template, sharding)

    def ema(self, sharding=None) -> tuple[nnx.GraphDef, EmaParams]:
        """Graph definition and the EMA parameters, frozen state and step: what sampling needs."""
        graphdef, template = ema_template(self.abstract_model())
        return graphdef, ckpt.restore_ema(self.step_dir, template, sharding)

    @property
    def step(self) -> int:
        return int(self.step_dir.name)

    def export(self, folder: str | os.PathLike, **extra_meta: Any) -> Path:
        """A sampling-only copy of this checkpoint in ``folder`` (EMA parameters and metadata; e.g. to ship a model):
        ``Checkpoint.open(folder)`` and ``lvd unfold folder ...`` use it like the run."""
        _, ema = self.ema()
        return ckpt.save_ema(Path(folder), ema, {**self.meta, **extra_meta, "exported_from": str(self.step_dir)})


def frozen_parts(opts: Options) -> tuple[Normalizer, dict[str, Any]] | None:
    """The normaliser and the (EMA) parameters of each ``FROZEN`` attribute of a new run of ``opts``, taken from the
    run the model class names (e.g. the LDM's pre-trained VAE); None for models without frozen parts."""
    cls = model_class(opts.model.kind)
    source = cls.frozen_source(opts)
    if source is None:
        return None
    ck = Checkpoint.open(source)
    if cls.FROZEN_KIND is not None and ck.options.model.kind != cls.FROZEN_KIND:
        raise CheckpointError(f"{ck.step_dir}: a {opts.model.kind} run needs a --model {cls.FROZEN_KIND} run to "
                              f"freeze, not a '{ck.options.model.kind}' run")
    _, ema = ck.ema()
    trained = nnx.to_pure_dict(ema.main)
    return ck.normalizer, {name: trained[name] for name in cls.FROZEN}


def graft(rest: nnx.State, parts: dict[str, Any], sharding) -> nnx.State:
    """``rest`` with the subtrees named in ``parts`` replaced by those parameters (shapes must agree)."""
    pure = nnx.to_pure_dict(rest)
    for name, params in parts.items():
        same = jax.tree.structure(pure[name]) == jax.tree.structure(params) and all(
            a.shape == b.shape for a, b in zip(jax.tree.leaves(pure[name]), jax.tree.leaves(params), strict=True))
        if not same:
            raise CheckpointError(f"the pre-trained '{name}' differs in architecture from this model's (train both "
                                  "with the same model.hidden/latent_dim/encoder_layers/decoder_layers)")
        pure[name] = jax.device_put(params, sharding)
    new = jax.tree.map(lambda x: x, rest)
    nnx.replace_by_pure_dict(new, pure)
    return new


def resumable(stored: Options, opts: Options) -> bool:
    """Whether ``opts`` continue the run ``stored`` was (they differ only in :data:`RESUMABLE_CHANGES`)."""
    diff = config.differences(opts, stored)
    return all(any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUMABLE_CHANGES) for k in diff)


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
