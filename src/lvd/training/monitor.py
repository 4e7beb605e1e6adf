"""Physics while training: at every validation, unfold a fixed set of validation events and log what matters.

A flat loss says little about whether the masses are right (docs/design.md §4). :class:`PhysicsMonitor` is a
training hook: at each validation step the EMA model unfolds ``train.physics_events`` validation events
(``train.physics_samples`` samples each, the run's own sampler) and logs, as the ``physics`` split of
``metrics.csv`` and TensorBoard,

* ``w1_m_t_had, w1_m_t_lep, w1_m_W_had, w1_m_W_lep, w1_m_ttbar`` — Wasserstein-1 distances (GeV) of the masses
  built from the unfolded on-shell decay products to the truth's,
* ``w1_nu_pz`` — the same for the neutrino ``p_z``,
* ``in_window_t_had`` (and ``in_window_t_had_truth``) — the fraction of hadronic-top masses within ±15 GeV of
  172.5 GeV,
* ``width_t_had`` (and ``width_t_had_truth``) — half the 16–84 % range of the hadronic-top masses within
  ±30 GeV of 172.5 GeV: the peak width.

Unweighted (the metrics describe the model, not a weighted measurement). The events are unfolded as ``lvd
unfold`` does (:class:`lvd.sampling.unfold.Unfolder`: the same sampling program and per-event keys, with the
seed ``train.seed + MONITOR_KEY_OFFSET``), in one batch on this process's first device, from a host copy of the
EMA parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lvd import physics
from lvd.distributed import make_mesh
from lvd.models.base import Dims
from lvd.sampling.unfold import Unfolder
from lvd.training.hooks import Hook
from lvd.training.trainer import Trainer

MONITOR_KEY_OFFSET = 2_000_003  # the monitor's sampling keys never coincide with training or validation keys
WINDOW = 15.0  # GeV around the top mass for the in-window fraction
WIDTH_WINDOW = 30.0  # GeV around the top mass for the peak width


def _w1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Wasserstein-1 distance of two equally large, equally weighted samples ``[M]``: mean |sorted a − sorted b|."""
    return jnp.mean(jnp.abs(jnp.sort(a) - jnp.sort(b)))


def _half_width(m: jax.Array, centre: float) -> jax.Array:
    """Half the 16–84 % range of the values within ``WIDTH_WINDOW`` of ``centre``."""
    inside = jnp.where(jnp.abs(m - centre) < WIDTH_WINDOW, m, jnp.nan)
    q16, q84 = jnp.nanquantile(inside, jnp.array([0.16, 0.84]))
    return 0.5 * (q84 - q16)


def physics_metrics(unfolded: jax.Array, truth: jax.Array) -> dict[str, jax.Array]:
    """Monitor metrics of unfolded decay products ``[n, K, 6, 4]`` against the truth's ``[n, 6, 4]`` (jit-able)."""
    k = unfolded.shape[1]
    m_u = physics.mass(physics.resonances(unfolded))  # [n, K, 5]
    m_t = physics.mass(physics.resonances(truth))  # [n, 5]
    out = {}
    for i, name in enumerate(physics.RESONANCES):
        out[f"w1_m_{name}"] = _w1(m_u[..., i].reshape(-1), jnp.repeat(m_t[:, i], k))
    out["w1_nu_pz"] = _w1(unfolded[..., 2, 2].reshape(-1), jnp.repeat(truth[:, 2, 2], k))
    t_had = physics.RESONANCES.index("t_had")
    for suffix, m in (("", m_u[..., t_had].reshape(-1)), ("_truth", m_t[:, t_had])):
        out[f"in_window_t_had{suffix}"] = jnp.mean(jnp.abs(m - physics.M_TOP) < WINDOW)
        out[f"width_t_had{suffix}"] = _half_width(m, physics.M_TOP)
    return out


class PhysicsMonitor(Hook):
    """The physics metrics above, at every validation step (``every = train.validate_every``)."""

    def __init__(self, n_events: int, k: int, every: int):
        self.n_events, self.k, self.every = n_events, k, every

    def start(self, t: Trainer) -> None:
        loader = t.val_loader or t.train_loader
        idx = np.asarray(loader.indices[: self.n_events])
        self.active = len(idx) > 0 and t.arrays.x is not None
        if not self.active:
            return
        self.events = t.arrays.take(idx)
        self.mesh = make_mesh(jax.local_devices()[:1])  # one device: the run's mesh may span devices and processes
        dims = Dims.from_normalizer(t.normalizer)
        self.metrics = jax.jit(lambda unfolded, x_true: physics_metrics(unfolded, dims.daughters(x_true)))

    def __call__(self, t: Trainer, step: int) -> None:
        if not self.active:
            return
        params = jax.device_get(t.state.ema())  # a host copy, placed by the unfolder on its one device
        unfolder = Unfolder(t.graphdef, params, t.normalizer, t.opts, mesh=self.mesh)
        n, k = self.events.n_events, self.k
        unfolded = unfolder.sample_arrays(self.events, k, seed=t.opts.train.seed + MONITOR_KEY_OFFSET,
                                          batch_size=n * k)  # [n, K, 6, 4], one batch
        metrics = {k: float(v) for k, v in jax.device_get(self.metrics(unfolded, self.events.x)).items()}
        t.record("physics", step, metrics)
        t.say(f"step {step}: W1 m_t had/lep {metrics['w1_m_t_had']:.2f}/{metrics['w1_m_t_lep']:.2f}, "
              f"m_W had/lep {metrics['w1_m_W_had']:.2f}/{metrics['w1_m_W_lep']:.2f}, ν pz "
              f"{metrics['w1_nu_pz']:.2f} GeV; m_t_had peak width {metrics['width_t_had']:.2f} GeV "
              f"(truth {metrics['width_t_had_truth']:.2f})")


def physics_monitor(opts) -> list[Hook]:
    """The monitor for options ``opts`` (none when ``train.physics_events`` is 0), for ``train(..., hooks=...)``."""
    t = opts.train
    return [PhysicsMonitor(t.physics_events, t.physics_samples, t.validate_every)] if t.physics_events else []
