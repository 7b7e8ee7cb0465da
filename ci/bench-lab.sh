#!/usr/bin/env bash
# Times `lab up` + `lab down` against Mininet 2.3 (Debian) on single,3 and single,50, in the same
# run, and prints the ratios: lab's native backend, lab's Mininet backend (`--backend mininet`:
# Mininet builds, lab removes), and plain `mn`. Documented in docs/benchmarks.md ("Lab: `lab up` + `lab down`
# against Mininet"). Run as root:
#
#   ci/setup.sh      # once: mininet + bridge-utils from Debian
#   ci/bench-lab.sh                 # builds lab (release) if needed, then measures
#
# Options (environment):
#   LAB_BIN=PATH       the lab binary (default: build with cargo, use $CARGO_TARGET_DIR/release/lab)
#   RUNS=10            timed runs of lab up + down per topology (after one untimed warm-up)
#   MN_RUNS=3          timed runs of Mininet per topology (after one untimed warm-up)
#   MNB_RUNS=5         timed runs of `lab up --backend mininet` + down per topology
#   TOPOS="3 50"       K values of single,K
#   NO_MININET=1       skip Mininet (lab figures only)
#   ROOTLESS_USER=U    also time lab run by the ordinary user U (rootless: a holder process and
#                      user namespaces per lab, docs/rootless.md); U must be able to run LAB_BIN
#
# What is timed: wall clock of `lab up --topo single,K --name NAME` and then `lab down NAME`,
# two separate processes as a user runs them, summed; for Mininet the single process
# `mn --switch lxbr --controller none --topo single,K --test none`, which builds the network
# and removes it. Median and minimum, as hyperfine reports them. Runs follow each other without
# a pause, like hyperfine's; the kernel frees a deleted namespace asynchronously, so part of one
# run's teardown cost can land in the next run, for both tools alike.
#
# Target (issue 2): lab at least 10x faster than Mininet, which took 0.42 s for 3 hosts and
# 2.43 s for 50 when the issue was written: lab median <= 40 ms and <= 250 ms.
#
# Mininet creates its switch and the switch ends of its veths in the root namespace. After each
# Mininet run the script compares the root namespace's links with those before the run; any that
# Mininet left (named like s1, s1-eth3, h2-eth0) are deleted by name and reported. It never runs
# `mn -c`. Exit status: 1 when lab fails (or the machine cannot run it), 0 otherwise; a missed
# target or a Mininet that cannot run here is reported in the output, not in the exit status.
set -uo pipefail

RUNS=${RUNS:-10}
MN_RUNS=${MN_RUNS:-3}
MNB_RUNS=${MNB_RUNS:-5}
TOPOS=${TOPOS:-"3 50"}
declare -A TARGET_MS=([3]=40 [50]=250)
declare -A ISSUE_MN_MS=([3]=420 [50]=2430)

cd "$(dirname "$0")/.." || exit 1

die() {
  echo "bench-lab: $*" >&2
  exit 1
}
[[ $(id -u) -eq 0 ]] || die "run as root (lab and Mininet create network namespaces)"

now_ns() { date +%s%N; }

# median and min (ms, 1 decimal) of the numbers (ns) given as arguments
stats() {
  printf '%s\n' "$@" | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "- -"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.1f %.1f\n", m / 1e6, v[1] / 1e6
    }'
}

# ---- the machine ----
echo "== machine"
echo "nproc: $(nproc)   kernel: $(uname -r)   $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)   load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the lab binary ----
if [[ -z "${LAB_BIN:-}" ]]; then
  echo "== building lab (cargo build --release -p lab)"
  cargo build --release -p lab -q || die "cargo build failed"
  LAB_BIN="${CARGO_TARGET_DIR:-target}/release/lab"
fi
[[ -x "$LAB_BIN" ]] || die "no lab binary at $LAB_BIN"
echo "lab: $LAB_BIN ($("$LAB_BIN" --version 2>/dev/null | head -1))"

# ---- Mininet available? ----
mn_ok=1
mn_why=""
if [[ -n "${NO_MININET:-}" ]]; then
  mn_ok=0 mn_why="skipped (NO_MININET set)"
elif ! command -v mn >/dev/null; then
  mn_ok=0 mn_why="mn is not installed (run ci/setup.sh)"
elif ! command -v brctl >/dev/null; then
  mn_ok=0 mn_why="brctl is missing: Mininet's lxbr switch needs bridge-utils (run ci/setup.sh)"
fi
if ((mn_ok)); then
  echo "mininet: $(mn --version 2>&1 | tail -1)"
else
  echo "mininet: not measured: $mn_why"
fi

links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }
mn_left_behind=0

