"""lvd: unfold collider events with End-to-End Latent Variational Diffusion and its baselines.

``lvd.load(run).sample(events, k)`` unfolds in Python; the ``lvd`` command does everything else.
"""

__version__ = "0.1.0"


def load(run_or_checkpoint):
    """A trained run (or checkpoint) ready to unfold; see :class:`lvd.sampling.unfold.Unfolder`."""
    from lvd.sampling.unfold import load as _load

    return _load(run_or_checkpoint)
