//! Multivariate drift detectors (`slawatch::drift::multivariate`) on seeded
//! synthetic session features with a known covariance: no false alarms on
//! same-distribution windows, PCA reconstruction error catches a correlation
//! flip that leaves every marginal unchanged, the cluster χ² catches a
//! behaviour-mix shift, persisted models score identically, missing values
//! are imputed, and small references are refused.

use ndarray::{Array2, ArrayView2, Axis, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use slawatch::drift::multivariate::{
    MODEL_VERSION, MultivariateError, MultivariateModel, MultivariateParams,
    ReconstructionThresholds, fit,
};

/// Session features: a "workload" block of six features that rise together
/// and a "quality" pair that agrees.
const NAMES: [&str; 8] = [
    "output_tokens",
    "duration_s",
    "cost_usd",
    "tool_calls",
    "turns",
    "context_utilisation",
    "quality_score",
    "resolution_score",
];
const MEANS: [f64; 8] = [800.0, 30.0, 0.05, 4.0, 6.0, 0.4, 0.8, 0.7];
const STDS: [f64; 8] = [250.0, 12.0, 0.02, 1.5, 2.0, 0.1, 0.1, 0.15];
/// Correlation inside the workload block (columns 0..6).
const RHO_WORKLOAD: f64 = 0.8;
/// Correlation of the quality pair (columns 6, 7).
const RHO_QUALITY: f64 = 0.9;
const REFERENCE_ROWS: usize = 5000;
/// Reference rows / default chunks: the window size the threshold is calibrated for.
const WINDOW_ROWS: usize = 500;

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

/// Covariance of the session features with the quality pair correlated `rho_quality`.
fn covariance(rho_quality: f64) -> Array2<f64> {
    Array2::from_shape_fn((8, 8), |(i, j)| {
        let rho = if i == j {
            1.0
        } else if i < 6 && j < 6 {
            RHO_WORKLOAD
        } else if i >= 6 && j >= 6 {
            rho_quality
        } else {
            0.0
        };
        rho * STDS[i] * STDS[j]
    })
}

/// Lower Cholesky factor of a symmetric positive-definite matrix.
fn cholesky(a: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                l[[i, i]] = (a[[i, i]] - dot).sqrt();
            } else {
                l[[i, j]] = (a[[i, j]] - dot) / l[[j, j]];
            }
        }
    }
    l
}

/// `n` draws of N(mean, L·Lᵀ).
fn mvn(rng: &mut ChaCha8Rng, n: usize, mean: &[f64], l: &Array2<f64>) -> Array2<f64> {
    let p = mean.len();
    let mut x = Array2::zeros((n, p));
    let mut e = vec![0.0; p];
    for mut row in x.rows_mut() {
        for v in e.iter_mut() {
            *v = StandardNormal.sample(rng);
        }
        for i in 0..p {
            row[i] = mean[i] + (0..=i).map(|k| l[[i, k]] * e[k]).sum::<f64>();
        }
    }
    x
}

/// Two-sample Kolmogorov–Smirnov statistic (sup |F₁ − F₂|) of two columns.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The first `n` rows. (ndarray's `s!` expands to `allow(unsafe_code)`, which
/// the crate's `forbid(unsafe_code)` rejects.)
fn head(x: &Array2<f64>, n: usize) -> ArrayView2<'_, f64> {
    x.slice_axis(Axis(0), Slice::from(..n))
}

/// Defaults, except k-means runs once on at most 1000 reference rows. linfa's
/// k-means is generic, so it is compiled into this crate at the test
/// profile's opt-level 0 and runs ~30× slower than in release; this keeps the
/// file within seconds without changing what is tested (every row is still
/// assigned and counted). Small references below use the defaults.
fn params() -> MultivariateParams {
    MultivariateParams {
        kmeans_max_rows: 1000,
        kmeans_runs: 1,
        ..MultivariateParams::default()
    }
}

fn fitted(reference: &Array2<f64>) -> MultivariateModel {
    fit(reference, &names(), &params()).expect("fit")
}

