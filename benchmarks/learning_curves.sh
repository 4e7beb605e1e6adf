#!/bin/bash
# LVD against VDM to 3x the packaged budget (issue 23): both trained side by side on the same fresh toy events
# to 21,000 steps of 512 with the physics monitor in metrics.csv, checkpoints every 500 steps, niced so that the
# machine's other work goes first. Resumable: run it again and each run continues from its latest checkpoint.
#
#   bash benchmarks/learning_curves.sh OUT_DIR [STEPS]
set -euo pipefail
out=${1:?usage: learning_curves.sh OUT_DIR [STEPS]}
steps=${2:-21000}
mkdir -p "$out" && cd "$out"
[ -f train.h5 ] || lvd generate toy train.h5 -e 100000 --seed 2101
[ -f test.h5 ] || lvd generate toy test.h5 -e 20000 --seed 2102
for kind in lvd vdm; do
  opts=small; [ "$kind" = vdm ] && opts=vdm_small
  run=runs/$kind-curve/version_0
  resume=(); [ -d "$run/checkpoints" ] && resume=(-c "$run")
  nice -n 19 lvd train "$opts" train.h5 "train.steps=$steps" train.checkpoint_every=500 --runs-dir runs \
    --name "$kind-curve" "${resume[@]}" >> "$kind.log" 2>&1 &
done
wait
