#!/usr/bin/env bash
# The main job, on a fresh Debian/Ubuntu machine as root: install what is missing, build, bring
# up the seed post's network (switch s1; h1 balancer, h2 backend, h3 client; VIP 10.0.0.50),
# prove every host reaches every other, show it, and remove it again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
cargo build --release -p lab
lab=target/release/lab
name="demo-$$"

$lab doctor
$lab up --name "$name" --check
trap '$lab down "$name"' EXIT
echo
echo "--- h3 looks at its network from inside (lab exec h3 -- ip -br addr) ---"
$lab exec --lab "$name" h3 -- ip -br addr
echo
$lab list
