//! When did a change begin: the best single change point of a per-pane series, with a
//! profile-likelihood interval. Pure arithmetic; no I/O, no clock.
//!
//! Two models, both tested for one change against none by a likelihood ratio:
//!
//! | series | model | log-likelihood of a segment |
//! |---|---|---|
//! | bad sessions / sessions per pane ([`binomial`]) | one bad rate per segment | `k ln p̂ + (n−k) ln(1−p̂)`, `p̂ = k/n` |
//! | a value per session, as count, sum and sum of squares per pane ([`gaussian`]) | one mean per segment, a common variance | `−N/2 · ln(RSS/N)` |
//!
//! A change point is a pane boundary `τ`: panes `[0, τ)` before, `[τ, m)` after. The statistic
//! is `2·(ℓ(τ̂) − ℓ₀)` at the best `τ̂`; it is significant when it exceeds the χ²₁ quantile at
//! `1 − α/(m−1)` — a Bonferroni correction for having searched `m−1` boundaries, so a flat
//! series of a day of 5-minute panes (287 boundaries) needs 2ΔLL > 17.13 at α = 1 %.
//!
//! The interval is the **profile-likelihood** set: every boundary whose log-likelihood is
//! within `χ²₁(0.95)/2 = 1.92` of the best, reported as its lowest and highest member. It is
//! deterministic (a bootstrap would need a random source and many refits per breach) and reads
//! directly: "boundaries the data cannot tell apart from the best at 95 %".
//!
//! Only changes for the worse count (the bad rate rises; the mean moves past the bound's side):
//! an improvement before a breach is not its onset.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Family-wise level of the significance test over all boundaries.
pub const ALPHA: f64 = 0.01;
/// Half the χ²₁ 95 % quantile: the profile-likelihood drop that bounds the interval.
pub const PROFILE_DROP: f64 = 3.841_458_820_694_124 / 2.0;

/// One pane of a rate series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RatePane {
    pub bad: u64,
    pub sessions: u64,
}

/// One pane of a value series: count, sum and sum of squares of the values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValuePane {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

/// The best change point of a series (indices are pane positions: the change happens before
/// pane `at`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    pub at: usize,
    pub low: usize,
    pub high: usize,
    /// `2·(ℓ(τ̂) − ℓ₀)`.
    pub statistic: f64,
    /// The critical value it was compared with.
    pub critical: f64,
}

/// The critical value of the statistic for a series of `m` panes.
pub fn critical_value(m: usize) -> f64 {
    let splits = m.saturating_sub(1).max(1) as f64;
    ChiSquared::new(1.0)
        .expect("one degree of freedom")
        .inverse_cdf(1.0 - ALPHA / splits)
}

/// `k ln(k/n) + (n−k) ln(1 − k/n)`, with `0 ln 0 = 0`.
fn binomial_ll(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (k, n) = (k as f64, n as f64);
    let term = |a: f64| if a > 0.0 { a * (a / n).ln() } else { 0.0 };
    term(k) + term(n - k)
}

/// The best rise in the bad rate of `series`, if significant.
pub fn binomial(series: &[RatePane]) -> Option<ChangePoint> {
    let m = series.len();
    let (k_all, n_all) = series
        .iter()
        .fold((0, 0), |(k, n), p| (k + p.bad, n + p.sessions));
    let null = binomial_ll(k_all, n_all);
    let mut profile = vec![None; m];
    let (mut k0, mut n0) = (0u64, 0u64);
    for tau in 1..m {
        k0 += series[tau - 1].bad;
        n0 += series[tau - 1].sessions;
        let (k1, n1) = (k_all - k0, n_all - n0);
        if n0 == 0 || n1 == 0 {
            continue;
        }
        // Only a rise: k1/n1 > k0/n0.
        if (k1 as u128) * (n0 as u128) <= (k0 as u128) * (n1 as u128) {
            continue;
        }
        profile[tau] = Some(binomial_ll(k0, n0) + binomial_ll(k1, n1));
    }
    best_of(&profile, null, m)
}

