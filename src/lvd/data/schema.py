"""The lvd event file (docs/format.md): an in-memory container, an atomic chunked writer, and a validating reader.

Layout (per-feature datasets, GeV and radians)::

    INPUTS/Source/MASK                 bool    [N, M]  real object or padding
    INPUTS/Source/<feature>            float32 [N, M]  jets and the lepton in one padded set
    INPUTS/Met/<feature>               float32 [N]
    TRUTH/<particle>/<feature>         float32 [N]     pt, eta, phi, mass; pdgid is int32
    WEIGHTS/weight                     float32 [N]     optional MC event weight
    UNFOLDED/<particle>/<feature>      float32 [N, K]  only in files written by ``lvd unfold``
    GENERATOR/<name>                   float32 [N]     optional per-event generator values (top_mass, top_width,
                                                       channel: int32)
    GENERATED/<particle>/<feature>     float32 [G]     optional: the truth of all G generated events, selected
    GENERATED/pass_selection, channel  bool, int8 [G]  or not, in generation order (``--keep-unselected``)

Group and feature names are a :class:`FileLayout`, so SPANet-style files with other names are read by
configuration. Files are written to a temporary name in the target folder and renamed on success, so an
interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lvd import physics
from lvd.config import DataOptions
from lvd.errors import DataError

FORMAT_VERSION = 1

TRUTH_FEATURES: tuple[str, ...] = ("pt", "eta", "phi", "mass")
_NAMES = DataOptions()  # the group, dataset and feature names a file has by default are the options' defaults


@dataclass(frozen=True)
class FileLayout:
    """Where things live in an event file (see docs/format.md).

    The fields shared with :class:`lvd.config.DataOptions` (groups, feature lists, name mappings) take their
    defaults from it, so lvd's own names are stated once; :func:`lvd.data.representation.layout` copies them
    from a run's options.
    """

    source_group: str = _NAMES.source_group
    met_group: str = _NAMES.met_group
    truth_group: str = _NAMES.truth_group
    weight_dataset: str = _NAMES.weight_dataset
    unfolded_group: str = "UNFOLDED"
    generator_group: str = "GENERATOR"
    generated_group: str = "GENERATED"
    mask_name: str = _NAMES.mask_name
    source_features: tuple[str, ...] = _NAMES.source_features
    met_features: tuple[str, ...] = _NAMES.met_features
    particles: tuple[str, ...] = physics.DECAY_PRODUCTS
    truth_features: tuple[str, ...] = TRUTH_FEATURES
    # Names in the file where they differ from lvd's (SPANet-style files); see DataOptions.feature_names.
    # lvd's own names are tried where the file's are absent, so files lvd writes with such a layout read back.
    feature_names: tuple[str, ...] = _NAMES.feature_names
    particle_names: tuple[str, ...] = _NAMES.particle_names

    def __post_init__(self):
        for what in ("feature_names", "particle_names"):
            name_map(getattr(self, what), what)

    def feature_name(self, name: str) -> str:
        """The file's name of lvd feature ``name``."""
        return name_map(self.feature_names, "feature_names").get(name, name)

    def particle_name(self, name: str) -> str:
        """The file's truth subgroup of lvd particle ``name``."""
        return name_map(self.particle_names, "particle_names").get(name, name)


def name_map(entries: Sequence[str], what: str = "names") -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b", ...}``; a malformed or repeated entry is a one-line DataError."""
    out: dict[str, str] = {}
    for entry in entries:
        key, sep, value = (part.strip() for part in str(entry).partition("="))
        if not sep or not key or not value:
            raise DataError(f"{what}: {entry!r} is not of the form lvd_name=name_in_file")
        if key in out:
            raise DataError(f"{what}: {key!r} is named twice")
        out[key] = value
    return out


DEFAULT_LAYOUT = FileLayout()

Truth = dict[str, dict[str, np.ndarray]]


