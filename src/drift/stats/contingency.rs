//! Tests on counts: Pearson's χ² test of a contingency table
//! (`scipy.stats.chi2_contingency`, including Yates' correction for dof = 1)
//! and the pooled two-proportion z-test (statsmodels `proportions_ztest`).
//!
//! Pure functions: no I/O, no wall clock, no panics; `None` = not computable.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::descriptive::pairwise_sum;

/// Result of a χ² test of independence / homogeneity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chi2Result {
    /// Pearson χ² statistic (after Yates' correction when it was applied).
    pub statistic: f64,
    /// Upper-tail p-value `P(χ²_dof >= statistic)`; 1 when `dof == 0`.
    pub p_value: f64,
    /// Degrees of freedom `(rows-1)·(kept columns-1)`.
    pub dof: usize,
    /// Whether Yates' continuity correction was applied (`correction && dof == 1`).
    pub yates_applied: bool,
    /// Indices of the input columns that were tested; all-zero columns are dropped.
    pub kept_columns: Vec<usize>,
}

/// χ² test of a contingency table, matching
/// `scipy.stats.chi2_contingency(table[:, kept], correction=correction)`.
///
/// Columns that are zero in every row are dropped first (they carry no
/// information and would make scipy raise on a zero expected frequency); the
/// dropped set is visible through [`Chi2Result::kept_columns`].
///
/// Like scipy, Yates' correction (each cell moved by at most 0.5 towards its
/// expected count) is applied only when `correction` is true and `dof == 1`,
/// and a table with `dof == 0` gives statistic 0, p-value 1.
///
/// `None` if the table is empty or ragged, a count is negative or not
/// finite, nothing is left after dropping zero columns, or a row sums to
/// zero (scipy: "expected frequencies has a zero element").
pub fn chi2_contingency<R: AsRef<[f64]>>(table: &[R], correction: bool) -> Option<Chi2Result> {
    let r = table.len();
    if r == 0 {
        return None;
    }
    let c_all = table[0].as_ref().len();
    if table.iter().any(|row| row.as_ref().len() != c_all) {
        return None;
    }
    if table
        .iter()
        .flat_map(|row| row.as_ref().iter())
        .any(|v| !(v.is_finite() && *v >= 0.0))
    {
        return None;
    }
    let kept_columns: Vec<usize> = (0..c_all)
        .filter(|&j| table.iter().any(|row| row.as_ref()[j] != 0.0))
        .collect();
    let c = kept_columns.len();
    if c == 0 {
        return None;
    }
    // Flattened C-order copy of the kept table.
    let mut observed = Vec::with_capacity(r * c);
    for row in table {
        let row = row.as_ref();
        observed.extend(kept_columns.iter().map(|&j| row[j]));
    }
    // scipy expected_freq: outer(row sums, column sums) / total.
    // Row sums reduce a contiguous row (pairwise); column sums accumulate row by row.
    let total = pairwise_sum(&observed);
    let row_sums: Vec<f64> = observed.chunks(c).map(pairwise_sum).collect();
    let mut col_sums = vec![0.0; c];
    for row in observed.chunks(c) {
        for (s, v) in col_sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    let mut expected = Vec::with_capacity(r * c);
    for rs in &row_sums {
        expected.extend(col_sums.iter().map(|cs| rs * cs / total));
    }
    if expected.iter().any(|e| *e == 0.0 || !e.is_finite()) {
        return None;
    }
    let dof = (r - 1) * (c - 1);
    if dof == 0 {
        return Some(Chi2Result {
            statistic: 0.0,
            p_value: 1.0,
            dof,
            yates_applied: false,
            kept_columns,
        });
    }
    let yates_applied = correction && dof == 1;
    if yates_applied {
        for (o, e) in observed.iter_mut().zip(&expected) {
            let diff = e - *o;
            let magnitude = diff.abs().min(0.5);
            // np.sign(0) == 0: cells already at expectation are not moved.
            let direction = if diff > 0.0 {
                1.0
            } else if diff < 0.0 {
                -1.0
            } else {
                0.0
            };
            *o += magnitude * direction;
        }
    }
    let terms: Vec<f64> = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| {
            let d = o - e;
            d * d / e
        })
        .collect();
    let statistic = pairwise_sum(&terms);
    let p_value = chi2_sf(statistic, dof as f64)?;
    Some(Chi2Result {
        statistic,
        p_value,
        dof,
        yates_applied,
        kept_columns,
    })
}

