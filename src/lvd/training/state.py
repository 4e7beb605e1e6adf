"""How training creates its state: the optimisers (Adam for the main and the γ-shape parameters, with a warm-up
and cosine decay) and the initial :class:`lvd.runs.state.TrainState` of a model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lvd.config import Options
from lvd.models.base import UnfoldingModel
from lvd.runs.state import TrainState, split_model


def learning_rate_schedule(peak: float, warmup: int, total: int, final_ratio: float) -> optax.Schedule:
    """Linear warm-up to ``peak``, then cosine decay to ``final_ratio × peak`` at ``total`` steps."""
    if warmup <= 0 and final_ratio == 1.0:
        # the same values as the cosine with α = 1 (exactly: (1 − α)·c + α = 1), without baking ``total`` into the
        # compiled step, so runs that differ only in their length share one compilation
        return optax.constant_schedule(peak)
    if warmup <= 0:
        return optax.cosine_decay_schedule(peak, max(total, 1), alpha=final_ratio)
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), peak * final_ratio)


def optimizers(opts: Options) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """Adam with global-norm clipping and the warm-up/cosine schedule, for the main and the γ-shape parameters."""
    t = opts.train

    def make(lr: float) -> optax.GradientTransformation:
        sched = learning_rate_schedule(lr, t.warmup_steps, t.steps, t.final_learning_rate_ratio)
        return optax.chain(optax.clip_by_global_norm(t.gradient_clipping), optax.adam(sched))

    return make(t.learning_rate), make(t.schedule_learning_rate)


def init_state(model: UnfoldingModel, opts: Options, abstract: bool = False) -> tuple[nnx.GraphDef, TrainState]:
    """Graph definition and initial train state of ``model`` (shapes only with ``abstract``, e.g. to restore into)."""
    graphdef, sched, main, rest = split_model(model)
    tx_main, tx_sched = optimizers(opts)

    def make(main, sched, rest):
        copy = lambda s: jax.tree.map(lambda x: x + 0, s)  # noqa: E731  (EMA starts as a copy, not an alias)
        return TrainState(step=jnp.zeros((), jnp.int32), main=main, sched=sched, rest=rest,
                          opt_main=tx_main.init(main), opt_sched=tx_sched.init(sched),
                          ema_main=copy(main), ema_sched=copy(sched))

    # one compiled program instead of an eager op (and a compilation) per parameter
    state = jax.eval_shape(make, main, sched, rest) if abstract else jax.jit(make)(main, sched, rest)
    return graphdef, state
