//! Two-sample Kolmogorov–Smirnov test reproducing
//! `scipy.stats.ks_2samp(x, y, alternative='two-sided', method='auto')`
//! (scipy 1.17 `_stats_py.py`):
//!
//! * `D` is evaluated on the pooled sample with `searchsorted(..., 'right')`
//!   semantics, so ties are handled exactly like scipy;
//! * `auto` means exact when `max(n1, n2) <= 10_000`: Hodges' lattice-path
//!   counts (`_compute_prob_outside_square` for `n1 == n2`, the pythran
//!   `_compute_outer_prob_inside_method` otherwise). In that branch scipy
//!   reports the statistic rounded to the lattice, `D = h / lcm(n1, n2)`;
//! * otherwise (or if the exact count fails numerically) the p-value is
//!   `kstwo.sf(D, round(n1·n2/(n1+n2)))`.
//!
//! Also: weighted and pre-binned KS *statistics* (no p-value; there is no
//! scipy counterpart with a p-value for weighted data).
//!
//! Pure functions: no I/O, no wall clock, no panics; `None` = not computable.

use serde::{Deserialize, Serialize};

use super::SortedSample;
use super::kolmogorov::kstwo_sf;

/// Largest sample size for which `method='auto'` uses the exact distribution.
pub const KS_EXACT_MAX_N: usize = 10_000;

/// Work budget of the exact distribution under [`KsPolicy::Budget`]: the lattice-path count
/// costs O(n1·n2), so above this product (e.g. a 10,000-row baseline against a 5,000-row
/// window, 5·10⁷) the asymptotic `kstwo` distribution is used, as scipy's `method='asymp'`.
/// At such sizes the two p-values differ in the third significant digit at most.
pub const KS_EXACT_MAX_WORK: u64 = 10_000_000;

/// Which p-value computation the drift engine asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsPolicy {
    /// slawatch's default (`ks: auto`): exact while `n1·n2 ≤` [`KS_EXACT_MAX_WORK`] (and
    /// scipy's own limit holds), asymptotic (scipy `method='asymp'`) above.
    #[default]
    Budget,
    /// `ks: exact` in a spec: scipy's `method='auto'` whatever the cost ([`ks_2samp_sorted`]).
    Scipy,
}

/// How the KS p-value was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact lattice-path probability (scipy `method='exact'`).
    Exact,
    /// `kstwo` distribution with the effective size `round(n1·n2/(n1+n2))`.
    Asymptotic,
}

/// Result of a two-sided two-sample KS test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// `D = sup |F1 - F2|` (lattice-rounded `h/lcm` in the exact branch, as scipy).
    pub statistic: f64,
    /// Two-sided p-value, clipped to `[0, 1]`.
    pub p_value: f64,
    /// Which computation produced `p_value`.
    pub method: KsMethod,
}

/// Two-sample two-sided KS test on unsorted data (sorts copies).
///
/// `None` if either sample is empty or contains NaN (scipy raises / returns NaN).
/// Infinite values are ordinary, ordered values.
pub fn ks_2samp(x: &[f64], y: &[f64]) -> Option<KsResult> {
    ks_2samp_sorted(&SortedSample::new(x)?, &SortedSample::new(y)?)
}

/// Two-sample two-sided KS test on pre-sorted samples (no allocation except
/// the bounded work buffer of the exact unequal-size recursion).
pub fn ks_2samp_sorted(x: &SortedSample, y: &SortedSample) -> Option<KsResult> {
    ks_2samp_policy(x, y, KsPolicy::Scipy)
}

