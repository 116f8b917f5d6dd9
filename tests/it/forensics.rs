//! Incident forensics on planted causes (issue 14): for five kinds of incident, five seeds each,
//! the first breach after the planted start carries an onset within one window step of it and
//! names the planted layer first in at least four of five seeds; and the affected sessions a
//! whole stream hands out equal the list this test computes from the stream's own lines.

use std::collections::BTreeSet;
use std::sync::Arc;

use slawatch::catalog::Catalog;
use slawatch::finding::{Finding, Verdict};
use slawatch::forensics::{AffectedBatch, AffectedReason, Layer};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::simulate::{
    AgentProfile, DEFAULT_START_MS, Incident, IncidentKind, SimConfig, write_jsonl,
};
use slawatch::spec::model::Severity;

const HOUR: i64 = 3_600_000;
/// The window step of every spec below.
const STEP: i64 = 5 * 60_000;
/// Where every incident is planted: 10 h into the stream (a pane boundary).
const PLANTED: i64 = DEFAULT_START_MS + 10 * HOUR;

fn spec(objective: &str, segment_by: &str) -> slawatch::spec::Spec {
    let yaml = format!(
        "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {{name: forensics}}\nspec:\n  \
         selector: {{agent: support-bot}}\n  {segment_by}window: {{size: 30m, step: 5m, \
         allowedLateness: 5m}}\n  minSessions: 100\n  period: {{rolling: 28d}}\n  objectives:\n    \
         - {objective}\n"
    );
    let (mut specs, diags) = slawatch::spec::parse_str(&yaml, "forensics.yaml");
    assert!(
        !slawatch::spec::has_errors(&diags),
        "{}",
        slawatch::spec::render_all(&diags)
    );
    specs.remove(0)
}

const SUCCESS: &str =
    "{name: success, rate: {of: status:success, min: 95%}, confidence: none, severity: ticket}";
const RESOLVED: &str =
    "{name: resolved, rate: {of: quality.resolved, min: 70%}, confidence: none, severity: ticket}";

struct Case {
    name: &'static str,
    layer: Layer,
    /// The planted value the top candidate must name.
    value: &'static str,
    objective: &'static str,
    segment_by: &'static str,
    agents: Vec<AgentProfile>,
    kind: IncidentKind,
}

fn cases() -> Vec<Case> {
    let base = AgentProfile::default;
    vec![
        Case {
            name: "tool error spike",
            layer: Layer::Tool,
            value: "get_order",
            objective: SUCCESS,
            segment_by: "",
            agents: vec![base()],
            kind: IncidentKind::ToolFailure {
                tool: "get_order".into(),
                error_rate: 0.6,
            },
        },
        Case {
            name: "provider 5xx burst",
            layer: Layer::Provider,
            value: "acme-llm",
            objective: SUCCESS,
            segment_by: "",
            agents: vec![
                base().with_weight(0.6),
                base().with_provider("beta-llm").with_weight(0.4),
            ],
            kind: IncidentKind::ProviderOutage {
                provider: "acme-llm".into(),
                error_rate: 0.3,
            },
        },
        Case {
            name: "prompt rollout",
            layer: Layer::Prompt,
            value: "sp-v3",
            objective: RESOLVED,
            segment_by: "",
            agents: vec![base()],
            kind: IncidentKind::PromptRollout {
                prompt_version: "sp-v3".into(),
                resolved_rate: 0.55,
            },
        },
        Case {
            name: "silent model swap",
            layer: Layer::Model,
            value: "m-2026-11",
            objective: RESOLVED,
            segment_by: "",
            agents: vec![base()],
            kind: IncidentKind::ModelSwap {
                model: "m-2026-11".into(),
                refusal_rate: 0.3,
            },
        },
        Case {
            name: "traffic-mix shift",
            layer: Layer::Input,
            value: "mobile",
            objective: SUCCESS,
            segment_by: "segmentBy: [attributes.channel]\n  ",
            agents: vec![base().with_channel_failure("mobile", 0.08)],
            kind: IncidentKind::MixShift {
                channel: "mobile".into(),
                share: 0.9,
            },
        },
    ]
}

fn stream(agents: Vec<AgentProfile>, kind: IncidentKind, seed: u64, hours: i64) -> Vec<u8> {
    let cfg = SimConfig {
        seed,
        duration_ms: hours * HOUR,
        sessions_per_hour: 1_200.0,
        agents,
        diurnal: false,
        late_fraction: 0.0,
        incidents: vec![Incident::new(kind, PLANTED, None)],
        ..SimConfig::default()
    };
    let mut bytes = Vec::new();
    write_jsonl(&cfg, &mut bytes).unwrap();
    bytes
}

