#!/usr/bin/env bash
# Benchmark of the fleet-wide commands at 10,000 hosts (issue targets in docs/performance.md):
#   vm-fresh of one more host, keys list, sops check, sops rekey with nothing to change,
#   keys rotate HOST, keys delete HOST --yes; vm-fresh of 1,000 hosts into an empty fleet on
#   disk; and vm-fresh of 1,000 and 5,000 hosts into an empty fleet on tmpfs (is the cost linear?).
# The 10,000-host fleet (init, a shared file made by sops, then one vm-fresh of h1..h10000)
# is built once and kept in target/bench/fleet-10k/ (delete it to rebuild). Every run of a
# command that changes the fleet starts from a fresh copy. Wall time with hyperfine (median
# of HOSTSMITH_BENCH_RUNS, default 5), peak RSS with /usr/bin/time. Writes
# target/bench/fleet.json. Needs sops (scripts/install-peers.sh) and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/target/bench"
mkdir -p "$out"
runs="${HOSTSMITH_BENCH_RUNS:-5}"
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_hostsmith
find_sops
command -v hyperfine >/dev/null || { echo "bench-fleet: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }

cache="$out/fleet-10k"
unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE SOPS_AGE_KEY_CMD XDG_CONFIG_HOME HOSTSMITH_FLEET RUST_LOG
export HOME="$cache/home"
hosts() { seq -f "$1%g" 1 "$2" | tr '\n' ' '; }

# new_fleet DIR: an initialised fleet with a shared file (made by sops, for the admin).
new_fleet() {
  mkdir -p "$HOME"
  "$hostsmith" --fleet "$1" -q init
  mkdir -p "$1/sops"
  (cd "$1" && printf 'wifi: hunter2\n' | "$sops" encrypt --filename-override sops/shared.yaml \
    --input-type yaml --output-type yaml /dev/stdin >sops/shared.yaml)
}

if [ ! -f "$cache/complete" ]; then
  echo "bench-fleet: building the 10,000-host fleet in $cache (once)" >&2
  rm -rf "$cache"
  mkdir -p "$cache"
  new_fleet "$cache/empty"
  cp -a "$cache/empty" "$cache/fleet"
  # shellcheck disable=SC2046
  "$hostsmith" --fleet "$cache/fleet" -q vm-fresh $(hosts h 10000)
  touch "$cache/complete"
fi
fleet="$cache/fleet"
work=$(mktemp -d "$out/fleet-run.XXXXXX")
shm=$(mktemp -d /dev/shm/hostsmith-bench-fleet.XXXXXX)
trap 'rm -rf "$work" "$shm" "$cache"/copies-* "$cache"/empty-disk' EXIT

# measure NAME SRC CHANGES COMMAND...: COMMAND runs with --fleet at SRC itself (CHANGES=no)
# or, each run, at its own fresh copy of it (CHANGES=yes), reached through the link `cur`.
# No copy is deleted while the benchmark runs: ext4 without a journal (this machine's disk)
# checks every free inode it considers against the last minutes' deletions, so a run right
# after deleting a 30,000-file copy allocates its few files slowly and its time says more
# about the previous run's `rm -rf` than about hostsmith. All copies go at the end.
measure() {
  local name=$1 src=$2 changes=$3
  shift 3
  local at=$src prepare=(--prepare true)
  if [ "$changes" = yes ]; then
    local copies
    copies="$(dirname "$src")/copies-$name"
    mkdir -p "$copies"
    at="$copies/cur"
    # (hyperfine -N runs the preparation without a shell too)
    prepare=(--prepare "bash -c \"d=\\\$(mktemp -d '$copies/run.XXXXXX') && cp -a '$src/.' \\\$d && ln -sfn \\\$d '$at' && sync && sleep 0.3\"")
  fi
  echo "bench-fleet: $name" >&2
  hyperfine -N --style basic --runs "$runs" --warmup 1 "${prepare[@]}" --command-name "$name" \
    --export-json "$work/$name.json" "$hostsmith --fleet $at -q $*" >&2
  if [ "$changes" = yes ]; then
    local d
    d=$(mktemp -d "$copies/run.XXXXXX") && cp -a "$src/." "$d" && ln -sfn "$d" "$at" && sync
  fi
  /usr/bin/time -f '%M' -o "$work/$name.rss" "$hostsmith" --fleet "$at" -q "$@" >/dev/null
  return 0
}

measure vm-fresh-one-more "$fleet" yes vm-fresh extra1
measure keys-list "$fleet" no keys list
measure sops-check "$fleet" no sops check
measure sops-rekey-nothing "$fleet" no sops rekey
measure keys-rotate "$fleet" yes keys rotate h5
measure keys-delete "$fleet" yes keys delete h5 --yes
cp -a "$cache/empty" "$shm/empty"
rm -rf "$cache/empty-disk" && cp -a "$cache/empty" "$cache/empty-disk"
# shellcheck disable=SC2046
measure vm-fresh-1000-disk "$cache/empty-disk" yes vm-fresh $(hosts x 1000)
# shellcheck disable=SC2046
measure vm-fresh-1000-tmpfs "$shm/empty" yes vm-fresh $(hosts x 1000)
# shellcheck disable=SC2046
measure vm-fresh-5000-tmpfs "$shm/empty" yes vm-fresh $(hosts x 5000)

python3 - "$work" "$out/fleet.json" "$runs" <<'EOF'
import json, os, statistics, sys
work, dest, runs = sys.argv[1:]
cases = {}
for f in sorted(os.listdir(work)):
    if not f.endswith(".json"):
        continue
    name = f[:-5]
    t = json.load(open(os.path.join(work, f)))["results"][0]["times"]
    rss = int(open(os.path.join(work, name + ".rss")).read().split()[-1]) / 1024
    cases[name] = {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3), "max_s": round(max(t), 3), "runs": len(t), "peak_rss_mib": round(rss, 1)}
ratio = cases["vm-fresh-5000-tmpfs"]["median_s"] / cases["vm-fresh-1000-tmpfs"]["median_s"]
r = {"what": "fleet-wide commands at 10,000 hosts (release build); vm-fresh 1000 into an empty fleet on disk, 1000/5000 on tmpfs",
     "nproc": os.cpu_count(), "load_before": open("/proc/loadavg").read().split()[0], "cases": cases,
     "vm_fresh_5000_over_1000": round(ratio, 2)}
json.dump(r, open(dest, "w"), indent=2)
for name, c in cases.items():
    print(f"{name:<22} median {c['median_s']:.3f} s  (min {c['min_s']:.3f}, max {c['max_s']:.3f}, {c['runs']} runs)  peak RSS {c['peak_rss_mib']} MiB")
print(f"vm-fresh 5000 / 1000: {ratio:.2f}x")
print(f"wrote {dest}")
EOF
