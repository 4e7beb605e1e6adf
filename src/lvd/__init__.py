"""lvd: unfold collider events with End-to-End Latent Variational Diffusion and its baselines.

``lvd.load(run).sample(events, k)`` unfolds in Python; the ``lvd`` command does everything else.
"""

from lvd.data.schema import read_events
from lvd.version import __version__

__all__ = ["__version__", "load", "read_events"]


def load(run_or_checkpoint):
    """A trained run (or checkpoint) ready to unfold; see :class:`lvd.sampling.unfold.Unfolder`.

    (Imported on first use: ``import lvd`` stays light, JAX is loaded only when a model is.)
    """
    from lvd.sampling.unfold import load as _load

    return _load(run_or_checkpoint)
