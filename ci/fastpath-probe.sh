#!/usr/bin/env bash
# Issue 16's design question, measured: can the kernel forward a flow's later packets by the
# balancer's first decision, with user space seeing only the first packet? This probes the
# mechanism with today's `lb server --forward dsr-kernel` and an nftables flow map beside it;
# lb itself is unchanged. Run as root:   ci/fastpath-probe.sh [SECONDS] [RUNS]
#
# The map (table ip lbfast, below) holds flow key -> mark, with a timeout:
#   - chain `lookup` (prerouting, priority mangle - 10: before lb's NFQUEUE rule in iptables'
#     mangle PREROUTING) sets the packet's mark from the map and refreshes the element's
#     timeout;
#   - a packet with a mark skips the queue (an iptables ACCEPT inserted above lb's rule) and is
#     forwarded by lb's policy routing by mark, in the kernel;
#   - chain `learn` (priority mangle + 10: after the queue) adds the mark that lb's ACCEPT
#     verdict gave a flow's first packet. The kernel learns from the verdict: lb installs
#     nothing itself.
# Conntrack marks (CONNMARK) cannot do this for TCP with direct server return: the balancer
# sees one direction only, so conntrack puts the flow in SYN_SENT and marks every later packet
# INVALID, without a connection to restore a mark from (checked in a lab on 6.18, with
# nf_conntrack_tcp_be_liberal 0 and 1: 1 NEW, 5 INVALID).
#
# Prints delivered pps (64-byte UDP, one flow, generator and kernel forwarding on one CPU, lb
# and the receiver on the other, as ci/bench-lb.sh places them) for: kernel forwarding,
# lb-dsrk (every packet through user space), and lb-dsrk with the flow map whose timeout is
# refreshed on every packet or on one in 64 at random, and the latter with `learn` adding only
# flows the queue decided (learn-once). With lb it also prints how many
# packets went through the queue (/proc/net/netfilter/nfnetlink_queue's id sequence), the queue
# drops, and the map's elements.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}
runs=${2:-3}

# shellcheck source=ci/lb-bench-lab.sh
source ci/lb-bench-lab.sh fastprobe

measure() {
  $lab exec --lab "$name" h2 -- taskset -c "$cpu_rest" "$blast" recv 10.0.0.50:9000 500 1 >"$work/recv.txt" &
  local r=$!
  for _ in $(seq 100); do grep -qs listening "$work/recv.txt" && break; sleep 0.02; done
  x h3 taskset -c "$cpu_gen" "$blast" send 10.0.0.50:9000 "$secs" 64 0 1 >"$work/send.txt"
  wait "$r" || true
  awk '/^received/ {print $4}' "$work/recv.txt"
}

start_lb() {
  $lab exec --lab "$name" h1 -- taskset -c "$cpu_rest" "$lb" server --vip 10.0.0.50 --backend h2=10.0.0.2 --forward dsr-kernel >"$work/lb.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -qs '^ready:' "$work/lb.log" && return; sleep 0.05; done
  echo "lb server did not start:"; cat "$work/lb.log"; exit 1
}
stop_lb() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# How the lookup chain refreshes an element's timeout: on every packet (every), on one packet in
# 64 chosen at random (sampled), or never (none: the flow ends 30 s after its first packet).
refresh() {
  case ${1:-every} in
    every) echo 'meta mark != 0 ip daddr 10.0.0.50 update @flows { ip saddr . meta l4proto . th sport . th dport timeout 30s : meta mark }' ;;
    sampled|sampled-learn-once) echo 'meta mark != 0 ip daddr 10.0.0.50 numgen random mod 64 == 0 update @flows { ip saddr . meta l4proto . th sport . th dport timeout 30s : meta mark }' ;;
    none) echo '' ;;
  esac
}

# learn-once: a packet the map marked is tagged (skb priority 1:1, which a veth's noqueue
# ignores), and `learn` adds only what came marked from the queue, instead of trying to add
# every packet's flow again. lb would tag its verdicts with a mark bit instead.
hit_tag() { [[ $1 == sampled-learn-once ]] && echo 'meta priority set 1:1'; true; }
learn_only_misses() { [[ $1 == sampled-learn-once ]] && echo 'meta priority != 1:1'; true; }

fast_on() {
  x h1 nft -f - <<EOF
table ip lbfast {
  map flows {
    type ipv4_addr . inet_proto . inet_service . inet_service : mark
    flags dynamic, timeout
    timeout 30s
  }
  chain lookup {
    type filter hook prerouting priority mangle - 10; policy accept;
    ip daddr 10.0.0.50 meta mark set ip saddr . meta l4proto . th sport . th dport map @flows $(hit_tag "$1")
    $(refresh "$1")
  }
  chain learn {
    type filter hook prerouting priority mangle + 10; policy accept;
    meta mark != 0 ip daddr 10.0.0.50 $(learn_only_misses "$1") add @flows { ip saddr . meta l4proto . th sport . th dport timeout 30s : meta mark }
  }
}
EOF
  x h1 iptables -t mangle -I PREROUTING 1 -d 10.0.0.50/32 -m mark ! --mark 0 -j ACCEPT
}
fast_off() {
  x h1 iptables -t mangle -D PREROUTING -d 10.0.0.50/32 -m mark ! --mark 0 -j ACCEPT
  x h1 nft delete table ip lbfast
}
queued() { x h1 cat /proc/net/netfilter/nfnetlink_queue | awk '{q += $7 + $6} END {print q + 0}'; }
# Field 8 is the id sequence: how many packets the queue has taken since it was bound.
sequence() { x h1 cat /proc/net/netfilter/nfnetlink_queue | awk '{s += $8} END {print s + 0}'; }

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A result
modes=(kernel lb-dsrk flowmap-every flowmap-sampled flowmap-sampled-learn-once)
for mode in "${modes[@]}"; do
  vals=()
  for _ in $(seq "$runs"); do
    case $mode in
      kernel) x h1 ip route replace 10.0.0.50/32 via 10.0.0.2 ;;
      lb-dsrk) start_lb ;;
      flowmap-*) start_lb; fast_on "${mode#flowmap-}" ;;
    esac
    v=$(measure)
    vals+=("${v:-0}")
    extra=""
    case $mode in
      kernel) x h1 ip route del 10.0.0.50/32 ;;
      lb-dsrk) extra="queued $(sequence), queue drops $(queued)"; stop_lb ;;
      flowmap-*)
        extra="queued $(sequence), queue drops $(queued), map elements $(x h1 nft list map ip lbfast flows | grep -c ' : 0x')"
        fast_off; stop_lb ;;
    esac
    printf '  %-16s delivered %8s pps  %s\n' "$mode" "${v:-0}" "$extra"
  done
  result[$mode]=$(printf '%s\n' "${vals[@]}" | median)
done
echo
for mode in "${modes[@]}"; do
  printf '%-16s median %8s pps  %s x kernel\n' "$mode" "${result[$mode]}" \
    "$(python3 -c "print(f'{${result[$mode]} / ${result[kernel]}:.2f}')")"
done
