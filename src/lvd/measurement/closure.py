"""Closure: does the binned unfolded histogram of simulated events agree with their own truth?

For an observable with truth t_i ``[N]``, K posterior draws x_ik ``[N, K]``, event weights w_i (signed) and
bins b (docs/design.md §6, "Closure"):

* unfolded ``h_b = Σ_i w_i c_ib`` with c_ib the fraction of event i's draws in bin b (as ``lvd histogram``),
  truth ``T_b = Σ_i w_i 1[t_i ∈ b]``;
* **stat**: ``χ² = Σ_b (h_b − T_b)² / V_b`` with ``V_b = Σ_i w_i² 1[t_i ∈ b]``, the Poisson variance of the
  truth counts (the sample's statistical precision), ndf = the bins;
* **total**: ``χ² = (h − T)ᵀ C⁺ (h − T)`` with C the covariance ``lvd histogram`` states (bootstrap over
  events + the posterior spread of one draw of the histogram + for an ensemble's draws (``members``) the
  spread of the members' histograms, :func:`lvd.measurement.histogram.histogram`) plus an optional
  ``extra_cov`` (any further component), ndf = rank C;
* **paired**: ``d_ib = c_ib − 1[t_i ∈ b]``, ``D = Σ_i w_i d_i``, ``S = Σ_i w_i² d_i d_iᵀ``, ``χ² = Dᵀ S⁺ D``,
  ndf = rank S.

What each χ² does for an exact posterior (draws from p(t | detector) of each event). Given the detector data,
with p_ib = P(t_i ∈ b | detector), c_i averages K one-hot draws and 1[t_i ∈ ·] is one more, independent, so
``Cov(h − T) = Σ_true = (1 + 1/K) Σ_i w_i² (diag p_i − p_i p_iᵀ)``:

* paired: E d_i = 0 and the events are independent, so S estimates Σ_true without bias (finite K included:
  the draws' own noise is part of every d_i; no correction needed) and χ² follows χ²(rank S) for many events.
  The only statistic here that is ≈ ndf for a perfect model; it is the one to judge a model by.
* stat: E χ²_b = (1 + 1/K) Σ_i w_i² p_ib (1 − p_ib) / Σ_i w_i² p_ib < 1 + 1/K: below 1 unless the posteriors
  spread over many bins, because h and T share the events (a χ²/bin well below 1 is expected, not suspicious).
* total: C ≈ Σ_i w_i² c_ib² (stat) + Σ_i w_i² c_ib (1 − c_ib) (posterior) on the diagonal, about V_b; so
  χ²/ndf is below 1 for the same reason, up to 1 + 1/K for very broad posteriors. It asks whether the stated
  uncertainty covers the difference (a p-value near 0 says it does not), not whether it is tight. Its
  posterior part is estimated event by event (:func:`lvd.measurement.histogram._posterior_covariance`), full
  rank for any K ≥ 2: the covariance of the K per-sample histograms it replaces had rank ≤ K − 1 and inflated
  this χ² for exact posteriors (mean 31.7 at K = 8, 12 bins, against an expectation ≈ 10; event-wise 9.3).

Binning. Default: 12 bins of equal truth content (weighted quantiles), outermost edges at the truth's min and
max; draws beyond them are counted in the outermost bins. They must be: the range is set by the truth itself,
so no truth lies outside it while an exact posterior puts about K draws beyond each extreme, and dropping them
biased the paired χ² of exact posteriors by about 2K (38 instead of 11 for K = 16). With given ``edges``,
truth values and draws outside are dropped alike (a fixed range is a fair question); each d_i then no longer
sums to 0 and the paired ndf can be B instead of B − 1.

Directions in which the covariance is zero are left out of a χ² and its ndf; the number in which h − T is
nonetheless not zero is reported as ``unsupported`` (e.g. truth in a bin without any draws).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from lvd.errors import DataError, LvdError
from lvd.measurement.histogram import Result, histogram, observable_table

N_BINS = 12
N_BOOT = 200
# the headline observables of the closure section (docs/design.md §6)
HEADLINE = ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep", "m_ttbar", "pt_ttbar", "y_ttbar", "pt_t_had", "pt_t_lep",
            "y_t_had", "y_t_lep", "nu_pz", "dphi_tt", "lepton_pt", "b_had_pt", "q1_pt")
_RTOL = 1e-10  # eigenvalues below this fraction of the largest are zero (round-off of a rank-deficient sum)


def equal_count_edges(truth: np.ndarray, weights: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Edges ``[≤ n_bins + 1]`` with equal truth weight per bin; outermost at the truth's min and max.

    Signed weights: the running weight sum is made monotone first. Ties can merge edges (fewer bins)."""
    finite = np.isfinite(truth)
    t, w = np.asarray(truth, np.float64)[finite], np.asarray(weights, np.float64)[finite]
    order = np.argsort(t, kind="stable")
    t, running = t[order], np.maximum.accumulate(np.cumsum(w[order]))
    if len(t) < 2 or t[0] == t[-1] or not running[-1] > 0:
        raise DataError("the truth has no spread or a non-positive weight sum: no bins of equal content")
    j = np.searchsorted(running, running[-1] * np.arange(1, n_bins) / n_bins, side="left")
    j = np.minimum(j, len(t) - 2)
    inner = 0.5 * (t[j] + t[j + 1])  # between two truth values: the event at j is in the lower bin
    return np.unique(np.concatenate([[t[0]], inner, [t[-1]]]))


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value (−1 or B outside, and for non-finite values); the last edge belongs to the last bin,
    as in :func:`lvd.measurement.histogram.histogram` and ``np.histogram``."""
    b = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right") - 1
    idx = np.where(values == edges[-1], b - 1, idx)
    return np.where(np.isfinite(values), idx, -1)


def bin_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``values [N]`` or ``[N, K]`` -> ``c [N, B]``: the fraction of each event's values in each bin."""
    x = np.asarray(values, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n, k = x.shape
    b = len(edges) - 1
    idx = bin_index(x, edges)
    inside = (idx >= 0) & (idx < b)
    code = (np.arange(n)[:, None] * b + idx)[inside]
    return np.bincount(code, minlength=n * b).reshape(n, b) / k


def quadratic_form(diff: np.ndarray, cov: np.ndarray) -> tuple[float, int, int]:
    """``diffᵀ cov⁺ diff`` over the support of ``cov`` (a pseudo-inverse by eigenvalues: robust to a singular
    or noisy covariance) -> (χ², rank, unsupported), ``unsupported`` = the zero-variance directions in which
    ``diff`` is not zero to round-off."""
    lam, u = np.linalg.eigh(0.5 * (cov + cov.T))
    top = max(float(lam.max(initial=0.0)), 0.0)
    keep = lam > _RTOL * top if top > 0 else np.zeros(len(lam), bool)
    proj = u.T @ diff
    scale = max(np.sqrt(top), np.abs(diff).max(initial=0.0), 1e-300)
    unsupported = int(np.sum(np.abs(proj[~keep]) > 1e-8 * scale))
    return float(np.sum(proj[keep] ** 2 / lam[keep])), int(keep.sum()), unsupported


def chi2_dict(chi2: float, ndf: int, unsupported: int = 0) -> dict[str, Any]:
    """A χ² with its ndf, χ²/ndf and upper-tail p-value (None where ndf = 0)."""
    return {"chi2": chi2, "ndf": ndf, "chi2_per_ndf": chi2 / ndf if ndf else None,
            "p_value": float(stats.chi2.sf(chi2, ndf)) if ndf else None, "unsupported": unsupported}


def _pulls(diff: np.ndarray, var: np.ndarray) -> list[float | None]:
    return [float(d / np.sqrt(v)) if v > 0 else None for d, v in zip(diff, var, strict=True)]


def binned_tests(unfolded: np.ndarray, truth: np.ndarray, var_stat: np.ndarray, cov_total: np.ndarray,
                 extra_cov: np.ndarray | None = None) -> dict[str, Any]:
    """The stat and total χ² and the pulls of one binned observable.

    ``var_stat [B]``: the truth's Poisson variance V_b (bins with V_b = 0, no truth, are left out of the stat
    χ²); ``cov_total [B, B]``: the stated covariance of the unfolded histogram; ``extra_cov [B, B]``: a further
    component added to it (e.g. a model/ensemble covariance, in the units of the histogram)."""
    h, t, v = (np.asarray(a, np.float64) for a in (unfolded, truth, var_stat))
    c = np.asarray(cov_total, np.float64)
    if extra_cov is not None:
        extra = np.asarray(extra_cov, np.float64)
        if extra.shape != c.shape:
            raise LvdError(f"extra_cov has shape {extra.shape}, the histogram's covariance {c.shape}")
        c = c + extra
    diff = h - t
    filled = v > 0
    stat = float(np.sum(diff[filled] ** 2 / v[filled]))
    pull_stat, pull_total = _pulls(diff, v), _pulls(diff, np.diag(c))
    worst = int(np.nanargmax(np.abs([np.nan if p is None else p for p in pull_stat]))) if filled.any() else None
    return {"unfolded": h.tolist(), "truth": t.tolist(), "variance_stat": v.tolist(), "covariance_total": c.tolist(),
            "pull_stat": pull_stat, "pull_total": pull_total,
            "worst_bin": None if worst is None else {"bin": worst, "pull_stat": pull_stat[worst]},
            "chi2_stat": chi2_dict(stat, int(filled.sum()), int(np.sum(~filled & (diff != 0)))),
            "chi2_total": chi2_dict(*quadratic_form(diff, c))}


def paired_statistics(fractions: np.ndarray, truth_onehot: np.ndarray,
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``d_i = c_i − 1[t_i ∈ ·]`` (``[N, B]`` each) -> D = Σ w_i d_i ``[B]`` and S = Σ w_i² d_i d_iᵀ ``[B, B]``."""
    d = np.asarray(fractions, np.float64) - np.asarray(truth_onehot, np.float64)
    w = np.asarray(weights, np.float64)
    wd = w[:, None] * d
    return w @ d, wd.T @ wd


def paired_test(fractions: np.ndarray, truth_onehot: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """χ² = Dᵀ S⁺ D with ndf = rank S (:func:`paired_statistics`)."""
    return chi2_dict(*quadratic_form(*paired_statistics(fractions, truth_onehot, weights)))


def closure(truth: np.ndarray, draws: np.ndarray, weights: np.ndarray, edges: np.ndarray | None = None,
            n_bins: int = N_BINS, n_boot: int = N_BOOT, seed: int = 0,
            extra_cov: np.ndarray | None = None, members: int = 1) -> dict[str, Any]:
    """All closure figures of one observable: ``truth [N]``, ``draws [N, K]``, ``weights [N]``; ``edges`` None:
    ``n_bins`` equal-truth-content bins (see the module docstring); ``members`` ≥ 2: the draws are an ensemble's
    (member m's in columns ``[m·K/M, (m+1)·K/M)``) and the total covariance includes the members' spread.
    JSON-able."""
    t = np.asarray(truth, np.float64)
    x = np.asarray(draws, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    w = np.asarray(weights, np.float64)
    open_ends = edges is None
    if open_ends:
        edges = equal_count_edges(t, w, n_bins)
        x = np.clip(x, edges[0], edges[-1])  # the truth's own range: draws beyond it go to the outermost bins
    edges = np.asarray(edges, np.float64)
    # the one definition of h and of its stated covariance (with the model component for an ensemble)
    unfolded = histogram(x, w, edges, n_boot, seed, members=members)[0]
    onehot = bin_fractions(t, edges)
    out: dict[str, Any] = {"edges": edges.tolist(), "open_ends": open_ends}
    if unfolded.cov_model is not None:
        out |= {"members": members, "error_model": unfolded.error("model").tolist(),
                "error_total": unfolded.error("total").tolist()}
    out |= binned_tests(unfolded.values, w @ onehot, w**2 @ onehot, unfolded.cov_total, extra_cov)
    out["chi2_paired"] = paired_test(bin_fractions(x, edges), onehot, w)
    return out


def closure_all(truth: dict[str, np.ndarray], unfolded: dict[str, np.ndarray], weights: np.ndarray,
                names: tuple[str, ...] = HEADLINE, n_bins: int = N_BINS, n_boot: int = N_BOOT,
                seed: int = 0, members: int = 1) -> dict[str, Any]:
    """:func:`closure` of every observable in ``names`` (``truth[name] [N]``, ``unfolded[name] [N, K]``, as
    :func:`lvd.measurement.observables.derived` gives them) with a summary over them; ``members``: see
    :func:`closure`."""
    table = observable_table()
    result: dict[str, Any] = {"n_bins": n_bins, "bootstrap": n_boot, "observables": {}}
    if members > 1:
        result["members"] = members
    for i, name in enumerate(names):
        try:
            entry = closure(truth[name], unfolded[name], weights, n_bins=n_bins, n_boot=n_boot, seed=seed + i,
                            members=members)
        except DataError as e:
            raise DataError(f"closure of {name}: {e}") from None
        label, unit = table.get(name, (name, ""))
        result["observables"][name] = {"label": label, "unit": unit, **entry}
    result["summary"] = summarise(result["observables"])
    return result


def summarise(observables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per test: how many observables have χ²/ndf ≤ 1.5 and ≤ 3, and the median."""
    out: dict[str, Any] = {"n_observables": len(observables)}
    for test in ("chi2_stat", "chi2_total", "chi2_paired"):
        r = np.array([e[test]["chi2_per_ndf"] for e in observables.values() if e[test]["chi2_per_ndf"] is not None])
        out[test] = {"at_most_1.5": int(np.sum(r <= 1.5)), "at_most_3": int(np.sum(r <= 3)),
                     "median": float(np.median(r)) if len(r) else None}
    return out


def histogram_closure(results: list[Result]) -> dict[str, dict[str, Any]]:
    """The stat and total χ² of ``lvd histogram``'s results against their truth, in the user's binning (the total
    covariance includes the model component of an ensemble's file).

    V_b here is the truth histogram's bootstrap variance (its expectation is Σ_i w_i² 1[t_i ∈ b]; with
    ``--density`` the normalised histogram's, which carries the normalisation). No paired test: it needs the
    events, which the binned results no longer hold."""
    out = {}
    for r in results:
        if r.truth is None:
            continue
        tests = binned_tests(r.unfolded.values, r.truth.values, np.diag(r.truth.cov_stat), r.unfolded.cov_total)
        out[r.spec.name] = {k: tests[k] for k in ("chi2_stat", "chi2_total", "pull_stat", "pull_total", "worst_bin")}
    return out


def format_p(p: float | None) -> str:
    """A p-value as a short string ("–" where undefined)."""
    if p is None:
        return "–"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.0e}" if p > 0 else "0"


def format_ratio(x: float | None) -> str:
    """A χ²/ndf as a short string ("–" where ndf = 0)."""
    return "–" if x is None else f"{x:.2f}"


def summary_line(entry: dict[str, Any]) -> str:
    """One short line: χ²/bin against the sample's statistical precision ("stat.") and χ²/ndf against the
    stated total uncertainty ("total"), with their p-values (docs/histogram.md, "Closure")."""
    s, t = entry["chi2_stat"], entry["chi2_total"]
    text = (f"closure vs truth: χ²/bin {format_ratio(s['chi2_per_ndf'])} (p {format_p(s['p_value'])}) stat., "
            f"χ²/ndf {format_ratio(t['chi2_per_ndf'])} (p {format_p(t['p_value'])}) total")
    left_out = s["unsupported"] + t["unsupported"]
    return text + (f"; {left_out} without variance left out" if left_out else "")
