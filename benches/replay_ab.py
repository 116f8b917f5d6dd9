#!/usr/bin/env python3
"""Alternating replay benchmark of several `slawatch` binaries on the same streams.

Usage: replay_ab.py DATA_DIR STREAM[,STREAM...] RUNS NAME=BINARY NAME=BINARY [NAME=BINARY...]
(streams are DATA_DIR/STREAM.jsonl; the first binary's findings and dead letters are compared
with the second's; specs are this repository's `sla-specs/`).

Per stream: one untimed warm-up round that also writes findings and dead letters (compared
byte for byte between this build and main), then RUNS rounds of A B C in turn; CPU seconds =
user + sys of the child (wait4 rusage), peak RSS = ru_maxrss. Prints medians and per-round
ratios."""
import os, sys, time, statistics, subprocess, filecmp

DATA = sys.argv[1]
STREAMS = sys.argv[2].split(",")
RUNS = int(sys.argv[3])
BINS = dict(a.split("=", 1) for a in sys.argv[4:])
NAMES = list(BINS)
SPECS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sla-specs")


def run(binary, stream, out=None):
    args = [binary, "replay", f"{DATA}/{stream}.jsonl", "--specs", SPECS, "--no-progress"]
    if out:
        args += ["--out", out + ".findings", "--dead-letters", out + ".dl"]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL if not out else open(out + ".sum", "w"),
                         stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    assert status == 0, (binary, stream, status)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, wall


def records(stream):
    with open(f"{DATA}/{stream}.jsonl", "rb") as f:
        return sum(1 for _ in f)


for stream in STREAMS:
    n = records(stream)
    print(f"== {stream}: {n} records; start {time.strftime('%H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()[0]:.1f}", flush=True)
    os.makedirs(f"{DATA}/out", exist_ok=True)
    for name, b in BINS.items():
        run(b, stream, out=f"{DATA}/out/{stream}.{name}")
    for k in ("findings", "dl"):
        a, m = (f"{DATA}/out/{stream}.{NAMES[i]}.{k}" for i in (0, 1))
        same = filecmp.cmp(a, m, shallow=False)
        lines = sum(1 for _ in open(m, "rb"))
        print(f"   {k}: {NAMES[0]} vs {NAMES[1]} {'IDENTICAL' if same else 'DIFFER'} ({lines} lines)", flush=True)
    cpu = {k: [] for k in BINS}
    rss = {k: [] for k in BINS}
    loads = []
    for r in range(RUNS):
        for name, b in BINS.items():
            c, m, w = run(b, stream)
            cpu[name].append(c)
            rss[name].append(m)
        loads.append(os.getloadavg()[0])
        print(f"   round {r+1}: " + ", ".join(f"{k} {cpu[k][-1]:.3f}s" for k in BINS) + f" (load {loads[-1]:.1f})", flush=True)
    for name in BINS:
        med = statistics.median(cpu[name])
        print(f"   {name:8} CPU median {med:.3f} s (min {min(cpu[name]):.3f}, max {max(cpu[name]):.3f}) = {n/med:,.0f} records/CPU-s; peak RSS median {statistics.median(rss[name]):.1f} MiB", flush=True)
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1:]:
            ratios = [x / y for x, y in zip(cpu[a], cpu[b])]
            print(f"   {a}/{b}: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})", flush=True)
    print(f"   load during rounds: {min(loads):.1f}-{max(loads):.1f}", flush=True)
