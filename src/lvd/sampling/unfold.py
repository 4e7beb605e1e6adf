"""Unfolding: a trained run + detector-level events -> K parton-level samples per event.

Python API::

    import lvd
    unfolder = lvd.load("runs/lvd-small/version_0")       # best checkpoint, EMA parameters
    samples = unfolder.sample(events, k=16)                # dict particle -> feature -> [N, K]

Randomness is per event: sample k of event i draws from ``fold_in(fold_in(key(seed), i), k)`` where i is the
event's index in the file, so results do not depend on the batch size or the number of devices.

An ensemble (several runs, :func:`unfold_ensemble`) pools K draws per member: draw ``j = m·K + k`` of event i
comes from member m with the key ``fold_in(fold_in(key(seed), i), j)``, so the members' noise differs and the
pooled file of M copies of one run is that run's unfolding with K·M draws.
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
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd import config, distributed, physics
from lvd.config import Options, SampleOptions
from lvd.data.merge import merge_files
from lvd.data.prior import PRIOR_ATTR, PRIOR_HISTOGRAMS_ATTR
from lvd.data.representation import Arrays, Normalizer, layout, raw_arrays
from lvd.data.schema import EventData, EventWriter, FileLayout, count_events, read_events
from lvd.data.unfolded import ACCEPTANCE_GROUP, ENSEMBLE_MEMBERS_ATTR, ENSEMBLE_SAMPLES_ATTR
from lvd.data.vectors import to_awkward
from lvd.distributed import make_mesh
from lvd.errors import OptionsError
from lvd.runs.acceptance import ACCEPTANCE_FOLDER, acceptance_weights, load_pair
from lvd.runs.run import Checkpoint
from lvd.runs.state import EmaParams
from lvd.sampling.samplers import resolve_spacing, solver
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


def draw_keys(seed: int, events: np.ndarray, draws: np.ndarray) -> jax.Array:
    """``[R]`` keys, row r's ``fold_in(fold_in(key(seed), events[r]), draws[r])``: draw ``draws[r]`` of event
    ``events[r]`` (its index in the file), whatever batch, device or process it is sampled in."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i, j: jax.random.fold_in(jax.random.fold_in(base, i), j))(
        jnp.asarray(events, jnp.uint32), jnp.asarray(draws, jnp.uint32))


@functools.lru_cache(maxsize=16)
def _program(graphdef, sampler: str, steps: int, spacing: str) -> Callable:
    """The jitted ``(params, objects, mask, met, keys) -> decay products`` of one model graph and sampler setting,
    shared by every unfolder of that graph (the physics monitor builds one per validation from new parameters)."""
    solve = solver(sampler, steps, spacing)

    def run(params, objects, mask, met, keys):
        return params.model(graphdef).unfold(objects, mask, met, keys, solve)

    return jax.jit(run)


