#!/usr/bin/env python3
"""Generate tests/data/scipy_reference.json: reference vectors for slawatch's
statistics core (src/drift/stats), computed with scipy/numpy.

    pip install numpy scipy
    python3 scripts/scipy_reference.py          # rewrites the JSON
    python3 scripts/scipy_reference.py --check  # fails if the JSON would change

Everything is deterministic (fixed numpy seeds). The Rust test
tests/it/stats_scipy.rs compares every statistic and p-value at 1e-9 relative
(absolute floor 1e-12).

Encoding rules (so that Rust reads back *exactly* the inputs scipy saw):
* Input floats are short decimals (<= 15 significant digits, decimal exponent
  within +-22), which serde_json's default float parser converts exactly.
  Non-finite inputs are the strings "nan", "inf", "-inf".
* Large samples are either stored, or described as
  {"modseq": {"n", "a", "c", "m", "scale", "shift"}} meaning
  x_i = float((i*a + c) % m) / m * scale + shift for i in 0..n,
  evaluated in that order in float64 (bit-identical in numpy and Rust).
* "expected": null means scipy raised or returned NaN; Rust must return its
  "not computable" value (None). "scipy_outcome" says what scipy did.
"""

import argparse
import json
import math
import platform
import sys
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import scipy
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "scipy_reference.json"

PSI_EPSILON = 1e-4
PSI_MIN_THRESHOLD = 0.1


# --------------------------------------------------------------------------
# encoding helpers
# --------------------------------------------------------------------------

def check_exact(v):
    """Assert that the JSON text of input float v parses exactly in serde_json."""
    if not math.isfinite(v):
        return
    d = Decimal(repr(float(v)))
    sign, digits, exp = d.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exp += 1
    assert len(digits) <= 15 and -22 <= exp <= 22, f"input {v!r} is not exactly parseable"


