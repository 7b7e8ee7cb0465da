#!/usr/bin/env bash
# Soak: the whole scenario directory again and again (`lab run scenarios/`, several scenarios at
# once), while a long-lived balancer in a lab of its own takes control-plane churn: agents that
# pause, resume, deregister, register again, and are SIGKILLed and restarted; hostile clients on
# :1338 (junk, over-long lines, idle connections); and client traffic through the VIP. Bounded
# in time; ends with what counts:
#   scenario runs and failures; leftovers (namespaces, the root namespace's links, addresses,
#   routes, rules, iptables and nft rulesets, /run/lab, /run/lb); the long-lived balancer's RSS
#   and open file descriptors after warm-up and at the end.
# Exit 0 only with no failure and no leftover. Run as root:  ci/soak.sh [MINUTES]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
if [[ $(id -u) -ne 0 ]]; then
  echo "ci/soak.sh: run as root (labs need CAP_NET_ADMIN and CAP_SYS_ADMIN)" >&2
  exit 1
fi

bash ci/setup.sh >/dev/null
cargo build --release -q -p lab -p lb
lab=$PWD/target/release/lab
lb=$PWD/target/release/lb
work=$(mktemp -d)
name=soak$$
export LAB_ARTIFACTS="$work/artifacts"

root_state() {
  # (`|| true`: an empty listing is a fine listing.)
  {
    ip -o link show | sed 's/^[0-9]*: //' | awk '{print $1, $2}' | sort
    ip -o addr show | awk '{print $2, $3, $4}' | sort
    ip route show table all | sort
    ip rule show | sort
    iptables-save 2>/dev/null | { grep -v '^#' || true; } | sed 's/\[[0-9:]*\]//' | sort
    nft list ruleset 2>/dev/null || true
  }
}
netns_count() { ip netns list | wc -l; }
run_dir() { ls -A "$1" 2>/dev/null | { grep -v '\.lock$' || true; } | sort | tr '\n' ' '; }

root_state >"$work/root-before.txt"
ns_before=$(netns_count)
runlab_before=$(run_dir /run/lab)
runlb_before=$(run_dir /run/lb)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  $lab down "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT
x() { local h=$1; shift; $lab exec --lab "$name" "$h" -- "$@"; }

# The long-lived balancer: h1 balances the VIP over registering agents on h2, h4, h5.
$lab up --topo single,5 --name "$name" >/dev/null
$lab exec --lab "$name" h1 -- "$lb" server --vip 10.0.0.50 --control 10.0.0.1 \
  --read-timeout 3s --health-interval 1s >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 200); do grep -qs '^ready:' "$work/server.log" && break; sleep 0.05; done
grep -qs '^ready:' "$work/server.log" || { echo "soak: lb server did not start"; cat "$work/server.log"; exit 1; }

declare -A agent
start_agent() {
  local h=$1
  $lab exec --lab "$name" "$h" -- "$lb" agent --vip 10.0.0.50 --server 10.0.0.1 --name "$h" \
    >>"$work/agent-$h.log" 2>&1 &
  agent[$h]=$!
  pids+=("$!")
}
for h in h2 h4 h5; do start_agent "$h"; done

# A TCP echo on the VIP in each backend, and a bounded client burst through the balancer.
for h in h2 h4 h5; do
  x "$h" sh -c 'while :; do nc -l 10.0.0.50 8080 -q 1 </dev/null >/dev/null 2>&1 || sleep 0.1; done' &
  pids+=("$!")
done
traffic() {
  local ok=0 i
  for i in $(seq 20); do
    if x h3 sh -c 'echo hi | nc -w 1 -q 0 10.0.0.50 8080' >/dev/null 2>&1; then ok=$((ok + 1)); fi
  done
  echo "$ok"
}
hostile() {
  x h3 sh -c 'printf "\026\003\001garbage\n" | nc -w 1 10.0.0.1 1338' >/dev/null 2>&1 || true
  x h3 sh -c 'head -c 4096 /dev/zero | tr "\0" X | nc -w 1 10.0.0.1 1338' >/dev/null 2>&1 || true
  # Idle connections, closed after a second.
  for _ in $(seq 8); do x h3 sh -c 'sleep 1 | nc -w 2 10.0.0.1 1338' >/dev/null 2>&1 & done
}
mem() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
fds() { ls "/proc/$server/fd" | wc -l; }

