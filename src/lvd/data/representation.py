"""Model-side representation of events (docs/design.md §2), derived at load time, and its normalisation.

* Partons: the vector ``x`` of the run's parton representation (:mod:`lvd.data.partons`: the paper's 55
  numbers or the 24 of the decay chain), z-scored with training statistics.
* Detector objects: ``(px, py, pz, log(E+1), log pT, η, sin φ, cos φ)`` followed by the file's other
  per-object features (flags), z-scored over real objects only; padding is zero.
* MET: ``(met_x, met_y, log(met+1))``.

The statistics, the feature list and the representation travel inside every checkpoint (``to_dict``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from lvd import physics
from lvd.config import DataOptions
from lvd.data.partons import PartonRepresentation, parton_representation
from lvd.data.schema import EventData, FileLayout
from lvd.errors import DataError

KINEMATIC = ("pt", "eta", "phi", "mass")


# the fields a file layout shares with the data options (the options are where they are set)
_LAYOUT_FIELDS = tuple(f.name for f in dataclasses.fields(FileLayout) if f.name in DataOptions.__dataclass_fields__)


def layout(opts: DataOptions) -> FileLayout:
    """The file layout the data options describe."""
    value = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731  (options may hold lists)
    return FileLayout(**{k: value(getattr(opts, k)) for k in _LAYOUT_FIELDS})


def object_feature_names(opts: DataOptions) -> list[str]:
    if opts.detector_representation == "raw":
        return list(opts.source_features)
    missing = [k for k in KINEMATIC if k not in opts.source_features]
    if missing:
        raise DataError(f"data.detector_representation 'kinematic' needs source features {missing}; "
                        "list them in data.source_features or use detector_representation=raw")
    extra = [k for k in opts.source_features if k not in KINEMATIC]
    return ["px", "py", "pz", "log_e", "log_pt", "eta", "sin_phi", "cos_phi", *extra]


def met_feature_names(opts: DataOptions) -> list[str]:
    if opts.detector_representation == "raw":
        return list(opts.met_features)
    return ["met_x", "met_y", "log_met"]


def parton_vectors(data: EventData, representation: str, top_line_width: float = physics.GAMMA_TOP) -> np.ndarray:
    """Truth -> ``[N, D]`` float32 in the named parton representation."""
    return parton_representation(representation, top_line_width).encode(data.truth_p4()).astype(np.float32)


def detector_arrays(data: EventData, opts: DataOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(objects [N, M, F], mask [N, M], met [N, Fm])`` float32, padding zeroed."""
    src, mask = data.source, data.mask
    if opts.detector_representation == "raw":
        objects = np.stack([src[k] for k in opts.source_features], axis=-1).astype(np.float64)
        met = np.stack([data.met[k] for k in opts.met_features], axis=-1).astype(np.float64)
    else:
        pt = np.maximum(src["pt"].astype(np.float64), 1e-3)
        eta, phi = src["eta"].astype(np.float64), src["phi"].astype(np.float64)
        p4 = physics.p4_from_ptetaphim(pt, eta, phi, np.maximum(src["mass"].astype(np.float64), 0.0))
        extra = [src[k].astype(np.float64) for k in opts.source_features if k not in KINEMATIC]
        objects = np.stack([p4[..., 0], p4[..., 1], p4[..., 2], np.log1p(p4[..., 3]), np.log(pt), eta,
                            np.sin(phi), np.cos(phi), *extra], axis=-1)
        for k in ("met", "phi"):
            if k not in data.met:
                raise DataError(f"MET feature '{k}' is needed by the kinematic representation")
        m, mphi = data.met["met"].astype(np.float64), data.met["phi"].astype(np.float64)
        met = np.stack([m * np.cos(mphi), m * np.sin(mphi), np.log1p(np.maximum(m, 0.0))], axis=-1)
    objects = np.where(mask[..., None], objects, 0.0)
    return objects.astype(np.float32), mask.astype(bool), met.astype(np.float32)


@dataclass
class Arrays:
    """Everything a model consumes, as float32 NumPy arrays aligned on events (raw or normalised)."""

    x: np.ndarray | None  # [N, D] partons (None without truth)
    objects: np.ndarray  # [N, M, F]
    mask: np.ndarray  # [N, M]
    met: np.ndarray  # [N, Fm]
    weight: np.ndarray  # [N]

    @property
    def n_events(self) -> int:
        return self.objects.shape[0]

    def take(self, idx) -> Arrays:
        return Arrays(None if self.x is None else self.x[idx], self.objects[idx], self.mask[idx], self.met[idx],
                      self.weight[idx])