/// [`ks_2samp_sorted`] under a [`KsPolicy`]: with [`KsPolicy::Budget`] and `n1·n2` above
/// [`KS_EXACT_MAX_WORK`], scipy's `ks_2samp(x, y, method='asymp')` (unrounded `D`,
/// `kstwo.sf(D, round(n1·n2/(n1+n2)))`).
pub fn ks_2samp_policy(x: &SortedSample, y: &SortedSample, policy: KsPolicy) -> Option<KsResult> {
    let d = ks_statistic_sorted(x, y)?;
    let (n1, n2) = (x.len() as u64, y.len() as u64);
    let mut d = d;
    let within_budget = policy == KsPolicy::Scipy || n1.saturating_mul(n2) <= KS_EXACT_MAX_WORK;
    let mut method = if n1.max(n2) as usize <= KS_EXACT_MAX_N && within_budget {
        KsMethod::Exact
    } else {
        KsMethod::Asymptotic
    };
    let mut prob = f64::NAN;
    if method == KsMethod::Exact {
        let (ok, d_lattice, p) = attempt_exact(n1, n2, d);
        // scipy keeps the lattice-rounded D even when it falls back.
        d = d_lattice;
        if ok {
            prob = p;
        } else {
            method = KsMethod::Asymptotic;
        }
    }
    if method == KsMethod::Asymptotic {
        let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
        let en = m * n / (m + n);
        // scipy: kstwo.sf(D, np.round(en)); en >= 0.5, so None only for n1 = n2 = 1.
        prob = kstwo_sf(en.round_ties_even() as u64, d).unwrap_or(f64::NAN);
    }
    if prob.is_nan() {
        return None;
    }
    Some(KsResult {
        statistic: d,
        p_value: prob.clamp(0.0, 1.0),
        method,
    })
}

