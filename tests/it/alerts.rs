//! The alert engine in virtual (event) time: grouping, group wait/interval/repeat, flapping,
//! cooldown, keepFiringFor, inhibition, silences, stakeholder notices, deterministic ids and
//! snapshots; policy diagnostics; rendering (80 columns, MIME structure, no personal data).
//! Everything here is pure: no SMTP server, no sleeping.

use std::path::Path;
use std::sync::Arc;

use slawatch::alerts::incident::{AlertEngine, ClearSynthesizer, Notification, NotificationKind};
use slawatch::alerts::policy::{Audience, Policy, parse_policy};
use slawatch::alerts::render;
use slawatch::catalog::Catalog;
use slawatch::cli::load_specs;
use slawatch::finding::{Clear, Finding};
use slawatch::ingest::{LinesSource, Source};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::simulate::{Incident, IncidentKind, SimConfig, write_jsonl};
use slawatch::spec::model::Spec;
use slawatch::time::{format_rfc3339_ms, parse_rfc3339_ms};

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;
/// 2026-11-01T00:00:00Z
pub const T0: i64 = 1_793_491_200_000;

// ------------------------------------------------------------------ harness --

/// The shipped specs.
pub fn specs() -> Vec<Spec> {
    load_specs(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")]).unwrap()
}

/// A policy for tests: on-call and stakeholder receivers with test addresses.
pub const TEST_POLICY: &str = "\
apiVersion: slawatch/v1
kind: NotificationPolicy
metadata: {name: test}
spec:
  receivers:
    oncall: [oncall@example.test]
    support-leads: [leads@example.test, cx-director@example.test]
    payments-oncall: [payments@example.test]
    finance-ops: [finance@example.test]
  routes:
    - match: {severity: [page, ticket]}
      receivers: [oncall]
";

pub fn test_policy() -> Arc<Policy> {
    let (p, d) = parse_policy(TEST_POLICY, "test.yaml");
    assert!(d.is_empty(), "{}", slawatch::spec::render_all(&d));
    Arc::new(p.unwrap())
}

/// A generated stream as JSON lines, with incidents `(kind, start hour, minutes)`; every
/// seventh session also carries personal data in fields slawatch must never show.
pub fn stream(seed: u64, hours: u32, incidents: &[(&str, i64, i64)]) -> Vec<Vec<u8>> {
    let mut cfg = SimConfig::steady(seed, hours);
    for (name, at_h, minutes) in incidents {
        let start = cfg.start_ms + at_h * HOUR;
        cfg = cfg.with_incident(Incident::new(
            IncidentKind::defaults(name).unwrap(),
            start,
            Some(minutes * MIN),
        ));
    }
    let mut bytes = Vec::new();
    write_jsonl(&cfg, &mut bytes).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| if i % 7 == 3 { with_pii(l) } else { l.to_vec() })
        .collect()
}

/// Personal data planted in session records (must never reach a mail).
pub const PLANTED_PII: [&str; 6] = [
    "jane.doe@example.org",
    "4111 1111 1111 1111",
    "4111111111111111",
    "+44 20 7946 0958",
    "Jane Doe",
    "221B Baker Street",
];

fn with_pii(line: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
    let o = v.as_object_mut().unwrap();
    let attrs = o
        .entry("attributes")
        .or_insert_with(|| serde_json::json!({}));
    let a = attrs.as_object_mut().unwrap();
    a.insert("customer_email".into(), PLANTED_PII[0].into());
    a.insert("customer_phone".into(), PLANTED_PII[3].into());
    a.insert("customer_name".into(), PLANTED_PII[4].into());
    o.insert(
        "user_message".into(),
        format!(
            "my card is {} ({}), ship to {}",
            PLANTED_PII[1], PLANTED_PII[2], PLANTED_PII[5]
        )
        .into(),
    );
    serde_json::to_vec(&v).unwrap()
}

/// What a replay feeds: findings and clears as windows close, and the newest event time
/// after each record.
pub trait Sink {
    fn finding(&mut self, f: &Finding);
    fn clear(&mut self, c: &Clear);
    /// Records up to `max_event_time` are processed; `watermark` is the conservative one.
    fn tick(&mut self, max_event_time: i64, watermark: i64);
}

/// The pipeline, driven record by record, so that window closes are known.
pub struct Replay {
    pipeline: Pipeline,
    lateness: i64,
    max_t: i64,
}

impl Replay {
    pub fn new(specs: &[Spec]) -> Replay {
        Replay {
            lateness: specs
                .iter()
                .map(|s| s.window.allowed_lateness_ms)
                .max()
                .unwrap_or(0),
            pipeline: Pipeline::new(
                specs.to_vec(),
                Arc::new(Catalog::embedded()),
                &PipelineConfig::default(),
            ),
            max_t: i64::MIN,
        }
    }

    pub fn feed(&mut self, lines: &[Vec<u8>], sink: &mut dyn Sink) {
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        let mut src = LinesSource::new(&bytes[..], "test".into());
        let mut out = Vec::new();
        while let Some(rec) = src.next_record().unwrap() {
            self.pipeline.process(&rec, &mut out);
            for f in out.drain(..) {
                sink.finding(&f);
            }
            for c in self.pipeline.drain_clears() {
                sink.clear(&c);
            }
            let t = serde_json::from_slice::<serde_json::Value>(&rec.bytes)
                .ok()
                .and_then(|v| v["ended_at"].as_str().and_then(parse_rfc3339_ms));
            if let Some(t) = t {
                self.max_t = self.max_t.max(t);
                sink.tick(self.max_t, self.max_t - self.lateness);
            }
        }
    }

    pub fn finish(&mut self, sink: &mut dyn Sink) {
        let mut out = Vec::new();
        self.pipeline.finish(&mut out);
        for f in out.drain(..) {
            sink.finding(&f);
        }
        for c in self.pipeline.drain_clears() {
            sink.clear(&c);
        }
        sink.tick(self.max_t, self.max_t);
    }
}

/// The pure engine as a sink, collecting notifications.
pub struct EngineSink {
    pub engine: AlertEngine,
    pub out: Vec<Notification>,
}

impl EngineSink {
    pub fn new(policy: Arc<Policy>, specs: &[Spec]) -> EngineSink {
        EngineSink {
            engine: AlertEngine::new(policy, specs),
            out: Vec::new(),
        }
    }
}

impl Sink for EngineSink {
    fn finding(&mut self, f: &Finding) {
        self.engine.on_finding(f);
    }

