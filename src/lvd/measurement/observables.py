"""Physics observables of truth or unfolded events, computed once for both (docs/design.md §6).

Input is ``particle -> feature -> array`` (``pt, eta, phi, mass`` of the six decay products; arrays ``[N]``
for truth, ``[N, K]`` for unfolded samples). Resonances are built from their decay products, so the same
code gives the truth, the unfolded and the per-sample values.
"""

from __future__ import annotations

import numpy as np

from lvd import physics
from lvd.data.schema import decay_p4

# (label, unit) of every observable, in the order reports show them
OBSERVABLES: dict[str, tuple[str, str]] = {
    "m_t_had": ("hadronic top mass", "GeV"), "m_t_lep": ("leptonic top mass", "GeV"),
    "m_W_had": ("hadronic W mass", "GeV"), "m_W_lep": ("leptonic W mass", "GeV"),
    "m_ttbar": ("m(tt̄)", "GeV"),
    "pt_t_had": ("hadronic top pT", "GeV"), "pt_t_lep": ("leptonic top pT", "GeV"), "pt_ttbar": ("pT(tt̄)", "GeV"),
    "y_t_had": ("hadronic top rapidity", ""), "y_t_lep": ("leptonic top rapidity", ""), "y_ttbar": ("y(tt̄)", ""),
    "nu_pz": ("neutrino pz", "GeV"), "dphi_tt": ("Δφ(t, t̄)", "rad"),
}


def derived(particles: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every observable of :data:`OBSERVABLES`, plus each decay product's features as ``<particle>_<feature>``."""
    p4 = decay_p4(particles)
    res = physics.resonances(p4)  # [..., 5, 4]
    r = {name: res[..., i, :] for i, name in enumerate(physics.RESONANCES)}
    out = {f"m_{k}": physics.mass(v) for k, v in r.items()}
    for k in ("t_had", "t_lep", "ttbar"):
        out[f"pt_{k}"] = physics.pt(r[k])
        out[f"y_{k}"] = physics.rapidity(r[k])
    out["nu_pz"] = p4[..., 2, 2]
    # |Δφ| of the two tops in [0, π] (t_had and t_lep are t and t̄ in either order: the same number)
    out["dphi_tt"] = np.abs(physics.delta_phi(physics.phi(r["t_had"]), physics.phi(r["t_lep"])))
    for i, p in enumerate(physics.DECAY_PRODUCTS):
        for f in ("pt", "eta", "phi"):
            out[f"{p}_{f}"] = np.asarray(particles[p][f], np.float64)
        out[f"{p}_pz"] = p4[..., i, 2]
    return out


def consistency_residuals(particles: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stated resonance mass minus the mass of its summed daughters, for unfolded outputs that state one."""
    res = physics.resonances(decay_p4(particles))
    return {f"dm_{name}": np.asarray(particles[name]["mass"], np.float64) - physics.mass(res[..., i, :])
            for i, name in enumerate(physics.RESONANCES) if name in particles}


def peak_position(values: np.ndarray, lo: float, hi: float, weights: np.ndarray | None = None,
                  bin_width: float = 0.5) -> float:
    """Mode of a peaked distribution in ``[lo, hi]``: the vertex of a parabola through log-counts near the fullest bin."""
    v = np.asarray(values, np.float64).ravel()
    w = None if weights is None else np.broadcast_to(np.asarray(weights, np.float64), np.shape(values)).ravel()
    counts, edges = np.histogram(v, bins=np.arange(lo, hi + bin_width, bin_width), weights=w)
    # smooth with a short triangular kernel before looking for the maximum
    smooth = np.convolve(counts, np.array([1, 2, 3, 2, 1]) / 9.0, mode="same")
    i = int(np.clip(np.argmax(smooth), 2, len(smooth) - 3))
    x = 0.5 * (edges[i - 2:i + 3] + edges[i - 1:i + 4])
    y = np.log(np.maximum(smooth[i - 2:i + 3], 1e-12))
    a, b, _ = np.polyfit(x - x[2], y, 2)
    return float(x[2] - b / (2 * a)) if a < 0 else float(x[2])


def w_constraint_pz(source: dict[str, np.ndarray], met: dict[str, np.ndarray]) -> np.ndarray:
    """The naive neutrino pz from the W-mass constraint, from the detector-level lepton and MET.

    The lepton is the first object flagged ``is_electron``/``is_muon`` (lvd's generators put it in slot 0).
    """
    flags = sum(np.asarray(source[k]) > 0.5 for k in ("is_electron", "is_muon") if k in source)
    slot = np.argmax(flags, axis=1) if not isinstance(flags, int) else np.zeros(len(met["met"]), int)
    pick = lambda k: np.take_along_axis(np.asarray(source[k], np.float64), slot[:, None], 1)[:, 0]  # noqa: E731
    lep = physics.p4_from_ptetaphim(pick("pt"), pick("eta"), pick("phi"), np.maximum(pick("mass"), 0.0))
    m, phi = np.asarray(met["met"], np.float64), np.asarray(met["phi"], np.float64)
    return physics.neutrino_pz_from_w_mass(lep, m * np.cos(phi), m * np.sin(phi))
