#!/usr/bin/env bash
# The baseline for `hostsmith vm-fresh`: the same job done the way users' shell scripts do it
# today, one host at a time. scripts/bench.sh times it next to hostsmith; it is not a tool.
#
#   cd FLEET && bash scripts/baseline-vm-fresh.sh HOST...
#
# Per host: `ssh-keygen -t ed25519` for the host key and each deploy key, a Python ssh-to-age
# conversion (PyNaCl + Bech32), a `.sops.yaml` edit with ruamel.yaml's round-trip mode, the
# plaintext host file written to a private temp dir and `sops --encrypt`ed into
# sops/HOST.yaml, and hosts/HOST.json. Needs ssh-keygen, sops, python3 with PyNaCl and
# ruamel.yaml (scripts/bench.sh installs them). The admin identity comes from sops' usual
# places, as for hostsmith. SOPS and PYTHON name the programs to run (bench.sh passes the real
# binaries, not pyenv's or pip's wrapper scripts, whose start-up is not the baseline's cost).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
helper="$here/baseline_vm_fresh.py"
sops="${SOPS:-sops}"
python="${PYTHON:-python3}"
deploy_keys=(nix-config nix-secrets)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
mkdir -p sops hosts

for host in "$@"; do
  # The "already done?" check users write.
  if [ -f "hosts/$host.json" ]; then
    echo "skip $host"
    continue
  fi
  d="$work/$host"
  mkdir -m 700 "$d"
  ssh-keygen -q -t ed25519 -N "" -C "root@$host" -f "$d/ssh_host_ed25519_key"
  for repo in "${deploy_keys[@]}"; do
    ssh-keygen -q -t ed25519 -N "" -C "$host-$repo-deploy" -f "$d/$repo"
  done
  age="$("$python" "$helper" to-age "$d/ssh_host_ed25519_key.pub")"
  "$python" "$helper" edit-sops-yaml "$host" "$age"
  {
    echo "ssh_host_ed25519_key: |"
    sed 's/^/    /' "$d/ssh_host_ed25519_key"
    echo "deploy-keys:"
    for repo in "${deploy_keys[@]}"; do
      echo "    $repo: |"
      sed 's/^/        /' "$d/$repo"
    done
  } >"$d/plain.yaml"
  "$sops" --encrypt --filename-override "sops/$host.yaml" --input-type yaml --output-type yaml \
    "$d/plain.yaml" >"sops/$host.yaml.tmp"
  mv "sops/$host.yaml.tmp" "sops/$host.yaml"
  pubs=()
  for repo in "${deploy_keys[@]}"; do pubs+=("$d/$repo.pub"); done
  "$python" "$helper" record "$host" "$d/ssh_host_ed25519_key.pub" "$age" "${pubs[@]}"
  rm -rf "$d"
  echo "created $host"
done