def decay_p4(particles: Truth, names: Sequence[str] = physics.DECAY_PRODUCTS) -> np.ndarray:
    """Four-vectors ``[..., len(names), 4]`` (float64; px, py, pz, E) of ``particle -> feature -> [...]`` arrays
    (truth ``[N]``, draws ``[N, K]``), built on shell from ``pt, eta, phi, mass``. A stored ``energy`` is not used:
    a four-vector is what a user builds from the momentum and the mass, and an energy that disagreed with them
    would flatter masses built from it."""
    return np.stack([physics.p4_from_ptetaphim(*(np.asarray(particles[p][f], np.float64) for f in TRUTH_FEATURES))
                     for p in names], axis=-2)


@dataclass
class EventData:
    """N events in memory. Arrays are NumPy; ``truth``/``weights``/``unfolded`` may be absent.

    Attributes:
        source: feature -> ``[N, M]`` detector objects (jets and the lepton), padded.
        mask: ``[N, M]`` bool, True for a real object.
        met: feature -> ``[N]``.
        truth: particle -> feature -> ``[N]`` (``pdgid`` int32), or None for real data.
        weights: ``[N]`` MC event weights, or None (all ones).
        unfolded: particle -> feature -> ``[N, K]`` posterior samples, or None.
        attrs: file-level metadata (generator, seed, cut flow, ...).
        generator: name -> ``[N]`` values the generator chose per event (``top_mass``, ``top_width`` in GeV),
            or None.
    """

    source: dict[str, np.ndarray]
    mask: np.ndarray
    met: dict[str, np.ndarray]
    truth: Truth | None = None
    weights: np.ndarray | None = None
    unfolded: Truth | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # last, so that positional construction keeps its meaning
    generator: dict[str, np.ndarray] | None = None

    @property
    def n_events(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_objects(self) -> int:
        return int(self.mask.shape[1])

    def event_weights(self) -> np.ndarray:
        """``[N]`` weights, ones when the file has none."""
        if self.weights is None:
            return np.ones(self.n_events, np.float32)
        return self.weights

    def truth_p4(self, particles: Sequence[str] = physics.DECAY_PRODUCTS) -> np.ndarray:
        """Truth four-vectors ``[N, len(particles), 4]`` in float64 (px, py, pz, E)."""
        if self.truth is None:
            raise DataError("the events carry no TRUTH group (parton-level truth is needed here)")
        return decay_p4(self.truth, particles)

    def take(self, index: np.ndarray | slice) -> EventData:
        """The events at ``index`` (an index array, boolean mask or slice)."""

        def sub(tree):
            if tree is None:
                return None
            if isinstance(tree, np.ndarray):
                return tree[index]
            return {k: sub(v) for k, v in tree.items()}

        return EventData(
            source=sub(self.source),
            mask=self.mask[index],
            met=sub(self.met),
            truth=sub(self.truth),
            weights=sub(self.weights),
            unfolded=sub(self.unfolded),
            attrs=dict(self.attrs),
            generator=sub(self.generator),
        )


@dataclass
class Generated:
    """The parton truth of every generated event, selected or not, in generation order (``GENERATED``).

    The selected events are the rows with ``pass_selection``, in order: the k-th of them is the file's event k.
    ``channel``: the tt̄ decay channel (:data:`lvd.data.channels.CHANNELS`); ``weights`` as ``WEIGHTS``.
    """

    truth: Truth
    pass_selection: np.ndarray
    channel: np.ndarray
    weights: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        return int(self.pass_selection.shape[0])

    def take(self, index: np.ndarray | slice) -> Generated:
        return Generated(truth={p: {k: v[index] for k, v in f.items()} for p, f in self.truth.items()},
                         pass_selection=self.pass_selection[index], channel=self.channel[index],
                         weights=None if self.weights is None else self.weights[index])

    def event_weights(self) -> np.ndarray:
        return np.ones(self.n_events, np.float32) if self.weights is None else self.weights


def concatenate(parts: Sequence[EventData], names: Sequence[str] | None = None) -> EventData:
    """Concatenate events along N. Object axes of different width are zero-padded to the widest.

    Raises DataError (naming ``names[i]`` when given) if the parts carry different datasets.
    """
    if not parts:
        raise DataError("nothing to concatenate")
    names = list(names) if names is not None else [f"part {i}" for i in range(len(parts))]
    width = max(p.n_objects for p in parts)
    ref = _structure(parts[0])
    for p, name in zip(parts[1:], names[1:], strict=True):
        if _structure(p) != ref:
            raise DataError(
                f"{name}: its datasets differ from {names[0]}'s ({sorted(ref ^ _structure(p))[:3]} ...)"
            )

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, 0), (0, width - a.shape[1])]) if a.shape[1] < width else a

    def cat(trees, padded=False):
        if trees[0] is None:
            return None
        if isinstance(trees[0], np.ndarray):
            return np.concatenate([pad(t) if padded else t for t in trees])
        return {k: cat([t[k] for t in trees], padded) for k in trees[0]}

    return EventData(
        source=cat([p.source for p in parts], padded=True),
        mask=cat([p.mask for p in parts], padded=True),
        met=cat([p.met for p in parts]),
        truth=cat([p.truth for p in parts]),
        weights=cat([p.weights for p in parts]),
        unfolded=cat([p.unfolded for p in parts]),
        attrs=dict(parts[0].attrs),
        generator=cat([p.generator for p in parts]),
    )


