"""``to_awkward``: lvd's particle dicts as awkward arrays of vector four-vectors, checked against lvd.physics."""

from __future__ import annotations

import numpy as np
import pytest

from lvd import physics

pytest.importorskip("vector", reason="the [hep] extra (vector) is not installed")

from lvd.data.vectors import to_awkward  # noqa: E402


def _particles(rng, shape):
    out = {}
    for i, p in enumerate(physics.DECAY_PRODUCTS):
        out[p] = {"pt": rng.uniform(20, 200, shape), "eta": rng.uniform(-2.5, 2.5, shape),
                  "phi": rng.uniform(-np.pi, np.pi, shape), "mass": np.full(shape, (4.8, 0.0, 0.0, 4.8, 0.3, 0.3)[i]),
                  "energy": np.full(shape, -1.0), "pdgid": np.full(shape, i)}
    return out


@pytest.mark.parametrize("shape", [(50,), (20, 7)])
def test_sums_and_masses_match_lvd_physics(shape):
    rng = np.random.default_rng(0)
    parts = _particles(rng, shape)
    ev = to_awkward(parts)
    assert len(ev) == shape[0] and set(ev.fields) == set(physics.DECAY_PRODUCTS)
    p4 = np.stack([physics.p4_from_ptetaphim(*(parts[p][k] for k in ("pt", "eta", "phi", "mass")))
                   for p in physics.DECAY_PRODUCTS], axis=-2)
    res = physics.resonances(p4)
    m_t_had = np.asarray((ev.b_had + ev.q1 + ev.q2).mass)
    np.testing.assert_allclose(m_t_had, physics.mass(res[..., physics.RESONANCES.index("t_had"), :]), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ev.lepton.pt), parts["lepton"]["pt"])
    np.testing.assert_allclose(np.asarray(ev.b_lep.mass), 4.8)  # on shell: the stored energy is not used
    np.testing.assert_array_equal(np.asarray(ev.q2.pdgid), parts["q2"]["pdgid"])


def test_inconsistent_input_is_refused():
    rng = np.random.default_rng(1)
    parts = _particles(rng, (5,))
    parts["q1"]["pt"] = parts["q1"]["pt"][:3]
    with pytest.raises(ValueError, match="shapes"):
        to_awkward(parts)
    with pytest.raises(ValueError, match="lacks"):
        to_awkward({"b_lep": {"pt": np.ones(2)}})
