"""Event-weighted distances between two samples of a 1-D observable, with bootstrap uncertainties (docs/design.md §6).

Every distance takes ``(u, v, wu, wv)``: values and weights of the two samples. Weights act as counts: a
weight-2 event is the same as two copies of it. Weights may be negative (NLO samples): the CDF distances
(Wasserstein, energy, KS) are defined through the weighted empirical CDFs and need only a positive total
per sample; KL and JS need non-negative bins and are NaN (undefined) for a histogram with a negative bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr

from lvd.errors import DataError

Distance = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]


def _w(x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.ones(len(x)) if w is None else np.asarray(w, np.float64)


def _cdf_gaps(u, v, wu, wv) -> tuple[np.ndarray, np.ndarray]:
    """``F_u − F_v`` of the weighted empirical CDFs on each interval between pooled values, and the widths."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    wu, wv = _w(u, wu), _w(v, wv)
    for name, w in (("first", wu), ("second", wv)):
        if not w.sum() > 0:
            raise DataError(f"the {name} sample's weights sum to {w.sum():.6g}: a distance between "
                            "distributions needs a positive total")
    grid = np.sort(np.concatenate([u, v]))

    def cdf(x, w):
        order = np.argsort(x, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()
        return cum[np.searchsorted(x[order], grid[:-1], side="right")]

    return cdf(u, wu) - cdf(v, wv), np.diff(grid)


def wasserstein(u, v, wu=None, wv=None) -> float:
    """1-D Wasserstein-1 (earth mover's) distance ``∫|F_u − F_v| dx``."""
    gaps, widths = _cdf_gaps(u, v, wu, wv)
    return float(np.sum(np.abs(gaps) * widths))


def energy(u, v, wu=None, wv=None) -> float:
    """1-D energy distance ``sqrt(2E|X−Y| − E|X−X'| − E|Y−Y'|) = sqrt(2∫(F_u − F_v)² dx)``."""
    gaps, widths = _cdf_gaps(u, v, wu, wv)
    return float(np.sqrt(2.0 * np.sum(gaps**2 * widths)))


def ks(u, v, wu=None, wv=None) -> float:
    """Kolmogorov–Smirnov statistic: the largest difference of the weighted empirical CDFs."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    wu, wv = _w(u, wu), _w(v, wv)
    grid = np.sort(np.concatenate([u, v]))

    def cdf(x, w):
        order = np.argsort(x)
        cum = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()
        return cum[np.searchsorted(x[order], grid, side="right")]

    return float(np.max(np.abs(cdf(u, wu) - cdf(v, wv))))


def histogram(x, w, edges) -> np.ndarray:
    """Normalised weighted histogram on fixed ``edges``; under/overflow go into the first/last bin."""
    x = np.clip(np.asarray(x, np.float64), edges[0], np.nextafter(edges[-1], -np.inf))
    h, _ = np.histogram(x, bins=edges, weights=_w(x, w))
    return h / max(h.sum(), 1e-300)


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-10) -> float:
    """``KL(p ‖ q) = Σ p log(p/q)`` of two normalised histograms (empty bins regularised by ``eps``;
    with ``eps=0`` a bin with p = 0 contributes 0 and one with p > 0 = q gives +inf). NaN if a bin is negative."""
    if _negative_bin(p, q):
        return float("nan")
    p, q = np.asarray(p, np.float64) + eps, np.asarray(q, np.float64) + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(rel_entr(p, q)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (natural log; 0 for equal, ln 2 for disjoint histograms). Always finite:
    the mixture m is positive wherever p or q is. NaN if a bin is negative."""
    if _negative_bin(p, q):
        return float("nan")
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = 0.5 * (p + q)
    return float(0.5 * np.sum(rel_entr(p, m)) + 0.5 * np.sum(rel_entr(q, m)))


def _negative_bin(*hists) -> bool:
    """A histogram of negatively weighted events may have a negative bin, where a divergence is undefined."""
    return any(bool(np.any(np.asarray(h) < 0)) for h in hists)


def binned(fn, edges) -> Distance:
    """A histogram divergence on fixed binning as a distance of samples (truth first: KL(truth ‖ other))."""
    def distance(u, v, wu=None, wv=None) -> float:
        return fn(histogram(u, wu, edges), histogram(v, wv, edges))

    return distance


def default_edges(truth: np.ndarray, n_bins: int = 50, lo_q: float = 0.005, hi_q: float = 0.995) -> np.ndarray:
    """Fixed binning for an observable: ``n_bins`` equal bins between truth quantiles (written into the output)."""
    lo, hi = np.quantile(truth, [lo_q, hi_q])
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


@dataclass(frozen=True)
class Estimate:
    value: float
    error: float  # bootstrap standard deviation

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "error": self.error}


def bootstrap(distance: Distance, truth: np.ndarray, other: np.ndarray, w_truth: np.ndarray,
              w_other: np.ndarray, n_boot: int, seed: int) -> Estimate:
    """The distance and its bootstrap error: events resampled with Poisson(1) multiplicities on both sides.

    ``other`` may be ``[N, K]`` (K samples per event): an event's samples are resampled together, each with
    weight ``w/K``, so the K samples of one event count as one event.
    """
    other = np.asarray(other)
    k = 1 if other.ndim == 1 else other.shape[1]
    flat = other.reshape(-1)
    w_flat = np.repeat(np.asarray(w_other, np.float64) / k, k)
    value = distance(truth, flat, w_truth, w_flat)
    if n_boot <= 0:
        return Estimate(value, float("nan"))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        a = rng.poisson(1.0, len(truth))
        b = rng.poisson(1.0, other.shape[0])
        reps.append(distance(truth, flat, w_truth * a, w_flat * np.repeat(b, k)))
    return Estimate(value, float(np.std(reps, ddof=1)))
