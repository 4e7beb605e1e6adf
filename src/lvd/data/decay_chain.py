"""The decay-chain parametrisation: six on-shell decay products <-> 24 physics-informed coordinates.

Each side of the event (leptonic first, then hadronic) is the chain ``t -> b W, W -> d1 d2`` with the first
W daughter ``d1`` the charged lepton (leptonic side) or q1 (hadronic side). Twelve numbers per side, in
:data:`FEATURES` order:

1. the top in the lab: ``log pT``, ``η``, ``cos φ``, ``sin φ`` and its mass coordinate ``u_t``;
2. the W in the top rest frame: its mass coordinate ``u_W`` and the unit vector ``n_W`` of its direction;
   the b goes back to back with ``|p*| = λ^{1/2}(m_t², m_W², m_b²) / (2 m_t)``,
   ``λ(a, b, c) = a² + b² + c² − 2ab − 2ac − 2bc``;
3. ``d1`` in the W rest frame: the unit vector ``n_d``; ``d2`` goes back to back, ``|p**| = m_W / 2``.

Frames are pure boosts from the lab, no rotations: the top rest frame is the lab boosted by ``−β_t`` and the
W rest frame the lab boosted by ``−β_W``, with ``β = p / E`` of the particle *in the lab*. Directions are
therefore components along the lab axes. :func:`decode` builds the W and the b at rest in the top frame,
boosts them by ``+β_t``, then builds ``d1, d2`` at rest in the W frame and boosts them by the lab ``+β_W``;
:func:`encode` inverts exactly these steps. (Because the two boosts are taken from the lab, ``n_d`` differs
from the helicity-frame angle by a Wigner rotation; it is still a bijective coordinate.)

Masses are coordinates through a Gaussianised Breit–Wigner (:func:`mass_to_u`, :func:`u_to_mass`): with
``s = m²`` and ``A(s) = arctan((s − M²)/(MΓ))/π + ½`` the CDF of ``p(s) ∝ 1/((s − M²)² + M²Γ²)``, the
distribution truncated to ``(s_lo, s_hi)`` has CDF ``F(s) = (A(s) − A(s_lo)) / (A(s_hi) − A(s_lo))`` and
``u = Φ⁻¹(F(s))``. The nominal line shape maps to ``N(0, 1)``. Tops use ``(M_TOP, top_width)`` (default ``GAMMA_TOP``) on
``(m_b², ∞)``; Ws use ``(M_W, GAMMA_W)`` on ``(0, (m_t − m_b)²)`` with the *decoded* top mass, so
``m_W < m_t − m_b`` holds by construction and every decoded event is kinematically allowed.

Daughter masses are not coordinates: every output is on shell at :data:`lvd.physics.DAUGHTER_MASS`.
Everything works on trailing axes, NumPy in -> NumPy out, JAX in -> JAX out, jit-safe and differentiable;
:func:`decode` returns finite, physical four-vectors for any finite input.

Numerics: boosts are done in light-cone components and invariant masses from pairwise products, so that
float32 keeps its precision for boosted, collimated systems. Measured on toy truth: the round trip is exact to
3e-14 in float64; in float32 the median error is 3e-7 and the largest 1.3e-5 (charged lepton 5e-6), relative.
The mass maps round-trip masses to 1e-6 in float32 (see ``U_MAX`` for the range).
"""

from __future__ import annotations

import numpy as np

from lvd import physics

SIDES: tuple[str, ...] = ("lep", "had")
# Per side: the top, the W and the first W daughter (the charged lepton / q1).
_SIDE_FEATURES: tuple[str, ...] = (
    "t_{s}_log_pt", "t_{s}_eta", "t_{s}_cos_phi", "t_{s}_sin_phi", "t_{s}_u_m",
    "W_{s}_u_m", "W_{s}_nx", "W_{s}_ny", "W_{s}_nz",
    "{d}_nx", "{d}_ny", "{d}_nz",
)
FEATURES: tuple[str, ...] = tuple(
    f.format(s=side, d=d1) for side, d1 in zip(SIDES, ("lepton", "q1"), strict=True) for f in _SIDE_FEATURES
)
DIM: int = len(FEATURES)  # 24
_PER_SIDE = DIM // 2

