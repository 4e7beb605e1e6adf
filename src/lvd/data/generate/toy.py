"""The embedded toy generator: LO ``gg/qq̄ → tt̄`` at 13 TeV, exact decays, ISR recoil, FSR split, parametric detector.

Physics (docs/design.md §7):

* hard process: the exact LO ``dσ̂/dcosθ*`` of ``gg → tt̄`` and ``qq̄ → tt̄`` (five flavours, Ellis–Stirling–
  Webber eqs. 10.12–10.13) convolved with the tabulated proton PDF at ``Q² = m_T3·m_T4`` with LO running αs,
  unweighted by accept/reject against an importance-sampled proposal;
* off-shell tops and Ws from relativistic Breit–Wigner distributions (``m_t = 172.5, Γ_t = 1.32``,
  ``m_W = 80.4, Γ_W = 2.08`` GeV), truncated at ±10 Γ. The top's pole mass may instead be drawn per event,
  uniformly in a range (``ToyConfig.top``, :mod:`lvd.data.generate.top_mass`), with the width at that mass;
  the tt̄ threshold moves with the drawn masses, and the unweighting divides by the cross section at the
  drawn mass (fitted on the pilot), so that the generated events are uniform in it (the selected ones carry
  the selection efficiency's mild mass dependence);
* ``t → W b`` isotropic in the top rest frame; ``W → f f̄'`` with helicity fractions ``F0 = 0.7, FL = 0.3``
  for the charged lepton / down-type fermion; every step is a two-body decay plus exact boosts, so
  four-momentum is conserved at truth level to float64 rounding;
* one charged lepton (e or μ, either charge, 50/50), the other W to ``ud̄``/``cs̄`` (50/50); or, with
  ``channels="all"`` (``--keep-unselected``), both Ws at their branching fractions (:mod:`lvd.data.channels`),
  τ leptons decaying to a collinear e/μ (Michel spectrum) or one τ jet, each event labelled with its channel;
* ISR recoil: ``pT(tt̄) ~ Gamma(k=1.45, θ=47 GeV)`` balanced by one ISR gluon;
* crude FSR: each parton above 20 GeV hands, with probability 0.2, a fraction ``z ∈ [0.1, 0.45]`` of its
  momentum to a gluon at ``ΔR ∈ [0.4, 1.2]`` (so 6+ jet events and combinatorial ambiguity occur);
* extra soft jets from further ISR and the underlying event (Poisson mean 0.7, pT > 15 GeV with a 20 GeV
  exponential slope, |η| < 4.5), balanced by unclustered activity; partons closer than ``ΔR = 0.4`` merge
  into one jet;
* detector (``detector.TOY_DETECTOR``): the parton -> jet response has a Gaussian core and a low-side tail
  (out-of-cone radiation, semileptonic b decays) whose probability falls as ``pT^-2``; the W lepton is
  isolated with a probability rising with its pT. Tails, isolation curve, FSR and extra jets were fitted to
  Pythia 8 (MPI on) + FastJet with the same detector, ``scripts/calibrate_toy.py``: selection efficiency
  within ~4 %, truth means and medians of selected events within ~2 %.

Truth is the six decay products *after* ISR recoil and before FSR (the analogue of Pythia's event-record
truth). Generation is chunked (memory stays flat) and every chunk draws from
``numpy.random.default_rng([seed, shard, chunk])``, so a seed reproduces a file bit for bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

from lvd import physics
from lvd.data import channels
from lvd.data.generate import detector
from lvd.data.generate.pdf import PdfTable, default_pdf
from lvd.data.generate.top_mass import TopMass
from lvd.data.schema import EventData, EventWriter, Generated
from lvd.errors import LvdError

GEV2_TO_PB = 0.3893794e9
LEPTON_IDS = (11, 13)


@dataclass(frozen=True)
class ToyConfig:
    sqrt_s: float = 13000.0
    top: TopMass = TopMass()  # the tops' pole mass (fixed or a range) and width
    m_w: float = physics.M_W
    gamma_w: float = physics.GAMMA_W
    bw_cut: float = 10.0  # Breit–Wigner truncation in widths
    f0: float = 0.7  # longitudinal W helicity fraction
    fl: float = 0.3  # left-handed W helicity fraction
    isr: bool = True
    isr_gamma_k: float = 1.45
    isr_gamma_theta: float = 47.0
    isr_rapidity_spread: float = 1.6
    fsr: bool = True
    fsr_probability: float = 0.2
    fsr_min_pt: float = 20.0
    # extra soft jets from further ISR and the underlying event: Poisson number per event, pT above
    # extra_jet_min_pt with an exponential spectrum, η uniform in ±extra_jet_max_eta
    extra_jets_mean: float = 0.7
    extra_jet_min_pt: float = 15.0
    extra_jet_pt_slope: float = 20.0
    extra_jet_max_eta: float = 4.5
    extra_jets_max: int = 4
    # isolation × identification of the W lepton before the detector's efficiency, as a function of its pT:
    # iso_max − iso_drop·exp(−(pT − 20 GeV)/iso_scale) (fitted to Pythia with MPI)
    iso_max: float = 0.86
    iso_drop: float = 0.27
    iso_scale: float = 35.0
    jet_radius: float = 0.4
    # "signal": every event is tt̄ → (bℓν)(bqq̄') with ℓ = e, μ; "all": the Ws decay at their branching
    # fractions (τ, dileptonic and all-hadronic events too), each event labelled with its channel
    channels: Literal["signal", "all"] = "signal"
    proposals_per_chunk: int = 100_000
    detector: detector.DetectorConfig = detector.TOY_DETECTOR

    def __post_init__(self):
        # the top's Breit–Wigner windows must leave t -> W b open and the tt̄ pair below √s
        top = self.top
        lowest = top.lo - self.bw_cut * float(top.width_at(top.lo))
        heaviest_wb = self.m_w + self.bw_cut * self.gamma_w + physics.PDG_MASS[5]
        if lowest <= heaviest_wb:
            raise LvdError(f"top mass {top.lo:g} GeV: the toy's Breit-Wigner window (±{self.bw_cut:g} widths) "
                           f"reaches {lowest:.1f} GeV, below its heaviest W + b ({heaviest_wb:.1f} GeV)")
        highest = top.hi + self.bw_cut * float(top.width_at(top.hi))
        if 2.0 * highest >= self.sqrt_s:
            raise LvdError(f"top mass {top.hi:g} GeV: a tt̄ pair does not fit in sqrt(s) = {self.sqrt_s:g} GeV")


# --- hard process ---------------------------------------------------------------------------

def two_body_momentum(m, m1, m2):
    """Daughter momentum in the rest frame of a parent of mass ``m`` decaying to masses ``m1, m2``."""
    lam = (m**2 - (m1 + m2) ** 2) * (m**2 - (m1 - m2) ** 2)
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * m)


def breit_wigner(rng: np.random.Generator, n: int, m0, width, lo, hi) -> np.ndarray:
    """``[n]`` relativistic Breit–Wigner masses (Cauchy in m², inverse CDF) restricted to ``[lo, hi]``.

    ``m0, width, lo, hi`` are numbers or ``[n]`` arrays (one Breit–Wigner per event).
    """
    a = np.arctan((lo**2 - m0**2) / (m0 * width))
    b = np.arctan((hi**2 - m0**2) / (m0 * width))
    m2 = m0**2 + m0 * width * np.tan(a + (b - a) * rng.random(n))
    return np.sqrt(m2)


def matrix_element_sq(tau1, tau2, rho):
    """Spin/colour-averaged ``Σ|M|²/g⁴`` for ``gg → QQ̄`` and ``qq̄ → QQ̄`` (ESW 10.12, 10.13)."""
    gg = (1.0 / (6.0 * tau1 * tau2) - 3.0 / 8.0) * (tau1**2 + tau2**2 + rho - rho**2 / (4.0 * tau1 * tau2))
    qq = (4.0 / 9.0) * (tau1**2 + tau2**2 + rho / 2.0)
    return gg, qq


def _as_slice(ids: list[int]) -> slice | list[int]:
    """Consecutive column ids as a slice (a view instead of a gather), else the list."""
    return slice(ids[0], ids[-1] + 1) if ids == list(range(ids[0], ids[-1] + 1)) else ids


class HardProcess:
    """Importance-sampled ``pp → tt̄`` proposals and their weights (pb per proposal)."""

    # Proposal shape, tuned for the unweighting efficiency (~28 % of proposals accepted).
    SHAT_POWER = 2.0  # density ∝ ŝ^-power above threshold
    SIGMA_Y = 1.2  # Gaussian width for the tt̄ rapidity

    def __init__(self, cfg: ToyConfig, pdf: PdfTable):
        self.cfg, self.pdf = cfg, pdf
        self.s = cfg.sqrt_s**2
        self.q_ids = _as_slice([pdf.index(i) for i in (1, 2, 3, 4, 5)])
        self.qbar_ids = _as_slice([pdf.index(-i) for i in (1, 2, 3, 4, 5)])
        self.g_id = pdf.index(21)

    def propose(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` proposals: every entry ``[n]``; ``m_top``/``gamma_top`` are each event's Breit–Wigner centre and
        width, ``m1, m2`` the two tops' masses drawn from it, ``q`` the proposal density of the rest."""
        cfg = self.cfg
        m_top = cfg.top.draw(rng, n)
        gamma_top = cfg.top.width_at(m_top)
        lo_t, hi_t = m_top - cfg.bw_cut * gamma_top, m_top + cfg.bw_cut * gamma_top
        m1 = breit_wigner(rng, n, m_top, gamma_top, lo_t, hi_t)
        m2 = breit_wigner(rng, n, m_top, gamma_top, lo_t, hi_t)
        # ŝ ~ ŝ^-a on [(m1+m2)², s): inverse CDF of a power law
        a = 1.0 - self.SHAT_POWER
        smin = (m1 + m2) ** 2
        u = rng.random(n)
        shat = (smin**a + u * (self.s**a - smin**a)) ** (1.0 / a)
        q_shat = a * shat ** (-self.SHAT_POWER) / (self.s**a - smin**a)
        tau = shat / self.s
        y = self.SIGMA_Y * rng.standard_normal(n)
        q_y = np.exp(-0.5 * (y / self.SIGMA_Y) ** 2) / (np.sqrt(2 * np.pi) * self.SIGMA_Y)
        # cosθ*: half flat, half ∝ 1/(1 − β²c²) (the gg t-channel peaking)
        pstar = two_body_momentum(np.sqrt(shat), m1, m2)
        beta = np.minimum(2.0 * pstar / np.sqrt(shat), 1.0 - 1e-12)
        ab = np.arctanh(beta)
        flat = rng.random(n) < 0.5
        v = (2.0 * rng.random(n) - 1.0) * ab
        c = np.where(flat, 2.0 * rng.random(n) - 1.0, np.tanh(v) / beta)
        q_c = 0.25 + 0.5 * beta / (2.0 * ab * (1.0 - beta**2 * c**2))
        phi = 2.0 * np.pi * rng.random(n)
        return dict(m1=m1, m2=m2, shat=shat, tau=tau, y=y, c=c, phi=phi, pstar=pstar, beta=beta,
                    q=q_shat * q_y * q_c, m_top=m_top, gamma_top=gamma_top)

    def weight(self, p: dict[str, np.ndarray]) -> np.ndarray:
        """Cross-section weight in pb of each proposal (zero outside phase space)."""
        shat, tau, y, c, beta = p["shat"], p["tau"], p["y"], p["c"], p["beta"]
        x1, x2 = np.sqrt(tau) * np.exp(y), np.sqrt(tau) * np.exp(-y)
        inside = (x1 < 1.0) & (x2 < 1.0)
        x1, x2 = np.minimum(x1, 1.0 - 1e-12), np.minimum(x2, 1.0 - 1e-12)
        pt2 = p["pstar"] ** 2 * (1.0 - c**2)
        q2 = np.sqrt((p["m1"] ** 2 + pt2) * (p["m2"] ** 2 + pt2))
        f1, f2 = self.pdf.xf_all(x1, q2), self.pdf.xf_all(x2, q2)  # [n, 11]
        lum_gg = f1[:, self.g_id].astype(np.float64) * f2[:, self.g_id]
        q, qbar = self.q_ids, self.qbar_ids
        lum_qq = (f1[:, q] * f2[:, qbar] + f1[:, qbar] * f2[:, q]).sum(1, dtype=np.float64)
        rho = 1.0 - beta**2
        me_gg, me_qq = matrix_element_sq((1.0 - beta * c) / 2.0, (1.0 + beta * c) / 2.0, rho)
        alphas = self.pdf.alphas(q2)
        # dσ̂/dcosθ = β/(32π ŝ)·(4π αs)²·Σ|M|²/g⁴ ; f(x1)f(x2)dx1dx2 = xf1·xf2/τ dτ dy, dτ = dŝ/s
        dsigma = beta / (32.0 * np.pi * shat) * (4.0 * np.pi * alphas) ** 2 * (lum_gg * me_gg + lum_qq * me_qq)
        w = dsigma / tau / self.s / p["q"] * GEV2_TO_PB
        return np.where(inside, w, 0.0)


