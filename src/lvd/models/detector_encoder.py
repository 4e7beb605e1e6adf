"""The detector encoder shared by all models: a permutation-invariant transformer over the event's objects."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lvd.models.layers import TransformerBlock


class DetectorEncoder(nnx.Module):
    """Objects ``[B, N, F]`` (padding mask ``[B, N]``) and MET ``[B, Fm]`` -> embedding ``c [B, C]``.

    Each object and the MET are embedded to width H; a learned event token is prepended; pre-LN
    transformer blocks attend over the real tokens; ``c`` is a projection of the event token.
    """

    def __init__(self, num_object_features: int, num_met_features: int, width: int, out_dim: int,
                 num_layers: int, num_heads: int, expansion: int, *, rngs: nnx.Rngs):
        self.object_embed = nnx.Linear(num_object_features, width, rngs=rngs)
        self.met_embed = nnx.Linear(num_met_features, width, rngs=rngs)
        self.event_token = nnx.Param(jax.random.normal(rngs.params(), (1, 1, width)) * 0.02)
        self.blocks = nnx.List([TransformerBlock(width, num_heads, expansion, rngs=rngs) for _ in range(num_layers)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.out = nnx.Linear(width, out_dim, rngs=rngs)

    def __call__(self, objects: jax.Array, mask: jax.Array, met: jax.Array) -> jax.Array:
        b = objects.shape[0]
        tokens = jnp.concatenate(
            [jnp.broadcast_to(self.event_token[...], (b, 1, self.event_token.shape[-1])),
             self.met_embed(met)[:, None, :], self.object_embed(objects)], axis=1)  # [B, 2 + N, H]
        token_mask = jnp.concatenate([jnp.ones((b, 2), bool), mask], axis=1)  # [B, 2 + N]
        for block in self.blocks:
            tokens = block(tokens, token_mask)
        return self.out(self.norm(tokens[:, 0]))
