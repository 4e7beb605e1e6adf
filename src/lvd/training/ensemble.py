"""Ensembles: N runs of one set of options that differ only in ``train.seed`` (seed + m), trained one after another.

Member m is the ordinary run ``NAME-m`` (``runs/NAME-m/version_K``): it resumes, unfolds and evaluates like any
run, and ``lvd unfold NAME-0 ... NAME-{N-1} DATA OUT`` pools them. The seed sets the initial parameters, the
order of the batches, the diffusion noise and the training/validation split, so the members' spread measures
how much the result depends on the training itself (docs/design.md §6, "Ensembles")::

    results = train_ensemble(opts, "train.h5", 3, runs_dir="runs")     # runs/NAME-0, NAME-1, NAME-2

Running it again continues: a member whose newest run has these options (up to the changes a resume allows)
and reached its steps is kept, one that stopped early is resumed from its latest checkpoint, a missing one (or
one trained with other options) is started.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvd import distributed
from lvd.config import Options
from lvd.errors import CheckpointError, LvdError
from lvd.runs.run import Checkpoint, resumable
from lvd.training.hooks import Hook
from lvd.training.loop import TrainResult, train

FINISHED = ("steps", "stop_at")  # how a member that needs no more training stopped


@dataclass(frozen=True)
class Member:
    """Member ``index`` of an ensemble: its options and what training it needs."""

    index: int
    options: Options  # train.seed = the ensemble's seed + index, name = NAME-index
    status: str  # "new", "resume" or "done"
    checkpoint: Path | None = None  # the member's latest checkpoint (resume, done)

    @property
    def name(self) -> str:
        return self.options.name


def member_options(opts: Options, n: int) -> list[Options]:
    """The options of members 0 … n−1: ``opts`` with ``train.seed + m`` and the name ``NAME-m``."""
    if n < 2:
        raise LvdError(f"--ensemble {n}: an ensemble needs at least 2 members")
    return [dataclasses.replace(opts, name=f"{opts.name}-{m}",
                                train=dataclasses.replace(opts.train, seed=opts.train.seed + m)) for m in range(n)]


def target_step(opts: Options) -> int:
    """The step at which a run of ``opts`` stops by itself (``train.stop_at`` when it comes first)."""
    t = opts.train
    return t.stop_at if 0 < t.stop_at < t.steps else t.steps


def plan(opts: Options, n: int, runs_dir: str | os.PathLike = "runs") -> list[Member]:
    """What each of the ``n`` members needs, from what ``runs_dir`` holds (see the module docstring)."""
    out = []
    for m, o in enumerate(member_options(opts, n)):
        try:
            ck = Checkpoint.open(Path(runs_dir) / o.name, prefer="latest")  # the newest version's
        except CheckpointError:  # no run, or one that stopped before its first checkpoint
            out.append(Member(m, o, "new"))
            continue
        if ck.options.model.kind != o.model.kind or not resumable(ck.options, o):
            out.append(Member(m, o, "new"))  # trained with other options: a new version, as lvd train does
        else:
            out.append(Member(m, o, "done" if ck.step >= target_step(o) else "resume", ck.step_dir))
    return out


def train_ensemble(opts: Options, data_path: str | os.PathLike, n: int, *, runs_dir: str | os.PathLike = "runs",
                   weights: str | os.PathLike | None = None, report: Callable[[str], None] | None = None,
                   progress: Callable[..., Any] | None = None,
                   hooks: Callable[[Options], Sequence[Hook]] | None = None) -> list[tuple[Member, TrainResult | None]]:
    """Train the members that need it, one after another (:func:`plan`); ``hooks(member options)`` gives each
    run's extra hooks. Stops after a member that was interrupted (a signal, the time limit): running it again
    continues with that member. Returns every member planned so far with its result (None: already done)."""
    say = report if (report is not None and distributed.is_main()) else (lambda s: None)
    done: list[tuple[Member, TrainResult | None]] = []
    for member in plan(opts, n, runs_dir):
        if member.status == "done":
            say(f"member {member.index}: {member.name} already trained ({member.checkpoint})")
            done.append((member, None))
            continue
        say(f"member {member.index} of {n}: {member.name}, train.seed={member.options.train.seed}"
            + (" (resumed)" if member.status == "resume" else ""))
        result = train(member.options, data_path, runs_dir=runs_dir, checkpoint=member.checkpoint, weights=weights,
                       report=report, progress=progress, hooks=hooks(member.options) if hooks else ())
        done.append((member, result))
        if result.stopped_by not in FINISHED:
            break
    return done