def _structure(data: EventData) -> set[str]:
    """Dataset paths an EventData would write, for compatibility checks."""
    names = {f"source/{k}" for k in data.source} | {f"met/{k}" for k in data.met}
    for tag, tree in (("truth", data.truth), ("unfolded", data.unfolded)):
        for p, feats in (tree or {}).items():
            names |= {f"{tag}/{p}/{f}" for f in feats}
    if data.weights is not None:
        names.add("weights")
    names |= {f"generator/{k}" for k in data.generator or {}}
    return names


# --- writing ----------------------------------------------------------------------------------

class StagedFile:
    """A temporary path beside ``path`` that becomes ``path`` on :meth:`commit` (an atomic rename)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    staged = StagedFile(path)
    try:
        yield staged.tmp
    except BaseException:
        staged.abort()
        raise
    staged.commit()


class EventWriter:
    """Append chunks of events to a new file; the file appears under its name only on :meth:`close`.

    Use as a context manager: an exception inside the block removes the temporary file::

        with EventWriter("out.h5", attrs={...}) as w:
            for chunk in chunks:
                w.append(chunk)
    """

    def __init__(self, path: str | os.PathLike, attrs: Mapping[str, Any] | None = None,
                 layout: FileLayout = DEFAULT_LAYOUT, chunk_events: int = 4096):
        self.path = Path(path)
        self.layout = layout
        self.attrs = dict(attrs or {})
        self.chunk_events = chunk_events
        self.n_events = 0
        self.n_generated = 0
        self._staged = StagedFile(self.path)
        # No raw-data chunk cache: appends never read a chunk back, and HDF5's default cache keeps partly
        # written chunks of every dataset, growing the resident memory with the file (measured: +20 MB per
        # 100k events of a 60-dataset file, none with it off, and appends twice as fast).
        self._file = h5py.File(self._staged.tmp, "w", rdcc_nbytes=0)
        self._datasets: dict[str, h5py.Dataset] = {}
        self._generated: dict[str, h5py.Dataset] = {}

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Drop everything written; the target path is left untouched."""
        self._file.close()
        self._staged.abort()

    def append(self, data: EventData) -> None:
        """Write ``data``'s events after those already written."""
        lay = self.layout
        arrays: dict[str, np.ndarray] = {f"{lay.source_group}/{lay.mask_name}": data.mask.astype(bool)}
        arrays |= {f"{lay.source_group}/{k}": v.astype(np.float32) for k, v in data.source.items()}
        arrays |= {f"{lay.met_group}/{k}": v.astype(np.float32) for k, v in data.met.items()}
        for group, tree in ((lay.truth_group, data.truth), (lay.unfolded_group, data.unfolded)):
            for particle, feats in (tree or {}).items():
                for k, v in feats.items():
                    dtype = np.int32 if k == "pdgid" else np.float32
                    arrays[f"{group}/{particle}/{k}"] = v.astype(dtype)
        if data.weights is not None:
            arrays[lay.weight_dataset] = data.weights.astype(np.float32)
        for k, v in (data.generator or {}).items():
            # integer labels (the channel) stay integers
            arrays[f"{lay.generator_group}/{k}"] = v.astype(np.int32 if v.dtype.kind in "iu" else np.float32)
        self._append(arrays, self._datasets, self.n_events)
        self.n_events += data.n_events

    def append_generated(self, g: Generated) -> None:
        """Write generated events' truth after those already written (their own row count: ``n_generated``)."""
        group = self.layout.generated_group
        arrays = {f"{group}/pass_selection": g.pass_selection.astype(bool),
                  f"{group}/channel": g.channel.astype(np.int8)}
        for particle, feats in g.truth.items():
            for k, v in feats.items():
                arrays[f"{group}/{particle}/{k}"] = v.astype(np.int32 if k == "pdgid" else np.float32)
        if g.weights is not None:
            arrays[f"{group}/weight"] = g.weights.astype(np.float32)
        self._append(arrays, self._generated, self.n_generated)
        self.n_generated += g.n_events

    def add_dataset(self, name: str, values: np.ndarray) -> None:
        """A whole dataset outside the event groups (e.g. ``ACCEPTANCE/signal``), one row per event written."""
        if values.shape[0] != self.n_events:
            raise DataError(f"{self.path}: dataset {name} has {values.shape[0]} rows, {self.n_events} events written")
        self._file.create_dataset(name, data=values)

    def _append(self, arrays: dict[str, np.ndarray], datasets: dict[str, h5py.Dataset], start: int) -> None:
        if datasets and set(arrays) != set(datasets):
            raise DataError(f"{self.path}: a chunk carries different datasets from the first one")
        for name, a in arrays.items():
            ds = datasets.get(name)
            if ds is None:
                ds = self._file.create_dataset(
                    name, shape=(0, *a.shape[1:]), maxshape=(None, *a.shape[1:]), dtype=a.dtype,
                    # a fixed chunk size: the first append may be small (a generator's first batch)
                    chunks=(self.chunk_events, *a.shape[1:]),
                )
                datasets[name] = ds
            elif ds.shape[1:] != a.shape[1:]:
                raise DataError(f"{self.path}: chunk for {name} has shape {a.shape}, file has {ds.shape}")
            ds.resize(start + len(a), axis=0)
            ds[start:] = a

    def close(self) -> None:
        if not self._datasets:
            self.abort()
            raise DataError(f"{self.path}: no events to write")
        if self._generated:
            selected = int(self._generated[f"{self.layout.generated_group}/pass_selection"][()].sum())
            if selected != self.n_events:
                self.abort()
                raise DataError(f"{self.path}: {selected} generated events pass the selection, "
                                f"{self.n_events} events were written")
        # The file declares its own feature lists, so readers can tell a missing dataset from an absent feature.
        extra = {"n_generated": self.n_generated} if self._generated else {}
        attrs = {"lvd_format": FORMAT_VERSION, **self.attrs, "n_events": self.n_events, **extra,
                 "source_features": [k.rsplit("/", 1)[1] for k in self._datasets
                                     if k.startswith(self.layout.source_group + "/")
                                     and not k.endswith("/" + self.layout.mask_name)],
                 "met_features": [k.rsplit("/", 1)[1] for k in self._datasets
                                  if k.startswith(self.layout.met_group + "/")]}
        for k, v in attrs.items():
            self._file.attrs[k] = _attr_value(v)
        self._file.close()
        self._staged.commit()


