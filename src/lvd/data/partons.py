"""Parton representations: the six decay products ↔ the vector ``x`` a model learns (docs/representation.md).

A representation is chosen by ``data.parton_representation`` and stored in every checkpoint:

* ``paper``: the LVD paper's eleven objects (six decay products, then the five resonances) ×
  ``(px, py, pz, log(E+1), m)``, 55 numbers. The resonances repeat information the daughters carry; the masses
  they *state* are what the consistency loss compares with the daughters' sums.
* ``decay_chain``: 24 numbers in which the top and W masses are coordinates (:mod:`lvd.data.decay_chain`);
* ``ttbar_chain``: 23 numbers, the same one level up: the tt̄ system's momentum and mass, then the two tops.

Both directions work on trailing axes with NumPy or JAX arrays, so the same code encodes the training truth and
decodes a model's output inside ``jax.jit``. :meth:`PartonRepresentation.decode` always returns physical
decay products: on shell at :data:`lvd.physics.DAUGHTER_MASS`, ``q1`` the harder light quark — whatever the
network produced.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from lvd import physics
from lvd.config import PARTON_REPRESENTATIONS
from lvd.data import decay_chain

N_DAUGHTERS = len(physics.DECAY_PRODUCTS)
_PAPER_FEATURES = ("px", "py", "pz", "log_e", "m")


@dataclass(frozen=True)
class PartonRepresentation(abc.ABC):
    """Decay products ``[..., 6, 4]`` ↔ parton vectors ``[..., D]`` (physical units, before normalisation).

    ``top_width``: the line width the decay chains' top-mass coordinate is Gaussianised with
    (``data.top_line_width``; :func:`lvd.data.decay_chain.top_mass_to_u`); the paper's representation ignores it."""

    name: ClassVar[str]
    features: ClassVar[tuple[str, ...]]
    top_width: float = physics.GAMMA_TOP

    @property
    def dim(self) -> int:
        return len(self.features)

    @abc.abstractmethod
    def encode(self, daughters):
        """Decay products ``[..., 6, 4]`` (put on shell at the daughter masses first) -> ``[..., D]``."""

    @abc.abstractmethod
    def _decode(self, x):
        """``[..., D]`` -> decay products ``[..., 6, 4]`` on shell (q1/q2 in any order)."""

    def decode(self, x):
        """``[..., D]`` -> on-shell decay products ``[..., 6, 4]``, q1 the harder light quark."""
        return decay_chain.order_light_quarks(self._decode(x))

    def stated_masses(self, x):
        """Resonance masses ``[..., 5]`` the vector states apart from its daughters, or None when it states none."""
        return None


@dataclass(frozen=True)
class Paper(PartonRepresentation):
    """Eleven objects × ``(px, py, pz, log(E+1), m)``: decay products, then ``W_lep, W_had, t_lep, t_had, tt̄``."""

    name = "paper"
    features = tuple(f"{p}_{f}" for p in physics.PARTONS for f in _PAPER_FEATURES)

    def encode(self, daughters):
        f = physics.parton_features(physics.daughters_on_shell(daughters))  # [..., 11, 5]
        return f.reshape(*f.shape[:-2], self.dim)

    def _decode(self, x):
        # the daughters' three-momenta; their energies follow from the fixed masses (a stated energy that
        # disagrees with the momentum would make an off-shell daughter)
        f = x.reshape(*x.shape[:-1], len(physics.PARTONS), len(_PAPER_FEATURES))  # [..., 11, 5]
        return physics.daughters_on_shell(f[..., :N_DAUGHTERS, :4])

    def stated_masses(self, x):
        return x.reshape(*x.shape[:-1], len(physics.PARTONS), len(_PAPER_FEATURES))[..., N_DAUGHTERS:, 4]


@dataclass(frozen=True)
class DecayChain(PartonRepresentation):
    """Each top's ``(log pT, η, cos φ, sin φ, u_t)``, its W's ``(u_W, n_W)`` in the top frame and one W daughter's
    direction ``n_d`` in the W frame (:mod:`lvd.data.decay_chain`); masses are coordinates."""

    name = "decay_chain"
    features = decay_chain.FEATURES

    def encode(self, daughters):
        return decay_chain.encode(physics.daughters_on_shell(daughters), self.top_width)

    def _decode(self, x):
        return decay_chain.decode(x, self.top_width)


@dataclass(frozen=True)
class TtbarChain(PartonRepresentation):
    """The tt̄ system ``(px, py, y, log(m_tt − m₁ − m₂))``, the leptonic top's direction in the tt̄ frame, and each
    top's ``(u_t, u_W, n_W, n_d)`` (:func:`lvd.data.decay_chain.encode_ttbar`): pT(tt̄), m(tt̄) and the masses are
    coordinates."""

    name = "ttbar_chain"
    features = decay_chain.TTBAR_FEATURES

    def encode(self, daughters):
        return decay_chain.encode_ttbar(physics.daughters_on_shell(daughters), self.top_width)

    def _decode(self, x):
        return decay_chain.decode_ttbar(x, self.top_width)


REPRESENTATIONS: dict[str, type[PartonRepresentation]] = {r.name: r for r in (Paper, DecayChain, TtbarChain)}
assert tuple(REPRESENTATIONS) == PARTON_REPRESENTATIONS, "every representation name of the options has one class"


def parton_representation(name: str, top_width: float = physics.GAMMA_TOP) -> PartonRepresentation:
    return REPRESENTATIONS[name](top_width=float(top_width))