    fn clear(&mut self, c: &Clear) {
        self.engine.on_clear(c);
    }

    fn tick(&mut self, _max_event_time: i64, watermark: i64) {
        self.out.extend(self.engine.advance(watermark));
    }
}

impl Sink for slawatch::alerts::AlertService {
    fn finding(&mut self, f: &Finding) {
        self.on_finding(f);
    }

    fn clear(&mut self, c: &Clear) {
        self.on_clear(c);
    }

    fn tick(&mut self, max_event_time: i64, watermark: i64) {
        slawatch::alerts::AlertService::tick(self, max_event_time, watermark).unwrap();
    }
}

/// `kind audience subject`, one per notification, for assertions and failure messages.
pub fn describe(ns: &[Notification]) -> String {
    ns.iter()
        .map(|n| {
            format!(
                "{} {:?} {:?} {} → {:?}: {}",
                format_rfc3339_ms(n.at),
                n.kind,
                n.audience,
                n.group.id(),
                n.recipients,
                render::subject(n)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------- synthetic inputs --

/// A finding of `support-bot-prod` on key `support-bot sp-v1 m-2026-09` for the window
/// ending at `end` (one hour long), built through JSON so new optional fields default.
pub fn finding(
    objective: &str,
    check: &str,
    severity: &str,
    segment: Option<&str>,
    end: i64,
) -> Finding {
    let (dimension, unit, observed, target, cmp) = match objective {
        "success" => ("availability", "ratio", 0.8, 0.99, ">="),
        "fast-enough" => ("availability", "ratio", 0.7, 0.95, ">="),
        "latency-p99" => ("availability", "ms", 43_000.0, 20_000.0, "<="),
        "refusals" => ("behavior", "ratio", 0.09, 0.05, "<="),
        "resolved" => ("behavior", "ratio", 0.5, 0.65, ">="),
        "pii" => ("governance", "count", 3.0, 0.0, "<="),
        _ => ("availability", "ratio", 0.5, 0.9, ">="),
    };
    finding_on(
        objective, check, severity, segment, end, "sp-v1", dimension, unit, observed, target, cmp,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn finding_on(
    objective: &str,
    check: &str,
    severity: &str,
    segment: Option<&str>,
    end: i64,
    prompt: &str,
    dimension: &str,
    unit: &str,
    observed: f64,
    target: f64,
    cmp: &str,
) -> Finding {
    let start = if check == "violation" {
        end - 15 * MIN
    } else {
        end - HOUR
    };
    let key = vec![
        ("agent".to_owned(), "support-bot".to_owned()),
        ("prompt_version".to_owned(), prompt.to_owned()),
        ("model".to_owned(), "m-2026-09".to_owned()),
    ];
    let (s, e) = (format_rfc3339_ms(start), format_rfc3339_ms(end));
    let typed_check: slawatch::finding::Check =
        serde_json::from_value(serde_json::json!(check)).unwrap();
    let id = Finding::make_id(
        "support-bot-prod",
        objective,
        typed_check,
        &key,
        segment,
        start,
        end,
    );
    let details = if objective == "pii" {
        serde_json::json!([[
            "card_number passed_through→tool:update_address",
            observed as u64
        ]])
    } else {
        serde_json::json!([])
    };
    // What the core would say the finding measured; objectives the renderer needs no
    // subject for keep none, like findings stored before subjects existed.
    let subject = match objective {
        "latency-p99" => {
            serde_json::json!({"kind": "percentile", "field": "duration_ms", "p": 99.0})
        }
        "refusals" => serde_json::json!({"kind": "rate", "signal": "refusal"}),
        "resolved" => serde_json::json!({"kind": "rate", "signal": "resolved"}),
        "pii" => serde_json::json!({"kind": "pii"}),
        _ => serde_json::Value::Null,
    };
    serde_json::from_value(serde_json::json!({
        "id": id, "spec": "support-bot-prod", "objective": objective, "check": check,
        "dimension": dimension, "verdict": "breach", "severity": severity, "key": key,
        "segment": segment, "window_start": s, "window_end": e, "sessions": 200,
        "observed": observed, "comparator": cmp, "target": target, "unit": unit,
        "exemplars": ["s-0000042", "s-0000043"], "details": details, "subject": subject,
        "message": format!("{objective} is {observed}, outside {target}"),
        "runbook": "https://wiki.example.com/runbooks/support-bot"
    }))
    .unwrap()
}

pub fn clear(objective: &str, segment: Option<&str>, end: i64) -> Clear {
    Clear {
        spec: "support-bot-prod".into(),
        objective: objective.into(),
        key: vec![
            ("agent".into(), "support-bot".into()),
            ("prompt_version".into(), "sp-v1".into()),
            ("model".into(), "m-2026-09".into()),
        ],
        segment: segment.map(str::to_owned),
        window_end: end,
        ..Clear::default()
    }
}

fn engine(policy: Arc<Policy>) -> AlertEngine {
    AlertEngine::new(policy, &specs())
}

fn oncall(ns: &[Notification]) -> Vec<&Notification> {
    ns.iter()
        .filter(|n| n.audience == Audience::Oncall)
        .collect()
}

fn kinds(ns: &[&Notification]) -> Vec<NotificationKind> {
    ns.iter().map(|n| n.kind).collect()
}

/// Feeds events in order, advancing to each event's time; returns every notification.
#[allow(clippy::large_enum_variant)]
enum Ev {
    F(Finding),
    C(Clear),
    Advance(i64),
}

/// Events at the same time form one batch (one window close) and are applied together before
/// the engine advances to that time, as the pipeline delivers them.
fn run(engine: &mut AlertEngine, events: Vec<Ev>) -> Vec<Notification> {
    let mut out = Vec::new();
    let time = |e: &Ev| match e {
        Ev::F(f) => f.window_end,
        Ev::C(c) => c.window_end,
        Ev::Advance(t) => *t,
    };
    let mut pending: Option<i64> = None;
    for e in events {
        let t = time(&e);
        if let Some(p) = pending
            && p != t
        {
            out.extend(engine.advance(p));
        }
        pending = Some(t);
        match e {
            Ev::F(f) => engine.on_finding(&f),
            Ev::C(c) => engine.on_clear(&c),
            Ev::Advance(_) => {}
        }
    }
    if let Some(p) = pending {
        out.extend(engine.advance(p));
    }
    out
}

/// Whitespace-insensitive `contains` (text parts are wrapped).
fn says(text: &str, phrase: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(text).contains(&norm(phrase))
}

// --------------------------------------------------------------- lifecycle --

#[test]
fn a_flapping_objective_gets_one_mail_its_repeats_and_one_resolved_notice() {
    let mut e = engine(test_policy());
    let first = T0 + HOUR;
    let mut evs = Vec::new();
    // Six hours of 15-minute windows, breaching every other one; then two clean hours.
    for k in 0..32 {
        let end = first + k * 15 * MIN;
        if k < 24 && k % 2 == 0 {
            evs.push(Ev::F(finding(
                "latency-p99",
                "percentile",
                "ticket",
                None,
                end,
            )));
        } else {
            evs.push(Ev::C(clear("latency-p99", None, end)));
        }
    }
    let ns = run(&mut e, evs);
    let on = oncall(&ns);
    assert_eq!(
        kinds(&on),
        [
            NotificationKind::Firing,
            NotificationKind::Repeat,
            NotificationKind::Resolved
        ],
        "{}",
        describe(&ns)
    );
    assert!(
        ns.iter().all(|n| n.audience == Audience::Oncall),
        "{}",
        describe(&ns)
    );
    assert_eq!(on[0].at, first + 30_000, "group wait");
    assert_eq!(on[1].at, first + 4 * HOUR + 30_000, "repeat interval");
    let last_breach = first + 22 * 15 * MIN;
    assert_eq!(
        on[2].at,
        last_breach + 15 * MIN + HOUR,
        "one clean window + cooldown"
    );
    assert_eq!(on[2].incidents[0].reopened, 11);
    // One thread: the root's Message-ID is the incident id; the rest reply to it.
    let root = format!("<{}@slawatch>", on[0].thread_id);
    assert_eq!(on[0].message_id, root);
    assert_eq!(on[0].in_reply_to, None);
    for n in &on[1..] {
        assert_eq!(n.thread_id, on[0].thread_id);
        assert_eq!(n.in_reply_to.as_deref(), Some(root.as_str()));
        assert_eq!(n.references, std::slice::from_ref(&root));
        assert_ne!(n.message_id, root);
    }
    assert!(render::subject(on[2]).starts_with("[RESOLVED] support-bot-prod/latency-p99 — "));
    // Nothing is left behind.
    assert_eq!(e.incidents().count(), 0);
    assert_eq!(e.groups().count(), 0);
}

#[test]
fn zero_tolerance_pages_at_once_with_every_segment_in_one_mail() {
    let mut e = engine(test_policy());
    let t = T0 + 6 * HOUR;
    let mut ns = run(
        &mut e,
        vec![
            Ev::F(finding("pii", "violation", "page", None, t)),
            Ev::F(finding("pii", "violation", "page", Some("channel=web"), t)),
            Ev::F(finding(
                "pii",
                "violation",
                "page",
                Some("channel=email"),
                t,
            )),
            Ev::F(finding(
                "latency-p99",
                "percentile",
                "ticket",
                Some("channel=web"),
                t,
            )),
        ],
    );
    let on = oncall(&ns);
    assert_eq!(kinds(&on), [NotificationKind::Firing], "{}", describe(&ns));
    assert_eq!(on[0].at, t, "no group wait for a zero-tolerance page");
    assert_eq!(on[0].group.objective, "pii");
    assert_eq!(on[0].incidents.len(), 3);
    assert_eq!(on[0].recipients, ["oncall@example.test"]);
    let subject = render::subject(on[0]);
    assert_eq!(
        subject,
        "[FIRING:page] support-bot-prod/pii — 3 sessions sent personal data to \
         tool:update_address on support-bot sp-v1 m-2026-09 · 2 segments"
    );
    // Stakeholders hear about the broken promise in their own thread.
    let st: Vec<&Notification> = ns
        .iter()
        .filter(|n| n.audience == Audience::Stakeholder)
        .collect();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].kind, NotificationKind::Breach);
    assert_eq!(
        st[0].recipients,
        ["leads@example.test", "cx-director@example.test"]
    );
    assert_eq!(
        st[0].message_id,
        format!("<{}.stakeholder@slawatch>", st[0].thread_id)
    );
    // The ticket waits its 30 s; a new PII segment joins the open thread as an update.
    ns = run(
        &mut e,
        vec![
            Ev::Advance(t + 30_000),
            Ev::F(finding(
                "pii",
                "violation",
                "page",
                Some("channel=mobile"),
                t + 15 * MIN,
            )),
        ],
    );
    assert_eq!(
        ns.iter()
            .map(|n| (n.kind, n.group.objective.as_str()))
            .collect::<Vec<_>>(),
        [
            (NotificationKind::Firing, "latency-p99"),
            (NotificationKind::Update, "pii")
        ],
        "{}",
        describe(&ns)
    );
    let update = &ns[1];
    let new: Vec<_> = update.incidents.iter().filter(|v| v.new).collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].segment.as_deref(), Some("channel=mobile"));
    assert!(
        render::subject(update).ends_with("· 3 segments (+1 new)"),
        "{}",
        render::subject(update)
    );
}

#[test]
fn updates_come_at_most_every_group_interval() {
    let mut e = engine(test_policy());
    let t = T0 + HOUR;
    let mut evs = vec![Ev::F(finding("refusals", "rate", "ticket", None, t))];
    for (seg, minute) in [("a", 1), ("b", 2), ("c", 7), ("d", 8)] {
        let seg = format!("channel={seg}");
        evs.push(Ev::F(finding(
            "refusals",
            "rate",
            "ticket",
            Some(&seg),
            t + minute * MIN,
        )));
    }
    evs.push(Ev::Advance(t + 20 * MIN));
    let ns = run(&mut e, evs);
    let at: Vec<i64> = ns.iter().map(|n| (n.at - t) / 1000).collect();
    // Root after 30 s (the key alone), then segments batched 5 min apart.
    assert_eq!(
        kinds(&oncall(&ns)),
        [
            NotificationKind::Firing,
            NotificationKind::Update,
            NotificationKind::Update
        ]
    );
    assert_eq!(at, [30, 330, 630], "{}", describe(&ns));
    let new = |n: &Notification| n.incidents.iter().filter(|v| v.new).count();
    assert_eq!((new(&ns[0]), new(&ns[1]), new(&ns[2])), (1, 2, 2));
}

#[test]
fn keep_firing_for_delays_resolution_and_cooldown_keeps_the_thread() {
    let p = {
        let src = TEST_POLICY.to_owned() + "  timing: {keepFiringFor: 30m, cooldown: 1h}\n";
        let (p, d) = parse_policy(&src, "t.yaml");
        assert!(d.is_empty(), "{}", slawatch::spec::render_all(&d));
        Arc::new(p.unwrap())
    };
    let mut e = engine(p);
    let t = T0 + HOUR;
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding("latency-p99", "percentile", "ticket", None, t)),
            Ev::C(clear("latency-p99", None, t + 15 * MIN)),
        ],
    );
    assert_eq!(kinds(&oncall(&ns)), [NotificationKind::Firing]);
    assert_eq!(
        e.incidents().next().unwrap().status,
        slawatch::alerts::IncidentStatus::Firing
    );
    run(
        &mut e,
        vec![Ev::C(clear("latency-p99", None, t + 30 * MIN))],
    );
    let inc = e.incidents().next().unwrap();
    assert_eq!(inc.resolved_at, Some(t + 30 * MIN));
    // A re-breach inside the cooldown continues the thread silently...
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding(
                "latency-p99",
                "percentile",
                "ticket",
                None,
                t + 75 * MIN,
            )),
            Ev::C(clear("latency-p99", None, t + 90 * MIN)),
            Ev::C(clear("latency-p99", None, t + 105 * MIN)),
            Ev::Advance(t + 3 * HOUR),
        ],
    );
    assert_eq!(
        kinds(&oncall(&ns)),
        [NotificationKind::Resolved],
        "{}",
        describe(&ns)
    );
    assert_eq!(ns[0].at, t + 105 * MIN + HOUR);
    // ...and after the cooldown a breach is a new incident in a new thread.
    let thread = ns[0].thread_id.clone();
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding(
                "latency-p99",
                "percentile",
                "ticket",
                None,
                t + 4 * HOUR,
            )),
            Ev::Advance(t + 4 * HOUR + MIN),
        ],
    );
    assert_eq!(kinds(&oncall(&ns)), [NotificationKind::Firing]);
    assert_ne!(ns[0].thread_id, thread);
}