/// The fitted structure matches the data: two components (workload factor
/// 5/8 of the variance, then the quality pair) reach 65 %, thresholds bracket
/// the reference, the cluster histogram covers every row, and a refit is
/// bit-identical.
#[test]
fn fit_is_deterministic_and_sensible() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let reference = mvn(
        &mut rng,
        REFERENCE_ROWS,
        &MEANS,
        &cholesky(&covariance(RHO_QUALITY)),
    );
    let model = fitted(&reference);
    assert_eq!(model.version, MODEL_VERSION);
    assert_eq!(
        model.pca.n_components, 2,
        "{:?}",
        model.pca.explained_variance_ratio
    );
    let ratio = &model.pca.explained_variance_ratio;
    assert!((ratio[0] - 5.0 / 8.0).abs() < 0.03, "{ratio:?}");
    assert!((ratio[1] - 1.9 / 8.0).abs() < 0.03, "{ratio:?}");
    assert!((ratio.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{ratio:?}");
    let t = &model.thresholds;
    assert_eq!(t.chunk_errors.len(), 10);
    assert_eq!(t.chunk_rows, WINDOW_ROWS);
    assert!(t.lower < t.mean && t.mean < t.upper, "{t:?}");
    // The band recomputed here from the chunk errors (NannyML: mean ± 3·np.std, ddof 0, lower
    // clipped at 0). Every chunk lying inside it cannot fail (10 values are always within
    // 3σ of their own mean), so the band itself is what is checked.
    let c = t.chunk_errors.len() as f64;
    let mean = t.chunk_errors.iter().sum::<f64>() / c;
    let sd = (t
        .chunk_errors
        .iter()
        .map(|e| (e - mean).powi(2))
        .sum::<f64>()
        / c)
        .sqrt();
    assert!((t.mean - mean).abs() <= 1e-12 * mean.abs(), "{t:?}");
    assert!(
        (t.upper - (mean + 3.0 * sd)).abs() <= 1e-9 * t.upper.abs(),
        "{t:?}"
    );
    assert!(
        (t.lower - (mean - 3.0 * sd).max(0.0)).abs() <= 1e-9 * t.upper.abs(),
        "{t:?}"
    );
    assert!(sd > 0.0, "{t:?}");
    // NannyML's band is the same for every window size; the adjusted band
    // scales its half-width with √(chunk rows / window rows).
    assert_eq!(t.band(125), (t.lower, t.upper));
    let adjusted = ReconstructionThresholds {
        window_adjusted: true,
        ..t.clone()
    };
    assert_eq!(adjusted.band(WINDOW_ROWS), (t.lower, t.upper));
    let (lo, hi) = adjusted.band(WINDOW_ROWS / 4);
    assert!(
        (hi - t.mean - 2.0 * (t.upper - t.mean)).abs() < 1e-12,
        "{hi} vs {t:?}"
    );
    assert!((t.mean - lo - 2.0 * (t.mean - t.lower)).abs() < 1e-12 || lo == 0.0);
    let counts = &model.clusters.reference_counts;
    assert_eq!(counts.len(), 6);
    assert_eq!(counts.iter().sum::<u64>(), REFERENCE_ROWS as u64);
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "clusters sorted: {counts:?}"
    );
    // The reference against itself: no drift, identical mixes, χ² = 0.
    let own = model.score(&reference).unwrap();
    assert!(!own.pca_drift);
    assert!(
        own.cluster_chi2.abs() < 1e-9 && own.cluster_p_value > 0.999,
        "{own:?}"
    );
    assert_eq!(own.reference_mix, own.current_mix);

    let again = fitted(&reference);
    assert_eq!(model, again, "refit of the same reference differs");
}

