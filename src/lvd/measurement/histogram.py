"""Binned unfolded distributions with uncertainties, the numbers an analysis publishes.

For an observable x and bin edges, with event weights w_i (signed: NLO samples have negative ones) and K
posterior samples x_ik per event:

* central value ``h_b = Σ_i w_i c_ib`` with ``c_ib`` the fraction of event i's samples in bin b (the mean of
  the K per-sample histograms);
* posterior uncertainty: the covariance of one draw of the truth-level histogram given the detector data
  (the spread of the per-sample histograms ``h_kb = Σ_i w_i 1[x_ik ∈ b]``), estimated event by event as
  ``K/(K−1) Σ_i w_i² (diag c_i − c_i c_iᵀ)`` (full rank for any K ≥ 2; see :func:`_posterior_covariance`);
* statistical uncertainty: the covariance of ``h_b`` over bootstrap replicas that give every event a
  Poisson(1) multiplicity (its expectation is ``Σ_i w_i² c_ib²`` on the diagonal);
* model uncertainty (ensembles, :func:`ensemble_size`): the covariance of the M members' histograms
  ``h_mb = Σ_i w_i c_ib^(m)`` (each from its own K draws; ddof = 1), not reduced by the part the members' finite
  K explains (docs/histogram.md, "Ensembles"); the central value is their mean, the pooled ``h_b``;
* total: the sum of the covariances (independent sources).

With ``density`` every histogram (each replica) is divided by its own in-range total and by the bin widths
(1/σ dσ/dx), and the posterior covariance is propagated through that normalisation to first order, so the
covariances carry the normalisation's correlations. Values outside the edges
are not counted. Truth, where the file has it, gets the same treatment with one sample per event.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvd import physics
from lvd.data.schema import EventData
from lvd.data.unfolded import (
    ENSEMBLE_MEMBERS_ATTR,
    ENSEMBLE_SAMPLES_ATTR,
    json_attr,
    number_attr,
    positive_weights,
    read_unfolded,
    require_samples,
    samples_per_event,
)
from lvd.errors import DataError, LvdError
from lvd.measurement.observables import OBSERVABLES, derived


@dataclass(frozen=True)
class Spec:
    """One observable to histogram: its name (see :func:`observable_names`), bin ``edges [B + 1]`` and words."""

    name: str
    edges: np.ndarray
    label: str = ""
    unit: str = ""
    description: str = ""

    def __post_init__(self):
        e = np.asarray(self.edges, np.float64)
        if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise LvdError(f"{self.name}: bin edges must be at least two finite, increasing numbers, got {e.tolist()}")
        object.__setattr__(self, "edges", e)
        default_label, default_unit = observable_table().get(self.name, (self.name, ""))
        object.__setattr__(self, "label", self.label or default_label)
        object.__setattr__(self, "unit", self.unit or default_unit)

    @property
    def axis_label(self) -> str:
        return self.label + (f" [{self.unit}]" if self.unit else "")


def observable_table() -> dict[str, tuple[str, str]]:
    """Name -> (label, unit) of every observable :func:`observable_values` knows."""
    table = dict(OBSERVABLES)
    units = {"pt": "GeV", "pz": "GeV", "eta": "", "phi": "rad"}
    for p in physics.DECAY_PRODUCTS:
        table |= {f"{p}_{f}": (f"{p} {f}", unit) for f, unit in units.items()}
    return table


def parse_edges(text: str) -> np.ndarray:
    """``"0,50,100,200"`` (edges) or ``"0:200:8"`` (8 equal bins from 0 to 200) -> edges."""
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            if int(n) < 1:
                raise ValueError
            return np.linspace(float(lo), float(hi), int(n) + 1)
        return np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise LvdError(f"--bins {text!r}: expected edges a,b,c,... or lo:hi:nbins") from None


def load_specs(path: str | os.PathLike) -> list[Spec]:
    """Observables from a YAML file::

        m_ttbar:
          bins: [300, 400, 500, 700, 1000]      # or "300:1000:7"
          label: m(tt̄)                          # optional: label, unit, description
        pt_t_had: {bins: "0:500:10"}
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LvdError(f"{path}: no such observables file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise LvdError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not spec:
        raise LvdError(f"{path}: expected a mapping of observable names to {{bins: ...}}")
    out = []
    for name, entry in spec.items():
        if not isinstance(entry, dict) or "bins" not in entry:
            raise LvdError(f"{path}: observable {name!r} needs 'bins' (a list of edges or 'lo:hi:nbins')")
        unknown = set(entry) - {"bins", "label", "unit", "description"}
        if unknown:
            raise LvdError(f"{path}: observable {name!r}: unknown keys {sorted(unknown)}")
        bins = entry["bins"]
        edges = parse_edges(bins) if isinstance(bins, str) else np.asarray(bins, np.float64)
        out.append(Spec(str(name), edges, str(entry.get("label", "")), str(entry.get("unit", "")),
                        str(entry.get("description", ""))))
    return out


def observable_values(particles: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every observable of the six decay products (``[N]`` truth or ``[N, K]`` samples), with each four-vector
    built on shell from pt, eta, phi and the stated mass (a stored ``energy`` is not used)."""
    return derived({p: {k: v for k, v in feats.items() if k != "energy"} for p, feats in particles.items()})


@dataclass
class Binned:
    """One histogram with its uncertainties: ``values [B]``, covariances ``[B, B]``."""

    values: np.ndarray
    cov_stat: np.ndarray
    cov_posterior: np.ndarray | None = None  # None: one sample per event (truth, or K = 1)
    per_sample: np.ndarray | None = None  # [K, B]
    cov_model: np.ndarray | None = None  # None: not an ensemble
    per_member: np.ndarray | None = None  # [M, B] the members' histograms (ensembles)
    cov_acceptance: np.ndarray | None = None  # None: not a cross section (efficiency and fake classifiers' spread)

    def covariance(self, which: str) -> np.ndarray | None:
        if which == "total":
            return self.cov_total
        return {"stat": self.cov_stat, "posterior": self.cov_posterior, "model": self.cov_model,
                "acceptance": self.cov_acceptance}[which]

    def components(self) -> list[str]:
        """The uncertainty components this histogram has, in the order they are published."""
        return ["stat", *(c for c in ("posterior", "model", "acceptance") if self.covariance(c) is not None)]

    @property
    def cov_total(self) -> np.ndarray:
        return sum((self.covariance(c) for c in self.components()[1:]), start=self.cov_stat)

    def error(self, which: str = "total") -> np.ndarray:
        cov = self.covariance(which)
        return np.zeros_like(self.values) if cov is None else np.sqrt(np.maximum(np.diag(cov), 0.0))


@dataclass
class Result:
    """An observable's unfolded (and truth) histogram."""

    spec: Spec
    unfolded: Binned
    truth: Binned | None
    n_events: int
    samples_per_event: int
    n_boot: int
    density: bool
    sum_w2: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B] Σ w_i² c_ib², the bootstrap's expectation
    members: int = 1  # ensemble members pooled in the samples (1: one run, no model uncertainty)
    # a cross section (lvd.measurement.cross_section): luminosity, phase space, the total and its errors
    cross_section: dict[str, Any] | None = None

    def to_hist(self, which: str = "unfolded", error: str = "total"):
        """A ``hist.Hist`` (Weight storage): the values and the chosen uncertainty squared as variances."""
        import hist

        binned = self.unfolded if which == "unfolded" else self.truth
        h = hist.Hist(hist.axis.Variable(self.spec.edges, name=self.spec.name, label=self.spec.axis_label),
                      storage=hist.storage.Weight())
        view = h.view()
        view.value = binned.values
        view.variance = binned.error(error) ** 2
        return h


def histogram(values: np.ndarray, weights: np.ndarray, edges: np.ndarray, n_boot: int = 200, seed: int = 0,
              density: bool = False, members: int = 1, sample_weights: np.ndarray | None = None
              ) -> tuple[Binned, np.ndarray]:
    """``values [N]`` or ``[N, K]``, ``weights [N]`` -> the :class:`Binned` histogram and Σ w² c² ``[B]``.

    Event i contributes ``w_i c_ib`` to bin b, ``c_ib = (1/K) Σ_k s_ik 1[x_ik ∈ b]`` its draws' share, each draw
    weighted by ``sample_weights [N, K]`` (``s``, default 1; e.g. 1/ε of the draw for a cross section).

    ``n_boot`` ≥ 2: a covariance from fewer replicas is undefined (it would be NaN in every output).
    ``members`` M ≥ 2: the K columns are an ensemble's, member m's in ``[m·K/M, (m+1)·K/M)``, and the histogram
    gets the model covariance (:func:`_model_covariance`)."""
    if n_boot < 2:
        raise LvdError(f"--bootstrap {n_boot}: the statistical covariance needs at least 2 replicas")
    x = np.asarray(values, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n, k = x.shape
    w = np.asarray(weights, np.float64)
    b = len(edges) - 1
    bin_of = np.searchsorted(edges, x, side="right") - 1  # [N, K]; -1 below, B at or above the last edge
    bin_of = np.where(x == edges[-1], b - 1, bin_of)  # the last edge belongs to the last bin, as np.histogram
    inside = (bin_of >= 0) & (bin_of < b) & np.isfinite(x)
    # per-sample histograms [K, B]
    s = np.ones((n, k)) if sample_weights is None else np.broadcast_to(np.asarray(sample_weights, np.float64), (n, k))
    per_sample = np.stack([np.bincount(bin_of[inside[:, j], j], weights=(w * s[:, j])[inside[:, j]], minlength=b)
                           for j in range(k)])
    # events' fractions per bin, as sparse (event, bin, fraction) entries: every replica is one bincount
    code, where = np.unique((np.arange(n)[:, None] * b + bin_of)[inside], return_inverse=True)
    event, column = code // b, code % b
    frac = np.bincount(where, weights=s[inside], minlength=len(code)) / k
    frac2 = np.bincount(where, weights=s[inside] ** 2, minlength=len(code)) / k  # (1/K) Σ_k s_ik² 1[x_ik ∈ b]
    central = np.bincount(column, weights=w[event] * frac, minlength=b)
    sum_w2 = np.bincount(column, weights=(w[event] * frac) ** 2, minlength=b)
    rng = np.random.default_rng(seed)
    replicas = np.stack([np.bincount(column, weights=(w * rng.poisson(1.0, n))[event] * frac, minlength=b)
                         for _ in range(n_boot)])
    cov_post = _posterior_covariance(event, column, w[event], frac, n, b, k, frac2) if k > 1 else None
    if density and cov_post is not None:
        jac = _density_jacobian(central, np.diff(edges))
        cov_post = jac @ cov_post @ jac.T
    scale = _normaliser(edges, density)
    per_member, cov_model = _model_covariance(per_sample, members, scale) if members > 1 else (None, None)
    central, per_sample, replicas = scale(central), scale(per_sample), scale(replicas)
    cov_stat = np.cov(replicas, rowvar=False, ddof=1).reshape(b, b)
    return Binned(values=central, cov_stat=cov_stat, cov_posterior=cov_post, per_sample=per_sample if k > 1 else None,
                  cov_model=cov_model, per_member=per_member), sum_w2


def _model_covariance(per_sample: np.ndarray, members: int, scale) -> tuple[np.ndarray, np.ndarray]:
    """The members' histograms ``[M, B]`` and their covariance ``[B, B]`` (ddof = 1) from the per-sample
    histograms ``[M·K, B]`` (before ``scale``, the density normalisation, which each member gets on its own).

    Member m's histogram is the mean of its K per-sample histograms, ``Σ_i w_i c_ib^(m)``: the mean of the M is the
    pooled central value. Their spread also holds the members' finite-K noise, about ``Σ_post/K`` on average;
    it is kept (a conservative choice: docs/histogram.md, "Ensembles")."""
    total, b = per_sample.shape
    if members < 2 or total % members:
        raise LvdError(f"{total} samples per event cannot be split into {members} ensemble members")
    per_member = scale(per_sample.reshape(members, total // members, b).mean(axis=1))
    return per_member, np.cov(per_member, rowvar=False, ddof=1).reshape(b, b)


def _posterior_covariance(event: np.ndarray, column: np.ndarray, w: np.ndarray, frac: np.ndarray, n: int,
                          b: int, k: int, frac2: np.ndarray | None = None) -> np.ndarray:
    """``[B, B]`` covariance of one draw of the truth-level histogram given the data, event by event.

    Draws of different events are independent, so ``Cov(h_b, h_b') = Σ_i w_i² (δ_bb' p_ib − p_ib p_ib')`` with
    ``p_i`` event i's bin probabilities; its fractions ``c_i`` estimate them, and ``K/(K − 1)`` makes the
    estimate unbiased. Unlike the covariance of the K per-sample histograms (rank ≤ K − 1, noisy when K is not
    far above the number of bins, which inflates any χ² built on it) it has full rank for every K ≥ 2.
    ``event, column, frac``: the sparse entries ``c_ib``; ``w [entries]``: their events' weights. With weighted
    draws (``s_ik``) a draw's contribution to bin b is ``s_ik 1[x_ik ∈ b]``, whose second moment ``frac2`` =
    ``(1/K) Σ_k s_ik² 1[x_ik ∈ b]`` replaces ``c_ib`` on the diagonal (equal to it when every s = 1).
    """
    import scipy.sparse

    f = scipy.sparse.csr_matrix((w * frac, (event, column)), shape=(n, b))  # [N, B]: w_i c_ib
    diag = np.bincount(column, weights=w**2 * (frac if frac2 is None else frac2), minlength=b)  # Σ_i w_i² c_ib
    return k / (k - 1) * (np.diag(diag) - (f.T @ f).toarray())


def _density_jacobian(h: np.ndarray, width: np.ndarray) -> np.ndarray:
    """``∂(h_b / (Σh) / Δ_b) / ∂h_c``: propagates a covariance of counts to one of 1/σ dσ/dx (to first order)."""
    total = h.sum()
    if not total > 0:
        raise DataError("the weights in the histogram range sum to <= 0: a normalised distribution is "
                        "undefined (drop --density, or widen the bins)")
    return (np.eye(len(h)) - np.outer(h, np.ones_like(h)) / total) / (total * width[:, None])


def _normaliser(edges: np.ndarray, density: bool):
    width = np.diff(edges)

    def scale(h: np.ndarray) -> np.ndarray:
        if not density or h.size == 0:
            return h
        total = h.sum(axis=-1, keepdims=True)
        if np.any(total <= 0):
            raise DataError("the weights in the histogram range sum to <= 0: a normalised distribution is "
                            "undefined (drop --density, or widen the bins)")
        return h / total / width

    return scale


def read_for_histograms(path: Path, specs: list[Spec], n_boot: int, what: str
                        ) -> tuple[EventData, dict[str, np.ndarray], np.ndarray, int, int]:
    """The checked unfolded file, its observables, event weights (a positive total, for ``what``), K and the
    ensemble's size, refusing what no histogram can have: fewer than 2 bootstrap replicas or draws, unknown
    observables."""
    if n_boot < 2:
        raise LvdError(f"--bootstrap {n_boot}: the statistical covariance needs at least 2 replicas")
    data: EventData = read_unfolded(path)
    require_samples(data, path, 2, "the posterior uncertainty (the spread of the draws)")
    unf = observable_values(data.unfolded)
    unknown = [s.name for s in specs if s.name not in unf]
    if unknown:
        raise LvdError(f"unknown observable(s) {unknown}; known: {', '.join(sorted(unf))}")
    return data, unf, positive_weights(data, path, what), samples_per_event(data), ensemble_size(data, path) or 1


def histogram_file(path: str | os.PathLike, specs: list[Spec], n_boot: int = 200, seed: int = 0,
                   density: bool = False) -> tuple[list[Result], dict[str, Any]]:
    """Histogram every observable of ``specs`` in an ``lvd unfold`` output; returns the results and a summary."""
    path = Path(path)
    data, unf, w, k, m = read_for_histograms(path, specs, n_boot, "a distribution")
    tru = observable_values(data.truth) if data.truth is not None else None
    results = []
    for i, spec in enumerate(specs):
        unfolded, sum_w2 = histogram(unf[spec.name], w, spec.edges, n_boot, seed + i, density, members=m)
        truth = histogram(tru[spec.name], w, spec.edges, n_boot, seed + 10_000 + i, density)[0] if tru else None
        results.append(Result(spec=spec, unfolded=unfolded, truth=truth, n_events=data.n_events,
                              samples_per_event=k, n_boot=n_boot, density=density, sum_w2=sum_w2, members=m))
    summary = {"file": str(path.absolute()), "n_events": data.n_events, "samples_per_event": k,
               "weight_sum": float(w.sum()), "negative_weights": int((w < 0).sum()), "bootstrap": n_boot,
               "density": density, "has_truth": tru is not None, "model": data.attrs.get("model"),
               "sqrt_s": data.attrs.get("sqrt_s")}
    if m > 1:
        summary |= {"ensemble_members": json_attr(data, path, ENSEMBLE_MEMBERS_ATTR),
                    "ensemble_samples_per_member": k // m}
    return results, summary


def ensemble_size(data: EventData, path: Path | str) -> int | None:
    """The number M of pooled members of an ensemble's unfolded file (None: one run), checked: the attributes
    :data:`ENSEMBLE_MEMBERS_ATTR` (≥ 2 runs) and :data:`ENSEMBLE_SAMPLES_ATTR` (K) come together, K·M = the
    file's samples per event. A malformed pair is a one-line DataError."""
    members = json_attr(data, path, ENSEMBLE_MEMBERS_ATTR)
    per_member = number_attr(data, path, ENSEMBLE_SAMPLES_ATTR, positive=True)
    if members is None and per_member is None:
        return None
    if members is None or per_member is None:
        have, lack = ((ENSEMBLE_MEMBERS_ATTR, ENSEMBLE_SAMPLES_ATTR) if per_member is None
                      else (ENSEMBLE_SAMPLES_ATTR, ENSEMBLE_MEMBERS_ATTR))
        raise DataError(f"{path}: attribute {have} without {lack}; an ensemble's file states both")
    if not isinstance(members, list) or len(members) < 2:
        raise DataError(f"{path}: attribute {ENSEMBLE_MEMBERS_ATTR} must list at least two runs")
    k = samples_per_event(data)
    if per_member != int(per_member) or int(per_member) * len(members) != k:
        raise DataError(f"{path}: {len(members)} ensemble members × {per_member:g} samples each (attributes "
                        f"{ENSEMBLE_MEMBERS_ATTR}, {ENSEMBLE_SAMPLES_ATTR}) but {k} samples per event")
    return len(members)