#[test]
fn an_availability_page_inhibits_behavior_alerts_on_the_same_key() {
    let mut e = engine(test_policy());
    let t = T0 + HOUR;
    let other = finding_on(
        "refusals", "rate", "ticket", None, t, "sp-v2", "behavior", "ratio", 0.09, 0.05, "<=",
    );
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding("success", "burn_rate", "page", None, t)),
            Ev::F(finding("refusals", "rate", "ticket", None, t)),
            Ev::F(other),
            Ev::Advance(t + MIN),
        ],
    );
    let groups: Vec<(NotificationKind, String, usize)> = oncall(&ns)
        .iter()
        .map(|n| (n.kind, n.group.objective.clone(), n.incidents.len()))
        .collect();
    // Refusals on sp-v1 are held back; on sp-v2 (no page there) they are mailed.
    assert_eq!(
        groups,
        [
            (NotificationKind::Firing, "refusals".to_owned(), 2),
            (NotificationKind::Firing, "success".to_owned(), 1)
        ],
        "{}",
        describe(&ns)
    );
    let refusals = oncall(&ns)[0];
    let statuses: Vec<_> = refusals
        .incidents
        .iter()
        .map(|v| (v.key[1].1.clone(), v.status))
        .collect();
    assert!(statuses.contains(&(
        "sp-v2".into(),
        slawatch::alerts::incident::ViewStatus::Firing
    )));
    assert!(statuses.contains(&(
        "sp-v1".into(),
        slawatch::alerts::incident::ViewStatus::Inhibited
    )));
    assert!(e.state().stats.notifications >= 2);
}

