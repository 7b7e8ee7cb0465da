#!/usr/bin/env bash
# Measures link impairments in a real lab (issue 18's figures, recorded in docs/impairments.md
# and docs/benchmarks.md). Run as root from anywhere: bash ci/impair-measure.sh [ROUNDS]
#
#   delay      delay=50ms both ways, 100 pings 50 ms apart: the average RTT against 100 ms
#   loss       loss=20% one way, 10,000 datagrams (udp-blast, 10 k pps for 1 s): the share lost
#   rate       rate=10mbit one way, iperf3 TCP for 10 s: the receiver's throughput
#   overhead   the same link unimpaired and through the engine (delay=1us: every packet goes
#              through the queue and the timer heap), udp-blast unpaced for 3 s, ROUNDS
#              rounds (default 3), the modes alternating: delivered pps of each, and the ratio
#
# single,2 (h1 10.0.0.1, h2 10.0.0.2 on s1); h1's link carries the impairment (`lab impair`).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bash ci/setup.sh >/dev/null
cargo build --release -q -p lab
cargo build --release -q -p lb --example udp-blast
lab=$PWD/target/release/lab
blast=$PWD/target/release/examples/udp-blast
name=impm$$
work=$(mktemp -d)
cleanup() {
  $lab down "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
$lab up single,2 --name "$name" >/dev/null
x() { local h=$1; shift; $lab exec --lab "$name" "$h" -- "$@"; }
impair() { $lab impair --lab "$name" h1:eth0 "$@" >/dev/null; }
within() { awk -v v="$1" -v want="$2" -v tol="$3" 'BEGIN { d = v - want; if (d < 0) d = -d; print (d <= want * tol) ? "within" : "OUTSIDE" }'; }

echo "ci/impair-measure.sh on $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ)"

# Delay: RTT = 2 x 50 ms.
impair delay=50ms
x h1 ping -c 1 -W 2 10.0.0.2 >/dev/null
rtt=$(x h1 ping -c 100 -i 0.05 -q 10.0.0.2 | awk -F/ '/^rtt/ { print $5 }')
echo "delay      delay=50ms both ways: 100 pings, average RTT $rtt ms ($(within "$rtt" 100 0.05) 5 % of 100 ms)"

# Loss: one way, 10,000 datagrams.
impair none
impair --egress loss=20%
x h2 "$blast" recv 10.0.0.2:9000 1000 >"$work/recv" &
recv=$!
sleep 0.3
sent=$(x h1 "$blast" send 10.0.0.2:9000 1 64 10000 | awk '{ print $2 }')
wait "$recv"
got=$(awk '/^received/ { print $2 }' "$work/recv")
lost=$(awk -v s="$sent" -v g="$got" 'BEGIN { printf "%.2f", 100 * (s - g) / s }')
echo "loss       loss=20% one way: $sent datagrams sent, $got received: $lost % lost ($(within "$lost" 20 0.15) 20 ± 3 %)"

# Rate: one way, iperf3 over TCP.
impair none
impair --egress rate=10mbit
x h2 iperf3 -s -1 >/dev/null &
srv=$!
sleep 0.5
mbit=$(x h1 iperf3 -c 10.0.0.2 -t 10 -f m | awk '/receiver/ { print $7 }')
wait "$srv" || true
echo "rate       rate=10mbit one way: iperf3 TCP 10 s, receiver $mbit Mbit/s ($(within "$mbit" 10 0.10) 10 % of 10 Mbit/s)"

# Engine overhead: delivered pps without and with the engine on the path, alternating; and
# the engine's CPU time per packet (utime + stime of its process, from /proc).
impair none
engine_ticks() {
  local pid
  pid=$($lab list --json | python3 -c 'import json, sys
for lab in json.load(sys.stdin):
    for p in lab["processes"]:
        if p["name"].startswith("impair-"):
            print(p["id"]["pid"])')
  awk '{ print $14 + $15 }' "/proc/$pid/stat"
}
blast_round() {
  x h2 taskset -c 1 "$blast" recv 10.0.0.2:9000 500 >"$work/recv" &
  local r=$!
  sleep 0.3
  x h1 taskset -c 0 "$blast" send 10.0.0.2:9000 3 64 0 >"$work/send"
  wait "$r"
  echo "$(awk '/^sent/ { print $4 }' "$work/send") $(awk '/^received/ { print $2, $4 }' "$work/recv")"
}
plain=() engine=() cpu=()
for i in $(seq "$rounds"); do
  impair none
  read -r s n p <<<"$(blast_round)"
  plain+=("$p")
  echo "  round $i unimpaired: sent $s pps, received $n ($p pps)"
  impair --egress delay=1us
  t0=$(engine_ticks)
  read -r s n p <<<"$(blast_round)"
  t1=$(engine_ticks)
  engine+=("$p")
  us=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')
  cpu+=("$us")
  echo "  round $i engine:     sent $s pps, received $n ($p pps), engine CPU $us us per packet"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
p=$(median "${plain[@]}")
e=$(median "${engine[@]}")
c=$(median "${cpu[@]}")
echo "overhead   unimpaired $p pps, through the engine $e pps: $(awk -v p="$p" -v e="$e" 'BEGIN { printf "%.2f", e / p }') of unimpaired; engine CPU $c us per packet (medians of $rounds rounds)"
