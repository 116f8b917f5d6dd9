//! End-to-end replays of generated streams: a steady two-day stream pages nobody; each injected
//! incident yields findings in the right dimension and window, and only there.

use std::path::Path;
use std::sync::Arc;

use slawatch::catalog::Catalog;
use slawatch::cli::{ReplayReport, load_specs, replay_stream};
use slawatch::finding::{Finding, Verdict};
use slawatch::ingest::{DeadLetters, LinesSource};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::simulate::{Incident, IncidentKind, SimConfig, write_jsonl};
use slawatch::spec::model::{Dimension, Severity};

const HOUR: i64 = 3_600_000;

pub fn replay_bytes(bytes: &[u8]) -> (Vec<Finding>, ReplayReport) {
    let specs = load_specs(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")]).unwrap();
    let mut pipeline = Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    );
    let mut findings = Vec::new();
    let report = replay_stream(
        &mut LinesSource::new(bytes, "test".into()),
        &mut pipeline,
        &mut DeadLetters::discard(),
        None,
        &mut |f: &Finding| {
            findings.push(f.clone());
            Ok(())
        },
    )
    .unwrap();
    (findings, report)
}

pub fn replay_sim(cfg: &SimConfig) -> (Vec<Finding>, ReplayReport) {
    let mut bytes = Vec::new();
    write_jsonl(cfg, &mut bytes).unwrap();
    replay_bytes(&bytes)
}

fn window(f: &Finding) -> (i64, i64) {
    (f.window_start, f.window_end)
}

fn overlaps(f: &Finding, from: i64, to: i64) -> bool {
    let (s, e) = window(f);
    s < to && from < e
}

fn alerts(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.verdict == Verdict::Breach && f.severity >= Severity::Ticket)
        .collect()
}

fn describe(fs: &[&Finding]) -> String {
    fs.iter()
        .map(|f| {
            format!(
                "{} {}/{} {:?} {}..{} {}",
                f.id, f.objective, f.check, f.severity, f.window_start, f.window_end, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn steady_two_days_page_nobody() {
    for seed in [1, 2, 3] {
        let (findings, report) = replay_sim(&SimConfig::steady(seed, 48));
        assert!(report.ingest.accepted > 9000, "{:?}", report.ingest);
        let pages: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == Severity::Page)
            .collect();
        assert!(
            pages.is_empty(),
            "seed {seed}: steady traffic paged:\n{}",
            describe(&pages)
        );
    }
}

/// Replays 48 h with one incident and returns the alerts (ticket or page) and the incident's
/// interval.
fn with_incident(name: &str, at_h: i64, for_min: i64) -> (Vec<Finding>, i64, i64) {
    let base = SimConfig::steady(11, 48);
    let start = base.start_ms + at_h * HOUR;
    let end = start + for_min * 60_000;
    let cfg = base.with_incident(Incident::new(
        IncidentKind::defaults(name).unwrap(),
        start,
        Some(end - start),
    ));
    let (findings, _) = replay_sim(&cfg);
    (findings, start, end)
}

/// Asserts an alert of `dimension`/`objective` with at least `severity` whose window overlaps
/// the incident, and no page of that objective far from it (beyond one window + lateness).
fn assert_found(
    findings: &[Finding],
    dimension: Dimension,
    objective: &str,
    severity: Severity,
    from: i64,
    to: i64,
) {
    let alerts = alerts(findings);
    let hits: Vec<_> = alerts
        .iter()
        .filter(|f| f.dimension == dimension && f.objective == objective && f.severity >= severity)
        .copied()
        .collect();
    assert!(
        hits.iter().any(|f| overlaps(f, from, to)),
        "no {severity:?} {objective} finding overlapping the incident; alerts were:\n{}",
        describe(&alerts)
    );
    let far: Vec<_> = hits
        .iter()
        .filter(|f| f.severity == Severity::Page && !overlaps(f, from - HOUR, to + 2 * HOUR))
        .copied()
        .collect();
    assert!(
        far.is_empty(),
        "pages far from the incident:\n{}",
        describe(&far)
    );
    // Exemplars name sessions, never more than five.
    assert!(hits.iter().all(|f| f.exemplars.len() <= 5));
}

#[test]
fn latency_tail_is_an_availability_finding_in_its_window() {
    let (findings, from, to) = with_incident("latency-tail", 26, 120);
    assert_found(
        &findings,
        Dimension::Availability,
        "latency-p99",
        Severity::Ticket,
        from,
        to,
    );
}

#[test]
fn pii_leak_to_a_tool_pages_in_governance_at_once() {
    let (findings, from, to) = with_incident("pii-leak", 30, 10);
    assert_found(
        &findings,
        Dimension::Governance,
        "pii",
        Severity::Page,
        from,
        to,
    );
    let pii: Vec<_> = findings.iter().filter(|f| f.objective == "pii").collect();
    // Each leaking session is reported once per level — once for its key and once for its
    // segment (`segmentBy: channel`) — since violations are judged on the newest step only.
    for segmented in [false, true] {
        let mut ids: Vec<_> = pii
            .iter()
            .filter(|f| f.segment.is_some() == segmented)
            .flat_map(|f| f.exemplars.iter())
            .collect();
        let n = ids.len();
        assert!(n > 0, "no exemplars to check (segmented: {segmented})");
        // Sorted first: `dedup` only drops *adjacent* duplicates.
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            n,
            "a session reported twice (segmented: {segmented})"
        );
    }
    // Details name the PII type and destination, never a value.
    assert!(
        pii.iter()
            .all(|f| f.details.iter().all(|(d, _)| matches!(
                d,
                slawatch::finding::Detail::Pii { destination: Some(dest), .. } if dest.starts_with("tool:")
            ))),
        "{pii:?}"
    );
}

#[test]
fn errors_without_fallback_are_a_fallback_finding() {
    let (findings, from, to) = with_incident("error-burst", 10, 60);
    assert_found(
        &findings,
        Dimension::Fallback,
        "fallback",
        Severity::Page,
        from,
        to,
    );
    assert_found(
        &findings,
        Dimension::Availability,
        "success",
        Severity::Page,
        from,
        to,
    );
}

#[test]
fn cost_spike_is_a_governance_finding() {
    let (findings, from, to) = with_incident("cost-spike", 20, 30);
    assert_found(
        &findings,
        Dimension::Governance,
        "spend",
        Severity::Page,
        from,
        to,
    );
}

#[test]
fn the_contract_sample_replays_to_valid_json_lines() {
    let (findings, report) = replay_bytes(include_bytes!("../data/sample-sessions.jsonl"));
    assert_eq!(report.ingest.records, 4800);
    assert_eq!(report.ingest.accepted, 4800);
    for f in &findings {
        let line = serde_json::to_string(f).unwrap();
        let back: Finding = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, f);
    }
    // Finding ids are unique and the same on a second run.
    let mut ids: Vec<_> = findings.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before);
    let (again, _) = replay_bytes(include_bytes!("../data/sample-sessions.jsonl"));
    assert_eq!(again, findings);
}

