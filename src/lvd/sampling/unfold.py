"""Unfolding: a trained run + detector-level events -> K parton-level samples per event.

Python API::

    import lvd
    unfolder = lvd.load("runs/lvd-small/version_0")       # best checkpoint, EMA parameters
    samples = unfolder.sample(events, k=16)                # dict particle -> feature -> [N, K]

Randomness is per event: sample k of event i draws from ``fold_in(fold_in(key(seed), i), k)`` where i is the
event's index in the file, so results do not depend on the batch size or the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd import config, distributed, physics
from lvd.config import Options, SampleOptions
from lvd.data.merge import merge_files
from lvd.data.prior import PRIOR_ATTR, PRIOR_HISTOGRAMS_ATTR
from lvd.data.representation import Arrays, raw_arrays
from lvd.data.schema import EventData, EventWriter, FileLayout, count_events, read_events
from lvd.data.vectors import to_awkward
from lvd.distributed import make_mesh
from lvd.errors import OptionsError
from lvd.models.samplers import resolve_spacing
from lvd.training.run import Checkpoint
from lvd.version import __version__

UNFOLDED_FEATURES = ("pt", "eta", "phi", "mass", "energy")


def daughters_to_particles(p4: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """On-shell decay products ``[..., 6, 4]`` -> particle -> ``{pt, eta, phi, mass, energy}`` ``[...]`` (float32).

    The mass is each daughter's fixed physical mass and the energy ``√(p² + m²)``: one consistent four-vector
    per daughter, whatever the model's internal representation.
    """
    p4 = physics.daughters_on_shell(np.asarray(p4, np.float64))
    out = {}
    for i, name in enumerate(physics.DECAY_PRODUCTS):
        v = p4[..., i, :]
        out[name] = {"pt": physics.pt(v), "eta": physics.eta(v), "phi": physics.phi(v),
                     "mass": np.full(v.shape[:-1], physics.DAUGHTER_MASS[i]), "energy": v[..., 3]}
    return {p: {k: a.astype(np.float32) for k, a in feats.items()} for p, feats in out.items()}


class Unfolder:
    """A trained model ready to sample (EMA parameters), with its options and normalisation."""

    def __init__(self, checkpoint: Checkpoint, mesh=None):
        self.checkpoint = checkpoint
        self.step_dir, self.options, self.normalizer = checkpoint.step_dir, checkpoint.options, checkpoint.normalizer
        self.mesh = mesh or make_mesh()
        self.graphdef, self.params = checkpoint.ema(NamedSharding(self.mesh, P()))
        self.step = int(jax.device_get(self.params.step))

    @classmethod
    def load(cls, run_or_checkpoint: str | os.PathLike, mesh=None) -> Unfolder:
        """A run folder (its best checkpoint) or a checkpoint, ready to sample on ``mesh`` (default: all devices)."""
        return cls(Checkpoint.open(run_or_checkpoint), mesh=mesh)

    @property
    def layout(self) -> FileLayout:
        return self.checkpoint.layout

    @functools.cache  # noqa: B019  (a few (sampler, steps, spacing) combinations per unfolder)
    def _sampler_fn(self, sampler: str, steps: int, spacing: str | None) -> Callable:
        graphdef = self.graphdef

        def run(params, objects, mask, met, keys):
            return params.model(graphdef).unfold(objects, mask, met, keys, sampler, steps, spacing)

        return jax.jit(run)

    def prepare(self, data: EventData) -> Arrays:
        """Normalised detector arrays of ``data`` (truth not needed)."""
        self.normalizer.check(self.options.data)
        return self.normalizer.apply(raw_arrays(data, self.options.data, with_truth=False))

    def sample_arrays(self, arrays: Arrays, k: int, *, sampler: str | None = None, steps: int | None = None,
                      spacing: str | None = None, seed: int | None = None, batch_size: int | None = None,
                      first_event: int = 0, on_batch: Callable[[int], None] | None = None,
                      on_result: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray | None:
        """On-shell decay products ``[N, K, 6, 4]`` for normalised ``arrays`` (events numbered from ``first_event``).

        With ``on_result(start, daughters [b, K, 6, 4])`` the batches are handed over as they come and nothing is
        kept (for files larger than memory); the return value is then None.
        """
        s = self.options.sample
        sampler, steps = sampler or s.sampler, steps or s.steps
        spacing = resolve_spacing(sampler, spacing or s.spacing)
        seed = s.seed if seed is None else seed
        n_dev = self.mesh.devices.size
        events_per_batch = max(1, (batch_size or s.batch_size) // k)
        rows = events_per_batch * k
        rows += (-rows) % n_dev  # rows must split evenly over devices
        fn = self._sampler_fn(sampler, int(steps), spacing)
        sharding = NamedSharding(self.mesh, P("data"))
        base = jax.random.key(seed)
        out = [] if on_result is None else None
        for start in range(0, arrays.n_events, events_per_batch):
            idx = np.arange(start, min(start + events_per_batch, arrays.n_events))
            b = len(idx)
            ev = np.repeat(idx, k)  # [b·K] event of each row
            pad = rows - len(ev)
            ev_in = np.concatenate([ev, np.full(pad, ev[0])])
            sample_k = np.concatenate([np.tile(np.arange(k), b), np.zeros(pad, int)])
            keys = jax.vmap(lambda i, j: jax.random.fold_in(jax.random.fold_in(base, i), j))(
                jnp.asarray(ev_in + first_event, jnp.uint32), jnp.asarray(sample_k, jnp.uint32))
            put = lambda a: jax.device_put(a, sharding)  # noqa: E731
            x = fn(self.params, put(arrays.objects[ev_in]), put(arrays.mask[ev_in]), put(arrays.met[ev_in]),
                   put(keys))
            f = np.asarray(jax.device_get(x))[: b * k].reshape(b, k, *x.shape[1:])  # [b, K, 6, 4]
            if on_result is None:
                out.append(f)
            else:
                on_result(start, f)
            if on_batch is not None:
                on_batch(b)
        return None if out is None else np.concatenate(out)

    def sample(self, data: EventData, k: int = 1, as_awkward: bool = False, **kw):
        """``particle -> feature -> [N, K]`` samples for the events of ``data``; with ``as_awkward`` an awkward
        array of N events with ``vector`` four-momenta per particle instead (``(ev.b_had + ev.q1 + ev.q2).mass``)."""
        particles = daughters_to_particles(self.sample_arrays(self.prepare(data), k, **kw))
        return to_awkward(particles) if as_awkward else particles


def sample_options(stored: Options, overrides: Sequence[str] = (), **values: Any) -> SampleOptions:
    """A checkpoint's sampling options with ``sample.key=value`` overrides, then explicit ``values`` (None: keep).

    Only ``sample.*`` may change: everything else is what the model was trained with.
    """
    fixed = [o for o in overrides if not o.startswith("sample.")]
    if fixed:
        raise OptionsError(f"override {fixed[0]!r}: unfolding changes only sample.* options (the rest is fixed by "
                           "the checkpoint)")
    opts = config.load_options(None, overrides, defaults=stored)
    sample = dataclasses.replace(opts.sample, **{k: v for k, v in values.items() if v is not None})
    return dataclasses.replace(opts, sample=sample).check().sample


def load(run_or_checkpoint: str | os.PathLike) -> Unfolder:
    """The Python entry point: ``lvd.load(run).sample(events, k)``."""
    return Unfolder.load(run_or_checkpoint)


def unfold_file(run_or_checkpoint: str | os.PathLike, data_path: str | os.PathLike, out_path: str | os.PathLike, *,
                samples: int | None = None, sampler: str | None = None, steps: int | None = None,
                spacing: str | None = None, batch_size: int | None = None, seed: int | None = None,
                on_progress: Callable[[int], None] | None = None, unfolder: Unfolder | None = None,
                rows: slice | None = None) -> dict[str, Any]:
    """Unfold every event of ``data_path`` into ``out_path`` (inputs, truth and weights copied; written atomically).

    ``rows`` unfolds only a range of events (their numbering, hence their random streams, stays the file's).
    With several processes each unfolds its share on its own devices into a part file; process 0 then
    merges the parts into ``out_path``.
    """
    kw = dict(samples=samples, sampler=sampler, steps=steps, spacing=spacing, batch_size=batch_size, seed=seed,
              on_progress=on_progress)
    if distributed.process_count() > 1 and rows is None:
        return _unfold_file_multiprocess(run_or_checkpoint, data_path, out_path, **kw)
    return _unfold_rows(unfolder or Unfolder.load(run_or_checkpoint), data_path, out_path, rows=rows, **kw)


def _unfold_rows(u: Unfolder, data_path, out_path, *, samples, sampler, steps, spacing, batch_size, seed,
                 on_progress, rows) -> dict[str, Any]:
    s = u.options.sample
    k = samples or s.samples
    sampler, steps = sampler or s.sampler, steps or s.steps
    spacing = resolve_spacing(sampler, spacing or s.spacing)
    if k <= 0 or steps <= 0:
        raise OptionsError("--samples and --steps must be positive")
    data = read_events(data_path, u.layout, rows=rows)
    arrays = u.prepare(data)
    attrs = {**{a: v for a, v in data.attrs.items() if a not in ("n_events", "source_features", "met_features")},
             "unfolded_by": f"lvd {__version__}", "checkpoint": str(u.step_dir.absolute()),
             "checkpoint_step": u.step, "model": u.options.model.kind, "sampler": sampler, "sampler_steps": int(steps),
             "sampler_spacing": spacing, "samples_per_event": int(k),
             "sampling_seed": int(s.seed if seed is None else seed), "input_file": str(Path(data_path).absolute()),
             "unfolded_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    # the model's prior (its training truth), so that it can be divided out of the result afterwards
    if "top_mass_prior" in u.checkpoint.meta:
        attrs[PRIOR_ATTR] = json.dumps(u.checkpoint.meta["top_mass_prior"])
    if "truth_histograms" in u.checkpoint.meta:
        attrs[PRIOR_HISTOGRAMS_ATTR] = json.dumps(u.checkpoint.meta["truth_histograms"])
    with EventWriter(out_path, attrs=attrs, layout=u.layout) as writer:
        def write(start: int, f: np.ndarray) -> None:
            chunk = data.take(slice(start, start + f.shape[0]))
            chunk.unfolded = daughters_to_particles(f)
            writer.append(chunk)

        u.sample_arrays(arrays, k, sampler=sampler, steps=steps, spacing=spacing, seed=seed, batch_size=batch_size,
                        first_event=0 if rows is None else (rows.start or 0), on_batch=on_progress, on_result=write)
    return attrs


def _unfold_file_multiprocess(run_or_checkpoint, data_path, out_path, **kw) -> dict[str, Any]:
    k, n = distributed.process_index(), distributed.process_count()
    out_path = Path(out_path)
    part = out_path.with_name(f"{out_path.stem}.part-{k}-of-{n}{out_path.suffix}")
    u = Unfolder.load(run_or_checkpoint, mesh=make_mesh(jax.local_devices()))  # no cross-process traffic
    rows = distributed.local_slice(count_events(data_path, u.layout))
    attrs = _unfold_rows(u, data_path, part, rows=rows, **kw)
    distributed.barrier("unfold parts written")
    if distributed.is_main():
        parts = [out_path.with_name(f"{out_path.stem}.part-{i}-of-{n}{out_path.suffix}") for i in range(n)]
        merge_files(out_path, parts)
        for p in parts:
            p.unlink()
    distributed.barrier("unfold merged")
    return attrs
