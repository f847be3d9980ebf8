#!/usr/bin/env bash
# Benchmark of `hostsmith sync` over loopback against a real OpenSSH sshd: wall time of a
# sync when the key is already present, and when it has to be appended (the file is reset
# before each of those runs), plus a plain pinned `ssh … true` as the floor any ssh-based
# sync pays. The seed (azlin) publishes ~100 ms for a present key and 2-3 s for a sync.
#
# sshd runs in a private mount namespace with a temporary directory mounted over /root, so
# the machine's /root is never touched. Writes target/bench/sync.json.
# Environment: HOSTSMITH_BENCH_RUNS (default 30), CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="$root/target/bench"
mkdir -p "$out"
runs="${HOSTSMITH_BENCH_RUNS:-30}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
sshd=$(command -v sshd || echo /usr/sbin/sshd)
for tool in ssh ssh-keygen unshare python3; do
  command -v "$tool" >/dev/null || { echo "bench-sync: $tool is missing (scripts/install-peers.sh)" >&2; exit 1; }
done
[ -x "$sshd" ] || { echo "bench-sync: sshd is missing (scripts/install-peers.sh)" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
echo "bench-sync: cargo build --release" >&2
cargo build --release --quiet
bin="$target_dir/release/hostsmith"

work=$(mktemp -d)
server_pid=''
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export HOME="$work/home"
unset XDG_STATE_HOME SSH_AUTH_SOCK HOSTSMITH_FLEET
mkdir -p "$HOME" "$work/fleet" "$work/remote-root" /run/sshd
cd "$work/fleet"
"$bin" -q init
"$bin" -q vm-fresh web01
"$bin" -q extra-files web01 --out "$work/extra"
ssh-keygen -q -t ed25519 -N '' -C client -f "$work/client"
ssh-keygen -q -t ed25519 -N '' -C admin@bench -f "$work/admin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sshd_config "$work/sshd_config" "$port" "$work/extra/etc/ssh/ssh_host_ed25519_key" "$work/sshd.pid" "$work/client.pub"
# shellcheck disable=SC2016 # expanded by the inner sh
unshare -m --propagation private sh -c 'mount --bind "$0" /root && exec "$@"' "$work/remote-root" \
  "$sshd" -D -e -E "$work/sshd.log" -f "$work/sshd_config" &
server_pid=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.05
done

keys="$work/remote-root/.ssh/authorized_keys"
sync=("$bin" -q sync web01 --address "127.0.0.1:$port" --user root --identity "$work/client" --key "$work/admin.pub")
mkdir -m 700 "$work/remote-root/.ssh"
printf '# existing line\n' >"$work/base_keys"

# One timed run of "$@" in milliseconds, appended to file $1.
timed() {
  local file=$1
  shift
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) >>"$file"
}

echo "bench-sync: $runs runs each (appended, present, ssh true)" >&2
: >"$work/appended.us"
: >"$work/present.us"
: >"$work/ssh.us"
"${sync[@]}" # warm-up
for _ in $(seq "$runs"); do
  cp "$work/base_keys" "$keys"
  timed "$work/appended.us" "${sync[@]}"
done
grep -c 'admin@bench' "$keys" | grep -qx 1 || { echo "bench-sync: the key was not appended exactly once" >&2; exit 1; }
for _ in $(seq "$runs"); do
  timed "$work/present.us" "${sync[@]}"
done
known_hosts=$(ls "$HOME"/.local/state/hostsmith/known_hosts/web01-*)
for _ in $(seq "$runs"); do
  timed "$work/ssh.us" ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$known_hosts" \
    -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=web01 -o HostKeyAlgorithms=ssh-ed25519 -i "$work/client" \
    -o IdentitiesOnly=yes -p "$port" -l root 127.0.0.1 true
done
outcomes=$(python3 -c 'import json,sys,collections; print(dict(collections.Counter(json.loads(l)["outcome"] for l in open(sys.argv[1]))))' \
  "$HOME/.local/state/hostsmith/audit.jsonl")

python3 - "$work" "$out/sync.json" "$runs" "$(ssh -V 2>&1)" "$outcomes" <<'EOF'
import json, statistics, sys
work, dest, runs, version, outcomes = sys.argv[1:]
def stats(name):
    ms = sorted(int(l) / 1000 for l in open(f"{work}/{name}.us") if l.strip())
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"median": round(statistics.median(ms), 1), "p95": round(p95, 1), "min": round(ms[0], 1), "max": round(ms[-1], 1), "runs": len(ms)}
r = {
    "what": "hostsmith sync over loopback against a real sshd (release build), wall time per run in ms",
    "present_ms": stats("present"),
    "appended_ms": stats("appended"),
    "plain_ssh_true_ms": stats("ssh"),
    "seed_published": {"present_ms": 100, "appended_ms": "2000-3000 (run-command) / <1000 (ssh)"},
    "openssh": version,
    "audit_outcomes": outcomes,
}
json.dump(r, open(dest, "w"), indent=2)
print(f"sync present:  median {r['present_ms']['median']} ms, p95 {r['present_ms']['p95']} ms")
print(f"sync appended: median {r['appended_ms']['median']} ms, p95 {r['appended_ms']['p95']} ms")
print(f"plain ssh true: median {r['plain_ssh_true_ms']['median']} ms")
print(f"wrote {dest}")
EOF