def enc_in(v):
    """Encode an input float."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    check_exact(v)
    return v


def enc_in_list(a):
    return [enc_in(v) for v in np.asarray(a, dtype=float).ravel()]


def enc_out(v):
    """Encode an expected output float (None if not finite)."""
    v = float(v)
    return v if math.isfinite(v) else None


def rnd(a, d=6):
    return np.round(np.asarray(a, dtype=float), d)


def modseq(n, a, c, m, scale=1.0, shift=0.0):
    k = (np.arange(n, dtype=np.int64) * a + c) % m
    x = k.astype(np.float64) / m * scale + shift
    spec = {"modseq": {"n": n, "a": a, "c": c, "m": m, "scale": scale, "shift": shift}}
    for v in (scale, shift):
        check_exact(v)
    return x, spec


def sample_field(x, spec=None):
    return spec if spec is not None else enc_in_list(x)


def outcome(fn):
    """Run fn, returning (value, description) where value is None on error."""
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            val = fn()
        return val, [str(m.message) for m in w]
    except Exception as e:  # noqa: BLE001 - we record whatever scipy raises
        return None, [f"{type(e).__name__}: {e}"]


# --------------------------------------------------------------------------
# KS two-sample
# --------------------------------------------------------------------------

def ks_case(name, x, y, xspec=None, yspec=None):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    res, msgs = outcome(lambda: stats.ks_2samp(x, y, alternative="two-sided", method="auto"))
    case = {"name": f"ks_2samp/{name}", "x": sample_field(x, xspec), "y": sample_field(y, yspec)}
    if res is None or not (np.isfinite(res.statistic) and np.isfinite(res.pvalue)):
        case["expected"] = None
        case["scipy_outcome"] = "; ".join(msgs) if res is None else f"statistic={res.statistic}, pvalue={res.pvalue}"
        return case
    n1, n2 = len(x), len(y)
    switched = any("Switching" in m for m in msgs)
    method = "exact" if max(n1, n2) <= 10000 and not switched else "asymptotic"
    case["expected"] = {
        "statistic": float(res.statistic),
        "pvalue": float(res.pvalue),
        "method": method,
    }
    return case


def ks_cases():
    rng = np.random.default_rng(1001)
    cases = []
    for n in range(1, 11):
        for m in range(1, 11):
            x = rnd(rng.normal(0.0, 1.0, n))
            y = rnd(rng.normal(0.5, 1.0, m))
            cases.append(ks_case(f"small_n{n}_m{m}", x, y))
    cases.append(ks_case("ties_int_n20_m30", rng.integers(0, 5, 20), rng.integers(1, 6, 30)))
    cases.append(ks_case("ties_int_n50_m50", rng.integers(0, 4, 50), rng.integers(0, 4, 50)))
    cases.append(ks_case("ties_across_n7_m9", [1, 2, 2, 3, 3, 3, 4], [2, 2, 3, 3, 4, 4, 5, 5, 5]))
    cases.append(ks_case("ties_rounded_n200_m150", rnd(rng.normal(0, 1, 200), 1), rnd(rng.normal(0.2, 1, 150), 1)))
    cases.append(ks_case("one_distinct_both_same_n15_m12", [3.0] * 15, [3.0] * 12))
    cases.append(ks_case("one_distinct_x_n15_m12", [3.0] * 15, rnd(rng.normal(3, 1, 12))))
    cases.append(ks_case("one_distinct_each_n5_m8", [1.0] * 5, [2.0] * 8))
    cases.append(ks_case("n1_m1_equal", [1.0], [1.0]))
    cases.append(ks_case("n1_m1_different", [0.0], [1.0]))
    same = rnd(rng.normal(0, 1, 25))
    cases.append(ks_case("identical_n25", same, same[::-1]))
    cases.append(ks_case("disjoint_n30_m40", rnd(rng.uniform(0, 1, 30)), rnd(rng.uniform(2, 3, 40))))
    cases.append(ks_case("infinities_n6_m5", [-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf], [np.inf, 0.25, 0.3, 1.0, 3.0]))
    cases.append(ks_case("empty_x", [], [1.0, 2.0]))
    cases.append(ks_case("empty_both", [], []))
    cases.append(ks_case("nan_in_x", [1.0, np.nan, 3.0], [1.0, 2.0]))
    for n, m, shift in [(100, 37, 0.3), (1000, 999, 0.05), (500, 1500, 0.1), (2000, 3000, 0.05), (7, 1000, 0.8),
                        (3000, 2999, 0.0)]:
        cases.append(ks_case(f"unequal_n{n}_m{m}", rnd(rng.normal(0, 1, n)), rnd(rng.normal(shift, 1, m))))

    # Exact branch at the largest sizes (closed-form sequences).
    x, xs = modseq(10000, 7919, 0, 10007)
    y, ys = modseq(10000, 104729, 13, 10009, 1.0, 0.01)
    cases.append(ks_case("exact_modseq_n10000_m10000", x, y, xs, ys))
    y, ys = modseq(9999, 104729, 13, 10009, 1.0, 0.02)
    cases.append(ks_case("exact_modseq_n10000_m9999", x, y, xs, ys))
    y, ys = modseq(9999, 104729, 13, 10009, 0.9, 0.0)
    cases.append(ks_case("exact_modseq_n10000_m9999_scaled", x, y, xs, ys))
    y, ys = modseq(5000, 15485863, 5, 4999, 1.0, -0.005)
    cases.append(ks_case("exact_modseq_n10000_m5000_ties", x, y, xs, ys))

    # Asymptotic branch: max(n1, n2) > 10000; en = round(n1 n2/(n1+n2)) spans
    # every kstwo regime (Ruben-Gambino, DMTW, Pomeranz, smirnov, Pelz-Good).
    x1, x1s = modseq(10001, 7919, 3, 10007)
    y, ys = modseq(10000, 104729, 13, 10009, 1.0, 0.01)
    cases.append(ks_case("asymp_modseq_n10001_m10000", x1, y, x1s, ys))
    y, ys = modseq(10001, 104729, 13, 10009, 1.0, 0.004)
    cases.append(ks_case("asymp_modseq_n10001_m10001", x1, y, x1s, ys))
    for m, shift, scale in [(1, 0.0, 1.0), (2, 0.3, 0.5), (7, 0.05, 1.0), (7, 0.5, 0.4), (60, 0.02, 1.0),
                            (60, 0.3, 1.0), (60, 0.15, 1.0), (7, 0.9, 0.05), (139, 0.01, 1.0), (139, 0.2, 1.0), (300, 0.02, 1.0), (300, 0.15, 1.0),
                            (3000, 0.003, 1.0), (3000, 0.05, 1.0), (3000, 0.2, 0.9)]:
        y, ys = modseq(m, 104729, 17, 10009, scale, shift)
        cases.append(ks_case(f"asymp_modseq_n10001_m{m}_shift{shift}_scale{scale}", x1, y, x1s, ys))
    x2, x2s = modseq(20000, 7919, 1, 10007)
    y, ys = modseq(15000, 104729, 17, 10009, 1.0, 0.002)
    cases.append(ks_case("asymp_modseq_ties_n20000_m15000", x2, y, x2s, ys))
    x3, x3s = modseq(250000, 7919, 1, 250007)
    y, ys = modseq(250003, 104729, 17, 250013, 1.0, 0.0015)
    cases.append(ks_case("asymp_modseq_n250000_m250003_pelzgood", x3, y, x3s, ys))
    # One stored random pair just past the exact/asymptotic boundary.
    cases.append(ks_case("asymp_random_n10001_m10001", rnd(rng.normal(0, 1, 10001), 5),
                         rnd(rng.normal(0.03, 1, 10001), 5)))
    return cases


def ks_asymp_cases():
    """ks_2samp(x, y, method='asymp'): slawatch's `ks: auto` above its work budget."""
    rng = np.random.default_rng(1011)
    cases = []
    for n, m, shift in [(10000, 9500, 0.01), (5000, 3000, 0.05), (4000, 4000, 0.0), (3200, 5000, 0.03)]:
        x = rnd(rng.normal(0, 1, n), 4)
        y = rnd(rng.normal(shift, 1, m), 4)
        res = stats.ks_2samp(x, y, alternative="two-sided", method="asymp")
        cases.append({"name": f"ks_2samp_asymp/n{n}_m{m}_shift{shift}", "x": enc_in_list(x), "y": enc_in_list(y),
                      "expected": {"statistic": float(res.statistic), "pvalue": float(res.pvalue)}})
    return cases