# Runs Mininet once on single,$1; sets MN_T to the elapsed ns. Returns non-zero (and sets
# mn_why) when mn fails. Removes and reports any root-namespace link it leaves.
mn_once() {
  local k=$1 before after t0 t1 rc out new l
  before=$(links)
  out=$(mktemp)
  t0=$(now_ns)
  (cd /tmp && mn --switch lxbr --controller none --topo "single,$k" --test none) >"$out" 2>&1
  rc=$?
  t1=$(now_ns)
  after=$(links)
  new=$(comm -13 <(echo "$before") <(echo "$after"))
  if [[ -n "$new" ]]; then
    for l in $new; do
      if [[ "$l" =~ ^(s[0-9]+|s[0-9]+-eth[0-9]+|h[0-9]+-eth[0-9]+)$ ]]; then
        echo "bench-lab: Mininet left link $l in the root namespace: deleting it" >&2
        ip link delete "$l" >&2 || true
        mn_left_behind=$((mn_left_behind + 1))
      else
        echo "bench-lab: link $l appeared in the root namespace during the Mininet run (not Mininet's name: left alone)" >&2
      fi
    done
  fi
  if ((rc != 0)) || grep -qE '^(Traceback|Exception|\*\*\* Error)' "$out"; then
    mn_why="mn exited with status $rc: $(grep -vE '^\*\*\* (Creating|Adding|Configuring|Starting|Stopping)' "$out" | tail -3 | tr '\n' ' ')"
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
  MN_T=$((t1 - t0))
}

# Runs lab up + down once on single,$1 (more `lab up` arguments after the second); sets LAB_T
# to "total up down" in ns. Returns non-zero on failure.
lab_once() {
  local k=$1 name="bench-$$-$2" t0 t1 t2 out
  out=$(mktemp)
  t0=$(now_ns)
  if ! "$LAB_BIN" up --topo "single,$k" --name "$name" "${@:3}" >/dev/null 2>"$out"; then
    echo "bench-lab: lab up --topo single,$k failed: $(cat "$out")" >&2
    "$LAB_BIN" down "$name" >/dev/null 2>&1
    rm -f "$out"
    return 1
  fi
  t1=$(now_ns)
  if ! "$LAB_BIN" down "$name" >/dev/null 2>"$out"; then
    echo "bench-lab: lab down $name failed: $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  t2=$(now_ns)
  rm -f "$out"
  LAB_T="$((t2 - t0)) $((t1 - t0)) $((t2 - t1))"
}

lab_failed=0
declare -A LAB_MED LAB_MIN UP_MED DOWN_MED MN_MED MN_MIN MNB_MED MNB_MIN RL_MED RL_MIN
ROOTLESS_USER=${ROOTLESS_USER:-}

# Times lab up + down on single,$1 as $ROOTLESS_USER, 1 warm-up + $RUNS runs, in one shell of
# that user's (runuser itself is not timed); prints "total up down" in ns per timed run.
rootless_runs() {
  runuser -u "$ROOTLESS_USER" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin bash -c '
    lab=$1 k=$2 runs=$3
    for i in $(seq 0 "$runs"); do
      n=rl-$$-$k-$i
      t0=$(date +%s%N)
      "$lab" up --topo "single,$k" --name "$n" >/dev/null || exit 1
      t1=$(date +%s%N)
      "$lab" down "$n" >/dev/null || exit 1
      t2=$(date +%s%N)
      ((i > 0)) && echo "$((t2 - t0)) $((t1 - t0)) $((t2 - t1))"
    done
    exit 0' bench "$LAB_BIN" "$1" "$RUNS"
}