/// χ² test of homogeneity between reference and current category counts
/// (a 2×K table). See [`chi2_contingency`].
pub fn chi2_two_sample(reference: &[f64], current: &[f64], correction: bool) -> Option<Chi2Result> {
    chi2_contingency(&[reference, current], correction)
}

/// Result of a χ² goodness-of-fit test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GofResult {
    /// `Σ (observed − expected)² / expected`; `+∞` when an expected count is 0 where the
    /// observed one is not (scipy divides by zero the same way).
    pub statistic: f64,
    /// `P(χ²_{k−1} ≥ statistic)`.
    pub p_value: f64,
}

/// Pearson's χ² goodness-of-fit test, `scipy.stats.chisquare(f_obs, f_exp)` (dof = k − 1):
/// the test Evidently's `chisquare` stattest runs, with `f_exp` the reference counts scaled to
/// the current total.
///
/// `None` if the lengths differ or are below 2, a value is negative or not finite, the sums
/// differ by more than scipy's relative 1e-8, or a category is 0 on both sides (0/0).
pub fn chisquare_gof(observed: &[f64], expected: &[f64]) -> Option<GofResult> {
    if observed.len() != expected.len() || observed.len() < 2 {
        return None;
    }
    if observed
        .iter()
        .chain(expected)
        .any(|v| !(v.is_finite() && *v >= 0.0))
    {
        return None;
    }
    let (so, se) = (pairwise_sum(observed), pairwise_sum(expected));
    if (so - se).abs() > 1e-8 * so.max(se) {
        return None;
    }
    let mut terms = Vec::with_capacity(observed.len());
    for (o, e) in observed.iter().zip(expected) {
        if *e == 0.0 {
            if *o == 0.0 {
                return None;
            }
            return Some(GofResult {
                statistic: f64::INFINITY,
                p_value: 0.0,
            });
        }
        let d = o - e;
        terms.push(d * d / e);
    }
    let statistic = pairwise_sum(&terms);
    let p_value = chi2_sf(statistic, (observed.len() - 1) as f64)?;
    Some(GofResult { statistic, p_value })
}

/// Upper tail `P(χ²_dof > x)` — scipy `chi2.sf(x, dof)` / `special.chdtrc`
/// (statrs' regularised upper incomplete gamma). `x <= 0` gives 1.
/// `None` if `x` is NaN or `dof` is not positive and finite.
pub fn chi2_sf(x: f64, dof: f64) -> Option<f64> {
    if x.is_nan() {
        return None;
    }
    let dist = ChiSquared::new(dof).ok()?;
    if x <= 0.0 {
        return Some(1.0);
    }
    Some(dist.sf(x)).filter(|p| !p.is_nan())
}

/// Result of a two-proportion z-test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZTestResult {
    /// `(p1 - p2) / sqrt(p(1-p)(1/n1 + 1/n2))` with the pooled `p`.
    pub z: f64,
    /// Two-sided p-value `2·Φ(-|z|)`.
    pub p_value: f64,
}