def ks_weighted_cases():
    rng = np.random.default_rng(1002)
    cases = []

    def weighted(name, x, wx, y, wy):
        x, wx, y, wy = (np.asarray(a, dtype=float) for a in (x, wx, y, wy))
        ix = np.argsort(x, kind="stable")
        iy = np.argsort(y, kind="stable")
        cwx = np.concatenate([[0.0], np.cumsum(wx[ix])])
        cwy = np.concatenate([[0.0], np.cumsum(wy[iy])])
        allv = np.concatenate([x, y])
        fx = cwx[np.searchsorted(x[ix], allv, side="right")] / cwx[-1]
        fy = cwy[np.searchsorted(y[iy], allv, side="right")] / cwy[-1]
        d = float(np.max(np.abs(fx - fy)))
        # With unit weights this must be scipy's raw statistic.
        return {"name": f"ks_weighted/{name}", "x": enc_in_list(x), "wx": enc_in_list(wx),
                "y": enc_in_list(y), "wy": enc_in_list(wy), "expected": {"statistic": d}}

    x = rnd(rng.normal(0, 1, 40))
    y = rnd(rng.normal(0.3, 1, 55))
    cases.append(weighted("unit_weights_n40_m55", x, np.ones(40), y, np.ones(55)))
    cases.append(weighted("random_weights_n40_m55", x, rnd(rng.uniform(0, 3, 40), 3), y, rnd(rng.uniform(0, 3, 55), 3)))
    cases.append(weighted("ties_zero_weights", [1, 1, 2, 3, 3], [0, 1, 2, 0, 1], [1, 2, 2, 4], [1, 1, 0, 2]))

    def binned(name, p, q):
        cp = np.cumsum(np.asarray(p, dtype=float))
        cq = np.cumsum(np.asarray(q, dtype=float))
        d = float(np.max(np.abs(cp / cp[-1] - cq / cq[-1])))
        return {"name": f"ks_binned/{name}", "p": enc_in_list(p), "q": enc_in_list(q), "expected": {"statistic": d}}

    cases.append(binned("counts_5", [10, 20, 30, 25, 15], [12, 18, 25, 30, 15]))
    cases.append(binned("with_zero_bins", [0, 5, 0, 5], [3, 0, 4, 3]))
    cases.append(binned("identical", [1, 2, 3], [2, 4, 6]))
    return cases


# --------------------------------------------------------------------------
# Kolmogorov distributions
# --------------------------------------------------------------------------

def short(v):
    return float(f"{v:.12g}")


def kolmogorov_cases():
    kstwo_cases = []
    for n in [1, 2, 3, 4, 5, 7, 10, 20, 50, 100, 139, 140, 141, 200, 500, 1000, 5000, 10000,
              100000, 100001, 250000]:
        xs = [0.0, 0.25 / n, 0.5 / n, 0.75 / n, 1.0 / n, 1.5 / n, 2.0 / n, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3,
              0.45, 0.5, 0.6, 0.8, 1 - 1.0 / n, 1 - 0.5 / n, 1.0]
        xs += [z / math.sqrt(n) for z in (0.2, 0.4, 0.6, 0.8, 0.87, 1.0, 1.2, 1.48, 1.5, 2.0, 3.0, 5.0, 10.0, 19.3)]
        for x in sorted({short(v) for v in xs if 0.0 <= v <= 1.0}):
            kstwo_cases.append({"name": f"kstwo.sf/n{n}_x{x}", "n": n, "x": enc_in(x),
                                "expected": enc_out(stats.kstwo.sf(x, n))})
    big_cases = []
    for x in sorted({short(v) for v in list(np.linspace(0, 4, 81)) + [0.03, 0.0406, 0.041, 0.05, 0.1, 0.819, 0.82,
                                                                         0.821, 5.0, 6.0, 8.0, 20.0, 30.0]}):
        big_cases.append({"name": f"kstwobign.sf/x{x}", "x": enc_in(x), "expected": enc_out(stats.kstwobign.sf(x))})
    smirnov = []
    for n in [1, 2, 3, 5, 10, 11, 20, 50, 100, 1000, 10000, 100000, 1000001]:
        xs = [0.0, 1e-6, 0.5 / n, 1.0 / n, 1.5 / n, 2.5 / n, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1 - 1.0 / n, 1.0]
        xs += [z / math.sqrt(n) for z in (0.3, 0.5, 1.0, 1.5, 2.5, 4.0, 10.0)]
        for x in sorted({short(v) for v in xs if 0.0 <= v <= 1.0}):
            smirnov.append({"name": f"special.smirnov/n{n}_x{x}", "n": n, "x": enc_in(x),
                            "expected": enc_out(special.smirnov(n, x))})
    return kstwo_cases, big_cases, smirnov


