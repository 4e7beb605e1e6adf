"""Reverse-time samplers (ancestral, DDIM, DPM-Solver++(2M)) for the latent diffusion model."""

from lvd.sampling.samplers import (
    DDIM,
    SAMPLERS,
    SPACINGS,
    Ancestral,
    DPMSolverPP,
    EpsFn,
    GammaFn,
    Sampler,
    get_sampler,
    invert_gamma,
    time_grid,
)

__all__ = [
    "DDIM",
    "SAMPLERS",
    "SPACINGS",
    "Ancestral",
    "DPMSolverPP",
    "EpsFn",
    "GammaFn",
    "Sampler",
    "get_sampler",
    "invert_gamma",
    "time_grid",
]
