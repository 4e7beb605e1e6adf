"""Sampling: the reverse-time samplers (``samplers``) and unfolding with them, a trained run + detector-level events
-> K parton-level samples per event (``unfold``).

The diffusion models do not know the samplers: :func:`lvd.sampling.samplers.solver` builds the integration they
are handed.
"""
