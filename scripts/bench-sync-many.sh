#!/usr/bin/env bash
# Benchmark of a fleet-wide sync: 50 hosts, each a real OpenSSH sshd of its own on a loopback
# port (its own host key, its own /root in a private mount namespace), synced with
# `hostsmith sync --all -j 10` (keys already present), against the floor: 50 plain pinned
# `ssh … true` at the same parallelism against the same sshds. Also `connect HOST -- true`
# (sync and session over one connection) against one plain pinned `ssh HOST true`.
# Writes target/bench/sync-many.json. Environment: HOSTSMITH_BENCH_RUNS (default 5),
# HOSTSMITH_BENCH_HOSTS (default 50), CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/target/bench"
mkdir -p "$out"
runs="${HOSTSMITH_BENCH_RUNS:-5}"
n="${HOSTSMITH_BENCH_HOSTS:-50}"
jobs=10
sshd=$(command -v sshd || echo /usr/sbin/sshd)
for tool in ssh ssh-keygen unshare python3 xargs; do
  command -v "$tool" >/dev/null || { echo "bench-sync-many: $tool is missing (scripts/install-peers.sh)" >&2; exit 1; }
done
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_hostsmith

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export HOME="$work/home"
unset XDG_STATE_HOME XDG_RUNTIME_DIR SSH_AUTH_SOCK HOSTSMITH_FLEET
mkdir -p "$HOME" "$work/fleet" /run/sshd
cd "$work/fleet"
"$hostsmith" -q init
# shellcheck disable=SC2046
"$hostsmith" -q vm-fresh $(seq -f 'h%g' 1 "$n")
ssh-keygen -q -t ed25519 -N '' -C client -f "$work/client"
ssh-keygen -q -t ed25519 -N '' -C admin@bench -f "$work/admin"

echo "bench-sync-many: starting $n sshds" >&2
for i in $(seq 1 "$n"); do
  h="h$i"
  "$hostsmith" -q extra-files "$h" --out "$work/extra-$h"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$work/root-$h/.ssh"
  chmod 700 "$work/root-$h/.ssh"
  sshd_config "$work/sshd-$h.conf" "$port" "$work/extra-$h/etc/ssh/ssh_host_ed25519_key" "$work/sshd-$h.pid" "$work/client.pub"
  # shellcheck disable=SC2016 # expanded by the inner sh
  unshare -m --propagation private sh -c 'mount --bind "$0" /root && exec "$@"' "$work/root-$h" \
    "$sshd" -D -e -E "$work/sshd-$h.log" -f "$work/sshd-$h.conf" &
  pids+=($!)
  echo "$h $port" >>"$work/ports"
done
python3 - "$work/fleet" "$work/ports" <<'EOF'
import json, socket, sys, time
fleet, ports = sys.argv[1:]
for line in open(ports):
    host, port = line.split()
    path = f"{fleet}/hosts/{host}.json"
    r = json.load(open(path))
    r["addresses"] = [f"127.0.0.1:{port}"]
    open(path, "w").write(json.dumps(r, indent=2) + "\n")
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", int(port)), 1).close()
            break
        except OSError:
            time.sleep(0.05)
EOF

sync=("$hostsmith" -q sync --all -j "$jobs" --user root --identity "$work/client" --key "$work/admin.pub")
"${sync[@]}" # appends the key everywhere (and writes each host's known_hosts file)
kh="$HOME/.local/state/hostsmith/known_hosts"
cat >"$work/plain.sh" <<EOF
#!/usr/bin/env bash
# One plain pinned ssh: host name, port.
exec ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="\$(ls $kh/\$1-*)" \
  -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias="\$1" -o HostKeyAlgorithms=ssh-ed25519 -i "$work/client" \
  -o IdentitiesOnly=yes -p "\$2" -l root 127.0.0.1 true
EOF
chmod +x "$work/plain.sh"
port1=$(awk '$1 == "h1" {print $2}' "$work/ports")
connect=("$hostsmith" -q connect h1 --user root --identity "$work/client" --key "$work/admin.pub" -- true)

ms() { python3 -c 'import time; print(time.monotonic_ns() // 1000)'; }
: >"$work/sync.us"
: >"$work/plain.us"
: >"$work/connect.us"
: >"$work/ssh1.us"
echo "bench-sync-many: $runs runs each" >&2
for _ in $(seq "$runs"); do
  t0=$(ms); "${sync[@]}" >/dev/null; t1=$(ms); echo $((t1 - t0)) >>"$work/sync.us"
  t0=$(ms); xargs -P "$jobs" -n 2 "$work/plain.sh" <"$work/ports"; t1=$(ms); echo $((t1 - t0)) >>"$work/plain.us"
  t0=$(ms); "${connect[@]}"; t1=$(ms); echo $((t1 - t0)) >>"$work/connect.us"
  t0=$(ms); "$work/plain.sh" h1 "$port1"; t1=$(ms); echo $((t1 - t0)) >>"$work/ssh1.us"
done
for h in $(seq -f 'h%g' 1 "$n"); do
  grep -qc admin@bench "$work/root-$h/.ssh/authorized_keys" || { echo "bench-sync-many: $h lacks the key" >&2; exit 1; }
done

python3 - "$work" "$out/sync-many.json" "$n" "$jobs" "$(ssh -V 2>&1)" <<'EOF'
import json, statistics, sys
work, dest, n, jobs, version = sys.argv[1:]
def med(name):
    v = [int(l) / 1000 for l in open(f"{work}/{name}.us") if l.strip()]
    return {"median_ms": round(statistics.median(v), 1), "min_ms": round(min(v), 1), "max_ms": round(max(v), 1), "runs": len(v)}
r = {"what": f"sync --all of {n} loopback sshds with -j {jobs} (keys present) vs {n} plain pinned `ssh true` at -P {jobs}; connect -- true vs one plain pinned ssh true",
     "openssh": version, "sync_all": med("sync"), "plain_ssh_all": med("plain"), "connect": med("connect"), "plain_ssh_one": med("ssh1")}
r["sync_all_over_plain"] = round(r["sync_all"]["median_ms"] / r["plain_ssh_all"]["median_ms"], 2)
r["connect_over_plain"] = round(r["connect"]["median_ms"] / r["plain_ssh_one"]["median_ms"], 2)
json.dump(r, open(dest, "w"), indent=2)
print(f"sync --all ({n} hosts, -j {jobs}): median {r['sync_all']['median_ms']} ms; plain ssh: {r['plain_ssh_all']['median_ms']} ms; ratio {r['sync_all_over_plain']}")
print(f"connect -- true: median {r['connect']['median_ms']} ms; plain ssh true: {r['plain_ssh_one']['median_ms']} ms; ratio {r['connect_over_plain']}")
print(f"wrote {dest}")
EOF