# |u| is clipped to U_MAX on decode. At 5 the smaller tail probability Φ(−5) = 2.9e-7 is an ordinary float32
# number, and the bound covers m_t from 5.15 GeV to 15.9 TeV and m_W from 0.47 GeV to 7.5 MeV below
# m_t − m_b (at m_t = 172.5 GeV): every mass an LHC event can have (see docs/representation.md).
U_MAX: float = 5.0
# Decoded top masses are clipped into this window (GeV). The top's coordinate has the Breit–Wigner's Cauchy tails:
# u = 3 is 289 GeV, u = 4 already 2.7 TeV, so the few per mille of a network's draws that stray to |u| > 3 were
# tops of several TeV, which dominated every distance on masses and m(tt̄) (Pythia, 30 CPU minutes: top-mass
# W1 8.1 GeV with such draws, 1.7 clipped here). A Pythia tt̄ sample has 0.02 % of its tops outside.
TOP_MASS_RANGE: tuple[float, float] = (80.0, 400.0)
# Decode clips the top's log pT and η here (pT from 45 keV to 22 TeV, |η| ≤ 15) so no product overflows float32.
LOG_PT_RANGE: tuple[float, float] = (-10.0, 10.0)
ETA_MAX: float = 15.0
# Unit-vector inputs shorter than this decode to the default direction (the z axis; x for (cos φ, sin φ)).
UNIT_EPS: float = 1e-6

_M_B = physics.PDG_MASS[5]
_FLOOR = 1e-10  # GeV or GeV²: far below any physical scale, and its square is still a normal float32


def _special(xp):
    """``scipy.special`` for NumPy, ``jax.scipy.special`` for JAX."""
    if xp is np:
        import scipy.special

        return scipy.special
    import jax.scipy.special

    return jax.scipy.special


def _safe_sqrt(x, xp):
    """``sqrt(max(x, 0))`` with gradient 0 (not inf) at 0."""
    positive = x > 0
    return xp.where(positive, xp.sqrt(xp.where(positive, x, 1.0)), 0.0)


def _norm(v, xp):
    """Euclidean norm ``[..., k] -> [...]`` with gradient 0 (not NaN) at the zero vector."""
    return _safe_sqrt(xp.sum(v * v, axis=-1), xp)


def _unit(v, xp, default_axis: int):
    """Direction of ``v`` ``[..., k] -> [..., k]``; the default axis where ``|v| < UNIT_EPS``."""
    # Clipped so that no square overflows float32 (only directions of inputs beyond 1e18 change). No max-norm
    # scaling: the gradient of a max compares recomputed values with the forward ones, and where XLA rounds
    # the recomputation differently (unoptimised CPU builds do) it divides 0 by 0.
    v = xp.clip(v, -1e18, 1e18)
    n2 = xp.sum(v * v, axis=-1, keepdims=True)
    small = n2 < UNIT_EPS**2
    default = xp.zeros(v.shape[-1], dtype=v.dtype) + (xp.arange(v.shape[-1]) == default_axis)
    return xp.where(small, default, v / xp.sqrt(xp.where(small, 1.0, n2)))


# --- mass coordinates ----------------------------------------------------------------------------------
#
# Write x = (s − M²)/(MΓ) and α(x) = arctan(x), so A = α/π + ½ and π Z = α(x_hi) − α(x_lo) is the truncated
# normalisation. Angles are kept as θ_lo = α(x_lo) + π/2 and c_hi = π/2 − α(x_hi), both in (0, π) and computed
# with atan2, so that neither a far tail nor a far limit ever subtracts two numbers close to ±π/2. Differences
# of arctangents use α(a) − α(b) = atan2(a − b, 1 + ab), exact for all real a, b; s-differences are formed
# from mass differences ((m − m_lo)(m + m_lo)), never from two large squares. Both uses have m_lo < M (the
# lower limit below the peak), which the lower-tail formulas assume for full precision.

