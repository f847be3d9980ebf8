#!/usr/bin/env bash
# Benchmark: re-keying a fleet after an admin key is added to .sops.yaml.
#
#   hostsmith sops rekey            (native engine, parallel over files, -j = cores)
#   sops updatekeys -y FILE         (file by file, what the shell-script workflows loop over)
#
# on N files (default 200), each starting from the same bytes. Prints both times and their
# ratio, checks that the new admin can open a sample of files either way, and writes
# target/bench/rekey.json. Not run by the tests; needs sops and age-keygen on PATH.
#
# Usage: scripts/bench-rekey.sh [N]   (CARGO_TARGET_DIR is honoured for the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-200}

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_hostsmith
find_sops
sops_version=$("$sops" --version --check-for-updates=false 2>/dev/null | head -n1 || "$sops" --version 2>/dev/null | head -n1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME=$work/home
unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE XDG_CONFIG_HOME HOSTSMITH_FLEET
mkdir -p "$HOME" "$work/a/secrets"
cd "$work/a"
"$hostsmith" init >/dev/null
admin=$(sed -n 's/^# public key: //p' "$HOME/.config/sops/age/keys.txt")
rules='creation_rules:
  - path_regex: ^secrets/.*\.yaml$
    key_groups:
      - age:
          - *admin'
printf 'keys:\n  - &admin %s\n%s\n' "$admin" "$rules" >.sops.yaml

echo "encrypting $n files with sops (setup, not timed)..."
for i in $(seq -w 1 "$n"); do
    printf 'db_password: secret-%s\napi:\n    token: t-%s\n    url: https://example.invalid/%s\n' "$i" "$i" "$i" >plain.yaml
    "$sops" --encrypt --filename-override "secrets/s$i.yaml" plain.yaml >"secrets/s$i.yaml"
done
rm plain.yaml

# A second admin joins.
age-keygen -o "$work/ops.txt" 2>/dev/null
ops=$(age-keygen -y "$work/ops.txt")
printf 'keys:\n  - &admin %s\n  - &ops %s\n%s\n          - *ops\n' "$admin" "$ops" "$rules" >.sops.yaml
cp -a "$work/a" "$work/b"

now() { python3 -c 'import time; print(time.monotonic())'; }

jobs=$(nproc)
t0=$(now)
"$hostsmith" sops rekey -j "$jobs" >"$work/hostsmith.out"
t1=$(now)
cd "$work/b"
for f in secrets/*.yaml; do
    "$sops" updatekeys -y "$f" >/dev/null 2>&1
done
t2=$(now)

# Both outcomes must let the new admin in.
for dir in "$work/a" "$work/b"; do
    for i in $(seq -w 1 $((n / 10 > 0 ? n / 10 : 1)) "$n"); do
        SOPS_AGE_KEY_FILE=$work/ops.txt HOME=$work/nobody "$sops" --decrypt "$dir/secrets/s$i.yaml" | grep -q "secret-$i" ||
            { echo "the new admin cannot open $dir/secrets/s$i.yaml" >&2; exit 1; }
    done
done

cd "$root"
mkdir -p target/bench
python3 - "$t0" "$t1" "$t2" "$n" "$jobs" "$sops" "$sops_version" <<'PY'
import json, sys
t0, t1, t2 = map(float, sys.argv[1:4])
n, jobs, sops, version = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
ours, theirs = t1 - t0, t2 - t1
result = {
    "files": n,
    "jobs": jobs,
    "hostsmith_seconds": round(ours, 3),
    "sops_updatekeys_seconds": round(theirs, 3),
    "speedup": round(theirs / ours, 1) if ours > 0 else None,
    "sops": sops,
    "sops_version": version,
}
with open("target/bench/rekey.json", "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"hostsmith sops rekey -j {jobs}:      {ours:8.3f} s  ({n} files)")
print(f"sops updatekeys -y, file by file: {theirs:8.3f} s  ({sops})")
print(f"ratio: hostsmith is {theirs / ours:.1f}x faster" if ours > 0 else "ratio: n/a")
print("wrote target/bench/rekey.json")
PY
