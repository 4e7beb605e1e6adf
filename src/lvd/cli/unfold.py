"""``lvd unfold``: the checkpoint's sampling options with this call's changes, then the library's unfold_file (one
run) or unfold_ensemble (several runs, pooled)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from lvd import distributed
from lvd.cli.progress import console, progress_bar
from lvd.data.schema import count_events
from lvd.errors import LvdError
from lvd.runs.run import Checkpoint
from lvd.sampling.unfold import (
    Unfolder,
    check_members,
    sample_options,
    unfold_ensemble,
    unfold_file,
)

# A key=value override: a dotted option name, then '='. Paths are everything else (a path with a folder in it
# never matches, since '/' is not part of a name).
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def split_arguments(args: list[str]) -> tuple[list[Path], Path, Path, list[str]]:
    """``RUN [RUN ...] DATA OUT [key=value ...]`` -> runs, data, out, overrides: the overrides are the arguments
    of the form ``key=value``, the last two of the others are DATA and OUT, the ones before them the runs."""
    overrides = [a for a in args if _OVERRIDE.match(a)]
    paths = [Path(a) for a in args if not _OVERRIDE.match(a)]
    if len(paths) < 3:
        raise LvdError(f"lvd unfold takes RUN [RUN ...] DATA OUT, got {len(paths)} path(s): "
                       f"{' '.join(map(str, paths)) or 'none'}")
    return paths[:-2], paths[-2], paths[-1], overrides


def run_unfold(args: list[str], flags: dict[str, Any]) -> None:
    runs, data, out, overrides = split_arguments(args)
    checkpoints = [Checkpoint.open(r) for r in runs]
    if len(runs) > 1:
        check_members(checkpoints, runs)  # before any parameters are restored
    ck = checkpoints[0]
    s = sample_options(ck.options, overrides, **flags)
    multi = distributed.process_count() > 1
    # with several processes each loads its own (local devices)
    units = None if multi else [Unfolder.from_checkpoint(c) for c in checkpoints]
    n = count_events(data, ck.layout)
    kinds = ", ".join(dict.fromkeys(c.options.model.kind for c in checkpoints))
    what = f"unfold ({kinds})" if len(runs) == 1 else f"unfold ({len(runs)} members, {kinds})"
    kw = dict(samples=s.samples, sampler=s.sampler, steps=s.steps, spacing=s.spacing, batch_size=s.batch_size,
              seed=s.seed)
    t0 = time.time()
    with progress_bar(n if not multi else None, what) as advance:
        if len(runs) == 1:
            attrs = unfold_file(runs[0], data, out, on_progress=advance, unfolder=units and units[0], **kw)
        else:
            attrs = unfold_ensemble(runs, data, out, on_progress=advance, unfolders=units, **kw)
    if distributed.is_main():
        source = (attrs["checkpoint"] if len(runs) == 1 else
                  f"{len(runs)} members ({attrs['ensemble_samples_per_member']} each)")
        console.print(f"wrote {out}: {attrs['samples_per_event']} samples per event with {attrs['sampler']} "
                      f"({attrs['sampler_steps']} steps, {attrs['sampler_spacing']} spacing, seed "
                      f"{attrs['sampling_seed']}) from {source} in {time.time() - t0:.1f} s")
