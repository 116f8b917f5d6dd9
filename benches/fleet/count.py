#!/usr/bin/env python3
"""Counts drift tickets in findings JSON Lines (`slawatch replay --out`).

    count.py steady FINDINGS KEYS DAYS    false drift tickets of a steady fleet, per key-month
    count.py delay FINDINGS CHANGE_AT KEY detection delay of the first ticket of prompt KEY

A ticket is a drift finding of severity ticket or page. Findings of one key (any segment) less
than 4 h apart are one episode — what one incident carries; the raw finding count is the worst
case of one ticket each.
"""
import json
import sys
from datetime import datetime


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def tickets(path):
    for line in open(path):
        f = json.loads(line)
        if f["check"] == "drift" and f["verdict"] == "breach" and f["severity"] in ("ticket", "page"):
            yield f


def steady(path, keys, days):
    by_key = {}
    for f in tickets(path):
        k = dict(map(tuple, f["key"]))["prompt_version"]
        by_key.setdefault(k, []).append(ts(f["window_end"]))
    findings = sum(len(v) for v in by_key.values())
    episodes = 0
    for v in by_key.values():
        v.sort()
        episodes += 1 + sum(1 for a, b in zip(v, v[1:]) if b - a > 4 * 3600)
    key_months = keys * days / 30.0
    print(f"keys {keys}, days {days}, key-months {key_months:.2f}")
    print(f"ticket findings {findings} ({findings / key_months:.2f} per key-month)")
    print(f"episodes {episodes} ({episodes / key_months:.2f} per key-month), keys with any {len(by_key)}")


def delay(path, change_at, key):
    t0 = ts(change_at)
    first = None
    for f in tickets(path):
        k = dict(map(tuple, f["key"]))["prompt_version"]
        if k == key and f["segment"] is None:
            t = ts(f["window_end"])
            if first is None or t < first[0]:
                drifted = [x["feature"] + ":" + x["test"] for x in f["drift"]["features"] if x["verdict"] == "drift"]
                first = (t, f["window_end"], f["sessions"], drifted)
    if first is None:
        print(f"{key}: not detected")
        return
    print(f"{key}: first ticket for the window ending {first[1]}, {(first[0] - t0) / 60:.0f} min after the change, "
          f"{first[2]} sessions, drifted {', '.join(first[3])}")


if __name__ == "__main__":
    if sys.argv[1] == "steady":
        steady(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        delay(sys.argv[2], sys.argv[3], sys.argv[4])
