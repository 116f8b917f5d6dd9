//! One-sided confidence bounds for per-window thresholds: a breach is declared on evidence,
//! not on a point estimate that chance alone pushes over the line now and then.
//!
//! | statistic | bound | reference (tests) |
//! |---|---|---|
//! | a quantile | distribution-free order statistic: the rank from the binomial distribution | `scipy.stats.binom.cdf` (`tests/data/confidence_reference.json`) |
//! | a rate | Wilson score bound | statsmodels' `proportion_confint(method="wilson")`, closed form |
//! | a mean | Student t: `mean ∓ t(c, n−1) · s/√n` | `scipy.stats.t.ppf` |
//!
//! Every bound is the side that is favourable to the service: for an objective with a `max`
//! the *lower* bound (a breach needs it above the limit), for one with a `min` the *upper*
//! bound (a breach needs it below). So a breach means "we are `confidence` sure the true value
//! violates"; at the threshold itself a window alarms with probability at most `1 − confidence`
//! (exactly so for quantiles, approximately for Wilson and t), and less below it.
//!
//! **Quantiles.** Let `ξ` be the true `q`-quantile and `X(1) ≤ … ≤ X(n)` the window's sorted
//! values. `X(k) ≤ ξ` exactly when at least `k` values are `≤ ξ`; that count is
//! `Binom(n, F(ξ))` with `F(ξ) ≥ q`, so `P(X(k) ≤ ξ) ≥ P(Binom(n, q) ≥ k)`. The lower bound is
//! therefore `X(k)` for the largest `k` with `P(Binom(n, q) ≤ k − 1) ≤ 1 − c`; none exists when
//! even `P(Binom(n, q) = 0) = (1 − q)ⁿ` exceeds `1 − c` (too few values: no bound, no breach).
//! In counts: `X(k) > T` exactly when at least `n − k + 1` values exceed `T`. Mirrored, `X(k) <
//! ξ` needs at least `k` values `< ξ`, a count that is `Binom(n, F(ξ−))` with `F(ξ−) ≤ q`; the
//! upper bound is `X(k)` for the smallest `k` with `P(Binom(n, q) ≤ k − 1) ≥ c`, if `k ≤ n`.
//! Both hold for any distribution, ties included. (slawatch reads `X(k)` from the window's
//! quantile sketch, within its ±1% relative accuracy.)
//!
//! A leaf module (statrs only), shared by `evaluate`, which judges with these bounds, and
//! `spec::explain`, which says what they mean for a spec. Pure functions: no I/O, no clock.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, Continuous, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// Which side of the estimate a confidence bound lies on: always the side favourable to the
/// service, so that a breach means the bound itself is outside the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The true value is at least this: judges a `max`.
    Lower,
    /// The true value is at most this: judges a `min`.
    Upper,
}

/// `z` of a one-sided bound at `confidence` (`1.6449` at 95%).
pub fn z(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(confidence)
}

