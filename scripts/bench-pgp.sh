#!/usr/bin/env bash
# Benchmark: a fleet adopted as it is, with a PGP admin in GnuPG, host files at
# `hosts/<host>/secrets.yaml` and a shared `hosts/common/secrets.yaml` every host joins.
#
#   hostsmith vm-fresh of N hosts in one run (default 100): N host files, each with its data
#     key wrapped by gpg for the admin, and the shared file re-keyed once (the admin's PGP
#     stanza kept, since its data key does not change);
#   hostsmith vm-fresh of one more host into that fleet;
#   the scripts' way for the same N hosts: per host ssh-keygen, a recipient (age-keygen
#     standing in for ssh-to-age), a Python edit of .sops.yaml, `sops --encrypt` of the host
#     file and `sops updatekeys -y` of the shared file.
#
# Checks that the admin (GnuPG only) opens the last host's file and the shared file, and writes
# target/bench/pgp.json. Not run by the tests; needs sops, gpg, age-keygen and ssh-keygen on PATH.
#
# Usage: scripts/bench-pgp.sh [N]   (CARGO_TARGET_DIR is honoured for the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-100}

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_hostsmith
find_sops

work=$(mktemp -d /tmp/hs-bench-pgp.XXXXXX)
export GNUPGHOME=$work/g
cleanup() {
    gpgconf --kill gpg-agent 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export HOME=$work/home
unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE XDG_CONFIG_HOME HOSTSMITH_FLEET RUST_LOG
mkdir -p "$HOME" "$GNUPGHOME"
chmod 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key 'Admin <admin@example.org>' ed25519 cert 2>/dev/null
fp=$(gpg --batch --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr:/ { print $10; exit }')
gpg --batch --passphrase '' --quick-add-key "$fp" cv25519 encr 2>/dev/null

fleet() { # fleet DIR: the adopted fleet with no host yet, its shared file made by sops
    mkdir -p "$1/hosts/common"
    printf 'keys:\n  - &admin %s\ncreation_rules:\n  - path_regex: ^hosts/common/secrets\\.yaml$\n    key_groups:\n    - pgp:\n      - *admin\n      age:\n' "$fp" >"$1/.sops.yaml"
    printf '[sops]\nadmins = ["admin"]\nhost_file = "hosts/{host}/secrets.yaml"\nshared = ["hosts/common/secrets.yaml"]\n' >"$1/hostsmith.toml"
    printf 'wifi: hunter2\n' >"$1/hosts/common/secrets.yaml"
    (cd "$1" && "$sops" --encrypt --in-place hosts/common/secrets.yaml)
}
fleet "$work/a"
fleet "$work/b"

now() { python3 -c 'import time; print(time.monotonic())'; }
names=$(for i in $(seq -w 1 "$n"); do printf 'h%s ' "$i"; done)

t0=$(now)
# shellcheck disable=SC2086
"$hostsmith" --fleet "$work/a" -q vm-fresh $names >/dev/null
t1=$(now)
"$hostsmith" --fleet "$work/a" -q vm-fresh extra >/dev/null
t2=$(now)

# The scripts' way, host by host.
cd "$work/b"
for h in $names; do
    mkdir -p "hosts/$h"
    ssh-keygen -q -t ed25519 -N '' -C "$h" -f "$work/key-$h"
    r=$(age-keygen 2>/dev/null | sed -n 's/^# public key: //p') # stands in for ssh-to-age
    python3 - "$h" "$r" <<'PY'
import sys
h, r = sys.argv[1:]
text = open(".sops.yaml").read()
head, rules = text.split("creation_rules:\n", 1)
head += f"  - &{h} {r}\n"
# The shared rule is the first: the host joins its age list; then a rule of its own.
rules = rules.replace("      age:\n", f"      age:\n      - *{h}\n", 1)
rules += f"  - path_regex: ^hosts/{h}/secrets\\.yaml$\n    key_groups:\n    - pgp:\n      - *admin\n      age:\n      - *{h}\n"
open(".sops.yaml", "w").write(head + "creation_rules:\n" + rules)
PY
    printf 'ssh_host_ed25519_key: |\n%s\n' "$(sed 's/^/    /' "$work/key-$h")" >"hosts/$h/secrets.yaml"
    "$sops" --encrypt --in-place "hosts/$h/secrets.yaml"
    "$sops" updatekeys -y hosts/common/secrets.yaml >/dev/null 2>&1
done
t3=$(now)
cd "$root"

# The admin, with GnuPG alone, opens what hostsmith wrote.
last=$(printf '%s' "$names" | awk '{ print $NF }')
"$sops" --decrypt "$work/a/hosts/$last/secrets.yaml" | grep -q 'BEGIN OPENSSH PRIVATE KEY' ||
    { echo "the admin cannot open hosts/$last/secrets.yaml" >&2; exit 1; }
"$sops" --decrypt "$work/a/hosts/common/secrets.yaml" | grep -q hunter2 ||
    { echo "the admin cannot open the shared file" >&2; exit 1; }

mkdir -p target/bench
python3 - "$t0" "$t1" "$t2" "$t3" "$n" <<'PY'
import json, sys
t0, t1, t2, t3 = map(float, sys.argv[1:5])
n = int(sys.argv[5])
ours, one, theirs = t1 - t0, t2 - t1, t3 - t2
result = {
    "hosts": n,
    "hostsmith_vm_fresh_seconds": round(ours, 3),
    "hostsmith_per_host_ms": round(ours / n * 1000, 1),
    "hostsmith_one_more_host_seconds": round(one, 3),
    "scripts_seconds": round(theirs, 3),
    "speedup": round(theirs / ours, 1) if ours > 0 else None,
}
with open("target/bench/pgp.json", "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"hostsmith vm-fresh, {n} hosts, PGP admin: {ours:8.3f} s  ({ours / n * 1000:.1f} ms per host)")
print(f"hostsmith vm-fresh, one more host:        {one:8.3f} s")
print(f"the scripts' way, host by host:           {theirs:8.3f} s  ({theirs / ours:.1f}x slower)" if ours > 0 else "")
print("wrote target/bench/pgp.json")
PY
