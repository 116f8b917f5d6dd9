//! Descriptive statistics with numpy's exact rounding behaviour: numpy's
//! pairwise summation, `np.mean`, `np.std` (ddof = 0), `np.quantile`
//! (default "linear" method, Hyndman & Fan type 7) and `np.median`.
//!
//! Pure functions: no I/O, no wall clock, no panics. `None` = not computable
//! (empty input, a NaN anywhere, or a NaN result such as `inf - inf`).

use super::SortedSample;

/// numpy's unrolled block size for pairwise summation (`PW_BLOCKSIZE`).
const PW_BLOCKSIZE: usize = 128;

/// Sum of `f(i)` for `i in start..start + n` in numpy's pairwise order
/// (`numpy/_core/src/umath/loops_utils.h.src`), so that sums are
/// bit-identical to `np.sum` over the materialised float64 array.
pub(crate) fn pairwise_sum_indexed(start: usize, n: usize, f: &impl Fn(usize) -> f64) -> f64 {
    if n < 8 {
        let mut res = 0.0;
        for i in start..start + n {
            res += f(i);
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [0.0f64; 8];
        for (j, slot) in r.iter_mut().enumerate() {
            *slot = f(start + j);
        }
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, slot) in r.iter_mut().enumerate() {
                *slot += f(start + i + j);
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for k in whole..n {
            res += f(start + k);
        }
        res
    } else {
        // Split in two, keeping the first half a multiple of the unroll factor.
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum_indexed(start, n2, f) + pairwise_sum_indexed(start + n2, n - n2, f)
    }
}

/// `np.sum(f(values))` in numpy's pairwise order.
pub(crate) fn pairwise_sum_by(values: &[f64], f: &impl Fn(f64) -> f64) -> f64 {
    pairwise_sum_indexed(0, values.len(), &|i| f(values[i]))
}

/// `np.sum(values)` for a contiguous float64 array (pairwise summation).
pub fn pairwise_sum(values: &[f64]) -> f64 {
    pairwise_sum_by(values, &|v| v)
}

fn has_nan(values: &[f64]) -> bool {
    values.iter().any(|v| v.is_nan())
}

/// Arithmetic mean, `np.mean(values)`. `None` if empty or any NaN.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || has_nan(values) {
        return None;
    }
    Some(pairwise_sum(values) / values.len() as f64).filter(|m| !m.is_nan())
}

/// Population standard deviation, `np.std(values)` (ddof = 0).
/// `None` if empty or any NaN.
pub fn std(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    // numpy materialises (x - mean), squares it in place and sums pairwise.
    let ss = pairwise_sum_by(values, &|x| {
        let d = x - m;
        d * d
    });
    Some((ss / values.len() as f64).sqrt()).filter(|s| !s.is_nan())
}

/// numpy's `_lerp`: two formulas, chosen by `t`, so that `t = 1` is exact.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Quantile of an already sorted slice with numpy's default "linear" method:
/// virtual index `(n-1)·q`, interpolated with numpy's `_lerp`.
/// `None` if empty, or `q` is NaN or outside `[0, 1]` (numpy raises there).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let vi = (n - 1) as f64 * q;
    // numpy clips out-of-range indices to the last element and then computes
    // gamma against the *clipped* previous index (-1), i.e. vi + 1.
    let (lo, hi, prev) = if vi >= (n - 1) as f64 {
        (n - 1, n - 1, -1.0)
    } else {
        let p = vi.floor();
        (p as usize, p as usize + 1, p)
    };
    let gamma = vi - prev;
    Some(lerp(sorted[lo], sorted[hi], gamma)).filter(|v| !v.is_nan())
}

/// `np.quantile(values, q)` (linear method) on unsorted data (sorts a copy).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    SortedSample::new(values)?.quantile(q)
}

/// Median of an already sorted slice, `np.median`: the middle value, or the
/// mean `(a + b) / 2` of the two middle values.
pub fn median_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        Some(sorted[n / 2])
    } else {
        Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0).filter(|v| !v.is_nan())
    }
}

/// `np.median(values)` on unsorted data (sorts a copy). `None` if empty or NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    SortedSample::new(values)?.median()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_matches_naive_on_small_input() {
        assert_eq!(pairwise_sum(&[1.0, 2.0, 3.0]), 6.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        let v: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(pairwise_sum(&v), 499_500.0);
    }

    #[test]
    fn quantile_edges() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&s, 1.0), Some(4.0));
        assert_eq!(quantile_sorted(&s, 0.5), Some(2.5));
        assert_eq!(quantile_sorted(&s, 1.5), None);
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(std(&[]), None);
        assert_eq!(mean(&[1.0, f64::NAN]), None);
        assert_eq!(mean(&[f64::INFINITY, f64::NEG_INFINITY]), None);
        assert_eq!(median(&[f64::NEG_INFINITY, f64::INFINITY]), None);
        assert_eq!(quantile(&[1.0, f64::INFINITY], 1.0), None); // numpy: inf - inf
        assert_eq!(quantile(&[1.0, f64::INFINITY], 0.0), None); // numpy: 1 + inf*0
        assert_eq!(quantile(&[1.0, 2.0, f64::INFINITY], 0.25), Some(1.5));
    }
}
