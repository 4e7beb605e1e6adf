#!/usr/bin/env bash
# Posterior calibration of one model against the sampler and its step count (issue 13): unfold the same
# validation events with each sampler, then the coverage / spread table and full evaluations.
#   bash benchmarks/sampler_coverage.sh RUN OUT_DIR [SEED]
# RUN: a run folder (e.g. src/lvd/pretrained/toy); SEED: of the 20,000 toy validation events (default 7,100,000,
# which no shipped-model training or demo uses). Results: OUT_DIR/table.md, OUT_DIR/eval_*/report.md.
set -euo pipefail
run=${1:?usage: sampler_coverage.sh RUN OUT_DIR [SEED]}
out=${2:?usage: sampler_coverage.sh RUN OUT_DIR [SEED]}
seed=${3:-7100000}
mkdir -p "$out"
[ -f "$out/val.h5" ] || lvd generate toy "$out/val.h5" -e 20000 --seed "$seed"
for cfg in "dpm++ 20" "dpm++ 40" "ddim 50" "ancestral 50" "ancestral 100"; do
  set -- $cfg
  f="$out/u_$1_$2.h5"
  [ -f "$f" ] || lvd unfold "$run" "$out/val.h5" "$f" -k 16 --sampler "$1" --steps "$2"
done
python "$(dirname "$0")/posterior_width.py" "$out"/u_*.h5 --out "$out/table.md"
for cfg in "dpm++_20" "ancestral_50" "ancestral_100"; do
  [ -f "$out/eval_$cfg/report.md" ] || lvd evaluate "$out/u_$cfg.h5" -o "$out/eval_$cfg" --plots key
done
