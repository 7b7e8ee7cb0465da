#!/usr/bin/env bash
# Speed of the simulator beside the real lab: for each scenario in DIR, the median wall time of `lab run --sim FILE` (a whole process: start, parse, simulate, write
# the artifacts) and, as root, of `lab run FILE` on the real kernel; then the whole directory in
# the simulator. Release build.
#
#   ci/bench-sim.sh [RUNS] [DIR]        figures go to docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
dir=${2:-scenarios}
cargo build --release -q -p lab -p lb
lab=${CARGO_TARGET_DIR:-target}/release/lab
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LAB_ARTIFACTS="$work/artifacts" INSTA_UPDATE=no

# Median wall time in ms of RUNS runs of the command; fails if any run fails.
median_ms() {
  local times=()
  for _ in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

echo "kernel $(uname -r); $(nproc) CPUs; median of $runs runs each"
printf '%-28s %12s %12s\n' scenario "sim (ms)" "real (ms)"
for f in "$dir"/*.toml; do
  if ! "$lab" run --sim "$f" >"$work/probe" 2>&1; then
    cat "$work/probe" >&2
    exit 1
  fi
  sim=$(median_ms "$lab" run --sim "$f")
  real=-
  if [[ $(id -u) -eq 0 ]]; then
    real=$(median_ms "$lab" run "$f")
  fi
  printf '%-28s %12s %12s\n' "$(basename "$f" .toml)" "$sim" "$real"
done
all=$(median_ms "$lab" run --sim "$dir")
echo "whole directory in the simulator (lab run --sim $dir): $all ms"
