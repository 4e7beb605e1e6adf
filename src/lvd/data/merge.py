"""Concatenate event files (generator shards, unfolding shards) into one, losslessly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lvd.data.schema import EventWriter, FileLayout, _structure, read_events, source_layout
from lvd.errors import DataError

# Per-shard counters that add up when shards are merged.
_ADDITIVE = ("generated", "one_lepton", "min_jets", "min_btags")
# The generated top masses (lvd.data.generate.top_mass): recorded per input when they differ.
_TOP_MASS = ("top_mass", "top_mass_range", "top_width_rule")


def merge_files(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> int:
    """Write ``inputs`` one after the other into ``out`` (atomically); returns the number of events.

    All inputs must carry the same datasets and object width. Attributes of the first file are kept;
    cut-flow counters are summed and the seeds/shards of every input are listed. Inputs generated at
    different top masses give ``top_mass_range`` = the span of them all (each input's in ``merged_from``);
    the per-event masses travel in ``GENERATOR``.
    """
    if not inputs:
        raise DataError("merge: no input files given")
    paths = [Path(p) for p in inputs]
    if Path(out).resolve() in {p.resolve() for p in paths}:
        raise DataError(f"{out}: the output is also an input")
    first = read_events(paths[0], source_layout(paths[0]))
    layout = FileLayout(source_features=tuple(first.source), met_features=tuple(first.met))
    ref, width = _structure(first), first.n_objects
    attrs = dict(first.attrs)
    cutflow = dict(attrs.get("cutflow") or {})
    shards = []
    with EventWriter(out, layout=layout) as writer:
        for i, path in enumerate(paths):
            data = first if i == 0 else read_events(path, layout)
            if _structure(data) != ref:
                raise DataError(f"{path}: its datasets differ from {paths[0]}'s; cannot merge")
            if data.n_objects != width:
                raise DataError(f"{path}: {data.n_objects} objects per event, {paths[0]} has {width}")
            if i > 0:
                for k in _ADDITIVE:
                    if k in cutflow and k in (data.attrs.get("cutflow") or {}):
                        cutflow[k] += data.attrs["cutflow"][k]
            shards.append({"file": path.name, "seed": data.attrs.get("seed"),
                           "shard": data.attrs.get("shard"), "n_events": data.n_events,
                           **{k: data.attrs[k] for k in _TOP_MASS if k in data.attrs}})
            writer.append(data)
        attrs.pop("n_events", None)
        top = _top_mass_attrs(shards)
        if top:
            attrs.pop("top_mass", None)
        writer.attrs = {**attrs, **top, "cutflow": cutflow, "merged_from": shards}
    return writer.n_events


def _top_mass_attrs(shards: list[dict]) -> dict:
    """The merged file's top-mass attributes where the inputs' differ (the span of their masses), else none."""
    settings = [{k: s[k] for k in _TOP_MASS if k in s} for s in shards]
    if all(t == settings[0] for t in settings) or not all("top_mass" in t or "top_mass_range" in t for t in settings):
        return {}
    lo = min(t["top_mass_range"][0] if "top_mass_range" in t else t["top_mass"] for t in settings)
    hi = max(t["top_mass_range"][1] if "top_mass_range" in t else t["top_mass"] for t in settings)
    rules = {t.get("top_width_rule") for t in settings}
    return {"top_mass_range": [float(lo), float(hi)],
            "top_width_rule": rules.pop() if len(rules) == 1 else "differs between inputs: see merged_from"}