/// (a) Windows drawn from the reference distribution: over 20 seeds (a fresh
/// reference and window each) at most 2 raise either detector (PCA above the
/// upper threshold, or cluster p < 0.001).
#[test]
fn same_distribution_rarely_alarms() {
    let l = cholesky(&covariance(RHO_QUALITY));
    let (mut pca_alarms, mut cluster_alarms, mut any) = (0, 0, 0);
    let mut min_p = 1.0f64;
    let mut max_z = f64::NEG_INFINITY;
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let reference = mvn(&mut rng, REFERENCE_ROWS, &MEANS, &l);
        let current = mvn(&mut rng, WINDOW_ROWS, &MEANS, &l);
        let model = fitted(&reference);
        let r = model.score(&current).unwrap();
        let t = &model.thresholds;
        max_z = max_z.max((r.reconstruction_error - t.mean) / t.std);
        min_p = min_p.min(r.cluster_p_value);
        pca_alarms += usize::from(r.pca_drift);
        cluster_alarms += usize::from(r.cluster_p_value < 1e-3);
        any += usize::from(r.pca_drift || r.cluster_p_value < 1e-3);
    }
    eprintln!(
        "same distribution, 20 seeds: PCA alarms {pca_alarms}, cluster alarms {cluster_alarms}, \
         max error z {max_z:.2}, min cluster p {min_p:.3e}"
    );
    assert!(any <= 2, "{any} false alarms out of 20");
}

/// (b) The quality pair's correlation flips from +0.9 to −0.9 while every
/// marginal stays N(mean, std²): per-feature KS sees nothing at α = 0.001,
/// the reconstruction error jumps far above the upper threshold.
#[test]
fn correlation_flip_is_caught_by_pca() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let reference = mvn(
        &mut rng,
        REFERENCE_ROWS,
        &MEANS,
        &cholesky(&covariance(RHO_QUALITY)),
    );
    let current = mvn(
        &mut rng,
        WINDOW_ROWS,
        &MEANS,
        &cholesky(&covariance(-RHO_QUALITY)),
    );

    // Kolmogorov's asymptotic critical value c(0.001) = 1.949.
    let (n, m) = (REFERENCE_ROWS as f64, WINDOW_ROWS as f64);
    let critical = 1.949 * ((n + m) / (n * m)).sqrt();
    for (j, name) in NAMES.iter().enumerate() {
        let d = ks_statistic(&reference.column(j).to_vec(), &current.column(j).to_vec());
        assert!(d < critical, "{name}: KS D {d:.4} ≥ {critical:.4}");
    }

    let model = fitted(&reference);
    let r = model.score(&current).unwrap();
    eprintln!(
        "correlation flip: error {:.3} vs upper {:.3} (reference mean {:.3})",
        r.reconstruction_error, r.upper_threshold, model.thresholds.mean
    );
    assert!(r.pca_drift, "{r:?}");
    // Not a marginal: the flip is glaring, not borderline.
    assert!(r.reconstruction_error > 1.5 * r.upper_threshold, "{r:?}");
}

/// Four behaviour modes with weights 0.4 / 0.3 / 0.2 / 0.1, well separated in
/// the workload features.
fn mixture(rng: &mut ChaCha8Rng, n: usize, weights: &[f64; 4]) -> Array2<f64> {
    let modes: [[f64; 8]; 4] = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [4.0, 4.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 0.0, 0.0],
        [-3.0, -3.0, 0.0, 0.0, 0.0, 0.0, -4.0, -4.0],
    ];
    let total: f64 = weights.iter().sum();
    let mut x = Array2::zeros((n, 8));
    for mut row in x.rows_mut() {
        let mut u = rng.random::<f64>() * total;
        let mut mode = 3;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                mode = i;
                break;
            }
            u -= w;
        }
        for j in 0..8 {
            let e: f64 = StandardNormal.sample(rng);
            row[j] = MEANS[j] + STDS[j] * (modes[mode][j] + e);
        }
    }
    x
}