def _as_limits(m_lo, m_hi, xp, dtype):
    """The limits as arrays of the input's dtype (NumPy scalars would promote float32 inputs to float64)."""
    return xp.asarray(m_lo, dtype=dtype), None if m_hi is None else xp.asarray(m_hi, dtype=dtype)


def _limits(mass, width, m_lo, m_hi, xp):
    """``(x_lo, θ_lo, x_hi, π Z)``; ``m_hi=None`` is an open upper end (``x_hi = ∞``)."""
    mg = mass * width
    x_lo = (m_lo - mass) * (m_lo + mass) / mg
    th_lo = xp.arctan2(1.0, -x_lo)
    if m_hi is None:
        return x_lo, th_lo, None, np.pi - th_lo
    x_hi = (m_hi - mass) * (m_hi + mass) / mg
    pi_z = xp.arctan2((m_hi - m_lo) * (m_hi + m_lo) / mg, 1.0 + x_hi * x_lo)
    return x_lo, th_lo, x_hi, pi_z


def mass_to_u(m, mass: float, width: float, m_lo, m_hi=None):
    """Gaussianised truncated Breit–Wigner coordinate ``u = Φ⁻¹(F(m²))`` of masses ``m`` ``[...] -> [...]``.

    ``mass, width`` are the line's ``M, Γ``; ``m_lo < M`` and ``m_hi`` (scalars or ``[...]``) the mass limits
    of the truncation, ``m_hi=None`` for none. Of ``F`` and ``1 − F`` the smaller is computed directly and
    inverted with ``ndtri``, so both tails keep full relative precision in float32.
    """
    xp = physics._xp(m)
    sp = _special(xp)
    m = xp.asarray(m)
    mg = mass * width
    m_lo, m_hi = _as_limits(m_lo, m_hi, xp, m.dtype)
    x_lo, _, x_hi, pi_z = _limits(mass, width, m_lo, m_hi, xp)
    x = (m - mass) * (m + mass) / mg
    lower = xp.arctan2((m - m_lo) * (m + m_lo) / mg, 1.0 + x * x_lo)  # π Z F = α(x) − α(x_lo)
    if m_hi is None:
        upper = xp.arctan2(1.0, x)  # π Z (1 − F) = π/2 − α(x)
    else:
        upper = xp.arctan2((m_hi - m) * (m_hi + m) / mg, 1.0 + x * x_hi)  # α(x_hi) − α(x)
    # Clamp both into (0, ½] so the branch ``where`` does not take is finite too (and its gradient).
    tiny = np.finfo(np.float32).tiny
    f = xp.clip(lower / pi_z, tiny, 0.5)
    g = xp.clip(upper / pi_z, tiny, 0.5)
    return xp.where(lower <= upper, sp.ndtri(f), -sp.ndtri(g))