/// Runs a stream through a pipeline: every finding, and every affected batch drained after
/// each record.
fn run(spec: slawatch::spec::Spec, bytes: &[u8]) -> (Vec<Finding>, Vec<AffectedBatch>) {
    let mut p = Pipeline::new(
        vec![spec],
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    );
    let (mut findings, mut affected) = (Vec::new(), Vec::new());
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        p.process_bytes(line, 0, &mut findings);
        affected.extend(p.drain_affected());
    }
    p.finish(&mut findings);
    affected.extend(p.drain_affected());
    (findings, affected)
}

fn opens_incident(f: &Finding) -> bool {
    f.verdict == Verdict::Breach && f.severity >= Severity::Ticket && f.segment.is_none()
}

#[test]
fn planted_causes_are_attributed_to_their_layer_with_the_onset_at_the_planted_start() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for case in cases() {
        let mut hits = 0;
        for seed in 1..=5u64 {
            let bytes = stream(case.agents.clone(), case.kind.clone(), seed, 12);
            let (findings, _) = run(spec(case.objective, case.segment_by), &bytes);
            let early = findings
                .iter()
                .filter(|f| opens_incident(f) && f.window_end <= PLANTED)
                .count();
            let first = findings
                .iter()
                .find(|f| opens_incident(f) && f.window_end > PLANTED);
            let Some(first) = first else {
                table.push(format!("{:<20} seed {seed}: no incident", case.name));
                failures.push(format!("{} seed {seed}: no breach", case.name));
                continue;
            };
            let fx = first.forensics.as_deref().cloned().unwrap_or_default();
            let onset_err = fx.onset.as_ref().map(|o| o.at - PLANTED);
            let top = fx.candidates.first();
            let hit = top.is_some_and(|c| c.layer == case.layer && c.name.contains(case.value));
            hits += usize::from(hit);
            table.push(format!(
                "{:<20} seed {seed}: breach at +{:>3} min, onset {} (interval {}), top {}, \
                 {} candidates, {early} breaches before the start — {}",
                case.name,
                (first.window_end - PLANTED) / 60_000,
                onset_err.map_or("none".into(), |e| format!("{:+} min", e / 60_000)),
                fx.onset.as_ref().map_or("-".into(), |o| format!(
                    "{:+}..{:+} min",
                    (o.low - PLANTED) / 60_000,
                    (o.high - PLANTED) / 60_000
                )),
                top.map_or("none".into(), |c| format!(
                    "{} {} ({:.0} %, {:?} {:.3} → {:.3}, in {:.0} % of bad)",
                    c.layer.as_str(),
                    c.name,
                    c.explained * 100.0,
                    c.metric,
                    c.before,
                    c.after,
                    c.in_bad_share * 100.0
                )),
                fx.candidates.len(),
                if hit { "ok" } else { "MISS" }
            ));
            match onset_err {
                Some(e) if e.abs() <= STEP => {}
                other => failures.push(format!(
                    "{} seed {seed}: onset error {other:?} ms is more than one step",
                    case.name
                )),
            }
        }
        if hits < 4 {
            failures.push(format!(
                "{}: the planted layer came first in {hits} of 5 seeds",
                case.name
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn affected_sessions_of_a_stream_equal_those_computed_from_its_lines() {
    let bytes = stream(
        vec![AgentProfile::default()],
        IncidentKind::ToolFailure {
            tool: "get_order".into(),
            error_rate: 0.6,
        },
        7,
        12,
    );
    let (findings, affected) = run(spec(SUCCESS, ""), &bytes);
    // The spans the incidents cover, from the findings: each streak from its onset (or its
    // first window's start: the finding carrying forensics opens a streak) to the end of its
    // every breaching window.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    let mut streak_from = i64::MIN;
    for f in findings.iter().filter(|f| opens_incident(f)) {
        if let Some(fx) = f.forensics.as_deref() {
            streak_from = fx.onset.as_ref().map_or(f.window_start, |o| o.at);
        }
        spans.push((f.window_start.max(streak_from), f.window_end));
    }
    assert!(!spans.is_empty(), "the spike raised no incident");
    eprintln!(
        "spans (min from the start): {:?}",
        spans
            .iter()
            .map(|(a, b)| (
                (a - DEFAULT_START_MS) / 60_000,
                (b - DEFAULT_START_MS) / 60_000
            ))
            .collect::<Vec<_>>()
    );
    // The test's own reading of the file: sessions whose status is not success, by ended_at.
    let mut expected = BTreeSet::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let t = slawatch::time::parse_rfc3339_ms(v["ended_at"].as_str().unwrap()).unwrap();
        if v["status"] != "success" && spans.iter().any(|(a, b)| *a <= t && t < *b) {
            let key = vec![
                ("agent".to_owned(), v["agent"].as_str().unwrap().to_owned()),
                (
                    "prompt_version".to_owned(),
                    v["prompt_version"].as_str().unwrap().to_owned(),
                ),
                ("model".to_owned(), v["model"].as_str().unwrap().to_owned()),
            ];
            expected.insert((v["session_id"].as_str().unwrap().to_owned(), t, key));
        }
    }
    let mut got = Vec::new();
    for b in &affected {
        assert_eq!(b.objective, "success");
        assert_eq!(b.dropped, 0);
        for s in &b.sessions {
            assert_eq!(s.key, b.key);
            assert!(
                matches!(&s.reason, AffectedReason::Signal { signal } if signal == "status:success=false"),
                "{:?}",
                s.reason
            );
            got.push((s.session_id.clone(), s.event_time, s.key.clone()));
        }
    }
    let handed = got.len();
    let got: BTreeSet<_> = got.into_iter().collect();
    assert_eq!(handed, got.len(), "a session was handed out twice");
    println!(
        "{} affected sessions in {} batches over {} breaching windows",
        got.len(),
        affected.len(),
        spans.len()
    );
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected, {} handed out; missing {missing:?}, extra {extra:?}",
        expected.len(),
        got.len()
    );
}

// ------------------------------------------------------------------ drift incidents --

/// A drift objective on two features, with a baseline that freezes after 6 h (the planted
/// change comes at 10 h). `key_by` empty keeps the default (agent, prompt version, model).
fn drift_spec(key_by: &str) -> slawatch::spec::Spec {
    let yaml = format!(
        "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {{name: drift}}\nspec:\n  \
         selector: {{agent: support-bot}}\n  {key_by}window: {{size: 30m, step: 5m, \
         allowedLateness: 5m}}\n  minSessions: 100\n  period: {{rolling: 28d}}\n  objectives:\n    \
         - name: drift\n      severity: ticket\n      drift:\n        \
         features: [output_tokens, quality.refusal]\n        minSamples: 100\n        \
         baseline: {{minDuration: 6h}}\n"
    );
    let (mut specs, diags) = slawatch::spec::parse_str(&yaml, "drift.yaml");
    assert!(
        !slawatch::spec::has_errors(&diags),
        "{}",
        slawatch::spec::render_all(&diags)
    );
    specs.remove(0)
}

struct DriftCase {
    name: &'static str,
    layer: Layer,
    value: &'static str,
    key_by: &'static str,
    kind: IncidentKind,
}

fn drift_cases() -> Vec<DriftCase> {
    let rollout = || IncidentKind::PromptChange {
        prompt_version: "sp-v9".into(),
        output_scale: 1.6,
        tool_mix: Vec::new(),
    };
    vec![
        DriftCase {
            name: "prompt rollout, new key",
            layer: Layer::Prompt,
            value: "sp-v9",
            key_by: "",
            kind: rollout(),
        },
        DriftCase {
            name: "prompt rollout, one key",
            layer: Layer::Prompt,
            value: "sp-v9",
            key_by: "keyBy: [provider]\n  ",
            kind: rollout(),
        },
        DriftCase {
            name: "silent model swap",
            layer: Layer::Model,
            value: "m-2026-11",
            key_by: "keyBy: [provider]\n  ",
            kind: IncidentKind::ModelSwap {
                model: "m-2026-11".into(),
                refusal_rate: 0.3,
            },
        },
    ]
}

fn opens_drift_incident(f: &Finding) -> bool {
    opens_incident(f) && f.check == slawatch::finding::Check::Drift
}

#[test]
fn planted_drift_causes_are_attributed_to_their_layer_with_the_onset_at_the_planted_start() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for case in drift_cases() {
        let mut hits = 0;
        for seed in 1..=5u64 {
            let bytes = stream(vec![AgentProfile::default()], case.kind.clone(), seed, 12);
            let (findings, _) = run(drift_spec(case.key_by), &bytes);
            let early = findings
                .iter()
                .filter(|f| opens_drift_incident(f) && f.window_end <= PLANTED)
                .count();
            let Some(first) = findings
                .iter()
                .find(|f| opens_drift_incident(f) && f.window_end > PLANTED)
            else {
                table.push(format!("{:<24} seed {seed}: no incident", case.name));
                failures.push(format!("{} seed {seed}: no drift breach", case.name));
                continue;
            };
            let fx = first.forensics.as_deref().cloned().unwrap_or_default();
            let onset_err = fx.onset.as_ref().map(|o| o.at - PLANTED);
            let top = fx.candidates.first();
            let hit = top.is_some_and(|c| c.layer == case.layer && c.name == case.value);
            hits += usize::from(hit);
            table.push(format!(
                "{:<24} seed {seed}: breach at +{:>3} min, feature {}, onset {} (interval {}), \
                 top {}, {} candidates, {early} breaches before the start — {}",
                case.name,
                (first.window_end - PLANTED) / 60_000,
                fx.feature.as_deref().unwrap_or("-"),
                onset_err.map_or("none".into(), |e| format!("{:+} min", e / 60_000)),
                fx.onset.as_ref().map_or("-".into(), |o| format!(
                    "{:+}..{:+} min",
                    (o.low - PLANTED) / 60_000,
                    (o.high - PLANTED) / 60_000
                )),
                top.map_or("none".into(), |c| format!(
                    "{} {} ({:.0} %, {:?} {:.3} → {:.3}, in {:.0} % of the sessions)",
                    c.layer.as_str(),
                    c.name,
                    c.explained * 100.0,
                    c.metric,
                    c.before,
                    c.after,
                    c.in_bad_share * 100.0
                )),
                fx.candidates.len(),
                if hit { "ok" } else { "MISS" }
            ));
            match onset_err {
                Some(e) if e.abs() <= STEP => {}
                other => failures.push(format!(
                    "{} seed {seed}: onset error {other:?} ms is more than one step",
                    case.name
                )),
            }
        }
        if hits < 4 {
            failures.push(format!(
                "{}: the planted layer came first in {hits} of 5 seeds",
                case.name
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What counts against a drift objective: every session of the drifting key from the onset to
/// the end of each drifting window of the streak. The test reads the file itself.
#[test]
fn affected_sessions_of_a_drift_equal_the_drifting_keys_sessions_since_the_onset() {
    let bytes = stream(
        vec![AgentProfile::default()],
        IncidentKind::PromptChange {
            prompt_version: "sp-v9".into(),
            output_scale: 1.6,
            tool_mix: Vec::new(),
        },
        3,
        12,
    );
    let (findings, affected) = run(drift_spec(""), &bytes);
    type Span = (Vec<(String, String)>, i64, i64);
    let mut spans: Vec<Span> = Vec::new();
    let mut streak_from = i64::MIN;
    for f in findings.iter().filter(|f| opens_drift_incident(f)) {
        if let Some(fx) = f.forensics.as_deref() {
            streak_from = fx.onset.as_ref().map_or(f.window_start, |o| o.at);
        }
        spans.push((f.key.clone(), f.window_start.max(streak_from), f.window_end));
    }
    assert!(!spans.is_empty(), "the rollout raised no drift incident");
    let mut expected = BTreeSet::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let t = slawatch::time::parse_rfc3339_ms(v["ended_at"].as_str().unwrap()).unwrap();
        let key = vec![
            ("agent".to_owned(), v["agent"].as_str().unwrap().to_owned()),
            (
                "prompt_version".to_owned(),
                v["prompt_version"].as_str().unwrap().to_owned(),
            ),
            ("model".to_owned(), v["model"].as_str().unwrap().to_owned()),
        ];
        if spans.iter().any(|(k, a, b)| *k == key && *a <= t && t < *b) {
            let tokens = v["usage"]["output_tokens"].as_f64();
            expected.insert((
                v["session_id"].as_str().unwrap().to_owned(),
                t,
                key,
                tokens.map(f64::to_bits),
            ));
        }
    }
    let mut got = Vec::new();
    for b in &affected {
        assert_eq!(b.objective, "drift");
        assert_eq!(b.dropped, 0);
        for s in &b.sessions {
            let AffectedReason::Drifted { feature, value } = &s.reason else {
                panic!("{:?}", s.reason)
            };
            assert_eq!(feature, "output_tokens");
            got.push((
                s.session_id.clone(),
                s.event_time,
                s.key.clone(),
                value.map(f64::to_bits),
            ));
        }
    }
    let handed = got.len();
    let got: BTreeSet<_> = got.into_iter().collect();
    assert_eq!(handed, got.len(), "a session was handed out twice");
    println!(
        "{} affected sessions in {} batches over {} drifting windows",
        got.len(),
        affected.len(),
        spans.len()
    );
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected, {} handed out; missing {missing:?}, extra {extra:?}",
        expected.len(),
        got.len()
    );
}
