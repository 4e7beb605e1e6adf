"""lvd: unfold collider events with End-to-End Latent Variational Diffusion and its baselines."""

__version__ = "0.1.0"
