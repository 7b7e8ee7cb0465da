#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine (run as root). Idempotent:
# packages already present are not reinstalled, and a second run changes nothing.
#
#   iptables, nftables   firewall rules inside lab hosts; the balancer's NFQUEUE rules
#   tcpdump              checks that our pcaps read back (tests skip without it)
#   conntrack            conntrack counters in scenarios
#   iproute2             `ip netns exec` for users; `ip` in a few tests
#   telnet, netcat       what the seed post types by hand, for interactive labs
#   curl                 scrapes `lb server --metrics` in a test, as Prometheus would
#   iputils-ping, iperf3 measure link impairments (ci/impair-measure.sh: RTT, throughput)
#   python3              ci/check-layout.py (the tree's shape, checked by .ci/run)
#   mininet, bridge-utils  the Mininet backend (`--backend mininet`, `--custom FILE.py`):
#                        Debian's Mininet 2.3 for the system python3, and brctl for its
#                        LinuxBridge; Open vSwitch (a daemon) is left out: `lab doctor` says
#                        whether the machine has it
set -euo pipefail

packages=(iptables nftables tcpdump conntrack iproute2 telnet netcat-openbsd curl python3
  mininet bridge-utils iputils-ping iperf3)

if [[ $(id -u) -ne 0 ]]; then
  echo "ci/setup.sh: run as root (it installs packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci/setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "ci/setup.sh: all packages present"
fi

if ! command -v cargo >/dev/null; then
  echo "ci/setup.sh: cargo is missing: install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
