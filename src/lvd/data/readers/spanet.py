"""SPANet-style HDF5 files: padded objects under ``INPUTS/<name>/{MASK, features}``, global inputs under
``INPUTS/<name>/<feature>``, with names of the user's choosing (SPANet's event ``.yaml`` defines them).

The names are a :class:`~lvd.data.schema.FileLayout` (groups, ``feature_names`` such as ``is_muon=utag``,
``particle_names`` such as ``b_lep=lt/b`` for parton-level truth under ``truth_group``), so the same file is
read by ``lvd train``/``lvd unfold`` with the matching ``data.*`` options, or converted once into lvd's names
by :func:`convert`. ``phi`` is read from ``sin_phi``/``cos_phi`` where the file stores those instead.
SPANet's ``TARGETS`` (jet assignments) and ``REGRESSIONS`` are not used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvd.data.schema import DEFAULT_LAYOUT, EventWriter, FileLayout, count_events, read_events
from lvd.errors import DataError


def convert(inp: str | os.PathLike, out: str | os.PathLike, layout: FileLayout, with_truth: bool = True,
            step: int = 100_000, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Rewrite ``inp`` (read with ``layout``) in lvd's own names, ``step`` events at a time; returns the attrs."""
    if step < 1:
        raise DataError(f"chunk size {step}: must be positive")
    inp = Path(inp)
    n = count_events(inp, layout)
    # written under lvd's names: the particle and feature names are those the reader returns
    written = dataclasses.replace(DEFAULT_LAYOUT, source_features=layout.source_features,
                                  met_features=layout.met_features)
    with EventWriter(out, layout=written) as writer:
        for start in range(0, n, step):
            data = read_events(inp, layout, rows=slice(start, min(start + step, n)), require_truth=with_truth,
                               read_truth=with_truth)
            writer.append(data)
            if on_progress is not None:
                on_progress(data.n_events)
        writer.attrs = {"n_events": writer.n_events, "generator": "SPANet-style file (lvd convert spanet)", "reader": "spanet",
                        "source_file": str(inp), "n_read": n,
                        "layout": {k: v for k, v in dataclasses.asdict(layout).items()
                                   if k not in ("unfolded_group",)},
                        "truth_definition": "as stored in the input file" if with_truth
                        else "none (converted with --no-truth)"}
    return writer.attrs
