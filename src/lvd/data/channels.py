"""tt̄ decay channels: the label generators write per event, and the branching fractions they draw them with.

The signal lvd unfolds is ``tt̄ → (b ℓ ν)(b q q̄')`` with ℓ an electron or a muon from the W. A selected sample
also holds tt̄ events that only look like it: a τ from the W that decayed to a lepton, a dileptonic event that
lost one lepton. Generators run with every channel (``lvd generate ... --keep-unselected``) label each event
with its channel, in ``GENERATOR/channel`` for the selected rows and ``GENERATED/channel`` for all of them
(docs/format.md).
"""

from __future__ import annotations

import numpy as np

# channel codes, in the order of their names
LEPTON_JETS, TAU_JETS, DILEPTON, ALL_HADRONIC = range(4)
CHANNELS = ("lepton+jets", "tau+jets", "dilepton", "all-hadronic")
SIGNAL = LEPTON_JETS

# W decay modes (the codes index MODE_BR)
W_ELECTRON, W_MUON, W_TAU, W_HADRONS = range(4)
# PDG (2024): BR(W → ℓν) averaged over e, μ, τ under lepton universality, 10.86 %; the hadrons take the rest
BR_W_LEPTON = 0.1086
MODE_BR = (BR_W_LEPTON, BR_W_LEPTON, BR_W_LEPTON, 1.0 - 3.0 * BR_W_LEPTON)
# PDG (2024): τ → e ν ν̄ and τ → μ ν ν̄; the rest is hadronic (one τ jet)
BR_TAU_ELECTRON, BR_TAU_MUON = 0.1782, 0.1739


def signal_fraction() -> float:
    """The fraction of tt̄ events in the signal channel: 2 · BR(W → eν or μν) · BR(W → hadrons)."""
    return 2.0 * (MODE_BR[W_ELECTRON] + MODE_BR[W_MUON]) * MODE_BR[W_HADRONS]


def draw_w_modes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """W decay modes drawn at their branching fractions, int8 of ``shape``."""
    return np.searchsorted(np.cumsum(MODE_BR)[:-1], rng.random(shape), side="right").astype(np.int8)


def channel_of(mode_a: np.ndarray, mode_b: np.ndarray) -> np.ndarray:
    """The tt̄ channel of events whose two Ws decayed in modes ``mode_a`` and ``mode_b``."""
    lep_a, lep_b = mode_a != W_HADRONS, mode_b != W_HADRONS
    light = lambda m: (m == W_ELECTRON) | (m == W_MUON)  # noqa: E731
    out = np.full(np.shape(mode_a), ALL_HADRONIC, np.int8)
    out[lep_a & lep_b] = DILEPTON
    one = lep_a ^ lep_b
    out[one & (light(mode_a) | light(mode_b))] = LEPTON_JETS
    out[one & ((mode_a == W_TAU) | (mode_b == W_TAU))] = TAU_JETS
    return out


def fractions() -> np.ndarray:
    """The expected fraction of tt̄ events in each channel, in the order of :data:`CHANNELS`."""
    lep = 3.0 * BR_W_LEPTON
    had = MODE_BR[W_HADRONS]
    return np.array([signal_fraction(), 2.0 * MODE_BR[W_TAU] * had, lep**2, had**2])
