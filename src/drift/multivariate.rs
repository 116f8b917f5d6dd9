//! Multivariate drift: changes in how session features move *together*, which
//! per-feature (univariate) tests cannot see.
//!
//! Each session is one row of numeric features (output tokens, duration, cost,
//! tool calls, turns, refusal 0/1, resolved 0/1, quality score, context
//! utilisation, …). [`fit`] learns a [`MultivariateModel`] from a reference
//! (baseline) sample; [`MultivariateModel::score`] compares a current window
//! with it through two detectors:
//!
//! 1. **PCA reconstruction error** — NannyML's "data reconstruction drift".
//!    The reference is standardized, a PCA keeps the fewest components that
//!    explain at least 65 % of its variance, and every row is projected onto
//!    them and back. The Euclidean distance between a standardized row and its
//!    reconstruction is small while the window keeps the reference's
//!    correlation structure and grows when it breaks (for example two features
//!    whose correlation flips sign while both marginals stay put). The window
//!    statistic is the mean error of its rows; alert thresholds are
//!    `mean ± 3·σ` of the mean error of `chunks` consecutive reference chunks.
//! 2. **Behaviour-cluster mix** — k-means (k = 6) on the standardized reference
//!    defines behaviour clusters; the reference and current cluster histograms
//!    are compared with Pearson's χ² test of the 2×k contingency table.
//!
//! # Conventions
//!
//! * **Missing values.** NaN (and ±∞, which no feature can legitimately take)
//!   are missing and imputed with the reference column mean, as NannyML does.
//!   After standardization an imputed value is exactly 0. A column that turns
//!   missing still moves the reconstruction error when it was correlated with
//!   others: losing a signal is itself a change in behaviour.
//! * **Standardization** uses the reference mean and the population standard
//!   deviation (ddof 0, like scikit-learn's `StandardScaler`) of the imputed
//!   column. A (near-)constant column gets scale 1 so it stays finite: it
//!   carries no reference variance and only contributes if it moves later.
//!   Standardized values are clamped to ±[`Z_LIMIT`] so that no finite input
//!   can make a score NaN.
//! * **Thresholds** are calibrated for windows of about
//!   [`ReconstructionThresholds::chunk_rows`] rows (reference rows / `chunks`):
//!   the spread of a mean shrinks with the number of rows averaged, so much
//!   smaller windows alarm more often and much larger ones less. Set
//!   [`MultivariateParams::window_adjusted_band`] to rescale the band to each
//!   window's size instead.
//! * **Persistence.** The fitted model holds plain vectors (matrices are
//!   [`StoredMatrix`], row-major) and derives serde; scoring needs nothing
//!   else — no linfa object is kept.
//! * **Determinism.** Fitting uses seeded RNGs and no order-dependent parallel
//!   reduction (linfa's k-means parallelises only per-row assignments), so the
//!   same reference gives the same model on a given machine (linfa's
//!   linear algebra may pick CPU-specific kernels, so the last bits of a fit
//!   can differ across CPUs). Scoring is plain sequential `f64` arithmetic:
//!   the same model and window give bit-identical results everywhere.
//! * **Never:** I/O, wall-clock reads, global state, `unsafe`, panics on any
//!   input (a malformed deserialized model is rejected with
//!   [`MultivariateError::CorruptModel`]).
//!
//! # Example
//!
//! ```
//! use ndarray::Array2;
//! use slawatch::drift::multivariate::{MultivariateModel, MultivariateParams, fit};
//!
//! // Sessions × (output tokens, cost, quality); cost follows tokens.
//! let session = |i: usize, coupled: bool| {
//!     let tokens = 200.0 + ((i * 7919) % 997) as f64;
//!     let other = 200.0 + ((i * 104_729) % 991) as f64;
//!     let cost = 2e-5 * if coupled { tokens } else { other };
//!     [tokens, cost, 0.5 + ((i * 31) % 17) as f64 / 40.0]
//! };
//! let rows = |n: usize, coupled: bool| {
//!     Array2::from_shape_fn((n, 3), |(i, j)| session(i, coupled)[j])
//! };
//! let names = ["output_tokens", "cost_usd", "quality"].map(String::from);
//! let model = fit(&rows(2000, true), &names, &MultivariateParams::default())?;
//!
//! // Persisted with the baseline, restored later: scoring needs only this.
//! let restored: MultivariateModel = serde_json::from_str(&serde_json::to_string(&model)?)?;
//! let verdict = restored.score(&rows(200, false))?;
//! assert!(verdict.pca_drift); // cost stopped following tokens
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans;
use linfa_reduction::Pca;
use ndarray::{Array2, ArrayBase, Axis, Data, Ix2, Slice};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::drift::stats::{chi2_two_sample, pool_sparse};

