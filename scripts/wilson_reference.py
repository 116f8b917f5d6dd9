#!/usr/bin/env python3
"""Reference values for slawatch's Wilson lower confidence bound (src/evaluate/slo.rs).

A one-sided 95% lower bound equals the lower end of a two-sided 90% Wilson interval, which is
what statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.10, method="wilson") gives.
Writes tests/data/wilson_reference.json.   pip install statsmodels
"""
import json
import pathlib

import statsmodels
from statsmodels.stats.proportion import proportion_confint

CASES = [(1, 1), (40, 40), (20, 100), (0, 10), (3, 7), (999, 1000), (1, 200), (34, 170),
         (5, 10), (1, 1000000), (123456, 1000000)]

out = {
    "generator": "statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.10, method='wilson')[0]",
    "statsmodels": statsmodels.__version__,
    "cases": [{"k": k, "n": n, "lower": proportion_confint(k, n, alpha=0.10, method="wilson")[0]}
              for k, n in CASES],
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "wilson_reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {len(CASES)} cases to {path}")
