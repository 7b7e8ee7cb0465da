#!/usr/bin/env bash
# Issue 17's second case, measured: a backend is added to the surviving balancers while one of
# three dies (scenarios/scale-out-churn.toml). The flows the dead balancer carried move
# to the others, which have no connection-table entry for them and whose Maglev tables now
# hold the new backend. Per run: the flows lb2 tracked (the flows that move; hash-threshold ECMP
# may move a few of the others too), the connections broken, and their ratio; once with
# `--table-grace 0` (a moved flow is decided by the current table: those whose slot went to the
# new backend are reset; Maglev's bound for 3 -> 4 backends is about 1/4) and once with the
# default grace (untracked mid-connection packets go by the table before the change for 10 s).
#
#   ci/scale-out-churn.sh [RUNS]        as root (default 10 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release -q -p lab -p lb
lab=$PWD/${CARGO_TARGET_DIR:-target}/release/lab
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "kernel $(uname -r); $runs runs of each: $lab run scenarios/scale-out-churn.toml"
for grace in 0 10s; do
  # The scenario with `--table-grace GRACE` on every balancer, its topology path made absolute.
  sed -e "s|\"--hash-key\", \"scale-out\",|\"--hash-key\", \"scale-out\", \"--table-grace\", \"$grace\",|" \
      -e "s|topology = \"../fixtures/topologies/scale-out.toml\"|topology = \"$PWD/fixtures/topologies/scale-out.toml\"|" \
      scenarios/scale-out-churn.toml >"$work/churn.toml"
  grep -q -- "--table-grace" "$work/churn.toml" || { echo "the fixture's lb arguments changed"; exit 1; }
  moved_sum=0 broken_sum=0
  echo
  echo "--table-grace $grace:"
  for i in $(seq 1 "$runs"); do
    export LAB_ARTIFACTS="$work/run-$grace-$i"
    # Its last expectation (0 broken) fails without the grace: what counts here is the tally.
    "$lab" run "$work/churn.toml" >"$work/out.txt" 2>&1 || true
    grep -q 'tally `after` of connections `long`: ok' "$work/out.txt" || {
      echo "run $i did not get to its last tally:"; tail -20 "$work/out.txt"; exit 1; }
    moved=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tracked_flows"])' "$LAB_ARTIFACTS"/*/lb2-lb2-state.log)
    broken=$(sed -n 's/.*tally `after` of connections `long`: ok: open [0-9]*, failed [0-9]*, broken \([0-9]*\),.*/\1/p' "$work/out.txt")
    moved_sum=$((moved_sum + moved)) broken_sum=$((broken_sum + broken))
    printf '  run %2d: lb2 carried %3d of 200 flows, %3d connections broke (%s of the moved)\n' \
      "$i" "$moved" "$broken" "$(python3 -c "print(f'{$broken / max($moved, 1):.2f}')")"
    rm -rf "$LAB_ARTIFACTS"
  done
  echo "  summary --table-grace $grace: $broken_sum broken of $moved_sum moved flows ($(python3 -c "print(f'{$broken_sum / max($moved_sum, 1):.3f}')"); Maglev's bound for 3 -> 4 backends: about 0.25)"
done
