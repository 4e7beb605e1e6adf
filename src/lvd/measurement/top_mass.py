"""The top mass from unfolded events, calibrated so that it follows the data, not the training prior: a likelihood
built from the posterior draws (``method="likelihood"``) and the calibrated posterior mean (``"mean"``, the default).

For every event the unfolding gives K draws of its two top masses (built from the unfolded on-shell decay
products) from the learned posterior ``p(m₁, m₂ | x)``, which the model learned under the training sample's
prior ``π(m₁, m₂)`` (the generator's Breit–Wigner(s), docs/design.md §8). Bayes' theorem turns posterior draws
into a likelihood for the top mass θ of the data: with ``p(x | m) = p(m | x) p(x) / π(m)``,

    L_i(θ) = ∫ p(x_i | m) BW(m₁; θ) BW(m₂; θ) dm  ∝  Σ_k w_ik BW_h(m₁ₖ; θ) BW_h(m₂ₖ; θ),   w_ik ∝ 1/π(m₁ₖ, m₂ₖ),

(the Breit–Wigner smoothed by a per-event kernel of Silverman's width, see :func:`_event_log_likelihoods`)
and θ̂ maximises ``Σ_i w_i log L_i(θ)`` (the events' weights ``w_i``). ``BW(m; θ)`` is the relativistic
Breit–Wigner the generators use (Cauchy in m², width Γ(θ) from the LO rule of
:mod:`lvd.data.generate.top_mass`); ``π`` is recorded in the model's checkpoint when it is trained (the per-event
masses and widths of its training events) and copied into every unfolded file.

The estimate is only as prior-free as the model: a model trained at one mass has ``π`` a narrow peak, its
posterior draws carry no information beyond it, and θ̂ stays at the training mass; a model trained on a sample
spanning the masses to be measured (``lvd generate ... --top-mass-range``) follows the data. What the
likelihood leaves out (the selection efficiency's dependence on θ, a finite K, an imperfect model) is removed
by calibration: the same extraction on independent samples at known masses gives a line θ̂ = a + b·m_true,
which is inverted. The statistical uncertainty is the spread of θ̂ over Poisson bootstrap replicas of the
events.

That likelihood is exact only as far as the draws are exact posteriors; it multiplies every event's small
mismatch between the model's posterior and the true one, so a model whose draws barely move with the data (the
case when each event says little about m_t and the prior is wide) puts θ̂ wherever the mismatch points. The
default method is therefore the **calibrated posterior mean** (``method="mean"``): the statistic is the
event-weighted mean of the two tops' posterior means, ``S = Σ_i w_i m̄_i / Σ_i w_i`` with
``m̄_i = mean_k (m₁ᵢₖ + m₂ᵢₖ)/2``. Under the model, ``E[S]`` is a smooth, rising function of the data's mass
(exactly ``E_x[E[m | x]]``, which moves by the fraction of the data's shift the record resolves, up to 1 when the
prior is wide and the record precise), and calibration samples unfolded the same way measure that function
where it matters; the shape mismatch of the model's posterior enters the data and the calibration alike. It is
efficient in the linear-Gaussian limit (weak information per event: ``S`` is then a sufficient statistic), which is
where the top mass of unfolded tt̄ events sits; its raw value is not a mass until calibrated.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lvd import config
from lvd.data.generate.top_mass import top_width
from lvd.data.prior import PRIOR_ATTR
from lvd.data.unfolded import (
    mass_prior,
    number_attr,
    positive_weights,
    read_unfolded,
    require_events,
)
from lvd.errors import DataError
from lvd.measurement.observables import derived

GRID_STEP = 0.1  # GeV between the θ values the likelihood is evaluated at
METHODS = config.TOP_MASS_METHODS  # the first is the default (see the module docstring for why)


def breit_wigner(m, mass, width):
    """Relativistic Breit–Wigner density in m (Cauchy in m²): ``2m·(MΓ/π) / ((m² − M²)² + M²Γ²)`` (NumPy or JAX)."""
    mg = mass * width
    return 2.0 * m * mg / np.pi / ((m**2 - mass**2) ** 2 + mg**2)


@dataclass
class Extraction:
    """θ̂ of one unfolded file: the raw maximum-likelihood value and its bootstrap uncertainty (GeV)."""

    file: str
    raw: float
    stat: float
    n_events: int
    samples_per_event: int
    method: str = METHODS[0]
    true_mass: float | None = None  # the file's generated mass, when it states one
    calibrated: float | None = None
    calibrated_stat: float | None = None  # the data's statistical uncertainty through the calibration line
    calibration_stat: float | None = None  # that of the calibration samples (the line's own uncertainty)
    grid: list[float] = field(default_factory=list)
    log_likelihood: list[float] = field(default_factory=list)
    event_mean_edges: list[float] = field(default_factory=list)  # method "mean": weighted histogram of the m̄_i
    event_mean_counts: list[float] = field(default_factory=list)


# Gauss–Hermite nodes and weights: ∫ f(m + √2·h·z) e^{−z²} dz / √π smooths f with a Gaussian of width h
_GH_Z, _GH_W = (np.asarray(a) for a in np.polynomial.hermite.hermgauss(12))


def bandwidth(m: jax.Array) -> jax.Array:
    """Per-event kernel width ``[N]`` for samples ``m [N, K]``: Silverman's 1.06·s·K^(−1/5), s = IQR/1.349 (≥ 0.2)."""
    q25, q75 = jnp.percentile(m, jnp.array([25.0, 75.0]), axis=-1)
    return jnp.maximum(1.06 * (q75 - q25) / 1.349 * m.shape[-1] ** -0.2, 0.2)


