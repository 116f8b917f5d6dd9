#!/usr/bin/env python3
"""slawatch's `test: evidently` against Evidently itself, on identical windows (issue 10, item 7).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install evidently numpy scipy pandas
    /tmp/venv/bin/python benches/peers/evidently_compare.py [--release]

Generates windows (fixed seed) covering every branch of Evidently's default drift rule
(`get_default_stattest`): numeric with > 5 / 3-5 / 2 distinct values and categorical or binary
features, with a reference of <= 1000 values (KS, goodness-of-fit chi-square, z at p < 0.05) and
> 1000 (normalised Wasserstein, Jensen-Shannon >= 0.1), each without and with a shift. It writes
them to target/bench-data/evidently-windows.json, runs slawatch on them through the drift bench
(`SLAWATCH_EVIDENTLY_PEER=...`, release build with --release), runs Evidently's registered
default stattest on the same pandas Series, and prints per window: both tests, p-values or
distances, verdicts, time per window, then agreement and the time ratio. Run by hand; its output
is committed in benches/README.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "target" / "bench-data"


def windows():
    rng = np.random.default_rng(2024)
    out = []

    def add(name, kind, ref, cur):
        out.append({"name": name, "kind": kind, "reference": ref, "current": cur})

    for n_ref, n_cur in [(800, 300), (5000, 2000)]:
        for shift in [0.0, 0.15, 0.5]:
            ref = np.round(rng.lognormal(5.7, 0.4, n_ref), 1)
            cur = np.round(rng.lognormal(5.7 + shift * 0.4, 0.4, n_cur), 1)
            add(f"numeric_many_ref{n_ref}_shift{shift}", "numeric", ref.tolist(), cur.tolist())
            p = np.array([0.4, 0.3, 0.2, 0.1])
            q = p + shift * np.array([-0.3, 0.1, 0.1, 0.1])
            ref = rng.choice([1.0, 2.0, 3.0, 4.0], n_ref, p=p)
            cur = rng.choice([1.0, 2.0, 3.0, 4.0], n_cur, p=q / q.sum())
            add(f"numeric_4values_ref{n_ref}_shift{shift}", "numeric", ref.tolist(), cur.tolist())
            labels = ["search_kb", "get_order", "escalate", "update_address", "refund"]
            p = np.array([0.35, 0.3, 0.15, 0.12, 0.08])
            q = p + shift * np.array([-0.2, 0.05, 0.05, 0.05, 0.05])
            ref = rng.choice(labels, n_ref, p=p)
            cur = rng.choice(labels, n_cur, p=q / q.sum())
            add(f"categorical_ref{n_ref}_shift{shift}", "categorical", ref.tolist(), cur.tolist())
            rate = 0.05
            ref = (rng.random(n_ref) < rate).astype(float)
            cur = (rng.random(n_cur) < rate * (1 + 4 * shift)).astype(float)
            add(f"binary_ref{n_ref}_shift{shift}", "binary", ref.tolist(), cur.tolist())
    return out


def evidently_verdict(w):
    ref = pd.Series(w["reference"])
    cur = pd.Series(w["current"])
    if w["kind"] == "numeric":
        ctype = ColumnType.Numerical
    else:
        ctype = ColumnType.Categorical
    test = get_stattest(ref, cur, ctype, None)
    started = time.perf_counter()
    reps = 20
    for _ in range(reps):
        result = test(ref, cur, ctype, None)
    secs = (time.perf_counter() - started) / reps
    return test.name, float(result.drift_score), bool(result.drifted), secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", action="store_true", help="time slawatch's release build")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    ws = windows()
    inp, outp = DATA / "evidently-windows.json", DATA / "evidently-slawatch.json"
    inp.write_text(json.dumps({"windows": ws}))
    cmd = ["cargo", "bench", "--bench", "drift", "--", "--bench", "evidently_peer_only"]
    if not args.release:
        cmd = ["cargo", "test", "--bench", "drift"]
    env = dict(os.environ, SLAWATCH_EVIDENTLY_PEER=f"{inp}:{outp}")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    ours = {r["name"]: r for r in json.loads(outp.read_text())}
    print("| window | Evidently test | Evidently score | drift | slawatch test | slawatch score | drift "
          "| Evidently ms | slawatch ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    agree, t_ev, t_sw = 0, 0.0, 0.0
    for w in ws:
        name, score, drifted, secs = evidently_verdict(w)
        r = ours[w["name"]]
        score_sw = r["p_value"] if r["p_value"] is not None else r["statistic"]
        agree += drifted == r["drift"]
        t_ev += secs
        t_sw += r["seconds"]
        print(f"| {w['name']} | {name} | {score:.6g} | {drifted} | {r['test']} | {score_sw:.6g} | {r['drift']} "
              f"| {secs * 1e3:.3f} | {r['seconds'] * 1e3:.3f} |")
    print(f"\nverdicts agree on {agree} of {len(ws)} windows; time per window: Evidently "
          f"{t_ev / len(ws) * 1e3:.3f} ms, slawatch {t_sw / len(ws) * 1e3:.3f} ms "
          f"(Evidently / slawatch = {t_ev / max(t_sw, 1e-12):.1f}x)")
    return 0 if agree == len(ws) else 1


if __name__ == "__main__":
    sys.exit(main())
