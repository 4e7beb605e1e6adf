"""The noise schedule γ(t) = log(σ_t²/α_t²) with learned endpoints and (optionally) a learned monotone shape,
and the weightings w(γ) of the diffusion loss.

``γ(t) = (1 − s(t))·γ_min + s(t)·γ_max`` with ``s(0) = 0``, ``s(1) = 1`` exactly and ``s`` increasing, so γ is
monotone and hits its endpoints exactly. The endpoints are ordinary parameters (trained with the main loss),
soft-clipped to ``±limit``. The learned shape ``s`` is a monotone network (non-negative weights, VDM's
``NoiseSchedule_NNet`` architecture) whose parameters are :class:`ScheduleParam` so that they can be given
their own optimizer (trained on the batch variance of the diffusion loss).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.scipy.special import ndtr, ndtri

# EDM's log σ ~ N(−1.2, 1.2) becomes γ ≈ 2 log σ ~ N(−2.4, 2.4)
EDM_MEAN, EDM_STD = -2.4, 2.4


class ScheduleParam(nnx.Param):
    """Parameters of the schedule's shape; optimised separately from everything else."""


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class MonotoneLinear(nnx.Module):
    """``x W + b`` with ``W = |V|`` element-wise non-negative, so the map is increasing in every input."""

    def __init__(self, d_in: int, d_out: int, *, use_bias: bool = True, rngs: nnx.Rngs):
        self.v = ScheduleParam(jax.random.normal(rngs.params(), (d_in, d_out)) / math.sqrt(d_in))
        self.b = ScheduleParam(jnp.zeros((d_out,))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ jnp.abs(self.v[...])
        return y if self.b is None else y + self.b[...]


class NoiseSchedule(nnx.Module):
    """``t [...] -> γ(t) [...]``; kinds ``learned``, ``linear``, ``cosine``, ``edm`` (fixed shapes)."""

    def __init__(self, kind: str, gamma_min: float, gamma_max: float, limit: float, hidden: int,
                 learn_endpoints: bool = True, *, rngs: nnx.Rngs):
        self.kind, self.limit, self.learn_endpoints = kind, float(limit), learn_endpoints
        # soft clip: γ_min = −L + softplus(r + L); the raw value is chosen so the initial γ_min is exact
        self.raw_gamma_min = nnx.Param(jnp.asarray(_softplus_inverse(gamma_min + limit) - limit, jnp.float32))
        self.raw_gamma_max = nnx.Param(jnp.asarray(limit - _softplus_inverse(limit - gamma_max), jnp.float32))
        if kind == "learned":
            self.l1 = MonotoneLinear(1, 1, rngs=rngs)
            self.l2 = MonotoneLinear(1, hidden, rngs=rngs)
            self.l3 = MonotoneLinear(hidden, 1, use_bias=False, rngs=rngs)
        elif kind not in ("linear", "cosine", "edm"):
            raise ValueError(f"unknown schedule kind {kind!r}")

    def endpoints(self) -> tuple[jax.Array, jax.Array]:
        """``(γ_min, γ_max)`` after the soft clip to ``±limit``."""
        lim = self.limit
        g0 = -lim + jax.nn.softplus(self.raw_gamma_min[...] + lim)
        g1 = lim - jax.nn.softplus(lim - self.raw_gamma_max[...])
        if not self.learn_endpoints:
            g0, g1 = jax.lax.stop_gradient(g0), jax.lax.stop_gradient(g1)
        return g0, g1

    def _g(self, t: jax.Array) -> jax.Array:
        """The unnormalised monotone network on ``t [n] -> [n]``."""
        h = self.l1((2.0 * t - 1.0)[:, None])
        return (h + self.l3(jax.nn.sigmoid(self.l2(h))))[:, 0]

    def __call__(self, t: jax.Array) -> jax.Array:
        g_min, g_max = self.endpoints()
        shape = jnp.shape(t)
        t = jnp.reshape(t, (-1,)).astype(jnp.float32)
        if self.kind == "learned":
            ends = self._g(jnp.array([0.0, 1.0]))
            s = (self._g(t) - ends[0]) / (ends[1] - ends[0])
            gamma = (1.0 - s) * g_min + s * g_max  # exact at s = 0 and s = 1
        elif self.kind == "linear":
            gamma = (1.0 - t) * g_min + t * g_max
        elif self.kind == "cosine":
            # γ = 2 log tan(πu/2), u linear between the preimages of the endpoints
            u0, u1 = (2.0 / jnp.pi) * jnp.arctan(jnp.exp(g_min / 2)), (2.0 / jnp.pi) * jnp.arctan(jnp.exp(g_max / 2))
            gamma = _pin_endpoints(2.0 * jnp.log(jnp.tan(0.5 * jnp.pi * (u0 + (u1 - u0) * t))), t, g_min, g_max)
        else:  # edm: γ = Φ⁻¹(Φ(γ_min) + t (Φ(γ_max) − Φ(γ_min))), Φ the CDF of N(−2.4, 2.4)
            p0, p1 = ndtr((g_min - EDM_MEAN) / EDM_STD), ndtr((g_max - EDM_MEAN) / EDM_STD)
            gamma = _pin_endpoints(EDM_MEAN + EDM_STD * ndtri(p0 + (p1 - p0) * t), t, g_min, g_max)
        return jnp.reshape(gamma, shape)

    def with_derivative(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(γ(t), γ'(t))`` by forward-mode autodiff (nothing hand-differentiated)."""
        return jax.jvp(self.__call__, (t,), (jnp.ones_like(t),))


def _pin_endpoints(gamma: jax.Array, t: jax.Array, g_min: jax.Array, g_max: jax.Array) -> jax.Array:
    """Make γ(0), γ(1) exactly the endpoints (round-off in closed forms) without changing γ'(t)."""
    fix = jnp.where(t == 0, g_min - gamma, 0.0) + jnp.where(t == 1, g_max - gamma, 0.0)
    return gamma + jax.lax.stop_gradient(fix)


def weighting(gamma: jax.Array, kind: str, sigmoid_offset: float = 2.0) -> jax.Array:
    """``w(γ)`` of the diffusion loss: unit, sigmoid ``σ(γ + offset)``, cosine ``sech(γ/2)``, or EDM."""
    if kind == "unit":
        return jnp.ones_like(gamma)
    if kind == "sigmoid":
        return jax.nn.sigmoid(gamma + sigmoid_offset)
    if kind == "cosine":
        return 1.0 / jnp.cosh(0.5 * gamma)
    if kind == "edm":
        pdf = jnp.exp(-0.5 * ((-gamma - 2.4) / 2.4) ** 2) / (2.4 * math.sqrt(2 * math.pi))
        return 5.0 * pdf * (jnp.exp(gamma) + 0.25)
    raise ValueError(f"unknown weighting {kind!r}")