/// Version of the persisted [`MultivariateModel`] layout; bumped on any change
/// that an older reader would misinterpret.
pub const MODEL_VERSION: u32 = 1;

/// Largest standardized magnitude: squares and sums of a few hundred such
/// values stay far from `f64` overflow.
pub const Z_LIMIT: f64 = 1e100;

/// Why a model could not be fitted or a window not scored.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum MultivariateError {
    /// The reference has fewer rows than the fit needs
    /// (`max(2·columns, 2·chunks, clusters)`).
    #[error("too few reference rows: {rows}, need at least {required}")]
    InsufficientData {
        /// Rows supplied.
        rows: usize,
        /// Rows required.
        required: usize,
    },
    /// The reference has no feature column.
    #[error("no feature columns")]
    NoFeatures,
    /// `feature_names` does not name every column exactly once.
    #[error("{names} feature names for {columns} columns")]
    FeatureCountMismatch {
        /// Names supplied.
        names: usize,
        /// Columns in the reference.
        columns: usize,
    },
    /// A scored window does not have the model's columns.
    #[error("window has {got} columns, the model was fitted on {expected}")]
    ColumnCountMismatch {
        /// Columns the model was fitted on.
        expected: usize,
        /// Columns in the window.
        got: usize,
    },
    /// A reference column has no finite value, so it has no mean to impute with.
    #[error("feature `{0}` has no finite value in the reference")]
    EmptyFeature(String),
    /// A reference column's mean or spread overflows `f64` (values near ±1e308).
    #[error("feature `{0}` overflows f64 in the reference statistics")]
    Overflow(String),
    /// Every reference column is constant: there is no structure to learn.
    #[error("the reference has no variance: every feature is constant")]
    NoVariance,
    /// The current window has no row.
    #[error("the current window is empty")]
    EmptyWindow,
    /// A parameter is out of its domain.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Field of [`MultivariateParams`].
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The model was persisted by an incompatible version.
    #[error("model version {found} is not supported (this build reads {expected})")]
    UnsupportedVersion {
        /// Version found in the model.
        found: u32,
        /// [`MODEL_VERSION`].
        expected: u32,
    },
    /// The (deserialized) model is internally inconsistent.
    #[error("corrupt model: {0}")]
    CorruptModel(String),
    /// linfa's PCA failed.
    #[error("PCA fit failed: {0}")]
    Pca(String),
    /// linfa's k-means failed.
    #[error("k-means fit failed: {0}")]
    KMeans(String),
}

/// Tuning of [`fit`]. [`Default`] gives NannyML's defaults for the PCA detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MultivariateParams {
    /// Fraction of the reference variance the kept components must explain,
    /// in `(0, 1]`. Default 0.65 (NannyML).
    pub variance_explained: f64,
    /// Consecutive reference chunks used to calibrate the thresholds, ≥ 2.
    /// Default 10 (NannyML).
    pub chunks: usize,
    /// Threshold half-width in standard deviations of the chunk means, > 0.
    /// Default 3 (NannyML).
    pub threshold_sigmas: f64,
    /// Widen or narrow the alert band to the window's size: the half-width is
    /// multiplied by `√(chunk_rows / window_rows)`, the ratio of the standard
    /// errors of the two means. Default false (NannyML), which assumes windows
    /// as large as the reference chunks: smaller windows then alarm more often
    /// (≈ 14 % at a fifth of the chunk size, measured), larger ones less.
    pub window_adjusted_band: bool,
    /// Number of behaviour clusters k, ≥ 2. Default 6.
    pub clusters: usize,
    /// k-means restarts (k-means++ initialisations); the lowest-inertia fit
    /// wins. Default 3 (linfa's own default is 10): each restart costs a full
    /// k-means run, and the χ² test is valid for any fixed partition.
    pub kmeans_runs: usize,
    /// k-means is fitted on at most this many reference rows, taken evenly
    /// spaced (deterministic), ≥ `clusters`. Default 10 000. Centroids only
    /// need to partition the feature space, which a few thousand rows do as
    /// well as a million, and this bounds the fit time of huge baselines;
    /// every reference row is still counted in the reference histogram.
    pub kmeans_max_rows: usize,
    /// Iteration cap of one k-means run. Default 300.
    pub kmeans_max_iterations: u64,
    /// k-means stops when its centroids move less than this. Default 1e-4.
    pub kmeans_tolerance: f64,
    /// Seed of the k-means RNG: fixed, so a refit of the same baseline gives
    /// the same clusters.
    pub seed: u64,
}

