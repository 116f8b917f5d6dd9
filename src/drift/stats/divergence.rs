//! Distribution distances used as drift magnitudes: PSI on reference deciles,
//! Jensen–Shannon distance, Hellinger distance and the 1-D Wasserstein
//! distance (plain, weighted and normalised by the reference spread).
//!
//! Pure functions: no I/O, no wall clock, no panics; `None` = not computable.

use serde::{Deserialize, Serialize};

use super::SortedSample;
use super::descriptive::{pairwise_sum, pairwise_sum_indexed, quantile_sorted, std};

// ---------------------------------------------------------------------------
// PSI
// ---------------------------------------------------------------------------

/// Floor applied to every bin proportion before the PSI logarithm, so that an
/// empty bin contributes a large but finite term. Proportions are floored,
/// not renormalised.
pub const PSI_EPSILON: f64 = 1e-4;

/// Conventional "moderate shift" PSI level; the threshold never goes below it.
pub const PSI_MIN_THRESHOLD: f64 = 0.1;

/// `scipy.stats.chi2.ppf(0.95, df)` for `df = 1..=9` (scipy 1.17.1, printed
/// with `repr`). PSI on reference deciles has at most 10 bins, hence 9 dof.
const CHI2_095: [f64; 9] = [
    3.841458820694124,
    5.991464547107979,
    7.814727903251179,
    9.487729036781154,
    11.070497693516351,
    12.591587243743977,
    14.067140449340169,
    15.50731305586545,
    16.918977604620448,
];

/// Result of [`psi`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PsiResult {
    /// `Σ (c_i - r_i)·ln(c_i / r_i)` over the bins.
    pub psi: f64,
    /// Sample-size-aware alarm level `max(0.1, χ²_{0.95, B-1} / M)`.
    pub threshold: f64,
    /// Number of bins `B` (deduplicated interior edges + 1).
    pub bins: usize,
    /// Interior bin edges (deduplicated reference deciles); the outer bins are
    /// open to -∞ / +∞. A value `x` falls in bin `#{edges <= x}`.
    pub edges: Vec<f64>,
    /// Reference proportions per bin, after the [`PSI_EPSILON`] floor.
    pub reference_proportions: Vec<f64>,
    /// Current proportions per bin, after the [`PSI_EPSILON`] floor.
    pub current_proportions: Vec<f64>,
    /// `M = n_ref·n_cur / (n_ref + n_cur)`, the effective sample size.
    pub effective_n: f64,
}

/// Population Stability Index of `current` against `reference`, binned on
/// the reference deciles (sorts copies; see [`psi_sorted`]).
pub fn psi(reference: &[f64], current: &[f64]) -> Option<PsiResult> {
    psi_sorted(&SortedSample::new(reference)?, &SortedSample::new(current)?)
}

/// PSI on pre-sorted samples.
///
/// * Edges: `np.quantile(reference, [0.1, 0.2, ..., 0.9])` (linear method,
///   `q = k/10`), deduplicated and sorted like `np.unique`, plus open end bins.
/// * Bin of `x`: number of edges `<= x` (`np.digitize` / `searchsorted(..., 'right')`).
/// * Proportions: `max(count / n, 1e-4)` ([`PSI_EPSILON`]).
/// * PSI: `Σ (c - r)·ln(c / r)` (numpy pairwise sum).
/// * Threshold: see [`psi_threshold`].
///
/// `None` if either sample is empty or an edge is NaN (infinite data).
pub fn psi_sorted(reference: &SortedSample, current: &SortedSample) -> Option<PsiResult> {
    let (rs, cs) = (reference.as_slice(), current.as_slice());
    if rs.is_empty() || cs.is_empty() {
        return None;
    }
    let mut edges = Vec::with_capacity(9);
    for k in 1..=9 {
        edges.push(quantile_sorted(rs, k as f64 / 10.0)?);
    }
    if edges.iter().any(|e| e.is_nan()) {
        return None;
    }
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let bins = edges.len() + 1;
    let reference_proportions = bin_proportions(rs, &edges);
    let current_proportions = bin_proportions(cs, &edges);
    let terms: Vec<f64> = current_proportions
        .iter()
        .zip(&reference_proportions)
        .map(|(c, r)| (c - r) * (c / r).ln())
        .collect();
    let psi = pairwise_sum(&terms);
    let effective_n = effective_n(rs.len(), cs.len());
    let threshold = psi_threshold(bins, rs.len(), cs.len())?;
    Some(PsiResult {
        psi,
        threshold,
        bins,
        edges,
        reference_proportions,
        current_proportions,
        effective_n,
    })
}

/// Floored proportions of a sorted sample in the bins `[e_{i-1}, e_i)`.
fn bin_proportions(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let n = sorted.len() as f64;
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut below_prev = 0usize;
    for e in edges.iter().map(Some).chain(std::iter::once(None)) {
        let below = match e {
            Some(e) => sorted.partition_point(|x| x < e),
            None => sorted.len(),
        };
        out.push(((below - below_prev) as f64 / n).max(PSI_EPSILON));
        below_prev = below;
    }
    out
}