# --------------------------------------------------------------------------
# Contingency tables and proportions
# --------------------------------------------------------------------------

def chi2_case(name, table, correction):
    t = np.asarray(table, dtype=float)
    case = {"name": f"chi2_contingency/{name}_correction{correction}", "table": [enc_in_list(r) for r in t],
            "correction": correction}
    # Slawatch drops all-zero columns before testing; so do we here.
    if t.ndim == 2 and t.size:
        t = t[:, np.any(t != 0, axis=0)]
    res, msgs = outcome(lambda: stats.chi2_contingency(t, correction=correction))
    if res is None or not (np.isfinite(res.statistic) and np.isfinite(res.pvalue)):
        case["expected"] = None
        case["scipy_outcome"] = "; ".join(msgs) if res is None else f"statistic={res.statistic}"
    else:
        case["expected"] = {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "dof": int(res.dof)}
    return case


def chi2_cases():
    rng = np.random.default_rng(1003)
    tables = {
        "2x2_basic": [[12, 5], [7, 15]],
        "2x2_small_diff": [[10, 10], [10, 11]],
        "2x2_exact_expected": [[5, 5], [5, 5]],
        "2x2_large": [[120000, 80000], [118500, 81500]],
        "2x2_extreme": [[1000, 0], [0, 1000]],
        "2x3_zero_column": [[10, 0, 20], [15, 0, 5]],
        "2x4_two_zero_columns_to_2x2": [[0, 8, 0, 3], [0, 2, 0, 9]],
        "2x3_one_nonzero_column_dof0": [[0, 5, 0], [0, 7, 0]],
        "2x5_zero_row": [[0, 0, 0, 0, 0], [3, 4, 5, 6, 7]],
        "2x3_weighted_floats": [[10.5, 3.25, 7.75], [8.0, 6.5, 2.25]],
        "3x4_general": [[10, 20, 30, 40], [15, 25, 20, 30], [5, 10, 15, 10]],
        "1x4_single_row": [[1, 2, 3, 4]],
        "2x10_random": rng.integers(0, 200, (2, 10)).tolist(),
        "2x12_random_tiny_p": [rng.integers(50, 500, 12).tolist(), rng.integers(50, 900, 12).tolist()],
        "2x9_sparse": [[0, 1, 0, 2, 0, 0, 3, 1, 0], [1, 0, 0, 0, 2, 0, 1, 0, 4]],
        "empty": [[]],
    }
    cases = []
    for name, t in tables.items():
        for corr in (True, False):
            cases.append(chi2_case(name, t, corr))
    return cases


def chisquare_gof_cases():
    """scipy.stats.chisquare(f_obs, f_exp): Evidently's `chisquare` stattest, with f_exp the
    reference counts scaled to the current total."""
    cases = []
    rng = np.random.default_rng(1012)
    tables = [([30, 50, 20], [300, 520, 180]), ([10, 0, 5], [40, 20, 0]), ([5, 5], [50, 50]),
              ([1, 2, 3, 4], [4, 3, 2, 1]), ([0, 0, 7], [1, 1, 1])]
    for _ in range(12):
        k = int(rng.integers(2, 8))
        p = rng.dirichlet(np.ones(k))
        ref = rng.multinomial(int(rng.integers(50, 1000)), p)
        cur = rng.multinomial(int(rng.integers(20, 600)), p)
        tables.append((cur.tolist(), ref.tolist()))
    for cur, ref in tables:
        cur = np.asarray(cur, dtype=float)
        ref = np.asarray(ref, dtype=float)
        f_exp = ref * (cur.sum() / ref.sum())
        val, msgs = outcome(lambda: stats.chisquare(cur, f_exp))
        exp = None
        if val is not None and np.isfinite(val.pvalue):
            exp = {"statistic": enc_out(val.statistic) if np.isfinite(val.statistic) else "inf",
                   "pvalue": float(val.pvalue)}
        cases.append({"name": f"chisquare/{'_'.join(str(int(v)) for v in cur)}_vs_{'_'.join(str(int(v)) for v in ref)}",
                      "current": cur.tolist(), "reference": ref.tolist(), "expected": exp,
                      "scipy_outcome": "; ".join(msgs)})
    return cases