impl Default for MultivariateParams {
    fn default() -> Self {
        MultivariateParams {
            variance_explained: 0.65,
            chunks: 10,
            threshold_sigmas: 3.0,
            window_adjusted_band: false,
            clusters: 6,
            kmeans_runs: 3,
            kmeans_max_rows: 10_000,
            kmeans_max_iterations: 300,
            kmeans_tolerance: 1e-4,
            seed: 0x51a_3a7c4,
        }
    }
}

impl MultivariateParams {
    fn validate(&self) -> Result<(), MultivariateError> {
        let invalid = |name, reason: &str| {
            Err(MultivariateError::InvalidParameter {
                name,
                reason: reason.to_owned(),
            })
        };
        if !(self.variance_explained > 0.0 && self.variance_explained <= 1.0) {
            return invalid("variance_explained", "must be in (0, 1]");
        }
        if self.chunks < 2 {
            return invalid("chunks", "must be at least 2");
        }
        if !(self.threshold_sigmas > 0.0 && self.threshold_sigmas.is_finite()) {
            return invalid("threshold_sigmas", "must be finite and > 0");
        }
        if self.clusters < 2 {
            return invalid("clusters", "must be at least 2");
        }
        if self.kmeans_runs == 0 {
            return invalid("kmeans_runs", "must be at least 1");
        }
        if self.kmeans_max_rows < self.clusters {
            return invalid("kmeans_max_rows", "must be at least `clusters`");
        }
        if self.kmeans_max_iterations == 0 {
            return invalid("kmeans_max_iterations", "must be at least 1");
        }
        if !(self.kmeans_tolerance > 0.0 && self.kmeans_tolerance.is_finite()) {
            return invalid("kmeans_tolerance", "must be finite and > 0");
        }
        Ok(())
    }
}

/// A dense row-major matrix in a serde-friendly form (`rows × cols` values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows · cols` values, row after row.
    pub data: Vec<f64>,
}

impl StoredMatrix {
    fn from_array(a: &Array2<f64>) -> Self {
        StoredMatrix {
            rows: a.nrows(),
            cols: a.ncols(),
            data: a.rows().into_iter().flatten().copied().collect(),
        }
    }

    /// Row `i` (panics when out of range; callers index validated models only).
    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The matrix as an ndarray, `None` if `data` does not hold `rows·cols` values.
    pub fn to_array(&self) -> Option<Array2<f64>> {
        Array2::from_shape_vec((self.rows, self.cols), self.data.clone()).ok()
    }

    fn check(&self, what: &str, rows: usize, cols: usize) -> Result<(), MultivariateError> {
        if self.rows != rows || self.cols != cols || self.data.len() != rows * cols {
            return Err(MultivariateError::CorruptModel(format!(
                "{what} is {}×{} with {} values, expected {rows}×{cols}",
                self.rows,
                self.cols,
                self.data.len()
            )));
        }
        all_finite(what, &self.data)
    }
}

