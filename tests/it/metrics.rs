//! `/metrics`, `/healthz` and `/readyz` of a real `slawatch run` on a real socket: the
//! exposition is parsed by the reference parser (the PyPI `prometheus-client`'s
//! `text_string_to_metric_families`, installed into `.tools/venv` by
//! `scripts/install-deps.sh`), and every counter equals what the test computed from the input
//! it wrote — not from anything slawatch printed. On the real broker (tansu): `/readyz` says
//! why it is not ready until partitions are assigned, records consumed move by exactly the
//! records produced, and consumer lag reaches 0.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::run::{Run, consumed_exactly, get, produce_all, simulate};
use crate::support::servers::Tansu;

fn specs() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sla-specs")
        .display()
        .to_string()
}

/// The same record under another session id, with every timestamp moved to `at`.
fn moved(line: &str, session_id: &str, at: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["session_id"] = Value::from(session_id);
    v["started_at"] = Value::from(at);
    v["ended_at"] = Value::from(at);
    v.to_string()
}

#[test]
fn file_run_metrics_count_exactly_what_the_input_holds() {
    // Clean sessions with an error burst (so incidents fire and mail goes out), no late ones.
    let clean = simulate(&[
        "--seed",
        "11",
        "--sessions",
        "4000",
        "--late-fraction",
        "0",
        "--incident",
        "error-burst@4h+2h",
    ]);
    assert_eq!(clean.len(), 4000);
    // Known bad lines, by reason, spread through the stream; known duplicates.
    let mut input: Vec<String> = Vec::new();
    let (mut not_json, mut not_object, mut missing, mut dups) = (0, 0, 0, 0);
    for (i, line) in clean.iter().enumerate() {
        input.push(line.clone());
        match i % 500 {
            7 => {
                input.push(r#"{"session_id": "broken"#.into());
                not_json += 1;
            }
            101 => {
                input.push("[1, 2, 3]".into());
                not_object += 1;
            }
            202 => {
                let mut v: Value = serde_json::from_str(line).unwrap();
                v.as_object_mut().unwrap().remove("session_id");
                input.push(v.to_string());
                missing += 1;
            }
            303 => {
                input.push(line.clone());
                dups += 1;
            }
            _ => {}
        }
    }
    // One record from the stream's first minute after 4000 sessions (20 h) — every window it
    // belongs to closed long ago — and one a lifetime ahead of the wall clock.
    input.push(moved(&clean[0], "late-one", "2026-11-01T00:00:30Z"));
    input.push(moved(&clean[1], "future-one", "2100-01-01T00:00:00Z"));
    let (late, future) = (1, 1);
    let accepted = clean.len();
    let consumed = input.len();
    assert_eq!(
        consumed,
        accepted + not_json + not_object + missing + dups + late + future
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, input.join("\n") + "\n").unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "run",
        "--input",
        &file.display().to_string(),
        "--specs",
        &specs(),
        "--serve",
        "--api-token-file",
        &token_file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut run = Run::spawn(&args, &data, dir.path().join("run.log"));

    // Alive at once; ready once reading began; the health checks need no token, /metrics does.
    assert_eq!(get(&run.addr, "/healthz", None), (200, "ok\n".into()));
    run.wait_for("/readyz 200", Duration::from_secs(120), |r| {
        (get(&r.addr, "/readyz", None).0 == 200).then_some(())
    });
    assert_eq!(get(&run.addr, "/metrics", None).0, 401);
    run.wait_for("the end of the input", Duration::from_secs(240), |r| {
        r.log_text()
            .contains("input done; serving until SIGTERM")
            .then_some(())
    });

    let m = run.metrics(Some("s3cret"));
    for (family, kind) in [
        ("slawatch_records_consumed", "counter"),
        ("slawatch_records_rejected", "counter"),
        ("slawatch_window_evaluation_seconds", "histogram"),
        ("slawatch_checkpoint_duration_seconds", "histogram"),
        ("slawatch_incidents_open", "gauge"),
        ("slawatch_notifications_pending", "gauge"),
        ("slawatch_state_size_bytes", "gauge"),
        ("slawatch_config_last_reload_successful", "gauge"),
        ("slawatch_build_info", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let total = |name: &str| m.value(name, &[]);
    assert_eq!(total("slawatch_records_consumed_total"), consumed as f64);
    assert_eq!(total("slawatch_records_accepted_total"), accepted as f64);
    assert_eq!(total("slawatch_records_deduplicated_total"), dups as f64);
    assert_eq!(total("slawatch_records_late_total"), late as f64);
    let rejected = |reason: &str| m.value("slawatch_records_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("not_json"), not_json as f64);
    assert_eq!(rejected("not_object"), not_object as f64);
    assert_eq!(rejected("missing_field"), missing as f64);
    assert_eq!(rejected("late"), late as f64);
    assert_eq!(rejected("future"), future as f64);
    assert_eq!(rejected("too_large"), 0.0);
    assert_eq!(
        m.all("slawatch_records_rejected_total")
            .iter()
            .map(|s| s.value)
            .sum::<f64>(),
        (not_json + not_object + missing + late + future) as f64
    );

    // Mail: every notification the outbox holds was counted as sent; none waits.
    let mails = std::fs::read_dir(data.join("outbox"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert!(mails > 0, "the error burst must have been mailed");
    assert_eq!(total("slawatch_notifications_sent_total"), mails as f64);
    assert_eq!(total("slawatch_notifications_failed_total"), 0.0);
    assert_eq!(total("slawatch_notifications_pending"), 0.0);
    assert_eq!(
        total("slawatch_notification_oldest_pending_age_seconds"),
        0.0
    );

    // Findings by severity and dimension: what the store holds (`/v1/findings`, every stored
    // finding), counted here.
    let (status, body) = get(&run.addr, "/v1/findings", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    let stored: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for f in &stored {
        *want
            .entry((
                f["severity"].as_str().unwrap().to_owned(),
                f["dimension"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1.0;
    }
    let got: BTreeMap<(String, String), f64> = m
        .all("slawatch_findings_total")
        .iter()
        .map(|s| {
            (
                (s.labels["severity"].clone(), s.labels["dimension"].clone()),
                s.value,
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // Windows closed and evaluated, each evaluation timed.
    assert!(total("slawatch_windows_closed_total") > 0.0);
    assert!(total("slawatch_window_evaluation_seconds_count") > 0.0);
    assert_eq!(total("slawatch_config_last_reload_successful"), 1.0);
    let loaded = total("slawatch_config_last_reload_success_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(loaded > now - 600.0 && loaded <= now, "{loaded} vs {now}");
    assert_eq!(
        m.value(
            "slawatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(total("slawatch_state_size_bytes") > 0.0);
    assert!(total("slawatch_state_keys") > 0.0);
    // The stream ended at 2026-11-01 + 20 h: its frontier lags the wall clock by weeks.
    assert!(total("slawatch_watermark_lag_seconds") > 86_400.0);
    run.sigterm();
}

pub(crate) fn kafka_args(broker: &Tansu, topic: &str, topology: &str) -> Vec<String> {
    [
        "run",
        "--brokers",
        &broker.bootstrap(),
        "--topic",
        topic,
        "--group",
        topic,
        "--dead-letter-topic",
        &format!("{topic}.dlq"),
        "--findings-topic",
        &format!("{topic}.findings"),
        "--checkpoint-interval",
        "300ms",
        "--topology",
        topology,
        "--specs",
        &specs(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn kafka_run_is_ready_once_assigned_and_consumes_exactly_what_was_produced() {
    let broker = Tansu::start();
    let sessions = simulate(&["--seed", "12", "--sessions", "1500", "--late-fraction", "0"]);

    // single: the input topic does not exist yet, so no partition can be assigned.
    broker.create_topic("mx.dlq", 1);
    broker.create_topic("mx.findings", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::spawn(
        &kafka_args(&broker, "mx", "single"),
        &dir.path().join("data"),
        dir.path().join("single.log"),
    );
    assert_eq!(get(&run.addr, "/healthz", None), (200, "ok\n".into()));
    run.wait_for(
        "/readyz: waiting for assignment",
        Duration::from_secs(30),
        |r| {
            let (code, body) = get(&r.addr, "/readyz", None);
            assert_eq!(code, 503, "ready without an input topic: {body}");
            assert!(body.starts_with("not ready: "), "{body}");
            (body == "not ready: waiting for partition assignment\n").then_some(())
        },
    );
    assert_eq!(
        run.metrics(None)
            .value("slawatch_records_consumed_total", &[]),
        0.0
    );
    broker.create_topic("mx", 2);
    run.wait_for("/readyz 200", Duration::from_secs(120), |r| {
        (get(&r.addr, "/readyz", None) == (200, "ready\n".into())).then_some(())
    });
    produce_all(&broker, "mx", &sessions);
    consumed_exactly(&mut run, sessions.len(), &["mx"]);
    run.sigterm();

    // partitioned: stage 1 reads the input, stage 2 the repartition topic; both lags reach 0.
    for t in ["px", "px.dlq", "px.findings"] {
        broker.create_topic(t, if t == "px" { 2 } else { 1 });
    }
    let mut run = Run::spawn(
        &kafka_args(&broker, "px", "partitioned"),
        &dir.path().join("data-p"),
        dir.path().join("partitioned.log"),
    );
    run.wait_for("/readyz 200", Duration::from_secs(120), |r| {
        let (code, body) = get(&r.addr, "/readyz", None);
        assert!(
            code == 200 || body.starts_with("not ready: "),
            "{code} {body}"
        );
        (code == 200).then_some(())
    });
    produce_all(&broker, "px", &sessions);
    consumed_exactly(&mut run, sessions.len(), &["px", "px.repartition"]);
    run.sigterm();
}