/// The best shift of the mean of `series` in the direction `rise` (true: the mean grows), if
/// significant.
pub fn gaussian(series: &[ValuePane], rise: bool) -> Option<ChangePoint> {
    let m = series.len();
    let total = series.iter().fold(ValuePane::default(), |a, p| ValuePane {
        count: a.count + p.count,
        sum: a.sum + p.sum,
        sum_sq: a.sum_sq + p.sum_sq,
    });
    let n = total.count as f64;
    let rss = |c: u64, s: f64, sq: f64| {
        if c == 0 {
            0.0
        } else {
            (sq - s * s / c as f64).max(0.0)
        }
    };
    let rss0 = rss(total.count, total.sum, total.sum_sq);
    if total.count < 3 || rss0 <= 0.0 {
        return None;
    }
    let ll = |r: f64| -n / 2.0 * (r.max(f64::MIN_POSITIVE) / n).ln();
    let null = ll(rss0);
    let mut profile = vec![None; m];
    let mut before = ValuePane::default();
    for tau in 1..m {
        let p = series[tau - 1];
        before.count += p.count;
        before.sum += p.sum;
        before.sum_sq += p.sum_sq;
        let after = ValuePane {
            count: total.count - before.count,
            sum: total.sum - before.sum,
            sum_sq: total.sum_sq - before.sum_sq,
        };
        if before.count == 0 || after.count == 0 {
            continue;
        }
        let (mean0, mean1) = (
            before.sum / before.count as f64,
            after.sum / after.count as f64,
        );
        if (rise && mean1 <= mean0) || (!rise && mean1 >= mean0) {
            continue;
        }
        let r = rss(before.count, before.sum, before.sum_sq)
            + rss(after.count, after.sum, after.sum_sq);
        profile[tau] = Some(ll(r));
    }
    best_of(&profile, null, m)
}

