"""Speed and memory of ``lvd convert delphes`` on a large Delphes-layout file (issue 11 acceptance).

    python benchmarks/convert_delphes.py --events 1000000 --work /tmp/lvd-bench

Builds (once) toy events and a Delphes-layout ROOT file from them with the test suite's writer
(``tests/root_files.py``: jets, leptons, MET, a generator record of 18 particles per event, 10 % negative
weights, 35 % of the events failing a cut or without a semi-leptonic chain), then runs the conversion in a
fresh process under ``/usr/bin/time -v`` and prints events/s and the peak resident memory.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build(work: Path, n: int) -> Path:
    import root_files

    from lvd.data.generate import toy
    from lvd.data.schema import read_events

    events, root = work / f"toy_{n}.h5", work / f"delphes_{n}.root"
    if not events.exists():
        toy.generate_file(events, n, seed=11)
    if not root.exists():
        data = read_events(events, require_truth=True)
        root_files.write_delphes(root, data, root_files.make_plan(n, seed=12, fraction=0.04), chunk=100_000)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lvd-bench"))
    ap.add_argument("--chunk", type=int, default=20_000)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    root = build(args.work, args.events)
    out = args.work / "converted.h5"
    t0 = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", "lvd", "convert", "delphes", str(root), str(out),
                          "--chunk", str(args.chunk)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(run.stderr)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    print(f"{root.name}: {root.stat().st_size / 1e6:.0f} MB, {args.events:,} events, chunk {args.chunk:,}")
    print(f"lvd convert delphes: {wall:.1f} s wall, {args.events / wall:,.0f} events/s, "
          f"peak RSS {rss_kb / 1024:.0f} MiB; output {out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
