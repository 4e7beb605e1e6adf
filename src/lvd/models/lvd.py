"""End-to-End Latent Variational Diffusion (Shmakov et al. 2023; docs/design.md §3.2): the model and its objective."""

from __future__ import annotations

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
from lvd.models.vae import Decoder, Encoder, gaussian_kl


class LVD(DiffusionModel):
    """VAE ``q(z | x, c)``, ``p(x | z)`` and a latent VDM ``ε̂(z_t, c, γ_t)`` with a learned schedule, trained end to end."""

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m, s = opts.model, opts.schedule
        self.opts, self.dims = opts, dims
        h, latent = m.hidden, m.latent
        self.detector = DetectorEncoder(dims.object_features, dims.met_features, h, h, m.detector_layers,
                                        m.num_heads, m.expansion, rngs=rngs)
        self.encoder = Encoder(dims.parton_dim, h if m.conditional_encoder else 0, 2 * h, latent,
                               m.encoder_layers, m.expansion, m.normalized_latent, rngs=rngs)
        self.decoder = Decoder(latent, h if m.conditional_decoder else 0, 2 * h, dims.parton_dim,
                               m.decoder_layers, m.expansion, rngs=rngs)
        self.denoiser = Denoiser(latent, h, m.denoiser_layers, m.expansion, m.time_embedding_dim,
                                 s.gamma_min, s.gamma_max, rngs=rngs)
        self.schedule = NoiseSchedule(s.kind, s.gamma_min, s.gamma_max, s.gamma_limit, s.hidden,
                                      s.learn_endpoints, rngs=rngs)

    def _decode(self, z: jax.Array, c: jax.Array) -> jax.Array:
        return self.decoder(z, c if self.opts.model.conditional_decoder else None)

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        m, s = self.opts.model, self.opts.schedule
        scale = scales or loss_scales(self.opts.loss)
        k_z, k_0, k_diff = jax.random.split(key, 3)
        c = self.detector(batch.objects, batch.mask, batch.met)  # [B, H]
        mean, log_sigma = self.encoder(batch.x, c if m.conditional_encoder else None)  # [B, L] each
        if m.deterministic_encoder:
            z = mean
        else:
            z = mean + jnp.exp(log_sigma) * jax.random.normal(k_z, mean.shape)

        # reconstruction from the first diffusion latent z₀/α₀ = z + e^{γ₀/2} ε₀: couples VAE and diffusion
        gamma_0 = self.schedule.endpoints()[0]
        z_0 = z + jnp.exp(0.5 * gamma_0) * jax.random.normal(k_0, z.shape)
        x_hat = self._decode(z_0, c)  # [B, 55]
        reconstruction = jnp.mean((x_hat - batch.x) ** 2, axis=-1)  # [B]

        # continuous-time diffusion loss and the prior at t = 1
        diffusion, prior = diffusion_terms(self.schedule, lambda z_t, g: self.denoiser(z_t, c, g), z, k_diff,
                                           s.weighting, s.sigmoid_offset)  # [B], [B]

        # physics consistency of the decoded partons; optional VAE prior
        consistency, mass_match = consistency_terms(x_hat, batch.x, self.dims)  # [B], [B]
        vae_prior = gaussian_kl(mean, log_sigma)  # [B]

        terms = {"reconstruction": reconstruction, "diffusion": diffusion, "prior": prior,
                 "consistency": consistency, "vae_prior": vae_prior, "mass_match": mass_match}
        total = (scale.reconstruction * reconstruction + scale.diffusion * diffusion + scale.prior * prior
                 + scale.consistency * consistency + scale.vae_prior * vae_prior + scale.mass_match * mass_match)
        return LossOutput(total=total, terms=terms, diffusion=diffusion)

    def sample(self, objects, mask, met, keys, solve):
        c = self.detector(objects, mask, met)
        z = sample_clean_latent(self.schedule, lambda z_t, g: self.denoiser(z_t, c, g), keys,
                                self.opts.model.latent, solve)
        return self._decode(z, c)
