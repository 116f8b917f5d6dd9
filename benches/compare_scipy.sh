#!/usr/bin/env bash
# Rust vs scipy on identical inputs, measured in the same run:
#   1. `cargo bench --bench drift` on the single-statistic benches (KS, χ², PSI, BH); it writes
#      its inputs (and its answers) to target/bench-data/drift-input.json first;
#   2. benches/scipy_ks.py times scipy/numpy on that file (and checks the answers match);
#   3. prints Rust time / scipy time and the speedup per call.
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for the python command only (they may be set
# on the bench machine and slow numpy down).
#
#   benches/compare_scipy.sh [criterion filter]     (default 'ks/|chi2/|psi/|bh/')
set -euo pipefail
cd "$(dirname "$0")/.."
FILTER="${1:-ks/|chi2/|psi/|bh/}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/bench-data/scipy-timings.json"
mkdir -p "$TARGET/bench-data"

echo "== cargo bench --bench drift -- '$FILTER'"
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo bench --bench drift -- "$FILTER" 2>&1 \
    | grep -E '^[a-z0-9_]+/|time:|change:|Found' || true

echo "== python3 benches/scipy_ks.py (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset)"
status=0
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benches/scipy_ks.py --json "$OUT" || status=$?

echo "== Rust / scipy"
python3 - "$TARGET/criterion" "$OUT" <<'PY'
import json, os, statistics, sys
crit, scipy_file = sys.argv[1], sys.argv[2]
py = json.load(open(scipy_file))["timings"]
def rust(key):
    d = os.path.join(crit, *key.split("/"), "new")
    s = json.load(open(os.path.join(d, "sample.json")))
    per_iter = [t / i for t, i in zip(s["times"], s["iters"])]  # ns per call, per sample
    med = json.load(open(os.path.join(d, "estimates.json")))["median"]["point_estimate"]
    return min(per_iter) / 1e9, med / 1e9
fmt = lambda s: f"{s * 1e6:.1f}"
print("| call | Rust best µs | Rust median µs | scipy best µs | scipy median µs | Rust / scipy (best) | speedup (best) | speedup (median) |")
print("|---|---|---|---|---|---|---|---|")
for key, t in py.items():
    try:
        rb, rm = rust(key)
    except FileNotFoundError:
        continue
    print(f"| {t['label']} | {fmt(rb)} | {fmt(rm)} | {fmt(t['best_s'])} | {fmt(t['median_s'])} "
          f"| {rb / t['best_s']:.3f} | {t['best_s'] / rb:.1f}× | {t['median_s'] / rm:.1f}× |")
PY
exit $status