/// Pooled two-proportion z-test of `successes1/n1` vs `successes2/n2`,
/// the formula of statsmodels `proportions_ztest(count, nobs)` (two-sided,
/// `value = 0`, `prop_var = False`).
///
/// `None` if a count is negative/non-finite, `n` is not positive, a success
/// count exceeds its trials, or the pooled variance is 0 (both rates 0 or
/// both 1: z would be 0/0).
pub fn two_proportion_ztest(
    successes1: f64,
    n1: f64,
    successes2: f64,
    n2: f64,
) -> Option<ZTestResult> {
    let valid = |s: f64, n: f64| s.is_finite() && n.is_finite() && s >= 0.0 && n > 0.0 && s <= n;
    if !valid(successes1, n1) || !valid(successes2, n2) {
        return None;
    }
    let diff = successes1 / n1 - successes2 / n2;
    let p_pooled = (successes1 + successes2) / (n1 + n2);
    let nobs_fact = 1.0 / n1 + 1.0 / n2;
    let var = p_pooled * (1.0 - p_pooled) * nobs_fact;
    // var is NaN-free here (inputs validated); `<= 0` covers rates of 0 or 1.
    if var <= 0.0 {
        return None;
    }
    let z = diff / var.sqrt();
    Some(ZTestResult {
        z,
        p_value: norm_sf(z.abs()) * 2.0,
    })
}

// ---------------------------------------------------------------------------
// Standard normal tail, ported from cephes `ndtr` (xsf `cephes/ndtr.h`), the
// code behind `scipy.stats.norm.sf`. statrs' `erfc` carries ~1e-10 relative
// error (its Boost-derived offsets are f32 constants stored as f64), which
// would spend a tenth of the 1e-9 budget; this port agrees with scipy to ~1e-16.
// ---------------------------------------------------------------------------

const NDTR_P: [f64; 9] = [
    2.461969814735305e-10,
    0.5641895648310689,
    7.463210564422699,
    48.63719709856814,
    196.5208329560771,
    526.4451949954773,
    934.5285271719576,
    1027.5518868951572,
    557.5353353693994,
];
const NDTR_Q: [f64; 8] = [
    13.228195115474499,
    86.70721408859897,
    354.9377788878199,
    975.7085017432055,
    1823.9091668790973,
    2246.3376081871097,
    1656.6630919416134,
    557.5353408177277,
];
const NDTR_R: [f64; 6] = [
    0.5641895835477551,
    1.275366707599781,
    5.019050422511805,
    6.160210979930536,
    7.4097426995044895,
    2.9788666537210022,
];
const NDTR_S: [f64; 6] = [
    2.2605286322011726,
    9.396035249380015,
    12.048953980809666,
    17.08144507475659,
    9.608968090632859,
    3.369076451000815,
];
const NDTR_T: [f64; 5] = [
    9.604973739870516,
    90.02601972038427,
    2232.005345946843,
    7003.325141128051,
    55592.30130103949,
];
const NDTR_U: [f64; 5] = [
    33.56171416475031,
    521.3579497801527,
    4594.323829709801,
    22629.000061389095,
    49267.39426086359,
];
/// cephes MAXLOG = log(DBL_MAX)
const MAXLOG: f64 = 7.097_827_128_933_84e2;

/// cephes `polevl`: `c[0]·x^N + ... + c[N]`.
fn polevl(x: f64, c: &[f64]) -> f64 {
    c[1..].iter().fold(c[0], |acc, &k| acc * x + k)
}

/// cephes `p1evl`: like `polevl` with an implicit leading coefficient 1.
fn p1evl(x: f64, c: &[f64]) -> f64 {
    c[1..].iter().fold(x + c[0], |acc, &k| acc * x + k)
}

fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x.abs() > 1.0 {
        return 1.0 - erfc(x);
    }
    let z = x * x;
    x * polevl(z, &NDTR_T) / p1evl(z, &NDTR_U)
}

fn erfc(a: f64) -> f64 {
    let x = a.abs();
    if x < 1.0 {
        return 1.0 - erf(a);
    }
    let z = -a * a;
    let under = if a < 0.0 { 2.0 } else { 0.0 };
    if z < -MAXLOG {
        return under;
    }
    let z = z.exp();
    let (p, q) = if x < 8.0 {
        (polevl(x, &NDTR_P), p1evl(x, &NDTR_Q))
    } else {
        (polevl(x, &NDTR_R), p1evl(x, &NDTR_S))
    };
    let mut y = (z * p) / q;
    if a < 0.0 {
        y = 2.0 - y;
    }
    if y != 0.0 { y } else { under }
}