@jax.jit
def _event_log_likelihoods(m1, m2, prior_mass, prior_width, grid):
    """``[N, G]`` log L_i(θ_g) up to a constant, from masses ``m1, m2 [N, K]`` and the prior's ``(M_j, Γ_j) [J]``.

    Each posterior draw enters with the weight ``1/π(m₁, m₂)`` (normalised per event: the resulting weighted
    draws describe the event's likelihood in m), and the narrow Breit–Wigner of the data is smoothed with a
    Gaussian kernel of the per-event bandwidth: with K draws an unsmoothed estimate is noisy where draws are
    sparse, and the logarithm turns that noise into a pull toward where draws are dense (the training prior).
    """
    # π(m₁, m₂) = mean_j BW(m₁; M_j, Γ_j) BW(m₂; M_j, Γ_j): the two tops of a training event share its mass
    def prior(a, b):
        return jnp.mean(breit_wigner(a[..., None], prior_mass, prior_width)
                        * breit_wigner(b[..., None], prior_mass, prior_width), axis=-1)

    inv_pi = 1.0 / jnp.maximum(jax.lax.map(lambda ab: prior(*ab), (m1, m2)), 1e-30)  # [N, K]
    weight = inv_pi / jnp.sum(inv_pi, axis=-1, keepdims=True)
    h1, h2 = bandwidth(m1)[:, None, None], bandwidth(m2)[:, None, None]  # [N, 1, 1]
    z, wz = jnp.asarray(_GH_Z), jnp.asarray(_GH_W) / np.sqrt(np.pi)

    def smoothed(m, h, theta, width):  # [N, K]: BW(·; θ) convolved with N(0, h²), at m
        return jnp.sum(wz * breit_wigner(m[..., None] + np.sqrt(2.0) * h * z, theta, width), axis=-1)

    def at(theta):
        width = top_width(theta)
        lik = smoothed(m1, h1, theta, width) * smoothed(m2, h2, theta, width)
        return jnp.log(jnp.maximum(jnp.sum(weight * lik, axis=-1), 1e-300))  # [N]

    return jax.lax.map(at, grid).T  # [N, G]


