"""LDM: a latent diffusion model on a pre-trained, frozen VAE (two stages).

Stage 1 (``--model vae``): an unconditional parton VAE, ``q(z | x)`` and ``p(x | z)``, trained alone.
Stage 2 (``--model ldm model.vae_checkpoint=RUN``): a conditional latent VDM ``ε̂(z_t, c, γ_t)`` on the frozen VAE's
latents; sampling decodes with the frozen decoder. The VAE's parameters are copied into the LDM's train state
(as non-trainable state), so an LDM run unfolds without the stage-1 folder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lvd.config import Options
from lvd.errors import OptionsError
from lvd.models.base import (
    Batch,
    Dims,
    LossOutput,
    LossScales,
    UnfoldingModel,
    consistency_terms,
    loss_scales,
)
from lvd.models.denoiser import Denoiser
from lvd.models.detector_encoder import DetectorEncoder
from lvd.models.diffusion import DiffusionModel, diffusion_terms, sample_clean_latent
from lvd.models.schedule import NoiseSchedule
from lvd.models.vae import Decoder, Encoder, gaussian_kl


class PartonVAE(nnx.Module):
    """The unconditional VAE of stage 1 (also the frozen part of stage 2)."""

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m = opts.model
        self.encoder = Encoder(dims.parton_dim, 0, 2 * m.hidden, m.latent, m.encoder_layers, m.expansion,
                               m.normalized_latent, rngs=rngs)
        self.decoder = Decoder(m.latent, 0, 2 * m.hidden, dims.parton_dim, m.decoder_layers, m.expansion, rngs=rngs)


class VAE(UnfoldingModel):
    """Stage 1: ``‖D(z) − x‖² + β·KL(q(z | x) ‖ N(0, I)) + λ·consistency`` (β = ``loss.vae_prior``)."""

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        self.opts, self.dims = opts, dims
        self.vae = PartonVAE(opts, dims, rngs=rngs)

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        scale = scales or loss_scales(self.opts.loss)
        mean, log_sigma = self.vae.encoder(batch.x)
        z = mean + jnp.exp(log_sigma) * jax.random.normal(key, mean.shape)
        x_hat = self.vae.decoder(z)
        reconstruction = jnp.mean((x_hat - batch.x) ** 2, -1)
        kl = gaussian_kl(mean, log_sigma)
        consistency, mass_match = consistency_terms(x_hat, batch.x, self.dims)
        terms = {"reconstruction": reconstruction, "vae_prior": kl, "consistency": consistency, "mass_match": mass_match}
        total = (scale.reconstruction * reconstruction + scale.vae_prior * kl + scale.consistency * consistency
                 + scale.mass_match * mass_match)
        return LossOutput(total=total, terms=terms)

    def sample(self, objects, mask, met, keys, solve):
        """The unconditional VAE ignores the detector: draws from its prior (a sanity baseline, not an unfolding)."""
        z = jax.vmap(lambda k: jax.random.normal(k, (self.opts.model.latent,)))(keys)
        return self.vae.decoder(z)


class LDM(DiffusionModel):
    """Stage 2: conditional latent diffusion on the frozen VAE's (mean) latents."""

    FROZEN = ("vae",)
    FROZEN_KIND = "vae"  # the run kind frozen_source must be

    @classmethod
    def frozen_source(cls, opts: Options) -> str | None:
        if not opts.model.vae_checkpoint:
            raise OptionsError("model.kind=ldm needs model.vae_checkpoint=RUN (a run trained with --model vae)")
        return opts.model.vae_checkpoint

    def __init__(self, opts: Options, dims: Dims, *, rngs: nnx.Rngs):
        m, s = opts.model, opts.schedule
        self.opts, self.dims = opts, dims
        self.vae = PartonVAE(opts, dims, rngs=rngs)
        self.detector = DetectorEncoder(dims.object_features, dims.met_features, m.hidden, m.hidden,
                                        m.detector_layers, m.num_heads, m.expansion, rngs=rngs)
        self.denoiser = Denoiser(m.latent, m.hidden, m.denoiser_layers, m.expansion, m.time_embedding_dim,
                                 s.gamma_min, s.gamma_max, rngs=rngs)
        self.schedule = NoiseSchedule(s.kind, s.gamma_min, s.gamma_max, s.gamma_limit, s.hidden,
                                      s.learn_endpoints, rngs=rngs)

    def loss(self, batch: Batch, key: jax.Array, scales: LossScales | None = None) -> LossOutput:
        s, scale = self.opts.schedule, scales or loss_scales(self.opts.loss)
        z = jax.lax.stop_gradient(self.vae.encoder(batch.x)[0])  # frozen encoder, mean latent
        c = self.detector(batch.objects, batch.mask, batch.met)
        diffusion, prior = diffusion_terms(self.schedule, lambda z_t, g: self.denoiser(z_t, c, g), z, key,
                                           s.weighting, s.sigmoid_offset)
        terms = {"diffusion": diffusion, "prior": prior}
        return LossOutput(total=scale.diffusion * diffusion + scale.prior * prior, terms=terms, diffusion=diffusion)

    def sample(self, objects, mask, met, keys, solve):
        c = self.detector(objects, mask, met)
        z = sample_clean_latent(self.schedule, lambda z_t, g: self.denoiser(z_t, c, g), keys,
                                self.opts.model.latent, solve)
        return self.vae.decoder(z)

