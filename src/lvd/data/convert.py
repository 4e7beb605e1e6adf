"""The original LVD code's ``.npz`` layout, read into (and written from) lvd's :class:`EventData`.

Original layout (arXiv 2305.10399 code release)::

    parton_features    [N, 55] or [N, 11, 5]  (px, py, pz, log(E+1), m) of b_lep ℓ ν b_had q1 q2 + 5 resonances
    detector_features  [N, T, D]              per-object features (their meaning is not stored in the file)
    detector_mask      [N, T] bool
    met_features       [N, Dm]
    weights            a separate ``.npy`` of shape [N] (optional)

The detector features have no names in that layout; pass them (``detector_features=("pt", "eta", ...)``)
or they are called ``f0, f1, ...``. Files written by :func:`write_original_npz` carry the names in extra
arrays ``detector_feature_names`` / ``met_feature_names``, which the reader picks up.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lvd import physics
from lvd.data.schema import EventData, atomic_path
from lvd.errors import DataError

REQUIRED = ("parton_features", "detector_features", "detector_mask", "met_features")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt?): {e}") from None
    except ValueError as e:  # object arrays need pickle, which lvd never loads
        raise DataError(f"{path}: contains object arrays (pickled data), which lvd does not load: {e}") from None


def read_original_npz(path: str | os.PathLike, weights: str | os.PathLike | None = None,
                      detector_features: Sequence[str] | None = None,
                      met_features: Sequence[str] | None = None) -> EventData:
    """Read the original layout; validates shapes, dtypes and finiteness like :func:`read_events`."""
    path = Path(path)
    z = _load_npz(path)
    for key in REQUIRED:
        if key not in z:
            raise DataError(f"{path}: missing array '{key}' (the original layout needs {', '.join(REQUIRED)})")
    det, mask, met, parton = (z[k] for k in ("detector_features", "detector_mask", "met_features", "parton_features"))
    n = det.shape[0] if det.ndim == 3 else -1
    if det.ndim != 3:
        raise DataError(f"{path}: 'detector_features' has shape {det.shape}, expected [N, T, D]")
    if n == 0:
        raise DataError(f"{path}: no events ('detector_features' has 0 rows)")
    if mask.shape != det.shape[:2]:
        raise DataError(f"{path}: 'detector_mask' has shape {mask.shape}, expected {det.shape[:2]}")
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
            raise DataError(f"{path}: 'detector_mask' has dtype {mask.dtype}, expected bool (or 0/1 integers)")
        mask = mask.astype(bool)
    if met.ndim != 2 or met.shape[0] != n:
        raise DataError(f"{path}: 'met_features' has shape {met.shape}, expected [{n}, Dm]")
    if parton.shape[0] != n or parton[0].size != len(physics.PARTONS) * 5:
        raise DataError(f"{path}: 'parton_features' has shape {parton.shape}, expected [{n}, 55] or [{n}, 11, 5]")
    for key, arr in (("detector_features", det), ("met_features", met), ("parton_features", parton)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise DataError(f"{path}: '{key}' has dtype {arr.dtype}, expected a real number type")
    empty = ~mask.any(1)
    if empty.any():
        raise DataError(f"{path}: 'detector_mask': event {int(np.argmax(empty))} has no real object")
    for key, arr, valid in (("detector_features", det, mask[..., None]), ("met_features", met, None),
                            ("parton_features", parton.reshape(n, -1), None)):
        bad = ~np.isfinite(arr)
        if valid is not None:
            bad &= valid
        if bad.any():
            raise DataError(f"{path}: '{key}' has NaN/inf at event {int(np.argwhere(bad)[0][0])}")

    det_names = _names(z, "detector_feature_names", detector_features, det.shape[2], path)
    met_names = _names(z, "met_feature_names", met_features, met.shape[1], path)
    p = parton.reshape(n, len(physics.PARTONS), 5).astype(np.float64)
    p4 = physics.p4_from_parton_features(p)[:, : len(physics.DECAY_PRODUCTS)]
    truth = {}
    for i, name in enumerate(physics.DECAY_PRODUCTS):
        truth[name] = {"pt": physics.pt(p4[:, i]), "eta": physics.eta(p4[:, i]),
                       "phi": physics.phi(p4[:, i]), "mass": p[:, i, 4]}
    w = None
    if weights is not None:
        w = load_weights(Path(weights), n)
    return EventData(
        source={k: np.where(mask, det[..., j], 0).astype(np.float32) for j, k in enumerate(det_names)},
        mask=mask,
        met={k: met[:, j].astype(np.float32) for j, k in enumerate(met_names)},
        truth={k: {f: v.astype(np.float32) for f, v in feats.items()} for k, feats in truth.items()},
        weights=w,
        attrs={"generator": "imported from original .npz", "source_file": str(path)},
    )


def _names(z, key, given, width, path) -> list[str]:
    if given is not None:
        names = list(given)
    elif key in z:
        names = [str(s) for s in z[key]]
    else:
        names = [f"f{j}" for j in range(width)]
    if len(names) != width:
        raise DataError(f"{path}: {len(names)} names given for {width} features in '{key.replace('_names', 's')}'")
    return names


def load_weights(path: Path, n: int) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: no such weights file")
    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy weights file: {e}") from None
    if w.shape != (n,):
        raise DataError(f"{path}: weights have shape {w.shape}, expected ({n},) (one per event)")
    bad = ~np.isfinite(w)
    if bad.any():
        raise DataError(f"{path}: weights have NaN/inf at event {int(np.argmax(bad))}")
    return w.astype(np.float32)


def write_original_npz(path: str | os.PathLike, data: EventData) -> None:
    """Write ``data`` in the original layout (plus the feature-name arrays), atomically."""
    names = list(data.source)
    det = np.stack([data.source[k] for k in names], axis=-1)
    met_names = list(data.met)
    parton = physics.parton_features(data.truth_p4()).reshape(data.n_events, -1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, parton_features=parton.astype(np.float32), detector_features=det,
                     detector_mask=data.mask, met_features=np.stack([data.met[k] for k in met_names], -1),
                     detector_feature_names=np.array(names), met_feature_names=np.array(met_names))
