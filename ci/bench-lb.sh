#!/usr/bin/env bash
# End-to-end speed of the balancer: small UDP datagrams h3 -> VIP -> h2 (64-byte payloads, one
# flow, unlimited rate, from lb/examples/udp-blast.rs: sendmmsg/recvmmsg in batches of 64, a
# 64 MiB receive buffer, so neither end is the bottleneck the way iperf3's one-datagram-per-
# syscall receiver is), delivered packets per second at h2, for
#   kernel     plain IP forwarding on h1 (route VIP via h2): the reference
#   lb-dsrk    lb server --forward dsr-kernel: NFQUEUE in PREROUTING, ACCEPT verdicts with the
#              backend's mark, the kernel forwards by policy routing (nothing copied back in)
#   lb-dsr     lb server, NFQUEUE batch verdicts, L2 DSR frames sent by lb (AF_PACKET)
#   lb-encap   lb server, NFQUEUE batch verdicts, UDP encapsulation to lb agent on h2
#   lb-1by1    lb server, one packet per receive and one verdict per packet (Caplance's loop)
# in the same run with the same generator; each mode RUNS times (median shown), plus NFQUEUE
# drops (queue_dropped + user_dropped in /proc/net/netfilter/nfnetlink_queue).
# Then the target itself: lb-dsrk and lb-dsr with the generator paced at 0.8 x the kernel's
# median, which must arrive in full with zero queue drops; and the headroom: lb-dsrk paced at
# 1.0 x the kernel's median. The ratios are printed last. Run as root:  ci/bench-lb.sh [SECONDS] [RUNS]
# (LB_ARGS="--queue-len 65536 --batch 256" passes extra flags to every lb server run;
#  PAYLOAD=1400 sends datagrams of that many bytes instead of 64; FLOWS=16 sends that many
#  flows (to VIP ports 9000..), interleaved datagram by datagram, over two backends, h2 and h4,
#  with the kernel reference doing multipath routing by L4 hash; then the modes are kernel,
#  lb-dsrk and lb-dsr.)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}
runs=${2:-3}

# shellcheck source=ci/lb-bench-lab.sh
source ci/lb-bench-lab.sh lbbench
flows=${FLOWS:-1}
receivers=(h2)
backends=(--backend h2=10.0.0.2)
kernel_route=(via 10.0.0.2)
if ((flows > 1)); then
  receivers=(h2 h4)
  backends+=(--backend h4=10.0.0.4)
  kernel_route=(nexthop via 10.0.0.2 nexthop via 10.0.0.4)
  x h1 sysctl -qw net.ipv4.fib_multipath_hash_policy=1   # L4 hash: flows spread over both
fi

# One run; prints "delivered_pps sent_pps". With two receivers: all they got over the longer
# of their two first-to-last spans.
measure() {
  local rcv=() h
  for h in "${receivers[@]}"; do
    $lab exec --lab "$name" "$h" -- taskset -c "$cpu_rest" "$blast" recv 10.0.0.50:9000 500 "$flows" >"$work/recv-$h.txt" &
    rcv+=($!)
    for _ in $(seq 100); do grep -qs listening "$work/recv-$h.txt" && break; sleep 0.02; done
  done
  x h3 taskset -c "$cpu_gen" "$blast" send 10.0.0.50:9000 "$secs" "${PAYLOAD:-64}" "${PACE:-0}" "$flows" >"$work/send.txt"
  for r in "${rcv[@]}"; do wait "$r" || true; done
  local sent delivered
  sent=$(awk '/^sent/ {print $4}' "$work/send.txt")
  local files=()
  for h in "${receivers[@]}"; do files+=("$work/recv-$h.txt"); done
  delivered=$(awk '/^received/ && $4 > 0 {n += $2; t = ($2 / $4 > t) ? $2 / $4 : t} END {printf "%.0f", (t > 0 ? n / t : 0)}' "${files[@]}")
  echo "${delivered:-0} ${sent:-0}"
}

queue_drops() {
  x h1 cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | awk '{d += $6 + $7} END {print d + 0}'
}