def raw_arrays(data: EventData, opts: DataOptions, with_truth: bool = True) -> Arrays:
    """The model representation before normalisation."""
    objects, mask, met = detector_arrays(data, opts)
    if objects.shape[1] == 0:
        raise DataError("events have no detector objects")
    x = parton_vectors(data, opts.parton_representation, opts.top_line_width) if with_truth else None
    return Arrays(x=x, objects=objects, mask=mask, met=met, weight=data.event_weights().astype(np.float32))


@dataclass(frozen=True)
class Normalizer:
    """Training statistics (float32 arrays) and the feature lists and parton representation they belong to."""

    parton_mean: np.ndarray  # [D]
    parton_std: np.ndarray
    object_mean: np.ndarray  # [F]
    object_std: np.ndarray
    met_mean: np.ndarray  # [Fm]
    met_std: np.ndarray
    mass_sq_mean: np.ndarray  # [5] resonance masses squared (consistency loss)
    mass_sq_std: np.ndarray
    object_features: tuple[str, ...]
    met_features: tuple[str, ...]
    parton_representation: str = "paper"  # checkpoints older than the option were all "paper"
    top_line_width: float = physics.GAMMA_TOP  # and used the top's own width

    @classmethod
    def fit(cls, raw: Arrays, opts: DataOptions, allsum=None) -> Normalizer:
        """Statistics of raw training arrays (detector objects over real entries only).

        ``allsum`` sums host arrays over processes (multi-process runs, each holding a slice of the events), so
        every process ends up with the statistics of all the events; None for a single process.
        """
        allsum = allsum or (lambda a: a)
        p = raw.x.astype(np.float64)
        real = raw.objects[raw.mask].astype(np.float64)
        rep = parton_representation(opts.parton_representation, opts.top_line_width)
        m2 = physics.mass_sq(physics.resonances(rep.decode(p)))  # [N, 5], of the on-shell truth daughters
        met = raw.met.astype(np.float64)

        def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n, s1, s2 = allsum(np.float64(len(x))), allsum(x.sum(0)), allsum((x**2).sum(0))
            mean = s1 / n
            std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
            return mean.astype(np.float32), np.where(std < 1e-6, 1.0, std).astype(np.float32)

        return cls(*moments(p), *moments(real), *moments(met), *moments(m2),
                   tuple(object_feature_names(opts)), tuple(met_feature_names(opts)), rep.name, rep.top_width)

    @property
    def representation(self) -> PartonRepresentation:
        return parton_representation(self.parton_representation, self.top_line_width)

    def check(self, opts: DataOptions) -> None:
        if opts.parton_representation != self.parton_representation:
            raise DataError(f"data.parton_representation {opts.parton_representation!r} differs from the "
                            f"{self.parton_representation!r} the statistics were made for")
        if abs(opts.top_line_width - self.top_line_width) > 1e-9:
            raise DataError(f"data.top_line_width {opts.top_line_width} differs from the {self.top_line_width} the "
                            "statistics were made for")
        names = tuple(object_feature_names(opts))
        if names != self.object_features:
            raise DataError(f"detector features {list(names)} differ from those the model was trained on "
                            f"{list(self.object_features)}")

    def apply(self, raw: Arrays) -> Arrays:
        """Normalised copy of raw arrays (padding stays zero)."""
        return Arrays(x=None if raw.x is None else self.partons(raw.x).astype(np.float32),
                      objects=self.objects(raw.objects, raw.mask).astype(np.float32), mask=raw.mask,
                      met=self.met(raw.met).astype(np.float32), weight=raw.weight)

    # the maths works on NumPy and JAX arrays alike
    def partons(self, x):
        return (x - self.parton_mean) / self.parton_std

    def partons_inverse(self, x):
        return x * self.parton_std + self.parton_mean

    def objects(self, objects, mask):
        return ((objects - self.object_mean) / self.object_std) * mask[..., None]

    def met(self, met):
        return (met - self.met_mean) / self.met_std

    def to_dict(self) -> dict[str, Any]:
        scalars = ("parton_representation", "top_line_width")
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in self.__dict__.items()
               if k not in scalars}
        return out | {k: getattr(self, k) for k in scalars}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        names = ("object_features", "met_features", "parton_representation", "top_line_width")
        arrays = {k: np.asarray(v, np.float32) for k, v in d.items() if k not in names}
        return cls(**arrays, object_features=tuple(d["object_features"]), met_features=tuple(d["met_features"]),
                   parton_representation=d.get("parton_representation", "paper"),
                   top_line_width=float(d.get("top_line_width", physics.GAMMA_TOP)))
