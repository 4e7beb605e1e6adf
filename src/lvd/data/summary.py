"""What is in an event file, as plain numbers (rendered by ``lvd inspect``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lvd.data.schema import EventData


def _stats(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {"min": np.nan, "median": np.nan, "mean": np.nan, "max": np.nan}
    x = x.astype(np.float64)
    return {"min": float(x.min()), "median": float(np.median(x)), "mean": float(x.mean()), "max": float(x.max())}


def summarize(data: EventData) -> dict[str, Any]:
    """Counts, feature ranges over real entries, object multiplicities, truth ranges, the generator's per-event
    values (e.g. the top mass), weights, cut flow."""
    mask = data.mask
    lepton = np.zeros_like(mask)
    for flag in ("is_electron", "is_muon"):
        if flag in data.source:
            lepton |= data.source[flag] > 0.5
    jets = mask & ~lepton
    n_jets = jets.sum(1)
    out: dict[str, Any] = {
        "n_events": data.n_events,
        "max_objects": data.n_objects,
        "objects_per_event": _stats(mask.sum(1)),
        "leptons_per_event": _stats(lepton.sum(1)),
        "jet_multiplicity": {str(k): int((n_jets == k).sum()) for k in range(int(n_jets.max()) + 1)},
        "source": {k: _stats(v[mask]) for k, v in data.source.items()},
        "met": {k: _stats(v) for k, v in data.met.items()},
    }
    if "btag" in data.source:
        nb = ((data.source["btag"] > 0.5) & jets).sum(1)
        out["btag_multiplicity"] = {str(k): int((nb == k).sum()) for k in range(int(nb.max()) + 1)}
    if data.truth is not None:
        out["truth"] = {p: {k: _stats(v) for k, v in feats.items() if k != "pdgid"}
                        for p, feats in data.truth.items()}
    if data.generator is not None:
        out["generator"] = {k: _stats(v) for k, v in data.generator.items()}
    if data.unfolded is not None:
        first = next(iter(next(iter(data.unfolded.values())).values()))
        out["unfolded_samples_per_event"] = int(first.shape[1])
    w = data.event_weights().astype(np.float64)
    out["weights"] = {"present": data.weights is not None, "sum": float(w.sum()),
                      "sum_sq": float((w**2).sum()), "negative": int((w < 0).sum())}
    out["attrs"] = dict(data.attrs)
    return out
