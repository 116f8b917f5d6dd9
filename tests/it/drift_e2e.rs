//! The drift engine on generated streams: steady traffic stays quiet (false-alarm rate measured
//! over seeds), a prompt change and a silent model swap are found and named, and baselines
//! survive a restart through sled.

use std::path::Path;
use std::sync::Arc;

use slawatch::catalog::Catalog;
use slawatch::cli::{Sink, load_specs, replay_stream};
use slawatch::finding::{FeatureVerdict, Finding, Verdict};
use slawatch::ingest::{DeadLetters, LinesSource};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::simulate::{Incident, IncidentKind, SimConfig, write_jsonl};
use slawatch::spec::model::Severity;
use slawatch::store::Store;

const HOUR: i64 = 3_600_000;

fn spec_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs/support-bot.yaml")
}

fn pipeline() -> Pipeline {
    let specs = load_specs(&[spec_path()]).unwrap();
    Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    )
}

fn stream(cfg: &SimConfig) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_jsonl(cfg, &mut bytes).unwrap();
    bytes
}

/// Collects findings; persists baselines after every batch when given a store.
struct Collect<'a> {
    findings: Vec<Finding>,
    store: Option<&'a Store>,
}

impl Sink for Collect<'_> {
    fn finding(&mut self, f: &Finding) -> anyhow::Result<()> {
        self.findings.push(f.clone());
        Ok(())
    }
    fn windows_closed(&mut self, p: &mut Pipeline) -> anyhow::Result<()> {
        if let Some(store) = self.store {
            for b in p.take_dirty_baselines() {
                store.put_baseline(&b)?;
            }
        }
        Ok(())
    }
}

fn run(p: &mut Pipeline, bytes: &[u8], store: Option<&Store>) -> Vec<Finding> {
    let mut sink = Collect {
        findings: Vec::new(),
        store,
    };
    replay_stream(
        &mut LinesSource::new(bytes, "test".into()),
        p,
        &mut DeadLetters::discard(),
        None,
        &mut sink,
    )
    .unwrap();
    sink.findings
}

fn drift_alerts(fs: &[Finding]) -> Vec<&Finding> {
    fs.iter()
        .filter(|f| {
            f.objective == "drift" && f.verdict == Verdict::Breach && f.severity >= Severity::Ticket
        })
        .collect()
}

fn drifted(f: &Finding) -> Vec<&str> {
    f.drift
        .as_ref()
        .unwrap()
        .features
        .iter()
        .filter(|x| x.verdict == FeatureVerdict::Drift)
        .map(|x| x.feature.as_str())
        .collect()
}

#[test]
fn steady_traffic_false_alarm_rate_is_below_alpha() {
    // Every feature × window test of 48 h of steady traffic, over several seeds.
    let (mut tests, mut alarms, mut quiet_seeds) = (0u64, 0u64, 0u64);
    let seeds = 6;
    // Calibrated window tests per judged window: 5 features + the behaviour-cluster mix.
    let per_window = 6;
    for seed in 100..100 + seeds {
        let mut p = pipeline();
        let findings = run(&mut p, &stream(&SimConfig::steady(seed, 48)), None);
        let judged = p.runtimes()[0]
            .stats()
            .iter()
            .zip(&p.runtimes()[0].spec().objectives)
            .find(|(_, o)| o.name == "drift")
            .map(|(st, _)| st.windows_evaluated)
            .unwrap();
        tests += judged * per_window;
        let mut seed_alarms = 0;
        for f in drift_alerts(&findings) {
            seed_alarms += drifted(f)
                .iter()
                .filter(|n| !n.starts_with("behavior (all"))
                .count() as u64;
            eprintln!(
                "seed {seed}: {} {:?} {}",
                f.window_end, f.segment, f.message
            );
        }
        alarms += seed_alarms;
        quiet_seeds += u64::from(seed_alarms == 0);
    }
    let rate = alarms as f64 / tests.max(1) as f64;
    eprintln!(
        "drift false alarms over {seeds} × 48 h steady: {alarms} of {tests} feature-window tests ({rate:.5}; α = 0.001 after BH); {quiet_seeds}/{seeds} streams without any drift ticket"
    );
    assert!(rate <= 0.001, "false-alarm rate {rate} above α");
}