/// The 1-based rank `k` of the order statistic `X(k)` that bounds the `q`-quantile of `n`
/// values on `side` with `confidence` (see the module doc), or `None` when `n` is too small
/// for any bound at that confidence.
pub fn order_statistic_rank(n: u64, q: f64, confidence: f64, side: Side) -> Option<u64> {
    if n == 0 || !(0.0..1.0).contains(&q) || q <= 0.0 {
        return None;
    }
    let binom = Binomial::new(q, n).expect("0 < q < 1");
    let alpha = 1.0 - confidence;
    // The binomial CDF rises with j: search for the boundary.
    match side {
        Side::Lower => {
            // Largest j = k − 1 in 0..n with cdf(j) ≤ α.
            if binom.cdf(0) > alpha {
                return None;
            }
            let (mut lo, mut hi) = (0, n); // cdf(lo) ≤ α; cdf(n) = 1 > α
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if binom.cdf(mid) <= alpha {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Some(lo + 1)
        }
        Side::Upper => {
            // Smallest j = k − 1 with cdf(j) ≥ c; a bound only if k ≤ n (j < n).
            let (mut lo, mut hi) = (0, n); // answer in [lo, hi]; cdf(n) = 1 ≥ c
            if binom.cdf(0) >= confidence {
                return Some(1);
            }
            // cdf(lo) < c ≤ cdf(hi)
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if binom.cdf(mid) >= confidence {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            (hi < n).then_some(hi + 1)
        }
    }
}

/// The Wilson score bound on `side` of a proportion of `k` out of `n`, for a one-sided
/// bound with normal quantile `z` (`0` with `n = 0` on the lower side, `1` on the upper).
pub fn wilson(k: u64, n: u64, z: f64, side: Side) -> f64 {
    match side {
        Side::Lower => wilson_lower_z(k, n, z),
        // The upper bound of the share of successes is one minus the lower bound of the
        // share of failures: the score interval is symmetric in the two.
        Side::Upper => 1.0 - wilson_lower_z(n.saturating_sub(k), n, z),
    }
}

fn wilson_lower_z(k: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// `t(c, df)`: the one-sided Student t quantile at `confidence`, e.g. `t(0.95, 9) = 1.8331`.
pub fn t_quantile(confidence: f64, df: u64) -> f64 {
    let t = StudentsT::new(0.0, 1.0, df as f64).expect("df ≥ 1");
    // statrs inverts the incomplete beta function to ~1e-6 at large df; Newton steps on its
    // (accurate) CDF bring the quantile to scipy's within 1e-9.
    let mut x = t.inverse_cdf(confidence);
    for _ in 0..3 {
        let step = (t.cdf(x) - confidence) / t.pdf(x);
        if !step.is_finite() {
            break;
        }
        x -= step;
    }
    x
}

/// The Student t bound on `side` of the mean of `count` values with sum `sum` and sum of
/// squares `sum_sq`: `mean ∓ t(c, n−1) · s/√n`, with the bound's standard error. `None` below
/// two values (no spread to judge by).
pub fn t_bound(count: u64, sum: f64, sum_sq: f64, confidence: f64, side: Side) -> Option<TBound> {
    if count < 2 {
        return None;
    }
    let n = count as f64;
    let mean = sum / n;
    // Sums are exact (fixed point); the subtraction can still round below zero when every
    // value is alike.
    let variance = ((sum_sq - sum * mean) / (n - 1.0)).max(0.0);
    let std_error = (variance / n).sqrt();
    let margin = t_quantile(confidence, count - 1) * std_error;
    Some(TBound {
        value: match side {
            Side::Lower => mean - margin,
            Side::Upper => mean + margin,
        },
        std_error,
    })
}

/// A Student t bound of a mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TBound {
    pub value: f64,
    /// `s/√n`.
    pub std_error: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_of_the_examples_in_the_docs() {
        // p99 of 100 values at 95%: the 97th smallest (4th slowest) — the 99th is the point
        // estimate. P(Binom(100, .99) ≤ 96) = 0.0184 ≤ 0.05 < P(≤ 97) = 0.0794.
        assert_eq!(order_statistic_rank(100, 0.99, 0.95, Side::Lower), Some(97));
        // The median of 1 value cannot be bounded at 95%.
        assert_eq!(order_statistic_rank(1, 0.5, 0.95, Side::Lower), None);
        assert_eq!(order_statistic_rank(1, 0.5, 0.95, Side::Upper), None);
        // p1 of 298 values has no lower bound ((0.99)^298 = 0.0500 > 0.05), of 299 it has.
        assert_eq!(order_statistic_rank(298, 0.01, 0.95, Side::Lower), None);
        assert_eq!(order_statistic_rank(299, 0.01, 0.95, Side::Lower), Some(1));
    }

    #[test]
    fn wilson_sides_mirror() {
        let z = z(0.95);
        assert!((z - 1.644_853_626_951_472_2).abs() < 1e-12);
        let lo = wilson(3, 100, z, Side::Lower);
        let hi = wilson(97, 100, z, Side::Upper);
        assert!((lo - (1.0 - hi)).abs() < 1e-15);
        assert_eq!(wilson(0, 0, z, Side::Upper), 1.0);
    }
}
