"""What a run's checkpoint holds: the train state (parameters split into the γ shape, the rest and frozen parts,
two optimiser states, the parameter EMA) and the sampling part of it (:class:`EmaParams`), with the plain-dict
form they are stored in. How training creates and advances the state is :mod:`lvd.training.state`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from lvd.models.base import UnfoldingModel
from lvd.models.schedule import ScheduleParam


def split_model(model: UnfoldingModel) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
    """``(graphdef, sched, main, rest)``; :func:`merge` rebuilds the model from them.

    Parameters under the model's ``FROZEN`` attributes go to ``rest`` (never optimised).
    """
    trainable = nnx.Param
    if model.FROZEN:
        trainable = nnx.All(nnx.Param, nnx.Not(nnx.Any(*(nnx.PathContains(f) for f in model.FROZEN))))
    return nnx.split(model, ScheduleParam, trainable, ...)


def merge(graphdef: nnx.GraphDef, sched: nnx.State, main: nnx.State, rest: nnx.State) -> UnfoldingModel:
    """The model from the three parts :func:`split_model` makes (the one place that knows their order)."""
    return nnx.merge(graphdef, sched, main, rest)


@struct.dataclass
class EmaParams:
    """What sampling needs: the EMA parameters, the non-trainable state and the step they belong to."""

    step: jax.Array  # int32 []
    sched: nnx.State
    main: nnx.State
    rest: nnx.State

    def model(self, graphdef: nnx.GraphDef) -> UnfoldingModel:
        return merge(graphdef, self.sched, self.main, self.rest)


@struct.dataclass
class TrainState:
    """Everything that changes during training (a pytree; the graph definition is kept apart, static)."""

    step: jax.Array  # int32 []
    main: nnx.State  # nnx.Param except the schedule shape
    sched: nnx.State  # ScheduleParam: the learned γ shape
    rest: nnx.State  # non-trainable state (e.g. a frozen pre-trained VAE)
    opt_main: Any
    opt_sched: Any
    ema_main: nnx.State
    ema_sched: nnx.State

    def model(self, graphdef: nnx.GraphDef) -> UnfoldingModel:
        """The model with the current (trained) parameters."""
        return merge(graphdef, self.sched, self.main, self.rest)

    def ema(self) -> EmaParams:
        """The EMA parameters (used for validation and sampling)."""
        return EmaParams(step=self.step, sched=self.ema_sched, main=self.ema_main, rest=self.rest)


def ema_template(model: UnfoldingModel) -> tuple[nnx.GraphDef, EmaParams]:
    """Graph definition and the (abstract, for an abstract model) :class:`EmaParams` of ``model``: no optimiser."""
    graphdef, sched, main, rest = split_model(model)
    return graphdef, EmaParams(step=jax.ShapeDtypeStruct((), jnp.int32), sched=sched, main=main, rest=rest)


# --- plain-dict form for checkpoints (independent of flax's Variable metadata) -------------------

def _is_state(x) -> bool:
    return isinstance(x, nnx.State)


def to_pure(tree: Any) -> Any:
    """Replace every ``nnx.State`` inside ``tree`` by its nested dict of arrays."""
    return jax.tree.map(lambda x: nnx.to_pure_dict(x) if _is_state(x) else x, tree, is_leaf=_is_state)


def from_pure(template: Any, pure: Any) -> Any:
    """Inverse of :func:`to_pure`, using ``template`` for the ``nnx.State`` structure."""

    def fill(t, p):
        if _is_state(t):
            s = jax.tree.map(lambda x: x, t)
            nnx.replace_by_pure_dict(s, p)
            return s
        return p

    return jax.tree.map(fill, template, pure, is_leaf=_is_state)
