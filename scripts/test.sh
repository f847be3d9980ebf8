#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the peers, then format, lints and every test
# with real peers required (a missing peer fails instead of skipping).
#
# Every run is cold: the PyPI peers go into a virtual environment this run creates, and the
# first-boot cache (the debootstrap root) is a fresh directory of this run, both removed at
# the end. A developer may keep either between runs, one variable each:
#   HOSTSMITH_PEER_VENV=DIR   the peers' virtual environment (created, then reused)
#   HOSTSMITH_E2E_CACHE=DIR   the first-boot cache (built once, then reused)
# Under CI (CI=true) neither may be kept: the run fails rather than test against old state.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

say() { printf 'test: %s\n' "$*" >&2; }

if [ "${CI:-}" = true ] && [ -n "${HOSTSMITH_PEER_VENV:-}${HOSTSMITH_E2E_CACHE:-}" ]; then
  say "CI runs cold: unset HOSTSMITH_PEER_VENV and HOSTSMITH_E2E_CACHE"
  exit 1
fi

# On the disk, not /tmp: the first-boot root holds device nodes and ~350 MB.
run_dir=$(mktemp -d /var/tmp/hostsmith-test.XXXXXX)
# --one-file-system: never follow a mount a killed test may have left inside the root.
trap 'rm -rf --one-file-system "$run_dir"' EXIT

venv=${HOSTSMITH_PEER_VENV:-$run_dir/venv}
if [ -n "${HOSTSMITH_E2E_CACHE:-}" ]; then
  say "keeping the first-boot cache $HOSTSMITH_E2E_CACHE (HOSTSMITH_E2E_CACHE)"
else
  export HOSTSMITH_E2E_CACHE=$run_dir/e2e
  mkdir "$HOSTSMITH_E2E_CACHE"
fi
if [ -n "${HOSTSMITH_PEER_VENV:-}" ]; then
  say "keeping the peers' environment $venv (HOSTSMITH_PEER_VENV)"
fi
if [ "${CI:-}" = true ] && [ -n "$(ls -A "$HOSTSMITH_E2E_CACHE")" ]; then
  say "the first-boot cache $HOSTSMITH_E2E_CACHE is not empty: CI must build it"
  exit 1
fi

bash scripts/install-peers.sh "$venv"
PATH="$venv/bin:$PATH"
export PATH
export HOSTSMITH_REQUIRE_PEERS=1
printf 'first-boot cache: %s\n' "$HOSTSMITH_E2E_CACHE"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The in-repo test plugin is its own package (not shipped): the same rules hold for it.
cargo fmt --manifest-path tests/age-plugin-hstest/Cargo.toml -- --check
cargo clippy --manifest-path tests/age-plugin-hstest/Cargo.toml --locked --target-dir target/test-peers -- -D warnings
cargo test --all-targets --locked
say "done in $(($(date +%s) - start)) s"