#[test]
fn silences_hold_mail_until_they_expire() {
    let mut e = engine(test_policy());
    let t = T0 + HOUR;
    e.set_silences(vec![slawatch::alerts::Silence {
        id: "s1".into(),
        matchers: slawatch::alerts::Matcher::parse_list(
            "spec=support-bot-prod,objective=latency-p99,key~=*sp-v1*",
        )
        .unwrap(),
        starts_at: t - HOUR,
        ends_at: t + HOUR,
        comment: "planned load test".into(),
        created_by: "test".into(),
    }]);
    let mut evs = Vec::new();
    for k in 0..8 {
        evs.push(Ev::F(finding(
            "latency-p99",
            "percentile",
            "ticket",
            None,
            t + k * 15 * MIN,
        )));
    }
    let ns = run(&mut e, evs);
    assert_eq!(
        kinds(&oncall(&ns)),
        [NotificationKind::Firing],
        "{}",
        describe(&ns)
    );
    assert_eq!(
        ns[0].at,
        t + HOUR + 30_000,
        "mailed a group wait after the silence ended"
    );
}

#[test]
fn info_findings_never_notify() {
    let mut e = engine(test_policy());
    let mut evs = Vec::new();
    for k in 0..20 {
        evs.push(Ev::F(finding(
            "success",
            "window",
            "info",
            None,
            T0 + k * 15 * MIN,
        )));
    }
    evs.push(Ev::Advance(T0 + 10 * HOUR));
    assert!(run(&mut e, evs).is_empty());
    assert_eq!(e.incidents().count(), 0);
}

