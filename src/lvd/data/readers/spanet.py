"""SPANet-style HDF5 files: padded objects under ``INPUTS/<name>/{MASK, features}``, global inputs under
``INPUTS/<name>/<feature>``, with names of the user's choosing (SPANet's event ``.yaml`` defines them).

The names are a :class:`~lvd.data.schema.FileLayout` (groups, ``feature_names`` such as ``is_muon=utag``,
``particle_names`` such as ``b_lep=lt/b`` for parton-level truth under ``truth_group``), so the same file is
read by ``lvd train``/``lvd unfold`` with the matching ``data.*`` options, or converted once into lvd's names
by :func:`convert`. ``phi`` is read from ``sin_phi``/``cos_phi`` where the file stores those instead.
SPANet's ``TARGETS`` (jet assignments) and ``REGRESSIONS`` are not used.

Every value read is checked as :func:`~lvd.data.schema.read_events` checks an lvd file: a NaN/inf in a real
object, the MET, the truth or the weights refuses the file (naming dataset and event; an HDF5 file has no
"object identification" that could make such a value harmless); padded objects are written as zeros whatever
the file holds there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lvd.data.schema import (
    DEFAULT_LAYOUT,
    EventData,
    EventWriter,
    FileLayout,
    count_events,
    read_events,
)
from lvd.errors import DataError


def prepare(inp: str | os.PathLike, out: str | os.PathLike, layout: FileLayout, with_truth: bool = True,
            step: int = 100_000) -> int:
    """The number of events, after every refusal that needs no pass over the values (the command calls it
    before drawing its progress bar): the chunk size, an output that is the input, no events, and each
    dataset's presence, type and shape (by reading the first event)."""
    inp = Path(inp)
    if step < 1:
        raise DataError(f"chunk size {step}: must be positive")
    if Path(out).resolve() == inp.resolve():
        raise DataError(f"{out}: the output is also the input")
    _read(inp, layout, with_truth, slice(0, 1))  # first: it also finds a mask that is no dataset
    n = count_events(inp, layout)
    if n == 0:  # named here: the writer would name the output
        raise DataError(f"{inp}: no events ({layout.source_group}/{layout.mask_name} has 0 rows)")
    return n


def _read(inp: Path, layout: FileLayout, with_truth: bool, rows: slice) -> EventData:
    # a float64 beyond float32's range becomes inf in the reader's cast, which it refuses: not a warning too
    with np.errstate(over="ignore"):
        return read_events(inp, layout, rows=rows, require_truth=with_truth, read_truth=with_truth)


def convert(inp: str | os.PathLike, out: str | os.PathLike, layout: FileLayout, with_truth: bool = True,
            step: int = 100_000, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Rewrite ``inp`` (read with ``layout``) in lvd's own names, ``step`` events at a time; returns the attrs."""
    inp = Path(inp)
    n = prepare(inp, out, layout, with_truth, step)
    # written under lvd's names: the particle and feature names are those the reader returns
    written = dataclasses.replace(DEFAULT_LAYOUT, source_features=layout.source_features,
                                  met_features=layout.met_features)
    with EventWriter(out, layout=written) as writer:
        for start in range(0, n, step):
            data = _read(inp, layout, with_truth, slice(start, min(start + step, n)))
            writer.append(_zero_padding(data))
            if on_progress is not None:
                on_progress(data.n_events)
        writer.attrs = {"n_events": writer.n_events, "generator": "SPANet-style file (lvd convert spanet)", "reader": "spanet",
                        "source_file": str(inp), "n_read": n,
                        "layout": {k: v for k, v in dataclasses.asdict(layout).items()
                                   if k not in ("unfolded_group",)},
                        "truth_definition": "as stored in the input file" if with_truth
                        else "none (converted with --no-truth)"}
    return writer.attrs


def _zero_padding(data: EventData) -> EventData:
    """``data`` with its padded objects zero: the reader checks real objects only, a file may hold NaN there."""
    source = {k: np.where(data.mask, v, 0).astype(v.dtype) for k, v in data.source.items()}
    return dataclasses.replace(data, source=source)
