#!/usr/bin/env bash
# The 20-run determinism proofs of issue 3, as root: the privileged tests of
# lab/tests/determinism, printed. Each proof runs its traffic in 20 fresh labs, captures at h2
# and h3 at once, and prints how many distinct traces (trace + ladder) the 20 runs gave and each
# one with the runs that gave it; a proof fails when there is more than one.
#
#   ci/determinism.sh            # the proofs and the silent-lab regression test
#
# - real traffic on single,3: a UDP exchange, a TCP handshake, data both ways, FIN both ways;
# - the seed's RST race reproduced in the kernel (fixtures/topologies/rst-race.toml): 20 runs
#   as the kernel runs it (the RST must win every time; its lead at h3 is printed), and 20 runs
#   with h3's SYN held, which must give one trace;
# - a fresh lab sends nothing (no IGMP from the bridges).
#
# What the proofs rely on and what they found: docs/trace-format.md, "Ordering" and
# "Determinism on real traffic". Snapshots are compared, never written (INSTA_UPDATE=no).
# Exit status: the tests'.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "ci/determinism.sh: needs root (network namespaces)" >&2
    exit 2
fi
export LAB_REQUIRE_PRIVILEGED=1 INSTA_UPDATE=no CARGO_TERM_COLOR=never
cargo test -p lab --test determinism -- --nocapture --test-threads=1
