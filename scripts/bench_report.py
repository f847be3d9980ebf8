#!/usr/bin/env python3
"""Summarises scripts/bench.sh's measurements: a table on stdout, target/bench/vm-fresh.json
(the figures, compared with the previous run's vm-fresh.prev.json), summary.json (those, the
machine, and the JSON other bench scripts wrote) and summary.md.

Usage: bench_report.py OUT_DIR MARKER FS_TYPE [OTHER_SCRIPT...]
"""

import json
import os
import platform
import subprocess
import sys

out, marker, fs_type, *others = sys.argv[1:]
started = os.path.getmtime(marker)


def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    r = json.load(open(path))["results"][0]
    rss_path = os.path.join(out, name + ".rss")
    rss = int(open(rss_path).read().split()[-1]) if os.path.exists(rss_path) else None
    return {
        "runs": len(r["times"]),
        "median_s": r["median"],
        "mean_s": r["mean"],
        "min_s": r["min"],
        "max_s": r["max"],
        "stddev_s": r.get("stddev"),
        "user_s": r.get("user"),
        "system_s": r.get("system"),
        "peak_rss_kib": rss,
    }


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        rev += "+changes" if dirty.strip() else ""
    except OSError:
        rev = "unknown"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "fleet_filesystem": fs_type,
        "load_average_1m": os.getloadavg()[0],
        "hostsmith_commit": rev,
    }


cases = {}
for where in ("", "-tmpfs"):
    for n_fleet in (0, 1000):
        for n in (1, 100, 1000):
            cases[f"vm-fresh-N{n_fleet}-n{n}{where}"] = load(f"vm-fresh-N{n_fleet}-n{n}{where}")
for name in ("baseline-N0-n1", "baseline-N0-n100", "baseline-N1000-n1"):
    cases[name] = load(name)


def med(name):
    c = cases.get(name)
    return c["median_s"] if c else None


derived = {}
targets = {}
for where in ("", "-tmpfs"):
    fs = "disk" if where == "" else "tmpfs"
    for n_fleet in (0, 1000):
        t1, t100, t1000 = (med(f"vm-fresh-N{n_fleet}-n{n}{where}") for n in (1, 100, 1000))
        if None in (t1, t100, t1000):
            continue
        # The marginal cost of a host: the fixed cost of a run (reading a fleet of N) apart.
        per_host = (t1000 - t1) / 999
        derived[f"N{n_fleet}_{fs}"] = {
            "per_host_ms": round(per_host * 1000, 3),
            "ratio_1000_to_100": round(t1000 / t100, 2),
        }
        targets[f"1000 hosts < 5 s (N={n_fleet}, {fs})"] = t1000 < 5
        targets[f"1000-host run < 12x the 100-host run (N={n_fleet}, {fs})"] = t1000 / t100 < 12
    if f"N0_{fs}" in derived and f"N1000_{fs}" in derived:
        growth = derived[f"N1000_{fs}"]["per_host_ms"] / derived[f"N0_{fs}"]["per_host_ms"]
        derived[f"per_host_N1000_over_N0_{fs}"] = round(growth, 2)
        targets[f"per-host cost flat in N (N=1000 within 1.5x of N=0, {fs})"] = growth < 1.5
b1, b100 = med("baseline-N0-n1"), med("baseline-N0-n100")
if b1 and med("vm-fresh-N0-n1"):
    derived["baseline_ratio_1_host"] = round(b1 / med("vm-fresh-N0-n1"), 1)
if b100 and med("vm-fresh-N0-n100"):
    derived["baseline_ratio_100_hosts"] = round(b100 / med("vm-fresh-N0-n100"), 1)
    derived["baseline_1000_hosts_extrapolated_s"] = round(b100 * 10, 1)
    derived["baseline_ratio_1000_hosts_extrapolated"] = round(b100 * 10 / med("vm-fresh-N0-n1000"), 1)
if med("baseline-N1000-n1") and med("vm-fresh-N1000-n1"):
    derived["baseline_ratio_1_host_in_1000"] = round(med("baseline-N1000-n1") / med("vm-fresh-N1000-n1"), 1)
if b1 and med("baseline-N1000-n1") and med("vm-fresh-N0-n1000"):
    # The baseline's per-host cost grows with the fleet (it re-reads .sops.yaml per host):
    # assume it grows linearly from its 1-host cost at N=0 to its 1-host cost at N=1000.
    est = 1000 * (b1 + med("baseline-N1000-n1")) / 2
    derived["baseline_1000_hosts_estimated_s"] = round(est, 1)
    derived["baseline_ratio_1000_hosts_estimated"] = round(est / med("vm-fresh-N0-n1000"), 1)

prev_path = os.path.join(out, "vm-fresh.json")
prev = None
if os.path.exists(prev_path):
    prev = json.load(open(prev_path))
    os.replace(prev_path, os.path.join(out, "vm-fresh.prev.json"))
figures = {"machine": machine(), "cases": cases, "derived": derived, "targets": targets}
json.dump(figures, open(prev_path, "w"), indent=2)

other_json = {}
for f in sorted(os.listdir(out)):
    p = os.path.join(out, f)
    if not f.endswith(".json") or os.path.getmtime(p) < started:
        continue
    if f.startswith(("vm-fresh", "baseline", "summary")):
        continue
    try:
        other_json[f[:-5]] = json.load(open(p))
    except (OSError, ValueError) as e:
        other_json[f[:-5]] = {"error": str(e)}
summary = dict(figures, other_benchmarks=other_json, other_scripts=others)
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


rows = [("case", "runs", "median", "min", "max", "peak RSS", "vs last run")]
for name, c in cases.items():
    if c is None:
        continue
    tmpfs = name.endswith("-tmpfs")
    parts = name.removesuffix("-tmpfs").split("-")
    what = "hostsmith vm-fresh" if name.startswith("vm-fresh") else "baseline script"
    f = parts[-2][1:]
    n = parts[-1][1:]
    label = f"{what}: {n} host(s), fleet of {f}" + (", tmpfs" if tmpfs else "")
    change = "-"
    if prev and prev.get("cases", {}).get(name):
        p = prev["cases"][name]["median_s"]
        change = f"{(c['median_s'] / p - 1) * 100:+.0f}%"
    rss = f"{c['peak_rss_kib'] / 1024:.1f} MiB" if c["peak_rss_kib"] else "-"
    rows.append((label, str(c["runs"]), fmt_s(c["median_s"]), fmt_s(c["min_s"]), fmt_s(c["max_s"]), rss, change))

widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
lines = []
for i, r in enumerate(rows):
    lines.append("| " + " | ".join(x.ljust(widths[j]) for j, x in enumerate(r)) + " |")
    if i == 0:
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
m = figures["machine"]
md = [
    f"Machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
    f"fleets on {m['fleet_filesystem']}, load {m['load_average_1m']:.2f}, hostsmith {m['hostsmith_commit']}",
    "",
    *lines,
    "",
    "Derived: " + ", ".join(f"{k} = {v}" for k, v in derived.items()),
    "",
    "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()),
]
for name, data in other_json.items():
    md += ["", f"{name}.json:"]
    flat = {}
    for k, v in data.items() if isinstance(data, dict) else []:
        if isinstance(v, (int, float, str)):
            flat[k] = v
        elif isinstance(v, dict):
            flat.update({f"{k}.{k2}": v2 for k2, v2 in v.items() if isinstance(v2, (int, float, str))})
    md += [f"  {k} = {v}" for k, v in flat.items()] or ["  (see summary.json)"]
text = "\n".join(md) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