/// Per-column centring and scaling learnt from the reference; also the
/// imputation values for missing entries (the column means).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Reference mean of each column over its finite values.
    pub mean: Vec<f64>,
    /// Population standard deviation (ddof 0) of each imputed reference
    /// column, or 1 for a (near-)constant column.
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Learn means and scales from `reference` (rows = sessions). Errors with
    /// [`MultivariateError::EmptyFeature`] when a column has no finite value
    /// and [`MultivariateError::Overflow`] when its statistics overflow.
    pub fn fit<S: Data<Elem = f64>>(
        reference: &ArrayBase<S, Ix2>,
        feature_names: &[String],
    ) -> Result<Self, MultivariateError> {
        let n = reference.nrows();
        let name_of = |j: usize| {
            feature_names
                .get(j)
                .cloned()
                .unwrap_or_else(|| j.to_string())
        };
        let mut mean = Vec::with_capacity(reference.ncols());
        let mut scale = Vec::with_capacity(reference.ncols());
        for (j, column) in reference.columns().into_iter().enumerate() {
            let (mut sum, mut count) = (0.0, 0usize);
            for &v in column.iter().filter(|v| v.is_finite()) {
                sum += v;
                count += 1;
            }
            if count == 0 {
                return Err(MultivariateError::EmptyFeature(name_of(j)));
            }
            let m = sum / count as f64;
            // Imputed entries sit at the mean and add nothing to the sum of
            // squares, but they do count in n (impute first, then scale).
            let ss: f64 = column
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| (v - m) * (v - m))
                .sum();
            let sd = (ss / n as f64).sqrt();
            if !(m.is_finite() && sd.is_finite()) {
                return Err(MultivariateError::Overflow(name_of(j)));
            }
            // Like scikit-learn's constant-feature test: a spread within the
            // rounding error of summing n values (≈ n·ε·|mean|, e.g. a constant
            // 0.05 column whose mean is not exactly 0.05) counts as zero, so it
            // is not blown up into ±huge values.
            let constant = sd == 0.0 || sd <= n as f64 * f64::EPSILON * m.abs();
            scale.push(if constant { 1.0 } else { sd });
            mean.push(m);
        }
        Ok(Standardizer { mean, scale })
    }

    /// Standardize one value of column `j`; missing (non-finite) → 0, the
    /// standardized reference mean. The result is clamped to ±[`Z_LIMIT`] so
    /// an absurd outlier stays finite (and alarms) instead of turning the
    /// window's error into NaN, which would compare as "no drift".
    #[inline]
    fn z(&self, j: usize, v: f64) -> f64 {
        if v.is_finite() {
            ((v - self.mean[j]) / self.scale[j]).clamp(-Z_LIMIT, Z_LIMIT)
        } else {
            0.0
        }
    }

    /// Standardize `x` (rows = sessions), imputing missing values.
    pub fn transform<S: Data<Elem = f64>>(
        &self,
        x: &ArrayBase<S, Ix2>,
    ) -> Result<Array2<f64>, MultivariateError> {
        if x.ncols() != self.mean.len() {
            return Err(MultivariateError::ColumnCountMismatch {
                expected: self.mean.len(),
                got: x.ncols(),
            });
        }
        let mut z = Array2::zeros(x.raw_dim());
        for (mut zr, xr) in z.rows_mut().into_iter().zip(x.rows()) {
            for (j, (zv, &xv)) in zr.iter_mut().zip(xr.iter()).enumerate() {
                *zv = self.z(j, xv);
            }
        }
        Ok(z)
    }
}

/// The kept principal components of the standardized reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PcaModel {
    /// Mean of the standardized reference (≈ 0; kept for exactness).
    pub mean: Vec<f64>,
    /// `n_components × features`, orthonormal rows, by decreasing variance.
    pub components: StoredMatrix,
    /// Number of kept components: the fewest whose cumulative explained
    /// variance ratio reaches [`MultivariateParams::variance_explained`].
    pub n_components: usize,
    /// Explained variance ratio of every component PCA found (not only the
    /// kept ones), relative to the total variance of the standardized
    /// reference, decreasing.
    pub explained_variance_ratio: Vec<f64>,
}

/// Alert band of the mean reconstruction error, from reference chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconstructionThresholds {
    /// Mean reconstruction error of each consecutive reference chunk. Chunk
    /// `i` holds rows `[i·n/c, (i+1)·n/c)`, so sizes differ by at most one.
    pub chunk_errors: Vec<f64>,
    /// Nominal rows per chunk (`n / chunks`, rounded down): the window size
    /// the band is calibrated for.
    pub chunk_rows: usize,
    /// Mean of `chunk_errors`.
    pub mean: f64,
    /// Population standard deviation (ddof 0, as NannyML's `np.std`) of
    /// `chunk_errors`.
    pub std: f64,
    /// `mean + sigmas·std`: a window above it has drifted.
    pub upper: f64,
    /// `max(0, mean − sigmas·std)`, clipped at 0 like NannyML because an error
    /// is never negative. Reported only; a low error is not called drift.
    pub lower: f64,
    /// [`MultivariateParams::threshold_sigmas`].
    pub sigmas: f64,
    /// [`MultivariateParams::window_adjusted_band`].
    pub window_adjusted: bool,
}