/// The raw two-sided statistic `max(max(F1-F2), clip(-min(F1-F2), 0, 1))`
/// exactly as scipy evaluates it on the pooled sample (before lattice rounding).
pub fn ks_statistic_sorted(x: &SortedSample, y: &SortedSample) -> Option<f64> {
    let (a, b) = (x.as_slice(), y.as_slice());
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut max_s = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    while i < n1 || j < n2 {
        let v = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < n1 && a[i] <= v {
            i += 1;
        }
        while j < n2 && b[j] <= v {
            j += 1;
        }
        // Same float operations as scipy: searchsorted / n1 - searchsorted / n2.
        let diff = i as f64 / n1f - j as f64 / n2f;
        max_s = max_s.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    Some(if min_s > max_s { min_s } else { max_s })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// scipy `_attempt_exact_2kssamp` (two-sided): `(success, lattice D, p)`.
fn attempt_exact(n1: u64, n2: u64, d: f64) -> (bool, f64, f64) {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as i64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return (true, d, 1.0);
    }
    let prob = if n1 == n2 {
        prob_outside_square(n1 as i64, h)
    } else {
        outer_prob_inside_method(n1 as i64, n2 as i64, g as i64, h)
    };
    // scipy treats overflow/invalid FP errors and out-of-range results as failure.
    if !(0.0..=1.0).contains(&prob) {
        return (false, d, prob);
    }
    (true, d, prob)
}

/// `P(D_{n,n} >= h/n)` by the alternating binomial sum in Horner form
/// (scipy `_compute_prob_outside_square`).
fn prob_outside_square(n: i64, h: i64) -> f64 {
    let mut p = 0.0;
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// `floor(a / b)` for `b > 0`.
#[inline]
fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

/// `ceil(a / b)` for `b > 0`.
#[inline]
fn ceil_div(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

/// Band `[minj, maxj)` of rows inside `|x/m - y/n| < h/lcm` in column `i`: scipy's
/// `floor((ng*i - h) / mg) + 1` and `ceil((ng*i + h) / mg)` in float arithmetic, here in
/// integers. They agree: for integers `|a| < 2^53` and `b ≥ 1`, a quotient that is not an
/// integer is at least `1/b` from every integer, while the float quotient is within
/// `|a/b|·2^-53 < 1/b` of it, so floor and ceil see the same side of every integer (the exact
/// branch has `lcm ≤ 10⁸`, far below).
#[inline]
fn band(i: i64, n: i64, mg: i64, ng: i64, h: i64) -> (i64, i64) {
    if i == 0 {
        return (0, ceil_div(h, mg).min(n + 1));
    }
    let minj = (floor_div(ng * i - h, mg) + 1).clamp(0, n);
    let maxj = ceil_div(ng * i + h, mg).min(n + 1);
    (minj, maxj)
}

/// The bands of columns 1, 2, 3, … in turn, equal to [`band`]'s: each numerator grows by `ng`
/// a column, so its quotient and remainder by `mg` are carried along instead of divided again
/// (two integer divisions a column were a third of a narrow band's work).
struct Bands {
    n: i64,
    mg: i64,
    /// `ng / mg` and `ng % mg`.
    step: (i64, i64),
    /// `ng·i - h` and `ng·i + h` as (quotient, remainder in `[0, mg)`) by `mg`.
    lower: (i64, i64),
    upper: (i64, i64),
}

impl Bands {
    /// Positioned at column 1.
    fn new(n: i64, mg: i64, ng: i64, h: i64) -> Bands {
        let split = |a: i64| (a.div_euclid(mg), a.rem_euclid(mg));
        Bands {
            n,
            mg,
            step: (ng / mg, ng % mg),
            lower: split(ng - h),
            upper: split(ng + h),
        }
    }

    /// The current column's band `[minj, maxj)`; moves to the next column.
    #[inline]
    fn next_band(&mut self) -> (i64, i64) {
        let minj = (self.lower.0 + 1).clamp(0, self.n);
        let maxj = (self.upper.0 + i64::from(self.upper.1 != 0)).min(self.n + 1);
        for (q, r) in [&mut self.lower, &mut self.upper] {
            *q += self.step.0;
            *r += self.step.1;
            if *r >= self.mg {
                *r -= self.mg;
                *q += 1;
            }
        }
        (minj, maxj)
    }
}

/// Columns advanced together by [`outer_prob_inside_method`].
const LANES: usize = 8;

/// Proportion of lattice paths from (0,0) to (m,n) leaving the band
/// `|x/m - y/n| < h/lcm` (scipy pythran `_compute_outer_prob_inside_method`,
/// Hodges 1958 with Viehmann's 1-p recursion):
/// `A(i,j) = (A(i-1,j)·i + A(i,j-1)·j) / (i+j)` inside the band, 1 above it.
///
/// Every cell is computed with exactly scipy's operations, but [`LANES`]
/// columns are swept together as a systolic array: lane `k` holds column
/// `i + k` and is one row behind lane `k - 1`, so the left neighbour of its
/// cell is the value lane `k - 1` computed in the previous step, still in a
/// register. The recursion is a serial chain through a division; advancing
/// independent chains with the same operations lets the compiler use vector
/// divisions, with bit-identical results.
fn outer_prob_inside_method(m: i64, n: i64, g: i64, h: i64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    // scipy returns 1.0 as soon as a column's band is empty.
    let mut bands = Bands::new(n, mg, ng, h);
    if (1..=m).any(|_| {
        let (lo, hi) = bands.next_band();
        hi <= lo
    }) {
        return 1.0;
    }
    // The previous block's last column and the column being produced, by absolute row.
    let len = (n + 2) as usize;
    let (_, maxj0) = band(0, n, mg, ng, h);
    let mut prev = vec![1.0f64; len];
    for e in prev.iter_mut().take(maxj0.max(0) as usize) {
        *e = 0.0;
    }
    let mut next = vec![1.0f64; len];
    let mut prev_maxj = maxj0;
    let mut bands = Bands::new(n, mg, ng, h);
    let mut i = 1;
    while i <= m {
        let kk = LANES.min((m - i + 1) as usize);
        // Per lane, as floats (exact: all are integers below 2^53): band [lo, hi) of its
        // column, the band top of its left column, and the column index.
        let mut lo = [f64::INFINITY; LANES];
        let mut hi = [f64::NEG_INFINITY; LANES];
        let mut col = [0.0f64; LANES];
        let mut val = [0.0f64; LANES];
        let mut left_hi = [0.0f64; LANES];
        let mut s_end = 0;
        let mut lo0 = 0;
        for k in 0..kk {
            let (l, u) = bands.next_band();
            if k == 0 {
                lo0 = l;
            }
            s_end = s_end.max(u - 1 + k as i64);
            (lo[k], hi[k]) = (l as f64, u as f64);
            col[k] = (i + k as i64) as f64;
            val[k] = if l == 0 { 0.0 } else { 1.0 };
        }
        left_hi[0] = prev_maxj as f64;
        left_hi[1..].copy_from_slice(&hi[..LANES - 1]);
        let last = kk - 1;
        for s in lo0..=s_end {
            let sf = s as f64;
            // Lane 0's left neighbour is in the previous block's last column.
            let left0 = if s < prev_maxj { prev[s as usize] } else { 1.0 };
            let old = val;
            for k in 0..LANES {
                let j = sf - k as f64;
                let left_in = if k == 0 { left0 } else { old[k - 1] };
                // Rows at or above the left column's band top are outside: 1.
                let left = if j >= left_hi[k] { 1.0 } else { left_in };
                let v = (left * col[k] + old[k] * j) / (col[k] + j);
                val[k] = if j >= lo[k] && j < hi[k] { v } else { old[k] };
            }
            let j_last = s - last as i64;
            if j_last as f64 >= lo[last] && (j_last as f64) < hi[last] {
                next[j_last as usize] = val[last];
            }
        }
        prev_maxj = hi[last] as i64;
        std::mem::swap(&mut prev, &mut next);
        i += kk as i64;
    }
    let (_, maxj) = band(m, n, mg, ng, h);
    prev[(maxj - 1) as usize]
}

/// Sort `(value, weight)` pairs by value (stable) and return sorted values and
/// the running weight sums `[0, w1, w1+w2, ...]` (numpy `cumsum`, sequential).
pub(crate) fn sorted_cumweights(values: &[f64], weights: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    if values.is_empty()
        || values.len() != weights.len()
        || values.iter().any(|v| v.is_nan())
        || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
    {
        return None;
    }
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let sorted: Vec<f64> = idx.iter().map(|&i| values[i]).collect();
    let mut cum = Vec::with_capacity(values.len() + 1);
    cum.push(0.0);
    let mut acc = 0.0;
    for &i in &idx {
        acc += weights[i];
        cum.push(acc);
    }
    if !(acc > 0.0 && acc.is_finite()) {
        return None;
    }
    Some((sorted, cum))
}

/// Walk the pooled distinct values of two weighted samples, calling
/// `f(value, F_u(value), F_v(value))` with the weighted ECDFs (`<=` semantics).
pub(crate) fn walk_weighted_ecdfs(
    u: (&[f64], &[f64]),
    v: (&[f64], &[f64]),
    mut f: impl FnMut(f64, f64, f64),
) {
    let ((us, ucw), (vs, vcw)) = (u, v);
    let (tu, tv) = (ucw[ucw.len() - 1], vcw[vcw.len() - 1]);
    let (mut i, mut j) = (0usize, 0usize);
    while i < us.len() || j < vs.len() {
        let x = match (us.get(i), vs.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < us.len() && us[i] <= x {
            i += 1;
        }
        while j < vs.len() && vs[j] <= x {
            j += 1;
        }
        f(x, ucw[i] / tu, vcw[j] / tv);
    }
}

/// KS statistic `sup |F_x - F_y|` between two *weighted* samples
/// (weighted ECDFs, `<=` semantics, weights normalised to their totals).
///
/// `None` if a sample is empty, lengths differ, a value is NaN, a weight is
/// negative/non-finite, or a weight total is not positive.
pub fn ks_statistic_weighted(x: &[f64], wx: &[f64], y: &[f64], wy: &[f64]) -> Option<f64> {
    let (xs, xcw) = sorted_cumweights(x, wx)?;
    let (ys, ycw) = sorted_cumweights(y, wy)?;
    let mut d: f64 = 0.0;
    walk_weighted_ecdfs((&xs, &xcw), (&ys, &ycw), |_, fx, fy| {
        d = d.max((fx - fy).abs());
    });
    Some(d)
}

/// KS statistic between two histograms over the same ordered bins:
/// `max_k |cumsum(p)_k / sum(p) - cumsum(q)_k / sum(q)|` (sums sequential, as
/// `np.cumsum`). `None` if lengths differ, empty, negative/NaN counts, or a zero total.
pub fn ks_statistic_binned(p: &[f64], q: &[f64]) -> Option<f64> {
    if p.is_empty() || p.len() != q.len() {
        return None;
    }
    let bad = |c: &f64| !(c.is_finite() && *c >= 0.0);
    if p.iter().any(bad) || q.iter().any(bad) {
        return None;
    }
    let tp: f64 = p.iter().fold(0.0, |a, b| a + b);
    let tq: f64 = q.iter().fold(0.0, |a, b| a + b);
    if tp <= 0.0 || tq <= 0.0 {
        return None;
    }
    let (mut cp, mut cq, mut d) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in p.iter().zip(q) {
        cp += a;
        cq += b;
        d = d.max((cp / tp - cq / tq).abs());
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_zero_statistic() {
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.method, KsMethod::Exact);
    }

    #[test]
    fn empty_or_nan_is_not_computable() {
        assert!(ks_2samp(&[], &[1.0]).is_none());
        assert!(ks_2samp(&[f64::NAN], &[1.0]).is_none());
    }

    /// Straight port of scipy's in-place recursion, the oracle for the
    /// wavefront version.
    fn outer_prob_inside_reference(m: i64, n: i64, g: i64, h: i64) -> f64 {
        let (m, n) = if m < n { (n, m) } else { (m, n) };
        let (mg, ng) = (m / g, n / g);
        let mut minj: i64 = 0;
        let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
        let mut curlen = maxj - minj;
        let len_a = (2 * maxj + 2).min(n + 1) as usize;
        let mut a = vec![1.0f64; len_a];
        for e in a.iter_mut().take(maxj as usize) {
            *e = 0.0;
        }
        for i in 1..=m {
            let (lastminj, lastlen) = (minj, curlen);
            minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1)
                .max(0)
                .min(n);
            maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
            if maxj <= minj {
                return 1.0;
            }
            let mut val = if minj == 0 { 0.0 } else { 1.0 };
            for jj in 0..(maxj - minj) {
                let j = jj + minj;
                val = (a[(jj + minj - lastminj) as usize] * i as f64 + val * j as f64)
                    / (i + j) as f64;
                a[jj as usize] = val;
            }
            curlen = maxj - minj;
            if lastlen > curlen {
                for e in &mut a[(maxj - minj) as usize..(maxj - minj + lastlen - curlen) as usize] {
                    *e = 1.0;
                }
            }
        }
        a[(maxj - minj - 1) as usize]
    }

    #[test]
    fn wavefront_is_bit_identical_to_scipy_recursion() {
        for (m, n) in [
            (1i64, 2i64),
            (3, 5),
            (7, 3),
            (10, 9),
            (12, 18),
            (37, 100),
            (64, 48),
            (101, 13),
            (250, 249),
        ] {
            let g = gcd(m as u64, n as u64) as i64;
            let lcm = m / g * n;
            // Every h for small lattices, ~300 spread values for large ones.
            for h in (1..=lcm).step_by((lcm as usize / 300).max(1)) {
                let a = outer_prob_inside_method(m, n, g, h);
                let b = outer_prob_inside_reference(m, n, g, h);
                assert_eq!(a.to_bits(), b.to_bits(), "m={m} n={n} h={h}: {a} vs {b}");
            }
        }
    }

    /// scipy's band in float arithmetic, as `_compute_outer_prob_inside_method` computes it.
    fn band_float(i: i64, n: i64, mg: i64, ng: i64, h: i64) -> (i64, i64) {
        if i == 0 {
            return (0, ((h as f64 / mg as f64).ceil() as i64).min(n + 1));
        }
        let minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1).clamp(0, n);
        let maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
        (minj, maxj)
    }

    #[test]
    fn integer_bands_equal_scipy_float_bands() {
        // Sizes up to scipy's exact limit (lcm up to 10^8), h across the whole range, every
        // column of the lattice.
        for (m, n) in [
            (2i64, 1i64),
            (10, 9),
            (37, 100),
            (250, 249),
            (2_400, 200),
            (9_999, 10_000),
            (10_000, 5_000),
            (10_000, 7_919),
        ] {
            let (m, n) = if m < n { (n, m) } else { (m, n) };
            let g = gcd(m as u64, n as u64) as i64;
            let (mg, ng) = (m / g, n / g);
            let lcm = mg * n;
            for h in (1..=lcm)
                .step_by((lcm as usize / 97).max(1))
                .chain([lcm - 1, lcm])
            {
                let mut bands = Bands::new(n, mg, ng, h);
                for i in 0..=m {
                    let want = band_float(i, n, mg, ng, h);
                    assert_eq!(band(i, n, mg, ng, h), want, "m={m} n={n} h={h} i={i}");
                    if i > 0 {
                        assert_eq!(bands.next_band(), want, "m={m} n={n} h={h} i={i}");
                    }
                }
            }
        }
    }

    #[test]
    fn square_and_band_methods_agree_on_equal_sizes() {
        // Both lattice algorithms compute the same probability for n1 == n2.
        for n in [3i64, 7, 20] {
            for h in 1..=n {
                let a = prob_outside_square(n, h);
                let b = outer_prob_inside_method(n, n, n, h);
                assert!(
                    (a - b).abs() <= 1e-12 * a.max(1e-300),
                    "n={n} h={h}: {a} vs {b}"
                );
            }
        }
    }
}
