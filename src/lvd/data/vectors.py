"""lvd's ``particle -> feature -> array`` dicts as awkward arrays of scikit-hep ``vector`` four-vectors.

``to_awkward(samples)`` gives one record per event with a field per particle; each particle is a
``Momentum4D`` built from pt, eta, phi and mass, so ``.mass``, ``.pt``, ``.rapidity``, ``.deltaR`` and sums
of particles work directly::

    ev = to_awkward(lvd.load(run).sample(events, k=16))   # fields b_lep, lepton, ... ; each [N, K]
    m_t_had = (ev.b_had + ev.q1 + ev.q2).mass               # [N, K]

Truth (``[N]`` arrays) and samples (``[N, K]``) are both accepted. A stored ``energy`` is left out: the
four-vector is defined on shell from the stated mass. Other features (e.g. ``pdgid``) ride along as fields.
"""

from __future__ import annotations

import numpy as np

from lvd.data.readers import hep_module

KINEMATIC = ("pt", "eta", "phi", "mass")


def to_awkward(particles: dict[str, dict[str, np.ndarray]]):
    """``particle -> feature -> [N] or [N, K]`` -> an awkward array of N records of ``Momentum4D`` fields."""
    ak = hep_module("awkward")
    vector = hep_module("vector")
    vector.register_awkward()
    if not particles:
        raise ValueError("to_awkward: no particles given")
    fields = {}
    shape = None
    for name, feats in particles.items():
        missing = [k for k in KINEMATIC if k not in feats]
        if missing:
            raise ValueError(f"to_awkward: particle {name!r} lacks {missing} (needs pt, eta, phi, mass)")
        cols = {k: np.asarray(v) for k, v in feats.items() if k != "energy"}
        shapes = {v.shape for v in cols.values()}
        if len(shapes) != 1 or (shape is not None and shapes != {shape}):
            raise ValueError(f"to_awkward: particle {name!r} has features of shapes {sorted(shapes)}, "
                             f"expected all {shape or 'equal'}")
        shape = shapes.pop()
        # kinematics first: vector reads the coordinates by name, the rest are plain fields
        order = [*KINEMATIC, *(k for k in cols if k not in KINEMATIC)]
        fields[name] = ak.zip({k: ak.from_numpy(cols[k]) for k in order}, with_name="Momentum4D")
    return ak.zip(fields, depth_limit=1)
