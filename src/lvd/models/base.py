"""The interface every unfolding model implements, and the physics-consistency terms they share."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lvd import physics
from lvd.data.loader import Batch
from lvd.data.representation import N_PARTON_FEATURES, N_PARTONS

LOG_E_MAX = 12.0  # clip log(E+1) before expm1: a wild decoder output must not overflow to inf


@dataclass(frozen=True)
class Dims:
    """Input sizes a model is built for (from the data), and the statistics the physics terms need."""

    object_features: int
    met_features: int
    parton_mean: tuple[float, ...]
    parton_std: tuple[float, ...]
    mass_sq_mean: tuple[float, ...]
    mass_sq_std: tuple[float, ...]

    @classmethod
    def from_normalizer(cls, norm) -> Dims:
        t = lambda a: tuple(float(v) for v in np.asarray(a))  # noqa: E731
        return cls(len(norm.object_features), len(norm.met_features), t(norm.parton_mean), t(norm.parton_std),
                   t(norm.mass_sq_mean), t(norm.mass_sq_std))

    @property
    def parton_dim(self) -> int:
        return len(self.parton_mean)


@dataclass(frozen=True)
class LossOutput:
    """Per-event losses of a batch: ``total [B]`` (already scaled), named ``terms [B]`` for logging, and the
    unweighted ``diffusion [B]`` term whose batch variance trains a learned schedule (None without one)."""

    total: jax.Array
    terms: dict[str, jax.Array]
    diffusion: jax.Array | None = None


jax.tree_util.register_dataclass(LossOutput, data_fields=["total", "terms", "diffusion"], meta_fields=[])


@dataclass(frozen=True)
class LossScales:
    """Weights of the loss terms at one training step (arrays inside ``jit``)."""

    reconstruction: jax.Array
    diffusion: jax.Array
    prior: jax.Array
    consistency: jax.Array
    mass_match: jax.Array
    vae_prior: jax.Array


jax.tree_util.register_dataclass(LossScales, data_fields=list(LossScales.__dataclass_fields__), meta_fields=[])


def loss_scales(loss, step: jax.Array | int | None = None) -> LossScales:
    """The options' loss weights at a training step: consistency and mass-match are off before
    ``loss.consistency_start`` and ramp up over ``loss.consistency_warmup`` steps (no ramp when ``step`` is None)."""
    ramp = 1.0
    if step is not None and (loss.consistency_start > 0 or loss.consistency_warmup > 0):
        after = jnp.asarray(step, jnp.float32) - loss.consistency_start
        ramp = jnp.clip((after + 1.0) / max(loss.consistency_warmup, 1), 0.0, 1.0)
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return LossScales(f(loss.reconstruction), f(loss.diffusion), f(loss.prior), f(loss.consistency * ramp),
                      f(loss.mass_match * ramp), f(loss.vae_prior))


class UnfoldingModel(nnx.Module, abc.ABC):
    """Shared interface: ``loss`` for training, ``sample`` for unfolding. Nothing else is model-specific.

    ``FROZEN`` names attributes whose parameters are not trained (they live in the train state's ``rest``),
    e.g. the pre-trained VAE of the latent-diffusion baseline.
    """

    FROZEN: tuple[str, ...] = ()
    FROZEN_KIND: str | None = None  # the model kind of the run frozen_source names
    # metrics() entries the progress bar shows, with their labels
    PROGRESS: dict[str, str] = {}

    @classmethod
    def frozen_source(cls, opts) -> str | None:
        """The run or checkpoint whose (EMA) parameters fill the ``FROZEN`` attributes of a new run (None: none)."""
        return None

    def metrics(self) -> dict[str, jax.Array]:
        """Scalars worth logging at every step besides the loss terms (e.g. the schedule's endpoints)."""
        return {}

    @abc.abstractmethod
    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        """Per-event loss terms of a batch; ``key`` is the only source of randomness; ``scales`` weight the
        terms (default: :func:`loss_scales` of the options, without ramps)."""

    @abc.abstractmethod
    def sample(self, objects: jax.Array, mask: jax.Array, met: jax.Array, keys: jax.Array,
               sampler: str, steps: int, spacing: str | None = None) -> jax.Array:
        """Normalised parton vectors ``[B, 55]``, one draw per event, event i drawn from ``keys[i]`` only."""


def parton_p4(x_norm: jax.Array, dims: Dims) -> jax.Array:
    """Normalised ``[B, 55]`` -> physical ``[B, 11, 5]`` features with ``log(E+1)`` clipped to a safe range."""
    f = (x_norm * jnp.asarray(dims.parton_std) + jnp.asarray(dims.parton_mean)).reshape(-1, N_PARTONS, N_PARTON_FEATURES)
    return f.at[..., 3].set(jnp.clip(f[..., 3], 0.0, LOG_E_MAX))


def consistency_terms(x_hat: jax.Array, x: jax.Array, dims: Dims) -> tuple[jax.Array, jax.Array]:
    """``(consistency [B], mass_match [B])`` in normalised squared-mass units (docs/design.md §3.2).

    consistency: the five resonance masses the model states (feature 4 of objects 6–10), squared, against
    those of its own decay products' summed four-vectors; mass_match: the latter against the truth's.
    """
    f_hat = parton_p4(x_hat, dims)
    scale = jnp.asarray(dims.mass_sq_std)
    explicit = physics.explicit_masses(f_hat) ** 2
    derived = physics.mass_sq(physics.resonances(physics.p4_from_parton_features(f_hat)[:, : len(physics.DECAY_PRODUCTS)]))
    consistency = jnp.mean(((explicit - derived) / scale) ** 2, axis=-1)
    f = parton_p4(x, dims)
    derived_true = physics.mass_sq(physics.resonances(physics.p4_from_parton_features(f)[:, : len(physics.DECAY_PRODUCTS)]))
    mass_match = jnp.mean(((derived - derived_true) / scale) ** 2, axis=-1)
    return consistency, mass_match
