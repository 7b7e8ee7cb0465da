# Sourced by ci/bench-lb.sh and ci/fastpath-probe.sh (from the checkout's root, as root): the
# release binaries ($lab, $lb, $blast), the lab fixtures/topologies/bench3.toml named "$1<pid>"
# (h3 the generator, h1 the balancer, h2 and h4 backends; h3 routes the VIP 10.0.0.50 via h1),
# a work directory ($work), `x HOST CMD...` to run in a host, and the CPU placement. On exit,
# the processes in $pids are stopped, the lab is removed and $work deleted.

bash ci/setup.sh >/dev/null
cargo build --release -q -p lb -p lab
cargo build --release -q -p lb --example udp-blast
lab=target/release/lab
lb=$PWD/target/release/lb
blast=$PWD/target/release/examples/udp-blast
name=$1$$
$lab up fixtures/topologies/bench3.toml --name "$name" >/dev/null
pids=()
work=$(mktemp -d)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  $lab down "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
x() { local h=$1; shift; $lab exec --lab "$name" "$h" -- "$@"; }

# The same placement in every mode: the generator alone on one CPU (kernel forwarding runs in
# its context, as softirq work of its sends), receiver, balancer and agent on the other.
# Unpinned, the scheduler's placement (and any other load) changes the offered rate by 2x from
# run to run.
cpu_gen=0
cpu_rest=$(( $(nproc) > 1 ? 1 : 0 ))

x h3 ip route add 10.0.0.50/32 via 10.0.0.1