def _attr_value(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)) and not (isinstance(v, (list, tuple)) and v and
                                                   all(isinstance(x, (int, float)) for x in v)):
        import json

        return json.dumps(v)
    return v


def write_events(path: str | os.PathLike, data: EventData, layout: FileLayout = DEFAULT_LAYOUT) -> None:
    """Write ``data`` to ``path`` atomically (attrs from ``data.attrs``)."""
    with EventWriter(path, attrs=data.attrs, layout=layout) as w:
        w.append(data)


# --- reading ----------------------------------------------------------------------------------

def read_events(path: str | os.PathLike, layout: FileLayout = DEFAULT_LAYOUT, *,
                require_truth: bool = False, read_truth: bool = True, rows: slice | None = None) -> EventData:
    """Read and validate an event file; every problem raises :class:`DataError` naming file, dataset and event.

    ``rows`` reads only a contiguous range of events (one process's share of a multi-process run);
    event numbers in error messages stay those of the file.
    """
    path = Path(path)
    with open_h5(path) as f:
        return _Reader(f, path, layout, rows).read(require_truth=require_truth, read_truth=read_truth)


def has_generated(path: str | os.PathLike, layout: FileLayout = DEFAULT_LAYOUT) -> bool:
    """Whether a file holds the generated events' truth (``GENERATED``), without reading it."""
    with open_h5(Path(path)) as f:
        return layout.generated_group in f