#[test]
fn prompt_change_is_found_in_the_first_window_with_enough_sessions() {
    let base = SimConfig::steady(21, 36);
    let change = base.start_ms + 24 * HOUR;
    let cfg = base.with_incident(Incident::new(
        IncidentKind::defaults("prompt-change").unwrap(),
        change,
        None,
    ));
    let findings = run(&mut pipeline(), &stream(&cfg), None);
    let new_key = |f: &&Finding| {
        f.objective == "drift"
            && f.segment.is_none()
            && f.key
                .iter()
                .any(|(k, v)| k == "prompt_version" && v == "sp-v2")
    };
    // The first window of the new key with at least minSamples (100) sessions is a drift.
    let first = findings
        .iter()
        .filter(new_key)
        .find(|f| f.sessions >= 100)
        .expect("the new key was judged");
    assert_eq!(first.verdict, Verdict::Breach, "{first:?}");
    let report = first.drift.as_ref().unwrap();
    assert!(report.predecessor, "compared with the replaced version");
    assert!(report.baseline.contains("/sp-v1/"), "{}", report.baseline);
    let names = drifted(first);
    assert!(names.contains(&"output_tokens"), "{names:?}");
    assert!(names.contains(&"tool_mix"), "{names:?}");
    // The finding says how much: median output tokens rose by about 30%.
    let out = report
        .features
        .iter()
        .find(|x| x.feature == "output_tokens")
        .unwrap();
    let median = |s: &str| s.trim_start_matches("median ").parse::<f64>().unwrap();
    let ratio = median(&out.current) / median(&out.reference);
    assert!(
        (1.15..1.5).contains(&ratio),
        "{} → {}",
        out.reference,
        out.current
    );
    assert!(first.message.contains("output_tokens"));
    assert!(first.chart.is_some());
}

#[test]
fn silent_model_swap_raising_refusals_is_found_naming_refusal() {
    let base = SimConfig::steady(33, 24);
    let swap = base.start_ms + 14 * HOUR;
    let cfg = base.with_incident(Incident::new(
        IncidentKind::defaults("model-swap").unwrap(),
        swap,
        None,
    ));
    let findings = run(&mut pipeline(), &stream(&cfg), None);
    let hits: Vec<_> = drift_alerts(&findings)
        .into_iter()
        .filter(|f| f.key.iter().any(|(k, v)| k == "model" && v == "m-2026-11"))
        .collect();
    assert!(!hits.is_empty(), "the model swap was not found");
    assert!(
        hits.iter().any(|f| drifted(f).contains(&"quality.refusal")),
        "{:?}",
        hits.iter().map(|f| drifted(f)).collect::<Vec<_>>()
    );
    let refusal = hits
        .iter()
        .flat_map(|f| &f.drift.as_ref().unwrap().features)
        .find(|x| x.feature == "quality.refusal" && x.verdict == FeatureVerdict::Drift)
        .unwrap();
    assert!(refusal.p_adjusted.unwrap() < 0.001);
    assert!(refusal.p_value.unwrap() <= refusal.p_adjusted.unwrap());
}

