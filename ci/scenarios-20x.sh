#!/usr/bin/env bash
# Reliability of the scenarios: runs the whole scenario directory RUNS times in a row (default
# 20) and checks that every run passed, that every run's comparable results (`lab run
# --results`: steps, expectation verdicts, traces, kernel; no times, lab names or paths) are
# identical to the first run's, and that no run left a namespace or a state record behind.
#
#   ci/scenarios-20x.sh [RUNS] [DIR]        as root; figures go to docs/scenario-format.md
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-20}
dir=${2:-scenarios}
if [[ $(id -u) -ne 0 ]]; then
  echo "ci/scenarios-20x.sh: run as root (labs need CAP_NET_ADMIN and CAP_SYS_ADMIN)" >&2
  exit 1
fi

cargo build --release -q -p lab -p lb
lab=${CARGO_TARGET_DIR:-target}/release/lab
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each run's artifacts (pcaps, logs) go here and are removed at the end, except a failing run's,
# which are kept in /tmp/scenarios-20x-run-N/.
export LAB_ARTIFACTS="$work/artifacts"

state_dir=${LAB_STATE_DIR:-/run/lab}
failed=0 differing=0 leftovers=0
total_ms=0 min_ms= max_ms=0
echo "kernel $(uname -r); $(nproc) CPUs; $runs runs of: $lab run $dir"
for i in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  set +e
  "$lab" run "$dir" --results "$work/results-$i.json" >"$work/out-$i.txt" 2>&1
  code=$?
  set -e
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  total_ms=$((total_ms + ms))
  (( ms > max_ms )) && max_ms=$ms
  [[ -z "$min_ms" || $ms -lt $min_ms ]] && min_ms=$ms

  # The labs this run created, from its report ("lab     NAME (removed)").
  left=()
  while read -r name; do
    compgen -G "/run/netns/lab-$name-*" >/dev/null && left+=("$name: namespaces")
    [[ -e "$state_dir/$name.json" ]] && left+=("$name: state record")
  done < <(sed -n 's/^lab     \([^ ]*\) (removed)$/\1/p' "$work/out-$i.txt")

  verdict=same
  if [[ $code -ne 0 ]]; then
    verdict="FAILED (exit $code)"
    failed=$((failed + 1))
  elif ! cmp -s "$work/results-1.json" "$work/results-$i.json"; then
    verdict="DIFFERS from run 1"
    differing=$((differing + 1))
    diff "$work/results-1.json" "$work/results-$i.json" | head -20 || true
  fi
  if [[ $verdict != same ]]; then
    keep="/tmp/scenarios-20x-run-$i"
    rm -rf "$keep" && mkdir -p "$keep"
    cp "$work/out-$i.txt" "$keep/output.txt"
    cp -r "$LAB_ARTIFACTS/." "$keep/" 2>/dev/null || true
  fi
  rm -rf "$LAB_ARTIFACTS"
  if ((${#left[@]})); then
    leftovers=$((leftovers + 1))
    verdict="$verdict; LEFT BEHIND: ${left[*]}"
  fi
  passed=$(grep -c '^PASS ' "$work/out-$i.txt" || true)
  printf 'run %2d: %5d ms, %s scenarios passed, %s\n' "$i" "$ms" "$passed" "$verdict"
done

distinct=$(md5sum "$work"/results-*.json | awk '{print $1}' | sort -u | wc -l)
echo
echo "$runs runs: $((runs - failed)) passed, $distinct distinct result(s), $leftovers left something behind"
echo "time per run: min $min_ms ms, mean $((total_ms / runs)) ms, max $max_ms ms"
echo "results digest: $(md5sum "$work/results-1.json" | awk '{print $1}')"
if ((failed + differing + leftovers)); then
  echo "output and artifacts of the failing runs: /tmp/scenarios-20x-run-N/"
  exit 1
fi
