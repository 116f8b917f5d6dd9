#!/usr/bin/env python3
"""Reference values for slawatch's confidence bounds (src/evaluate/confidence.rs), computed
with scipy and statsmodels. Writes tests/data/confidence_reference.json.

    pip install numpy scipy statsmodels
    python3 scripts/confidence_reference.py          # rewrites the JSON
    python3 scripts/confidence_reference.py --check  # fails if the JSON would change

* order statistics: for each (n, q, confidence, side) the 1-based rank k of the order
  statistic that bounds the q-quantile, found by brute force over scipy.stats.binom.cdf:
  lower: the largest k with binom.cdf(k-1, n, q) <= 1-c (None if there is none);
  upper: the smallest k with binom.cdf(k-1, n, q) >= c (None if k > n).
  Cases whose deciding CDF lies within 1e-9 of the cut are left out (a rounding flip there
  is not a disagreement about the method).
* t: scipy.stats.t.ppf(c, df).
* wilson: statsmodels proportion_confint(k, n, alpha=2(1-c), method="wilson"), both ends
  (a one-sided bound at c is one end of the two-sided interval at 2c-1).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "confidence_reference.json"

NS = [1, 2, 3, 5, 10, 20, 30, 50, 99, 100, 101, 150, 200, 298, 299, 300, 450, 600, 1000,
      2500, 10000, 100000]
QS = [0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995, 0.999]
CS = [0.8, 0.9, 0.95, 0.99, 0.999]


def ranks():
    out = []
    for n in NS:
        j = np.arange(n + 1)
        for q in QS:
            cdf = stats.binom.cdf(j, n, q)
            for c in CS:
                alpha = 1.0 - c
                # lower
                ok = np.nonzero(cdf <= alpha)[0]
                k = int(ok[-1]) + 1 if len(ok) else None
                near = np.min(np.abs(cdf - alpha))
                if near > 1e-9:
                    out.append({"n": n, "q": q, "confidence": c, "side": "lower", "k": k})
                # upper
                ok = np.nonzero(cdf >= c)[0]
                first = int(ok[0]) if len(ok) else n
                k = first + 1 if first < n else None
                near = np.min(np.abs(cdf - c))
                if near > 1e-9:
                    out.append({"n": n, "q": q, "confidence": c, "side": "upper", "k": k})
    return out


def t_cases():
    return [{"confidence": c, "df": df, "t": float(stats.t.ppf(c, df))}
            for c in CS for df in [1, 2, 3, 5, 9, 29, 99, 299, 999, 100000]]


def wilson_cases():
    out = []
    for c in CS:
        for k, n in [(0, 10), (1, 1), (3, 7), (9, 300), (3, 100), (30, 100), (97, 100),
                     (100, 100), (1, 200), (123, 1000), (5000, 100000)]:
            lo, hi = proportion_confint(k, n, alpha=2 * (1 - c), method="wilson")
            out.append({"k": k, "n": n, "confidence": c, "lower": float(lo), "upper": float(hi)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    doc = {
        "meta": {
            "generator": "scripts/confidence_reference.py",
            "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__,
        },
        "order_statistic": ranks(),
        "t": t_cases(),
        "wilson": wilson_cases(),
    }
    # One case per line: small, and diffs show which case changed.
    parts = [f'"meta": {json.dumps(doc["meta"])}']
    for name in ["order_statistic", "t", "wilson"]:
        rows = ",\n".join(json.dumps(c) for c in doc[name])
        parts.append(f'"{name}": [\n{rows}\n]')
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            sys.exit(f"{args.out} is out of date; rerun scripts/confidence_reference.py")
        return
    args.out.write_text(text)
    print(f"wrote {len(doc['order_statistic'])} ranks, {len(doc['t'])} t, "
          f"{len(doc['wilson'])} wilson cases to {args.out}")


if __name__ == "__main__":
    main()