def read_generated(path: str | os.PathLike, layout: FileLayout = DEFAULT_LAYOUT) -> Generated | None:
    """The ``GENERATED`` group of a file (None when it has none), validated: every decay product's features
    and pdg id, one length, finite; channels known; as many rows passing the selection as the file has events."""
    from lvd.data.channels import CHANNELS

    path = Path(path)
    group = layout.generated_group
    with open_h5(path) as f:
        if group not in f:
            return None
        r = _Reader(f, path, layout)
        passed = r.dataset(f"{group}/pass_selection", kind="bool", ndim=1)
        g = passed.shape[0]
        channel = r.dataset(f"{group}/channel", kind="int", shape=(g,))
        truth = {}
        # the six decay products are required; the generator's own resonances come along
        extra = [p for p, obj in f[group].items() if isinstance(obj, h5py.Group) and p not in layout.particles]
        for p in (*layout.particles, *extra):
            truth[p] = {k: r.dataset(f"{group}/{p}/{k}", shape=(g,)) for k in layout.truth_features}
            truth[p]["pdgid"] = r.dataset(f"{group}/{p}/pdgid", kind="int", shape=(g,))
        weights = r.dataset(f"{group}/weight", shape=(g,)) if f"{group}/weight" in f else None
        n_events = f[f"{layout.source_group}/{layout.mask_name}"].shape[0] if layout.source_group in f else None
    bad = (channel < 0) | (channel >= len(CHANNELS))
    if bad.any():
        raise DataError(f"{path}: dataset {group}/channel has the unknown channel {int(channel[bad][0])} at "
                        f"generated event {int(np.argmax(bad))} (known: 0-{len(CHANNELS) - 1}, {', '.join(CHANNELS)})")
    if n_events is not None and int(passed.sum()) != n_events:
        raise DataError(f"{path}: {int(passed.sum())} rows of {group} pass the selection, the file has "
                        f"{n_events} events")
    return Generated(truth=truth, pass_selection=passed, channel=channel, weights=weights)


def count_events(path: str | os.PathLike, layout: FileLayout = DEFAULT_LAYOUT) -> int:
    """Number of events, from the mask's shape (nothing else is read)."""
    path = Path(path)
    with open_h5(path) as f:
        name = f"{layout.source_group}/{layout.mask_name}"
        if name not in f:
            raise DataError(f"{path}: missing dataset {name}")
        return int(f[name].shape[0])


