//! Fisher's exact test of a 2×2 table (`scipy.stats.fisher_exact(table)`, two-sided): the
//! test the drift engine uses for rates whose expected counts are too small for the normal
//! approximation of the z-test (1 refusal in 100 sessions against 0 in 2,400: z gives
//! p = 9.6e-7, the exact test 0.040).
//!
//! Pure functions: no I/O, no wall clock, no panics; `None` = not computable.

use serde::{Deserialize, Serialize};

/// Result of Fisher's exact test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FisherResult {
    /// Sample odds ratio `a·d / (b·c)`; `+∞` when `b·c == 0 < a·d` (scipy: `inf`); `None`
    /// where scipy gives NaN (a row or column sums to zero).
    pub odds_ratio: Option<f64>,
    /// Two-sided p-value: the probability, under the hypergeometric null with the table's
    /// margins fixed, of a table at most as likely as the observed one.
    pub p_value: f64,
}

/// Two tables whose probabilities differ by less than this relative amount are treated as
/// equally likely. scipy uses `1 + 1e-14` on its own pmf values; the weights here come from a
/// recurrence whose rounding grows with the distance from the mode, so a mathematically tied
/// table (e.g. the mirror image of the observed one when the rows are equal) can differ by more
/// than 1e-14 — 1e-7 (scipy's tolerance before 1.7) still tells every genuinely different pair
/// apart, since neighbouring hypergeometric probabilities differ by far more.
const TIE: f64 = 1e-7;

/// Fisher's exact test of `[[a, b], [c, d]]`, two-sided, equal to
/// `scipy.stats.fisher_exact([[a, b], [c, d]])` (scipy ≥ 1.7 definition of "at most as
/// likely": every table whose probability is ≤ the observed one's).
///
/// A row or column summing to zero gives p = 1 (scipy). Never `None` for valid counts; `None`
/// only if the total overflows.
pub fn fisher_exact(table: [[u64; 2]; 2]) -> Option<FisherResult> {
    let [[a, b], [c, d]] = table;
    let n1 = a.checked_add(b)?;
    let n2 = c.checked_add(d)?;
    let n = a.checked_add(c)?;
    let total = n1.checked_add(n2)?;
    if n1 == 0 || n2 == 0 || n == 0 || n == total {
        return Some(FisherResult {
            odds_ratio: None,
            p_value: 1.0,
        });
    }
    let odds_ratio = if c > 0 && b > 0 {
        Some((a as f64 * d as f64) / (c as f64 * b as f64))
    } else {
        Some(f64::INFINITY)
    };
    // X = a ~ Hypergeometric(total, n1 successes, n draws): support [lo, hi].
    let lo = n.saturating_sub(n2);
    let hi = n.min(n1);
    // scipy's mode: int((n + 1)(n1 + 1) / (total + 2)).
    let mode = ((n as f64 + 1.0) * (n1 as f64 + 1.0) / (total as f64 + 2.0)) as u64;
    let mode = mode.clamp(lo, hi);
    // Weights proportional to the pmf, 1 at the mode, by the ratio recurrence
    // pmf(x+1)/pmf(x) = (n1−x)(n−x) / ((x+1)(n2−n+x+1)); normalised by their sum at the end, so
    // no factorial is ever evaluated and relative accuracy does not depend on the table's size.
    let len = (hi - lo + 1) as usize;
    let mut w = vec![0.0_f64; len];
    let at = |x: u64| (x - lo) as usize;
    w[at(mode)] = 1.0;
    for x in mode..hi {
        let (xf, n1f, nf, n2f) = (x as f64, n1 as f64, n as f64, n2 as f64);
        let ratio = (n1f - xf) * (nf - xf) / ((xf + 1.0) * (n2f - nf + xf + 1.0));
        w[at(x + 1)] = w[at(x)] * ratio;
    }
    for x in (lo..mode).rev() {
        let (xf, n1f, nf, n2f) = (x as f64, n1 as f64, n as f64, n2 as f64);
        let ratio = (xf + 1.0) * (n2f - nf + xf + 1.0) / ((n1f - xf) * (nf - xf));
        w[at(x)] = w[at(x + 1)] * ratio;
    }
    let observed = w[at(a)];
    let limit = observed * (1.0 + TIE);
    if (observed - 1.0).abs() <= TIE {
        // The observed table is (tied with) the most likely one.
        return Some(FisherResult {
            odds_ratio,
            p_value: 1.0,
        });
    }
    // Sum each tail from its far end inwards (smallest terms first), then the whole.
    let tail = |range: &mut dyn Iterator<Item = usize>| -> f64 {
        range.map(|i| w[i]).filter(|v| *v <= limit).sum::<f64>()
    };
    let lower = tail(&mut (0..at(mode)));
    let upper = tail(&mut (at(mode) + 1..len).rev());
    let sum: f64 = w[..at(mode)].iter().sum::<f64>() + w[at(mode)..].iter().rev().sum::<f64>();
    let p = (lower + upper) / sum;
    Some(FisherResult {
        odds_ratio,
        p_value: p.min(1.0),
    })
}

/// Whether the normal approximation of a 2×2 table is unsafe: some expected count (row
/// total × column total / grand total) is below 5 — Cochran's rule, the textbook condition for
/// the χ² and z tests. Then slawatch uses [`fisher_exact`] instead.
pub fn small_expected_counts(table: [[u64; 2]; 2]) -> bool {
    let [[a, b], [c, d]] = table.map(|r| r.map(|v| v as f64));
    let total = a + b + c + d;
    if total == 0.0 {
        return true;
    }
    let rows = [a + b, c + d];
    let cols = [a + c, b + d];
    rows.iter()
        .any(|r| cols.iter().any(|col| r * col / total < 5.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_10_example_one_refusal_in_100_against_none_in_2400() {
        // 1 of 100 vs 0 of 2400: P(table) = 100/2500 = 0.04 exactly (the single true lands in
        // the current window with probability 100/2500); nothing is less likely.
        let r = fisher_exact([[1, 99], [0, 2400]]).unwrap();
        assert!((r.p_value - 0.04).abs() < 1e-12, "{r:?}");
        assert!(small_expected_counts([[1, 99], [0, 2400]]));
        assert!(!small_expected_counts([[50, 450], [500, 4500]]));
    }

    #[test]
    fn margins_of_zero_give_one() {
        assert_eq!(fisher_exact([[0, 0], [3, 4]]).unwrap().p_value, 1.0);
        assert_eq!(fisher_exact([[0, 5], [0, 4]]).unwrap().p_value, 1.0);
    }
}
