# Moves the host key cloud-init installed into the persist layout, before sshd and sops-nix
# read it there.
#
#   sh persist-host-key.sh PERSISTED [INSTALLED]
#
# cloud-init's ssh module always writes INSTALLED (default /etc/ssh/ssh_host_ed25519_key);
# with `hostsmith.host.persist` the host module points sshd and sops-nix at PERSISTED
# (`<persist>/etc/ssh/ssh_host_ed25519_key`). This copies the key (and its .pub) there,
# durably and atomically, and leaves a link in its place, so both paths name one key.
#
# A key already persisted is never replaced: it is the machine's identity, and a differing
# key at INSTALLED is reported and left alone. Nothing to do (no key installed, or already a
# link) is not an error. POSIX sh, coreutils and cmp only: it runs in NixOS activation and in a
# systemd unit, and the tests run it in a Debian root after real cloud-init.
set -eu

persisted=${1:?usage: persist-host-key.sh PERSISTED [INSTALLED]}
installed=${2:-/etc/ssh/ssh_host_ed25519_key}

say() { printf 'hostsmith: %s\n' "$*" >&2; }

# Nothing installed this boot, or already moved: the persisted key (if any) is the one.
if [ -L "$installed" ] || [ ! -f "$installed" ]; then
  exit 0
fi

if [ -e "$persisted" ] || [ -L "$persisted" ]; then
  if cmp -s "$installed" "$persisted"; then
    same=1
  else
    say "keeping the persisted host key $persisted; the different key at $installed is left alone (remove it, or move it over $persisted yourself to change the machine's identity)"
    exit 0
  fi
fi

# put SRC DEST MODE: DEST becomes a copy of SRC, mode MODE, on disk before it has its name.
put() {
  tmp="$2.hostsmith-new.$$"
  rm -f "$tmp"
  (umask 077 && cp "$1" "$tmp")
  chmod "$3" "$tmp"
  sync "$tmp"
  mv -f "$tmp" "$2"
}

# link DEST NAME: NAME becomes a symbolic link to DEST, replaced in one rename.
link() {
  tmp="$2.hostsmith-link.$$"
  rm -f "$tmp"
  ln -s "$1" "$tmp"
  mv -f "$tmp" "$2"
}

dir=$(dirname "$persisted")
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  chmod 0755 "$dir"
fi
if [ -z "${same:-}" ]; then
  put "$installed" "$persisted" 0600
  if [ -f "$installed.pub" ] && [ ! -L "$installed.pub" ]; then
    put "$installed.pub" "$persisted.pub" 0644
  fi
  sync "$dir"
  say "moved the host key cloud-init installed at $installed to $persisted"
fi
link "$persisted" "$installed"
if [ -f "$persisted.pub" ] && [ ! -L "$installed.pub" ]; then
  link "$persisted.pub" "$installed.pub"
fi