def _u_to_s(u, mass: float, width: float, m_lo, m_hi, xp):
    """``(s, s_hi − s)`` for coordinates ``u`` ``[...]`` clipped to ``±U_MAX`` (the second ``None`` without ``m_hi``)."""
    sp = _special(xp)
    mg = mass * width
    m_lo, m_hi = _as_limits(m_lo, m_hi, xp, u.dtype)
    _, th_lo, x_hi, pi_z = _limits(mass, width, m_lo, m_hi, xp)
    u = xp.clip(u, -U_MAX, U_MAX)
    tiny = np.finfo(np.float32).tiny
    # Only the smaller tail probability Φ(−|u|) ≥ Φ(−U_MAX) = 2.9e-7 is ever formed; ndtr evaluates it through
    # erfc to full relative precision, so log_ndtr would add nothing short of the float32 underflow (|u| ≈ 13).
    # Below the median: α(x) − α(x_lo) = δ, so x − x_lo = cot θ_lo − cot(θ_lo + δ) = sin δ / (sin θ_lo sin(θ_lo + δ)).
    d_lo = pi_z * sp.ndtr(xp.minimum(u, 0.0))
    s_below = m_lo**2 + mg * xp.sin(d_lo) / (xp.sin(th_lo) * xp.sin(th_lo + d_lo))
    # Above it: α(x_hi) − α(x) = δ > 0.
    d_hi = pi_z * sp.ndtr(-xp.maximum(u, 0.0))
    if m_hi is None:
        # π/2 − α(x) = δ, x = cot δ
        s = xp.where(u <= 0, s_below, mass**2 + mg * xp.cos(d_hi) / xp.sin(d_hi))
        return xp.maximum(s, tiny), None
    # x_hi − x = tan δ (1 + x_hi²) / (1 + x_hi tan δ) = sin δ (1 + x_hi²) / (cos δ + x_hi sin δ); the
    # denominator is cos α(x) / cos α(x_hi) > 0.
    gap_above = mg * xp.sin(d_hi) * (1.0 + x_hi**2) / (xp.cos(d_hi) + x_hi * xp.sin(d_hi))
    # s itself: while the limit lies above the peak (x_hi ≥ 0) as M² + MΓ x with x = cot(c_hi + δ),
    # c_hi = π/2 − α(x_hi) ∈ (0, π/2] (s > s_med ≳ M² − MΓ, and x is exact however far the limit is); when it
    # lies below, as s_hi − gap (the line is then nearly flat on (0, s_hi), s_med ~ s_hi / 2). Either
    # subtraction loses at most a few bits.
    th = xp.arctan2(1.0, x_hi) + d_hi
    s_above = xp.where(x_hi >= 0, mass**2 + mg * xp.cos(th) / xp.sin(th), m_hi**2 - gap_above)
    s = xp.maximum(xp.where(u <= 0, s_below, s_above), tiny)
    gap = xp.where(u <= 0, xp.maximum(m_hi**2 - s_below, 0.0), gap_above)
    return s, gap


def u_to_mass(u, mass: float, width: float, m_lo, m_hi=None):
    """Inverse of :func:`mass_to_u`: masses ``[...]`` in ``(m_lo, m_hi)`` for any ``u`` ``[...]``.

    ``u`` is clipped to ``±U_MAX`` first; within that bound the map is exact to float precision.
    """
    xp = physics._xp(u)
    s, _ = _u_to_s(xp.asarray(u), mass, width, m_lo, m_hi, xp)
    return xp.sqrt(s)


def top_mass_to_u(m_t, top_width: float = physics.GAMMA_TOP):
    """Top mass coordinate ``u_t`` ``[...] -> [...]`` (Breit–Wigner ``M_TOP, top_width`` on ``(m_b², ∞)``).

    ``top_width`` is the width of the line the coordinate makes Gaussian: the top's own for a sample at one mass;
    wider for a sample spanning a mass range, whose masses would otherwise sit in the narrow line's Cauchy tails
    (166-179 GeV at ``|u| > 1.3``, where ``dm/du`` is 17 times its value at the peak)."""
    return mass_to_u(m_t, physics.M_TOP, top_width, _M_B)


def u_to_top_mass(u_t, top_width: float = physics.GAMMA_TOP):
    """Top mass ``[...]`` from ``u_t`` ``[...]``, inside :data:`TOP_MASS_RANGE`."""
    return physics._xp(u_t).clip(u_to_mass(u_t, physics.M_TOP, top_width, _M_B), *TOP_MASS_RANGE)


def w_mass_to_u(m_w, m_t):
    """W mass coordinate ``u_W`` ``[...]`` given its top's mass ``[...]`` (``M_W, GAMMA_W`` on ``(0, (m_t − m_b)²)``)."""
    return mass_to_u(m_w, physics.M_W, physics.GAMMA_W, 0.0, m_t - _M_B)


def u_to_w_mass(u_w, m_t):
    """W mass ``[...]`` from ``u_W`` and its top's mass ``[...]``; always in ``(0, m_t − m_b)``."""
    return u_to_mass(u_w, physics.M_W, physics.GAMMA_W, 0.0, m_t - _M_B)



_M_W_MIN = 1e-6  # GeV; below the lightest W decode produces (at u_W = -U_MAX in the lightest top)


# --- boosts and invariants -----------------------------------------------------------------------------