impl ReconstructionThresholds {
    /// `(lower, upper)` band for a window of `rows` rows: [`Self::lower`] and
    /// [`Self::upper`], or with `window_adjusted` the half-width scaled by
    /// `√(chunk_rows / rows)`.
    pub fn band(&self, rows: usize) -> (f64, f64) {
        if !self.window_adjusted || rows == 0 || rows == self.chunk_rows {
            return (self.lower, self.upper);
        }
        let half = self.sigmas * self.std * (self.chunk_rows as f64 / rows as f64).sqrt();
        ((self.mean - half).max(0.0), self.mean + half)
    }
}

/// The behaviour clusters of the standardized reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterModel {
    /// `k × features` k-means centroids in standardized space, ordered by
    /// decreasing reference count (cluster 0 is the most common behaviour).
    pub centroids: StoredMatrix,
    /// Reference rows nearest to each centroid.
    pub reference_counts: Vec<u64>,
}

/// Everything scoring needs, fitted on a reference; persist it with the
/// baseline (serde) and score windows from the deserialized value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultivariateModel {
    /// Layout version, [`MODEL_VERSION`] when fitted by this build.
    pub version: u32,
    /// Column names, in column order.
    pub feature_names: Vec<String>,
    /// Reference rows the model was fitted on.
    pub n_reference: usize,
    /// Parameters of the fit (provenance; scoring reads only the fitted parts).
    pub params: MultivariateParams,
    /// Centring, scaling and imputation values.
    pub standardizer: Standardizer,
    /// Kept principal components.
    pub pca: PcaModel,
    /// Reconstruction-error alert band.
    pub thresholds: ReconstructionThresholds,
    /// Behaviour clusters and the reference mix.
    pub clusters: ClusterModel,
}

/// Verdict on one current window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultivariateResult {
    /// Mean PCA reconstruction error of the window's rows.
    pub reconstruction_error: f64,
    /// Upper end of [`ReconstructionThresholds::band`] for this window.
    pub upper_threshold: f64,
    /// Lower end of [`ReconstructionThresholds::band`] for this window.
    pub lower_threshold: f64,
    /// `reconstruction_error > upper_threshold`.
    pub pca_drift: bool,
    /// Pearson χ² of the 2×k reference/current cluster-count table (clusters
    /// empty on both sides dropped, no Yates correction).
    pub cluster_chi2: f64,
    /// Upper-tail p-value of `cluster_chi2`; 1 when `cluster_dof` is 0.
    pub cluster_p_value: f64,
    /// Degrees of freedom: non-empty clusters − 1.
    pub cluster_dof: usize,
    /// Reference share of each cluster (sums to 1).
    pub reference_mix: Vec<f64>,
    /// Current share of each cluster (sums to 1).
    pub current_mix: Vec<f64>,
    /// Rows in the current window.
    pub n_current: usize,
}