sleep 3
start_ms=$(date +%s%3N)
deadline=$(( $(date +%s) + minutes * 60 ))
runs=0 failed=0 churn=0 traffic_ok=0 traffic_sent=0
rss_warm="" fds_warm=""
echo "soak: $minutes min; lab $name (lb server in h1, agents h2 h4 h5); lab run scenarios/ in a loop"
while (( $(date +%s) < deadline )); do
  # The scenario directory, several at once, each in a fresh lab of its own.
  if $lab run scenarios/ >"$work/run-$runs.txt" 2>&1; then
    :
  else
    failed=$((failed + 1))
    cp "$work/run-$runs.txt" "/tmp/soak-failed-run-$runs.txt"
  fi
  runs=$((runs + 1))
  # Control-plane churn, one kind per round.
  h=$(printf 'h2\nh4\nh5\n' | sed -n "$((churn % 3 + 1))p")
  case $((churn % 4)) in
    0) x "$h" "$lb" ctl --agent pause >/dev/null 2>&1 || true
       x "$h" "$lb" ctl --agent resume >/dev/null 2>&1 || true ;;
    1) x "$h" "$lb" ctl --agent deregister >/dev/null 2>&1 || true
       x "$h" "$lb" ctl --agent register >/dev/null 2>&1 || true ;;
    2) kill -KILL "${agent[$h]}" 2>/dev/null || true
       wait "${agent[$h]}" 2>/dev/null || true
       start_agent "$h" ;;
    3) hostile ;;
  esac
  churn=$((churn + 1))
  n=$(traffic)
  traffic_ok=$((traffic_ok + n)); traffic_sent=$((traffic_sent + 20))
  # Warm-up: the first two minutes.
  if [[ -z $rss_warm ]] && (( $(date +%s%3N) - start_ms > 120000 || runs == 1 && minutes < 3 )); then
    rss_warm=$(mem); fds_warm=$(fds)
  fi
done
rss_end=$(mem); fds_end=$(fds)
[[ -z $rss_warm ]] && { rss_warm=$rss_end; fds_warm=$fds_end; }
server_alive=yes; kill -0 "$server" 2>/dev/null || server_alive=no
backends=$(x h1 "$lb" ctl backends 2>&1 | tail -n +2 | awk '{print $1 ":" $4}' | tr '\n' ' ')

cleanup
trap - EXIT
sleep 1
root_state >"$work/root-after.txt"
leftovers=0
if ! diff -u "$work/root-before.txt" "$work/root-after.txt" >"$work/root.diff"; then
  echo "LEFTOVER in the root namespace:"; cat "$work/root.diff"; leftovers=$((leftovers + 1))
fi
ns_after=$(netns_count)
(( ns_after == ns_before )) || { echo "LEFTOVER namespaces: $ns_before before, $ns_after after"; leftovers=$((leftovers + 1)); }
[[ $(run_dir /run/lab) == "$runlab_before" ]] || { echo "LEFTOVER in /run/lab: $(run_dir /run/lab)"; leftovers=$((leftovers + 1)); }
[[ $(run_dir /run/lb) == "$runlb_before" ]] || { echo "LEFTOVER in /run/lb: $(run_dir /run/lb)"; leftovers=$((leftovers + 1)); }

echo "scenario runs: $runs, failed: $failed$( ((failed)) && echo " (reports in /tmp/soak-failed-run-*.txt)")"
echo "churn rounds: $churn; client connections through the VIP: $traffic_ok of $traffic_sent"
echo "balancer: alive at the end: $server_alive; backends at the end: $backends"
echo "balancer RSS: $rss_warm KiB after warm-up, $rss_end KiB at the end; fds: $fds_warm -> $fds_end"
echo "leftovers: $leftovers"
rm -rf "$work"
(( failed == 0 && leftovers == 0 )) && [[ $server_alive == yes ]]
