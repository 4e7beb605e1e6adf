"""``lvd unfold``: the checkpoint's sampling options with this call's changes, then the library's unfold_file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lvd import distributed
from lvd.cli.progress import console, progress_bar
from lvd.data.schema import count_events
from lvd.sampling.unfold import Unfolder, sample_options, unfold_file
from lvd.training.run import Checkpoint


def run_unfold(run: Path, data: Path, out: Path, overrides: list[str], flags: dict[str, Any]) -> None:
    ck = Checkpoint.open(run)
    s = sample_options(ck.options, overrides, **flags)
    multi = distributed.process_count() > 1
    u = None if multi else Unfolder(ck)  # with several processes each loads its own (local devices)
    n = count_events(data, ck.layout)
    t0 = time.time()
    with progress_bar(n if not multi else None, f"unfold ({ck.options.model.kind})") as advance:
        attrs = unfold_file(run, data, out, samples=s.samples, sampler=s.sampler, steps=s.steps, spacing=s.spacing,
                            batch_size=s.batch_size, seed=s.seed, on_progress=advance, unfolder=u)
    if distributed.is_main():
        console.print(f"wrote {out}: {attrs['samples_per_event']} samples per event with {attrs['sampler']} "
                      f"({attrs['sampler_steps']} steps, {attrs['sampler_spacing']} spacing, seed "
                      f"{attrs['sampling_seed']}) from {attrs['checkpoint']} in {time.time() - t0:.1f} s")