def chi2_sf_cases():
    cases = []
    for dof in [1, 2, 3, 4, 5, 9, 20, 50, 100, 500, 2000]:
        xs = [0.0, 1e-3, 0.1, 0.5, 1.0, dof / 2, dof - 1, dof, dof + 1, 2 * dof, 3 * dof + 10, 5 * dof + 40,
              10 * dof + 100, 700.0, 1300.0]
        for x in sorted({short(v) for v in xs}):
            cases.append({"name": f"chi2.sf/dof{dof}_x{x}", "dof": dof, "x": enc_in(x),
                          "expected": enc_out(stats.chi2.sf(x, dof))})
    return cases


def prop_ztest_reference(c1, n1, c2, n2):
    """statsmodels.stats.proportion.proportions_ztest([c1, c2], [n1, n2]) formula."""
    count = np.array([c1, c2], dtype=float)
    nobs = np.array([n1, n2], dtype=float)
    with np.errstate(all="ignore"):
        prop = count / nobs
        diff = prop[0] - prop[1] - 0
        p_pooled = np.sum(count) / np.sum(nobs)
        nobs_fact = np.sum(1.0 / nobs)
        var_ = p_pooled * (1 - p_pooled) * nobs_fact
        std_diff = np.sqrt(var_)
        z = diff / std_diff
        p = stats.norm.sf(np.abs(z)) * 2
    return float(z), float(p)


def ztest_cases():
    cases = []
    for c1, n1, c2, n2 in [(45, 500, 30, 480), (30, 480, 45, 500), (5, 10, 5, 10), (0, 100, 3, 100),
                           (1200, 100000, 1000, 100000), (99, 100, 80, 100), (1, 3, 2, 3),
                           (50000, 1000000, 45000, 900000), (0, 50, 0, 70), (50, 50, 70, 70), (3, 0, 1, 5),
                           (30000, 100000, 28000, 100000)]:
        z, p = prop_ztest_reference(c1, n1, c2, n2)
        exp = {"z": z, "pvalue": p} if math.isfinite(z) and math.isfinite(p) else None
        cases.append({"name": f"proportions_ztest/{c1}of{n1}_vs_{c2}of{n2}", "successes1": c1, "n1": n1,
                      "successes2": c2, "n2": n2, "expected": exp})
    return cases


def fisher_cases():
    """scipy.stats.fisher_exact on 2x2 tables [[a, b], [c, d]] (two-sided)."""
    rng = np.random.default_rng(1010)
    tables = [(1, 99, 0, 2400), (0, 100, 24, 2376), (3, 97, 5, 2395), (0, 0, 3, 4), (0, 5, 0, 4),
              (5, 5, 5, 5), (2, 8, 8, 2), (1, 9, 11, 3), (10, 10, 10, 10), (0, 600, 30, 9970),
              (6, 594, 50, 9950), (12, 588, 50, 9950), (0, 1, 1, 0), (7, 3, 3, 7), (30, 70, 45, 55),
              (200, 800, 150, 850), (1, 0, 0, 1), (4, 196, 0, 3000)]
    for _ in range(40):
        n1 = int(rng.integers(1, 700))
        n2 = int(rng.integers(1, 12000))
        p = float(rng.choice([0.005, 0.01, 0.05, 0.2]))
        a = int(rng.binomial(n1, p))
        c = int(rng.binomial(n2, p * float(rng.choice([1.0, 1.0, 2.0, 0.5]))))
        tables.append((a, n1 - a, c, n2 - c))
    cases = []
    for a, b, c, d in tables:
        res = stats.fisher_exact([[a, b], [c, d]])
        odds = float(res.statistic)
        cases.append({"name": f"fisher_exact/{a}_{b}_{c}_{d}", "table": [[a, b], [c, d]],
                      "expected": {"pvalue": float(res.pvalue),
                                   "odds_ratio": None if math.isnan(odds) else ("inf" if math.isinf(odds) else odds)}})
    return cases


# --------------------------------------------------------------------------
# PSI, JS, Hellinger, Wasserstein
# --------------------------------------------------------------------------

