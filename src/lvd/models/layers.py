"""Building blocks shared by every model: residual MLP blocks, attention blocks, noise-level embedding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


class ResidualBlock(nnx.Module):
    """Pre-LayerNorm residual MLP: ``x + W₂ gelu(W₁ LN(x))``, shape ``[..., H] -> [..., H]``.

    The output layer starts at zero, so every block starts as the identity (a deep stack trains stably).
    """

    def __init__(self, width: int, expansion: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.inner = nnx.Linear(width, expansion * width, rngs=rngs)
        self.outer = nnx.Linear(expansion * width, width, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.outer(jax.nn.gelu(self.inner(self.norm(x))))


class ResidualMLP(nnx.Module):
    """``Linear(d_in -> H)``, ``n`` residual blocks, ``LN``, ``Linear(H -> d_out)``: ``[..., d_in] -> [..., d_out]``."""

    def __init__(self, d_in: int, width: int, d_out: int, num_blocks: int, expansion: int, *,
                 zero_output: bool = False, rngs: nnx.Rngs):
        self.inp = nnx.Linear(d_in, width, rngs=rngs)
        self.blocks = nnx.List([ResidualBlock(width, expansion, rngs=rngs) for _ in range(num_blocks)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        init = nnx.initializers.zeros if zero_output else nnx.initializers.lecun_normal()
        self.out = nnx.Linear(width, d_out, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))


class TransformerBlock(nnx.Module):
    """Pre-LN self-attention over a padded set, then a per-token residual MLP. ``[B, T, H] -> [B, T, H]``.

    No positional encoding: the block is equivariant under permutations of the tokens.
    """

    def __init__(self, width: int, num_heads: int, expansion: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(num_heads=num_heads, in_features=width, decode=False,
                                                out_kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.mlp = ResidualBlock(width, expansion, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # every token attends to the real tokens only; mask [B, T] -> [B, 1 (heads), 1 (queries), T]
        h = self.norm(x)
        x = x + self.attention(h, mask=mask[:, None, None, :], deterministic=True)
        return self.mlp(x)


def sinusoidal_embedding(x: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """``[B] -> [B, dim]``: sin and cos of ``x`` at ``dim/2`` log-spaced frequencies from 1 to 1/max_period."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    angles = x[:, None] * freqs[None, :]  # [B, dim/2]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