def _argmax_parabola(grid: np.ndarray, ll: np.ndarray) -> np.ndarray:
    """Maximum of ``ll [..., G]`` on ``grid [G]``, refined by a parabola through the best point and its neighbours."""
    i = np.clip(np.argmax(ll, axis=-1), 1, len(grid) - 2)
    y0, y1, y2 = (np.take_along_axis(ll, (i + d)[..., None], -1)[..., 0] for d in (-1, 0, 1))
    curvature = y0 - 2 * y1 + y2
    shift = np.where(curvature < 0, 0.5 * (y0 - y2) / np.where(curvature < 0, curvature, -1.0), 0.0)
    return grid[i] + np.clip(shift, -1, 1) * (grid[1] - grid[0])


def _weighted_mean_with_bootstrap(x: np.ndarray, w: np.ndarray, n_boot: int, rng) -> tuple[float, np.ndarray]:
    """``Σ w x / Σ w`` and its values over Poisson bootstrap replicas of the events."""
    value = float(w @ x / w.sum())
    if n_boot < 2:
        return value, np.array([value])
    pw = rng.poisson(1.0, (n_boot, len(w))) * w
    total = pw.sum(axis=1)
    kept = total > 0  # a replica that drew no weight (likely only for a handful of events) defines no mean
    return value, (pw[kept] @ x) / total[kept]


def extract(path: str | os.PathLike, lo: float = 160.0, hi: float = 185.0, n_boot: int = 200, seed: int = 0,
            prior: dict[str, Any] | None = None, method: str = METHODS[0]) -> Extraction:
    """θ̂ (``method`` ``"mean"``: the posterior-mean statistic S; ``"likelihood"``: the maximum of the
    prior-divided likelihood on [lo, hi]) and its bootstrap uncertainty from an ``lvd unfold`` output
    (``prior``: default the file's record)."""
    if method not in METHODS:
        raise DataError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    path = Path(path)
    data = read_unfolded(path)
    require_events(data, path, 2, f"the {method} and its bootstrap uncertainty")
    if method == "likelihood" and prior is None:
        prior = mass_prior(data, path, PRIOR_ATTR)
        if prior is None:
            raise DataError(f"{path}: no {PRIOR_ATTR} attribute: unfold it with a model this lvd version trained")
    w = positive_weights(data, path, f"the {method}")
    obs = derived(data.unfolded)
    m1, m2 = obs["m_t_had"], obs["m_t_lep"]  # [N, K]
    gen = data.generator if getattr(data, "generator", None) is not None else {}
    true = float(np.mean(gen["top_mass"])) if "top_mass" in gen else number_attr(data, path, "top_mass", True)
    rng = np.random.default_rng(seed)
    common = dict(file=str(path), n_events=data.n_events, samples_per_event=m1.shape[1], method=method,
                  true_mass=true)
    if method == "mean":
        m_bar = 0.5 * (np.mean(m1, axis=1, dtype=np.float64) + np.mean(m2, axis=1, dtype=np.float64))  # [N]
        raw, boots = _weighted_mean_with_bootstrap(m_bar, w, n_boot, rng)
        counts, edges = np.histogram(m_bar, bins=np.arange(120.0, 230.5, 1.0), weights=w)
        return Extraction(raw=raw, stat=float(np.std(boots, ddof=1)) if n_boot > 1 else float("nan"),
                          event_mean_edges=edges.tolist(), event_mean_counts=counts.tolist(), **common)
    grid = np.arange(lo, hi + GRID_STEP / 2, GRID_STEP)
    ll = np.asarray(_event_log_likelihoods(jnp.asarray(m1, jnp.float32), jnp.asarray(m2, jnp.float32),
                                           jnp.asarray(prior["mass"], jnp.float32),
                                           jnp.asarray(prior["width"], jnp.float32), jnp.asarray(grid, jnp.float32)),
                    np.float64)  # [N, G]
    total = w @ ll
    raw = float(_argmax_parabola(grid, total))
    boots = _argmax_parabola(grid, (rng.poisson(1.0, (n_boot, len(w))) * w) @ ll) if n_boot > 1 else np.array([raw])
    return Extraction(raw=raw, stat=float(np.std(boots, ddof=1)) if n_boot > 1 else float("nan"),
                      grid=grid.tolist(), log_likelihood=(total - total.max()).tolist(), **common)


