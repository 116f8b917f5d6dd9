//! Criterion benches of the drift engine: the statistics one by one (KS on its exact and
//! asymptotic paths, χ² contingency 2×20, PSI, the two-proportion z-test, Benjamini–Hochberg)
//! and the whole drift evaluation of one window — 20 features, 10k reference sessions vs 10k
//! current sessions after a prompt change — split into the univariate tests (`compare` +
//! `decide`) and the multivariate score (the model is fitted once, outside the timed loop; its
//! fit is timed on its own).
//!
//! `cargo bench --bench drift` (add a filter after `--`, e.g. `-- ks/`). Before measuring, the
//! bench writes the generated statistics inputs to `target/bench-data/drift-input.json`, with
//! the results Rust computed on them, so `benches/scipy_ks.py` times scipy on identical data
//! and checks it gets the same answers (`benches/compare_scipy.sh` runs both).
//!
//! Under `cargo test` (no `--bench` argument) criterion runs every bench once: inputs are then
//! ten times smaller and the data file is not written.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use slawatch::catalog::Catalog;
use slawatch::drift::engine::{DriftConfig, compare, decide};
use slawatch::drift::features::{FeatureSample, FeatureSet};
use slawatch::drift::multivariate::MultivariateModel;
use slawatch::drift::multivariate_fit;
use slawatch::drift::stats::{
    KsMethod, SortedSample, bh_adjust, chi2_contingency, ks_2samp, ks_2samp_sorted, psi,
    two_proportion_ztest,
};
use slawatch::ingest::decode::Decoder;
use slawatch::session::{AttrValue, Session};
use slawatch::simulate::{Incident, IncidentKind, SimConfig};
use slawatch::spec::model::DriftSpec;

/// Whether criterion measures (`cargo bench`) rather than smoke-tests (`cargo test`).
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Sample size of the benches: 10,000 when measuring, 1,000 under `cargo test`.
fn n() -> usize {
    if measuring() { 10_000 } else { 1_000 }
}

fn data_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/drift-input.json")
}

// ---------------------------------------------------------------------------------------------
// Inputs of the single-statistic benches (shared with benches/scipy_ks.py)
// ---------------------------------------------------------------------------------------------

/// Generated inputs: `x` has `n + 1` values and `y` has `n`, so the prefixes give the three KS
/// shapes: `n` vs `n` (exact, equal sizes), `n` vs `n − 1` (exact, unequal sizes: the lattice
/// recursion) and `n + 1` vs `n` (above scipy's exact cut-off of 10,000: asymptotic).
struct Inputs {
    x: Vec<f64>,
    y: Vec<f64>,
    /// 2 × 20 contingency table (reference and current label counts).
    table: [Vec<f64>; 2],
    /// 100 p-values for BH: 90 uniform, 10 small.
    p_values: Vec<f64>,
}

fn inputs(n: usize) -> Inputs {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_d21f);
    // Token-count-like, continuous: the current side is shifted by 1/16 of a standard
    // deviation on the log scale, a small drift (D ≈ 0.03).
    let reference = LogNormal::new(5.0, 0.8).unwrap();
    let current = LogNormal::new(5.05, 0.8).unwrap();
    let x: Vec<f64> = (0..=n).map(|_| reference.sample(&mut rng)).collect();
    let y: Vec<f64> = (0..n).map(|_| current.sample(&mut rng)).collect();
    // 20 labels with Zipf-like shares; the current side moves 10 % of the mass of label 0 to
    // label 5.
    let w: Vec<f64> = (0..20).map(|k| 1.0 / (k as f64 + 1.0)).collect();
    let total: f64 = w.iter().sum();
    let ref_p: Vec<f64> = w.iter().map(|v| v / total).collect();
    let mut cur_p = ref_p.clone();
    cur_p[5] += 0.1 * cur_p[0];
    cur_p[0] *= 0.9;
    let draw = |p: &[f64], rng: &mut ChaCha8Rng| {
        let mut counts = vec![0.0; p.len()];
        for _ in 0..n {
            let mut u: f64 = rng.random();
            let mut k = 0;
            while k + 1 < p.len() && u >= p[k] {
                u -= p[k];
                k += 1;
            }
            counts[k] += 1.0;
        }
        counts
    };
    let table = [draw(&ref_p, &mut rng), draw(&cur_p, &mut rng)];
    let p_values = (0..100)
        .map(|i| {
            let u: f64 = rng.random();
            if i % 10 == 0 { u.powi(4) * 1e-2 } else { u }
        })
        .collect();
    Inputs {
        x,
        y,
        table,
        p_values,
    }
}