def _boost(p3, e, m, k3, k_e, k_m, xp, to_rest: bool):
    """Pure boost of a particle (``p3 [..., 3]``, ``e [...]``, mass ``m``) along a parent ``k`` of mass ``k_m``.

    ``to_rest=False`` takes a vector from the parent's rest frame to the frame where the parent has momentum
    ``k3`` (boost by ``+β_k``); ``to_rest=True`` is the inverse (boost by ``−β_k``). Written in light-cone
    components along ``k̂``, ``E ± p∥``, which a boost multiplies by ``e^{±y}``, ``e^{y} = (k_e + |k|)/k_m``;
    the smaller of ``E ± p∥`` is taken as ``m_T² / (E + |p∥|)``, so a large boost never subtracts two
    nearly equal numbers (decode in float32 stays within 1e-5 of float64 at γ ≈ 300, where ``physics.boost``
    with β = p/E would lose γ²·eps). Returns ``(p3' [..., 3], e' [...])``.
    """
    k_abs = _norm(k3, xp)
    k_hat = _unit(k3, xp, default_axis=2)
    rap = (k_e + k_abs) / k_m  # e^{y}
    if to_rest:
        rap = 1.0 / rap
    p_par = xp.sum(p3 * k_hat, axis=-1)
    p_perp = p3 - p_par[..., None] * k_hat
    m_t2 = m**2 + xp.sum(p_perp * p_perp, axis=-1)
    big = xp.maximum(e + xp.abs(p_par), np.finfo(np.float32).tiny)
    small = m_t2 / big
    plus = xp.where(p_par >= 0, big, small) * rap  # E + p∥
    minus = xp.where(p_par >= 0, small, big) / rap  # E − p∥
    return p_perp + (0.5 * (plus - minus))[..., None] * k_hat, 0.5 * (plus + minus)


def _dot(a, m_a, b, m_b, xp):
    """Minkowski product ``a·b`` ``[..., 4], [..., 4] -> [...]`` of on-shell vectors of masses ``m_a, m_b``.

    ``E_a E_b − p_a·p_b = (m_a² E_b² + m_b² |p_a|²)/(E_a E_b + |p_a||p_b|) + |p_a||p_b| |â − b̂|²/2``: both
    terms are positive, so invariant masses of collimated, boosted systems keep their relative precision.
    """
    pa, pb = _norm(a[..., :3], xp), _norm(b[..., :3], xp)
    ea, eb = a[..., 3], b[..., 3]
    d_hat = _unit(a[..., :3], xp, 2) - _unit(b[..., :3], xp, 2)
    norm = xp.maximum(ea * eb + pa * pb, _FLOOR)
    return (m_a**2 * eb**2 + m_b**2 * pa**2) / norm + 0.5 * pa * pb * xp.sum(d_hat**2, axis=-1)


# --- encode / decode -----------------------------------------------------------------------------------

def _encode_side(b, d1, d2, xp, top_width: float = physics.GAMMA_TOP):
    """One side's chain ``b, d1, d2 [..., 4]`` -> its 12 coordinates ``[..., 12]``."""
    # The floors only act where float32 cannot resolve the quantity at all (a W of two identical daughters,
    # a top whose pT cancels to 0) or below what decode can produce (a top lighter than TOP_MASS_RANGE, 0.02 %
    # of Pythia's tops, is encoded as the lightest); decode never produces m_W below _M_W_MIN. They keep encode
    # and its gradient finite on any decoded event (a W mass of 0 would make the W-frame boost, and its
    # derivative, infinite).
    w = d1 + d2
    m_w2 = xp.maximum(2.0 * _dot(d1, 0.0, d2, 0.0, xp), _M_W_MIN**2)  # massless W daughters
    m_w = xp.sqrt(m_w2)
    top = b + w
    m_t = xp.sqrt(xp.maximum(m_w2 + _M_B**2 + 2.0 * _dot(b, _M_B, w, m_w, xp), TOP_MASS_RANGE[0] ** 2))
    pt = xp.maximum(_norm(top[..., :2], xp), _FLOOR)
    w_star, _ = _boost(w[..., :3], w[..., 3], m_w, top[..., :3], top[..., 3], m_t, xp, to_rest=True)
    d_star, _ = _boost(d1[..., :3], d1[..., 3], 0.0, w[..., :3], w[..., 3], m_w, xp, to_rest=True)
    top_lab = [xp.log(pt), xp.arcsinh(top[..., 2] / pt), top[..., 0] / pt, top[..., 1] / pt]
    u = [top_mass_to_u(m_t, top_width), w_mass_to_u(m_w, m_t)]
    return xp.concatenate([xp.stack(top_lab + u, axis=-1), _unit(w_star, xp, 2), _unit(d_star, xp, 2)], axis=-1)