#[test]
fn dirty_duplicated_late_input_never_stops_the_stream() {
    let cfg = SimConfig {
        dirty_fraction: 0.02,
        duplicate_fraction: 0.02,
        ..SimConfig::steady(5, 12)
    };
    let mut bytes = Vec::new();
    let stats = write_jsonl(&cfg, &mut bytes).unwrap();
    let (_, report) = replay_bytes(&bytes);
    let i = &report.ingest;
    assert_eq!(
        i.records,
        stats.sessions + stats.duplicates + stats.dirty_lines()
    );
    assert_eq!(i.duplicates, stats.duplicates);
    assert_eq!(
        i.rejected_total() - i.rejected.get("late").copied().unwrap_or(0),
        stats.dirty_lines()
    );
    assert_eq!(i.accepted + i.duplicates + i.rejected_total(), i.records);
}

/// `slawatch findings` lists what `slawatch run` stored: exactly `replay`'s findings, as JSON
/// Lines ordered by window end.
#[test]
fn findings_lists_what_run_stored() {
    let bin = env!("CARGO_BIN_EXE_slawatch");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = root.join("tests/data/sample-sessions.jsonl");
    let specs = root.join("sla-specs");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let run = std::process::Command::new(bin)
        .args(["run", "--input"])
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .arg("--specs")
        .arg(&specs)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let listed = std::process::Command::new(bin)
        .args(["findings", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(listed.status.success());
    let got: Vec<Finding> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut want, _) = replay_bytes(&std::fs::read(&input).unwrap());
    assert!(!want.is_empty());
    want.sort_by(|a, b| (&a.window_end, &a.id).cmp(&(&b.window_end, &b.id)));
    assert_eq!(got, want);
}

/// A wall clock frozen at a given instant.
struct FixedClock(i64);

impl slawatch::alerts::deliver::Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
    fn sleep(&self, _: std::time::Duration) {}
}

/// Issue 10, item 8: in `run`, a record far ahead of the wall clock is rejected as `future`
/// and dead-lettered; it neither moves the watermark nor makes the next honest record late.
#[test]
fn a_record_from_the_future_is_dead_lettered_and_moves_no_watermark() {
    use slawatch::ingest::decode::RejectReason;
    use slawatch::pipeline::Outcome;
    let now = slawatch::time::parse_rfc3339_ms("2026-11-01T12:00:00Z").unwrap();
    let specs = load_specs(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")]).unwrap();
    let mut p = Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    )
    .with_wall_clock(Arc::new(FixedClock(now)));
    let record = |id: &str, ended: &str| {
        format!(
            r#"{{"session_id":"{id}","agent":"support-bot","prompt_version":"sp-v1","model":"m-2026-09","ended_at":"{ended}","duration_ms":2000,"status":"success"}}"#
        )
    };
    let mut out = Vec::new();
    let honest = p.process_bytes(record("a", "2026-11-01T11:59:00Z").as_bytes(), 0, &mut out);
    assert_eq!(honest, Outcome::Accepted);
    let before = p.stream_time();
    // Within the default skew (1 h): accepted.
    let early = p.process_bytes(record("b", "2026-11-01T12:30:00Z").as_bytes(), 0, &mut out);
    assert_eq!(early, Outcome::Accepted);
    let far = p.process_bytes(record("c", "2027-11-01T12:00:00Z").as_bytes(), 0, &mut out);
    match far {
        Outcome::Rejected {
            reason: RejectReason::Future { .. },
            dead_letter: true,
        } => {}
        other => panic!("expected a dead-lettered `future` rejection, got {other:?}"),
    }
    assert!(
        p.stream_time() <= Some(slawatch::time::parse_rfc3339_ms("2026-11-01T12:30:00Z").unwrap())
    );
    assert!(p.stream_time() >= before);
    let next = p.process_bytes(record("d", "2026-11-01T12:30:30Z").as_bytes(), 0, &mut out);
    assert_eq!(
        next,
        Outcome::Accepted,
        "an honest record after the future one is not late"
    );
}
