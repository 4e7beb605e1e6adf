"""ROOT trees in, lvd files out: opening with one-line errors, chunked reading, and the streaming conversion.

A reader (Delphes, NanoAOD) turns each chunk of tree entries into a :class:`Chunk` (objects, MET, weights,
generator record); :func:`convert` selects, extracts the truth, and appends the surviving events to an
:class:`~lvd.data.schema.EventWriter`, so memory is bounded by the chunk size whatever the file size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
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
    (met, phi ``[n]``), ``weights [n]`` or None, the generator ``record`` or None."""

    jets: Jagged
    leptons: Jagged
    met: dict[str, np.ndarray]
    weights: np.ndarray | None
    record: truth.Record | None

    @property
    def n_events(self) -> int:
        return self.jets.n_events


class Source(Protocol):
    """What :func:`convert` reads: the input's description and its chunks."""

    path: Path
    n_entries: int
    has_record: bool

    def chunks(self, step: int, with_record: bool = True) -> Iterator[Chunk]: ...

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


def iterate(tree, path: Path, branches: Sequence[str], step: int) -> Iterator[dict[str, Any]]:
    """``branch -> awkward array`` for consecutive ``step``-entry chunks; damaged baskets give a DataError."""
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
        start += len(arrays)
        yield {b: arrays[b] for b in branches}


def flat(array, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A jagged awkward array ``[n][var]`` -> ``(counts [n], values [total])``."""
    ak = hep_module("awkward")
    counts = np.asarray(ak.num(array, axis=1), np.int64)
    return counts, np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype)


def first_of_each(array, path: Path, branch: str) -> np.ndarray:
    """``[n]`` from a branch that holds one entry per event, flat or as a one-element collection
    (Delphes' MissingET and Event)."""
    ak = hep_module("awkward")
    if array.ndim == 1:
        return np.asarray(ak.to_numpy(array), np.float64)
    counts, values = flat(array)
    if (counts < 1).any():
        raise DataError(f"{path}: branch '{branch}' is empty in event {int(np.argmax(counts < 1))}")
    return values[np.cumsum(counts) - counts]


def jagged(arrays: dict[str, Any], names: dict[str, str], path: Path, dtypes: dict[str, Any] | None = None) -> Jagged:
    """One collection from several branches of equal multiplicity: ``names`` maps field -> branch."""
    counts, fields = None, {}
    for field, branch in names.items():
        c, v = flat(arrays[branch], (dtypes or {}).get(field, np.float64))
        if counts is not None and not np.array_equal(c, counts):
            bad = int(np.argmax(c != counts))
            raise DataError(f"{path}: branch '{branch}' has {c[bad]} entries in event {bad}, "
                            f"'{next(iter(names.values()))}' has {counts[bad]}")
        counts, fields[field] = c, v
    return Jagged(counts, fields)


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# --- the conversion ---------------------------------------------------------------------------------

def convert(source: Source, out: str | os.PathLike, cuts: Cuts, with_truth: bool = True, step: int = 20_000,
            on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Select ``source``'s events, attach their truth, write them to ``out`` (atomically); returns the attrs.

    ``attrs['cutflow']`` counts, like the generators' files, the events entering the selection (``generated``:
    those with a semi-leptonic e/μ tt̄ chain, or every event without truth) and those passing each cut;
    ``attrs['truth_cutflow']`` counts every event read by :data:`truth.CATEGORIES`.
    """
    if step < 1:
        raise DataError(f"chunk size {step}: must be positive")
    require_record(source, with_truth)
    cutflow = dict.fromkeys(("generated", "one_lepton", "min_jets", "min_btags"), 0)
    categories = np.zeros(len(truth.CATEGORIES), np.int64)
    n_read = 0
    with EventWriter(out) as writer:
        for chunk in source.chunks(step, with_record=with_truth):
            data, stage = _select_chunk(chunk, cuts, with_truth, categories)
            for k, v in cutflow_of(stage).items():
                cutflow[k] += v
            if data.n_events:
                writer.append(data)
            n_read += chunk.n_events
            if on_progress is not None:
                on_progress(chunk.n_events)
        counts = dict(zip(truth.CATEGORIES, categories.tolist(), strict=True))
        if with_truth and counts["semileptonic"] == 0:
            raise DataError(f"{source.path}: no event has a semi-leptonic (e/μ) tt̄ decay chain "
                            f"({_describe(counts)}); convert with --no-truth to keep the events without truth")
        if writer.n_events == 0:
            raise DataError(f"{source.path}: no event passed the selection (cut flow: {_describe(cutflow)})")
        writer.attrs = {"n_events": writer.n_events, **source.attrs(), "source_file": str(source.path), "n_read": n_read,
                        "selection": asdict(cuts), "cutflow": cutflow,
                        **({"truth_cutflow": {"read": n_read, **counts}, "truth_definition": truth.DEFINITION}
                           if with_truth else {"truth_definition": "none (converted with --no-truth)"})}
    return writer.attrs


def require_record(source: Source, with_truth: bool) -> None:
    """The one-line DataError for a truth conversion of a file without a generator record."""
    if with_truth and not source.has_record:
        raise DataError(f"{source.path}: no generator record to take the truth from (real data?); "
                        "convert with --no-truth")


def _select_chunk(chunk: Chunk, cuts: Cuts, with_truth: bool, categories: np.ndarray
                  ) -> tuple[EventData, np.ndarray]:
    """The chunk's selected events with a usable truth, and the stage of every event entering the selection."""
    sel = selection.select(chunk.jets, chunk.leptons, cuts)
    tru = None
    if with_truth:
        tru, category = truth.extract(chunk.record)
        categories += np.bincount(category, minlength=len(truth.CATEGORIES))
        entering = category == truth.SEMILEPTONIC
        keep = entering[sel.index]
        rows = sel.index[keep]
        tru = {p: {k: v[rows] for k, v in feats.items()} for p, feats in tru.items()}
        stage = sel.stage[entering]
    else:
        keep, rows, stage = np.ones(len(sel.index), bool), sel.index, sel.stage
    data = EventData(source={k: v[keep] for k, v in sel.source.items()}, mask=sel.mask[keep],
                     met={k: v[rows].astype(np.float32) for k, v in chunk.met.items()}, truth=tru,
                     weights=None if chunk.weights is None else chunk.weights[rows].astype(np.float32))
    return data, stage


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())
