#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the peers, then format, lints and every
# test with real peers required (a missing peer fails instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-peers.sh
# pip's script directory (sops, just) may not be on PATH in a non-login shell.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
export HOSTSMITH_REQUIRE_PEERS=1

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
