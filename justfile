# hostsmith: `just --list` shows every recipe.

set positional-arguments
set shell := ["bash", "-euo", "pipefail", "-c"]

# HOSTSMITH_BIN runs an already built binary instead (the tests use it).
hostsmith := env("HOSTSMITH_BIN", "cargo run --quiet --release --")

# List the recipes.
default:
    @just --list

# Give HOST (and more) an identity in the fleet of the current directory.
vm-fresh host *args:
    {{ hostsmith }} vm-fresh "$@"

# Proxmox: clone a VM from the template with HOST's identity injected, then verify it.
deploy-image vmid name *args:
    {{ hostsmith }} deploy-image --vm-id "$1" --name "$2" "${@:3}"

# Write HOST's NoCloud seed to seeds/HOST/.
cloud-init host *args:
    {{ hostsmith }} cloud-init "$1" --out "seeds/$1" "${@:2}"

# Run the main job on a throwaway fleet.
demo *args:
    {{ hostsmith }} demo "$@"

# The whole suite, as CI runs it (installs the test peers first).
test:
    bash scripts/test.sh

# Only the first-boot end-to-end tests (real cloud-init in debootstrap roots of bookworm and trixie).
e2e:
    bash scripts/install-peers.sh target/peers-venv
    PATH="$PWD/target/peers-venv/bin:$PATH" HOSTSMITH_REQUIRE_PEERS=1 cargo test --release --test it first_boot -- --nocapture

# The README's test command from a fresh clone, twice, each from a cold state (as root).
cold-check:
    bash scripts/cold-check.sh

# Benchmarks; results in target/bench/.
bench:
    bash scripts/bench.sh

# Format and lint checks.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Re-wrap the data keys of the fleet's SOPS files after .sops.yaml changed.
rekey *args:
    {{ hostsmith }} sops rekey "$@"

# Check that the fleet's .sops.yaml, host records and SOPS files agree.
check:
    {{ hostsmith }} check
