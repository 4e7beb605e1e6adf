"""VDM: the same continuous-time diffusion with a learned schedule, directly on the normalised parton vector."""

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
    consistency_terms,
    loss_scales,
)
from lvd.models.denoiser import Denoiser
from lvd.models.detector_encoder import DetectorEncoder
from lvd.models.diffusion import DiffusionModel, diffusion_terms, sample_clean_latent
from lvd.models.schedule import NoiseSchedule


class VDM(DiffusionModel):
    """``ε̂(x_t, c, γ_t)`` on ``x ∈ R⁵⁵`` (identity encoder and decoder), conditioned on the detector embedding.

    Loss: the diffusion and prior terms of LVD, the Gaussian likelihood ``−log N(x; z₀/α₀, e^{γ₀})`` of the
    data given the first latent (VDM's reconstruction term; it only involves γ₀), and the consistency term on
    the one-step denoised ``x̂₀ = (z₀ − σ₀ ε̂(z₀))/α₀``.
    """

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m, s = opts.model, opts.schedule
        self.opts, self.dims = opts, dims
        self.detector = DetectorEncoder(dims.object_features, dims.met_features, m.hidden, m.hidden,
                                        m.detector_layers, m.num_heads, m.expansion, rngs=rngs)
        self.denoiser = Denoiser(dims.parton_dim, m.hidden, m.denoiser_layers, m.expansion, m.time_embedding_dim,
                                 s.gamma_min, s.gamma_max, rngs=rngs)
        self.schedule = NoiseSchedule(s.kind, s.gamma_min, s.gamma_max, s.gamma_limit, s.hidden,
                                      s.learn_endpoints, rngs=rngs)

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        s, scale = self.opts.schedule, scales or loss_scales(self.opts.loss)
        k_0, k_diff = jax.random.split(key)
        c = self.detector(batch.objects, batch.mask, batch.met)
        eps_fn = lambda z_t, g: self.denoiser(z_t, c, g)  # noqa: E731
        diffusion, prior = diffusion_terms(self.schedule, eps_fn, batch.x, k_diff, s.weighting, s.sigmoid_offset)

        gamma_0 = self.schedule.endpoints()[0]
        eps_0 = jax.random.normal(k_0, batch.x.shape)
        # −log N(x; z₀/α₀, e^{γ₀}) per dim, with z₀/α₀ − x = e^{γ₀/2} ε₀
        reconstruction = 0.5 * (math.log(2 * math.pi) + gamma_0 + jnp.mean(eps_0**2, -1))
        alpha_0, sigma_0 = jnp.sqrt(jax.nn.sigmoid(-gamma_0)), jnp.sqrt(jax.nn.sigmoid(gamma_0))
        z_0 = alpha_0 * batch.x + sigma_0 * eps_0
        x_hat = (z_0 - sigma_0 * eps_fn(z_0, jnp.full(batch.x.shape[:1], gamma_0))) / alpha_0
        consistency, mass_match = consistency_terms(x_hat, batch.x, self.dims)

        terms = {"reconstruction": reconstruction, "diffusion": diffusion, "prior": prior,
                 "consistency": consistency, "mass_match": mass_match}
        total = (scale.reconstruction * reconstruction + scale.diffusion * diffusion + scale.prior * prior
                 + scale.consistency * consistency + scale.mass_match * mass_match)
        return LossOutput(total=total, terms=terms, diffusion=diffusion)

    def sample(self, objects, mask, met, keys, solve):
        c = self.detector(objects, mask, met)
        return sample_clean_latent(self.schedule, lambda z_t, g: self.denoiser(z_t, c, g), keys,
                                   self.dims.parton_dim, solve)
