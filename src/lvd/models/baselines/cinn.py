"""CINN: a conditional invertible network (affine coupling flow) with an exact likelihood.

``z = f(x; c)`` maps normalised partons to ``N(0, I)``; each block is a fixed random permutation, an affine
coupling whose log-scales are soft-clamped (``s = k·tanh(s_raw/k)``), and a global affine layer. Training
maximises ``log N(f(x; c); 0, I) + log|det ∂f/∂x|``; sampling inverts the flow on ``z ~ N(0, I)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lvd.config import Options
from lvd.models.base import (
    Batch,
    Dims,
    LossOutput,
    LossScales,
    UnfoldingModel,
    consistency_terms,
    loss_scales,
)
from lvd.models.detector_encoder import DetectorEncoder
from lvd.models.layers import ResidualMLP

COUPLING_CLAMP = 2.0  # |log-scale| of a coupling stays below this
GLOBAL_CLAMP = 4.0


class Permutation(nnx.Variable):
    """A fixed permutation of the features: not trained, stored in every checkpoint."""


class AffineCoupling(nnx.Module):
    """``y = [x₁, x₂·exp(s(x₁, c)) + t(x₁, c)]``; ``[B, D] -> ([B, D], log|det| [B])``. Starts as the identity."""

    def __init__(self, dim: int, d_cond: int, width: int, num_blocks: int, expansion: int, *, rngs: nnx.Rngs):
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.net = ResidualMLP(self.d1 + d_cond, width, 2 * self.d2, num_blocks, expansion, zero_output=True,
                               rngs=rngs)

    def _scale_shift(self, x1, c):
        raw_s, t = jnp.split(self.net(jnp.concatenate([x1, c], -1)), [self.d2], axis=-1)
        return COUPLING_CLAMP * jnp.tanh(raw_s / COUPLING_CLAMP), t

    def __call__(self, x, c):
        x1, x2 = x[:, : self.d1], x[:, self.d1:]
        s, t = self._scale_shift(x1, c)
        return jnp.concatenate([x1, x2 * jnp.exp(s) + t], -1), jnp.sum(s, -1)

    def inverse(self, y, c):
        y1, y2 = y[:, : self.d1], y[:, self.d1:]
        s, t = self._scale_shift(y1, c)
        return jnp.concatenate([y1, (y2 - t) * jnp.exp(-s)], -1)


class GlobalAffine(nnx.Module):
    """``y = x·exp(s) + b`` with a learned, soft-clamped log-scale per feature."""

    def __init__(self, dim: int):
        self.raw_log_scale = nnx.Param(jnp.zeros((dim,)))
        self.shift = nnx.Param(jnp.zeros((dim,)))

    def _log_scale(self):
        return GLOBAL_CLAMP * jnp.tanh(self.raw_log_scale[...] / GLOBAL_CLAMP)

    def __call__(self, x):
        s = self._log_scale()
        return x * jnp.exp(s) + self.shift[...], jnp.broadcast_to(jnp.sum(s), x.shape[:1])

    def inverse(self, y):
        return (y - self.shift[...]) * jnp.exp(-self._log_scale())


class CINN(UnfoldingModel):
    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m = opts.model
        self.opts, self.dims = opts, dims
        d = dims.parton_dim
        self.detector = DetectorEncoder(dims.object_features, dims.met_features, m.hidden, m.hidden,
                                        m.detector_layers, m.num_heads, m.expansion, rngs=rngs)
        # permutations from the options' seed (a host RNG, so the model can be built inside jit): reproducible,
        # and saved with the model
        perm_rng = np.random.default_rng([opts.train.seed, 0xF10])
        self.perms = nnx.List([Permutation(jnp.asarray(perm_rng.permutation(d), jnp.int32)) for _ in range(m.flow_blocks)])
        self.couplings = nnx.List([AffineCoupling(d, m.hidden, m.flow_hidden, m.flow_layers, m.expansion, rngs=rngs)
                                   for _ in range(m.flow_blocks)])
        self.affines = nnx.List([GlobalAffine(d) for _ in range(m.flow_blocks)])

    def forward(self, x: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Partons -> latent: ``(z [B, D], log|det ∂z/∂x| [B])``."""
        logdet = jnp.zeros(x.shape[:1])
        for perm, coupling, affine in zip(self.perms, self.couplings, self.affines, strict=True):
            x = x[:, perm[...]]
            x, ld1 = coupling(x, c)
            x, ld2 = affine(x)
            logdet = logdet + ld1 + ld2
        return x, logdet

    def inverse(self, z: jax.Array, c: jax.Array) -> jax.Array:
        """Latent -> partons."""
        for perm, coupling, affine in reversed(list(zip(self.perms, self.couplings, self.affines, strict=True))):
            z = coupling.inverse(affine.inverse(z), c)
            z = z[:, jnp.argsort(perm[...])]
        return z

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        scale, d = scales or loss_scales(self.opts.loss), self.dims.parton_dim
        c = self.detector(batch.objects, batch.mask, batch.met)
        z, logdet = self.forward(batch.x, c)
        nll = (0.5 * jnp.sum(z**2, -1) + 0.5 * d * math.log(2 * math.pi) - logdet) / d  # per dimension
        terms = {"nll": nll}
        total = nll
        if self.opts.loss.consistency or self.opts.loss.mass_match:
            # physics consistency of a generated sample (costs one inverse pass)
            x_gen = self.inverse(jax.random.normal(key, batch.x.shape), c)
            consistency, mass_match = consistency_terms(x_gen, batch.x, self.dims)
            terms |= {"consistency": consistency, "mass_match": mass_match}
            total = total + scale.consistency * consistency + scale.mass_match * mass_match
        return LossOutput(total=total, terms=terms)

    def sample(self, objects, mask, met, keys, solve):
        c = self.detector(objects, mask, met)
        z = jax.vmap(lambda k: jax.random.normal(k, (self.dims.parton_dim,)))(keys)
        return self.inverse(z, c)
