"""The parton-level phase space a cross section is stated in: ``full``, or fiducial cuts from a YAML file.

A fiducial phase space keeps the parton events whose observables pass every cut (``min``, ``max``, ``abs_max`` on
any observable of :func:`lvd.measurement.observables.derived`). It applies to the unfolded draws (a draw outside
counts nowhere) and to the truth it is compared with; the efficiency ε(x) of a parton event is the same function
inside it, so the classifier trained on every generated signal event serves, and where the cuts follow the
detector's the efficiency stays away from zero. The package's default is ``fiducial.yaml`` beside this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvd.errors import DataError, LvdError
from lvd.measurement.observables import derived

DEFAULT_FIDUCIAL = Path(__file__).with_name("fiducial.yaml")
_BOUNDS = ("min", "max", "abs_max")


@dataclass(frozen=True)
class PhaseSpace:
    """``name`` and cuts ``(observable, bound, value)``; no cuts: the full phase space."""

    name: str = "full"
    cuts: tuple[tuple[str, str, float], ...] = ()

    def mask(self, particles: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
        """Which parton events (``[N]`` truth or ``[N, K]`` draws) are inside."""
        values = derived(particles)
        shape = values["pt_ttbar"].shape
        inside = np.ones(shape, bool)
        for name, bound, cut in self.cuts:
            if name not in values:
                raise LvdError(f"phase space {self.name!r}: unknown observable {name!r}; known: "
                               f"{', '.join(sorted(values))}")
            v = values[name]
            inside &= {"min": v >= cut, "max": v <= cut, "abs_max": np.abs(v) <= cut}[bound]
        return inside

    def describe(self) -> str:
        if not self.cuts:
            return "full"
        return f"fiducial ({self.name}: " + ", ".join(
            f"{n} {'≥' if b == 'min' else '≤'} {v:g}" if b != "abs_max" else f"|{n}| ≤ {v:g}"
            for n, b, v in self.cuts) + ")"


def load_phase_space(which: str, path: str | os.PathLike | None = None) -> PhaseSpace:
    """``full``, or ``fiducial`` with the cuts of ``path`` (default: the package's ``fiducial.yaml``)."""
    if which == "full":
        if path is not None:
            raise LvdError("--fiducial-cuts belongs to --phase-space fiducial")
        return PhaseSpace()
    if which != "fiducial":
        raise LvdError(f"--phase-space {which!r}: choose full or fiducial")
    import yaml

    path = Path(path) if path is not None else DEFAULT_FIDUCIAL
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not a readable YAML file ({type(e).__name__})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cuts"), dict) or not spec["cuts"]:
        raise DataError(f"{path}: expected 'cuts:' mapping observables to {{min|max|abs_max: value}}")
    cuts = []
    for name, bounds in spec["cuts"].items():
        if not isinstance(bounds, dict) or not bounds or set(bounds) - set(_BOUNDS):
            raise DataError(f"{path}: cut {name!r}: give min, max and/or abs_max")
        for bound, value in bounds.items():
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise DataError(f"{path}: cut {name}.{bound} is {value!r}, expected a number")
            cuts.append((str(name), bound, float(value)))
    return PhaseSpace(name=str(spec.get("name", path.stem)), cuts=tuple(cuts))
