"""The noise predictor ε̂(z_t, c, γ_t): a residual MLP conditioned on the detector embedding and the noise level."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lvd.models.layers import ResidualMLP, sinusoidal_embedding


class Denoiser(nnx.Module):
    """``z_t [B, L], c [B, C], γ_t [B] -> ε̂ [B, L]``.

    The noise level enters as a sinusoidal embedding of γ rescaled to ``[0, 1000]`` over the configured
    initial range (VDM's choice), so the network sees the same input for the same noise level whatever t is.
    The width follows the paper: ``L + C + time_dim``; the output layer starts at zero (ε̂ = 0).
    """

    def __init__(self, latent: int, d_cond: int, num_blocks: int, expansion: int, time_dim: int,
                 gamma_min: float, gamma_max: float, *, rngs: nnx.Rngs):
        self.time_dim, self.gamma_min, self.gamma_max = time_dim, float(gamma_min), float(gamma_max)
        width = latent + d_cond + time_dim
        self.net = ResidualMLP(width, width, latent, num_blocks, expansion, zero_output=True, rngs=rngs)

    def __call__(self, z_t: jax.Array, c: jax.Array, gamma_t: jax.Array) -> jax.Array:
        level = 1000.0 * (gamma_t - self.gamma_min) / (self.gamma_max - self.gamma_min)
        emb = sinusoidal_embedding(level, self.time_dim)
        return self.net(jnp.concatenate([z_t, c, emb], axis=-1))