/// Writes the inputs and Rust's answers on them for `benches/scipy_ks.py`.
fn write_inputs(d: &Inputs) {
    let n = d.y.len();
    let ks = |a: &[f64], b: &[f64]| {
        let r = ks_2samp(a, b).unwrap();
        serde_json::json!({
            "n1": a.len(), "n2": b.len(), "statistic": r.statistic, "p_value": r.p_value,
            "method": match r.method { KsMethod::Exact => "exact", KsMethod::Asymptotic => "asymp" },
        })
    };
    let chi = chi2_contingency(&d.table, true).unwrap();
    let p = psi(&d.x[..n], &d.y).unwrap();
    let doc = serde_json::json!({
        "x": d.x,
        "y": d.y,
        "table": [d.table[0], d.table[1]],
        "p_values": d.p_values,
        "rust": {
            "ks_exact_equal": ks(&d.x[..n], &d.y),
            "ks_exact_unequal": ks(&d.x[..n], &d.y[..n - 1]),
            "ks_asymptotic": ks(&d.x, &d.y),
            "chi2": { "statistic": chi.statistic, "p_value": chi.p_value, "dof": chi.dof },
            "psi": { "psi": p.psi, "bins": p.bins },
            "bh": bh_adjust(&d.p_values).unwrap(),
        },
    });
    let path = data_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn statistics(c: &mut Criterion) {
    let n = n();
    let d = inputs(n);
    if measuring() {
        write_inputs(&d);
    }
    let (x, y) = (&d.x, &d.y);

    // Same calls as scipy.stats.ks_2samp(x, y) (method='auto'): the copies are sorted inside.
    let mut g = c.benchmark_group("ks");
    g.bench_function("exact_equal_n", |b| {
        b.iter(|| ks_2samp(black_box(&x[..n]), black_box(y)))
    });
    g.bench_function("exact_unequal_n", |b| {
        b.iter(|| ks_2samp(black_box(&x[..n]), black_box(&y[..n - 1])))
    });
    g.bench_function("asymptotic", |b| {
        b.iter(|| ks_2samp(black_box(x), black_box(y)))
    });
    // What the engine calls: samples sorted once per window and shared with Wasserstein.
    let (xs, ys) = (
        SortedSample::new(&x[..n]).unwrap(),
        SortedSample::new(y).unwrap(),
    );
    g.bench_function("presorted_exact_equal_n", |b| {
        b.iter(|| ks_2samp_sorted(black_box(&xs), black_box(&ys)))
    });
    g.bench_function("sort_one_sample", |b| {
        b.iter(|| SortedSample::new(black_box(&x[..n])))
    });
    g.finish();

    let mut g = c.benchmark_group("chi2");
    g.bench_function("contingency_2x20", |b| {
        b.iter(|| chi2_contingency(black_box(&d.table), true))
    });
    g.finish();

    let mut g = c.benchmark_group("psi");
    g.bench_function("psi_n_vs_n", |b| {
        b.iter(|| psi(black_box(&x[..n]), black_box(y)))
    });
    g.finish();

    let mut g = c.benchmark_group("ztest");
    g.bench_function("two_proportion", |b| {
        b.iter(|| {
            two_proportion_ztest(
                black_box(530.0),
                black_box(10_000.0),
                black_box(480.0),
                black_box(10_000.0),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("bh");
    g.bench_function("adjust_100", |b| {
        b.iter(|| bh_adjust(black_box(&d.p_values)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The whole drift evaluation of one window
// ---------------------------------------------------------------------------------------------

/// The 20 features: the 9 numeric, the 3 binary, the 3 built-in categorical ones and 5
/// `attributes.*`. The simulator writes two attributes (channel, tier); the other three are
/// added to every decoded session by [`add_attributes`].
const FEATURES: [&str; 20] = [
    "output_tokens",
    "input_tokens",
    "duration_ms",
    "cost_usd",
    "turns",
    "tool_calls",
    "quality.score",
    "output_chars",
    "context_utilisation",
    "quality.refusal",
    "quality.resolved",
    "fallback",
    "tool_mix",
    "tool_transitions",
    "status_mix",
    "attributes.channel",
    "attributes.tier",
    "attributes.region",
    "attributes.locale",
    "attributes.plan",
];

fn drift_spec(features: &[&str]) -> DriftSpec {
    DriftSpec {
        features: features.iter().map(|s| s.to_string()).collect(),
        p_value: 0.01,
        p_value_explicit: true,
        false_alarms: slawatch::spec::model::FalseAlarmBudget::DEFAULT,
        min_samples: 200,
        test: "auto".into(),
        effect_size: 0.1,
        baseline_min_duration_ms: 6 * 3_600_000,
        relearn_every_ms: None,
        multivariate: true,
        sequential: true,
        ks_exact: false,
    }
}

/// Three more string attributes, drawn from a seeded RNG so both sides share distributions.
fn add_attributes(s: &mut Session, rng: &mut ChaCha8Rng) {
    let mut pick =
        |labels: &[&str]| AttrValue::Str(labels[rng.random_range(0..labels.len())].to_owned());
    let region = pick(&["eu", "us", "apac", "latam"]);
    let locale = pick(&["en", "de", "fr", "es", "ja", "pt"]);
    let plan = pick(&["monthly", "annual", "trial"]);
    s.attributes.push(("region".into(), region));
    s.attributes.push(("locale".into(), locale));
    s.attributes.push(("plan".into(), plan));
}

/// Simulated sessions, decoded like the pipeline does.
fn sessions(seed: u64, n: usize, prompt_change: bool) -> Vec<Session> {
    let mut cfg = SimConfig {
        seed,
        max_sessions: Some(n as u64),
        sessions_per_hour: 100_000.0,
        ..SimConfig::default()
    };
    if prompt_change {
        let start = cfg.start_ms;
        cfg = cfg.with_incident(Incident::new(
            IncidentKind::defaults("prompt-change").unwrap(),
            start,
            None,
        ));
    }
    let mut bytes = Vec::new();
    slawatch::simulate::write_jsonl(&cfg, &mut bytes).unwrap();
    let decoder = Decoder::new(Arc::new(Catalog::embedded()));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa77);
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| decoder.decode(l).ok())
        .map(|mut s| {
            add_attributes(&mut s, &mut rng);
            s
        })
        .collect()
}

fn sample(set: &FeatureSet, sessions: &[Session], capacity: usize) -> FeatureSample {
    let mut sample = FeatureSample::new(set, capacity);
    for s in sessions {
        sample.observe(set, s);
    }
    // As the runtime does before reading a sample: the bottom-k rows, sorted by hash.
    sample.compact();
    sample
}

struct Window {
    cfg: DriftConfig,
    reference: FeatureSample,
    current: FeatureSample,
    model: MultivariateModel,
}

fn window(features: &[&str], reference: &[Session], current: &[Session], n: usize) -> Window {
    let cfg = DriftConfig::new(&drift_spec(features));
    let reference = sample(&cfg.set, reference, n);
    let current = sample(&cfg.set, current, n);
    let model = multivariate_fit(&reference, &cfg.set, cfg.spec.min_samples).unwrap();
    Window {
        cfg,
        reference,
        current,
        model,
    }
}

fn whole_window(c: &mut Criterion) {
    let n = n();
    let started = Instant::now();
    let ref_sessions = sessions(1, n, false);
    let cur_sessions = sessions(2, n, true);
    let w = window(&FEATURES, &ref_sessions, &cur_sessions, n);
    assert_eq!(w.cfg.set.numeric.len() + w.cfg.set.binary.len(), 12);
    assert_eq!(w.cfg.set.categorical.len(), 8);
    if measuring() {
        // What the window looks like: drifted features and the sample sizes of every test.
        let mut batch = vec![compare(&w.cfg, &w.reference, &w.current)];
        decide(&mut batch);
        let drifted: Vec<String> = batch[0]
            .iter()
            .filter(|p| p.result.verdict == slawatch::finding::FeatureVerdict::Drift)
            .map(|p| format!("{} ({})", p.result.feature, p.result.test))
            .collect();
        let sizes: BTreeMap<String, (u64, u64)> = batch[0]
            .iter()
            .map(|p| {
                (
                    p.result.feature.clone(),
                    (p.result.n_reference, p.result.n_current),
                )
            })
            .collect();
        eprintln!(
            "drift window: {} + {} sessions, {} rows each side, set-up {:.1} s; \
             drifted: {drifted:?}; sizes: {sizes:?}",
            ref_sessions.len(),
            cur_sessions.len(),
            w.reference.rows.len(),
            started.elapsed().as_secs_f64(),
        );
    }

    // The same with a window of 9,500 sessions: unequal sizes take KS's exact lattice
    // recursion (`max(n1, n2) <= 10,000`), whose cost grows with n·D.
    let current_9500 = sample(&w.cfg.set, &cur_sessions[..n - n / 20], n);
    if measuring() {
        for (label, cur) in [("10k vs 10k", &w.current), ("10k vs 9.5k", &current_9500)] {
            let ks: Vec<String> = compare(&w.cfg, &w.reference, cur)
                .iter()
                .filter(|p| p.result.test == "ks")
                .map(|p| format!("{} D={:.3}", p.result.feature, p.result.statistic))
                .collect();
            eprintln!("KS statistics, {label}: {}", ks.join(", "));
        }
    }

    let mut g = c.benchmark_group("drift_window");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    // Univariate: 20 tests + BH + effect floors.
    g.bench_function("compare_decide_20_features", |b| {
        b.iter(|| {
            let mut batch = vec![compare(
                &w.cfg,
                black_box(&w.reference),
                black_box(&w.current),
            )];
            decide(&mut batch);
            batch
        })
    });
    g.bench_function("compare_decide_20_features_unequal", |b| {
        b.iter(|| {
            let mut batch = vec![compare(
                &w.cfg,
                black_box(&w.reference),
                black_box(&current_9500),
            )];
            decide(&mut batch);
            batch
        })
    });
    // Multivariate: matrix of the window + PCA reconstruction error + cluster mix χ².
    g.bench_function("multivariate_score", |b| {
        b.iter(|| {
            w.model
                .score(&slawatch::drift::to_matrix(black_box(&w.current)).unwrap())
                .unwrap()
        })
    });
    // Everything `DriftRuntime::evaluate` computes for one window before findings are built.
    g.bench_function("compare_score_decide", |b| {
        b.iter(|| {
            let tests = compare(&w.cfg, black_box(&w.reference), black_box(&w.current));
            let r = w
                .model
                .score(&slawatch::drift::to_matrix(&w.current).unwrap())
                .unwrap();
            let mut batch = vec![tests];
            decide(&mut batch);
            (batch, r)
        })
    });
    g.finish();

    // Where the univariate time goes: the same window restricted to one kind of feature.
    let mut g = c.benchmark_group("drift_window_parts");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    for (name, features) in [
        ("numeric_9", &FEATURES[..9]),
        ("binary_3", &FEATURES[9..12]),
        ("categorical_8", &FEATURES[12..]),
    ] {
        let cfg = DriftConfig::new(&drift_spec(features));
        let reference = sample(&cfg.set, &ref_sessions, n);
        let current = sample(&cfg.set, &cur_sessions, n);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut batch = vec![compare(&cfg, black_box(&reference), black_box(&current))];
                decide(&mut batch);
                batch
            })
        });
    }
    // Filling a window's sample (per-session cost of `FeatureSample::observe`, 20 features,
    // then the `compact` that precedes every read).
    g.bench_function("observe_window_sessions", |b| {
        b.iter_batched(
            || FeatureSample::new(&w.cfg.set, n),
            |mut s| {
                for x in &cur_sessions {
                    s.observe(&w.cfg.set, x);
                }
                s.compact();
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // The fit happens once per baseline freeze, not per window.
    let mut g = c.benchmark_group("multivariate");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("fit_reference", |b| {
        b.iter(|| multivariate_fit(black_box(&w.reference), &w.cfg.set, w.cfg.spec.min_samples))
    });
    g.finish();
}

/// `benches/peers/evidently_compare.py` sets `SLAWATCH_EVIDENTLY_PEER=<windows.json>:<out.json>`:
/// every window of the file (one feature, reference and current values) is judged by
/// `test: evidently`, timed, and the verdicts written for the script to compare with
/// Evidently's on the same data. Without the variable this does nothing.
fn evidently_peer(_: &mut Criterion) {
    let Ok(paths) = std::env::var("SLAWATCH_EVIDENTLY_PEER") else {
        return;
    };
    let (input, output) = paths.split_once(':').expect("<in.json>:<out.json>");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(input).expect("read windows")).unwrap();
    let mut out = Vec::new();
    for w in doc["windows"].as_array().unwrap() {
        let kind = w["kind"].as_str().unwrap();
        let feature = match kind {
            "numeric" => "output_tokens",
            "binary" => "quality.refusal",
            _ => "attributes.x",
        };
        let mut spec = drift_spec(&[feature]);
        spec.test = "evidently".into();
        spec.min_samples = 1;
        spec.multivariate = false;
        spec.sequential = false;
        let cfg = DriftConfig::new(&spec);
        let sample = |v: &serde_json::Value| {
            let vals = v.as_array().unwrap();
            let mut s = FeatureSample::new(&cfg.set, vals.len().max(1));
            s.sessions = vals.len() as u64;
            match kind {
                "numeric" => {
                    for (i, x) in vals.iter().enumerate() {
                        s.rows.push(slawatch::drift::features::Row {
                            hash: i as u64,
                            values: std::iter::once(x.as_f64().unwrap()).collect(),
                        });
                    }
                }
                "binary" => {
                    let t = vals.iter().filter(|x| x.as_f64() == Some(1.0)).count() as u64;
                    s.binary[0] = (t, vals.len() as u64);
                }
                _ => {
                    for x in vals {
                        *s.categorical[0]
                            .entry(x.as_str().unwrap().to_owned())
                            .or_default() += 1;
                    }
                }
            }
            s
        };
        let (r, c) = (sample(&w["reference"]), sample(&w["current"]));
        let reps = 20;
        let started = Instant::now();
        let mut result = None;
        for _ in 0..reps {
            let mut batch = vec![compare(&cfg, &r, &c)];
            decide(&mut batch);
            result = Some(batch.remove(0).remove(0).result);
        }
        let secs = started.elapsed().as_secs_f64() / reps as f64;
        let result = result.unwrap();
        out.push(serde_json::json!({
            "name": w["name"],
            "test": result.test,
            "statistic": result.statistic,
            "p_value": result.p_value,
            "drift": result.verdict == slawatch::finding::FeatureVerdict::Drift,
            "seconds": secs,
        }));
    }
    std::fs::write(output, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
}

criterion_group!(benches, evidently_peer, statistics, whole_window);
criterion_main!(benches);
