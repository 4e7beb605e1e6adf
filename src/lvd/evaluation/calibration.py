"""Calibration of per-event posteriors from K samples per event: truth ranks, interval coverage, CRPS.

For a calibrated posterior the truth is exchangeable with the K samples, so its rank (the number of samples
below it, ties broken at random) is uniform on ``{0, …, K}``. Interval coverage is defined on ranks, which
makes the nominal level exact for any K: the central interval of level ``c`` drops the same number of
ranks at each end, at least ``(K+1)(1−c)/2`` and at least one, and covers the truth with probability
``len/(K+1)`` ≤ c, the nominal level reported (all K+1 ranks would cover trivially: for K = 8 the
"95 %" interval is ranks 1…7, nominal 7/9).

Event weights may be negative (NLO samples): fractions and histograms are weighted sums over a positive
total; a negative total is refused.
"""

from __future__ import annotations

import numpy as np

from lvd.errors import DataError


def truth_ranks(samples: np.ndarray, truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[N, K], [N] -> [N]`` rank of the truth among the samples (0 … K), ties broken at random."""
    samples, truth = np.asarray(samples), np.asarray(truth)
    below = (samples < truth[:, None]).sum(1)
    ties = (samples == truth[:, None]).sum(1)
    rng = np.random.default_rng(seed)
    return below + np.floor(rng.random(len(truth)) * (ties + 1)).astype(int)


def central_ranks(k: int, level: float) -> tuple[int, int, float]:
    """``(lo, hi, nominal)``: ranks ``lo … hi`` form the central interval of ``level``; nominal = its exact level."""
    drop = max(1, int(np.ceil((k + 1) * (1.0 - level) / 2 - 1e-9)))  # ranks left out at each end
    n = max(k + 1 - 2 * drop, 1)
    lo = (k + 1 - n) // 2
    return lo, lo + n - 1, n / (k + 1)


def coverage(ranks: np.ndarray, k: int, level: float, weights: np.ndarray | None = None) -> dict[str, float]:
    """Fraction of events whose truth lies in the central interval of ``level``, with its binomial error."""
    lo, hi, nominal = central_ranks(k, level)
    inside = ((ranks >= lo) & (ranks <= hi)).astype(np.float64)
    w = np.ones(len(ranks)) if weights is None else np.asarray(weights, np.float64)
    if not np.sum(w) > 0:
        raise DataError(f"coverage: the event weights sum to {np.sum(w):.6g}; a fraction needs a positive total")
    frac = float(np.sum(w * inside) / np.sum(w))
    n_eff = np.sum(w) ** 2 / np.sum(w**2)
    return {"coverage": frac, "nominal": nominal, "error": float(np.sqrt(nominal * (1 - nominal) / n_eff))}


def rank_histogram(ranks: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Normalised histogram of truth ranks over ``{0, …, K}`` (flat at ``1/(K+1)`` when calibrated)."""
    h = np.bincount(ranks, weights=weights, minlength=k + 1).astype(np.float64)
    return h / h.sum()


def crps(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-event ensemble CRPS ``E|X − y| − ½E|X − X'|`` (the unbiased "fair" form), ``[N, K], [N] -> [N]``."""
    x = np.sort(np.asarray(samples, np.float64), axis=1)
    k = x.shape[1]
    term1 = np.mean(np.abs(x - np.asarray(truth, np.float64)[:, None]), axis=1)
    # Σ_{i<j} (x_j − x_i) for sorted samples = Σ_i (2i − K + 1) x_i
    i = np.arange(k)
    pair_sum = np.sum((2 * i - k + 1) * x, axis=1)
    term2 = pair_sum / (k * (k - 1)) if k > 1 else 0.0
    return term1 - term2