/// (c) The rarest behaviour becomes 3× more common: cluster χ² p < 1e-6,
/// while a window with the reference mix is not flagged.
#[test]
fn mixture_weight_shift_is_caught_by_clusters() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let weights = [0.4, 0.3, 0.2, 0.1];
    let reference = mixture(&mut rng, REFERENCE_ROWS, &weights);
    let model = fitted(&reference);

    let same = model
        .score(&mixture(&mut rng, WINDOW_ROWS, &weights))
        .unwrap();
    assert!(same.cluster_p_value > 1e-3, "{same:?}");

    let shifted = model
        .score(&mixture(&mut rng, WINDOW_ROWS, &[0.4, 0.3, 0.2, 0.3]))
        .unwrap();
    eprintln!(
        "mix shift: χ² {:.1} (dof {}), p {:.3e}; same mix p {:.3}\n  reference {:?}\n  current   {:?}",
        shifted.cluster_chi2,
        shifted.cluster_dof,
        shifted.cluster_p_value,
        same.cluster_p_value,
        shifted.reference_mix,
        shifted.current_mix
    );
    assert!(shifted.cluster_p_value < 1e-6, "{shifted:?}");
    assert_eq!(shifted.cluster_dof, 5);
    assert_eq!(shifted.n_current, WINDOW_ROWS);
    assert!((shifted.current_mix.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

/// (d) A model persisted as JSON and restored is equal field for field and
/// scores windows bit for bit like the original.
#[test]
fn serde_round_trip_scores_identically() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let l = cholesky(&covariance(RHO_QUALITY));
    let reference = mvn(&mut rng, REFERENCE_ROWS, &MEANS, &l);
    let model = fitted(&reference);
    let json = serde_json::to_string(&model).unwrap();
    let restored: MultivariateModel = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, model);
    assert_eq!(serde_json::to_string(&restored).unwrap(), json);

    for current in [
        mvn(&mut rng, WINDOW_ROWS, &MEANS, &l),
        mvn(&mut rng, 37, &MEANS, &cholesky(&covariance(-RHO_QUALITY))),
    ] {
        let a = model.score(&current).unwrap();
        let b = restored.score(&current).unwrap();
        assert_eq!(
            a.reconstruction_error.to_bits(),
            b.reconstruction_error.to_bits()
        );
        assert_eq!(a.cluster_p_value.to_bits(), b.cluster_p_value.to_bits());
        assert_eq!(a, b);
    }
}

/// A model that is not one this build can read is refused, never indexed.
#[test]
fn malformed_models_are_rejected() {
    let mut rng = ChaCha8Rng::seed_from_u64(37);
    let reference = mvn(&mut rng, 400, &MEANS, &cholesky(&covariance(RHO_QUALITY)));
    let model = fitted(&reference);
    let window = head(&reference, 50);

    let mut future = model.clone();
    future.version = MODEL_VERSION + 1;
    assert!(matches!(
        future.score(&window),
        Err(MultivariateError::UnsupportedVersion { .. })
    ));
    let mut truncated = model.clone();
    truncated.pca.components.data.pop();
    assert!(matches!(
        truncated.score(&window),
        Err(MultivariateError::CorruptModel(_))
    ));
    let mut bad_scale = model.clone();
    bad_scale.standardizer.scale[3] = 0.0;
    assert!(matches!(
        bad_scale.score(&window),
        Err(MultivariateError::CorruptModel(_))
    ));

    assert_eq!(
        model.score(
            &reference
                .slice_axis(Axis(0), Slice::from(..50))
                .slice_axis(Axis(1), Slice::from(..7))
        ),
        Err(MultivariateError::ColumnCountMismatch {
            expected: 8,
            got: 7
        })
    );
    assert_eq!(
        model.score(&head(&reference, 0)),
        Err(MultivariateError::EmptyWindow)
    );
}