class Unfolder:
    """A trained model ready to sample (EMA parameters), with its options and normalisation.

    Built from parts in memory (e.g. the EMA parameters of a training run: the physics monitor, ``lvd bench``) or
    from a checkpoint (:meth:`load`); either way it samples with the same program and per-event keys.
    """

    def __init__(self, graphdef: nnx.GraphDef, params: EmaParams, normalizer: Normalizer, options: Options,
                 mesh=None, *, checkpoint: Checkpoint | None = None):
        self.graphdef, self.normalizer, self.options = graphdef, normalizer, options
        self.mesh = mesh or make_mesh()
        self.params = jax.device_put(params, NamedSharding(self.mesh, P()))  # replicated: rows split over devices
        self.step = int(jax.device_get(self.params.step))
        # where the parts came from (None: in memory), for an unfolded file's provenance and an ensemble's checks
        self.checkpoint = checkpoint
        self.step_dir = None if checkpoint is None else checkpoint.step_dir

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, mesh=None) -> Unfolder:
        """The EMA parameters of ``checkpoint``, restored onto ``mesh`` (default: all devices)."""
        mesh = mesh or make_mesh()
        graphdef, params = checkpoint.ema(NamedSharding(mesh, P()))
        return cls(graphdef, params, checkpoint.normalizer, checkpoint.options, mesh, checkpoint=checkpoint)

    @classmethod
    def load(cls, run_or_checkpoint: str | os.PathLike, mesh=None) -> Unfolder:
        """A run folder (its best checkpoint) or a checkpoint, ready to sample on ``mesh`` (default: all devices)."""
        return cls.from_checkpoint(Checkpoint.open(run_or_checkpoint), mesh=mesh)

    @property
    def layout(self) -> FileLayout:
        """Where the model's events live in a file (group and feature names of its data options)."""
        return layout(self.options.data)

    def prepare(self, data: EventData) -> Arrays:
        """Normalised detector arrays of ``data`` (truth not needed)."""
        self.normalizer.check(self.options.data)
        return self.normalizer.apply(raw_arrays(data, self.options.data, with_truth=False))

    def sample_arrays(self, arrays: Arrays, k: int, *, sampler: str | None = None, steps: int | None = None,
                      spacing: str | None = None, seed: int | None = None, batch_size: int | None = None,
                      first_event: int = 0, on_batch: Callable[[int], None] | None = None,
                      on_result: Callable[[int, np.ndarray], None] | None = None,
                      sample_offset: int = 0) -> np.ndarray | None:
        """On-shell decay products ``[N, K, 6, 4]`` for normalised ``arrays`` (events numbered from ``first_event``,
        samples from ``sample_offset``: an ensemble member's draws are numbered after those of the members before).

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
        fn = _program(self.graphdef, sampler, int(steps), spacing)
        sharding = NamedSharding(self.mesh, P("data"))
        out = [] if on_result is None else None
        for start in range(0, arrays.n_events, events_per_batch):
            idx = np.arange(start, min(start + events_per_batch, arrays.n_events))
            b = len(idx)
            ev = np.repeat(idx, k)  # [b·K] event of each row
            pad = rows - len(ev)
            ev_in = np.concatenate([ev, np.full(pad, ev[0])])
            sample_k = np.concatenate([np.tile(np.arange(k) + sample_offset, b), np.zeros(pad, int)])
            keys = draw_keys(seed, ev_in + first_event, sample_k)
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
        u = Unfolder.load(run_or_checkpoint, mesh=make_mesh(jax.local_devices()))  # no cross-process traffic
        return _in_parts(lambda part, r: _unfold_rows(u, data_path, part, rows=r, **kw),
                         count_events(data_path, u.layout), out_path)
    return _unfold_rows(unfolder or Unfolder.load(run_or_checkpoint), data_path, out_path, rows=rows, **kw)


def _acceptance(u: Unfolder) -> tuple | None:
    """The run's efficiency and fake classifiers (``RUN/acceptance``, docs/cross_section.md), or None."""
    folder = None if u.checkpoint is None else u.checkpoint.run_dir / ACCEPTANCE_FOLDER
    return load_pair(folder) if folder is not None and (folder / "fakes" / "meta.json").exists() else None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The sampling options of one unfolding, resolved against the (first) run's stored ``sample.*``."""

    k: int
    sampler: str
    steps: int
    spacing: str
    seed: int
    batch_size: int

    @classmethod
    def resolve(cls, u: Unfolder, samples, sampler, steps, spacing, seed, batch_size) -> _Plan:
        s = u.options.sample
        sampler, steps = sampler or s.sampler, steps or s.steps
        plan = cls(samples or s.samples, sampler, steps, resolve_spacing(sampler, spacing or s.spacing),
                   s.seed if seed is None else seed, batch_size or s.batch_size)
        if plan.k <= 0 or plan.steps <= 0:
            raise OptionsError("--samples and --steps must be positive")
        return plan