for k in $TOPOS; do
  echo "== single,$k: lab, 1 warm-up + $RUNS runs"
  totals=() ups=() downs=()
  for i in $(seq 0 "$RUNS"); do
    if ! lab_once "$k" "$k-$i"; then
      lab_failed=1
      break
    fi
    read -r tot up down <<<"$LAB_T"
    ((i == 0)) && continue
    totals+=("$tot") ups+=("$up") downs+=("$down")
  done
  if ((${#totals[@]} == RUNS)); then
    read -r LAB_MED[$k] LAB_MIN[$k] < <(stats "${totals[@]}")
    read -r UP_MED[$k] _ < <(stats "${ups[@]}")
    read -r DOWN_MED[$k] _ < <(stats "${downs[@]}")
    echo "   up + down: median ${LAB_MED[$k]} ms, min ${LAB_MIN[$k]} ms   (up ${UP_MED[$k]} ms + down ${DOWN_MED[$k]} ms, medians)"
  fi

  if [[ -n $ROOTLESS_USER ]]; then
    echo "== single,$k: lab as $ROOTLESS_USER (rootless), 1 warm-up + $RUNS runs"
    if mapfile -t rl < <(rootless_runs "$k") && ((${#rl[@]} == RUNS)); then
      totals=() ups=() downs=()
      for r in "${rl[@]}"; do
        read -r tot up down <<<"$r"
        totals+=("$tot") ups+=("$up") downs+=("$down")
      done
      read -r RL_MED[$k] RL_MIN[$k] < <(stats "${totals[@]}")
      read -r rl_up _ < <(stats "${ups[@]}")
      read -r rl_down _ < <(stats "${downs[@]}")
      echo "   up + down: median ${RL_MED[$k]} ms, min ${RL_MIN[$k]} ms   (up $rl_up ms + down $rl_down ms, medians)"
    else
      echo "bench-lab: lab as $ROOTLESS_USER failed on single,$k" >&2
      lab_failed=1
    fi
  fi

  if ((mn_ok)); then
    echo "== single,$k: lab --backend mininet, 1 warm-up + $MNB_RUNS runs"
    totals=() ups=()
    for i in $(seq 0 "$MNB_RUNS"); do
      if ! lab_once "$k" "m$k-$i" --backend mininet; then
        lab_failed=1
        break
      fi
      read -r tot up down <<<"$LAB_T"
      ((i == 0)) && continue
      totals+=("$tot") ups+=("$up")
    done
    if ((${#totals[@]} == MNB_RUNS)); then
      read -r MNB_MED[$k] MNB_MIN[$k] < <(stats "${totals[@]}")
      read -r mnb_up _ < <(stats "${ups[@]}")
      echo "   up + down: median ${MNB_MED[$k]} ms, min ${MNB_MIN[$k]} ms   (up $mnb_up ms, median)"
    fi
    echo "== single,$k: Mininet, 1 warm-up + $MN_RUNS runs"
    times=()
    for i in $(seq 0 "$MN_RUNS"); do
      if ! mn_once "$k"; then
        mn_ok=0
        echo "   Mininet fails on this machine: $mn_why"
        break
      fi
      ((i == 0)) && continue
      times+=("$MN_T")
    done
    if ((${#times[@]} == MN_RUNS)); then
      read -r MN_MED[$k] MN_MIN[$k] < <(stats "${times[@]}")
      echo "   mn: median ${MN_MED[$k]} ms, min ${MN_MIN[$k]} ms"
    fi
  fi
done

echo
echo "== results (wall clock, ms; median (min)); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s  %-19s  %-23s  %-21s  %-8s  %-4s  %s\n' topology "lab up+down" "lab --backend mininet" "Mininet" target met "ratio Mininet/lab"
for k in $TOPOS; do
  lab="${LAB_MED[$k]:-}"
  mn="${MN_MED[$k]:-}"
  target="${TARGET_MS[$k]:-}"
  labcol="failed" mncol="n/a" ratio="n/a" met="n/a" mnbcol="n/a"
  [[ -n "$lab" ]] && labcol="$lab (${LAB_MIN[$k]})"
  [[ -n "${MNB_MED[$k]:-}" ]] && mnbcol="${MNB_MED[$k]} (${MNB_MIN[$k]})"
  [[ -n "$mn" ]] && mncol="$mn (${MN_MIN[$k]})"
  if [[ -n "$lab" && -n "$mn" ]]; then
    ratio=$(awk -v m="$mn" -v l="$lab" 'BEGIN { printf "%.1fx", m / l }')
  fi
  if [[ -n "$lab" && -n "$target" ]]; then
    # Met: lab median within the issue's absolute target and, when Mininet ran, >= 10x faster.
    met=$(awk -v l="$lab" -v t="$target" -v m="${mn:-0}" \
      'BEGIN { print (l <= t && (m == 0 || m / l >= 10)) ? "yes" : "no" }')
  fi
  printf '%-10s  %-19s  %-23s  %-21s  %-8s  %-4s  %s\n' "single,$k" "$labcol" "$mnbcol" "$mncol" \
    "${target:+<= $target}" "$met" "$ratio"
done
if [[ -n $ROOTLESS_USER ]]; then
  for k in $TOPOS; do
    if [[ -n "${RL_MED[$k]:-}" && -n "${LAB_MED[$k]:-}" ]]; then
      echo "rootless single,$k: ${RL_MED[$k]} (${RL_MIN[$k]}) ms as $ROOTLESS_USER, $(awk -v r="${RL_MED[$k]}" -v l="${LAB_MED[$k]}" 'BEGIN { printf "%.2f", r / l }') x root's"
    fi
  done
fi
if [[ -z "${MN_MED[*]:-}" && -n "${LAB_MED[*]:-}" ]]; then
  echo "Mininet not measured: ${mn_why:-unknown}; the issue measured it at 420 ms (single,3) and 2430 ms (single,50):"
  for k in $TOPOS; do
    [[ -n "${LAB_MED[$k]:-}" && -n "${ISSUE_MN_MS[$k]:-}" ]] &&
      awk -v m="${ISSUE_MN_MS[$k]}" -v l="${LAB_MED[$k]}" -v k="$k" \
        'BEGIN { printf "  single,%s: ratio against the issue'"'"'s Mininet figure %.1fx\n", k, m / l }'
  done
fi
((mn_left_behind > 0)) && echo "Mininet left $mn_left_behind link(s) in the root namespace; deleted (see above)"
if ((lab_failed)); then
  echo "bench-lab: lab failed (see above)" >&2
  exit 1
fi
exit 0
