"""The interface every unfolding model implements, and the physics-consistency terms they share."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lvd import physics
from lvd.data.loader import Batch
from lvd.data.partons import PartonRepresentation, parton_representation

# The reverse-time integration a diffusion model samples with: ``solve(eps_fn, gamma_fn, z₁ [B, L], keys [B]) -> z₀
# [B, L]`` with ``eps_fn(z_t [B, L], γ_t [B]) -> ε̂ [B, L]`` and ``gamma_fn(t) -> γ(t)``. Models do not know the
# samplers: :func:`lvd.sampling.samplers.solver` builds it from a sampler's name, steps and time spacing.
Solve = Callable[[Callable[[jax.Array, jax.Array], jax.Array], Callable[[jax.Array], jax.Array], jax.Array, jax.Array],
                 jax.Array]


@dataclass(frozen=True)
class Dims:
    """Input sizes a model is built for (from the data), and the statistics the physics terms need."""

    object_features: int
    met_features: int
    parton_mean: tuple[float, ...]
    parton_std: tuple[float, ...]
    mass_sq_mean: tuple[float, ...]
    mass_sq_std: tuple[float, ...]
    representation: str = "paper"  # the parton representation's name
    top_line_width: float = physics.GAMMA_TOP  # and its top-mass coordinate's line width (GeV)

    @classmethod
    def from_normalizer(cls, norm) -> Dims:
        t = lambda a: tuple(float(v) for v in np.asarray(a))  # noqa: E731
        return cls(len(norm.object_features), len(norm.met_features), t(norm.parton_mean), t(norm.parton_std),
                   t(norm.mass_sq_mean), t(norm.mass_sq_std), norm.parton_representation, float(norm.top_line_width))

    @property
    def parton_dim(self) -> int:
        return len(self.parton_mean)

    @property
    def partons(self) -> PartonRepresentation:
        return parton_representation(self.representation, self.top_line_width)

    def physical(self, x_norm: jax.Array) -> jax.Array:
        """Normalised parton vectors ``[..., D]`` -> physical units."""
        return x_norm * jnp.asarray(self.parton_std) + jnp.asarray(self.parton_mean)

    def daughters(self, x_norm: jax.Array) -> jax.Array:
        """Normalised parton vectors ``[..., D]`` -> on-shell decay products ``[..., 6, 4]`` (what unfolding writes)."""
        return self.partons.decode(self.physical(x_norm))


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

    dims: Dims  # every model keeps the sizes and statistics it was built for
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
    def sample(self, objects: jax.Array, mask: jax.Array, met: jax.Array, keys: jax.Array, solve: Solve) -> jax.Array:
        """Normalised parton vectors ``[B, D]``, one draw per event, event i drawn from ``keys[i]`` only. A diffusion
        model integrates its reverse process with ``solve`` (:data:`Solve`); a direct-sampling one ignores it."""

    def unfold(self, objects: jax.Array, mask: jax.Array, met: jax.Array, keys: jax.Array, solve: Solve) -> jax.Array:
        """On-shell decay products ``[B, 6, 4]`` of one draw per event (what ``lvd unfold`` writes)."""
        return self.dims.daughters(self.sample(objects, mask, met, keys, solve))


def consistency_terms(x_hat: jax.Array, x: jax.Array, dims: Dims) -> tuple[jax.Array, jax.Array]:
    """``(consistency [B], mass_match [B])`` in normalised squared-mass units (docs/design.md §3.2).

    consistency: the resonance masses the representation states (the paper's feature 4 of objects 6–10),
    squared, against those of the model's own decay products summed — built on shell at the daughters'
    physical masses, so off-shell daughters cannot satisfy it; zero for a representation that states no masses
    of its own (the decay chain: its resonances are the daughters' sums by construction). mass_match: the
    daughters' resonance masses against the truth's.
    """
    scale = jnp.asarray(dims.mass_sq_std)
    derived = physics.mass_sq(physics.resonances(dims.daughters(x_hat)))  # [B, 5]
    stated = dims.partons.stated_masses(dims.physical(x_hat))
    if stated is None:
        consistency = jnp.zeros(x_hat.shape[:-1])
    else:
        consistency = jnp.mean(((stated**2 - derived) / scale) ** 2, axis=-1)
    derived_true = physics.mass_sq(physics.resonances(dims.daughters(x)))
    mass_match = jnp.mean(((derived - derived_true) / scale) ** 2, axis=-1)
    return consistency, mass_match