# --- decays -----------------------------------------------------------------------------------

def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    c = 2.0 * rng.random(n) - 1.0
    phi = 2.0 * np.pi * rng.random(n)
    s = np.sqrt(1.0 - c**2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), c], axis=-1)


def _perpendicular_basis(n_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing ``n_hat [n, 3]`` to an orthonormal basis."""
    helper = np.where(np.abs(n_hat[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(n_hat, helper)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    return e1, np.cross(n_hat, e1)


def _at_rest(p3: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.concatenate([p3, np.sqrt((p3**2).sum(-1, keepdims=True) + m[:, None] ** 2)], axis=-1)


def helicity_cos(rng: np.random.Generator, n: int, f0: float, fl: float) -> np.ndarray:
    """cosθ* of the down-type fermion w.r.t. the W direction: F0·¾(1−c²) + FL·⅜(1−c)² + FR·⅜(1+c)²."""
    u = rng.random((n, 4))
    a, b, c = 2.0 * u[:, 0] - 1.0, 2.0 * u[:, 1] - 1.0, 2.0 * u[:, 2] - 1.0
    # the median of 3 uniforms on [-1, 1] has density ¾(1−c²)
    longitudinal = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    left = 1.0 - 2.0 * np.cbrt(1.0 - u[:, 3])  # inverse CDF of ⅜(1−c)²
    right = -left  # ⅜(1+c)²
    k = rng.random(n)
    return np.where(k < f0, longitudinal, np.where(k < f0 + fl, left, right))


def decay_top(rng: np.random.Generator, top: np.ndarray, m_w: np.ndarray, m_b: float,
              m_down: np.ndarray, m_up: np.ndarray, cfg: ToyConfig) -> dict[str, np.ndarray]:
    """``t → W b``, ``W → f_down f_up`` for tops ``[n, 4]`` (lab). Returns lab four-vectors ``[n, 4]``."""
    n = top.shape[0]
    m_t = physics.mass(top)
    mb = np.full(n, m_b)
    # top rest frame: W along an isotropic direction
    n_w = _unit_vectors(rng, n)
    p_w = two_body_momentum(m_t, m_w, mb)[:, None] * n_w
    w_rf, b_rf = _at_rest(p_w, m_w), _at_rest(-p_w, mb)
    # W rest frame: the down-type fermion at helicity angle θ* to the W direction
    cos_t = helicity_cos(rng, n, cfg.f0, cfg.fl)
    psi = 2.0 * np.pi * rng.random(n)
    e1, e2 = _perpendicular_basis(n_w)
    sin_t = np.sqrt(np.maximum(1.0 - cos_t**2, 0.0))
    d_hat = cos_t[:, None] * n_w + sin_t[:, None] * (np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2)
    q = two_body_momentum(m_w, m_down, m_up)[:, None] * d_hat
    # W rest frame -> top rest frame -> lab, all daughters of a frame in one boost
    fermions = physics.boost(np.stack([_at_rest(q, m_down), _at_rest(-q, m_up)], axis=1),
                             physics.velocity(w_rf)[:, None])
    lab = physics.boost(np.concatenate([w_rf[:, None], b_rf[:, None], fermions], axis=1),
                        physics.velocity(top)[:, None])
    return {"top": top, "W": lab[:, 0], "b": lab[:, 1], "down": lab[:, 2], "up": lab[:, 3]}


def _flavours(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Signed pdg ids of the decay products; the leptonic top is t (ℓ⁺) or t̄ (ℓ⁻) with equal probability."""
    lep_is_top = rng.random(n) < 0.5  # t → W⁺ b → ℓ⁺ ν b
    sign = np.where(lep_is_top, 1, -1)  # +1 when the leptonic side is the top
    lep = np.where(rng.random(n) < 0.5, 11, 13)
    cs = rng.random(n) < 0.5  # hadronic W → c s̄ instead of u d̄
    return {
        "b_lep": 5 * sign, "lepton": -lep * sign, "neutrino": (lep + 1) * sign,
        "b_had": -5 * sign,
        # hadronic side is t̄ (W⁻ → d ū) when sign = +1, t (W⁺ → u d̄) when sign = −1
        "down": np.where(cs, 3, 1) * sign, "up": -np.where(cs, 4, 2) * sign,
    }


def _mass_of(pdgid: np.ndarray) -> np.ndarray:
    table = np.zeros(17)
    for k, m in physics.PDG_MASS.items():
        if k < 17:
            table[k] = m
    return table[np.abs(pdgid)]


def _truth_rows(vectors: dict[str, np.ndarray], pdgid: dict[str, np.ndarray], index: np.ndarray) -> dict:
    """The file's truth (pt, eta, phi, mass, pdgid per particle) of the events ``index``."""
    truth = {}
    for name, v in vectors.items():
        kin = physics.ptetaphim(detector.rows(v, index))
        ids = detector.rows(pdgid[name], index).astype(np.int32)
        # stable particles and quarks were generated at their pole masses: store those exactly
        mass = _mass_of(ids) if name in physics.DECAY_PRODUCTS else kin[:, 3]
        truth[name] = {"pt": kin[:, 0], "eta": kin[:, 1], "phi": kin[:, 2], "mass": mass, "pdgid": ids}
    return truth


def _michel_inverse() -> Callable[[np.ndarray], np.ndarray]:
    """Inverse CDF of the charged lepton's energy fraction z in an unpolarised, relativistic τ → ℓ ν ν̄ decay,
    ``f(z) = (5 − 9z² + 4z³)/3`` (the lepton collinear with the τ)."""
    z = np.linspace(0.0, 1.0, 2001)
    cdf = (5.0 * z - 3.0 * z**3 + z**4) / 3.0
    return lambda u: np.interp(u, cdf, z)


_MICHEL = _michel_inverse()


def tau_decay(rng: np.random.Generator, p4: np.ndarray, pdgid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The visible product of each τ in ``p4 [..., 4]`` (ids ``pdgid``; other particles pass through unchanged).

    τ → e ν ν̄ and μ ν ν̄ at their branching fractions leave a charged lepton of the same sign, collinear, with
    the Michel energy fraction; the rest leave one τ jet (id 0) with a uniform visible fraction (the
    single-pion spectrum). The neutrinos are invisible. Returns ``(visible p4, visible id)``.
    """
    tau = np.abs(pdgid) == 15
    u = rng.random((2, *pdgid.shape))
    to_e = u[0] < channels.BR_TAU_ELECTRON
    to_mu = ~to_e & (u[0] < channels.BR_TAU_ELECTRON + channels.BR_TAU_MUON)
    leptonic = to_e | to_mu
    z = np.where(leptonic, _MICHEL(u[1]), u[1])
    child = np.where(to_e, 11, np.where(to_mu, 13, 0)) * np.sign(pdgid)
    m_child = np.where(to_e, physics.PDG_MASS[11], np.where(to_mu, physics.PDG_MASS[13], 0.0))
    p3 = z[..., None] * p4[..., :3]
    vis = np.concatenate([p3, np.sqrt((p3**2).sum(-1, keepdims=True) + m_child[..., None] ** 2)], axis=-1)
    return np.where(tau[..., None], vis, p4), np.where(tau, child, pdgid)


def _truth_slots(sides: list[dict[str, np.ndarray]], down: np.ndarray, up: np.ndarray, modes: np.ndarray):
    """The six truth slots and resonances (``vectors``, ``pdgid``) of events in any channel (see
    :meth:`ToyGenerator.partons_all_channels`): which top's side goes into the ``_lep`` slots, per event."""
    lep_w = modes != channels.W_HADRONS
    harder = physics.pt(sides[1]["down"]) > physics.pt(sides[0]["down"])
    # the leptonic side: the one leptonic W, the harder lepton's of two, the top's of none
    second = np.where(lep_w[:, 0] & lep_w[:, 1], harder, lep_w[:, 1] & ~lep_w[:, 0])
    pick = lambda f, other=False: np.where((second ^ other)[:, None], sides[1][f], sides[0][f])  # noqa: E731
    pick_id = lambda a, other=False: np.where(second ^ other, a[:, 1], a[:, 0])  # noqa: E731
    sign = np.where(second, -1, 1)  # +1 when the lepton side is the top's
    f1, f2 = pick("down", True), pick("up", True)
    f1_id, f2_id = pick_id(down, True), pick_id(up, True)
    first = physics.pt(f1) >= physics.pt(f2)
    vectors = {"b_lep": pick("b"), "lepton": pick("down"), "neutrino": pick("up"), "b_had": pick("b", True),
               "q1": np.where(first[:, None], f1, f2), "q2": np.where(first[:, None], f2, f1),
               "W_lep": pick("W"), "W_had": pick("W", True), "t_lep": pick("top"), "t_had": pick("top", True)}
    pdgid = {"b_lep": 5 * sign, "lepton": pick_id(down), "neutrino": pick_id(up), "b_had": -5 * sign,
             "q1": np.where(first, f1_id, f2_id), "q2": np.where(first, f2_id, f1_id),
             "W_lep": 24 * sign, "W_had": -24 * sign, "t_lep": 6 * sign, "t_had": -6 * sign}
    return vectors, pdgid


# --- jets -------------------------------------------------------------------------------------

def fsr_split(rng: np.random.Generator, p4: np.ndarray, flav: np.ndarray, valid: np.ndarray,
              cfg: ToyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each valid parton above ``fsr_min_pt`` radiates a gluon with probability ``fsr_probability``.

    ``[n, P, 4]`` -> ``[n, 2P, 4]`` (radiated gluons appended, invalid where nothing was emitted).
    """
    n, p = flav.shape
    pt, eta, phi = physics.pt(p4), physics.eta(p4), physics.phi(p4)
    emit = valid & (pt > cfg.fsr_min_pt) & (rng.random((n, p)) < cfg.fsr_probability)
    z = rng.uniform(0.1, 0.45, (n, p))
    dr = rng.uniform(0.4, 1.2, (n, p))
    ang = 2.0 * np.pi * rng.random((n, p))
    e, k = np.nonzero(emit)  # build only the gluons that are emitted
    gluon = np.zeros_like(p4)
    gluon[e, k] = physics.p4_from_ptetaphim(z[e, k] * pt[e, k], eta[e, k] + dr[e, k] * np.cos(ang[e, k]),
                                            phi[e, k] + dr[e, k] * np.sin(ang[e, k]), np.zeros(len(e)))
    kept = p4.copy()
    kept[e, k] *= (1.0 - z[e, k])[:, None]
    return (np.concatenate([kept, gluon], axis=1),
            np.concatenate([flav, np.zeros_like(flav)], axis=1),
            np.concatenate([valid, emit], axis=1))


def extra_jets(rng: np.random.Generator, p4: np.ndarray, flav: np.ndarray, valid: np.ndarray,
               cfg: ToyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Append up to ``extra_jets_max`` soft gluon jets per event (further ISR, underlying event)."""
    n, k = flav.shape[0], cfg.extra_jets_max
    count = np.minimum(rng.poisson(cfg.extra_jets_mean, n), k)
    on = np.arange(k) < count[:, None]
    u = rng.random((3, n, k))
    pt = cfg.extra_jet_min_pt - cfg.extra_jet_pt_slope * np.log1p(-u[0])
    gluon = physics.p4_from_ptetaphim(pt, cfg.extra_jet_max_eta * (2.0 * u[1] - 1.0), 2.0 * np.pi * u[2],
                                      np.zeros((n, k)))
    return (np.concatenate([p4, np.where(on[..., None], gluon, 0.0)], axis=1),
            np.concatenate([flav, np.zeros((n, k), flav.dtype)], axis=1),
            np.concatenate([valid, on], axis=1))


_NARROW = 8


def merge_close(p4: np.ndarray, flav: np.ndarray, valid: np.ndarray, radius: float):
    """Merge partons closer than ``radius`` in (η, φ) into the harder one (its flavour wins if b)."""
    order = np.argsort(-np.where(valid, physics.pt(p4), -1.0), axis=1, kind="stable")
    p4, flav, valid = (detector.reorder(a, order) for a in (p4, flav, valid))
    eta, phi = physics.eta(p4), physics.phi(p4)
    # distances of the pairs i < j from the directions before merging, in the merge order (j outer). Valid
    # partons come first, and most events have few: those get their pairs among the first NARROW slots only
    # (the pairs with j < NARROW lead the list).
    j_idx, i_idx = np.tril_indices(p4.shape[1], -1)
    near = np.zeros((p4.shape[0], len(j_idx)), bool)
    few = valid.sum(1) <= _NARROW
    for rows, n_pairs in ((np.flatnonzero(few), _NARROW * (_NARROW - 1) // 2), (np.flatnonzero(~few), len(j_idx))):
        i, j = i_idx[:n_pairs], j_idx[:n_pairs]
        eta_r, valid_r = detector.rows(eta, rows), detector.rows(valid, rows)
        d_eta = eta_r[:, i] - eta_r[:, j]
        cand = (np.abs(d_eta) < radius) & valid_r[:, i] & valid_r[:, j]
        # the azimuthal distance only where |Δη| already allows a merge (a small fraction of the pairs)
        e, k = np.nonzero(cand)
        cand[e, k] = d_eta[e, k] ** 2 + physics.delta_phi(phi[rows[e], i[k]], phi[rows[e], j[k]]) ** 2 < radius**2
        near[rows, :n_pairs] = cand
    # merging is sequential (a parton merged away cannot absorb another), but only a few events have
    # any close pair: walk the pairs over those events only
    rows = np.flatnonzero(near.any(1))
    if len(rows):
        sub_p4, sub_flav, sub_valid, sub_near = (detector.rows(a, rows) for a in (p4, flav, valid, near))
        for k in np.flatnonzero(sub_near.any(0)):
            i, j = i_idx[k], j_idx[k]
            close = np.flatnonzero(sub_near[:, k] & sub_valid[:, i] & sub_valid[:, j])
            sub_p4[close, i] += sub_p4[close, j]
            sub_flav[close, i] = np.maximum(sub_flav[close, i], sub_flav[close, j])
            sub_valid[close, j] = False
        p4[rows], flav[rows], valid[rows] = sub_p4, sub_flav, sub_valid
    return p4, flav, valid


def jet_mass(rng: np.random.Generator, pt: np.ndarray) -> np.ndarray:
    """Jet mass from hadronisation: median m/pT falling from 0.19 at 30 GeV to 0.10 at 200 GeV."""
    median = 0.19 * (30.0 / np.maximum(pt, 5.0)) ** 0.36
    return pt * median * np.exp(0.35 * rng.standard_normal(pt.shape))


# --- putting it together ----------------------------------------------------------------------

def mass_normalisation(m_top: np.ndarray, w: np.ndarray, top: TopMass, degree: int = 3) -> Callable:
    """``σ̄/σ(m)`` as a function of the top mass, from pilot proposals ``[n]`` at masses ``m_top`` with weights ``w``.

    σ(m) = E[w | m] is fitted by least squares on Legendre polynomials of the mass scaled to [-1, 1] (σ falls
    by ~3 %/GeV near 172.5 GeV and is smooth: a cubic leaves well under 1 % over ranges of tens of GeV).
    """
    scale = lambda m: 2.0 * (m - top.lo) / (top.hi - top.lo) - 1.0  # noqa: E731
    coef = np.polynomial.legendre.legfit(scale(m_top), w, degree)
    mean = float(w.mean())
    return lambda m: mean / np.polynomial.legendre.legval(scale(m), coef)


class ToyGenerator:
    """Chunked, seeded toy tt̄ production. ``chunks()`` yields selected events as :class:`EventData`."""

    def __init__(self, cfg: ToyConfig = ToyConfig(), seed: int = 0, shard: int = 0, pdf: PdfTable | None = None):
        self.cfg, self.seed, self.shard = cfg, int(seed), int(shard)
        if cfg.fsr and cfg.detector.jet_model == "parton":
            # FSR losses outside the merged jet are compensated in the response (fitted to Pythia).
            d = cfg.detector
            self.detector = replace(d, response_light=d.response_light + 0.03, response_b=d.response_b + 0.03)
        else:
            self.detector = cfg.detector
        self.hard = HardProcess(cfg, pdf or default_pdf())
        pilot = self.hard.propose(self._rng(-1), 200_000)
        w = self.hard.weight(pilot)
        self.sigma_pb = float(w.mean())  # averaged over the mass range, if any
        self.sigma_error_pb = float(w.std() / np.sqrt(len(w)))  # the pilot's Monte Carlo error
        self.mass_norm = None if cfg.top.mass_range is None else mass_normalisation(pilot["m_top"], w, cfg.top)
        # A 200k-proposal pilot fixes the unweighting maximum; proposals above it (recorded in the
        # file attrs as n_overweight) are accepted with probability 1.
        self.w_max = 1.02 * float(self.unweighting_weight(pilot, w).max())
        self.n_overweight = 0
        self.cutflow = {"generated": 0, "one_lepton": 0, "min_jets": 0, "min_btags": 0}

    def _rng(self, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.shard, chunk + 1])

    def unweighting_weight(self, p: dict[str, np.ndarray], w: np.ndarray) -> np.ndarray:
        """``[n]`` weights ``w`` of proposals ``p`` divided by the cross section at each one's top mass (relative
        to the average), so that accepted events are uniform in it; ``w`` itself at a fixed mass."""
        return w if self.mass_norm is None else w * self.mass_norm(p["m_top"])

    @property
    def branching_fraction(self) -> float:
        """The fraction of the tt̄ cross section the generated events stand for (all channels, or the signal)."""
        return 1.0 if self.cfg.channels == "all" else channels.signal_fraction()

    def attrs(self) -> dict:
        process = ("pp > t t~, W decays at their branching fractions (channel per event)" if self.cfg.channels == "all"
                   else "pp > t t~ > (b l nu)(b q q'), l = e, mu")
        generated = self.cutflow["generated"]
        # every generated event has weight 1 and stands for σ·BR / N of cross section
        luminosity = generated / (1000.0 * self.sigma_pb * self.branching_fraction)
        return {"generator": "lvd toy", "process": process,
                "sqrt_s": self.cfg.sqrt_s, "seed": self.seed, "shard": self.shard,
                "truth_definition": "decay products after ISR recoil, before FSR (exact LO decays)",
                "detector": "parametric Delphes-ATLAS-like (toy parton->jet response)",
                "cross_section_pb": self.sigma_pb, "cross_section_error_pb": self.sigma_error_pb,
                "branching_fraction": self.branching_fraction, "sum_weights_generated": float(generated),
                "luminosity_inv_fb": luminosity, "channels": list(channels.CHANNELS) if self.cfg.channels == "all"
                else [channels.CHANNELS[channels.SIGNAL]], "n_overweight": self.n_overweight,
                "cutflow": dict(self.cutflow), "config": asdict(self.cfg), **self.cfg.top.attrs()}

    def chunks(self) -> Iterator[EventData]:
        """Selected events chunk by chunk; every chunk's cut flow is added to :attr:`cutflow`."""
        chunk = 0
        while True:
            yield self.generate_chunk(self._rng(chunk))
            chunk += 1

    def generate_chunk(self, rng: np.random.Generator) -> EventData:
        """Selected events of one chunk; the whole chunk's cut flow is added to :attr:`cutflow`."""
        data, stage = self.chunk_with_stages(rng)
        for k, v in detector.cutflow_of(stage).items():
            self.cutflow[k] += v
        return data

    def chunk_with_stages(self, rng: np.random.Generator) -> tuple[EventData, np.ndarray]:
        """Selected events of one chunk and the stage (cuts passed) of every generated event, in order."""
        data, stage, _ = self.chunk_with_truth(rng)
        return data, stage

    def chunk_with_truth(self, rng: np.random.Generator) -> tuple[EventData, np.ndarray, Generated | None]:
        """Selected events of one chunk, every generated event's stage and, with ``channels="all"``, every
        generated event's truth and channel (:class:`Generated`)."""
        cfg = self.cfg
        prop = self.hard.propose(rng, cfg.proposals_per_chunk)
        w = self.unweighting_weight(prop, self.hard.weight(prop))
        self.n_overweight += int((w > self.w_max).sum())
        keep = rng.random(w.shape) * self.w_max < w
        accepted = {k: v[keep] for k, v in prop.items()}
        if cfg.channels == "all":
            vectors, pdgid, cand, channel = self.partons_all_channels(rng, accepted)
            reco = detector.simulate(cand, self.detector, rng)
            stage = reco.stage
            kept = np.flatnonzero(keep)  # every accepted proposal was built
        else:
            vectors, pdgid, cand, leptons, alive = self.partons(rng, accepted)
            reco = detector.simulate(cand, self.detector, rng, leptons=leptons)
            stage = np.zeros(int(keep.sum()), np.int8)  # events dropped before the detector failed the lepton cut
            stage[alive] = reco.stage
            kept = np.flatnonzero(keep)[alive]
        sel = np.flatnonzero(reco.selected)
        generator = {"top_mass": prop["m_top"][kept[sel]], "top_width": prop["gamma_top"][kept[sel]]}
        generated = None
        if cfg.channels == "all":
            generator["channel"] = channel[sel].astype(np.int32)
            generated = Generated(truth=_truth_rows(vectors, pdgid, np.arange(len(stage))),
                                  pass_selection=reco.selected.copy(), channel=channel)
        data = EventData(source=reco.source, mask=reco.mask, met=reco.met, truth=_truth_rows(vectors, pdgid, sel),
                         generator=generator)
        return data, stage, generated

    def _tops(self, rng: np.random.Generator, p: dict[str, np.ndarray]):
        """The top ``t1`` and the anti-top ``t2`` in the lab ``[n, 4]``, and the ISR recoil's pT, φ and rapidity."""
        cfg = self.cfg
        n = p["m1"].shape[0]
        # tt̄ rest frame (z = the beam axis), then one boost to the lab including the ISR recoil
        s = np.sqrt(1.0 - p["c"] ** 2)
        n_hat = np.stack([s * np.cos(p["phi"]), s * np.sin(p["phi"]), p["c"]], axis=-1)
        p3 = p["pstar"][:, None] * n_hat
        t1, t2 = _at_rest(p3, p["m1"]), _at_rest(-p3, p["m2"])
        pt_isr = rng.gamma(cfg.isr_gamma_k, cfg.isr_gamma_theta, n) if cfg.isr else np.zeros(n)
        phi_isr = 2.0 * np.pi * rng.random(n)
        mt_tt = np.sqrt(p["shat"] + pt_isr**2)
        system = np.stack([pt_isr * np.cos(phi_isr), pt_isr * np.sin(phi_isr),
                           mt_tt * np.sinh(p["y"]), mt_tt * np.cosh(p["y"])], axis=-1)
        beta = physics.velocity(system)
        tops = physics.boost(np.stack([t1, t2], axis=1), beta[:, None])
        y_isr = p["y"] + cfg.isr_rapidity_spread * rng.standard_normal(n)
        return tops[:, 0], tops[:, 1], pt_isr, phi_isr, y_isr

    def partons(self, rng: np.random.Generator, p: dict[str, np.ndarray]):
        """Tops, decays, ISR and jet candidates for accepted proposals.

        Returns ``(vectors, pdgid, candidates, leptons, alive)``: truth four-vectors and ids per particle for
        the events handed to the detector, their reconstructed leptons, and their indices among the input
        events (the others failed the lepton selection and were not built further, see below).
        """
        cfg = self.cfg
        n = p["m1"].shape[0]
        t1, t2, pt_isr, phi_isr, y_isr = self._tops(rng, p)

        ids = _flavours(rng, n)
        lep_is_top = (ids["b_lep"] > 0)[:, None]
        lo_w, hi_w = cfg.m_w - cfg.bw_cut * cfg.gamma_w, cfg.m_w + cfg.bw_cut * cfg.gamma_w
        m_w = breit_wigner(rng, 2 * n, cfg.m_w, cfg.gamma_w, lo_w, hi_w)
        lep = decay_top(rng, np.where(lep_is_top, t1, t2), m_w[:n], physics.PDG_MASS[5],
                        _mass_of(ids["lepton"]), np.zeros(n), cfg)

        # The lepton is isolated with a pT-dependent probability (calibrated on Pythia) and then goes through
        # the detector's lepton reconstruction and selection first: the rest of an event without exactly
        # one selected lepton is never built (it counts as generated and failing the lepton cut).
        isolated = self.isolation(rng, physics.pt(lep["down"]))[:, None]
        leptons = detector.reconstruct_leptons(lep["down"][:, None], ids["lepton"][:, None], isolated,
                                               np.ones((n, 1), bool), self.detector, rng)
        a = np.flatnonzero(leptons.one_lepton)
        m = len(a)
        lep = {k: detector.rows(v, a) for k, v in lep.items()}
        ids = {k: detector.rows(v, a) for k, v in ids.items()}
        had = decay_top(rng, np.where(detector.rows(lep_is_top, a), detector.rows(t2, a), detector.rows(t1, a)),
                        m_w[n:][a], physics.PDG_MASS[5],
                        _mass_of(ids["down"]), _mass_of(ids["up"]), cfg)
        q_down_harder = physics.pt(had["down"]) >= physics.pt(had["up"])
        q1 = np.where(q_down_harder[:, None], had["down"], had["up"])
        q2 = np.where(q_down_harder[:, None], had["up"], had["down"])
        q1_id = np.where(q_down_harder, ids["down"], ids["up"])
        q2_id = np.where(q_down_harder, ids["up"], ids["down"])
        vectors = {"b_lep": lep["b"], "lepton": lep["down"], "neutrino": lep["up"],
                   "b_had": had["b"], "q1": q1, "q2": q2,
                   "W_lep": lep["W"], "W_had": had["W"], "t_lep": lep["top"], "t_had": had["top"]}
        sign_lep, sign_had = np.sign(ids["b_lep"]), np.sign(ids["b_had"])
        pdgid = {"b_lep": ids["b_lep"], "lepton": ids["lepton"], "neutrino": ids["neutrino"],
                 "b_had": ids["b_had"], "q1": q1_id, "q2": q2_id,
                 "W_lep": 24 * sign_lep, "W_had": 24 * sign_had, "t_lep": 6 * sign_lep, "t_had": 6 * sign_had}

        # visible partons -> jets
        isr = physics.p4_from_ptetaphim(pt_isr[a], y_isr[a], phi_isr[a] + np.pi, np.zeros(m))
        partons = np.stack([lep["b"], had["b"], q1, q2, isr], axis=1)  # [m, 5, 4]
        light = lambda i: np.where(np.abs(i) == 4, 4, 0)  # noqa: E731  (c quarks can be mistagged as b)
        flav = np.stack([np.full(m, 5), np.full(m, 5), light(q1_id), light(q2_id), np.zeros(m, int)], axis=1)
        valid = np.ones((m, 5), bool)
        valid[:, 4] = pt_isr[a] > 1.0
        cand = self._candidates(rng, partons, flav, valid, lep["down"][:, None], ids["lepton"][:, None],
                                np.ones((m, 1), bool), np.ones((m, 1), bool))
        return vectors, pdgid, cand, leptons.take(a), a

    def partons_all_channels(self, rng: np.random.Generator, p: dict[str, np.ndarray]):
        """Tops, decays in every channel, ISR and jet candidates for all accepted proposals (``channels="all"``).

        Returns ``(vectors, pdgid, candidates, channel)`` for every event. The six truth slots hold the two tops'
        decay products in every channel: ``b_lep, lepton, neutrino`` the side of the W that decayed to a lepton
        (τ included; in dileptonic events the side of the harder charged lepton; in all-hadronic events the
        top's side, its quarks in ``lepton``/``neutrino``), ``b_had, q1, q2`` the other side with the harder of
        its two fermions in ``q1``. The pdg ids say what each slot holds.
        """
        cfg = self.cfg
        n = p["m1"].shape[0]
        t1, t2, pt_isr, phi_isr, y_isr = self._tops(rng, p)
        modes = channels.draw_w_modes(rng, (n, 2))  # the W⁺ of the top, the W⁻ of the anti-top
        side_sign = np.array([1, -1])
        hadronic = modes == channels.W_HADRONS
        charged = np.array([11, 13, 15, 0])[modes]
        cs = rng.random((n, 2)) < 0.5  # W → c s̄ instead of u d̄
        # W⁺ → ℓ⁺ ν or u d̄: the down-type fermion (ℓ⁺, d̄) has the sign opposite to the top's
        down = np.where(hadronic, np.where(cs, 3, 1), charged) * -side_sign
        up = np.where(hadronic, np.where(cs, 4, 2), charged + 1) * side_sign
        lo_w, hi_w = cfg.m_w - cfg.bw_cut * cfg.gamma_w, cfg.m_w + cfg.bw_cut * cfg.gamma_w
        m_w = breit_wigner(rng, 2 * n, cfg.m_w, cfg.gamma_w, lo_w, hi_w).reshape(2, n)
        sides = [decay_top(rng, top, m_w[i], physics.PDG_MASS[5], _mass_of(down[:, i]), _mass_of(up[:, i]), cfg)
                 for i, top in enumerate((t1, t2))]
        down_p4 = np.stack([sd["down"] for sd in sides], axis=1)  # [n, 2, 4]
        visible, visible_id = tau_decay(rng, down_p4, down)

        # the detector sees the W leptons (or what their τ left) and jets from quarks, hadronic τs and ISR
        lep_valid = np.isin(np.abs(visible_id), (11, 13))
        isolated = self.isolation(rng, physics.pt(visible))
        tau_jet = (np.abs(down) == 15) & (visible_id == 0)
        isr = physics.p4_from_ptetaphim(pt_isr, y_isr, phi_isr + np.pi, np.zeros(n))
        zero = np.zeros((n, 4))
        slots = [sides[0]["b"], sides[1]["b"]]
        slots += [np.where(hadronic[:, i, None], sides[i][f], zero) for i in (0, 1) for f in ("down", "up")]
        slots += [np.where(tau_jet[:, i, None], visible[:, i], zero) for i in (0, 1)]
        partons = np.stack([*slots, isr], axis=1)  # [n, 9, 4]
        light = lambda i: np.where(np.abs(i) == 4, 4, 0)  # noqa: E731  (c quarks can be mistagged as b)
        flav = np.stack([np.full(n, 5), np.full(n, 5), light(down[:, 0]), light(up[:, 0]), light(down[:, 1]),
                         light(up[:, 1]), np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)], axis=1)
        valid = np.concatenate([np.ones((n, 2), bool), np.repeat(hadronic, 2, axis=1), tau_jet,
                                (pt_isr > 1.0)[:, None]], axis=1)
        cand = self._candidates(rng, partons, flav, valid, np.where(lep_valid[..., None], visible, 0.0),
                                np.where(lep_valid, visible_id, 0), isolated & lep_valid, lep_valid)
        channel = channels.channel_of(modes[:, 0], modes[:, 1])
        vectors, pdgid = _truth_slots(sides, down, up, modes)
        return vectors, pdgid, cand, channel

    def _candidates(self, rng: np.random.Generator, partons, flav, valid, lep_p4, lep_pdgid, lep_isolated,
                    lep_valid) -> detector.Candidates:
        """The detector's input from visible partons ``[m, P, 4]`` (FSR, extra jets, merging, jet masses
        happen here) and lepton candidates ``[m, L, ...]``."""
        cfg = self.cfg
        m = partons.shape[0]
        if cfg.fsr:
            partons, flav, valid = fsr_split(rng, partons, flav, valid, cfg)
        soft_pxy = np.zeros((m, 2))
        if cfg.extra_jets_mean > 0.0:
            partons, flav, valid = extra_jets(rng, partons, flav, valid, cfg)
            # the extra jets recoil against unclustered soft activity, so they leave MET unchanged up to
            # their own mismeasurement
            soft_pxy = -partons[:, -cfg.extra_jets_max:, :2].sum(1)
        partons, flav, valid = merge_close(partons, flav, valid, cfg.jet_radius)
        # a jet keeps its partons' three-momentum and gets a hadronisation mass
        m_jet = np.zeros(valid.shape)
        e, k = np.nonzero(valid)
        m_jet[e, k] = jet_mass(rng, physics.pt(partons[e, k]))
        jets = physics.p4_from_pxpypzm(partons[..., 0], partons[..., 1], partons[..., 2], m_jet)
        return detector.Candidates(
            jet_p4=np.where(valid[..., None], jets, 0.0), jet_flavour=flav, jet_valid=valid,
            lep_p4=lep_p4, lep_pdgid=lep_pdgid, lep_isolated=lep_isolated, lep_valid=lep_valid,
            soft_pxy=soft_pxy, soft_sumet=np.hypot(soft_pxy[:, 0], soft_pxy[:, 1]))

    def isolation(self, rng: np.random.Generator, lepton_pt: np.ndarray) -> np.ndarray:
        """Whether each lepton is isolated (× identified before the detector's efficiency), by its pT."""
        cfg = self.cfg
        eff = cfg.iso_max - cfg.iso_drop * np.exp(-np.maximum(lepton_pt - 20.0, 0.0) / cfg.iso_scale)
        return rng.random(lepton_pt.shape) < eff


def generate_file(path, n_events: int, seed: int = 0, cfg: ToyConfig = ToyConfig(), shard: int = 0,
                  on_progress: Callable[[int], None] | None = None, keep_unselected: bool = False) -> dict:
    """Write exactly ``n_events`` selected events to ``path`` (atomically); returns the file attrs.

    ``keep_unselected``: every tt̄ channel at its branching fraction, and the truth of every generated event up
    to the last selected one written, in ``GENERATED`` (docs/format.md).
    """
    if keep_unselected:
        cfg = replace(cfg, channels="all")
    gen = ToyGenerator(cfg, seed=seed, shard=shard)
    with EventWriter(path) as writer:
        for index in itertools.count():  # chunk k draws from its own seeded stream
            if writer.n_events >= n_events:
                break
            chunk, stage, generated = gen.chunk_with_truth(gen._rng(index))
            take = min(chunk.n_events, n_events - writer.n_events)
            writer.append(chunk.take(slice(0, take)))
            # the cut flow counts the generated events up to the last one written: exact efficiencies
            through = detector.through_selected(stage, take)
            for k, v in detector.cutflow_of(through).items():
                gen.cutflow[k] += v
            if keep_unselected:
                writer.append_generated(generated.take(slice(0, len(through))))
            if on_progress is not None:
                on_progress(take)
        writer.attrs = gen.attrs()
    return writer.attrs