/// (e) Missing values (NaN, ±∞) take the reference column mean: the mean
/// ignores them, a window with gaps scores exactly like the same window with
/// the gaps filled by those means, and an all-missing row reconstructs
/// perfectly at the centre. A column with no value at all is refused.
#[test]
fn missing_values_are_imputed_with_reference_means() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let l = cholesky(&covariance(RHO_QUALITY));
    let mut reference = mvn(&mut rng, 2000, &MEANS, &l);
    let clean_quality: Vec<f64> = reference.column(6).to_vec();
    for i in (0..2000).step_by(20) {
        reference[[i, 6]] = f64::NAN;
    }
    reference[[3, 1]] = f64::INFINITY;
    let model = fitted(&reference);
    let finite: Vec<f64> = clean_quality
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 0)
        .map(|(_, v)| *v)
        .collect();
    let expected = finite.iter().sum::<f64>() / finite.len() as f64;
    assert!((model.standardizer.mean[6] - expected).abs() < 1e-12);
    assert!(model.standardizer.mean.iter().all(|m| m.is_finite()));

    let mut gappy = mvn(&mut rng, 300, &MEANS, &l);
    let mut filled = gappy.clone();
    for i in 0..300 {
        let j = i % 8;
        gappy[[i, j]] = if i % 3 == 0 {
            f64::NEG_INFINITY
        } else {
            f64::NAN
        };
        filled[[i, j]] = model.standardizer.mean[j];
    }
    assert_eq!(model.score(&gappy).unwrap(), model.score(&filled).unwrap());

    let blank = Array2::from_elem((1, 8), f64::NAN);
    let r = model.score(&blank).unwrap();
    assert!(r.reconstruction_error < 1e-9, "{r:?}");

    let mut hollow = reference.clone();
    hollow.column_mut(5).fill(f64::NAN);
    assert_eq!(
        fit(&hollow, &names(), &MultivariateParams::default()),
        Err(MultivariateError::EmptyFeature(
            "context_utilisation".into()
        ))
    );
}

/// A constant feature (e.g. a refusal flag that never fired) gets scale 1
/// instead of a division by zero, and a later change in it is visible; an
/// absurd outlier yields a finite, alarming score rather than NaN.
#[test]
fn degenerate_values_stay_finite() {
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let l = cholesky(&covariance(RHO_QUALITY));
    let mut reference = mvn(&mut rng, 1000, &MEANS, &l);
    reference.column_mut(2).fill(0.05);
    let model = fitted(&reference);
    assert_eq!(model.standardizer.scale[2], 1.0);
    let mut current = mvn(&mut rng, 100, &MEANS, &l);
    current.column_mut(2).fill(0.05);
    let calm = model.score(&current).unwrap();
    assert!(
        calm.reconstruction_error.is_finite() && !calm.pca_drift,
        "{calm:?}"
    );
    current.column_mut(2).fill(5.05);
    assert!(model.score(&current).unwrap().pca_drift);

    current.column_mut(2).fill(0.05);
    current[[0, 0]] = 1e308;
    let wild = model.score(&current).unwrap();
    assert!(
        wild.reconstruction_error.is_finite() && wild.pca_drift,
        "{wild:?}"
    );
    assert!(wild.cluster_p_value.is_finite());

    reference[[0, 4]] = f64::MAX;
    reference[[1, 4]] = f64::MAX;
    assert_eq!(
        fit(&reference, &names(), &params()),
        Err(MultivariateError::Overflow("turns".into()))
    );
}

/// (f) Fewer than max(2·columns, 2·chunks, clusters) reference rows is
/// refused; exactly that many fits. Bad inputs are named.
#[test]
fn small_or_malformed_references_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(47);
    let reference = mvn(&mut rng, 20, &MEANS, &cholesky(&covariance(RHO_QUALITY)));
    let params = MultivariateParams::default();
    assert_eq!(
        fit(&head(&reference, 19), &names(), &params),
        Err(MultivariateError::InsufficientData {
            rows: 19,
            required: 20
        })
    );
    assert!(fit(&reference, &names(), &params).is_ok());
    let wide = ndarray::concatenate![Axis(1), reference, reference];
    let wide_names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    assert_eq!(
        fit(&wide, &wide_names, &params),
        Err(MultivariateError::InsufficientData {
            rows: 20,
            required: 32
        })
    );
    assert_eq!(
        fit(&reference, &names()[..7], &params),
        Err(MultivariateError::FeatureCountMismatch {
            names: 7,
            columns: 8
        })
    );
    let flat = Array2::from_elem((40, 8), 1.0);
    assert_eq!(
        fit(&flat, &names(), &params),
        Err(MultivariateError::NoVariance)
    );
    let one_chunk = MultivariateParams {
        chunks: 1,
        ..params.clone()
    };
    assert!(matches!(
        fit(&reference, &names(), &one_chunk),
        Err(MultivariateError::InvalidParameter { name: "chunks", .. })
    ));
}
