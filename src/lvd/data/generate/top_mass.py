"""The top mass and width the generators produce (docs/design.md §7), shared by the toy and Pythia.

A generator makes its tops at one pole mass (``--top-mass``, default 172.5 GeV) or at masses drawn uniformly
in a range (``--top-mass-range LO:HI``: per event in the toy, per batch of events in Pythia), so that one
training sample can span the masses to be measured. Each event's values are stored as ``GENERATOR/top_mass``
and ``GENERATOR/top_width`` (docs/format.md).

Width: unless fixed (``--top-width``), the leading-order SM width (m_b → 0, |V_tb| = 1)

    Γ_t = G_F m_t³ / (8π√2) · (1 − x)² (1 + 2x),    x = m_W² / m_t²,

scaled by one constant so that 172.5 GeV gives :data:`lvd.physics.GAMMA_TOP` = 1.32 GeV. The constant (0.892)
stands for the higher-order QCD corrections, which hardly depend on m_t: Pythia 8's own top width (with its
QCD correction) grows by 5.20 % from 172.5 to 175 GeV, this rule by 5.15 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lvd import physics
from lvd.errors import LvdError

G_F = 1.1663787e-5  # Fermi constant, GeV⁻²
# t -> W b must be open at the pole mass
MIN_MASS = physics.M_W + physics.PDG_MASS[5]


def lo_top_width(m_t, m_w: float = physics.M_W):
    """The leading-order SM width ``Γ(t → W b)`` in GeV (massless b, |V_tb| = 1); ``m_t`` any shape."""
    x = (m_w / m_t) ** 2
    return G_F * m_t**3 / (8.0 * math.pi * math.sqrt(2.0)) * (1.0 - x) ** 2 * (1.0 + 2.0 * x)


def top_width(m_t):
    """The width lvd's generators use at mass ``m_t`` (any shape): the LO width scaled to 1.32 GeV at 172.5."""
    return physics.GAMMA_TOP * lo_top_width(m_t) / lo_top_width(physics.M_TOP)


WIDTH_RULE = "LO SM: Gamma_t ~ m^3 (1 - x)^2 (1 + 2x), x = (80.4 GeV / m)^2, scaled to 1.32 GeV at m = 172.5 GeV"


@dataclass(frozen=True)
class TopMass:
    """Which top masses a generator makes.

    Attributes:
        mass: the pole mass in GeV when ``mass_range`` is None.
        mass_range: ``(lo, hi)`` in GeV: masses drawn uniformly (per event or per batch), or None.
        width: a width in GeV used at every mass, or None for the rule :func:`top_width`.
    """

    mass: float = physics.M_TOP
    mass_range: tuple[float, float] | None = None
    width: float | None = None

    def __post_init__(self):
        for what, m in (("top mass", self.mass), *(("top mass range", m) for m in self.mass_range or ())):
            if not (math.isfinite(m) and m > MIN_MASS):
                raise LvdError(f"{what} {m:g} GeV: must be above m_W + m_b = {MIN_MASS:g} GeV (t -> W b)")
        if self.mass_range is not None:
            lo, hi = self.mass_range
            if not lo < hi:
                raise LvdError(f"top mass range {lo:g}:{hi:g}: need LO < HI (one mass: --top-mass)")
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0.0):
            raise LvdError(f"top width {self.width:g} GeV: must be positive")

    @classmethod
    def from_options(cls, mass: float | None, mass_range: str | None, width: float | None) -> TopMass:
        """From the command-line options ``--top-mass``, ``--top-mass-range LO:HI`` and ``--top-width``."""
        if mass is not None and mass_range is not None:
            raise LvdError("--top-mass and --top-mass-range: give one of them")
        bounds = None
        if mass_range is not None:
            try:
                lo, hi = (float(x) for x in mass_range.split(":"))
            except ValueError:
                raise LvdError(f"--top-mass-range {mass_range!r}: expected LO:HI in GeV, e.g. 169:176") from None
            bounds = (lo, hi)
        return cls(mass=physics.M_TOP if mass is None else float(mass), mass_range=bounds,
                   width=None if width is None else float(width))

    @property
    def lo(self) -> float:
        return self.mass if self.mass_range is None else float(self.mass_range[0])

    @property
    def hi(self) -> float:
        return self.mass if self.mass_range is None else float(self.mass_range[1])

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n]`` masses; a fixed mass draws nothing, so its random stream is that of a generator without masses."""
        if self.mass_range is None:
            return np.full(n, float(self.mass))
        return rng.uniform(self.lo, self.hi, n)

    def width_at(self, m):
        """The width at masses ``m`` (any shape)."""
        if self.width is not None:
            return np.full(np.shape(m), float(self.width))
        return top_width(np.asarray(m, np.float64))

    def describe(self) -> str:
        """One line for people, e.g. ``175 GeV (width 1.39 GeV)`` or ``uniform in 169-176 GeV (width: LO rule)``."""
        width = "LO rule" if self.width is None else f"{self.width:g} GeV"
        if self.mass_range is None:
            return f"{self.mass:g} GeV (width {float(self.width_at(self.mass)):.3g} GeV)"
        return f"uniform in {self.lo:g}-{self.hi:g} GeV (width: {width})"

    def attrs(self) -> dict:
        """The file's root attributes: ``top_mass`` or ``top_mass_range``, and ``top_width_rule``."""
        out: dict = ({"top_mass": float(self.mass)} if self.mass_range is None
                     else {"top_mass_range": [self.lo, self.hi]})
        out["top_width_rule"] = WIDTH_RULE if self.width is None else f"fixed: {self.width:g} GeV"
        return out