def _provenance(u: Unfolder, data: EventData, data_path, plan: _Plan) -> dict[str, Any]:
    """The unfolded file's attributes: the input's, what made the draws, and the model's training prior."""
    attrs = {**{a: v for a, v in data.attrs.items() if a not in ("n_events", "source_features", "met_features")},
             "unfolded_by": f"lvd {__version__}", "checkpoint": _source(u),
             "checkpoint_step": u.step, "model": u.options.model.kind, "sampler": plan.sampler,
             "sampler_steps": int(plan.steps), "sampler_spacing": plan.spacing, "samples_per_event": int(plan.k),
             "sampling_seed": int(plan.seed), "input_file": str(Path(data_path).absolute()),
             "unfolded_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    # the model's prior (its training truth), so that it can be divided out of the result afterwards
    meta = {} if u.checkpoint is None else u.checkpoint.meta
    if "top_mass_prior" in meta:
        attrs[PRIOR_ATTR] = json.dumps(meta["top_mass_prior"])
    if "truth_histograms" in meta:
        attrs[PRIOR_HISTOGRAMS_ATTR] = json.dumps(meta["truth_histograms"])
    return attrs


def _source(u: Unfolder) -> str:
    """The checkpoint an unfolder's parameters came from, as the unfolded file states it."""
    return "(in memory)" if u.step_dir is None else str(u.step_dir.absolute())


def _unfold_rows(u: Unfolder, data_path, out_path, *, samples, sampler, steps, spacing, batch_size, seed,
                 on_progress, rows) -> dict[str, Any]:
    plan = _Plan.resolve(u, samples, sampler, steps, spacing, seed, batch_size)
    data = read_events(data_path, u.layout, rows=rows)
    arrays = u.prepare(data)
    attrs = _provenance(u, data, data_path, plan)
    # with the run's classifiers, each event's signal probability and each draw's efficiency go with it
    classifiers, accepted = _acceptance(u), []
    with EventWriter(out_path, attrs=attrs, layout=u.layout) as writer:
        def write(start: int, f: np.ndarray) -> None:
            chunk = data.take(slice(start, start + f.shape[0]))
            chunk.unfolded = daughters_to_particles(f)
            writer.append(chunk)
            if classifiers is not None:
                accepted.append(acceptance_weights(chunk, classifiers, u.options.data))

        u.sample_arrays(arrays, plan.k, sampler=plan.sampler, steps=plan.steps, spacing=plan.spacing, seed=plan.seed,
                        batch_size=plan.batch_size, first_event=0 if rows is None else (rows.start or 0),
                        on_batch=on_progress, on_result=write)
        if accepted:
            writer.add_dataset(f"{ACCEPTANCE_GROUP}/signal", np.concatenate([a[0] for a in accepted]).astype(np.float32))
            writer.add_dataset(f"{ACCEPTANCE_GROUP}/efficiency",
                               np.concatenate([a[1] for a in accepted]).astype(np.float32))
    return attrs


def _in_parts(unfold_rows: Callable[[Path, slice], dict[str, Any]], n_events: int, out_path) -> dict[str, Any]:
    """Each process unfolds its share of the ``n_events`` into a part file, process 0 merges them."""
    k, n = distributed.process_index(), distributed.process_count()
    out_path = Path(out_path)
    part = out_path.with_name(f"{out_path.stem}.part-{k}-of-{n}{out_path.suffix}")
    attrs = unfold_rows(part, distributed.local_slice(n_events))
    distributed.barrier("unfold parts written")
    if distributed.is_main():
        parts = [out_path.with_name(f"{out_path.stem}.part-{i}-of-{n}{out_path.suffix}") for i in range(n)]
        merge_files(out_path, parts)
        for p in parts:
            p.unlink()
    distributed.barrier("unfold merged")
    return attrs


# --- ensembles ----------------------------------------------------------------------------------------------

_CHUNK_BATCHES = 8  # an ensemble samples the file in chunks of this many batches, every member on each chunk


def member_signature(ck: Checkpoint) -> dict[str, Any]:
    """What the members of an ensemble must share: the coordinates the models generate and the detector
    features (and file layout) they read. Statistics, seeds and sampling options may differ."""
    n = ck.normalizer
    return {"parton representation": n.parton_representation, "data.top_line_width": n.top_line_width,
            "data.detector_representation": ck.options.data.detector_representation,
            "detector object features": ", ".join(n.object_features), "MET features": ", ".join(n.met_features),
            **{f"data.{f.name}": getattr(ck.layout, f.name) for f in dataclasses.fields(ck.layout)}}


def check_members(checkpoints: Sequence[Checkpoint], names: Sequence[str | os.PathLike]) -> None:
    """A one-line OptionsError naming the first member whose representation or detector features differ from the
    first member's: their draws are not draws of one quantity from the same inputs."""
    ref = member_signature(checkpoints[0])
    for ck, name in zip(checkpoints[1:], names[1:], strict=True):
        sig = member_signature(ck)
        for what, value in sig.items():
            if value != ref[what]:
                raise OptionsError(f"{name}: {what} {value!r} differs from {names[0]}'s {ref[what]!r}; an ensemble "
                                   "pools runs of one representation and one set of detector features")


def unfold_ensemble(runs: Sequence[str | os.PathLike], data_path: str | os.PathLike, out_path: str | os.PathLike, *,
                    samples: int | None = None, sampler: str | None = None, steps: int | None = None,
                    spacing: str | None = None, batch_size: int | None = None, seed: int | None = None,
                    on_progress: Callable[[int], None] | None = None, unfolders: Sequence[Unfolder] | None = None,
                    rows: slice | None = None) -> dict[str, Any]:
    """Pool an ensemble: every member (run) draws K samples per event, written as K·M draws per event, member m's
    in ``[m·K, (m+1)·K)``, with attributes :data:`ENSEMBLE_MEMBERS_ATTR` and :data:`ENSEMBLE_SAMPLES_ATTR`.

    The sampling options (``sample.*`` and the arguments) are the first run's, for every member. Draw
    ``m·K + k`` of event i uses ``fold_in(fold_in(key(seed), i), m·K + k)`` (module docstring): member m's
    block is exactly what its own :meth:`Unfolder.sample_arrays` gives with ``sample_offset=m·K`` at the same
    K and batch size. Runs whose representations or detector features differ are refused (:func:`check_members`).
    """
    if len(runs) < 2:
        raise OptionsError(f"an ensemble needs at least two runs, got {len(runs)}")
    multi = distributed.process_count() > 1 and rows is None
    if unfolders is not None and len(unfolders) != len(runs):
        raise ValueError(f"{len(unfolders)} unfolders for {len(runs)} runs")
    # refused on the metadata, before any parameters are restored
    checkpoints = [Checkpoint.open(r) for r in runs] if unfolders is None else [u.checkpoint for u in unfolders]
    check_members(checkpoints, runs)
    if unfolders is None:
        mesh = make_mesh(jax.local_devices()) if multi else None  # each process on its own devices
        unfolders = [Unfolder.from_checkpoint(ck, mesh=mesh) for ck in checkpoints]
    kw = dict(samples=samples, sampler=sampler, steps=steps, spacing=spacing, batch_size=batch_size, seed=seed,
              on_progress=on_progress)
    members = [str(Path(r).absolute()) for r in runs]
    if multi:
        return _in_parts(lambda part, r: _unfold_members(unfolders, members, data_path, part, rows=r, **kw),
                         count_events(data_path, unfolders[0].layout), out_path)
    return _unfold_members(unfolders, members, data_path, out_path, rows=rows, **kw)


def _unfold_members(us: Sequence[Unfolder], members: list[str], data_path, out_path, *, samples, sampler, steps,
                    spacing, batch_size, seed, on_progress, rows) -> dict[str, Any]:
    plan = _Plan.resolve(us[0], samples, sampler, steps, spacing, seed, batch_size)
    data = read_events(data_path, us[0].layout, rows=rows)
    arrays = [u.prepare(data) for u in us]  # each member in its own normalisation
    kinds = [u.options.model.kind for u in us]
    attrs = {**_provenance(us[0], data, data_path, plan), "samples_per_event": plan.k * len(us),
             "model": kinds[0] if len(set(kinds)) == 1 else ",".join(kinds),
             ENSEMBLE_MEMBERS_ATTR: members, ENSEMBLE_SAMPLES_ATTR: plan.k,
             "ensemble_checkpoints": [_source(u) for u in us],
             "ensemble_checkpoint_steps": [u.step for u in us]}
    # chunks of whole sample_arrays batches: every member's batches are those of its own single-run unfolding
    chunk = max(1, plan.batch_size // plan.k) * _CHUNK_BATCHES
    first = 0 if rows is None else (rows.start or 0)
    with EventWriter(out_path, attrs=attrs, layout=us[0].layout) as writer:
        for start in range(0, data.n_events, chunk):
            part = slice(start, min(start + chunk, data.n_events))
            draws = [u.sample_arrays(a.take(part), plan.k, sampler=plan.sampler, steps=plan.steps,
                                     spacing=plan.spacing, seed=plan.seed, batch_size=plan.batch_size,
                                     first_event=first + start, sample_offset=m * plan.k)
                     for m, (u, a) in enumerate(zip(us, arrays, strict=True))]
            events = data.take(part)
            events.unfolded = daughters_to_particles(np.concatenate(draws, axis=1))
            writer.append(events)
            if on_progress is not None:
                on_progress(part.stop - part.start)
    return attrs
