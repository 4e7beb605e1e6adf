"""The top mass from unfolded events: a likelihood that follows the data, not the training prior.

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

from lvd.data.generate.top_mass import PRIOR_ATTR, top_width
from lvd.data.schema import read_events, source_layout
from lvd.errors import DataError
from lvd.evaluation.observables import derived

GRID_STEP = 0.1  # GeV between the θ values the likelihood is evaluated at


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
    true_mass: float | None = None  # the file's generated mass, when it states one
    calibrated: float | None = None
    calibrated_stat: float | None = None
    grid: list[float] = field(default_factory=list)
    log_likelihood: list[float] = field(default_factory=list)


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


def extract(path: str | os.PathLike, lo: float = 160.0, hi: float = 185.0, n_boot: int = 200, seed: int = 0,
            prior: dict[str, Any] | None = None) -> Extraction:
    """θ̂ and its bootstrap uncertainty from an ``lvd unfold`` output (``prior``: default the file's record)."""
    path = Path(path)
    data = read_events(path, source_layout(path))
    if data.unfolded is None:
        raise DataError(f"{path}: no UNFOLDED group (make it with lvd unfold)")
    if prior is None:
        if PRIOR_ATTR not in data.attrs:
            raise DataError(f"{path}: no {PRIOR_ATTR} attribute: unfold it with a model this lvd version trained")
        prior = data.attrs[PRIOR_ATTR]
        prior = json.loads(prior) if isinstance(prior, str) else prior
    w = data.event_weights().astype(np.float64)
    if not w.sum() > 0:
        raise DataError(f"{path}: the event weights sum to {w.sum():.6g}; the likelihood needs a positive total")
    obs = derived(data.unfolded)
    m1, m2 = obs["m_t_had"], obs["m_t_lep"]  # [N, K]
    grid = np.arange(lo, hi + GRID_STEP / 2, GRID_STEP)
    ll = np.asarray(_event_log_likelihoods(jnp.asarray(m1, jnp.float32), jnp.asarray(m2, jnp.float32),
                                           jnp.asarray(prior["mass"], jnp.float32),
                                           jnp.asarray(prior["width"], jnp.float32), jnp.asarray(grid, jnp.float32)),
                    np.float64)  # [N, G]
    total = w @ ll
    raw = float(_argmax_parabola(grid, total))
    rng = np.random.default_rng(seed)
    boots = _argmax_parabola(grid, (rng.poisson(1.0, (n_boot, len(w))) * w) @ ll) if n_boot > 1 else np.array([raw])
    gen = data.generator if getattr(data, "generator", None) is not None else {}
    true = float(np.mean(gen["top_mass"])) if "top_mass" in gen else (
        float(data.attrs["top_mass"]) if "top_mass" in data.attrs else None)
    return Extraction(file=str(path), raw=raw, stat=float(np.std(boots, ddof=1)) if n_boot > 1 else float("nan"),
                      n_events=data.n_events, samples_per_event=m1.shape[1], true_mass=true,
                      grid=grid.tolist(), log_likelihood=(total - total.max()).tolist())


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
        if len({e.true_mass for e in pts}) < 2:
            raise DataError("calibration needs samples at two or more different generated masses "
                            "(their files state top_mass)")
        x = np.array([e.true_mass for e in pts])
        y = np.array([e.raw for e in pts])
        s = np.array([max(e.stat, 1e-3) for e in pts])
        a = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
        cov = np.linalg.inv(a.T @ a)
        offset, slope = cov @ (a.T @ (y / s))
        return cls(float(offset), float(slope), cov.tolist(),
                   [{"true": float(e.true_mass), "raw": e.raw, "stat": e.stat, "file": e.file} for e in pts])

    def apply(self, e: Extraction) -> Extraction:
        e.calibrated = (e.raw - self.offset) / self.slope
        e.calibrated_stat = e.stat / abs(self.slope)
        return e


def measure(unfolded: list[str | os.PathLike], calibration: list[str | os.PathLike] = (), out: str | os.PathLike | None = None,
            n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Extract θ̂ from each unfolded file, calibrate on ``calibration`` files, write ``top_mass.json`` and the plots."""
    results = [extract(p, n_boot=n_boot, seed=seed) for p in unfolded]
    report: dict[str, Any] = {"method": "posterior-reweighted likelihood (lvd.evaluation.top_mass)",
                              "measurements": results}
    if calibration:
        cal = Calibration.fit([extract(p, n_boot=n_boot, seed=seed + 1) for p in calibration])
        results = [cal.apply(e) for e in results]
        report["calibration"] = cal
    report = json.loads(json.dumps(report, default=lambda o: asdict(o)))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "top_mass.json").write_text(json.dumps(report, indent=1))
        from lvd.evaluation import plots

        plots.style()
        plots.top_mass(out / "top_mass", report)
    return report