@dataclass
class Calibration:
    """``raw = offset + slope · true`` fitted (weighted least squares) on extractions at known masses."""

    offset: float
    slope: float
    cov: list[list[float]]  # of (offset, slope)
    points: list[dict[str, float]]

    @classmethod
    def fit(cls, extractions: list[Extraction]) -> Calibration:
        pts = [e for e in extractions if e.true_mass is not None]
        unknown = [e.file for e in extractions if e.true_mass is None]
        if unknown:
            raise DataError(f"{unknown[0]}: a calibration sample must state its generated top mass (GENERATOR/"
                            "top_mass or the attribute top_mass; make it with lvd generate --top-mass M)")
        if len({e.true_mass for e in pts}) < 2:
            raise DataError("calibration needs samples at two or more different generated masses; "
                            f"{', '.join(e.file for e in pts)} all state {pts[0].true_mass:g} GeV" if pts else
                            "calibration needs samples at two or more different generated masses")
        x = np.array([e.true_mass for e in pts])
        y = np.array([e.raw for e in pts])
        s = np.array([max(e.stat, 1e-3) for e in pts])
        a = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
        cov = np.linalg.inv(a.T @ a)
        offset, slope = cov @ (a.T @ (y / s))
        return cls(float(offset), float(slope), cov.tolist(),
                   [{"true": float(e.true_mass), "raw": e.raw, "stat": e.stat, "file": e.file} for e in pts])

    def apply(self, e: Extraction) -> Extraction:
        """Invert the line: θ = (raw − a)/b, with the data's error σ/|b| and, apart, the line's own error
        (the (a, b) covariance propagated through the inversion)."""
        e.calibrated = (e.raw - self.offset) / self.slope
        e.calibrated_stat = e.stat / abs(self.slope)
        grad = np.array([-1.0, -e.calibrated]) / self.slope  # ∂θ/∂(a, b)
        e.calibration_stat = float(np.sqrt(grad @ np.asarray(self.cov) @ grad))
        return e


METHOD_NAMES = {"mean": "calibrated posterior mean (lvd.measurement.top_mass)",
                "likelihood": "posterior-reweighted likelihood (lvd.measurement.top_mass)"}


def measure(unfolded: list[str | os.PathLike], calibration: list[str | os.PathLike] = (), out: str | os.PathLike | None = None,
            n_boot: int = 200, seed: int = 0, method: str = METHODS[0]) -> dict[str, Any]:
    """Extract θ̂ from each unfolded file, calibrate on ``calibration`` files, write ``top_mass.json`` and the plots.

    With the files' generated masses known and at least two of them different, the report also states the
    closure: the slope of the calibrated values against the generated masses (1 for an unbiased method)."""
    if n_boot < 2:
        raise DataError(f"bootstrap {n_boot}: the statistical uncertainty needs at least 2 replicas")
    results = [extract(p, n_boot=n_boot, seed=seed, method=method) for p in unfolded]
    report: dict[str, Any] = {"method": METHOD_NAMES[method], "measurements": results}
    if calibration:
        cal = Calibration.fit([extract(p, n_boot=n_boot, seed=seed + 1, method=method) for p in calibration])
        results = [cal.apply(e) for e in results]
        report["calibration"] = cal
        known = [e for e in results if e.true_mass is not None]
        if len({e.true_mass for e in known}) >= 2:
            closure = Calibration.fit([Extraction(e.file, e.calibrated, e.calibrated_stat, e.n_events,
                                                  e.samples_per_event, method, e.true_mass) for e in known])
            report["closure"] = {"slope": closure.slope, "slope_stat": float(np.sqrt(closure.cov[1][1])),
                                 "bias_at_172.5": closure.offset + (closure.slope - 1.0) * 172.5}
    report = json.loads(json.dumps(report, default=lambda o: asdict(o)))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "top_mass.json").write_text(json.dumps(report, indent=1))
        from lvd.measurement import plots

        plots.style()
        plots.top_mass(out / "top_mass", report)
    return report
