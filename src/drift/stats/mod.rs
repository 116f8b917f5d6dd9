//! Statistics core of the drift engine: two-sample tests, distribution
//! distances, multiple-testing control and descriptive helpers, each checked
//! against scipy / numpy to 1e-9 relative on committed reference vectors
//! (`scripts/scipy_reference.py` → `tests/data/scipy_reference.json`,
//! asserted by `tests/it/stats_scipy.rs`).
//!
//! | function | scipy / numpy counterpart |
//! |---|---|
//! | [`ks_2samp`], [`ks_2samp_sorted`] | `scipy.stats.ks_2samp(x, y)` (two-sided, `method='auto'`) |
//! | [`ks_2samp_policy`] with [`KsPolicy::Budget`] | the same, `method='asymp'` above [`KS_EXACT_MAX_WORK`] |
//! | [`kstwo_sf`], [`kstwobign_sf`], [`smirnov_sf`] | `kstwo.sf`, `kstwobign.sf`, `special.smirnov` |
//! | [`chi2_contingency`], [`chi2_two_sample`] | `scipy.stats.chi2_contingency(table, correction)` |
//! | [`chisquare_gof`] | `scipy.stats.chisquare(f_obs, f_exp)` |
//! | [`chi2_sf`] | `scipy.stats.chi2.sf(x, dof)` |
//! | [`fisher_exact`] | `scipy.stats.fisher_exact(table)` (2×2, two-sided) |
//! | [`two_proportion_ztest`] | statsmodels `proportions_ztest` formula with `norm.sf` |
//! | [`psi`], [`psi_sorted`], [`psi_threshold`] | numpy quantile deciles (no scipy PSI) |
//! | [`js_distance`], [`js_distance_binned`] | `scipy.spatial.distance.jensenshannon(p, q)` |
//! | [`hellinger`] | `sqrt(0.5·Σ(√p-√q)²)` with numpy |
//! | [`wasserstein`], [`wasserstein_weighted`] | `scipy.stats.wasserstein_distance` |
//! | [`bh_adjust`] / [`bh_reject`] | `scipy.stats.false_discovery_control(ps, method='bh')` |
//! | [`mean`], [`std`], [`quantile`], [`median`] | `np.mean`, `np.std`, `np.quantile`, `np.median` |
//!
//! # Conventions
//!
//! * **Not computable is `None`.** Every test, distance, distribution and
//!   descriptive function returns `Option`: `None` where scipy/numpy raise or
//!   return NaN — empty samples, NaN anywhere in the input, zero totals,
//!   invalid p-values, zero expected frequencies, `inf - inf`. A returned
//!   value is never NaN. (The one exception is [`pairwise_sum`], a plain sum
//!   in numpy's order: 0 for empty input, NaN in → NaN out.)
//! * **Sort once.** [`SortedSample`] holds a NaN-free ascending copy; the
//!   `*_sorted` variants take it so one window can feed KS, PSI and
//!   Wasserstein without re-sorting.
//! * **Never:** I/O, wall-clock reads, randomness, global state, `unsafe`,
//!   panics on any input.

mod contingency;
mod dd;
mod descriptive;
mod divergence;
mod fisher;
mod kolmogorov;
mod ks;
mod multiple;

use serde::Serialize;

pub use contingency::{
    Chi2Result, GofResult, ZTestResult, chi2_contingency, chi2_sf, chi2_two_sample, chisquare_gof,
    pool_sparse, two_proportion_ztest,
};
pub use descriptive::{mean, median, median_sorted, pairwise_sum, quantile, quantile_sorted, std};
pub use divergence::{
    MAX_HISTOGRAM_BINS, PSI_EPSILON, PSI_MIN_THRESHOLD, PsiResult, SharedHistogram, hellinger,
    js_distance, js_distance_binned, psi, psi_sorted, psi_threshold, shared_histogram, wasserstein,
    wasserstein_normalized, wasserstein_sorted, wasserstein_weighted,
};
pub use fisher::{FisherResult, fisher_exact, small_expected_counts};
pub use kolmogorov::{kstwo_sf, kstwobign_sf, smirnov_sf};
pub use ks::{
    KS_EXACT_MAX_N, KS_EXACT_MAX_WORK, KsMethod, KsPolicy, KsResult, ks_2samp, ks_2samp_policy,
    ks_2samp_sorted, ks_statistic_binned, ks_statistic_sorted, ks_statistic_weighted,
};
pub use multiple::{bh_adjust, bh_reject};

/// A sample sorted ascending, guaranteed free of NaN (±∞ are allowed).
///
/// Build it once per window and pass it to the `*_sorted` functions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SortedSample {
    values: Vec<f64>,
}

impl SortedSample {
    /// Copy and sort `values`. `None` if any value is NaN.
    pub fn new(values: &[f64]) -> Option<Self> {
        Self::from_vec(values.to_vec())
    }

    /// Sort `values` in place (no copy). `None` if any value is NaN.
    pub fn from_vec(mut values: Vec<f64>) -> Option<Self> {
        if values.iter().any(|v| v.is_nan()) {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        Some(SortedSample { values })
    }

    /// The sorted values.
    pub fn as_slice(&self) -> &[f64] {
        &self.values
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `np.quantile(sample, q)` (linear method). `None` if empty or `q ∉ [0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_sorted(&self.values, q)
    }

    /// `np.median(sample)`. `None` if empty.
    pub fn median(&self) -> Option<f64> {
        median_sorted(&self.values)
    }

    /// Consume the sample, returning the sorted values.
    pub fn into_vec(self) -> Vec<f64> {
        self.values
    }
}