def encode(daughters, top_width: float = physics.GAMMA_TOP):
    """On-shell decay products ``[..., 6, 4]`` (masses :data:`~lvd.physics.DAUGHTER_MASS`) -> coordinates ``[..., 24]``
    (``top_width``: the top-mass coordinate's line width, :func:`top_mass_to_u`)."""
    xp = physics._xp(daughters)
    sides = [_encode_side(*(daughters[..., i, :] for i in idx), xp, top_width) for idx in ((0, 1, 2), (3, 4, 5))]
    return xp.concatenate(sides, axis=-1)


def _side_masses(c, xp, top_width: float = physics.GAMMA_TOP):
    """``(m_t, m_W, s_W, (m_t − m_b)² − s_W)`` from one side's coordinates ``[..., 12]``, each ``[...]``."""
    m_t = u_to_top_mass(c[..., 4], top_width)
    s_w, gap = _u_to_s(c[..., 5], physics.M_W, physics.GAMMA_W, 0.0, m_t - _M_B, xp)
    return m_t, xp.sqrt(s_w), s_w, gap


def _decode_side(c, xp, top_width: float = physics.GAMMA_TOP):
    """One side's coordinates ``[..., 12]`` -> ``b, d1, d2`` four-vectors ``[..., 3, 4]``."""
    log_pt = xp.clip(c[..., 0], *LOG_PT_RANGE)
    eta = xp.clip(c[..., 1], -ETA_MAX, ETA_MAX)
    cos_sin = _unit(c[..., 2:4], xp, default_axis=0)
    m_t = u_to_top_mass(c[..., 4], top_width)
    # the top in the lab
    pt = xp.exp(log_pt)
    t3 = xp.concatenate([pt[..., None] * cos_sin, (pt * xp.sinh(eta))[..., None]], axis=-1)  # [..., 3]
    t_e = xp.sqrt((pt * xp.cosh(eta)) ** 2 + m_t**2)
    return _decode_top_decay(t3, t_e, m_t, c[..., 5:12], xp)


def _decode_top_decay(t3, t_e, m_t, c, xp):
    """A top (lab ``t3 [..., 3]``, ``t_e, m_t [...]``) and its decay coordinates ``(u_W, n_W, n_d) [..., 7]`` ->
    ``b, d1, d2`` four-vectors ``[..., 3, 4]`` (energies left 0: the caller puts them on shell)."""
    s_w, gap = _u_to_s(c[..., 0], physics.M_W, physics.GAMMA_W, 0.0, m_t - _M_B, xp)
    m_w = xp.sqrt(s_w)
    # W and b back to back in the top frame; λ = ((m_t − m_b)² − m_W²)((m_t + m_b)² − m_W²)
    p_star = _safe_sqrt(gap * ((m_t + _M_B) ** 2 - s_w), xp) / (2.0 * m_t)
    n_w = _unit(c[..., 1:4], xp, default_axis=2)
    w3, w_e = _boost(p_star[..., None] * n_w, xp.sqrt(p_star**2 + s_w), m_w, t3, t_e, m_t, xp, to_rest=False)
    b3, _ = _boost(-p_star[..., None] * n_w, xp.sqrt(p_star**2 + _M_B**2), _M_B, t3, t_e, m_t, xp, to_rest=False)
    # the W daughters back to back in the W frame, |p**| = m_W / 2
    half = (0.5 * m_w)[..., None] * _unit(c[..., 4:7], xp, default_axis=2)  # [..., 3]
    d1, _ = _boost(half, 0.5 * m_w, 0.0, w3, w_e, m_w, xp, to_rest=False)
    d2, _ = _boost(-half, 0.5 * m_w, 0.0, w3, w_e, m_w, xp, to_rest=False)
    p3 = xp.stack([b3, d1, d2], axis=-2)  # [..., 3, 3]
    return xp.concatenate([p3, xp.zeros_like(p3[..., :1])], axis=-1)  # [..., 3, 4], E filled in by decode


