"""Concatenate event files (generator shards, unfolding shards) into one, losslessly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lvd.data.schema import (
    EventWriter,
    FileLayout,
    _structure,
    read_events,
    read_generated,
    source_layout,
)
from lvd.errors import DataError

# Per-shard counters that add up when shards are merged.
_ADDITIVE = ("generated", "one_lepton", "min_jets", "min_btags")
# The generated top masses (lvd.data.generate.top_mass): recorded per input when they differ.
_TOP_MASS = ("top_mass", "top_mass_range", "top_width_rule")
# What a cross section needs (docs/format.md); combined over the inputs by _cross_section_attrs.
_CROSS_SECTION = ("cross_section_pb", "cross_section_error_pb", "branching_fraction", "sum_weights_generated")


def merge_files(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> int:
    """Write ``inputs`` one after the other into ``out`` (atomically); returns the number of events.

    All inputs must carry the same datasets and object width. Attributes of the first file are kept;
    cut-flow counters are summed and the seeds/shards of every input are listed. The generated events'
    truth (``GENERATED``) is concatenated in the same order, the generated weights summed, and the cross
    section becomes the inputs' estimates combined by their errors, so the luminosity is that of them all. Inputs generated at
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
    first_generated = read_generated(paths[0], layout)
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
                           **{k: data.attrs[k] for k in _TOP_MASS if k in data.attrs},
                           **{k: data.attrs[k] for k in _CROSS_SECTION if k in data.attrs}})
            writer.append(data)
            generated = first_generated if i == 0 else read_generated(path, layout)
            if (generated is None) != (first_generated is None):
                have = "has" if generated is not None else "lacks"
                raise DataError(f"{path}: {have} the generated events' truth (GENERATED) and {paths[0]} does not; "
                                "cannot merge")
            if generated is not None:
                writer.append_generated(generated)
        attrs.pop("n_events", None)
        attrs.pop("n_generated", None)
        top = _top_mass_attrs(shards)
        if top:
            attrs.pop("top_mass", None)
        writer.attrs = {**attrs, **top, **_cross_section_attrs(shards, paths), "cutflow": cutflow,
                        "merged_from": shards}
    return writer.n_events


def _cross_section_attrs(shards: list[dict], paths: list[Path]) -> dict:
    """The merged sample's cross section (the inputs' estimates weighted by their inverse variances), generated
    weights (summed) and luminosity; none when an input lacks them."""
    if not all(all(k in s for k in _CROSS_SECTION) for s in shards):
        return {}
    fractions = {s["branching_fraction"] for s in shards}
    if len(fractions) > 1:
        raise DataError(f"{paths[0]}: the inputs stand for different shares of the cross section "
                        f"(branching fractions {sorted(fractions)}); cannot merge")
    combined, combined_error = combined_cross_section([(s["cross_section_pb"], s["cross_section_error_pb"])
                                                       for s in shards])
    weights = float(sum(s["sum_weights_generated"] for s in shards))
    return {"cross_section_pb": combined, "cross_section_error_pb": combined_error,
            "sum_weights_generated": weights,
            "luminosity_inv_fb": weights / (1000.0 * combined * fractions.pop())}


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


def combined_cross_section(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """Independent estimates ``(σ, error)`` combined by their inverse variances; ``(0, 0)`` for none."""
    usable = [(s, e) for s, e in estimates if e > 0]
    if not usable:
        return (estimates[0] if estimates else (0.0, 0.0))
    inverse = np.array([1.0 / e**2 for _, e in usable])
    sigma = np.array([s for s, _ in usable])
    return float((sigma * inverse).sum() / inverse.sum()), float(inverse.sum() ** -0.5)