def psi_reference(ref, cur):
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return None
    qs = np.arange(1, 10) / 10.0
    edges = np.unique(np.quantile(ref, qs))
    nb = len(edges) + 1
    cr = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=nb)
    cc = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=nb)
    # Cross-check against np.digitize (same convention: bins[i-1] <= x < bins[i]).
    assert np.array_equal(np.searchsorted(edges, cur, side="right"), np.digitize(cur, edges))
    r = np.maximum(cr / len(ref), PSI_EPSILON)
    c = np.maximum(cc / len(cur), PSI_EPSILON)
    psi = np.sum((c - r) * np.log(c / r))
    n, m = len(ref), len(cur)
    eff = n * m / (n + m)
    thr = max(PSI_MIN_THRESHOLD, float(stats.chi2.ppf(0.95, nb - 1)) / eff)
    return {"psi": float(psi), "threshold": float(thr), "bins": int(nb), "edges": [float(e) for e in edges],
            "reference_proportions": [float(v) for v in r], "current_proportions": [float(v) for v in c],
            "effective_n": float(eff)}


def psi_cases():
    rng = np.random.default_rng(1004)
    specs = [
        ("normal_n1000_m1000_no_shift", rng.normal(0, 1, 1000), rng.normal(0, 1, 1000)),
        ("normal_n1000_m1000_shift0.5", rng.normal(0, 1, 1000), rng.normal(0.5, 1, 1000)),
        ("normal_n100_m5000", rng.normal(0, 1, 100), rng.normal(0.1, 1.2, 5000)),
        ("normal_n5000_m50", rng.normal(0, 1, 5000), rng.normal(0, 1, 50)),
        ("ref_n1", [2.5], rng.normal(2.5, 1, 20)),
        ("ref_n5_m7", rng.normal(0, 1, 5), rng.normal(0, 1, 7)),
        ("ties_integer_dedup_edges", rng.integers(0, 4, 300), rng.integers(0, 5, 280)),
        ("constant_reference", [1.0] * 50, rng.normal(1, 0.1, 60)),
        ("current_outside_reference", rng.uniform(0, 1, 400), rng.uniform(2, 3, 300)),
        ("empty_current", rng.normal(0, 1, 10), []),
        ("empty_reference", [], rng.normal(0, 1, 10)),
    ]
    cases = []
    for name, ref, cur in specs:
        ref = rnd(ref)
        cur = rnd(cur)
        cases.append({"name": f"psi/{name}", "reference": enc_in_list(ref), "current": enc_in_list(cur),
                      "expected": psi_reference(ref, cur)})
    chi2_table = [{"df": df, "ppf95": float(stats.chi2.ppf(0.95, df))} for df in range(1, 10)]
    return cases, chi2_table


def js_cases():
    rng = np.random.default_rng(1005)
    cases = []
    pairs = [
        ("basic", [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]),
        ("unnormalised_counts", [10, 20, 30], [30, 20, 10]),
        ("zeros_in_p", [0, 5, 5, 0], [1, 1, 1, 1]),
        ("disjoint_support", [1, 0], [0, 1]),
        ("identical", [3, 1, 4, 1, 5], [3, 1, 4, 1, 5]),
        ("single_category", [7], [2]),
        ("random_20", rng.integers(0, 50, 20), rng.integers(0, 50, 20)),
        ("random_200", rng.integers(0, 1000, 200), rng.integers(0, 1000, 200)),
        ("length_mismatch", [1, 2, 3], [1, 2]),
        ("all_zero_p", [0, 0, 0], [1, 2, 3]),
    ]
    for name, p, q in pairs:
        p = np.asarray(p, dtype=float)
        q = np.asarray(q, dtype=float)
        if len(p) != len(q):
            val, msgs = None, ["length mismatch: scipy broadcasting error"]
        else:
            with np.errstate(all="ignore"):
                val = float(jensenshannon(p, q))
            msgs = []
        case = {"name": f"jensenshannon/{name}", "p": enc_in_list(p), "q": enc_in_list(q),
                "expected": enc_out(val) if val is not None else None}
        if case["expected"] is None:
            case["scipy_outcome"] = "; ".join(msgs) if msgs else f"returned {val}"
        hell = None
        if len(p) == len(q) and p.sum() > 0 and q.sum() > 0:
            pn, qn = p / np.sum(p), q / np.sum(q)
            hell = float(np.sqrt(0.5 * np.sum((np.sqrt(pn) - np.sqrt(qn)) ** 2)))
        case["expected_hellinger"] = hell
        cases.append(case)
    return cases


