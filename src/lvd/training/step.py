"""The jitted train and validation steps: pure functions of (state, batch); keys derived from (seed, step)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd.config import Options
from lvd.data.loader import Batch
from lvd.distributed import make_mesh
from lvd.models.base import loss_scales
from lvd.runs.state import TrainState, merge
from lvd.training.state import optimizers

VALIDATION_KEY_OFFSET = 1_000_003  # validation keys never coincide with a training step's


def step_key(seed: int, step: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), step)


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(x.astype(jnp.float32) ** 2) for x in jax.tree.leaves(tree)))


def _weighted(w: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.sum(w * x)


def _metrics(model, out, w, total) -> dict[str, jax.Array]:
    return {"loss": total, **{k: _weighted(w, v) for k, v in out.terms.items()}, **model.metrics()}


def _shardings(mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-split) shardings on ``mesh``; default: all devices."""
    mesh = mesh or make_mesh()
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def make_train_step(graphdef: nnx.GraphDef, opts: Options, mesh=None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """One optimisation step of both optimisers, jitted.

    The main loss is the weight-normalised mean of the per-event totals (``Σ wᵢ Lᵢ / Σ wᵢ``); its gradient
    updates every parameter except the γ shape. The γ shape follows the gradient of the batch variance of
    the per-event diffusion loss (VDM appendix I.2). Both gradients come from one forward pass (``jax.vjp``)
    pulled back twice.
    """
    tx_main, tx_sched = optimizers(opts)
    seed, decay = opts.train.seed, opts.train.ema_decay
    train_schedule = opts.loss.schedule_variance

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = step_key(seed, state.step)
        w = batch.weight / jnp.sum(batch.weight)

        def objective(main, sched):
            model = merge(graphdef, sched, main, state.rest)
            out = model.loss(batch, key, loss_scales(opts.loss, state.step))
            total = _weighted(w, out.total)
            variance = jnp.var(out.diffusion) if out.diffusion is not None else jnp.zeros(())
            return (total, variance), (out, _metrics(model, out, w, total))

        (total, variance), pullback, (out, metrics) = jax.vjp(objective, state.main, state.sched, has_aux=True)
        one, zero = jnp.ones_like(total), jnp.zeros_like(total)
        g_main, _ = pullback((one, zero))
        if train_schedule and out.diffusion is not None:
            _, g_sched = pullback((zero, one))
        else:
            g_sched = jax.tree.map(jnp.zeros_like, state.sched)

        upd, opt_main = tx_main.update(g_main, state.opt_main, state.main)
        main = optax.apply_updates(state.main, upd)
        upd, opt_sched = tx_sched.update(g_sched, state.opt_sched, state.sched)
        sched = optax.apply_updates(state.sched, upd)
        # EMA with a warm-up of the decay, so early averages are not dominated by the initialisation
        d = jnp.minimum(decay, (1.0 + state.step) / (10.0 + state.step))
        ema = lambda e, p: jax.tree.map(lambda a, b: d * a + (1.0 - d) * b, e, p)  # noqa: E731
        new = TrainState(step=state.step + 1, main=main, sched=sched, rest=state.rest, opt_main=opt_main,
                         opt_sched=opt_sched, ema_main=ema(state.ema_main, main),
                         ema_sched=ema(state.ema_sched, sched))
        metrics |= {"schedule_variance": variance, "grad_norm": _global_norm(g_main),
                    "nonfinite": (~jnp.isfinite(total)).astype(jnp.int32)}
        return new, metrics

    # Fixed shardings in and out (state replicated, batch split on 'data'): the output state has exactly the
    # input's sharding, so the next call hits the compilation cache instead of compiling a second time.
    replicated, split = _shardings(mesh)
    return jax.jit(train_step, donate_argnums=0, in_shardings=(replicated, split),
                   out_shardings=(replicated, replicated))


def make_eval_step(graphdef: nnx.GraphDef, opts: Options, mesh=None) -> Callable[[TrainState, Batch, jax.Array], dict]:
    """Loss of a batch under the EMA parameters with a fixed key per validation batch index."""
    seed = opts.train.seed

    def eval_step(state: TrainState, batch: Batch, index: jax.Array) -> dict:
        model = state.ema().model(graphdef)
        out = model.loss(batch, step_key(seed + VALIDATION_KEY_OFFSET, index))
        w = batch.weight
        return {"weight": jnp.sum(w), **{k: _weighted(w, v) for k, v in {"loss": out.total, **out.terms}.items()}}

    replicated, split = _shardings(mesh)
    return jax.jit(eval_step, in_shardings=(replicated, split, replicated), out_shardings=replicated)
