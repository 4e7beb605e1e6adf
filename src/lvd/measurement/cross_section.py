"""Differential cross sections from unfolded events, corrected for the selection's efficiency and its fakes.

Unfolding returns K draws ``x_ik`` of the parton-level truth of every *selected* event. The selection lost signal
events (efficiency ``ε(x) = P(selected | x) < 1``) and let non-signal ones in (each event is signal with
probability ``s_i = 1 − f_i``). Weighting each event by ``s_i`` and each draw by ``1/ε(x_ik)`` turns the sum over
selected events into an estimate over every signal event of the phase space:

    dσ/dx |_b = 1/(L Δx_b) · Σ_i w_i s_i (1/K) Σ_k 1[x_ik ∈ b] / ε(x_ik),

with ``L`` the integrated luminosity (fb⁻¹) and ``w_i`` the event weights; the result is in fb per unit of x.
Its expectation is the truth's when ε and f are the true conditional probabilities (E[1[selected]/ε(x)] = 1 for
every x, E[s] is the signal share of the selected events). Where ε vanishes no event can tell about the truth:
the full phase space is then an extrapolation (state a fiducial one).

Uncertainties: statistical (Poisson bootstrap of the events), posterior (the draws' spread, event-wise), and
the acceptance's (the spread over replicas of the classifiers, e.g. trained on bootstrap resamples or other
seeds); each a covariance in the histogram's bins.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvd.data.schema import EventData
from lvd.data.unfolded import (
    number_attr,
    read_acceptance,
    samples_per_event,
)
from lvd.errors import DataError, LvdError
from lvd.measurement.histogram import (
    Binned,
    Result,
    Spec,
    histogram,
    read_for_histograms,
)
from lvd.measurement.phase_space import PhaseSpace

# below it 1/ε is not a measurement: refused inside the phase space (docs/cross_section.md)
MINIMUM_EFFICIENCY = 1e-3


@dataclass
class Acceptance:
    """Per-event signal probabilities ``signal [N]`` (= 1 − f) and per-draw efficiencies ``efficiency [N, K]``;
    optionally ``R`` replicas of both (``signal_replicas [R, N]``, ``efficiency_replicas [R, N, K]``) whose
    spread is the acceptance uncertainty."""

    signal: np.ndarray
    efficiency: np.ndarray
    signal_replicas: np.ndarray | None = None
    efficiency_replicas: np.ndarray | None = None

    def check(self, n: int, k: int, minimum_efficiency: float, inside: np.ndarray | None = None) -> None:
        """Shapes, probabilities in [0, 1], and ε ≥ ``minimum_efficiency`` for the draws ``inside`` the phase
        space (all by default)."""
        for name, a, shape in (("signal probability", self.signal, (n,)), ("efficiency", self.efficiency, (n, k))):
            if np.shape(a) != shape:
                raise LvdError(f"{name}: shape {np.shape(a)}, expected {shape} (events, draws)")
            if not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
                raise DataError(f"{name}: values outside [0, 1] or not finite")
        low = self.efficiency < minimum_efficiency
        if inside is not None:
            low &= inside
        if low.any():
            bad = np.unravel_index(np.argmax(low), self.efficiency.shape)
            raise DataError(f"efficiency {float(self.efficiency[bad]):.3g} at event {bad[0]}, draw {bad[1]}: below "
                            f"{minimum_efficiency:g}, where 1/ε is not a measurement (restrict the phase space)")


def cross_section(values: np.ndarray, weights: np.ndarray, acceptance: Acceptance, luminosity_inv_fb: float,
                  edges: np.ndarray, *, n_boot: int = 200, seed: int = 0, normalised: bool = False,
                  minimum_efficiency: float = MINIMUM_EFFICIENCY, members: int = 1, inside: np.ndarray | None = None
                  ) -> tuple[Binned, dict[str, float]]:
    """dσ/dx (fb per unit of x; with ``normalised`` 1/σ dσ/dx) of ``values [N, K]`` (or ``[N]``) with event
    ``weights [N]`` and ``acceptance``; and the phase space's total (``sigma_fb`` with its ``stat_fb`` and
    ``posterior_fb`` errors). ``inside [N, K]``: the draws in the phase space (the others count nowhere)."""
    if not luminosity_inv_fb > 0:
        raise DataError(f"luminosity {luminosity_inv_fb} fb^-1: must be positive")
    x = np.asarray(values, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n, k = x.shape
    inside = np.ones((n, k), bool) if inside is None else np.asarray(inside, bool).reshape(n, k)
    acceptance.check(n, k, minimum_efficiency, inside)
    event_w = np.asarray(weights, np.float64) * acceptance.signal / luminosity_inv_fb
    draw_w = _inverse(acceptance.efficiency, inside)
    binned, _ = histogram(x, event_w, edges, n_boot, seed, density=normalised, members=members, sample_weights=draw_w)
    width = np.diff(edges)
    if not normalised:  # counts per bin -> per unit of x: a linear map of every component
        binned = _per_unit(binned, width)
    if acceptance.signal_replicas is not None and acceptance.efficiency_replicas is not None:
        reps = []
        for sig, eff in zip(acceptance.signal_replicas, acceptance.efficiency_replicas, strict=True):
            Acceptance(sig, eff).check(n, k, minimum_efficiency, inside)
            h, _ = histogram(x, np.asarray(weights, np.float64) * sig / luminosity_inv_fb, edges, 2, seed,
                             density=normalised, sample_weights=_inverse(eff, inside))
            reps.append(h.values if normalised else h.values / width)
        binned.cov_acceptance = np.cov(np.stack(reps), rowvar=False, ddof=1).reshape(len(width), len(width))
    sigma, stat, post = total(event_w, draw_w, n_boot, seed)
    return binned, {"sigma_fb": sigma, "stat_fb": stat, "posterior_fb": post}


def _inverse(efficiency: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """1/ε for the draws inside the phase space, 0 outside (where ε may be anything, zero included)."""
    return np.divide(1.0, efficiency, out=np.zeros(efficiency.shape), where=inside)


def total(event_weights: np.ndarray, draw_weights: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """The phase space's total ``Σ_i w_i (1/K) Σ_k s_ik`` (no binning) and its statistical (Poisson bootstrap)
    and posterior (the draws' spread, K/(K − 1)) errors."""
    per_event = draw_weights.mean(axis=1)  # [N]
    sigma = float((event_weights * per_event).sum())
    rng = np.random.default_rng([seed, 1])
    boot = np.array([(event_weights * rng.poisson(1.0, len(per_event)) * per_event).sum() for _ in range(n_boot)])
    k = draw_weights.shape[1]
    post = float(np.sqrt((event_weights**2 * draw_weights.var(axis=1, ddof=1)).sum())) if k > 1 else 0.0
    return sigma, float(boot.std(ddof=1)), post


def _per_unit(b: Binned, width: np.ndarray) -> Binned:
    scale = 1.0 / width
    outer = np.outer(scale, scale)
    return Binned(values=b.values * scale, cov_stat=b.cov_stat * outer,
                  cov_posterior=None if b.cov_posterior is None else b.cov_posterior * outer,
                  per_sample=None if b.per_sample is None else b.per_sample * scale,
                  cov_model=None if b.cov_model is None else b.cov_model * outer,
                  per_member=None if b.per_member is None else b.per_member * scale,
                  cov_acceptance=None if b.cov_acceptance is None else b.cov_acceptance * outer)


def cross_section_file(path: str | os.PathLike, specs: list[Spec], *, luminosity_inv_fb: float | None = None,
                       acceptance: Callable[[EventData], tuple[np.ndarray, np.ndarray]] | None = None,
                       n_boot: int = 200, seed: int = 0, normalised: bool = False,
                       phase_space: PhaseSpace | None = None) -> tuple[list[Result], dict[str, Any]]:
    """dσ/dx of every observable of ``specs`` in an unfolded file (``lvd histogram --cross-section``).

    The acceptance comes from the file's ``ACCEPTANCE`` group or, without one, from ``acceptance(data)`` (e.g.
    classifiers applied now, :func:`lvd.runs.acceptance.acceptance_weights`); the luminosity from
    ``luminosity_inv_fb`` or the file's attribute of that name (a simulated sample states its own)."""
    path = Path(path)
    data, unf, w, k, m = read_for_histograms(path, specs, n_boot, "a cross section")
    n = data.n_events
    acc = read_acceptance(path, n, k)
    if acc is None:
        if acceptance is None:
            raise DataError(f"{path}: no ACCEPTANCE group; a cross section needs the efficiency and fake "
                            "classifiers (give --acceptance FOLDER)")
        acc = acceptance(data)
    if luminosity_inv_fb is None:
        if "luminosity_inv_fb" not in data.attrs:
            raise DataError(f"{path}: attribute luminosity_inv_fb missing; give --luminosity (fb^-1)")
        luminosity_inv_fb = number_attr(data, path, "luminosity_inv_fb")
    if not luminosity_inv_fb > 0:
        raise DataError(f"luminosity {luminosity_inv_fb:g} fb^-1: must be positive")
    phase_space = phase_space or PhaseSpace()
    inside = phase_space.mask(data.unfolded)
    where = phase_space.describe()
    results = []
    for i, spec in enumerate(specs):
        binned, tot = cross_section(unf[spec.name], w, Acceptance(*acc), luminosity_inv_fb, spec.edges,
                                    n_boot=n_boot, seed=seed + i, normalised=normalised, members=m, inside=inside)
        results.append(Result(spec=spec, unfolded=binned, truth=None, n_events=n, samples_per_event=k, n_boot=n_boot,
                              density=normalised, members=m,
                              cross_section={"luminosity_inv_fb": luminosity_inv_fb, "phase_space": where, **tot}))
    tot = results[0].cross_section if results else {}
    summary = {"file": str(path.absolute()), "n_events": n, "samples_per_event": k, "weight_sum": float(w.sum()),
               "bootstrap": n_boot, "density": normalised, "has_truth": False, "model": data.attrs.get("model"),
               "sqrt_s": data.attrs.get("sqrt_s"),
               "cross_section": {"luminosity_inv_fb": luminosity_inv_fb, "phase_space": where,
                                 "draws_inside": float(inside.mean()),
                                 "sigma_fb": tot.get("sigma_fb"), "stat_fb": tot.get("stat_fb"),
                                 "posterior_fb": tot.get("posterior_fb"),
                                 "signal_fraction": float(np.average(acc[0], weights=w)),
                                 "mean_efficiency": float(np.average(acc[1].mean(1), weights=w))}}
    return results, summary


def total_closure(path: str | os.PathLike, data: EventData, weights: np.ndarray, n_boot: int = 200, seed: int = 0
                  ) -> dict[str, Any] | None:
    """The phase space's total cross section of an unfolded file with an ``ACCEPTANCE`` group and a luminosity
    (``lvd evaluate``): ``unfolded`` and its ``uncertainty`` (stat ⊕ posterior) in fb, and ``truth`` — the
    generated signal events over the luminosity — when the input file kept them (``GENERATED``). None when the
    file has no acceptance or luminosity."""
    n, k = data.n_events, samples_per_event(data)
    acc = read_acceptance(path, n, k)
    lumi = number_attr(data, path, "luminosity_inv_fb", positive=True)
    if acc is None or lumi is None:
        return None
    Acceptance(*acc).check(n, k, MINIMUM_EFFICIENCY)
    sigma, stat, post = total(weights * acc[0] / lumi, 1.0 / acc[1], n_boot, seed)
    out = {"unfolded": sigma, "uncertainty": float(np.hypot(stat, post)), "stat": stat, "posterior": post,
           "luminosity_inv_fb": lumi, "phase_space": "full", "unit": "fb"}
    source = data.attrs.get("input_file")
    if source and Path(source).exists():
        from lvd.data.channels import SIGNAL
        from lvd.data.schema import read_generated

        generated = read_generated(source)
        if generated is not None:
            signal = generated.channel == SIGNAL
            out["truth"] = float(generated.event_weights()[signal].astype(np.float64).sum() / lumi)
            out["pull"] = (sigma - out["truth"]) / out["uncertainty"] if out["uncertainty"] > 0 else None
    return out

