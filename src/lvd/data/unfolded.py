"""The file ``lvd unfold`` writes, read once and checked once for every command that uses it.

An unfolded file is an event file (:mod:`lvd.data.schema`) with ``UNFOLDED/<particle>/<feature> [N, K]``: the
K posterior draws of each decay product. Whatever reads it (``histogram``, ``evaluate``, ``measure top-mass``,
``reweight``) relies on the same facts, so they are checked here and nowhere else: every decay product is there
with ``pt, eta, phi, mass``, all with one K, finite (the schema reader refuses NaN/inf), physical (pT ≥ 0,
masses ≥ 0); the attributes a command needs are parsed by the functions below, which refuse a malformed one in
one line naming the file and the attribute. A statistic that needs more than the file has (a spread from one
draw, a bootstrap from one event) is refused by :func:`require_samples` and :func:`require_events`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lvd import physics
from lvd.data.schema import TRUTH_FEATURES, EventData, read_events, source_layout
from lvd.errors import DataError

# an ensemble's pooled unfolding (lvd unfold RUN1 RUN2 ...): the members' run paths, in the order of their draws,
# and K: draws [m·K, (m+1)·K) of every event are member m's
ENSEMBLE_MEMBERS_ATTR = "ensemble_members"
ENSEMBLE_SAMPLES_ATTR = "ensemble_samples_per_member"
UNFOLDED_FEATURES = TRUTH_FEATURES  # pt, eta, phi, mass: what a four-vector is built from
_NON_NEGATIVE = ("pt", "mass")  # a negative pT or mass has no meaning, and silently flips a four-vector


def read_unfolded(path: str | os.PathLike, truth_optional: bool = True) -> EventData:
    """Read an ``lvd unfold`` output and check its UNFOLDED group; every problem is a one-line DataError."""
    path = Path(path)
    data = read_events(path, source_layout(path))
    if data.unfolded is None:
        raise DataError(f"{path}: no UNFOLDED group (make it with lvd unfold)")
    check_unfolded(data, path)
    if not truth_optional and data.truth is None:
        raise DataError(f"{path}: no TRUTH group (the parton-level truth of these events is needed here)")
    return data


def check_unfolded(data: EventData, path: Path | str) -> None:
    """Every decay product with every feature, one K throughout, pT and masses ≥ 0 (finiteness: the reader)."""
    unfolded = data.unfolded or {}
    missing = [p for p in physics.DECAY_PRODUCTS if p not in unfolded]
    if missing:
        raise DataError(f"{path}: UNFOLDED lacks the decay products {', '.join(missing)}")
    k_seen: tuple[str, int] | None = None
    for p in physics.DECAY_PRODUCTS:
        for f in UNFOLDED_FEATURES:
            name = f"UNFOLDED/{p}/{f}"
            if f not in unfolded[p]:
                raise DataError(f"{path}: missing dataset {name}")
            k = int(unfolded[p][f].shape[1])
            if k_seen is None:
                k_seen = (name, k)
            elif k != k_seen[1]:
                raise DataError(f"{path}: dataset {name} has {k} samples per event, {k_seen[0]} has {k_seen[1]}")
            if f in _NON_NEGATIVE:
                bad = unfolded[p][f] < 0
                if bad.any():
                    i, j = np.argwhere(bad)[0]
                    raise DataError(f"{path}: dataset {name} is negative at event {int(i)}, sample {int(j)} "
                                    f"({float(unfolded[p][f][i, j]):.6g})")


def samples_per_event(data: EventData) -> int:
    """K of a checked unfolded file."""
    return int(data.unfolded[physics.DECAY_PRODUCTS[0]]["pt"].shape[1])


def require_samples(data: EventData, path: Path | str, minimum: int, why: str) -> None:
    """A one-line DataError when the file has fewer than ``minimum`` samples per event."""
    k = samples_per_event(data)
    if k < minimum:
        raise DataError(f"{path}: {k} sample(s) per event; {why} needs at least {minimum} "
                        f"(unfold with -k {max(minimum, 16)})")


def require_events(data: EventData, path: Path | str, minimum: int, why: str) -> None:
    """A one-line DataError when the file has fewer than ``minimum`` events."""
    if data.n_events < minimum:
        raise DataError(f"{path}: {data.n_events} event(s); {why} needs at least {minimum}")


def positive_weights(data: EventData, path: Path | str, what: str) -> np.ndarray:
    """The events' weights ``[N]`` (float64), refused when their total is not positive: negative weights are
    fine (NLO samples), a non-positive total defines no distribution."""
    w = data.event_weights().astype(np.float64)
    if not w.sum() > 0:
        raise DataError(f"{path}: the event weights sum to {float(w.sum()):.6g}; {what} needs a positive total")
    return w


# --- attributes that commands rely on -----------------------------------------------------------------

def json_attr(data: EventData, path: Path | str, name: str) -> Any:
    """Attribute ``name`` as a JSON value (stored as JSON text or already parsed), or None when absent."""
    if name not in data.attrs:
        return None
    value = data.attrs[name]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(f"{path}: attribute {name} is not valid JSON") from None
    return value


def number_attr(data: EventData, path: Path | str, name: str, positive: bool = False) -> float | None:
    """Attribute ``name`` as a finite number (positive where asked), or None when absent."""
    if name not in data.attrs:
        return None
    value = data.attrs[name]
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: attribute {name} is {str(value)[:40]!r}, expected a number") from None
    if not math.isfinite(x) or (positive and x <= 0):
        raise DataError(f"{path}: attribute {name} is {x:g}, expected a finite{' positive' if positive else ''} "
                        "number")
    return x


def prior_histograms(data: EventData, path: Path | str, name: str) -> dict[str, dict[str, np.ndarray]] | None:
    """The training-truth histograms ``{observable: {"edges", "counts"}}`` of attribute ``name``, checked:
    increasing finite edges, finite non-negative counts, one fewer than the edges, a positive total."""
    value = json_attr(data, path, name)
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise DataError(f"{path}: attribute {name} is not a mapping of observables to histograms")
    out = {}
    for obs, h in value.items():
        where = f"{path}: attribute {name}, observable {obs}"
        try:
            edges = np.asarray(h["edges"], np.float64)
            counts = np.asarray(h["counts"], np.float64)
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{where}: expected {{edges: [...], counts: [...]}} of numbers") from None
        if edges.ndim != 1 or len(edges) < 2 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
            raise DataError(f"{where}: edges must be at least two finite, increasing numbers")
        if counts.shape != (len(edges) - 1,) or not np.isfinite(counts).all() or (counts < 0).any() \
                or not counts.sum() > 0:
            raise DataError(f"{where}: counts must be {len(edges) - 1} finite, non-negative numbers with a "
                            "positive total")
        out[str(obs)] = {"edges": edges, "counts": counts}
    return out


def mass_prior(data: EventData, path: Path | str, name: str) -> dict[str, np.ndarray] | None:
    """The training top-mass prior ``{"mass": [J], "width": [J]}`` (GeV) of attribute ``name``, checked."""
    value = json_attr(data, path, name)
    if value is None:
        return None
    try:
        mass, width = (np.asarray(value[k], np.float64).reshape(-1) for k in ("mass", "width"))
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{path}: attribute {name}: expected {{mass: [...], width: [...]}} in GeV") from None
    if len(mass) == 0 or mass.shape != width.shape or not (np.isfinite(mass) & np.isfinite(width)).all() \
            or (mass <= 0).any() or (width <= 0).any():
        raise DataError(f"{path}: attribute {name}: masses and widths must be as many finite, positive numbers")
    return {"mass": mass, "width": width}


# --- the acceptance weights a cross section needs (docs/format.md) -----------------------------------------

ACCEPTANCE_GROUP = "ACCEPTANCE"


def read_acceptance(path: str | os.PathLike, n: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(signal [N], efficiency [N, K])`` of an unfolded file's ``ACCEPTANCE`` group, or None without one:
    each event's probability to be signal and each draw's selection efficiency, finite, in (0, 1]
    (the signal probability in [0, 1])."""
    import h5py

    from lvd.data.schema import open_h5

    path = Path(path)
    with open_h5(path) as f:
        if ACCEPTANCE_GROUP not in f:
            return None
        out = []
        for name, shape in (("signal", (n,)), ("efficiency", (n, k))):
            obj = f.get(f"{ACCEPTANCE_GROUP}/{name}")
            if not isinstance(obj, h5py.Dataset):
                raise DataError(f"{path}: missing dataset {ACCEPTANCE_GROUP}/{name}")
            if obj.shape != shape:
                raise DataError(f"{path}: dataset {ACCEPTANCE_GROUP}/{name} has shape {obj.shape}, expected {shape}")
            a = np.asarray(obj[()], np.float64)
            low = 0.0 if name == "signal" else np.finfo(np.float32).tiny
            bad = ~np.isfinite(a) | (a < low) | (a > 1)
            if bad.any():
                where = np.unravel_index(np.argmax(bad), a.shape)
                raise DataError(f"{path}: dataset {ACCEPTANCE_GROUP}/{name} is {float(a[where]):.6g} at event "
                                f"{int(where[0])}: a probability{' above 0' if name == 'efficiency' else ''} is needed")
            out.append(a)
    return out[0], out[1]


def write_acceptance(path: str | os.PathLike, signal: np.ndarray, efficiency: np.ndarray) -> None:
    """Add (or replace) the ``ACCEPTANCE`` group of an unfolded file, atomically (a staged copy)."""
    import shutil

    import h5py

    from lvd.data.schema import StagedFile

    path = Path(path)
    staged = StagedFile(path)
    shutil.copyfile(path, staged.tmp)
    try:
        with h5py.File(staged.tmp, "r+") as f:
            if ACCEPTANCE_GROUP in f:
                del f[ACCEPTANCE_GROUP]
            f[f"{ACCEPTANCE_GROUP}/signal"] = np.asarray(signal, np.float32)
            f[f"{ACCEPTANCE_GROUP}/efficiency"] = np.asarray(efficiency, np.float32)
    except BaseException:
        staged.abort()
        raise
    staged.commit()

