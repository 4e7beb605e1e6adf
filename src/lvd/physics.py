"""Four-vector kinematics and the semi-leptonic tt̄ decay tree, written once for NumPy and JAX.

Every function acts on trailing axes and dispatches on the array type: NumPy arrays in, NumPy out;
JAX arrays (or tracers inside ``jax.jit``) in, ``jax.numpy`` out. Four-vectors are laid out as
``[..., 4] = (px, py, pz, E)`` in GeV, the same order as the model's parton features.

The decay tree (docs/design.md §1): six decay products ``b_lep, lepton, neutrino, b_had, q1, q2`` and the
five resonances built from them ``W_lep = ℓ+ν, W_had = q1+q2, t_lep = b_lep+W_lep,
t_had = b_had+W_had, tt̄ = t_lep+t_had``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

DECAY_PRODUCTS: tuple[str, ...] = ("b_lep", "lepton", "neutrino", "b_had", "q1", "q2")
RESONANCES: tuple[str, ...] = ("W_lep", "W_had", "t_lep", "t_had", "ttbar")
PARTONS: tuple[str, ...] = DECAY_PRODUCTS + RESONANCES

# Which decay products (indices into DECAY_PRODUCTS) make up each resonance.
RESONANCE_DAUGHTERS: dict[str, tuple[int, ...]] = {
    "W_lep": (1, 2),
    "W_had": (4, 5),
    "t_lep": (0, 1, 2),
    "t_had": (3, 4, 5),
    "ttbar": (0, 1, 2, 3, 4, 5),
}

# Nominal masses and widths (GeV) used by the generators and as reference lines in plots.
M_TOP, GAMMA_TOP = 172.5, 1.32
M_W, GAMMA_W = 80.4, 2.08
NOMINAL_MASS: dict[str, float] = {"W_lep": M_W, "W_had": M_W, "t_lep": M_TOP, "t_had": M_TOP}

# Rest masses (GeV) for stable particles and quarks, keyed by |pdgid| (Pythia 8 defaults).
PDG_MASS: dict[int, float] = {
    1: 0.33, 2: 0.33, 3: 0.5, 4: 1.5, 5: 4.8,
    11: 0.000511, 12: 0.0, 13: 0.10566, 14: 0.0, 15: 1.77686, 16: 0.0, 21: 0.0,
}

# The fixed rest masses (GeV) of the decay products lvd outputs, in DECAY_PRODUCTS order: b quarks at the
# Pythia b mass, the charged lepton, the neutrino and the light quarks massless (their generator masses are
# below the resolution of any observable built from them).
DAUGHTER_MASS: tuple[float, ...] = (PDG_MASS[5], 0.0, 0.0, PDG_MASS[5], 0.0, 0.0)


def _xp(x: Any) -> ModuleType:
    """NumPy for NumPy inputs and Python scalars, ``jax.numpy`` for anything else."""
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return np
    import jax.numpy as jnp

    return jnp


# --- conversions -------------------------------------------------------------------------------

def p4_from_ptetaphim(pt, eta, phi, m):
    """``(pT, η, φ, m)`` arrays of equal shape ``[...]`` -> four-vectors ``[..., 4]``."""
    xp = _xp(pt)
    px, py, pz = pt * xp.cos(phi), pt * xp.sin(phi), pt * xp.sinh(eta)
    e = xp.sqrt(px**2 + py**2 + pz**2 + m**2)
    return xp.stack([px, py, pz, e], axis=-1)


def p4_from_pxpypzm(px, py, pz, m):
    """Three-momentum and mass ``[...]`` -> four-vectors ``[..., 4]``."""
    xp = _xp(px)
    return xp.stack([px, py, pz, xp.sqrt(px**2 + py**2 + pz**2 + m**2)], axis=-1)


def pt(p4):
    """Transverse momentum, ``[..., 4] -> [...]``."""
    return _xp(p4).sqrt(p4[..., 0] ** 2 + p4[..., 1] ** 2)


def phi(p4):
    """Azimuth in ``(-π, π]``, ``[..., 4] -> [...]``."""
    return _xp(p4).arctan2(p4[..., 1], p4[..., 0])


def eta(p4):
    """Pseudorapidity ``asinh(pz / pT)``; finite for any pT > 0, ``[..., 4] -> [...]``."""
    xp = _xp(p4)
    return xp.arcsinh(p4[..., 2] / xp.maximum(pt(p4), 1e-12))


def rapidity(p4):
    """Rapidity ``½ ln((E + pz) / (E − pz))``, ``[..., 4] -> [...]``."""
    xp = _xp(p4)
    e, pz = p4[..., 3], p4[..., 2]
    return 0.5 * (xp.log(xp.maximum(e + pz, 1e-12)) - xp.log(xp.maximum(e - pz, 1e-12)))


def mass_sq(p4):
    """Invariant mass squared ``E² − |p|²`` (may be negative off shell), ``[..., 4] -> [...]``."""
    return p4[..., 3] ** 2 - p4[..., 0] ** 2 - p4[..., 1] ** 2 - p4[..., 2] ** 2


def mass(p4):
    """Signed invariant mass ``sign(m²)·sqrt(|m²|)``, so unphysical vectors stay visible, ``[..., 4] -> [...]``."""
    xp = _xp(p4)
    m2 = mass_sq(p4)
    return xp.sign(m2) * xp.sqrt(xp.abs(m2))


def ptetaphim(p4):
    """``[..., 4]`` four-vectors -> ``[..., 4]`` of ``(pT, η, φ, m)``."""
    return _xp(p4).stack([pt(p4), eta(p4), phi(p4), mass(p4)], axis=-1)


def delta_phi(phi1, phi2):
    """``φ1 − φ2`` wrapped into ``[−π, π]``."""
    d = phi1 - phi2
    return d - (2 * np.pi) * _xp(d).round(d / (2 * np.pi))


def delta_r(eta1, phi1, eta2, phi2):
    """Angular distance ``sqrt(Δη² + Δφ²)``."""
    return _xp(eta1).sqrt((eta1 - eta2) ** 2 + delta_phi(phi1, phi2) ** 2)


def boost(p4, beta):
    """Lorentz boost of four-vectors ``[..., 4]`` by velocity ``beta`` ``[..., 3]`` (|β| < 1).

    A vector at rest in the frame moving with ``beta`` ends up with velocity ``beta``.
    """
    xp = _xp(p4)
    # dot products as einsum: no [..., 3] temporaries (this is the toy generator's hottest kernel)
    b2 = xp.einsum("...i,...i->...", beta, beta)[..., None]
    gamma = 1.0 / xp.sqrt(1.0 - b2)
    bp = xp.einsum("...i,...i->...", beta, p4[..., :3])[..., None]
    e = p4[..., 3:4]
    # p' = p + ((γ − 1)/β²·(β·p) + γE)·β, with (γ − 1)/β² written as γ²/(γ + 1) so that β → 0 is finite
    p3 = p4[..., :3] + (gamma**2 / (gamma + 1.0) * bp + gamma * e) * beta
    return xp.concatenate([p3, gamma * (e + bp)], axis=-1)


def velocity(p4):
    """Velocity ``p / E`` of four-vectors, ``[..., 4] -> [..., 3]``."""
    return p4[..., :3] / p4[..., 3:4]


def on_shell(p4, m):
    """Four-vectors ``[..., 4]`` with the energy recomputed as ``E = sqrt(|p|² + m²)``; ``m`` broadcasts on ``[...]``.

    The three-momentum is kept. The square root is guarded so that ``|p| = m = 0`` has value and gradient 0.
    """
    xp = _xp(p4)
    p3 = p4[..., :3]
    e2 = xp.einsum("...i,...i->...", p3, p3) + xp.square(m)
    positive = e2 > 0
    e = xp.where(positive, xp.sqrt(xp.where(positive, e2, 1.0)), 0.0)
    return xp.concatenate([p3, e[..., None].astype(p4.dtype)], axis=-1)


def daughters_on_shell(daughters):
    """Decay products ``[..., 6, 4]`` put on shell at :data:`DAUGHTER_MASS`, ``[..., 6, 4]``."""
    xp = _xp(daughters)
    return on_shell(daughters, xp.asarray(DAUGHTER_MASS, dtype=daughters.dtype))


# --- the decay tree ------------------------------------------------------------------------------

def resonances(daughters):
    """Decay-product four-vectors ``[..., 6, 4]`` -> the five resonances ``[..., 5, 4]`` (RESONANCES order)."""
    sums = [daughters[..., list(RESONANCE_DAUGHTERS[name]), :].sum(axis=-2) for name in RESONANCES]
    return _xp(daughters).stack(sums, axis=-2)


def parton_features(daughters):
    """Decay products ``[..., 6, 4]`` -> the paper's parton representation ``[..., 11, 5]``.

    Eleven objects (DECAY_PRODUCTS then RESONANCES) with features ``(px, py, pz, log(E+1), m)``.
    """
    xp = _xp(daughters)
    p4 = xp.concatenate([daughters, resonances(daughters)], axis=-2)  # [..., 11, 4]
    return xp.concatenate(
        [p4[..., :3], xp.log1p(p4[..., 3:4]), mass(p4)[..., None]], axis=-1
    )


def p4_from_parton_features(features):
    """Inverse of :func:`parton_features` on the kinematic part: ``[..., 11, 5] -> [..., 11, 4]``.

    The energy is ``exp(f₃) − 1``; the stored mass feature is not used (see :func:`explicit_masses`).
    """
    xp = _xp(features)
    return xp.concatenate([features[..., :3], xp.expm1(features[..., 3:4])], axis=-1)


def explicit_masses(features):
    """The resonance masses as stored in feature 4 of objects 6–10, ``[..., 11, 5] -> [..., 5]``."""
    return features[..., len(DECAY_PRODUCTS):, 4]


def daughter_masses(features):
    """The resonance masses recomputed from the decay products' four-vectors, ``[..., 11, 5] -> [..., 5]``.

    Together with :func:`explicit_masses` this is the physics-consistency check of docs/design.md §3.2.
    """
    daughters = p4_from_parton_features(features)[..., : len(DECAY_PRODUCTS), :]
    return mass(resonances(daughters))


def neutrino_pz_from_w_mass(lepton, met_x, met_y, m_w: float = M_W):
    """The standard W-mass-constraint neutrino ``pz`` (the naive estimate unfolding is compared with).

    Solves ``(ℓ + ν)² = m_W²`` with ``ν_T = MET``; of two real roots the smaller ``|pz|`` is taken, a
    complex pair is replaced by its real part. ``lepton`` is ``[..., 4]``, ``met_x/met_y`` are ``[...]``.
    """
    xp = _xp(lepton)
    lx, ly, lz, le = (lepton[..., i] for i in range(4))
    ml2 = xp.maximum(mass_sq(lepton), 0.0)
    mu = 0.5 * (m_w**2 - ml2) + lx * met_x + ly * met_y
    lt2 = le**2 - lz**2  # = pT_ℓ² + m_ℓ²
    nu_t2 = met_x**2 + met_y**2
    centre = mu * lz / lt2
    disc = centre**2 - (le**2 * nu_t2 - mu**2) / lt2
    root = xp.sqrt(xp.maximum(disc, 0.0))
    a, b = centre - root, centre + root
    return xp.where(xp.abs(a) < xp.abs(b), a, b)