#[test]
fn stakeholders_hear_of_projected_and_actual_breaches_in_plain_words() {
    let mut e = engine(test_policy());
    let period = 28 * 24 * HOUR;
    // First data half a period ago.
    let start = T0 - period / 2;
    let mut warmup = finding("success", "window", "info", None, start + HOUR);
    warmup.window_start = start;
    let t = T0 + HOUR;
    let with_budget = |rate: f64, end: i64| {
        let mut f = finding("success", "burn_rate", "page", None, end);
        f.budget_consumed = Some(rate);
        f.burn_rates = serde_json::from_value(serde_json::json!([
            {"tier": "fast", "factor": 14.4, "long_window": "1h", "long_rate": 20.0,
             "short_window": "5m", "short_rate": 22.0}
        ]))
        .unwrap();
        f
    };
    let ns = run(
        &mut e,
        vec![
            Ev::F(warmup),
            Ev::F(with_budget(1.2, t)),
            Ev::F(with_budget(2.5, t + 15 * MIN)),
            Ev::C(clear("success", None, t + 30 * MIN)),
            Ev::Advance(t + 3 * HOUR),
        ],
    );
    let st: Vec<&Notification> = ns
        .iter()
        .filter(|n| n.audience == Audience::Stakeholder)
        .collect();
    assert_eq!(
        kinds(&st),
        [
            NotificationKind::ProjectedBreach,
            NotificationKind::Breach,
            NotificationKind::Recovered
        ],
        "{}",
        describe(&ns)
    );
    // 1.2 of the budget at the traffic so far, half the period gone: 60% spent, 120% projected.
    let b = st[0].budget.as_ref().unwrap();
    assert!(
        (b.consumed - 0.6).abs() < 0.01 && (b.projected.unwrap() - 1.2).abs() < 0.01,
        "{b:?}"
    );
    assert!(st[1].budget.as_ref().unwrap().consumed >= 1.0);
    for n in &st[1..] {
        assert_eq!(n.in_reply_to.as_deref(), Some(st[0].message_id.as_str()));
    }
    let text = render::render(st[0], &test_policy().timing).text;
    assert!(
        says(
            &text,
            "1 in 5 customer conversations with support-bot failed"
        ),
        "{text}"
    );
    assert!(says(&text, "will be broken around"), "{text}");
    for jargon in ["burn", "SLO", "p99", "segment", "budget"] {
        assert!(
            !text.contains(jargon),
            "stakeholder text says `{jargon}`:\n{text}"
        );
    }
    let on = render::render(oncall(&ns)[0], &test_policy().timing).text;
    // One budget vocabulary (issue 10 item 8): what is left, never "spent" or "used" beside
    // it. At 1.2× the budget rate for 14 days 1 h of 28 days: 1 − 1.2 × 337/672 = 39.8% left.
    assert!(says(&on, "39.8% of the 28d error budget left"), "{on}");
    for word in ["budget spent", "budget used", "of the budget by"] {
        assert!(!on.contains(word), "on-call mail says `{word}`:\n{on}");
    }
    assert!(says(&on, "runs out in"), "{on}");
}

// ----------------------------------------------------- determinism, replay --

fn replay_notifications(lines: &[Vec<u8>], snapshot_at: Option<usize>) -> Vec<Notification> {
    let specs = specs();
    let mut sink = EngineSink::new(test_policy(), &specs);
    let mut r = Replay::new(&specs);
    match snapshot_at {
        None => r.feed(lines, &mut sink),
        Some(i) => {
            r.feed(&lines[..i], &mut sink);
            // Restart from a snapshot taken through JSON, as the store keeps it.
            let json = serde_json::to_string(sink.engine.state()).unwrap();
            sink.engine = AlertEngine::with_state(
                test_policy(),
                &specs,
                serde_json::from_str(&json).unwrap(),
            );
            r.feed(&lines[i..], &mut sink);
        }
    }
    r.finish(&mut sink);
    sink.out
}

#[test]
fn a_replay_gives_the_same_notifications_with_or_without_a_restart() {
    let lines = stream(5, 30, &[("latency-tail", 8, 120), ("pii-leak", 20, 10)]);
    let a = replay_notifications(&lines, None);
    let b = replay_notifications(&lines, None);
    let c = replay_notifications(&lines, Some(lines.len() / 2));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let ids: std::collections::BTreeSet<_> = a.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids.len(), a.len(), "ids are unique");
    assert_eq!(
        a.iter()
            .map(|n| (n.kind, n.audience, n.group.id()))
            .collect::<Vec<_>>(),
        [
            (
                NotificationKind::Firing,
                Audience::Oncall,
                "support-bot-prod/latency-p99/ticket".into()
            ),
            (
                NotificationKind::Resolved,
                Audience::Oncall,
                "support-bot-prod/latency-p99/ticket".into()
            ),
            (
                NotificationKind::Firing,
                Audience::Oncall,
                "support-bot-prod/pii/page".into()
            ),
            (
                NotificationKind::Breach,
                Audience::Stakeholder,
                "support-bot-prod/pii/page".into()
            ),
            (
                NotificationKind::Resolved,
                Audience::Oncall,
                "support-bot-prod/pii/page".into()
            ),
            (
                NotificationKind::Recovered,
                Audience::Stakeholder,
                "support-bot-prod/pii/page".into()
            ),
        ],
        "{}",
        describe(&a)
    );
}

// ------------------------------------------------------------------ render --

#[test]
fn mails_are_multipart_with_an_inline_chart_80_columns_and_no_personal_data() {
    let lines = stream(
        5,
        40,
        &[
            ("latency-tail", 8, 120),
            ("pii-leak", 20, 10),
            ("prompt-change", 26, 14 * 60),
        ],
    );
    let ns = replay_notifications(&lines, None);
    assert!(ns.len() >= 8, "{}", describe(&ns));
    assert!(
        ns.iter().any(|n| n.group.objective == "drift"),
        "{}",
        describe(&ns)
    );
    let timing = test_policy().timing;
    let from: lettre::message::Mailbox = "slawatch@example.test".parse().unwrap();
    for n in &ns {
        let m = render::render(n, &timing);
        for line in m.text.lines() {
            assert!(
                line.chars().count() <= 80,
                "line over 80 columns in {}:\n{line}",
                m.subject
            );
        }
        let chart = m
            .chart
            .as_ref()
            .unwrap_or_else(|| panic!("no chart in {}", m.subject));
        let png = png::Decoder::new(chart.png.as_slice())
            .read_info()
            .unwrap_or_else(|e| panic!("chart of {} is no PNG: {e}", m.subject));
        assert_eq!(
            (png.info().width, png.info().height),
            (chart.width, chart.height)
        );
        assert!(
            chart.png.len() < 200_000,
            "chart of {} bytes",
            chart.png.len()
        );
        assert!(m.html.contains(&format!("src=\"cid:{}\"", m.chart_cid)));
        let to: Vec<lettre::message::Mailbox> =
            n.recipients.iter().map(|a| a.parse().unwrap()).collect();
        let raw = String::from_utf8(
            render::build_message(n, &m, &from, &to, std::time::UNIX_EPOCH)
                .unwrap()
                .formatted(),
        )
        .unwrap();
        for needle in [
            "Content-Type: multipart/alternative",
            "Content-Type: multipart/related",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
            "Content-Type: image/png",
            &format!("Content-ID: <{}>", m.chart_cid),
            &format!("Message-ID: {}", n.message_id),
            &format!("X-Slawatch-Incident: {}", n.thread_id),
        ] {
            assert!(raw.contains(needle), "`{needle}` missing in {}", m.subject);
        }
        for pii in PLANTED_PII {
            for (part, text) in [
                ("subject", &m.subject),
                ("text", &m.text),
                ("html", &m.html),
                ("raw", &raw),
            ] {
                assert!(
                    !text.contains(pii),
                    "personal data `{pii}` in the {part} of {}",
                    m.subject
                );
            }
        }
        // Nothing that looks like an email address or a card number besides recipients.
        let body = format!("{}\n{}", m.text, m.html);
        assert!(
            !body.contains('@') || body.matches('@').count() == body.matches("@slawatch").count(),
            "an address in {}",
            m.subject
        );
        assert!(
            !has_long_digit_run(&body),
            "a card-like number in {}",
            m.subject
        );
    }
}

