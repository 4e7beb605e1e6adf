"""What a model learns as its prior: histograms of its training truth and its top masses, stored with every
checkpoint and copied into every unfolded file.

A generative unfolding returns ``p(parton | detector)`` under the training sample's distribution of partons,
the *prior*. Knowing it lets a user remove it afterwards: :mod:`lvd.measurement.reweight` reweights the
posterior samples iteratively toward what the data say (iterative Bayesian unfolding on the samples), and the
top-mass likelihood divides the prior out (:mod:`lvd.measurement.top_mass`). Observables are built from the
six decay products exactly as :mod:`lvd.measurement.observables` builds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lvd import physics
from lvd.data.generate.top_mass import top_width

PRIOR_HISTOGRAMS_ATTR = "training_truth_histograms"  # unfolded-file attribute (JSON) holding them
N_BINS = 64


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value (any shape) for ``edges [B + 1]``; values outside count in the end bins."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def prior_observables(daughters: np.ndarray) -> dict[str, np.ndarray]:
    """Observables a prior is recorded in, from decay products ``[..., 6, 4]``: each ``[...]``."""
    res = physics.resonances(daughters)  # [..., 5, 4]
    r = {name: res[..., i, :] for i, name in enumerate(physics.RESONANCES)}
    out = {f"pt_{k}": physics.pt(r[k]) for k in ("t_had", "t_lep", "ttbar")}
    out |= {f"y_{k}": physics.rapidity(r[k]) for k in ("t_had", "t_lep", "ttbar")}
    out["m_ttbar"] = physics.mass(r["ttbar"])
    return out


def truth_histograms(data, weights: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """``{observable: {"edges": [N_BINS + 1], "counts": [N_BINS]}}`` of the (weighted) training truth, edges
    between the 0.1 % and 99.9 % quantiles (what falls outside is counted in the end bins)."""
    obs = prior_observables(physics.daughters_on_shell(data.truth_p4()))
    w = np.ones(data.n_events) if weights is None else np.asarray(weights, np.float64)
    out = {}
    for name, v in obs.items():
        lo, hi = np.quantile(v, [0.001, 0.999])
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, N_BINS + 1)
        counts = np.bincount(bin_index(v, edges), w, N_BINS)
        out[name] = {"edges": edges.round(6).tolist(), "counts": counts.round(6).tolist()}
    return out


PRIOR_ATTR = "training_top_mass_prior"  # unfolded-file attribute (JSON): the model's training prior, as below


def training_prior(data) -> dict[str, Any]:
    """The per-event top masses and widths of a training sample (up to 2048 of them, evenly picked): what a
    model trained on it takes as the prior of the top masses. Files without ``GENERATOR`` give their stated
    fixed mass, else the nominal one."""
    gen = getattr(data, "generator", None)
    if gen is not None and "top_mass" in gen:
        pick = np.unique(np.linspace(0, len(gen["top_mass"]) - 1, min(2048, len(gen["top_mass"]))).astype(int))
        mass = np.asarray(gen["top_mass"], np.float64)[pick]
        width = np.asarray(gen.get("top_width", top_width(mass)), np.float64)[pick]
        return {"mass": mass.round(4).tolist(), "width": width.round(5).tolist(), "source": "GENERATOR"}
    mass = float(data.attrs.get("top_mass", physics.M_TOP))
    return {"mass": [mass], "width": [float(top_width(mass))],
            "source": "file attribute top_mass" if "top_mass" in data.attrs else "assumed nominal"}
