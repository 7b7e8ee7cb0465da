#!/usr/bin/env bash
# The main job, on a fresh Debian/Ubuntu machine as root: install what is missing, build, and
# reproduce seed post 1 on the real kernel — the balancer whose own kernel answers the client's
# SYN with a RST (mysterious-reset), then the same network with NFQUEUE intake (the fix,
# nfqueue-fixes-reset) — each in a fresh lab (switch s1; h1 balancer, h2 backend, h3 client;
# VIP 10.0.0.50) that is removed afterwards. It prints each step, the two ladder diagrams, the
# expectations and where the pcaps and logs are; it fails if either scenario does.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
cargo build --release -p lab -p lb
lab=${CARGO_TARGET_DIR:-target}/release/lab

$lab doctor
echo
$lab run scenarios/mysterious-reset.toml scenarios/nfqueue-fixes-reset.toml
