#!/usr/bin/env bash
# The rootless pass of .ci/run (issue 15): the test suite, and the README's lab session, as an
# ordinary user with no sudo and no capabilities, in user namespaces of its own.
#
#   bash ci/rootless.sh            as root, after `cargo test` built everything
#
# Root's Rust toolchain is not reachable by other users on these machines, so root builds
# (`cargo test --no-run`) and the user runs the built test binaries, each from its package's
# directory as cargo would, with privileged tests required (LAB_REQUIRE_PRIVILEGED=1: they must
# run rootless, not skip). Doc-tests need rustdoc and are left to the root pass; none is
# privileged. Then ci/rootless-smoke.sh runs `lab run scenarios/` and a lab session as the user.
# The root namespace is compared before and after: a rootless run must change nothing in it.
#
# The user is LAB_ROOTLESS_USER (default `lab-rootless`, created without a home if missing).
# When the checkout is in a directory that user cannot enter (root's home), the pass runs in a
# private mount namespace where a tmpfs over that directory leaves just the checkout visible.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [[ $(id -u) -ne 0 ]]; then
  echo "ci/rootless.sh: run as root (it creates the user and runs the tests as that user)" >&2
  exit 1
fi
user=${LAB_ROOTLESS_USER:-lab-rootless}
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
  echo "ci/rootless.sh: created user $user"
fi
uid=$(id -u "$user")

# The test binaries and the directory each runs in.
list=$(mktemp)
log=$(mktemp)
before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$list" "$log" "$before" "$after"' EXIT
cargo test --workspace --locked --no-run --message-format=json 2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["executable"])
' >"$list"
chmod 644 "$list"

root_state() {
  ip -o link | sed 's/ qdisc.*//'
  ip -o addr
  ip route show table all
  ip rule
  iptables-save | sed '/^#/d'
  ip6tables-save | sed '/^#/d'
  nft list ruleset
}
root_state >"$before"

# The user's view of the checkout: in place when it may enter it, else through a private mount
# namespace where the first directory it may not enter is covered and the checkout bound back.
blocked=""
dir=$root
while [[ $dir != / ]]; do
  if ! runuser -u "$user" -- test -x "$dir"; then blocked=$dir; fi
  dir=$(dirname "$dir")
done

as_user() {
  runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    LAB_REQUIRE_PRIVILEGED=1 CI=true INSTA_WORKSPACE_ROOT="$root" RUST_BACKTRACE=0 "$@"
}

run_pass() {
  local rc=0
  while read -r pkg exe; do
    (cd "$pkg" && as_user "$exe" </dev/null) || rc=1
  done <"$list"
  as_user LAB_BIN_DIR="$root/target/debug" bash "$root/ci/rootless-smoke.sh" "$root" </dev/null || rc=1
  return $rc
}

echo "ci/rootless.sh: the test suite as $user (uid $uid), rootless"
export -f run_pass as_user
export list user root
set +e
if [[ -z $blocked ]]; then
  run_pass 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
else
  echo "ci/rootless.sh: $user may not enter $blocked: running in a mount namespace that shows it only the checkout"
  stash=$(mktemp -d)
  unshare --mount --propagation private bash -c '
    set -e
    mount --bind "$root" "$0"
    mount -t tmpfs -o mode=0755 tmpfs "$1"
    mkdir -p "$root"
    mount --bind "$0" "$root"
    run_pass' "$stash" "$blocked" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  rmdir "$stash"
fi
set -e

root_state >"$after"
if ! diff -u "$before" "$after"; then
  echo "ci/rootless.sh: the rootless pass changed the root namespace (diff above)" >&2
  rc=1
fi
# Zombies (a holder that init has not reaped yet) hold nothing.
left=$(ps -o pid=,stat=,comm= -u "$user" | awk '$2 !~ /^Z/' || true)
if [[ -n $left ]]; then
  echo "ci/rootless.sh: processes of $user are left: $left" >&2
  rc=1
fi
awk -v who="$user" '/^test result:/ { p += $4; f += $6; s += $8 }
  END { printf "tests (rootless, as %s): %d passed, %d failed, %d skipped\n", who, p, f, s }' "$log"
exit "$rc"