def decode(coords, top_width: float = physics.GAMMA_TOP):
    """Coordinates ``[..., 24]`` -> decay products ``[..., 6, 4]``, on shell at :data:`~lvd.physics.DAUGHTER_MASS`.

    Any finite input gives finite, physical four-vectors: unit vectors are normalised, ``|u|`` is clipped to
    :data:`U_MAX`, ``log pT`` to :data:`LOG_PT_RANGE` and ``|η|`` to :data:`ETA_MAX`.
    """
    xp = physics._xp(coords)
    sides = [_decode_side(coords[..., i * _PER_SIDE:(i + 1) * _PER_SIDE], xp, top_width) for i in range(2)]
    return physics.daughters_on_shell(xp.concatenate(sides, axis=-2))  # [..., 6, 4]


def resonance_masses(coords, top_width: float = physics.GAMMA_TOP):
    """The masses the coordinates ``[..., 24]`` encode, ``[..., 4]`` in RESONANCES order (W_lep, W_had, t_lep, t_had)."""
    xp = physics._xp(coords)
    (t_lep, w_lep, _, _), (t_had, w_had, _, _) = (
        _side_masses(coords[..., i * _PER_SIDE:(i + 1) * _PER_SIDE], xp, top_width) for i in range(2)
    )
    return xp.stack([w_lep, w_had, t_lep, t_had], axis=-1)


def order_light_quarks(daughters):
    """Swap q1 and q2 where q2 has the larger pT, so q1 is the harder quark as in the files; ``[..., 6, 4]``.

    A model decodes "the first W daughter", which need not be the harder quark; the truth is left unchanged.
    """
    xp = physics._xp(daughters)
    q1, q2 = daughters[..., 4:5, :], daughters[..., 5:6, :]  # [..., 1, 4]
    swap = (physics.pt(q2) > physics.pt(q1))[..., None]  # [..., 1, 1]
    return xp.concatenate([daughters[..., :4, :], xp.where(swap, q2, q1), xp.where(swap, q1, q2)], axis=-2)


# --- one level up: the tt̄ system and its two decay chains ---------------------------------------------
#
# The top-level chain starts from the tt̄ system instead of the two tops: its transverse momentum (px, py),
# rapidity and mass are coordinates, so pT(tt̄) and m(tt̄) — small differences and sums of the two tops'
# momenta in the per-top chain — are learned directly. m(tt̄) enters as log(m_tt − m_t,lep − m_t,had) (always
# above threshold); the leptonic top's direction in the tt̄ rest frame (a unit vector, the hadronic top back to
# back, |p*| = λ^{1/2}(m_tt², m₁², m₂²)/(2 m_tt)) completes the two tops, whose decays then follow as above
# (u_t, u_W, n_W, n_d per side).

TTBAR_FEATURES: tuple[str, ...] = (
    "ttbar_px", "ttbar_py", "ttbar_y", "ttbar_log_excess", "t_lep_nx", "t_lep_ny", "t_lep_nz",
    *(f.format(s=side, d=d1) for side, d1 in zip(SIDES, ("lepton", "q1"), strict=True) for f in _SIDE_FEATURES[4:]),
)
TTBAR_DIM: int = len(TTBAR_FEATURES)  # 23
# decode clips the tt̄ transverse momentum components, rapidity and the log of the mass above threshold
TTBAR_PT_MAX: float = 1e5
TTBAR_Y_MAX: float = 15.0
LOG_EXCESS_RANGE: tuple[float, float] = (-10.0, 11.0)  # m_tt − m₁ − m₂ from 45 keV to 60 TeV