/// Fit a [`MultivariateModel`] on `reference` (rows = sessions, columns =
/// features named by `feature_names`).
///
/// Needs at least `max(2·columns, 2·chunks, clusters)` rows — enough for a
/// covariance estimate, for every threshold chunk to average two rows, and
/// for k-means to seed every cluster — else
/// [`MultivariateError::InsufficientData`].
pub fn fit<S: Data<Elem = f64>>(
    reference: &ArrayBase<S, Ix2>,
    feature_names: &[String],
    params: &MultivariateParams,
) -> Result<MultivariateModel, MultivariateError> {
    params.validate()?;
    let (n, p) = reference.dim();
    if p == 0 {
        return Err(MultivariateError::NoFeatures);
    }
    if feature_names.len() != p {
        return Err(MultivariateError::FeatureCountMismatch {
            names: feature_names.len(),
            columns: p,
        });
    }
    let required = (2 * p).max(2 * params.chunks).max(params.clusters);
    if n < required {
        return Err(MultivariateError::InsufficientData { rows: n, required });
    }

    let standardizer = Standardizer::fit(reference, feature_names)?;
    let z = standardizer.transform(reference)?;
    let pca = fit_pca(&z, params.variance_explained)?;
    let clusters = fit_clusters(&z, params)?;

    let mut model = MultivariateModel {
        version: MODEL_VERSION,
        feature_names: feature_names.to_vec(),
        n_reference: n,
        params: params.clone(),
        standardizer,
        pca,
        // Filled in below: the band needs the model's own error function.
        thresholds: ReconstructionThresholds {
            chunk_errors: Vec::new(),
            chunk_rows: 0,
            mean: 0.0,
            std: 0.0,
            upper: 0.0,
            lower: 0.0,
            sigmas: params.threshold_sigmas,
            window_adjusted: params.window_adjusted_band,
        },
        clusters,
    };

    // The reference is scored by the very code path that scores windows, so
    // the band and the window statistic are comparable bit for bit.
    let mut scratch = Scratch::new(p);
    let mut errors = Vec::with_capacity(n);
    let mut counts = vec![0u64; params.clusters];
    for row in reference.rows() {
        let (error, cluster) = model.row_error(row.iter().copied(), &mut scratch);
        errors.push(error);
        counts[cluster] += 1;
    }
    model.thresholds = thresholds(&errors, params);
    reorder_clusters(&mut model.clusters, counts);
    Ok(model)
}

/// PCA on the standardized reference, keeping the fewest components that
/// reach `variance_explained`.
fn fit_pca(z: &Array2<f64>, variance_explained: f64) -> Result<PcaModel, MultivariateError> {
    let p = z.ncols();
    let n = z.nrows() as f64;
    let mean: Vec<f64> = z.columns().into_iter().map(|c| c.sum() / n).collect();
    // Total variance straight from the data: linfa normalises its
    // `explained_variance_ratio` over the components it returned, and drops
    // numerically-zero ones, so its ratios would not be fractions of the total.
    let total: f64 = z
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, m)| (v - m) * (v - m))
                .sum::<f64>()
        })
        .sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(MultivariateError::NoVariance);
    }
    // Ask for every component: with p columns LOBPCG then spans the whole
    // space and is exact, and the cumulative ratio needs them all anyway.
    let fitted = Pca::params(p)
        .fit(&DatasetBase::from(z.clone()))
        .map_err(|e| MultivariateError::Pca(e.to_string()))?;
    let ratio: Vec<f64> = fitted
        .singular_values()
        .iter()
        .map(|s| s * s / total)
        .collect();
    if ratio.is_empty() {
        return Err(MultivariateError::NoVariance);
    }
    let mut cumulative = 0.0;
    let mut n_components = ratio.len();
    for (i, r) in ratio.iter().enumerate() {
        cumulative += r;
        // Tolerance so that e.g. 0.65 reached up to rounding counts as reached.
        if cumulative >= variance_explained - 1e-12 {
            n_components = i + 1;
            break;
        }
    }
    let components = fitted
        .components()
        .slice_axis(Axis(0), Slice::from(..n_components))
        .to_owned();
    Ok(PcaModel {
        mean,
        components: StoredMatrix::from_array(&components),
        n_components,
        explained_variance_ratio: ratio,
    })
}

/// k-means on the standardized reference with a seeded RNG.
fn fit_clusters(
    z: &Array2<f64>,
    params: &MultivariateParams,
) -> Result<ClusterModel, MultivariateError> {
    let n = z.nrows();
    let sample = if n > params.kmeans_max_rows {
        let m = params.kmeans_max_rows;
        // Evenly spaced rather than random: reproducible without another RNG
        // and spread over the whole (time-ordered) reference.
        let rows: Vec<usize> = (0..m).map(|i| i * n / m).collect();
        z.select(Axis(0), &rows)
    } else {
        z.clone()
    };
    let rng = Xoshiro256Plus::seed_from_u64(params.seed);
    // k-means++ initialisation (linfa's default) is sequential, so with a
    // fixed seed the fit is reproducible; the parallel k-means|| is not.
    let fitted = KMeans::params_with_rng(params.clusters, rng)
        .n_runs(params.kmeans_runs)
        .max_n_iterations(params.kmeans_max_iterations)
        .tolerance(params.kmeans_tolerance)
        .fit(&DatasetBase::from(sample))
        .map_err(|e| MultivariateError::KMeans(e.to_string()))?;
    Ok(ClusterModel {
        centroids: StoredMatrix::from_array(fitted.centroids()),
        // Counted by `fit` with the scoring code's own assignment: linfa's
        // counts come from the last restart, not necessarily the kept one.
        reference_counts: vec![0; params.clusters],
    })
}