@contextlib.contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """Open an HDF5 file for reading, turning OS/HDF5 failures into a one-line DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an event file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {_h5_reason(e)}") from None
    try:
        yield f
    finally:
        f.close()


def source_layout(path: str | os.PathLike, base: FileLayout = DEFAULT_LAYOUT) -> FileLayout:
    """``base`` with the Source/Met feature lists the file declares (attrs ``source_features``/``met_features``,
    written by lvd), or else those its groups hold. For tools that accept any file (inspect, merge).

    Falls back to ``base`` where the groups are missing, so that :func:`read_events` reports them.
    """
    path = Path(path)
    with open_h5(path) as f:
        declared_src, declared_met = (_from_attr(f.attrs.get(k)) for k in ("source_features", "met_features"))
        src, met = f.get(base.source_group), f.get(base.met_group)
        if isinstance(declared_src, list):
            src_feats = tuple(declared_src)
        else:
            src_feats = tuple(k for k in src if k != base.mask_name) if isinstance(src, h5py.Group) else ()
        if isinstance(declared_met, list):
            met_feats = tuple(declared_met)
        else:
            met_feats = tuple(met) if isinstance(met, h5py.Group) else ()
    return dataclasses.replace(base, source_features=src_feats or base.source_features,
                               met_features=met_feats or base.met_features)


def _h5_reason(e: Exception) -> str:
    return str(e).split("(")[0].strip().rstrip(",") or type(e).__name__


class _Reader:
    def __init__(self, f: h5py.File, path: Path, layout: FileLayout, rows: slice | None = None):
        self.f, self.path, self.lay, self.rows = f, path, layout, rows
        self.offset = 0 if rows is None else (rows.start or 0)

    def fail(self, msg: str) -> DataError:
        return DataError(f"{self.path}: {msg}")

    def read(self, require_truth: bool, read_truth: bool) -> EventData:
        lay, f = self.lay, self.f
        version = f.attrs.get("lvd_format")
        if version is not None and str(_from_attr(version)) != str(FORMAT_VERSION):
            raise self.fail(f"unknown lvd_format version {_from_attr(version)} (this lvd reads {FORMAT_VERSION})")
        if len(f.keys()) == 0:
            raise self.fail("empty file (no groups or datasets)")
        mask_obj = f.get(f"{lay.source_group}/{lay.mask_name}")
        mask = self.dataset(f"{lay.source_group}/{lay.mask_name}", kind="bool", ndim=2)
        n, m = mask_obj.shape
        if mask.shape[0] == 0:
            raise self.fail(f"no events ({lay.source_group}/{lay.mask_name} has 0 rows)")
        no_object = ~mask.any(axis=1)
        if no_object.any():
            raise self.fail(f"{lay.source_group}/{lay.mask_name}: event {int(np.argmax(no_object)) + self.offset} "
                            "has no real object")
        source = {k: self.feature(lay.source_group, k, shape=(n, m), valid=mask) for k in lay.source_features}
        met = {k: self.feature(lay.met_group, k, shape=(n,)) for k in lay.met_features}
        truth = None
        if read_truth and (require_truth or lay.truth_group in f):
            truth = {}
            # the layout's particles are required; further ones (e.g. the generator's own tops) come along,
            # unless the particles are mapped to subgroups of another structure (SPANet-style files)
            extra = [] if lay.particle_names else [p for p in f.get(lay.truth_group, {}) if p not in lay.particles]
            for p in (*lay.particles, *extra):
                group = f"{lay.truth_group}/{lay.particle_name(p)}"
                if group not in f and f"{lay.truth_group}/{p}" in f:
                    group = f"{lay.truth_group}/{p}"
                truth[p] = {k: self.feature(group, k, shape=(n,)) for k in lay.truth_features}
                pdg = f"{group}/{lay.feature_name('pdgid')}"
                if pdg in f:
                    truth[p]["pdgid"] = self.dataset(pdg, shape=(n,), kind="int")
        weights = None
        if lay.weight_dataset in f:
            weights = self.dataset(lay.weight_dataset, shape=(n,))
        unfolded = None
        if lay.unfolded_group in f:
            unfolded = {}
            for p, grp in f[lay.unfolded_group].items():
                unfolded[p] = {k: self.dataset(f"{lay.unfolded_group}/{p}/{k}", ndim=2, n_rows=n)
                               for k in grp}
        generator = None
        if lay.generator_group in f:
            # integer labels (the channel) stay integers; values are checked finite
            generator = {k: self.dataset(f"{lay.generator_group}/{k}", shape=(n,),
                                         kind="int" if getattr(obj, "dtype", np.dtype(float)).kind in "iu" else "float")
                         for k, obj in f[lay.generator_group].items()}
            for k in _POSITIVE_GENERATOR_VALUES:
                if k in generator and (generator[k] <= 0).any():
                    raise self.fail(f"dataset {lay.generator_group}/{k} is not positive at event "
                                    f"{int(np.argmax(generator[k] <= 0)) + self.offset}")
        attrs = {k: _from_attr(v) for k, v in f.attrs.items()}
        return EventData(source=source, mask=mask, met=met, truth=truth, weights=weights,
                         unfolded=unfolded, attrs=attrs, generator=generator)

    def feature(self, group: str, name: str, **checks) -> np.ndarray:
        """lvd feature ``name`` of ``group`` under the file's name for it (or lvd's); ``phi`` may come from
        ``sin_phi``/``cos_phi``. A feature found under no name is reported under the file's name."""
        file_name = self.lay.feature_name(name)
        for candidate in dict.fromkeys((file_name, name)):
            if f"{group}/{candidate}" in self.f:
                return self.dataset(f"{group}/{candidate}", **checks)
        if name == "phi":
            sin, cos = (f"{group}/{self.lay.feature_name(k)}" for k in ("sin_phi", "cos_phi"))
            if sin in self.f and cos in self.f:
                return np.arctan2(self.dataset(sin, **checks), self.dataset(cos, **checks)).astype(np.float32)
        return self.dataset(f"{group}/{file_name}", **checks)

    def dataset(self, name: str, *, kind: str = "float", shape: tuple[int, ...] | None = None,
                ndim: int | None = None, n_rows: int | None = None,
                valid: np.ndarray | None = None) -> np.ndarray:
        """Read one dataset, checking presence, dtype, shape and finiteness (in ``valid`` entries)."""
        obj = self.f.get(name)
        if obj is None:
            raise self.fail(f"missing dataset {name}")
        if not isinstance(obj, h5py.Dataset):
            raise self.fail(f"{name} is a group, expected a dataset")
        dt = obj.dtype
        ok = {"bool": dt == np.bool_,
              "int": np.issubdtype(dt, np.integer),
              "float": np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer) or dt == np.bool_}[kind]
        if not ok:
            want = {"bool": "bool", "int": "an integer type", "float": "a real number type"}[kind]
            raise self.fail(f"dataset {name} has dtype {dt}, expected {want}")
        if shape is not None and obj.shape != shape:
            raise self.fail(f"dataset {name} has shape {obj.shape}, expected {shape} (events, objects) "
                            f"as in {self.lay.source_group}/{self.lay.mask_name}")
        if ndim is not None and obj.ndim != ndim:
            raise self.fail(f"dataset {name} has {obj.ndim} dimensions, expected {ndim}")
        if n_rows is not None and obj.shape[0] != n_rows:
            raise self.fail(f"dataset {name} has {obj.shape[0]} events, expected {n_rows}")
        try:
            a = obj[()] if self.rows is None else obj[self.rows]
        except (OSError, RuntimeError) as e:
            raise self.fail(f"dataset {name} cannot be read (truncated file?): {_h5_reason(e)}") from None
        if kind == "float":
            a = a.astype(np.float32, copy=False)
            bad = ~np.isfinite(a)
            if valid is not None:
                bad &= valid
            if bad.any():
                where = np.argwhere(bad)[0]
                axis = "sample" if name.startswith(self.lay.unfolded_group + "/") else "object"
                obj_txt = f", {axis} {where[1]}" if a.ndim > 1 else ""
                raise self.fail(f"dataset {name} has NaN/inf at event {where[0] + self.offset}{obj_txt}")
        return a


# GENERATOR values that are masses or widths (GeV)
_POSITIVE_GENERATOR_VALUES = ("top_mass", "top_width")


def _from_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, str) and v[:1] in "[{":
        import json

        with contextlib.suppress(ValueError):
            return json.loads(v)
    return v


def with_attrs(data: EventData, **attrs: Any) -> EventData:
    """A copy of ``data`` with ``attrs`` added."""
    return dataclasses.replace(data, attrs={**data.attrs, **attrs})
