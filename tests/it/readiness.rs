//! `/readyz` during a restore on the real broker (tansu): instance A of the `partitioned`
//! topology consumes the first half of a stream and checkpoints its stage-2 partitions to the
//! state topic; instance B takes them over and answers 503 naming the restore until their state
//! is back, then 200, consumes the second half, and finds exactly what one pipeline finds
//! replaying the whole stream without a restart (which `kafka_e2e` shows an unbroken Kafka run
//! finds too).
//!
//! A restore from the state topic takes milliseconds, so no poll could be sure to see it. The
//! service's fault-injection hook holds it open instead: with
//! `SLAWATCH_FAILPOINT_RESTORE_HOLD=<file>`, the restore of an assigned stage-2 partition waits
//! while `<file>` exists, after the readiness reason is set and before any state is read. The
//! test creates the file before the instance starts and removes it once it has seen the 503,
//! so the order of events is fixed by the test, not by timing: nothing here can flake on a
//! slow machine (the waits only bound how long a broken build may take to fail).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::Duration;

use slawatch::finding::Finding;

use crate::kafka_e2e::{assert_same, replay_file, stored_findings};
use crate::metrics::kafka_args;
use crate::support::run::{Run, consumed_exactly, get, produce_all, report, simulate};
use crate::support::servers::Tansu;

/// Findings of a replay of `lines` through one pipeline: the run without any restart.
fn replay_findings(lines: &[String]) -> BTreeMap<String, Finding> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    replay_file(&file)
}

#[test]
fn readyz_is_not_ready_while_a_restore_is_held_and_ready_after() {
    let broker = Tansu::start();
    // One input partition, so records arrive in event-time order whenever they are read; two
    // stage-2 partitions (the internal topics made here, before slawatch would make them with
    // the input's count), so B restores more than one.
    for (t, n) in [
        ("rr", 1),
        ("rr.dlq", 1),
        ("rr.findings", 1),
        ("rr.repartition", 2),
        ("rr.state", 2),
    ] {
        broker.create_topic(t, n);
    }
    // 10 h of sessions with an error burst across the restart, so state carries open windows,
    // burn-rate timelines and findings over it.
    let lines = simulate(&[
        "--seed",
        "21",
        "--rate",
        "2000",
        "--sessions",
        "20000",
        "--late-fraction",
        "0",
        "--incident",
        "error-burst@4h+2h",
    ]);
    let (first, second) = lines.split_at(lines.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = kafka_args(&broker, "rr", "partitioned");

    // Instance A consumes the first half, checkpoints its stage-2 partitions to the state
    // topic, and stops.
    let mut a = Run::spawn(&args, &data, dir.path().join("a.log"));
    produce_all(&broker, "rr", first);
    consumed_exactly(&mut a, first.len(), &["rr", "rr.repartition"]);
    a.sigterm();
    let a_report = report(&dir.path().join("a.log"));

    // Instance B takes the partitions over with its restore held, the second half waiting.
    produce_all(&broker, "rr", second);
    let hold = dir.path().join("hold-restore");
    std::fs::write(&hold, "").unwrap();
    args.extend(["--exit-at-eof".into(), "--serve".into()]);
    let mut b = Run::spawn_with_env(
        &args,
        &data,
        dir.path().join("b.log"),
        &[("SLAWATCH_FAILPOINT_RESTORE_HOLD", OsStr::new(&hold))],
    );
    let reason = b.wait_for(
        "/readyz naming the restore",
        Duration::from_secs(120),
        |r| {
            let (code, body) = get(&r.addr, "/readyz", None);
            let restoring = body.starts_with("not ready: restoring stage-2 partition ");
            assert!(!restoring || code == 503, "{code} {body}");
            restoring.then_some(body)
        },
    );
    assert!(
        reason.ends_with(" from the state topic\n"),
        "reason: {reason:?}"
    );
    // Held: it stays so, whatever the machine's speed.
    for _ in 0..10 {
        assert_eq!(get(&b.addr, "/readyz", None), (503, reason.clone()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        b.log_text()
            .contains("restore held by SLAWATCH_FAILPOINT_RESTORE_HOLD")
    );

    std::fs::remove_file(&hold).unwrap();
    b.wait_for(
        "/readyz 200 after the restore",
        Duration::from_secs(120),
        |r| {
            let (code, body) = get(&r.addr, "/readyz", None);
            assert!(
                code == 200 || body == reason || body.starts_with("not ready: restoring"),
                "{code} {body}"
            );
            (code == 200).then_some(())
        },
    );
    assert_eq!(get(&b.addr, "/readyz", None), (200, "ready\n".into()));
    b.wait_for("the end of the input", Duration::from_secs(180), |r| {
        r.log_text()
            .contains("input done; serving until SIGTERM")
            .then_some(())
    });
    assert_eq!(
        b.metrics(None).value("slawatch_records_late_total", &[]),
        0.0
    );
    b.sigterm();
    let b_report = report(&dir.path().join("b.log"));
    eprintln!(
        "restore: A read {} records, B {} after the restore",
        a_report["records"], b_report["records"]
    );
    assert_eq!(b_report["restored"], true, "{b_report}");
    assert_eq!(
        a_report["records"].as_u64().unwrap() + b_report["records"].as_u64().unwrap(),
        lines.len() as u64,
        "B consumes exactly what A had not: {a_report} then {b_report}"
    );

    assert_same(&stored_findings(&data), &replay_findings(&lines));
}
