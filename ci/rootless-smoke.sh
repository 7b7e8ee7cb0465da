#!/usr/bin/env bash
# Run as an ordinary user (ci/rootless.sh does): what the README shows, rootless.
#
#   bash ci/rootless-smoke.sh CHECKOUT      (LAB_BIN_DIR: where `lab` and `lb` are)
#
# 1. `lab run scenarios/`: every scenario passes with the snapshots root's runs pass with.
# 2. A lab session: `lab up`, `nc -l 8080` in h2, `telnet 10.0.0.2 8080` from h3 sends a line
#    that nc receives, `lab down`; then no record and no state directory are left.
set -euo pipefail
root=$1
lab=${LAB_BIN_DIR:-$root/target/debug}/lab
cd "$root"
me="$(id -un) (uid $(id -u))"
state=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/lab}
state=${state:-/tmp/lab-$(id -u)}

echo "rootless smoke: lab run scenarios/ as $me"
"$lab" run scenarios/

echo "rootless smoke: a lab session as $me"
name=smoke$$
out=$(mktemp)
trap 'rm -f "$out"; "$lab" down "$name" >/dev/null 2>&1 || true' EXIT
"$lab" up --name "$name"
# -d: nc reads nothing from its (empty) input, so it keeps the connection open.
"$lab" exec --lab "$name" h2 -- timeout 30 nc -d -l 8080 >"$out" &
server=$!
for _ in $(seq 100); do
  "$lab" exec --lab "$name" h2 -- ss -ltn | grep -q ':8080 ' && break
  sleep 0.05
done
# telnet looks up its own host name (h3) before it sends: the lab's /etc/hosts answers at once.
# nc ends when telnet closes.
(echo "hello from h3"; sleep 2) | "$lab" exec --lab "$name" h3 -- telnet 10.0.0.2 8080 || true
wait "$server" || true
if ! grep -q "hello from h3" "$out"; then
  echo "rootless smoke: nc in h2 did not receive telnet's line (got: $(cat "$out"))" >&2
  exit 1
fi
echo "rootless smoke: nc in h2 received: $(cat "$out")"
"$lab" down "$name"
"$lab" clean --artifacts >/dev/null
if [[ -e $state ]]; then
  echo "rootless smoke: $state is left after lab down: $(ls -A "$state")" >&2
  exit 1
fi
echo "rootless smoke: ok (nothing left in $state)"
