#!/usr/bin/env bash
# The samples of the top-mass measurement (issue 12): training samples spanning the masses to be measured (145-200
# GeV, which the measurement uses, and 166-179), one at the nominal mass only (to show the bias the range removes), pseudo-data at 170, 172.5
# and 175 GeV and independent calibration samples at the same masses and at 160, 165, 180, 185. Seeds never
# repeat between samples.
#   bash scripts/make_top_mass_samples.sh OUT_DIR [toy|pythia|both]
# Pythia runs with MPI off (5x faster; the same for every sample, so the measurement is self-consistent).
set -euo pipefail
out=${1:?usage: make_top_mass_samples.sh OUT_DIR [toy|pythia|both]}
which=${2:-both}
mkdir -p "$out"
gen() {  # generator name n seed [mass options...]
  local g=$1 name=$2 n=$3 seed=$4; shift 4
  local extra=()
  [ "$g" = pythia ] && extra=(--no-mpi -j "${WORKERS:-1}")
  [ -f "$out/${g}_$name.h5" ] || lvd generate "$g" "$out/${g}_$name.h5" -e "$n" --seed "$seed" "${extra[@]}" "$@"
}
for g in toy pythia; do
  [ "$which" = both ] || [ "$which" = "$g" ] || continue
  if [ "$g" = toy ]; then ntrain=300000; nnom=300000; else ntrain=100000; nnom=100000; fi
  # the range the measurement uses: four times wider than the masses to be measured (the unfolded mean moves
  # by ~9 % of the data's shift with it, by 0.4 % with 166-179: benchmarks/results/top_mass_toy.md)
  gen "$g" train_wide    "$ntrain" 33 --top-mass-range 145:200
  gen "$g" train_nominal "$nnom"   32 --top-mass 172.5
  gen "$g" train_range   "$ntrain" 31 --top-mass-range 166:179
  for m in 170 172.5 175; do
    s=${m/./}
    gen "$g" "pseudo_$m" 20000 "4${s}" --top-mass "$m"
    gen "$g" "calib_$m"  20000 "5${s}" --top-mass "$m"
  done
  # calibration points further out: a 25 GeV lever arm for the calibration line
  for m in 160 185 165 180; do gen "$g" "calib_$m" 20000 "5${m}" --top-mass "$m"; done
  if [ "$g" = toy ]; then
    # larger pseudo-data (the 20k samples' statistical error is ~0.45 GeV: benchmarks/results/top_mass_toy.md)
    for m in 170 172.5 175; do gen "$g" "pseudo100k_$m" 100000 "8${m/./}" --top-mass "$m"; done
  fi
done