fn effective_n(n_ref: usize, n_cur: usize) -> f64 {
    (n_ref as f64 * n_cur as f64) / (n_ref as f64 + n_cur as f64)
}

/// Sample-size-aware PSI alarm level `max(0.1, χ²_{0.95, B-1} / M)` with
/// `M = n_ref·n_cur / (n_ref + n_cur)`.
///
/// Why: for two independent samples binned on fixed edges, PSI is the
/// symmetrised Kullback–Leibler (Jeffreys) divergence between the binned
/// proportions and, under "no drift", `PSI · M` is asymptotically
/// `χ²(B-1)` (Yurdakul & Naranjo, "Statistical properties of the population
/// stability index", J. Risk Model Validation 14(4), 2020; B. Yurdakul, PhD
/// thesis, Western Michigan Univ., 2018). With edges taken at reference
/// quantiles the reference proportions are ~1/B by construction, but the
/// edges themselves are random with variance `p(1-p)/n_ref`, which is exactly
/// the `1/n_ref` term that `1/M = 1/n_ref + 1/n_cur` keeps. The 0.1 floor is
/// the industry rule of thumb, so large samples don't alarm on tiny shifts.
///
/// `None` unless `2 <= bins <= 10` and both sizes are positive.
pub fn psi_threshold(bins: usize, n_ref: usize, n_cur: usize) -> Option<f64> {
    if !(2..=10).contains(&bins) || n_ref == 0 || n_cur == 0 {
        return None;
    }
    Some(PSI_MIN_THRESHOLD.max(CHI2_095[bins - 2] / effective_n(n_ref, n_cur)))
}

// ---------------------------------------------------------------------------
// Discrete distributions: Jensen–Shannon, Hellinger
// ---------------------------------------------------------------------------

/// Validate two count/probability vectors and return their pairwise sums.
fn discrete_sums(p: &[f64], q: &[f64]) -> Option<(f64, f64)> {
    if p.is_empty() || p.len() != q.len() {
        return None;
    }
    let bad = |v: &f64| !(v.is_finite() && *v >= 0.0);
    if p.iter().any(bad) || q.iter().any(bad) {
        return None;
    }
    let (sp, sq) = (pairwise_sum(p), pairwise_sum(q));
    if !(sp > 0.0 && sq > 0.0 && sp.is_finite() && sq.is_finite()) {
        return None;
    }
    Some((sp, sq))
}

/// scipy `rel_entr(x, y)` for `x, y >= 0`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen–Shannon *distance* (natural log, range `[0, sqrt(ln 2)]`) between
/// two discrete distributions given as non-negative weights over the same
/// categories — `scipy.spatial.distance.jensenshannon(p, q)`. Each input is
/// normalised by its own sum first.
///
/// `None` if lengths differ or are 0, a weight is negative/non-finite, or a
/// total is 0. Where rounding makes the divergence a tiny negative number,
/// scipy returns NaN (sqrt of a negative); this returns 0.
pub fn js_distance(p: &[f64], q: &[f64]) -> Option<f64> {
    let (sp, sq) = discrete_sums(p, q)?;
    // Two passes over the same normalised values keep numpy's pairwise order
    // without materialising p/sum, q/sum and m.
    let left = pairwise_sum_indexed(0, p.len(), &|i| {
        let (a, b) = (p[i] / sp, q[i] / sq);
        rel_entr(a, (a + b) / 2.0)
    });
    let right = pairwise_sum_indexed(0, p.len(), &|i| {
        let (a, b) = (p[i] / sp, q[i] / sq);
        rel_entr(b, (a + b) / 2.0)
    });
    let js = left + right;
    if js.is_nan() {
        return None;
    }
    Some((js / 2.0).max(0.0).sqrt())
}

/// Hellinger distance `sqrt(0.5 · Σ (√p_i - √q_i)²)` between two discrete
/// distributions, each normalised by its own sum first (range `[0, 1]`).
///
/// `None` under the same conditions as [`js_distance`].
pub fn hellinger(p: &[f64], q: &[f64]) -> Option<f64> {
    let (sp, sq) = discrete_sums(p, q)?;
    let s = pairwise_sum_indexed(0, p.len(), &|i| {
        let d = (p[i] / sp).sqrt() - (q[i] / sq).sqrt();
        d * d
    });
    Some((0.5 * s).sqrt())
}

/// Largest bin count [`shared_histogram`] accepts (it allocates per bin).
pub const MAX_HISTOGRAM_BINS: usize = 1 << 20;

/// Two samples counted on shared equal-width bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedHistogram {
    /// `bins + 1` edges: `np.linspace(lo, hi, bins + 1)` with `lo`/`hi` the
    /// minimum/maximum over both samples.
    pub edges: Vec<f64>,
    /// Reference counts per bin.
    pub reference: Vec<f64>,
    /// Current counts per bin.
    pub current: Vec<f64>,
}