/// Sort clusters by decreasing reference count (ties: original order) so that
/// reports read "cluster 0 = the most common behaviour" and do not depend on
/// the order k-means++ happened to seed them in.
fn reorder_clusters(clusters: &mut ClusterModel, counts: Vec<u64>) {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let old = clusters.centroids.clone();
    clusters.centroids.data = order.iter().flat_map(|&i| old.row(i).to_vec()).collect();
    clusters.reference_counts = order.iter().map(|&i| counts[i]).collect();
}

/// NannyML's standard-deviation threshold over consecutive chunk means.
fn thresholds(errors: &[f64], params: &MultivariateParams) -> ReconstructionThresholds {
    let (chunks, sigmas) = (params.chunks, params.threshold_sigmas);
    let n = errors.len();
    let chunk_errors: Vec<f64> = (0..chunks)
        .map(|i| {
            let chunk = &errors[i * n / chunks..(i + 1) * n / chunks];
            chunk.iter().sum::<f64>() / chunk.len() as f64
        })
        .collect();
    let c = chunks as f64;
    let mean = chunk_errors.iter().sum::<f64>() / c;
    let std = (chunk_errors
        .iter()
        .map(|e| (e - mean) * (e - mean))
        .sum::<f64>()
        / c)
        .sqrt();
    ReconstructionThresholds {
        chunk_rows: n / chunks,
        upper: mean + sigmas * std,
        lower: (mean - sigmas * std).max(0.0),
        chunk_errors,
        mean,
        std,
        sigmas,
        window_adjusted: params.window_adjusted_band,
    }
}

impl MultivariateModel {
    /// Score a current window (rows = sessions, columns as at fit time;
    /// missing values imputed like the reference).
    ///
    /// Errors when the model is not one this build can read
    /// ([`MultivariateError::UnsupportedVersion`],
    /// [`MultivariateError::CorruptModel`]), the window has other columns, or
    /// it is empty.
    pub fn score<S: Data<Elem = f64>>(
        &self,
        current: &ArrayBase<S, Ix2>,
    ) -> Result<MultivariateResult, MultivariateError> {
        self.validate()?;
        let p = self.feature_names.len();
        if current.ncols() != p {
            return Err(MultivariateError::ColumnCountMismatch {
                expected: p,
                got: current.ncols(),
            });
        }
        let m = current.nrows();
        if m == 0 {
            return Err(MultivariateError::EmptyWindow);
        }
        let k = self.clusters.reference_counts.len();
        let mut scratch = Scratch::new(p);
        let mut error_sum = 0.0;
        let mut counts = vec![0.0f64; k];
        for row in current.rows() {
            let (error, cluster) = self.row_error(row.iter().copied(), &mut scratch);
            error_sum += error;
            counts[cluster] += 1.0;
        }
        let reconstruction_error = error_sum / m as f64;
        let (lower_threshold, upper_threshold) = self.thresholds.band(m);

        let reference: Vec<f64> = self
            .clusters
            .reference_counts
            .iter()
            .map(|&c| c as f64)
            .collect();
        // No Yates correction: it would only apply when just two clusters are
        // occupied, making the statistic jump with the number of clusters.
        let (pooled_ref, pooled_cur) = pool_sparse(&reference, &counts);
        let chi2 = chi2_two_sample(&pooled_ref, &pooled_cur, false).ok_or_else(|| {
            // Unreachable for a validated model and a non-empty window (both
            // rows have positive totals); reported rather than panicking.
            MultivariateError::CorruptModel("cluster contingency table not testable".into())
        })?;
        let n_reference: f64 = reference.iter().sum();
        Ok(MultivariateResult {
            reconstruction_error,
            upper_threshold,
            lower_threshold,
            pca_drift: reconstruction_error > upper_threshold,
            cluster_chi2: chi2.statistic,
            cluster_p_value: chi2.p_value,
            cluster_dof: chi2.dof,
            reference_mix: reference.iter().map(|c| c / n_reference).collect(),
            current_mix: counts.iter().map(|c| c / m as f64).collect(),
            n_current: m,
        })
    }