/// cephes `ndtr`: standard normal CDF.
fn ndtr(a: f64) -> f64 {
    let x = a * std::f64::consts::FRAC_1_SQRT_2;
    let z = x.abs();
    if z < 1.0 {
        0.5 + 0.5 * erf(x)
    } else {
        let y = 0.5 * erfc(z);
        if x > 0.0 { 1.0 - y } else { y }
    }
}

/// Standard normal survival function `P(Z > x)` = scipy `norm.sf(x)` = `ndtr(-x)`.
pub(crate) fn norm_sf(x: f64) -> f64 {
    ndtr(-x)
}
/// Cochran's rule for a reference × current table: categories whose expected count in the
/// current sample is below 5 are pooled into one cell, and a pool still below 5 joins the
/// smallest other cell. On a sparse cell the χ² approximation makes p-values far too small —
/// a category holding 0.5 % of the reference, seen 6 times in 130 sessions, reads p ≈ 1e-7 —
/// and in a fleet of steady agents such cells were the most common false drift ticket.
pub fn pool_sparse(reference: &[f64], current: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (n, m): (f64, f64) = (reference.iter().sum(), current.iter().sum());
    let expected = |r: f64, c: f64| (r + c) * m / (n + m);
    let (mut r, mut c) = (Vec::new(), Vec::new());
    let (mut pool_r, mut pool_c) = (0.0, 0.0);
    for (&a, &b) in reference.iter().zip(current) {
        if expected(a, b) < 5.0 {
            pool_r += a;
            pool_c += b;
        } else {
            r.push(a);
            c.push(b);
        }
    }
    if pool_r + pool_c > 0.0 {
        if expected(pool_r, pool_c) >= 5.0 || r.is_empty() {
            r.push(pool_r);
            c.push(pool_c);
        } else {
            let smallest = (0..r.len())
                .min_by(|&i, &j| (r[i] + c[i]).total_cmp(&(r[j] + c[j])))
                .expect("not empty");
            r[smallest] += pool_r;
            c[smallest] += pool_c;
        }
    }
    (r, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0.6 % cluster seen 6 times in 125 sessions: χ² on the raw table says p = 4.9e-5
    /// (scipy agrees — the approximation, not the arithmetic, is wrong there); pooled by
    /// Cochran's rule it is scipy's `chi2_contingency([[610, 516, 476, 242, 156], [30, 33, 27,
    /// 18, 17]], correction=False)` p = 0.12194155732600644.
    #[test]
    fn sparse_clusters_are_pooled_before_the_chi_square_test() {
        let r = [610.0, 516.0, 476.0, 242.0, 144.0, 12.0];
        let c = [30.0, 33.0, 27.0, 18.0, 11.0, 6.0];
        let raw = chi2_two_sample(&r, &c, false).unwrap().p_value;
        assert!((raw - 4.921628824127858e-05).abs() < 1e-12, "{raw}");
        let (pr, pc) = pool_sparse(&r, &c);
        assert_eq!(pr, vec![610.0, 516.0, 476.0, 242.0, 156.0]);
        assert_eq!(pc, vec![30.0, 33.0, 27.0, 18.0, 17.0]);
        let pooled = chi2_two_sample(&pr, &pc, false).unwrap().p_value;
        assert!((pooled - 0.12194155732600644).abs() < 1e-9, "{pooled}");
        // Nothing sparse: unchanged.
        let (r2, c2) = pool_sparse(&[100.0, 100.0], &[50.0, 60.0]);
        assert_eq!((r2, c2), (vec![100.0, 100.0], vec![50.0, 60.0]));
    }
}
