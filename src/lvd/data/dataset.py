"""The events a training run reads: an lvd file (or an original-layout ``.npz``), this process's share of them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from lvd import distributed
from lvd.config import Options
from lvd.data import channels, convert
from lvd.data.representation import layout
from lvd.data.schema import EventData, count_events, read_events
from lvd.errors import LvdError


def read_training_events(path: str | os.PathLike, opts: Options, weights: str | os.PathLike | None = None
                         ) -> tuple[EventData, Options]:
    """Read an lvd file (or an original-layout ``.npz``) with truth; ``weights`` (a ``.npy``) replaces its weights.

    With several processes each reads its contiguous share of the events. For an ``.npz`` the detector feature
    names come from the file; unless they include pt/eta/phi/mass the raw representation is used, and the
    returned options say so.
    """
    path = Path(path)
    multi = distributed.process_count() > 1
    if path.suffix == ".npz":
        data = convert.read_original_npz(path, weights)
        if multi:  # the .npz layout cannot be read in pieces: every process loads it and keeps its slice
            data = data.take(distributed.local_slice(data.n_events))
        kinematic = all(k in data.source for k in ("pt", "eta", "phi", "mass")) and {"met", "phi"} <= set(data.met)
        opts = dataclasses.replace(opts, data=dataclasses.replace(
            opts.data, source_features=tuple(data.source), met_features=tuple(data.met),
            detector_representation="kinematic" if kinematic else "raw"))
    else:
        n_total = count_events(path, layout(opts.data))
        if opts.data.max_events:
            n_total = min(n_total, opts.data.max_events)
        rows = distributed.local_slice(n_total) if multi else slice(0, n_total)
        data = read_events(path, layout(opts.data), require_truth=True, rows=rows)
        if weights is not None:
            data.weights = convert.load_weights(Path(weights), n_total if not multi else count_events(path))[rows]
    if data.generator is not None and "channel" in data.generator:
        # a sample with every tt̄ channel: the unfolding model learns the signal's truth only (the other
        # channels' truth slots hold other particles); the fakes are a separate classifier's job
        data = data.take(np.flatnonzero(data.generator["channel"] == channels.SIGNAL))
        if data.n_events == 0:
            raise LvdError(f"{path}: no event of the signal channel ({channels.CHANNELS[channels.SIGNAL]})")
    w = data.event_weights()
    if not np.isfinite(w.sum()) or w.sum() <= 0:
        raise LvdError(f"{path}: the event weights sum to {w.sum()}; need a positive total")
    return data, opts
