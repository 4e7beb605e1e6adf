"""Continuous-time variational diffusion on a latent vector (VDM, Kingma et al. 2021), shared by LVD, VDM, LDM.

``z_t = α_t z + σ_t ε`` with ``α_t² = sigmoid(−γ_t)``, ``σ_t² = sigmoid(γ_t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lvd.models.base import Solve, UnfoldingModel
from lvd.models.schedule import NoiseSchedule, weighting


def low_discrepancy_times(key: jax.Array, b: int) -> jax.Array:
    """``t_i = (u + i/B) mod 1``: one uniform shift for the batch, evenly spread times (VDM's variance reduction)."""
    u = jax.random.uniform(key, ())
    return jnp.mod(u + jnp.arange(b, dtype=jnp.float32) / b, 1.0)


def diffusion_terms(schedule: NoiseSchedule, eps_fn: Callable[[jax.Array, jax.Array], jax.Array], z: jax.Array,
                    key: jax.Array, weighting_kind: str, sigmoid_offset: float) -> tuple[jax.Array, jax.Array]:
    """``(diffusion [B], prior [B])`` for clean latents ``z [B, L]``, averaged over latent dims.

    diffusion: ``½ γ'(t) w(γ_t) ‖ε̂(z_t, γ_t) − ε‖²`` at low-discrepancy ``t`` (the continuous-time ELBO term,
    weighted); prior: ``KL(q(z₁ | z) ‖ N(0, I)) = ½(α₁² z² + σ₁² − log σ₁² − 1)``.
    """
    b = z.shape[0]
    k_t, k_eps = jax.random.split(key)
    t = low_discrepancy_times(k_t, b)  # [B]
    gamma_t, dgamma_t = schedule.with_derivative(t)  # [B], [B]
    alpha_t = jnp.sqrt(jax.nn.sigmoid(-gamma_t))[:, None]
    sigma_t = jnp.sqrt(jax.nn.sigmoid(gamma_t))[:, None]
    eps = jax.random.normal(k_eps, z.shape)
    z_t = alpha_t * z + sigma_t * eps
    eps_hat = eps_fn(z_t, gamma_t)
    diffusion = 0.5 * dgamma_t * weighting(gamma_t, weighting_kind, sigmoid_offset) * jnp.mean((eps_hat - eps) ** 2, -1)

    gamma_1 = schedule.endpoints()[1]
    sigma_sq_1 = jax.nn.sigmoid(gamma_1)
    prior = 0.5 * jnp.mean(jax.nn.sigmoid(-gamma_1) * z**2 + sigma_sq_1 - jax.nn.log_sigmoid(gamma_1) - 1.0, -1)
    return diffusion, prior


def initial_noise(keys: jax.Array, latent: int) -> jax.Array:
    """``z₁ [B, L]``: event i's starting point drawn from its own key only."""
    return jax.vmap(lambda k: jax.random.normal(k, (latent,)))(keys)


def sample_clean_latent(schedule: NoiseSchedule, eps_fn, keys: jax.Array, latent: int, solve: Solve) -> jax.Array:
    """Integrate with ``solve`` from ``z₁ ~ N(0, I)`` to ``t = 0`` and return ``z₀/α₀`` (what the decoder was
    trained on)."""
    pair = jax.vmap(jax.random.split)(keys)  # [B, 2] keys
    k_init, k_steps = pair[:, 0], pair[:, 1]
    z1 = initial_noise(k_init, latent)
    z0 = solve(eps_fn, schedule, z1, k_steps)
    gamma_0 = schedule.endpoints()[0]
    return z0 / jnp.sqrt(jax.nn.sigmoid(-gamma_0))


class DiffusionModel(UnfoldingModel):
    """A model with a noise schedule ``self.schedule`` (LVD, VDM, LDM): logs and shows γ's endpoints."""

    PROGRESS = {"gamma_0": "γ₀", "gamma_1": "γ₁"}
    schedule: NoiseSchedule

    def metrics(self) -> dict[str, jax.Array]:
        g0, g1 = self.schedule.endpoints()
        return {"gamma_0": g0, "gamma_1": g1}