def shared_histogram_reference(ref, cur, bins):
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    lo = min(ref.min(), cur.min())
    hi = max(ref.max(), cur.max())
    edges = np.linspace(lo, hi, bins + 1)
    interior = edges[1:-1]
    cr = np.bincount(np.searchsorted(interior, ref, side="right"), minlength=bins).astype(float)
    cc = np.bincount(np.searchsorted(interior, cur, side="right"), minlength=bins).astype(float)
    if hi > lo:
        # Same counts as np.histogram on the same edges.
        assert np.array_equal(cr, np.histogram(ref, bins=edges)[0])
        assert np.array_equal(cc, np.histogram(cur, bins=edges)[0])
    return edges, cr, cc


def js_binned_cases():
    rng = np.random.default_rng(1006)
    cases = []
    for name, ref, cur, bins in [
        ("normal_n500_m400_b10", rng.normal(0, 1, 500), rng.normal(0.3, 1, 400), 10),
        ("normal_n2000_m2000_b30", rng.normal(0, 1, 2000), rng.normal(0, 1.3, 2000), 30),
        ("uniform_n50_m60_b1", rng.uniform(0, 1, 50), rng.uniform(0, 1, 60), 1),
        ("ties_on_edges_b4", [0, 1, 2, 3, 4, 4, 4], [0, 0, 2, 2, 4], 4),
        ("all_identical_b5", [2.0] * 5, [2.0] * 3, 5),
    ]:
        ref, cur = rnd(ref), rnd(cur)
        edges, cr, cc = shared_histogram_reference(ref, cur, bins)
        cases.append({"name": f"jensenshannon_binned/{name}", "reference": enc_in_list(ref),
                      "current": enc_in_list(cur), "bins": bins,
                      "expected": {"edges": [float(e) for e in edges], "reference_counts": cr.tolist(),
                                   "current_counts": cc.tolist(), "distance": float(jensenshannon(cr, cc))}})
    return cases


def wasserstein_cases():
    rng = np.random.default_rng(1007)
    cases = []

    def case(name, u, v, uw=None, vw=None, uspec=None, vspec=None):
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        val, msgs = outcome(lambda: stats.wasserstein_distance(u, v, uw, vw))
        c = {"name": f"wasserstein_distance/{name}", "u": sample_field(u, uspec), "v": sample_field(v, vspec)}
        if uw is not None:
            c["u_weights"] = enc_in_list(uw)
            c["v_weights"] = enc_in_list(vw)
        if val is None or not np.isfinite(val):
            c["expected"] = None
            c["scipy_outcome"] = "; ".join(msgs) if val is None else f"returned {val}"
        else:
            c["expected"] = float(val)
        if uw is None:
            sd = float(np.std(u)) if len(u) else float("nan")
            c["expected_normalized"] = float(val) / sd if (val is not None and np.isfinite(val) and sd > 0) else None
            c["expected_std_u"] = enc_out(sd) if len(u) else None
        return c

    cases.append(case("basic_n3_m3", [0, 1, 3], [5, 6, 8]))
    cases.append(case("ties_n8_m6", [1, 1, 2, 2, 2, 3, 5, 5], [2, 2, 3, 3, 4, 4]))
    cases.append(case("single_values", [1.5], [4.0]))
    cases.append(case("normal_n500_m300", rnd(rng.normal(0, 1, 500)), rnd(rng.normal(0.4, 1.5, 300))))
    cases.append(case("constant_reference_std0", [2.0] * 10, rnd(rng.normal(2, 1, 12))))
    cases.append(case("empty_u", [], [1.0, 2.0]))
    cases.append(case("weighted_basic", [0, 1, 3], [5, 6, 8], [1, 1, 1], [1, 1, 1]))
    cases.append(case("weighted_random", rnd(rng.normal(0, 1, 40)), rnd(rng.normal(0.2, 1, 30)),
                      rnd(rng.uniform(0, 2, 40), 3), rnd(rng.uniform(0, 2, 30), 3)))
    cases.append(case("weighted_zero_weights_ties", [3.4, 3.9, 7.5, 7.8, 7.8], [4.5, 1.4, 1.4],
                      [1.4, 0.9, 0.0, 4.0, 1.0], [3.2, 3.5, 0.0]))
    cases.append(case("weighted_negative_weight", [1, 2], [1, 2], [1, -1], [1, 1]))
    u, us = modseq(10000, 7919, 0, 10007)
    v, vs = modseq(10001, 104729, 13, 10009, 1.1, 0.01)
    cases.append(case("large_modseq_n10000_m10001", u, v, uspec=us, vspec=vs))
    return cases


# --------------------------------------------------------------------------
# Benjamini-Hochberg, descriptive
# --------------------------------------------------------------------------

def bh_rejections(ps, alpha):
    m = len(ps)
    s = np.sort(ps)
    k = 0
    for i in range(m, 0, -1):
        if s[i - 1] <= (i / m) * alpha:
            k = i
            break
    if k == 0:
        return [False] * m
    cutoff = s[k - 1]
    return [bool(p <= cutoff) for p in ps]