/// The best boundary of a profile, its interval, and whether it is significant.
fn best_of(profile: &[Option<f64>], null: f64, m: usize) -> Option<ChangePoint> {
    let mut best: Option<(usize, f64)> = None;
    for (tau, ll) in profile.iter().enumerate() {
        if let Some(ll) = *ll
            && best.is_none_or(|(_, b)| ll > b)
        {
            best = Some((tau, ll));
        }
    }
    let (at, best_ll) = best?;
    let statistic = 2.0 * (best_ll - null);
    let critical = critical_value(m);
    // NaN never passes.
    if statistic.is_nan() || statistic <= critical {
        return None;
    }
    let within: Vec<usize> = profile
        .iter()
        .enumerate()
        .filter_map(|(tau, ll)| ll.filter(|ll| best_ll - ll <= PROFILE_DROP).map(|_| tau))
        .collect();
    Some(ChangePoint {
        at,
        low: *within.first().expect("the best is within"),
        high: *within.last().expect("the best is within"),
        statistic,
        critical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force from the definition: the log-likelihood of every split computed from the
    /// individual Bernoulli outcomes, not from the pane counts.
    fn brute_binomial(series: &[RatePane]) -> Vec<Option<f64>> {
        let outcomes: Vec<Vec<bool>> = series
            .iter()
            .map(|p| (0..p.sessions).map(|i| i < p.bad).collect::<Vec<bool>>())
            .collect();
        let ll = |xs: &[bool]| {
            if xs.is_empty() {
                return 0.0;
            }
            let p = xs.iter().filter(|x| **x).count() as f64 / xs.len() as f64;
            xs.iter()
                .map(|x| {
                    let q = if *x { p } else { 1.0 - p };
                    if q > 0.0 { q.ln() } else { 0.0 }
                })
                .sum::<f64>()
        };
        (0..series.len())
            .map(|tau| {
                if tau == 0 {
                    return None;
                }
                let before: Vec<bool> = outcomes[..tau].concat();
                let after: Vec<bool> = outcomes[tau..].concat();
                if before.is_empty() || after.is_empty() {
                    return None;
                }
                let rate = |xs: &[bool]| xs.iter().filter(|x| **x).count() as f64 / xs.len() as f64;
                (rate(&after) > rate(&before)).then(|| ll(&before) + ll(&after))
            })
            .collect()
    }

    fn panes(rates: &[(u64, u64)]) -> Vec<RatePane> {
        rates
            .iter()
            .map(|&(bad, sessions)| RatePane { bad, sessions })
            .collect()
    }

    #[test]
    fn binomial_change_point_equals_brute_force_over_every_split() {
        // 20 quiet panes at ~2 %, then 10 at ~30 %, sizes varying.
        let mut s = Vec::new();
        for i in 0..20u64 {
            s.push((u64::from(i % 7 == 0), 15 + i % 5));
        }
        for i in 0..10u64 {
            s.push((4 + i % 3, 14 + i % 4));
        }
        let series = panes(&s);
        let profile = brute_binomial(&series);
        let (best_tau, best_ll) = profile
            .iter()
            .enumerate()
            .filter_map(|(t, l)| l.map(|l| (t, l)))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let all: Vec<bool> = series
            .iter()
            .flat_map(|p| (0..p.sessions).map(move |i| i < p.bad))
            .collect();
        let p = all.iter().filter(|x| **x).count() as f64 / all.len() as f64;
        let null: f64 = all
            .iter()
            .map(|x| if *x { p.ln() } else { (1.0 - p).ln() })
            .sum();
        let cp = binomial(&series).expect("a clear change");
        assert_eq!(cp.at, best_tau);
        assert_eq!(cp.at, 20);
        assert!((cp.statistic - 2.0 * (best_ll - null)).abs() < 1e-9);
        let within: Vec<usize> = profile
            .iter()
            .enumerate()
            .filter_map(|(t, l)| l.filter(|l| best_ll - l <= 1.920_729_41).map(|_| t))
            .collect();
        assert_eq!((cp.low, cp.high), (within[0], *within.last().unwrap()));
        assert!(cp.low <= 20 && cp.high >= 20);
    }

    #[test]
    fn binomial_flat_series_has_no_change_point() {
        let series = panes(&[(1, 20); 40]);
        assert_eq!(binomial(&series), None);
        // A drop is not an onset.
        let mut s = vec![(6, 20); 20];
        s.extend(vec![(0, 20); 20]);
        assert_eq!(binomial(&panes(&s)), None);
    }

    #[test]
    fn critical_value_is_the_bonferroni_chi2_quantile() {
        // scipy.stats.chi2.ppf(1 - 0.01 / 287, 1) = 17.133450652157123
        assert!((critical_value(288) - 17.133_450_652_157_123).abs() < 1e-6);
        // scipy.stats.chi2.ppf(0.99, 1) = 6.6348966010212145
        assert!((critical_value(2) - 6.634_896_601_021_214_5).abs() < 1e-6);
        // scipy.stats.chi2.ppf(0.95, 1) / 2 = 1.920729410347062
        assert!((PROFILE_DROP - 1.920_729_410_347_062).abs() < 1e-12);
    }

    #[test]
    fn gaussian_change_point_equals_brute_force_over_every_split() {
        // Values 100 ± 10 for 15 panes, then 160 ± 10.
        let mut values: Vec<Vec<f64>> = Vec::new();
        for i in 0..25 {
            let base = if i < 15 { 100.0 } else { 160.0 };
            values.push(
                (0..6)
                    .map(|j| base + ((i * 7 + j * 3) % 21) as f64 - 10.0)
                    .collect(),
            );
        }
        let series: Vec<ValuePane> = values
            .iter()
            .map(|v| ValuePane {
                count: v.len() as u64,
                sum: v.iter().sum(),
                sum_sq: v.iter().map(|x| x * x).sum(),
            })
            .collect();
        let rss = |xs: &[f64]| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>()
        };
        let all: Vec<f64> = values.concat();
        let n = all.len() as f64;
        let ll = |r: f64| -n / 2.0 * (r / n).ln();
        let profile: Vec<Option<f64>> = (0..values.len())
            .map(|tau| {
                (tau > 0).then(|| {
                    let (b, a) = (values[..tau].concat(), values[tau..].concat());
                    ll(rss(&b) + rss(&a))
                })
            })
            .collect();
        let (best_tau, best_ll) = profile
            .iter()
            .enumerate()
            .filter_map(|(t, l)| l.map(|l| (t, l)))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let cp = gaussian(&series, true).expect("a clear shift");
        assert_eq!((cp.at, best_tau), (15, 15));
        assert!((cp.statistic - 2.0 * (best_ll - ll(rss(&all)))).abs() < 1e-6);
        assert_eq!(gaussian(&series, false), None, "a rise is not a fall");
    }
}
