"""CVAE: a conditional variational auto-encoder with a Gaussian (optionally learned, conditional) prior."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
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
from lvd.models.vae import Decoder, Encoder, gaussian_kl, gaussian_kl_between


class CVAE(UnfoldingModel):
    """``q(z | x, c)``, ``p(x | z, c) = N(D(z, c), σ_x²)`` with a learned σ_x per feature, prior ``N(0, I)`` or ``p(z | c)``.

    The loss is the negative ELBO per parton dimension, ``⟨−log p(x | z, c)⟩ + β·(L/D)·KL`` with β =
    ``loss.vae_prior`` (1 is the true ELBO), so the KL term regularises whatever the sizes. The original
    release's options set β = 0, which makes it a plain auto-encoder without a usable prior; the cvae options
    here use β = 1. Sampling draws z from the prior and decodes the mean.
    """

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m = opts.model
        self.opts, self.dims = opts, dims
        h, latent = m.hidden, m.latent
        self.detector = DetectorEncoder(dims.object_features, dims.met_features, h, h, m.detector_layers,
                                        m.num_heads, m.expansion, rngs=rngs)
        self.encoder = Encoder(dims.parton_dim, h, 2 * h, latent, m.encoder_layers, m.expansion, False, rngs=rngs)
        self.decoder = Decoder(latent, h, 2 * h, dims.parton_dim, m.decoder_layers, m.expansion, rngs=rngs)
        self.log_sigma_x = nnx.Param(jnp.zeros((dims.parton_dim,)))
        self.prior = (ResidualMLP(h, 2 * h, 2 * latent, 1, m.expansion, zero_output=True, rngs=rngs)
                      if m.learned_prior else None)

    def _prior(self, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.prior is None:
            zeros = jnp.zeros((c.shape[0], self.opts.model.latent))
            return zeros, zeros
        mean, log_sigma = jnp.split(self.prior(c), 2, axis=-1)
        return mean, log_sigma

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        scale = scales or loss_scales(self.opts.loss)
        c = self.detector(batch.objects, batch.mask, batch.met)
        mean, log_sigma = self.encoder(batch.x, c)
        z = mean + jnp.exp(log_sigma) * jax.random.normal(key, mean.shape)
        x_hat = self.decoder(z, c)
        ls_x = self.log_sigma_x[...]
        nll = jnp.mean(0.5 * ((batch.x - x_hat) / jnp.exp(ls_x)) ** 2 + ls_x + 0.5 * math.log(2 * math.pi), -1)
        if self.prior is None:
            kl = gaussian_kl(mean, log_sigma)
        else:
            kl = gaussian_kl_between(mean, log_sigma, *self._prior(c))
        consistency, mass_match = consistency_terms(x_hat, batch.x, self.dims)
        ratio = self.opts.model.latent / self.dims.parton_dim
        terms = {"reconstruction": nnx_mse(x_hat, batch.x), "nll": nll, "vae_prior": kl,
                 "consistency": consistency, "mass_match": mass_match}
        total = (scale.reconstruction * nll + scale.vae_prior * ratio * kl + scale.consistency * consistency
                 + scale.mass_match * mass_match)
        return LossOutput(total=total, terms=terms)

    def sample(self, objects, mask, met, keys, solve):
        c = self.detector(objects, mask, met)
        mean, log_sigma = self._prior(c)
        eps = jax.vmap(lambda k: jax.random.normal(k, (self.opts.model.latent,)))(keys)
        return self.decoder(mean + jnp.exp(log_sigma) * eps, c)


def nnx_mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Mean squared error per event (logged for comparison with the other models)."""
    return jnp.mean((x_hat - x) ** 2, -1)