/// Count both samples on `bins` shared equal-width bins spanning their joint
/// range. Bins are `[e_i, e_{i+1})` except the last, `[e_{b-1}, e_b]`, which
/// is `np.histogram(x, edges)`; concretely the bin of `x` is the number of
/// interior edges `<= x`. If every value is identical all mass lands in the
/// last bin of both samples.
///
/// `None` if a sample is empty, `bins == 0`, or a value is not finite.
pub fn shared_histogram(
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> Option<SharedHistogram> {
    if reference.is_empty() || current.is_empty() || bins == 0 {
        return None;
    }
    let all = || reference.iter().chain(current);
    if all().any(|v| !v.is_finite()) {
        return None;
    }
    let lo = all().copied().fold(f64::INFINITY, f64::min);
    let hi = all().copied().fold(f64::NEG_INFINITY, f64::max);
    // np.linspace(lo, hi, bins + 1), including its step == 0 special case.
    let div = bins as f64;
    let delta = hi - lo;
    let step = delta / div;
    let mut edges: Vec<f64> = (0..=bins)
        .map(|i| {
            if step == 0.0 {
                (i as f64 / div) * delta + lo
            } else {
                i as f64 * step + lo
            }
        })
        .collect();
    edges[bins] = hi;
    let interior = &edges[1..bins];
    let count = |xs: &[f64]| {
        let mut c = vec![0.0; bins];
        for &x in xs {
            c[interior.partition_point(|e| *e <= x)] += 1.0;
        }
        c
    };
    let (reference, current) = (count(reference), count(current));
    Some(SharedHistogram {
        edges,
        reference,
        current,
    })
}

/// Jensen–Shannon distance between two numeric samples binned with
/// [`shared_histogram`] (`bins` equal-width bins over the joint range).
pub fn js_distance_binned(reference: &[f64], current: &[f64], bins: usize) -> Option<f64> {
    let h = shared_histogram(reference, current, bins)?;
    js_distance(&h.reference, &h.current)
}

// ---------------------------------------------------------------------------
// Wasserstein
// ---------------------------------------------------------------------------

/// Neumaier-compensated running sum (all Wasserstein terms are >= 0, so this
/// is at least as accurate as numpy's dot product, without a buffer).
#[derive(Default)]
struct KahanSum {
    sum: f64,
    comp: f64,
}

impl KahanSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }
    fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

/// 1-D Wasserstein-1 distance between two empirical distributions,
/// `scipy.stats.wasserstein_distance(u, v)` (sorts copies).
///
/// `None` if a sample is empty, has NaN, or the result is NaN (infinite data).
pub fn wasserstein(u: &[f64], v: &[f64]) -> Option<f64> {
    wasserstein_sorted(&SortedSample::new(u)?, &SortedSample::new(v)?)
}

/// [`wasserstein`] on pre-sorted samples: `∫ |F_u - F_v| dx`, evaluated
/// between consecutive distinct pooled values.
pub fn wasserstein_sorted(u: &SortedSample, v: &SortedSample) -> Option<f64> {
    let (a, b) = (u.as_slice(), v.as_slice());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev: Option<(f64, f64)> = None; // (value, |F_u - F_v| at value)
    let mut sum = KahanSum::default();
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        if let Some((px, pd)) = prev {
            sum.add(pd * (x - px));
        }
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = Some((x, (i as f64 / na - j as f64 / nb).abs()));
    }
    let w = sum.value();
    (!w.is_nan()).then_some(w)
}

/// Weighted 1-D Wasserstein-1 distance,
/// `scipy.stats.wasserstein_distance(u, v, u_weights, v_weights)`.
///
/// `None` if a sample is empty, lengths of values and weights differ, a
/// value is NaN, a weight is negative/non-finite, or a weight total is not
/// positive (scipy raises for all of these).
pub fn wasserstein_weighted(
    u: &[f64],
    u_weights: &[f64],
    v: &[f64],
    v_weights: &[f64],
) -> Option<f64> {
    let (us, ucw) = super::ks::sorted_cumweights(u, u_weights)?;
    let (vs, vcw) = super::ks::sorted_cumweights(v, v_weights)?;
    let mut prev: Option<(f64, f64)> = None;
    let mut sum = KahanSum::default();
    super::ks::walk_weighted_ecdfs((&us, &ucw), (&vs, &vcw), |x, fu, fv| {
        if let Some((px, pd)) = prev {
            sum.add(pd * (x - px));
        }
        prev = Some((x, (fu - fv).abs()));
    });
    let w = sum.value();
    (!w.is_nan()).then_some(w)
}

/// Wasserstein distance divided by the reference's population standard
/// deviation (`np.std(reference)`, ddof = 0), making it unit-free.
///
/// `None` when [`wasserstein`] is `None` or the reference has zero spread
/// (`std == 0`: there is no scale to normalise by; use the raw distance).
pub fn wasserstein_normalized(reference: &[f64], current: &[f64]) -> Option<f64> {
    let w = wasserstein(reference, current)?;
    let s = std(reference)?;
    if !(s > 0.0 && s.is_finite()) {
        return None;
    }
    Some(w / s)
}