/// 13 or more digits in a row (spaces and dashes allowed between them).
/// What a spec author, a policy or a record could put into a mail, as spec, objective,
/// agent, segment, runbook, receiver, PII type and destination, session id and description.
const HOSTILE: &str = "<script>alert(1)</script>\"&'";
/// `HOSTILE` as HTML text or attribute value.
const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;'";

/// Every user-controlled string of a notification, replaced by `{field}` + [`HOSTILE`].
fn poison(n: &mut Notification) {
    let evil = |field: &str| format!("{field}{HOSTILE}");
    n.group.spec = evil("spec");
    n.group.objective = evil("objective");
    n.receivers = vec![evil("receiver")];
    n.agents = vec![evil("agent")];
    n.objective
        .as_mut()
        .expect("a shipped objective")
        .description = Some(evil("description"));
    for v in &mut n.incidents {
        for (k, value) in &mut v.key {
            *value = evil(k);
        }
        v.segment = v
            .segment
            .as_ref()
            .map(|_| format!("channel={}", evil("segment")));
        for f in [&mut v.latest, &mut v.peak] {
            f.spec = n.group.spec.clone();
            f.objective = n.group.objective.clone();
            f.key = v.key.clone();
            f.segment = v.segment.clone();
            f.runbook = Some(format!("https://wiki.example.com/{}", evil("runbook")));
            f.exemplars = vec![evil("session")];
            for (d, _) in &mut f.details {
                if let slawatch::finding::Detail::Pii {
                    kind, destination, ..
                } = d
                {
                    *kind = evil("pii-kind");
                    *destination = Some(evil("destination"));
                }
            }
        }
    }
}

#[test]
fn user_controlled_strings_are_escaped_in_the_html_part_and_verbatim_in_the_text() {
    let mut e = engine(test_policy());
    let t = T0 + 6 * HOUR;
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding("pii", "violation", "page", None, t)),
            Ev::F(finding("pii", "violation", "page", Some("channel=web"), t)),
            Ev::C(clear("pii", None, t + HOUR)),
            Ev::C(clear("pii", Some("channel=web"), t + HOUR)),
            Ev::Advance(t + 4 * HOUR),
        ],
    );
    let (on, st): (Vec<_>, Vec<_>) = ns.into_iter().partition(|n| n.audience == Audience::Oncall);
    assert_eq!(
        kinds(&on.iter().collect::<Vec<_>>()),
        [NotificationKind::Firing, NotificationKind::Resolved]
    );
    assert!(!st.is_empty());
    let timing = test_policy().timing;
    for mut n in on.into_iter().chain(st) {
        poison(&mut n);
        let m = render::render(&n, &timing);
        let what = format!("{:?} {:?} mail", n.audience, n.kind);
        assert!(!m.html.contains("<script"), "raw <script> in the {what}");
        assert!(!m.html.contains("\"&'"), "raw \"&' in the {what}");
        assert!(
            m.html.contains(HOSTILE_ESCAPED),
            "nothing escaped in the {what}"
        );
        // The text part is not HTML: it says the same strings verbatim.
        assert!(m.text.contains(HOSTILE), "the {what}'s text:\n{}", m.text);
        assert!(!m.text.contains("&lt;"), "the {what}'s text:\n{}", m.text);
        let fields: &[&str] = match (n.audience, n.kind) {
            (Audience::Oncall, NotificationKind::Firing) => &[
                "spec",
                "objective",
                "agent",
                "prompt_version",
                "model",
                "segment",
                "runbook",
                "session",
                "pii-kind",
                "destination",
                "description",
                "receiver",
            ],
            (Audience::Oncall, _) => &["spec", "objective", "agent", "segment", "receiver"],
            _ => &["agent", "description"],
        };
        for field in fields {
            assert!(
                m.html.contains(&format!("{field}{HOSTILE_ESCAPED}")),
                "`{field}` not (escaped) in the {what}:\n{}",
                m.html
            );
        }
    }
}

/// A runbook that is not an http(s) URL is shown as text, never as a link: escaping alone
/// would leave `javascript:` clickable.
#[test]
fn only_http_runbooks_are_links() {
    let mut e = engine(test_policy());
    let t = T0 + 6 * HOUR;
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding("pii", "violation", "page", None, t)),
            Ev::Advance(t + HOUR),
        ],
    );
    let mut n = ns
        .into_iter()
        .find(|n| n.audience == Audience::Oncall)
        .expect("an on-call mail");
    let timing = test_policy().timing;
    for (runbook, linked) in [
        ("JavaScript:alert(document.cookie)", false),
        ("data:text/html,hi", false),
        ("https://wiki.example.com/rb", true),
    ] {
        for v in &mut n.incidents {
            v.latest.runbook = Some(runbook.into());
        }
        let html = render::render(&n, &timing).html;
        assert_eq!(
            html.contains(&format!("href=\"{runbook}\"")),
            linked,
            "{runbook}:\n{html}"
        );
        assert!(html.contains(runbook), "{runbook} not shown");
    }
}

fn has_long_digit_run(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 13 {
                return true;
            }
        } else if c != ' ' && c != '-' {
            run = 0;
        }
    }
    false
}

// ------------------------------------------------------------------ policy --

fn diagnostics(src: &str) -> String {
    let (p, d) = parse_policy(src, "policies/bad.yaml");
    assert!(p.is_none());
    slawatch::spec::render_all(&d)
}