def bh_cases():
    rng = np.random.default_rng(1008)
    inputs = [
        ("textbook_4", [0.01, 0.04, 0.03, 0.005]),
        ("single", [0.3]),
        ("empty", []),
        ("ties", [0.01, 0.01, 0.02, 0.02, 0.5, 0.01]),
        ("with_zero_and_one", [0.0, 1.0, 0.2, 0.04, 1e-12]),
        ("boundary_equal_k_over_m_alpha", [0.0125, 0.025, 0.0375, 0.05]),
        ("uniform_50", rnd(rng.uniform(0, 1, 50), 10)),
        ("mixed_200", rnd(np.concatenate([rng.uniform(0, 0.001, 20), rng.uniform(0, 1, 180)]), 12)),
        ("invalid_above_one", [0.2, 1.5]),
        ("invalid_nan", [0.2, np.nan]),
    ]
    cases = []
    for name, ps in inputs:
        ps = np.asarray(ps, dtype=float)
        val, msgs = outcome(lambda: stats.false_discovery_control(ps, method="bh"))
        c = {"name": f"false_discovery_control/{name}", "ps": enc_in_list(ps)}
        if val is None or not np.all(np.isfinite(val)):
            c["expected"] = None
            c["scipy_outcome"] = "; ".join(msgs)
        else:
            c["expected"] = {"adjusted": [float(v) for v in np.atleast_1d(val)],
                             "reject_0.05": bh_rejections(ps, 0.05), "reject_0.1": bh_rejections(ps, 0.1)}
        cases.append(c)
    return cases


def descriptive_cases():
    rng = np.random.default_rng(1009)
    qs = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
    cases = []
    for name, x in [
        ("n1", [4.2]),
        ("n2", [1.0, 2.0]),
        ("n7_ties", [3, 1, 2, 3, 3, 0, 1]),
        ("normal_n10", rnd(rng.normal(0, 1, 10))),
        ("normal_n1000", rnd(rng.normal(5, 2, 1000))),
        ("lognormal_n999", rnd(rng.lognormal(0, 1, 999))),
        ("large_offset_n300", rnd(rng.normal(1e6, 1, 300), 4)),
        ("empty", []),
    ]:
        x = np.asarray(x, dtype=float)
        c = {"name": f"numpy_descriptive/{name}", "x": enc_in_list(x), "q": qs}
        if len(x) == 0:
            c["expected"] = None
            c["scipy_outcome"] = "np.mean/np.std return nan, np.quantile/np.median raise or return nan"
        else:
            c["expected"] = {"mean": float(np.mean(x)), "std": float(np.std(x)), "median": float(np.median(x)),
                             "quantiles": [float(np.quantile(x, q)) for q in qs]}
        cases.append(c)
    return cases


def build():
    kstwo_c, kstwobign_c, smirnov_c = kolmogorov_cases()
    psi_c, chi2_table = psi_cases()
    doc = {
        "meta": {
            "generator": "scripts/scipy_reference.py",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "psi_epsilon": PSI_EPSILON,
            "psi_min_threshold": PSI_MIN_THRESHOLD,
            "tolerance": {"rel": 1e-9, "abs": 1e-12},
        },
        "ks_2samp": ks_cases(),
        "ks_asymp": ks_asymp_cases(),
        "ks_weighted": ks_weighted_cases(),
        "kstwo_sf": kstwo_c,
        "kstwobign_sf": kstwobign_c,
        "smirnov": smirnov_c,
        "chi2_contingency": chi2_cases(),
        "chi2_sf": chi2_sf_cases(),
        "chisquare_gof": chisquare_gof_cases(),
        "proportions_ztest": ztest_cases(),
        "fisher_exact": fisher_cases(),
        "psi": psi_c,
        "chi2_ppf95": chi2_table,
        "jensenshannon": js_cases(),
        "jensenshannon_binned": js_binned_cases(),
        "wasserstein": wasserstein_cases(),
        "bh": bh_cases(),
        "descriptive": descriptive_cases(),
    }
    # One case per line keeps diffs of the committed file readable.
    def dump(v):
        return json.dumps(v, separators=(",", ":"), allow_nan=False)

    parts = []
    for key, value in doc.items():
        if isinstance(value, list):
            body = ",\n".join("  " + dump(c) for c in value)
            parts.append(f"{dump(key)}:[\n{body}\n]")
        else:
            parts.append(f"{dump(key)}:{dump(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    text = build()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            sys.exit(f"{args.out} is out of date; rerun scripts/scipy_reference.py")
        print(f"{args.out} is up to date")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    n = sum(len(v) for k, v in json.loads(text).items() if isinstance(v, list))
    print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB, {n} cases, scipy {scipy.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
