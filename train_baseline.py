#!/usr/bin/env python3
"""The original code's baseline convention: ``train_baseline.py {cinn,cvae,vae,vdm,ldm} OPTIONS TRAINING_FILE [-c] [-n] [-w]``.

Equivalent to ``lvd train --model KIND OPTIONS TRAINING_FILE ...`` (``vae`` is stage 1 of the LDM).
"""

import sys

from lvd.cli.main import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print("usage: train_baseline.py {cinn,cvae,vae,vdm,ldm} OPTIONS TRAINING_FILE [lvd train options]", file=sys.stderr)
        sys.exit(2)
    sys.argv = ["lvd", "train", "--model", sys.argv[1], *sys.argv[2:]]
    main()
