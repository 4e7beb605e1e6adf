"""Per-event probabilities a cross section needs: the selection efficiency ε(partons) and the fake probability.

* ``ε(x) = P(selected | parton event x)``: a residual MLP on the decay products' kinematics, trained on every
  generated signal event (selected or not, ``GENERATED``);
* ``f(d) = P(not signal | detector event d)``: the detector encoder every model uses, with one logit, trained
  on the selected events labelled by their channel.

Both are ordinary binary classifiers trained with the (weighted) binary cross entropy, whose minimiser is the
conditional probability itself; the logit of a sigmoid keeps them in (0, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lvd.models.detector_encoder import DetectorEncoder
from lvd.models.layers import ResidualMLP

N_PARTON_FEATURES = 6 * 4 + 3 + 3
# the selection's thresholds on the visible decay products (lepton, b quarks, light quarks; not the neutrino)
_VISIBLE = jnp.array([True, True, False, True, True, True])
_PT_CUT, _ETA_CUT = 25.0, 2.5


def parton_features(p4: jax.Array) -> jax.Array:
    """Decay products ``[..., 6, 4]`` (px, py, pz, E) -> ``[..., 30]``: per product ``log(1 + pT), η, cos φ,
    sin φ`` (what the selection cuts on), the tt̄ system's ``log(1 + pT), y, log m``, and how the five visible
    products stand against the selection's thresholds: how many pass pT > 25 GeV and |η| < 2.5, the smallest
    log(1 + pT) and the largest |η| among them. An efficiency is a product of such thresholds smeared by the
    detector; handing the network the count makes the steps it would otherwise have to learn one input."""
    px, py, pz, e = (p4[..., i] for i in range(4))
    pt = jnp.hypot(px, py)
    eta = jnp.arcsinh(pz / jnp.maximum(pt, 1e-6))
    phi = jnp.arctan2(py, px)
    per = jnp.stack([jnp.log1p(pt), eta, jnp.cos(phi), jnp.sin(phi)], axis=-1)
    tt = p4.sum(-2)
    tt_pt = jnp.hypot(tt[..., 0], tt[..., 1])
    tt_y = 0.5 * jnp.log((tt[..., 3] + tt[..., 2]) / jnp.maximum(tt[..., 3] - tt[..., 2], 1e-6))
    tt_m = jnp.sqrt(jnp.maximum(tt[..., 3] ** 2 - (tt[..., :3] ** 2).sum(-1), 1e-6))
    system = jnp.stack([jnp.log1p(tt_pt), tt_y, jnp.log(tt_m)], axis=-1)
    passing = (pt > _PT_CUT) & (jnp.abs(eta) < _ETA_CUT) & _VISIBLE
    thresholds = jnp.stack([passing.sum(-1).astype(p4.dtype),
                            jnp.min(jnp.where(_VISIBLE, jnp.log1p(pt), jnp.inf), axis=-1),
                            jnp.max(jnp.where(_VISIBLE, jnp.abs(eta), 0.0), axis=-1)], axis=-1)
    return jnp.concatenate([per.reshape(*per.shape[:-2], -1), system, thresholds], axis=-1)


class PartonClassifier(nnx.Module):
    """Standardised parton features ``[B, 27]`` -> logit ``[B]``."""

    def __init__(self, width: int, num_blocks: int, *, rngs: nnx.Rngs):
        self.net = ResidualMLP(N_PARTON_FEATURES, width, 1, num_blocks, 2, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.net(features)[..., 0]


class DetectorClassifier(nnx.Module):
    """Standardised detector objects ``[B, M, F]`` (mask ``[B, M]``) and MET ``[B, Fm]`` -> logit ``[B]``."""

    def __init__(self, num_object_features: int, num_met_features: int, width: int, num_layers: int,
                 num_heads: int, *, rngs: nnx.Rngs):
        self.encoder = DetectorEncoder(num_object_features, num_met_features, width, width, num_layers, num_heads,
                                       2, rngs=rngs)
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, objects: jax.Array, mask: jax.Array, met: jax.Array) -> jax.Array:
        return self.head(jax.nn.gelu(self.encoder(objects, mask, met)))[..., 0]


def binary_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """``Σ w [−y log σ(s) − (1 − y) log(1 − σ(s))] / Σ w``, stable in the logit ``s``."""
    per_event = jnp.maximum(logits, 0.0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.sum(weights * per_event) / jnp.sum(weights)
