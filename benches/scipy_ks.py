#!/usr/bin/env python3
"""Times scipy / numpy on exactly the inputs `cargo bench --bench drift` wrote.

Reads target/bench-data/drift-input.json (written by benches/drift.rs before it measures),
checks that scipy gets the answers Rust recorded in the same file, then times each call with
timeit (best and median of R repeats of an auto-ranged loop) and prints a table. With --json
PATH it also writes the timings (seconds per call) for benches/compare_scipy.sh.

    cargo bench --bench drift -- 'ks/|chi2/|psi/|bh/'   # writes the inputs
    python3 benches/scipy_ks.py [--repeat 15] [--json out.json]

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on the bench machine and slow numpy down;
compare_scipy.sh unsets them for this command only.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import timeit

import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INPUT = os.path.join(HERE, "..", "target", "bench-data", "drift-input.json")


def psi_numpy(reference, current):
    """numpy PSI with slawatch's definition (`stats::psi`): reference deciles (linear
    np.quantile), deduplicated edges, bin = #edges <= x, proportions floored at 1e-4."""
    edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10.0))
    bins = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=bins)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=bins)
    r = np.maximum(r / len(reference), 1e-4)
    c = np.maximum(c / len(current), 1e-4)
    return float(np.sum((c - r) * np.log(c / r))), bins


def close(a, b, rel=1e-9, abs_=1e-300):
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


def time_call(fn, repeat):
    """Best and median seconds per call: timeit's autorange picks a loop count of >= 0.2 s,
    then `repeat` loops are timed."""
    t = timeit.Timer(fn)
    number, _ = t.autorange()
    runs = [x / number for x in t.repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs), number


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default=DEFAULT_INPUT)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", help="write the timings here")
    args = ap.parse_args()
    if not os.path.exists(args.input):
        sys.exit(
            f"{args.input} is missing: run `cargo bench --bench drift` first (it writes the inputs)"
        )
    with open(args.input) as f:
        d = json.load(f)
    x = np.asarray(d["x"], dtype=np.float64)
    y = np.asarray(d["y"], dtype=np.float64)
    n = len(y)
    table = np.asarray(d["table"], dtype=np.float64)
    ps = np.asarray(d["p_values"], dtype=np.float64)
    rust = d["rust"]

    # The three KS shapes of the Rust bench (prefixes of x and y), method='auto' like ks_2samp.
    ks_cases = {
        "ks_exact_equal": (x[:n], y),
        "ks_exact_unequal": (x[:n], y[: n - 1]),
        "ks_asymptotic": (x, y),
    }
    mismatches = []
    for name, (a, b) in ks_cases.items():
        r = stats.ks_2samp(a, b)
        want = rust[name]
        assert (len(a), len(b)) == (want["n1"], want["n2"]), name
        if not (close(r.statistic, want["statistic"]) and close(r.pvalue, want["p_value"])):
            mismatches.append(f"{name}: scipy D={r.statistic!r} p={r.pvalue!r} vs rust {want}")
    chi = stats.chi2_contingency(table, correction=True)
    if not (close(chi.statistic, rust["chi2"]["statistic"]) and close(chi.pvalue, rust["chi2"]["p_value"])):
        mismatches.append(f"chi2: scipy {chi.statistic!r} {chi.pvalue!r} vs rust {rust['chi2']}")
    psi, bins = psi_numpy(x[:n], y)
    if not (close(psi, rust["psi"]["psi"], rel=1e-12) and bins == rust["psi"]["bins"]):
        mismatches.append(f"psi: numpy {psi!r} ({bins} bins) vs rust {rust['psi']}")
    bh = stats.false_discovery_control(ps, method="bh")
    if not all(close(a, b) for a, b in zip(bh, rust["bh"])):
        mismatches.append("bh: adjusted p-values differ")
    for m in mismatches:
        print("MISMATCH", m, file=sys.stderr)

    cases = [
        ("ks/exact_equal_n", f"ks_2samp {n} vs {n} (exact)",
         lambda: stats.ks_2samp(x[:n], y)),
        ("ks/exact_unequal_n", f"ks_2samp {n} vs {n - 1} (exact)",
         lambda: stats.ks_2samp(x[:n], y[: n - 1])),
        ("ks/asymptotic", f"ks_2samp {n + 1} vs {n} (asymptotic)",
         lambda: stats.ks_2samp(x, y)),
        ("chi2/contingency_2x20", "chi2_contingency 2x20",
         lambda: stats.chi2_contingency(table, correction=True)),
        ("psi/psi_n_vs_n", f"PSI {n} vs {n} (numpy)",
         lambda: psi_numpy(x[:n], y)),
        ("bh/adjust_100", "false_discovery_control 100",
         lambda: stats.false_discovery_control(ps, method="bh")),
    ]
    env = {k: os.environ[k] for k in os.environ if k.startswith("OPENBLAS")}
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; "
        f"OPENBLAS env: {env or 'unset'}; best/median of {args.repeat} repeats"
    )
    print("| id | call | best µs | median µs | loops |")
    print("|---|---|---|---|---|")
    out = {}
    for key, label, fn in cases:
        best, median, number = time_call(fn, args.repeat)
        out[key] = {"best_s": best, "median_s": median, "label": label}
        print(f"| {key} | {label} | {best * 1e6:.1f} | {median * 1e6:.1f} | {number} |")
    for name, (a, b) in ks_cases.items():
        r = stats.ks_2samp(a, b)
        print(f"{name}: D={r.statistic:.6g} p={r.pvalue:.6g} (rust {rust[name]['method']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timings": out, "mismatches": mismatches,
                       "numpy": np.__version__, "scipy": scipy.__version__}, f, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
