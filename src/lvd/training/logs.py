"""Where a run's metrics go: ``metrics.csv`` in the run folder and TensorBoard event files beside it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class MetricsLog:
    """``metrics.csv`` (always) and TensorBoard (when tensorboardX is installed) side by side.

    Rows of different splits carry different metrics; the CSV's header is the union of all keys seen, and the
    file is rewritten with a wider header when a new metric appears (it is small).
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.csv"
        self.fields: list[str] = []
        if self.path.exists():
            with open(self.path) as f:
                self.fields = next(csv.reader(f), [])
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir))
        except ImportError:
            self.tb = None

    def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
        row = {"split": split, "step": step, **metrics}
        new = [k for k in ("split", "step", *sorted(metrics)) if k not in self.fields]
        if new:
            self._widen(new)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def _widen(self, new: list[str]) -> None:
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
        self.fields = [*self.fields, *new]
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.fields)
            w.writerows([[r.get(k, "") for k in self.fields] for r in rows])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class NoLog:
    """Processes other than 0 write no logs."""

    def write(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
