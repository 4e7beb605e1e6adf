"""Every model at one equal training budget on the same events, side by side (the paper's comparison).

    python benchmarks/compare_models.py TRAIN.h5 TEST.h5 --out compare --minutes 30 \\
        [--representation lvd=decay_chain,vdm=decay_chain,...] [key=value ...]

Trains LVD, VDM, LDM (its stage-1 VAE included in its budget line), CVAE and CINN with their ``*_small``
options, each with the parton representation it does best with (``--representation``: default each options
file's own, today ``ttbar_chain`` for all) and the same budget (``--minutes`` of wall time or ``--steps``), then unfolds and scores the same
held-out events: ``benchmarks/study.py`` does the work and writes ``study.md`` (W1 of the masses, m(tt̄), pT(tt̄),
ν pz; in-window fraction; C2ST AUC; coverage; mean W1/width over all observables; learning curves).
"""

from __future__ import annotations

import argparse
import sys

import study

OPTIONS = {"lvd": "small", "vdm": "vdm_small", "ldm": "ldm_small", "cvae": "cvae_small", "cinn": "cinn_small"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--out", default="compare")
    ap.add_argument("--models", default="lvd,vdm,ldm,cvae,cinn")
    ap.add_argument("--representation", default="", help="model=representation,... (default: the options')")
    ap.add_argument("--minutes", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--test-events", type=int, default=10_000)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    rep = dict(item.split("=") for item in a.representation.split(",") if item)
    argv = [a.train, a.test, "--out", a.out, "--steps", str(a.steps), "--minutes", str(a.minutes),
            "--test-events", str(a.test_events)]
    for kind in a.models.split(","):
        spec = [kind, OPTIONS[kind], *([f"data.parton_representation={rep[kind]}"] if kind in rep else []),
                *a.overrides]
        argv += ["--run", " ".join(spec)]
    sys.argv = ["study.py", *argv]
    study.main()


if __name__ == "__main__":
    main()
