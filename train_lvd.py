#!/usr/bin/env python3
"""The original code's calling convention, kept working: ``train_lvd.py OPTIONS TRAINING_FILE [-c CKPT] [-s N] [-n NAME] [-w W.npy]``.

Equivalent to ``lvd train OPTIONS TRAINING_FILE ...``; TRAINING_FILE may be an lvd .h5 or an original-layout .npz.
The original ``-s START_BATCH`` becomes ``--start-batch`` (in ``lvd``, ``-s`` is always a seed).
"""

import sys

from lvd.cli.main import main

if __name__ == "__main__":
    args = ["--start-batch" if a == "-s" else a for a in sys.argv[1:]]
    sys.argv = ["lvd", "train", *args]
    main()
