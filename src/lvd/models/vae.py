"""The variational auto-encoder of LVD (and of the LDM/CVAE baselines): q(z | x, c) and p(x | z, c)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lvd.models.layers import ResidualMLP


class Encoder(nnx.Module):
    """``x [B, D]`` (and ``c [B, C]`` when conditional) -> ``(mean [B, L], log_sigma [B, L])``.

    With ``normalized`` the mean is projected to the sphere of radius √L (docs/design.md §3.2), which fixes the latent
    scale the diffusion sees.
    """

    def __init__(self, d_in: int, d_cond: int, width: int, latent: int, num_blocks: int, expansion: int,
                 normalized: bool, *, rngs: nnx.Rngs):
        self.normalized, self.latent = normalized, latent
        self.net = ResidualMLP(d_in + d_cond, width, 2 * latent, num_blocks, expansion, rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        h = self.net(x if c is None else jnp.concatenate([x, c], axis=-1))
        mean, log_sigma = jnp.split(h, 2, axis=-1)
        if self.normalized:
            mean = mean * (math.sqrt(self.latent) / (jnp.linalg.norm(mean, axis=-1, keepdims=True) + 1e-6))
        return mean, log_sigma


class Decoder(nnx.Module):
    """``z [B, L]`` (and ``c`` when conditional) -> reconstructed normalised partons ``[B, D]``."""

    def __init__(self, latent: int, d_cond: int, width: int, d_out: int, num_blocks: int, expansion: int, *,
                 rngs: nnx.Rngs):
        self.net = ResidualMLP(latent + d_cond, width, d_out, num_blocks, expansion, rngs=rngs)

    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        return self.net(z if c is None else jnp.concatenate([z, c], axis=-1))


def gaussian_kl(mean: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """``KL(N(mean, σ²) ‖ N(0, 1))`` averaged over the last axis: ``[B, L] -> [B]``."""
    return 0.5 * jnp.mean(mean**2 + jnp.exp(2.0 * log_sigma) - 2.0 * log_sigma - 1.0, axis=-1)


def gaussian_kl_between(mean_q: jax.Array, log_sigma_q: jax.Array, mean_p: jax.Array, log_sigma_p: jax.Array) -> jax.Array:
    """``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))`` averaged over the last axis: ``[B, L] -> [B]``."""
    var_ratio = jnp.exp(2.0 * (log_sigma_q - log_sigma_p))
    return 0.5 * jnp.mean(var_ratio + ((mean_q - mean_p) / jnp.exp(log_sigma_p)) ** 2 - 1.0
                          - 2.0 * (log_sigma_q - log_sigma_p), axis=-1)