    /// Reconstruction error and nearest cluster of one raw row (exactly
    /// `features` values). The single code path for fit and score; plain
    /// sequential loops (no BLAS-style kernels), so results do not depend on
    /// the CPU. `scratch` is two reusable row buffers.
    fn row_error(&self, row: impl Iterator<Item = f64>, scratch: &mut Scratch) -> (f64, usize) {
        let Scratch { z, residual } = scratch;
        for ((j, v), zj) in row.enumerate().zip(z.iter_mut()) {
            *zj = self.standardizer.z(j, v);
        }

        // Nearest centroid by squared Euclidean distance; ties go to the
        // lower index, as in linfa.
        let centroids = &self.clusters.centroids;
        let mut best = (f64::INFINITY, 0usize);
        for c in 0..centroids.rows {
            let d: f64 = centroids
                .row(c)
                .iter()
                .zip(z.iter())
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            if d < best.0 {
                best = (d, c);
            }
        }

        // Residual of the orthogonal projection onto the kept components:
        // r = zc − Σ_c (w_c·zc) w_c, with zc the row centred on the PCA mean.
        for ((rj, zj), mj) in residual.iter_mut().zip(z.iter_mut()).zip(&self.pca.mean) {
            *zj -= mj;
            *rj = *zj;
        }
        let w = &self.pca.components;
        for c in 0..w.rows {
            let wc = w.row(c);
            let t: f64 = wc.iter().zip(z.iter()).map(|(a, b)| a * b).sum();
            for (rj, wj) in residual.iter_mut().zip(wc) {
                *rj -= t * wj;
            }
        }
        let error = residual.iter().map(|v| v * v).sum::<f64>().sqrt();
        (error, best.1)
    }

    /// Check that a (deserialized) model is readable and consistent, so that
    /// scoring can index it without panicking.
    pub fn validate(&self) -> Result<(), MultivariateError> {
        if self.version != MODEL_VERSION {
            return Err(MultivariateError::UnsupportedVersion {
                found: self.version,
                expected: MODEL_VERSION,
            });
        }
        let corrupt = |msg: String| Err(MultivariateError::CorruptModel(msg));
        let p = self.feature_names.len();
        if p == 0 {
            return corrupt("no features".into());
        }
        let s = &self.standardizer;
        if s.mean.len() != p || s.scale.len() != p {
            return corrupt(format!("standardizer does not have {p} columns"));
        }
        all_finite("standardizer mean", &s.mean)?;
        if s.scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return corrupt("standardizer scale must be finite and > 0".into());
        }
        if self.pca.mean.len() != p {
            return corrupt(format!("PCA mean does not have {p} columns"));
        }
        all_finite("PCA mean", &self.pca.mean)?;
        let kept = self.pca.n_components;
        if kept == 0 || kept > p {
            return corrupt(format!("{kept} PCA components for {p} features"));
        }
        self.pca.components.check("PCA components", kept, p)?;
        let k = self.clusters.reference_counts.len();
        if k == 0 {
            return corrupt("no clusters".into());
        }
        if self.clusters.reference_counts.iter().all(|&c| c == 0) {
            return corrupt("empty reference cluster histogram".into());
        }
        self.clusters.centroids.check("centroids", k, p)?;
        let t = &self.thresholds;
        all_finite("thresholds", &[t.mean, t.std, t.upper, t.lower, t.sigmas])?;
        if t.std < 0.0 || t.sigmas <= 0.0 {
            return corrupt("negative threshold spread".into());
        }
        Ok(())
    }
}

/// Per-row work buffers, allocated once per fit or score rather than per row.
struct Scratch {
    z: Vec<f64>,
    residual: Vec<f64>,
}

impl Scratch {
    fn new(features: usize) -> Self {
        Scratch {
            z: vec![0.0; features],
            residual: vec![0.0; features],
        }
    }
}

fn all_finite(what: &str, values: &[f64]) -> Result<(), MultivariateError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(MultivariateError::CorruptModel(format!(
            "{what} has a non-finite value"
        )))
    }
}