start_lb() {
  # Not through x(): $! must be the process itself (lab exec execs into lb), not a subshell.
  # shellcheck disable=SC2086 # LB_ARGS: extra flags, word-split on purpose
  $lab exec --lab "$name" h1 -- taskset -c "$cpu_rest" "$lb" server --vip 10.0.0.50 "${backends[@]}" "$@" ${LB_ARGS:-} >"$work/lb.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -qs '^ready:' "$work/lb.log" && return; sleep 0.05; done
  echo "lb server did not start:"; cat "$work/lb.log"; exit 1
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

declare -A result drops
run_mode() {
  local mode=$1 vals=() d=0
  for _ in $(seq "$runs"); do
    case $mode in
      kernel) x h1 ip route replace 10.0.0.50/32 "${kernel_route[@]}" ;;
      lb-dsrk|lb-dsrk-paced|lb-dsrk-at-kernel) start_lb --forward dsr-kernel ;;
      lb-dsr) start_lb --forward dsr ;;
      lb-encap)
        $lab exec --lab "$name" h2 -- taskset -c "$cpu_rest" "$lb" agent --vip 10.0.0.50 --balancer 10.0.0.1 >"$work/agent.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 200); do grep -qs '^ready:' "$work/agent.log" && break; sleep 0.05; done
        start_lb --forward encap ;;
      lb-1by1) start_lb --forward dsr --verdict per-packet ;;
      lb-dsr-paced) start_lb --forward dsr ;;
    esac
    read -r delivered sent < <(measure)
    vals+=("$delivered")
    printf '  %-9s delivered %8s pps of %8s sent' "$mode" "$delivered" "$sent"
    case $mode in
      kernel) x h1 ip route del 10.0.0.50/32; echo ;;
      *) local q; q=$(queue_drops); d=$((d + q)); stop_last
         [[ $mode == lb-encap ]] && { stop_last; x h2 ip addr replace 10.0.0.50/32 dev lo; }
         echo "   queue drops $q" ;;
    esac
  done
  result[$mode]=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  drops[$mode]=$d
}

echo "lb end-to-end: ${PAYLOAD:-64}-byte UDP, $flows flow(s) over ${#receivers[@]} backend(s), ${secs}s x $runs runs per mode ($(uname -r), $(nproc) cores; generator on CPU $cpu_gen, the rest on CPU $cpu_rest)"
modes=(kernel lb-dsrk lb-dsr lb-encap lb-1by1)
((flows > 1)) && modes=(kernel lb-dsrk lb-dsr)
for m in "${modes[@]}"; do run_mode "$m"; done
echo
printf '%-10s %12s %12s\n' mode "median pps" "queue drops"
for m in "${modes[@]}"; do
  printf '%-10s %12s %12s\n' "$m" "${result[$m]}" "${drops[$m]:--}"
done
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
unpaced="unpaced: lb-dsrk / kernel $(ratio "${result[lb-dsrk]}" "${result[kernel]}") (queue drops ${drops[lb-dsrk]}), lb-dsr / kernel $(ratio "${result[lb-dsr]}" "${result[kernel]}") (queue drops ${drops[lb-dsr]})"
((flows == 1)) && unpaced+=", lb-encap / kernel $(ratio "${result[lb-encap]}" "${result[kernel]}"), lb-1by1 / kernel $(ratio "${result[lb-1by1]}" "${result[kernel]}")"
echo "$unpaced"
PACE=$((result[kernel] * 8 / 10))
echo
echo "target: the generator paced at 0.8 x kernel = $PACE pps"
run_mode lb-dsrk-paced
run_mode lb-dsr-paced
PACE=${result[kernel]}
echo
echo "headroom: lb-dsrk with the generator paced at 1.0 x kernel = $PACE pps"
run_mode lb-dsrk-at-kernel
echo
echo "headroom: lb-dsrk at 1.0 x kernel delivered ${result[lb-dsrk-at-kernel]} pps = $(ratio "${result[lb-dsrk-at-kernel]}" "${result[kernel]}"), queue drops ${drops[lb-dsrk-at-kernel]}"
for m in lb-dsrk lb-dsr; do
  echo "paced: $m delivered ${result[$m-paced]} pps = $(ratio "${result[$m-paced]}" "${result[kernel]}") of kernel forwarding, queue drops ${drops[$m-paced]} (target: >= 0.80 with 0 queue drops)"
done
