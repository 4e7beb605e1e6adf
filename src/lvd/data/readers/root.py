"""ROOT trees in, lvd files out: opening with one-line errors, chunked reading, and the streaming conversion.

A reader (Delphes, NanoAOD) turns each chunk of tree entries into a :class:`Chunk` (objects, MET, weights,
generator record); :func:`convert` selects, extracts the truth, and appends the surviving events to an
:class:`~lvd.data.schema.EventWriter`, so memory is bounded by the chunk size whatever the file size.

NaN/inf (or a value beyond float32, the precision written) never reaches the output. A per-event value
that makes the event meaningless or the sample's normalisation wrong, MET or a weight, refuses the file
(:func:`require_finite`), found by :func:`prepare` before any object is read. An object value (pT, η, φ,
mass, charge, a b-tag discriminant or isolation, of an object the reader identifies) or a truth value of
the generator record drops the event, which then fails the selection's first cut; such events are counted
by branch in ``attrs['dropped_nonfinite']`` (rare reconstruction or generator pathologies should not
throw away a whole sample, nor be hidden).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lvd.data.generate.detector import cutflow_of
from lvd.data.readers import hep_module, selection, truth
from lvd.data.readers.selection import Cuts, Jagged
from lvd.data.schema import EventData, EventWriter
from lvd.errors import DataError


@dataclass
class Chunk:
    """Consecutive entries of a tree: ``jets``, ``leptons`` (:func:`selection.select`'s fields), ``met``
    (met, phi ``[n]``, finite), ``weights [n]`` (finite) or None, the generator ``record`` or None;
    ``nonfinite``: branch -> ``[n]`` events in which an object has a NaN/inf value of that branch."""

    jets: Jagged
    leptons: Jagged
    met: dict[str, np.ndarray]
    weights: np.ndarray | None
    record: truth.Record | None
    nonfinite: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return self.jets.n_events


class Source(Protocol):
    """What :func:`convert` reads: the input's description and its chunks."""

    path: Path
    n_entries: int
    has_record: bool

    def chunks(self, step: int, with_record: bool = True) -> Iterator[Chunk]: ...

    def scan(self, step: int, with_record: bool = True) -> None:
        """Read only the per-event values and the multiplicities; refuse what :meth:`chunks` would refuse."""

    def attrs(self) -> dict[str, Any]: ...


# --- opening and reading ----------------------------------------------------------------------------

def open_tree(path: str | os.PathLike, name: str, hint: str = ""):
    """The TTree ``name`` of a ROOT file, or a one-line DataError (missing, unreadable, no such tree, empty)."""
    uproot = hep_module("uproot")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a ROOT file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        # plain reads, not a memory map: mapped pages of a large file would count in the resident memory
        # and grow with the file, not with the chunk
        f = uproot.open(path, handler=uproot.source.file.MultithreadedFileSource, array_cache=None)
        names = {k.split(";")[0]: c for k, c in f.classnames().items()}
    except Exception as e:  # noqa: BLE001  (uproot raises many kinds for a damaged file; all mean the same here)
        raise DataError(f"{path}: not a readable ROOT file (truncated or corrupt?): {_reason(e)}") from None
    trees = sorted(k for k, c in names.items() if c.startswith("TTree") or c.startswith("TNtuple"))
    if name not in names:
        found = ", ".join(trees) if trees else "no trees"
        raise DataError(f"{path}: no tree '{name}' (the file has {found}){hint}")
    if not names[name].startswith("TTree"):
        raise DataError(f"{path}: '{name}' is a {names[name]}, not a TTree (lvd reads TTrees only)")
    try:
        tree = f[name]
        n = tree.num_entries
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: tree '{name}' cannot be read (truncated or corrupt?): {_reason(e)}") from None
    if n == 0:
        raise DataError(f"{path}: tree '{name}' has no events")
    return tree


def require(tree, path: Path, branches: Sequence[str], what: str) -> None:
    """A one-line DataError naming the first of ``branches`` the tree lacks."""
    have = set(tree.keys(recursive=True, full_paths=False)) | set(tree.keys(recursive=True))
    for b in branches:
        if b not in have:
            raise DataError(f"{path}: tree '{tree.name}' has no branch '{b}' ({what})")


def check_complete(tree, path: Path, branches: Sequence[str]) -> None:
    """A one-line DataError if a basket of ``branches`` lies beyond the end of the file (a truncated copy),
    found from the baskets' positions alone, before anything is read."""
    size = path.stat().st_size
    for name in branches:
        b = tree[name]
        n = b._num_normal_baskets  # baskets written to the file (embedded ones travel with the tree)
        seek = np.asarray(b.member("fBasketSeek")[:n], np.int64)
        nbytes = np.asarray(b.member("fBasketBytes")[:n], np.int64)
        if n and (seek + nbytes).max() > size:
            raise DataError(f"{path}: truncated file: branch '{name}' has data up to byte "
                            f"{int((seek + nbytes).max()):,}, the file has {size:,} bytes")


def has_branch(tree, name: str) -> bool:
    return name in set(tree.keys(recursive=True, full_paths=False)) | set(tree.keys(recursive=True))


def check_types(tree, path: Path, collections: Sequence[str], per_event: Sequence[str] = (),
                integers: Sequence[str] = ()) -> None:
    """A one-line DataError, from the declared types alone (nothing is read), for a branch of non-numbers,
    a collection member holding one value per event, or floats where integers are needed (ids, bit masks,
    mother indices: a cast would invent them)."""
    for name in (*collections, *per_event):
        per_object, dtype = _declared(tree[name])
        if dtype is None:
            continue  # a type uproot cannot tell before reading: checked as it is read
        if dtype.kind not in "biuf":
            raise DataError(f"{path}: branch '{name}' holds {dtype} values, expected numbers")
        if name in integers and dtype.kind == "f":
            raise DataError(f"{path}: branch '{name}' holds floating-point values ({dtype}), expected integers")
        if name in collections and not per_object:
            raise DataError(f"{path}: branch '{name}' holds one value per entry, expected a collection "
                            "(one value per object)")


def _declared(branch) -> tuple[bool, np.dtype | None]:
    """(several values per entry?, element dtype) as uproot interprets the branch; dtype None if unknown."""
    interpretation = hep_module("uproot").interpretation
    try:
        interp = branch.interpretation
    except Exception:  # noqa: BLE001  (an unknown streamer: the read reports it)
        return False, None
    per_object = isinstance(interp, interpretation.jagged.AsJagged)
    content = interp.content if per_object else interp
    if not isinstance(content, interpretation.numerical.AsDtype):
        return per_object, None
    dtype = content.to_dtype
    if dtype.subdtype is not None:  # a fixed-size array per entry
        return True, dtype.subdtype[0]
    return per_object, dtype


def scan(tree, path: Path, per_event: dict[str, str], groups: Sequence[Sequence[str]], step: int) -> None:
    """Read only the ``per_event`` branches (branch -> why it must be finite) and the counters of each group
    of collection members: a NaN/inf, an empty one-value collection or members of unequal multiplicity
    refuse the file before any object is read (a few bytes per entry)."""
    counters = _counters(tree, groups)
    names = list(dict.fromkeys([*per_event, *(c for group in counters for c in group.values())]))
    for start, arrays in iterate(tree, path, names, step):
        for branch, why in per_event.items():
            per_event_values(arrays, path, branch, start, why)
        for group in counters:
            _same_counts({m: _numbers(arrays[c], path, c, np.int64) for m, c in group.items()}, path, start)


def _counters(tree, groups: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    """member -> its counter branch, for each group whose members do not share one (written apart)."""
    out = []
    for group in groups:
        counter = {}
        for member in group:
            c = tree[member].count_branch
            if c is None or not isinstance(c.interpretation, hep_module("uproot").interpretation.numerical.AsDtype):
                break  # counts kept elsewhere (fixed size, nested object): compared as the chunks are read
            counter.setdefault(c.name, member)
        else:
            if len(counter) > 1:
                out.append({member: c for c, member in counter.items()})
    return out


def iterate(tree, path: Path, branches: Sequence[str], step: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(first entry, branch -> awkward array)`` for consecutive ``step``-entry chunks; damaged baskets give
    a DataError."""
    start = 0
    it = tree.iterate(filter_name=list(branches), step_size=step, library="ak")
    while True:
        try:
            arrays = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001  (decompression, deserialisation, short reads ...)
            raise DataError(f"{path}: tree '{tree.name}' cannot be read after entry {start} "
                            f"(truncated or corrupt?): {_reason(e)}") from None
        missing = [b for b in branches if b not in arrays.fields]
        if missing:
            raise DataError(f"{path}: tree '{tree.name}': branch '{missing[0]}' could not be read")
        yield start, {b: arrays[b] for b in branches}
        start += len(arrays)


def flat(array, path: Path, branch: str, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A jagged awkward array ``[n][var]`` -> ``(counts [n], values [total])``."""
    ak = hep_module("awkward")
    try:
        counts = np.asarray(ak.num(array, axis=1), np.int64)
        values = ak.flatten(array, axis=1)
    except Exception:  # noqa: BLE001  (one value per entry where a collection was expected: an AxisError)
        raise DataError(f"{path}: branch '{branch}' is not a collection (one list of numbers per entry; "
                        f"it holds {array.type})") from None
    return counts, _numbers(values, path, branch, dtype)


def _numbers(array, path: Path, branch: str, dtype=np.float64) -> np.ndarray:
    """``[n]`` numbers of a one-dimensional awkward array, or the one-line DataError naming the branch."""
    ak = hep_module("awkward")
    try:
        return np.asarray(ak.to_numpy(array), dtype)
    except Exception:  # noqa: BLE001  (deeper nesting, records, strings: a structure lvd does not read)
        raise DataError(f"{path}: branch '{branch}' does not hold plain numbers (it holds {array.type})") from None


def first_of_each(array, path: Path, branch: str, start: int = 0) -> np.ndarray:
    """``[n]`` from a branch that holds one entry per event, flat or as a one-element collection
    (Delphes' MissingET and Event); ``start``: the chunk's first entry, for the messages."""
    if array.ndim == 1:
        return _numbers(array, path, branch)
    counts, values = flat(array, path, branch)
    if (counts < 1).any():
        raise DataError(f"{path}: branch '{branch}' is empty in entry {start + int(np.argmax(counts < 1))}")
    return values[np.cumsum(counts) - counts]


def must_be_finite(met: Iterable[str], weight: str | None) -> dict[str, str]:
    """Per-event branch -> why a NaN/inf in it refuses the file (for :func:`scan`, :func:`per_event_values`)."""
    why = dict.fromkeys(met, "a missing transverse momentum must be a finite number")
    return why | ({weight: "an event weight must be a finite number"} if weight else {})


def per_event_values(arrays: dict[str, Any], path: Path, branch: str, start: int, why: str) -> np.ndarray:
    """:func:`first_of_each` of a branch whose values must be finite (MET, weights), or the DataError."""
    values = first_of_each(arrays[branch], path, branch, start)
    require_finite(values, path, branch, start, why)
    return values


def require_finite(values: np.ndarray, path: Path, branch: str, start: int, why: str) -> None:
    """The one-line DataError for the first NaN/inf (in float32, as written) of a per-event branch."""
    bad = _nonfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: branch '{branch}' is {_number(values[i])} at entry {start + i}: {why}")


def nonfinite(objects: Jagged, names: dict[str, str]) -> dict[str, np.ndarray]:
    """branch -> ``[n]`` events with an object whose field from that branch (``names``: field -> branch) is
    NaN/inf in float32; integer fields cannot be."""
    out = {}
    for name, branch in names.items():
        v = objects.fields.get(name)
        if v is not None and v.dtype.kind == "f":
            bad = _nonfinite(v)
            if bad.any():
                out[branch] = np.bincount(objects.event[bad], minlength=objects.n_events) > 0
    return out


def _nonfinite(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range becomes inf: refused too
        return ~np.isfinite(np.asarray(values).astype(np.float32))


def _number(v) -> str:
    v = float(v)
    return "NaN" if np.isnan(v) else f"{v:g}" if np.isinf(v) else f"{v:g} (beyond float32's range)"


def jagged(arrays: dict[str, Any], names: dict[str, str], path: Path, dtypes: dict[str, Any] | None = None,
           start: int = 0) -> Jagged:
    """One collection from several branches of equal multiplicity: ``names`` maps field -> branch."""
    counts, fields = {}, {}
    for name, branch in names.items():
        counts[branch], fields[name] = flat(arrays[branch], path, branch, (dtypes or {}).get(name, np.float64))
    _same_counts(counts, path, start)
    return Jagged(next(iter(counts.values())), fields)


def _same_counts(counts: dict[str, np.ndarray], path: Path, start: int) -> None:
    """The one-line DataError for branches of one collection (branch -> ``[n]`` multiplicities) that differ."""
    (first, ref), *rest = counts.items()
    for branch, c in rest:
        if not np.array_equal(c, ref):
            bad = int(np.argmax(c != ref))
            raise DataError(f"{path}: branch '{branch}' has {int(c[bad])} values in entry {start + bad}, "
                            f"'{first}' has {int(ref[bad])}")


def find_record(tree, path: Path, branches: dict[str, str]) -> bool:
    """Whether the tree holds a generator record (its ``pid`` branch); one that does must hold every branch of
    ``branches`` (field -> branch: pid, mother, pt, eta, phi, mass), or the one-line DataError."""
    if not has_branch(tree, branches["pid"]):
        return False
    require(tree, path, list(branches.values()), "the generator record")
    return True


def find_weight(tree, path: Path, tree_name: str, branch: str | None, required: bool) -> str | None:
    """The event-weight branch to read: ``branch`` when the tree has it, else None (unweighted), or the DataError
    when the user named it (``required``)."""
    weight = branch if branch and has_branch(tree, branch) else None
    if required and weight is None:
        raise DataError(f"{path}: tree '{tree_name}' has no branch '{branch}' (event weights)")
    return weight


def event_values(arrays: dict[str, Any], path: Path, start: int, met: dict[str, str],
                 weight: str | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A chunk's MET (field -> ``[n]``, from ``met``: field -> branch) and weights ``[n]`` (None without a weight
    branch), each finite or the DataError."""
    why = must_be_finite(met.values(), weight)
    values = {k: per_event_values(arrays, path, b, start, why[b]) for k, b in met.items()}
    return values, (per_event_values(arrays, path, weight, start, why[weight]) if weight else None)


def record(arrays: dict[str, Any], path: Path, start: int, branches: dict[str, str]) -> truth.Record:
    """A chunk's generator record from ``branches`` (field -> branch, as for :func:`find_record`)."""
    r = jagged(arrays, branches, path, {"pid": np.int64, "mother": np.int64}, start)
    return truth.Record(r.counts, r["pid"], r["mother"], r["pt"], r["eta"], r["phi"], r["mass"], branches=branches)


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# --- the conversion ---------------------------------------------------------------------------------

@dataclass
class _Tally:
    """What :func:`convert` counts over the chunks."""

    cutflow: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("generated", "one_lepton", "min_jets", "min_btags"), 0))
    categories: np.ndarray = field(default_factory=lambda: np.zeros(len(truth.CATEGORIES), np.int64))
    dropped: dict[str, int] = field(default_factory=dict)  # branch -> events dropped for a NaN/inf in it
    n_dropped: int = 0  # events dropped (one may count under several branches above)
    n_read: int = 0


def prepare(source: Source, out: str | os.PathLike, with_truth: bool = True, step: int = 20_000) -> None:
    """Every refusal that needs no pass over the objects, before anything is written (the command calls it
    before drawing its progress bar): the chunk size, an output that is the input, a truth conversion without
    a generator record, and :meth:`Source.scan`'s NaN/inf MET or weights and unequal multiplicities."""
    _check_arguments(source, out, with_truth, step)
    source.scan(step, with_record=with_truth)


def convert(source: Source, out: str | os.PathLike, cuts: Cuts, with_truth: bool = True, step: int = 20_000,
            on_progress: Callable[[int], None] | None = None, prepared: bool = False) -> dict[str, Any]:
    """Select ``source``'s events, attach their truth, write them to ``out`` (atomically); returns the attrs.

    ``attrs['cutflow']`` counts, like the generators' files, the events entering the selection (``generated``:
    those with a semi-leptonic e/μ tt̄ chain, or every event without truth) and those passing each cut;
    ``attrs['truth_cutflow']`` counts every event read by :data:`truth.CATEGORIES`;
    ``attrs['dropped_nonfinite']`` the entering events dropped for a NaN/inf (``events``; ``branches``: per
    branch), which fail the first cut. ``prepared``: :func:`prepare` was called (its scan is not repeated).
    """
    if prepared:
        _check_arguments(source, out, with_truth, step)
    else:
        prepare(source, out, with_truth, step)
    tally = _Tally()
    with EventWriter(out) as writer:
        for chunk in source.chunks(step, with_record=with_truth):
            data = _select_chunk(chunk, cuts, with_truth, tally)
            if data.n_events:
                writer.append(data)
            tally.n_read += chunk.n_events
            if on_progress is not None:
                on_progress(chunk.n_events)
        _require_output(source, writer, tally, with_truth)
        writer.attrs = {"n_events": writer.n_events, **source.attrs(), **_attrs(source, cuts, tally, with_truth)}
    return writer.attrs


def _check_arguments(source: Source, out: str | os.PathLike, with_truth: bool, step: int) -> None:
    if step < 1:
        raise DataError(f"chunk size {step}: must be positive")
    if Path(out).resolve() == source.path.resolve():
        raise DataError(f"{out}: the output is also the input")
    require_record(source, with_truth)


def require_record(source: Source, with_truth: bool) -> None:
    """The one-line DataError for a truth conversion of a file without a generator record."""
    if with_truth and not source.has_record:
        raise DataError(f"{source.path}: no generator record to take the truth from (real data?); "
                        "convert with --no-truth")


def _require_output(source: Source, writer: EventWriter, tally: _Tally, with_truth: bool) -> None:
    counts = dict(zip(truth.CATEGORIES, tally.categories.tolist(), strict=True))
    if with_truth and counts["semileptonic"] == 0:
        raise DataError(f"{source.path}: no event has a semi-leptonic (e/μ) tt̄ decay chain "
                        f"({_describe(counts)}); convert with --no-truth to keep the events without truth")
    if writer.n_events == 0:
        dropped = f"; {tally.n_dropped:,} dropped for NaN/inf values" if tally.n_dropped else ""
        raise DataError(f"{source.path}: no event passed the selection (cut flow: {_describe(tally.cutflow)}"
                        f"{dropped})")


def _attrs(source: Source, cuts: Cuts, tally: _Tally, with_truth: bool) -> dict[str, Any]:
    counts = dict(zip(truth.CATEGORIES, tally.categories.tolist(), strict=True))
    return {"source_file": str(source.path), "n_read": tally.n_read, "selection": asdict(cuts),
            "cutflow": tally.cutflow,
            "dropped_nonfinite": {"events": tally.n_dropped, "branches": dict(sorted(tally.dropped.items()))},
            **({"truth_cutflow": {"read": tally.n_read, **counts}, "truth_definition": truth.DEFINITION}
               if with_truth else {"truth_definition": "none (converted with --no-truth)"})}


def _select_chunk(chunk: Chunk, cuts: Cuts, with_truth: bool, tally: _Tally) -> EventData:
    """The chunk's selected events with a usable truth; counts the events entering the selection."""
    tru, entering, nonfinite = None, np.ones(chunk.n_events, bool), dict(chunk.nonfinite)
    if with_truth:
        tru, category = truth.extract(chunk.record)
        tally.categories += np.bincount(category, minlength=len(truth.CATEGORIES))
        entering = category == truth.SEMILEPTONIC
        nonfinite |= truth.nonfinite(tru, chunk.record.branches)
    good = _drop_nonfinite(nonfinite, entering, tally)
    # a dropped event keeps no object: it fails the selection's first cut (an event not entering it, too:
    # its values must not reach the packing)
    sel = selection.select(chunk.jets.where(good[chunk.jets.event]),
                           chunk.leptons.where(good[chunk.leptons.event]), cuts)
    for k, v in cutflow_of(sel.stage[entering]).items():
        tally.cutflow[k] += v
    keep = entering[sel.index]
    rows = sel.index[keep]
    if tru is not None:
        tru = {p: {k: v[rows] for k, v in feats.items()} for p, feats in tru.items()}
    return EventData(source={k: v[keep] for k, v in sel.source.items()}, mask=sel.mask[keep],
                     met={k: v[rows].astype(np.float32) for k, v in chunk.met.items()}, truth=tru,
                     weights=None if chunk.weights is None else chunk.weights[rows].astype(np.float32))


def _drop_nonfinite(nonfinite: dict[str, np.ndarray], entering: np.ndarray, tally: _Tally) -> np.ndarray:
    """``[n]`` events without a NaN/inf value; those entering the selection with one are counted."""
    bad = np.zeros(len(entering), bool)
    for branch, events in nonfinite.items():
        hit = events & entering
        if hit.any():
            tally.dropped[branch] = tally.dropped.get(branch, 0) + int(hit.sum())
        bad |= events
    tally.n_dropped += int((bad & entering).sum())
    return ~bad


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {int(v):,}" for k, v in counts.items())