#[test]
fn baselines_survive_a_restart_and_comparisons_continue() {
    let base = SimConfig::steady(44, 36);
    let change = base.start_ms + 24 * HOUR;
    let cfg = base.with_incident(Incident::new(
        IncidentKind::defaults("prompt-change").unwrap(),
        change,
        None,
    ));
    let bytes = stream(&cfg);
    // Split the stream at 20 h: before the prompt change, after sp-v1's baseline froze.
    let cut = {
        let text = std::str::from_utf8(&bytes).unwrap();
        let marker = "\"ended_at\":\"2026-11-01T20:";
        let at = text.find(marker).unwrap();
        text[..at].rfind('\n').unwrap() + 1
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut p = pipeline();
        run(&mut p, &bytes[..cut], Some(&store));
        store.flush().unwrap();
        // The process dies here: nothing but the store survives.
    }
    let store = Store::open(dir.path()).unwrap();
    let restored = store.baselines().unwrap();
    let v1 = restored
        .iter()
        .find(|b| b.key.label() == "support-bot-prod/drift/support-bot/sp-v1/m-2026-09")
        .expect("sp-v1 baseline stored");
    assert!(v1.is_reference(), "frozen before the restart");
    assert!(v1.multivariate.is_some());
    let mut p = pipeline();
    p.restore_baselines(&restored);
    let findings = run(&mut p, &bytes[cut..], Some(&store));
    let after: Vec<_> = drift_alerts(&findings)
        .into_iter()
        .filter(|f| {
            f.key
                .iter()
                .any(|(k, v)| k == "prompt_version" && v == "sp-v2")
        })
        .collect();
    assert!(
        !after.is_empty(),
        "after the restart the new key is compared with sp-v1's baseline"
    );
    assert!(
        after[0]
            .drift
            .as_ref()
            .unwrap()
            .baseline
            .contains("/sp-v1/")
    );
}

/// A drift objective comparing only `quality.refusal`, at the defaults except `minSamples`.
fn refusal_only(min_samples: u64) -> slawatch::drift::engine::DriftConfig {
    slawatch::drift::engine::DriftConfig::new(&slawatch::spec::model::DriftSpec {
        features: vec!["quality.refusal".into()],
        p_value: 0.01,
        min_samples,
        test: "auto".into(),
        effect_size: 0.1,
        baseline_min_duration_ms: 6 * HOUR,
        relearn_every_ms: None,
        multivariate: false,
        sequential: false,
    })
}

/// Issue 10, item 1: at rare rates the z-test's normal approximation fails (1 refusal in 100
/// sessions against 0 in 2,400 gave p = 9.6e-7). On steady streams — the same true rate in
/// the baseline and the window — the per-feature false-alarm rate of the rate test must stay
/// within 2× the nominal α, for every rate and window size. The reference is a 6-hour
/// baseline at the window's traffic. Deterministic: fixed seed.
#[test]
fn rare_rate_false_alarm_rate_per_feature_is_within_twice_alpha() {
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution};
    use slawatch::drift::engine::{compare, decide};
    use slawatch::drift::features::FeatureSample;

    let cfg = refusal_only(100);
    let alpha = cfg.spec.p_value;
    let reps = 4000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10_001);
    let mut report = Vec::new();
    let mut worst: f64 = 0.0;
    for rate in [0.005, 0.01, 0.05] {
        for n in [100u64, 200, 400, 600] {
            let n_ref = 6 * n;
            let (mut rejected, mut drifted) = (0u32, 0u32);
            for _ in 0..reps {
                let r = Binomial::new(n_ref, rate).unwrap().sample(&mut rng);
                let c = Binomial::new(n, rate).unwrap().sample(&mut rng);
                let mut reference = FeatureSample::new(&cfg.set, 16);
                reference.sessions = n_ref;
                reference.binary[0] = (r, n_ref);
                let mut current = FeatureSample::new(&cfg.set, 16);
                current.sessions = n;
                current.binary[0] = (c, n);
                let mut batch = vec![compare(&cfg, &reference, &current)];
                decide(&mut batch);
                let result = &batch[0][0].result;
                rejected += u32::from(result.p_adjusted.unwrap_or(1.0) < alpha);
                drifted += u32::from(result.verdict == FeatureVerdict::Drift);
            }
            let (fa, fv) = (rejected as f64 / reps as f64, drifted as f64 / reps as f64);
            worst = worst.max(fa / alpha);
            report.push(format!(
                "rate {rate:.3} n {n:>3} vs {n_ref:>4}: test rejects {fa:.4} ({:.2}×α), drift verdicts {fv:.4}",
                fa / alpha
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        worst <= 2.0,
        "false-alarm rate up to {worst:.1}× α:\n{}",
        report.join("\n")
    );
}
