"""Unfolding that follows the data, not the training prior: iterative reweighting of the posterior samples.

A model trained on a sample with truth distribution ``π₀`` returns, for event i, draws from
``p₀(t | x_i) ∝ p(x_i | t) π₀(t)``. Averaged over the data this is *not* the data's truth distribution unless
the data follow ``π₀``: the prior leaks into the result. Iterative Bayesian unfolding (D'Agostini) replaces the
prior by the current unfolded estimate and repeats; here the posterior under a new prior ``π`` needs no
retraining, only weights on the draws,

    p_π(t | x_i) ∝ p₀(t | x_i) · π(t) / π₀(t),

so each iteration is: weight every draw by ``π_n/π₀`` at its value of the chosen observable(s) (normalised per
event), histogram the weighted draws over all events to get ``π_{n+1}``, repeat. It is the EM algorithm for the
truth distribution in those observables, and with 0 iterations it is the plain unfolding. ``π₀`` is the
training truth histogram stored with the model (:mod:`lvd.data.prior`); the observables are those it records
(top pT, rapidities, m(tt̄), pT(tt̄)); several at once are reweighted in their product (independent bins).
The result is written as an ordinary unfolded file whose K samples per event are redrawn from the weighted
draws, so ``lvd evaluate`` and ``lvd histogram`` read it unchanged.

Two cautions, both measured (benchmarks/reweight_check.py). (1) The iteration assumes the draws are exact
posteriors under ``π₀``. A trained model is not exact: its unfolding of simulated events from the training
distribution differs from the training truth by a few per cent, most in the tails, and the iteration reads that
difference as a signal in the data and amplifies it. Pass ``reference``: an unfolding *by the same model* of an
independent simulated sample from the training distribution; the histogram of its draws (the prior as the model
sees it) replaces the training truth as ``π₀``. (2) Several observables are reweighted in the product of their
histograms, right only for independent ones; the two tops' pT are strongly correlated, and iterating in both
counts the same shift twice. Reweight one of them (the other follows through the correlation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lvd.data.prior import PRIOR_HISTOGRAMS_ATTR, bin_index, prior_observables
from lvd.data.schema import EventWriter, source_layout
from lvd.data.unfolded import positive_weights, prior_histograms, read_unfolded
from lvd.errors import DataError
from lvd.measurement.observables import decay_p4


def iterate_weights(bins: list[np.ndarray], prior: list[np.ndarray], event_weight: np.ndarray,
                    iterations: int) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Per-draw weights ``[N, K]`` (summing to 1 per event) after ``iterations`` EM steps, and the unfolded
    histograms of each observable after every step.

    ``bins``: per observable, the bin of every draw ``[N, K]``; ``prior``: per observable, the training
    histogram (any normalisation); ``event_weight [N]``: the events' weights.
    """
    n, k = bins[0].shape
    p0 = [np.maximum(p / p.sum(), 1e-12) for p in prior]
    current = [p.copy() for p in p0]
    w = np.full((n, k), 1.0 / k)
    history = []
    for _ in range(iterations + 1):
        ratio = np.ones((n, k))
        for b, pc, pz in zip(bins, current, p0, strict=True):
            ratio *= (pc / pz)[b]
        w = ratio / ratio.sum(axis=1, keepdims=True)
        unfolded = [np.bincount(b.ravel(), (w * event_weight[:, None]).ravel(), len(pz)) for b, pz in zip(bins, p0,
                                                                                                        strict=True)]
        history.append(unfolded)
        current = [np.maximum(u / u.sum(), 1e-12) for u in unfolded]
    return w, history


def reference_prior(reference: str | os.PathLike, prior: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """The prior as the model sees it: the histograms, in the bins of ``prior``, of the draws in ``reference`` (an
    unfolding of simulated events from the training distribution by the model that made the file with ``attrs``)."""
    path = Path(reference)
    ref = read_unfolded(path)
    for key in ("model", "checkpoint_step", "training_top_mass_prior"):
        if key in attrs and key in ref.attrs and str(ref.attrs[key]) != str(attrs[key]):
            raise DataError(f"{path}: unfolded by a different model than the data ({key} differs)")
    w = positive_weights(ref, path, "the reference's prior histogram")
    obs = prior_observables(decay_p4(ref.unfolded))
    k = next(iter(obs.values())).shape[1]
    return {o: {"edges": h["edges"], "counts": np.bincount(bin_index(obs[o], np.asarray(h["edges"])).ravel(),
                                                           np.repeat(w, k), len(h["edges"]) - 1).tolist()}
            for o, h in prior.items()}


def reweight_file(unfolded: str | os.PathLike, out: str | os.PathLike, observables: tuple[str, ...] = ("pt_t_had",),
                  iterations: int = 4, seed: int = 0, reference: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``out``: ``unfolded`` with each event's K samples redrawn from its posterior reweighted by
    :func:`iterate_weights` (``π₀``: the training truth, or the model's unfolding of ``reference``, see the
    module's note); returns a summary (observables, iterations, the effective number of draws)."""
    path = Path(unfolded)
    data = read_unfolded(path)
    prior = prior_histograms(data, path, PRIOR_HISTOGRAMS_ATTR)
    if prior is None:
        raise DataError(f"{path}: no {PRIOR_HISTOGRAMS_ATTR} attribute: unfold it with a model this lvd version "
                        "trained (its training truth is the prior to replace)")
    unknown = [o for o in observables if o not in prior]
    if unknown:
        raise DataError(f"--observable {unknown[0]!r}: the model's prior is recorded in {', '.join(sorted(prior))}")
    if iterations < 0:
        raise DataError(f"iterations {iterations}: must be >= 0")
    if reference is not None:
        prior = reference_prior(reference, prior, data.attrs)
    w_event = positive_weights(data, path, "the unfolded histogram")
    obs = prior_observables(decay_p4(data.unfolded))  # each [N, K]
    bins = [bin_index(obs[o], np.asarray(prior[o]["edges"])) for o in observables]
    w, _ = iterate_weights(bins, [np.asarray(prior[o]["counts"], np.float64) for o in observables], w_event,
                           iterations)
    # redraw K samples per event from the weighted draws (systematic resampling: low variance, seeded)
    n, k = w.shape
    u = (np.random.default_rng(seed).random((n, 1)) + np.arange(k)) / k  # [N, K]
    pick = np.minimum((np.cumsum(w, axis=1)[:, None, :] < u[:, :, None]).sum(-1), k - 1)  # [N, K]
    data.unfolded = {p: {f: np.take_along_axis(v, pick, axis=1) for f, v in feats.items()}
                     for p, feats in data.unfolded.items()}
    summary = {"reweighted_observables": list(observables), "reweighting_iterations": iterations,
               "reweighting_prior": "training truth" if reference is None else f"unfolded reference {reference}",
               "reweighting_seed": seed, "effective_draws_median": float(np.median(1.0 / (w**2).sum(axis=1)))}
    # an ensemble's draws are resampled across its members, so the per-member blocks (and the model spread
    # read from them) no longer exist in the output: its ensemble attributes are not carried over
    dropped = ("n_events", "source_features", "met_features", "ensemble_members", "ensemble_samples_per_member")
    attrs = {a: v for a, v in data.attrs.items() if a not in dropped}
    if "ensemble_members" in data.attrs:
        summary["reweighted_from_ensemble"] = data.attrs["ensemble_members"]
    with EventWriter(out, attrs={**attrs, **summary}, layout=source_layout(path)) as writer:
        writer.append(data)
    return summary