#[test]
fn bad_policies_get_positioned_diagnostics() {
    let got = diagnostics(
        "apiVersion: slawatch/v1\n\
         kind: NotificationPolicy\n\
         spec:\n\
         \x20 receivers:\n\
         \x20   oncall: [oncall@example.com, not-an-address]\n\
         \x20 routes:\n\
         \x20   - match: {severity: pgae}\n\
         \x20     receivers: [on-call]\n\
         \x20 timing: {groupWiat: 30s, repeatInterval: 4}\n",
    );
    let want = "\
policies/bad.yaml:5:34: error: spec.receivers.oncall[1]: `not-an-address` is not a valid email address (Missing domain or user)
  |
5 |     oncall: [oncall@example.com, not-an-address]
  |                                  ^^^^^^^^^^^^^^
  = hint: an address looks like `oncall@example.com`

policies/bad.yaml:7:25: error: spec.routes[0].match.severity: unknown severity `pgae`
  |
7 |     - match: {severity: pgae}
  |                         ^^^^
  = hint: did you mean `page`?

policies/bad.yaml:8:19: error: spec.routes[0].receivers[0]: unknown receiver `on-call`
  |
8 |       receivers: [on-call]
  |                   ^^^^^^^
  = hint: did you mean `oncall`?

policies/bad.yaml:9:12: error: spec.timing.groupWiat: unknown key `groupWiat`
  |
9 |   timing: {groupWiat: 30s, repeatInterval: 4}
  |            ^^^^^^^^^
  = hint: did you mean `groupWait`?

policies/bad.yaml:9:44: error: spec.timing.repeatInterval: expected a duration like `90s`, `15m`, `1h` or `28d`, found integer `4`
  |
9 |   timing: {groupWiat: 30s, repeatInterval: 4}
  |                                            ^
  = hint: durations need a unit, e.g. `4s` or `4ms`

";
    assert_eq!(got, want, "got:\n{got}");
}

/// Issue 10, item 11: `timing.noDataTimeout` is a duration like the other timings, with
/// positioned diagnostics; a value shorter than a spec's window is flagged against the specs.
#[test]
fn no_data_timeout_is_a_checked_duration() {
    let got = diagnostics(
        "apiVersion: slawatch/v1\n\
         kind: NotificationPolicy\n\
         spec:\n\
         \x20 receivers: {oncall: [oncall@example.com]}\n\
         \x20 timing: {noDataTimeout: 0s, noDataTimout: 3}\n",
    );
    let want = "\
policies/bad.yaml:5:27: error: spec.timing.noDataTimeout: must be longer than 0
  |
5 |   timing: {noDataTimeout: 0s, noDataTimout: 3}
  |                           ^^

policies/bad.yaml:5:31: error: spec.timing.noDataTimout: unknown key `noDataTimout`
  |
5 |   timing: {noDataTimeout: 0s, noDataTimout: 3}
  |                               ^^^^^^^^^^^^
  = hint: did you mean `noDataTimeout`?

";
    assert_eq!(got, want, "got:\n{got}");
    let src = TEST_POLICY.to_owned() + "  timing: {noDataTimeout: 30m}\n";
    let (p, d) = parse_policy(&src, "p.yaml");
    assert!(d.is_empty(), "{}", slawatch::spec::render_all(&d));
    let p = p.unwrap();
    assert_eq!(p.timing.no_data_timeout_ms, Some(30 * MIN));
    // Never shorter than a window (its verdicts still arrive until it closes); the default
    // is three windows.
    assert_eq!(p.timing.no_data_timeout_for(HOUR), HOUR);
    assert_eq!(test_policy().timing.no_data_timeout_for(HOUR), 3 * HOUR);
    let warnings = p.check_specs(&specs());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("support-bot-prod") && w.contains("noDataTimeout")),
        "{warnings:#?}"
    );
}

/// A document of another kind gets one error and is not checked further — as in a spec file.
#[test]
fn a_spec_file_is_not_a_policy() {
    let got = diagnostics(
        "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: x}\nspec:\n  reciever: {}\n",
    );
    let want = "\
policies/bad.yaml:2:7: error: kind: unsupported kind `AgentSLA`
  |
2 | kind: AgentSLA
  |       ^^^^^^^^
  = hint: this is an SLA spec: check it with `slawatch validate`; a notification policy says `kind: NotificationPolicy`

";
    assert_eq!(got, want, "got:\n{got}");
}

#[test]
fn the_shipped_policy_file_is_valid_and_knows_every_receiver_the_specs_name() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/notification.yaml");
    let p = slawatch::alerts::load_policy(&path).unwrap();
    assert_eq!(p.check_specs(&specs()), Vec::<String>::new());
    let mut bad = specs();
    bad[0].alerting.notify = vec!["oncal".into()];
    let problems = p.check_specs(&bad);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("did you mean `oncall`?"),
        "{}",
        problems[0]
    );
}

/// Findings only, clears derived by the synthesizer (for sources without a clear stream).
struct SynthSink {
    inner: EngineSink,
    synth: ClearSynthesizer,
}

impl Sink for SynthSink {
    fn finding(&mut self, f: &Finding) {
        for c in self.synth.observe(f) {
            self.inner.engine.on_clear(&c);
        }
        self.inner.engine.on_finding(f);
    }

    fn clear(&mut self, _c: &Clear) {}

    fn tick(&mut self, max_event_time: i64, watermark: i64) {
        for c in self.synth.tick(max_event_time) {
            self.inner.engine.on_clear(&c);
        }
        self.inner.tick(max_event_time, watermark);
    }
}

#[test]
fn synthesized_clears_resolve_like_the_pipelines_own() {
    let specs = specs();
    let lines = stream(5, 30, &[("latency-tail", 8, 120), ("pii-leak", 20, 10)]);
    let real = replay_notifications(&lines, None);
    let mut sink = SynthSink {
        inner: EngineSink::new(test_policy(), &specs),
        synth: ClearSynthesizer::new(&specs),
    };
    let mut r = Replay::new(&specs);
    r.feed(&lines, &mut sink);
    r.finish(&mut sink);
    let brief = |ns: &[Notification]| {
        ns.iter()
            .map(|n| (n.kind, n.group.id(), n.at))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        brief(&sink.inner.out),
        brief(&real),
        "{}",
        describe(&sink.inner.out)
    );
}