def encode_ttbar(daughters, top_width: float = physics.GAMMA_TOP):
    """On-shell decay products ``[..., 6, 4]`` -> top-level chain coordinates ``[..., 23]`` (:data:`TTBAR_FEATURES`)."""
    xp = physics._xp(daughters)
    sides = [_encode_side(*(daughters[..., i, :] for i in idx), xp, top_width)
             for idx in ((0, 1, 2), (3, 4, 5))]  # [..., 12]
    m1, m2 = u_to_top_mass(sides[0][..., 4], top_width), u_to_top_mass(sides[1][..., 4], top_width)
    t1 = daughters[..., 0, :] + daughters[..., 1, :] + daughters[..., 2, :]
    t2 = daughters[..., 3, :] + daughters[..., 4, :] + daughters[..., 5, :]
    # m_tt² = (m₁ + m₂)² + 2(t₁·t₂ − m₁m₂): the excess over threshold without cancellation
    excess2 = 2.0 * xp.maximum(_dot(t1, m1, t2, m2, xp) - m1 * m2, 0.0)
    m_tt = xp.sqrt((m1 + m2) ** 2 + excess2)
    excess = excess2 / (m_tt + m1 + m2)  # m_tt − m₁ − m₂
    tt = t1 + t2
    y = 0.5 * xp.log(xp.maximum(tt[..., 3] + tt[..., 2], _FLOOR) / xp.maximum(tt[..., 3] - tt[..., 2], _FLOOR))
    t_star, _ = _boost(t1[..., :3], t1[..., 3], m1, tt[..., :3], tt[..., 3], m_tt, xp, to_rest=True)
    system = [tt[..., 0], tt[..., 1], y, xp.log(xp.maximum(excess, _FLOOR))]
    return xp.concatenate([xp.stack(system, axis=-1), _unit(t_star, xp, 2), sides[0][..., 4:], sides[1][..., 4:]],
                          axis=-1)


def decode_ttbar(coords, top_width: float = physics.GAMMA_TOP):
    """Top-level chain coordinates ``[..., 23]`` -> decay products ``[..., 6, 4]`` on shell at
    :data:`~lvd.physics.DAUGHTER_MASS`; finite and physical for any finite input (like :func:`decode`)."""
    xp = physics._xp(coords)
    side = (coords[..., 7:15], coords[..., 15:23])  # per side: u_t, u_W, n_W, n_d
    m1, m2 = u_to_top_mass(side[0][..., 0], top_width), u_to_top_mass(side[1][..., 0], top_width)
    px, py = (xp.clip(coords[..., i], -TTBAR_PT_MAX, TTBAR_PT_MAX) for i in (0, 1))
    y = xp.clip(coords[..., 2], -TTBAR_Y_MAX, TTBAR_Y_MAX)
    excess = xp.exp(xp.clip(coords[..., 3], *LOG_EXCESS_RANGE))
    m_tt = m1 + m2 + excess
    mt_tt = xp.sqrt(m_tt**2 + px**2 + py**2)  # transverse mass
    tt3 = xp.stack([px, py, mt_tt * xp.sinh(y)], axis=-1)
    tt_e = mt_tt * xp.cosh(y)
    # the tops back to back in the tt̄ frame; λ(m_tt², m₁², m₂²) = (m_tt² − (m₁+m₂)²)(m_tt² − (m₁−m₂)²)
    p_star = _safe_sqrt(excess * (m_tt + m1 + m2) * (m_tt**2 - (m1 - m2) ** 2), xp) / (2.0 * m_tt)
    n = _unit(coords[..., 4:7], xp, default_axis=2)
    tops = []
    for sign, m in ((1.0, m1), (-1.0, m2)):
        t3, t_e = _boost(sign * p_star[..., None] * n, xp.sqrt(p_star**2 + m**2), m, tt3, tt_e, m_tt, xp,
                         to_rest=False)
        tops.append((t3, t_e, m))
    chains = [_decode_top_decay(t3, t_e, m, c[..., 1:], xp) for (t3, t_e, m), c in zip(tops, side, strict=True)]
    return physics.daughters_on_shell(xp.concatenate(chains, axis=-2))  # [..., 6, 4]
