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

/// One recorded mail of `slawatch run`, read back from the notification log in its data
/// directory: the headers that thread it, and its text part decoded.
#[derive(Debug)]
struct LoggedMail {
    due_at: i64,
    kind: String,
    thread: String,
    subject: String,
    /// The text part, whitespace collapsed (the text is wrapped at 80 columns).
    text: String,
    in_reply_to: Option<String>,
    message_id: String,
}

/// The `name` header of a raw message (unfolded), if present.
fn raw_header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Decodes quoted-printable (soft line breaks and `=XX`).
fn unquote(qp: &str) -> String {
    let s = qp.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'='
            && let Some(x) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The text/plain part of a raw message, decoded.
fn text_part(raw: &str) -> String {
    use base64::Engine as _;
    let at = raw
        .find("Content-Type: text/plain")
        .expect("a text/plain part");
    let part = &raw[at..];
    let (head, body) = part.split_once("\r\n\r\n").unwrap();
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    if head.contains("Content-Transfer-Encoding: base64") {
        let b: String = body.split_whitespace().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    } else if head.contains("Content-Transfer-Encoding: quoted-printable") {
        unquote(body)
    } else {
        body.to_owned()
    }
}

fn logged_mails(data: &Path) -> Vec<LoggedMail> {
    use base64::Engine as _;
    let store = slawatch::store::Store::open(data).unwrap();
    let mut out: Vec<LoggedMail> = store
        .notify_log()
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|m| {
            let raw = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(&m.raw_b64)
                    .unwrap(),
            )
            .unwrap();
            LoggedMail {
                due_at: m.due_at,
                kind: raw_header(&raw, "X-Slawatch-Kind").unwrap(),
                thread: raw_header(&raw, "X-Slawatch-Incident").unwrap(),
                subject: m.subject.clone(),
                text: text_part(&raw)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                in_reply_to: raw_header(&raw, "In-Reply-To"),
                message_id: m.message_id.clone(),
            }
        })
        .collect();
    out.sort_by_key(|m| m.due_at);
    out
}

/// Issue 10, item 11 ("Incidents end"): a prompt update replaces a failing version. sp-v1
/// fails (20% errors) from hour 2; at hour 6 every session moves to sp-v2, which is healthy.
/// `slawatch run` (real sled data directory, default policy) resolves every sp-v1 incident
/// once sp-v1 has had no session for `noDataTimeout` (default 3 × the 1 h window), with a
/// notice in the incident's thread that says since when and that sp-v2 superseded it — and
/// mails nothing about sp-v1 for the 42 hours of stream after that (before: a reminder
/// every 4 hours, forever).
#[test]
fn a_replaced_failing_prompt_version_ends_its_incidents_instead_of_reminding() {
    let base = SimConfig::steady(21, 48);
    let t = base.start_ms + 6 * HOUR;
    let cfg = base
        .with_incident(Incident::new(
            IncidentKind::defaults("error-burst").unwrap(),
            t - 4 * HOUR,
            Some(4 * HOUR),
        ))
        .with_incident(Incident::new(
            IncidentKind::defaults("prompt-change").unwrap(),
            t,
            None,
        ));
    let mut bytes = Vec::new();
    write_jsonl(&cfg, &mut bytes).unwrap();
    // The newest sp-v1 session: what the notice must name.
    let last_v1 = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
        .filter(|v| v["prompt_version"] == "sp-v1")
        .filter_map(|v| slawatch::time::parse_rfc3339_ms(v["ended_at"].as_str()?))
        .max()
        .unwrap();
    assert!(
        last_v1 <= t && last_v1 > t - 5 * 60_000,
        "sp-v1 runs until T"
    );

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sessions.jsonl");
    std::fs::write(&input, &bytes).unwrap();
    let data = dir.path().join("state");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["run", "--input"])
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .arg("--specs")
        .arg(root.join("sla-specs"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mails = logged_mails(&data);
    let listing = mails
        .iter()
        .map(|m| {
            format!(
                "{} {:<9} {} {}",
                slawatch::time::format_rfc3339_ms(m.due_at),
                m.kind,
                &m.thread[..8],
                m.subject
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Every thread about sp-v1 (its on-call subjects name the key).
    let mut threads: Vec<&str> = mails
        .iter()
        .filter(|m| m.subject.contains("sp-v1"))
        .map(|m| m.thread.as_str())
        .collect();
    threads.sort();
    threads.dedup();
    assert!(
        !threads.is_empty(),
        "the failing sp-v1 opened no incident:\n{listing}"
    );
    let timeout = 3 * HOUR; // the default: three one-hour windows
    let cooldown = HOUR; // the default policy's
    let when = slawatch::alerts::render::when;
    for thread in threads {
        let of: Vec<&LoggedMail> = mails.iter().filter(|m| m.thread == thread).collect();
        let root = of
            .iter()
            .find(|m| m.kind == "firing")
            .expect("a first mail");
        let resolved: Vec<&&LoggedMail> = of.iter().filter(|m| m.kind == "resolved").collect();
        assert_eq!(resolved.len(), 1, "thread {thread}:\n{listing}");
        let r = resolved[0];
        // The incident resolved when sp-v1 had been quiet for noDataTimeout; its notice
        // follows after the cooldown, in the incident's thread.
        assert!(
            r.due_at >= last_v1 + timeout && r.due_at <= t + timeout + cooldown,
            "resolved notice at {}, sp-v1 last seen {}:\n{listing}",
            slawatch::time::format_rfc3339_ms(r.due_at),
            slawatch::time::format_rfc3339_ms(last_v1)
        );
        assert_eq!(r.in_reply_to.as_deref(), Some(root.message_id.as_str()));
        let reason = format!(
            "Ended for lack of data on support-bot sp-v1 m-2026-09: no sessions since {}; \
             superseded by prompt sp-v2.",
            when(last_v1)
        );
        assert!(r.text.contains(&reason), "{reason}\nnot in:\n{}", r.text);
        // The subject says why it ended, not that the measure recovered.
        assert!(
            r.subject
                .contains("no sessions any more, superseded by prompt sp-v2")
                && !r.subject.contains("back within target"),
            "{}",
            r.subject
        );
        assert!(
            r.text
                .contains(&format!("clean since {}", when(last_v1 + timeout))),
            "{}",
            r.text
        );
        // Nothing about the incident after its notice (the stakeholders' own thread closes
        // at the same instant).
        let after: Vec<&&LoggedMail> = of.iter().filter(|m| m.due_at > r.due_at).collect();
        assert!(after.is_empty(), "mail after the resolution:\n{listing}");
        assert!(
            of.iter()
                .filter(|m| m.due_at == r.due_at)
                .all(|m| m.kind == "resolved" || m.kind == "recovered"),
            "{listing}"
        );
    }
    // No mail names sp-v1 after the notices, over the day and more of stream that follows.
    let ended = t + timeout + cooldown;
    assert!(cfg.start_ms + cfg.duration_ms >= ended + 24 * HOUR);
    let late: Vec<&LoggedMail> = mails
        .iter()
        .filter(|m| m.due_at > ended && (m.subject.contains("sp-v1") || m.text.contains("sp-v1")))
        .collect();
    assert!(late.is_empty(), "{late:#?}\n{listing}");
}