/// Renders the mails of a replay with an error burst and a PII leak; with
/// `SLAWATCH_MAIL_PREVIEW_DIR` set, writes each as `{audience}-{kind}-{objective}.html` with its
/// chart beside it (`scripts/render-mail-screenshots.sh` turns them into `docs/mail-*.png`).
#[test]
fn mail_previews() {
    let lines = stream(5, 30, &[("error-burst", 10, 60), ("pii-leak", 20, 10)]);
    let ns = replay_notifications(&lines, None);
    let timing = test_policy().timing;
    let dir = std::env::var_os("SLAWATCH_MAIL_PREVIEW_DIR").map(std::path::PathBuf::from);
    let mut written = std::collections::BTreeSet::new();
    for n in &ns {
        let m = render::render(n, &timing);
        assert!(m.html.starts_with("<!DOCTYPE html>"));
        let Some(dir) = &dir else { continue };
        let name = format!(
            "{}-{}-{}-{}",
            n.audience.as_str(),
            n.kind.as_str(),
            n.group.objective,
            n.group.severity.as_str()
        );
        if !written.insert(name.clone()) {
            continue;
        }
        std::fs::create_dir_all(dir).unwrap();
        let mut html = m.html.clone();
        if let Some(c) = &m.chart {
            std::fs::write(dir.join(format!("{name}.png")), &c.png).unwrap();
            html = html.replace(&format!("cid:{}", m.chart_cid), &format!("{name}.png"));
        }
        std::fs::write(dir.join(format!("{name}.html")), html).unwrap();
        std::fs::write(
            dir.join(format!("{name}.txt")),
            format!("Subject: {}\n\n{}", m.subject, m.text),
        )
        .unwrap();
    }
    assert!(
        ns.iter().any(|n| n.audience == Audience::Stakeholder),
        "{}",
        describe(&ns)
    );
    // The same first on-call mail once evaluation attached onset and attribution (issue 14),
    // with runbooks per layer: constructed forensics, so the wording is checked on known numbers.
    let mut n = ns
        .iter()
        .find(|n| n.audience == Audience::Oncall && n.kind == NotificationKind::Firing)
        .expect("a firing mail")
        .clone();
    let detected = n.incidents[0].detected;
    let at = detected - 2 * 86_400_000 + 5 * 60_000;
    n.incidents[0].forensics = Some(Box::new(slawatch::forensics::Forensics {
        onset: Some(slawatch::forensics::Onset {
            at,
            low: at - 15 * 60_000,
            high: at + 15 * 60_000,
            panes: 192,
        }),
        candidates: vec![slawatch::forensics::Candidate {
            layer: slawatch::forensics::Layer::Tool,
            name: "get_order".into(),
            explained: 0.84,
            metric: slawatch::forensics::CandidateMetric::ErrorRate,
            before: 0.02,
            after: 0.38,
            in_bad_share: 0.91,
        }],
        feature: None,
    }));
    let objective = n.objective.as_mut().expect("objective info");
    objective.runbooks.insert(
        slawatch::forensics::Layer::Tool,
        "https://runbooks.example.com/support-bot/tools".into(),
    );
    let m = render::render(&n, &timing);
    // Lines wrap at 80 columns: compare with the words joined again.
    let flat = m.text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "When it started and where",
        "Started around ",
        "2 days before the first alert",
        "tool `get_order` — error rate 2% → 38%",
        "Next",
        "none above 10%",
        "tool: https://runbooks.example.com/support-bot/tools",
    ] {
        assert!(flat.contains(needle), "{needle} missing:\n{}", m.text);
    }
    assert!(m.html.contains("Open the tool runbook"), "{}", m.html);
    // Stakeholders read when it started, in plain words (no layer jargon).
    let mut st = ns
        .iter()
        .find(|s| s.audience == Audience::Stakeholder)
        .expect("a stakeholder notice")
        .clone();
    st.incidents[0].forensics = n.incidents[0].forensics.clone();
    let sm = render::render(&st, &timing);
    let sflat = sm.text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        sflat.contains("When it started Our best estimate is that the problem started around"),
        "{}",
        sm.text
    );
    assert!(!sm.text.contains("get_order"));
    assert!(m.html.contains("get_order"));

    // The replay's own: the error burst's first on-call mail carries the onset and layer
    // attribution evaluation computed (the burst fails sessions on the provider), shown with
    // the runbook of its top layer. This is the mail of the screenshot in docs/.
    let mut real = ns
        .iter()
        .find(|n| {
            n.audience == Audience::Oncall
                && n.incidents.iter().any(|i| {
                    i.forensics
                        .as_ref()
                        .is_some_and(|f| f.onset.is_some() && !f.candidates.is_empty())
                })
        })
        .unwrap_or_else(|| panic!("no on-call mail with forensics:\n{}", describe(&ns)))
        .clone();
    let forensics = real
        .incidents
        .iter()
        .find_map(|i| i.forensics.clone())
        .unwrap();
    let top = &forensics.candidates[0];
    real.objective
        .as_mut()
        .expect("objective info")
        .runbooks
        .insert(
            top.layer,
            format!(
                "https://runbooks.example.com/support-bot/{}",
                top.layer.as_str()
            ),
        );
    let rm = render::render(&real, &timing);
    let rflat = rm.text.split_whitespace().collect::<Vec<_>>().join(" ");
    // The burst starts at 10:00 exactly, on a pane boundary: the onset is that pane, and says so.
    for needle in [
        "When it started and where".to_owned(),
        "Started at Sun 10:00 UTC (to the pane), 15 min before the first alert".to_owned(),
        format!("{} `{}`", top.layer.as_str(), top.name),
    ] {
        assert!(rflat.contains(&needle), "{needle} missing:\n{}", rm.text);
    }
    if let Some(dir) = &dir {
        let name = "oncall-firing-forensics";
        let mut html = rm.html.clone();
        if let Some(c) = &rm.chart {
            std::fs::write(dir.join(format!("{name}.png")), &c.png).unwrap();
            html = html.replace(&format!("cid:{}", rm.chart_cid), &format!("{name}.png"));
        }
        std::fs::write(dir.join(format!("{name}.html")), html).unwrap();
    }
}

#[test]
fn an_escalation_moves_the_incident_to_the_page_thread_and_closes_the_ticket_thread() {
    let mut e = engine(test_policy());
    let t = T0 + HOUR;
    let ns = run(
        &mut e,
        vec![
            Ev::F(finding("success", "burn_rate", "ticket", None, t)),
            Ev::Advance(t + MIN),
            Ev::F(finding("success", "burn_rate", "page", None, t + 15 * MIN)),
            Ev::Advance(t + 16 * MIN),
        ],
    );
    let got: Vec<(NotificationKind, String)> =
        oncall(&ns).iter().map(|n| (n.kind, n.group.id())).collect();
    assert_eq!(
        got,
        [
            (
                NotificationKind::Firing,
                "support-bot-prod/success/ticket".to_owned()
            ),
            (
                NotificationKind::Firing,
                "support-bot-prod/success/page".to_owned()
            ),
            (
                NotificationKind::Escalated,
                "support-bot-prod/success/ticket".to_owned()
            ),
        ],
        "{}",
        describe(&ns)
    );
    let escalated = oncall(&ns)[2];
    assert_eq!(escalated.thread_id, oncall(&ns)[0].thread_id);
    assert!(render::subject(escalated).starts_with("[ESCALATED] support-bot-prod/success — "));
}
