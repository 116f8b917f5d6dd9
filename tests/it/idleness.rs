//! Idle partitions on the real broker (tansu): a partition that has reached its end keeps
//! holding the watermark back until it has been quiet for `idleTimeout` (as Flink's
//! `withIdleness`), so a burst on another partition cannot make its next records late (the
//! 0.4 % late rejects of the 5-minute soak, issue 13 item 1).
//!
//! The order of events is fixed by the test: each step waits until `/metrics` shows the run
//! consumed what was produced before the next is produced, and the idle timeout (10 min) is
//! far longer than the test, so nothing depends on the machine's speed.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::metrics::kafka_args;
use crate::support::run::{Run, get};
use crate::support::servers::Tansu;

fn session(id: &str, ended_at: &str) -> String {
    format!(
        r#"{{"session_id":"{id}","agent":"support-bot","prompt_version":"sp-v1","model":"m-2026-09","ended_at":"{ended_at}","status":"success","duration_ms":1200}}"#
    )
}

/// Produces `lines` to one partition and waits until they are acknowledged.
fn produce_to(broker: &Tansu, topic: &str, partition: i32, lines: &[String]) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for line in lines {
        p.send(
            BaseRecord::<[u8], _>::to(topic)
                .partition(partition)
                .payload(line),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Waits until the run has evaluated `n` records in all (accepted or rejected — in the
/// `partitioned` topology by stage 2, after stage 1 consumed them).
fn processed(run: &mut Run, n: usize) {
    run.wait_for(
        &format!("{n} records processed"),
        Duration::from_secs(120),
        |r| {
            let m = r.metrics(None);
            let rejected: f64 = m
                .all("slawatch_records_rejected_total")
                .iter()
                .map(|s| s.value)
                .sum();
            let c = m.value("slawatch_records_accepted_total", &[]) + rejected;
            assert!(c <= n as f64, "processed {c} of {n}");
            (c == n as f64).then_some(())
        },
    );
}

/// Partition 0 reaches its end at 10:30; a burst two hours ahead arrives on partition 1; then
/// partition 0 goes on at 10:31. With partition 0 idle at its end, the watermark would have
/// jumped to 11:50 and closed 10:31's window (10 minutes of allowed lateness): late.
#[test]
fn a_partition_at_its_end_holds_the_watermark_until_its_idle_timeout() {
    let broker = Tansu::start();
    for topology in ["single", "partitioned"] {
        let topic = format!("idle-{topology}");
        broker.create_topic(&topic, 2);
        broker.create_topic(&format!("{topic}.dlq"), 1);
        broker.create_topic(&format!("{topic}.findings"), 1);
        let dir = tempfile::tempdir().unwrap();
        let mut args = kafka_args(&broker, &topic, topology);
        args.extend(["--idle-timeout".into(), "10m".into()]);
        let mut run = Run::spawn(&args, &dir.path().join("data"), dir.path().join("run.log"));
        run.wait_for("/readyz 200", Duration::from_secs(120), |r| {
            (get(&r.addr, "/readyz", None).0 == 200).then_some(())
        });
        let early: Vec<String> = (0..=30)
            .map(|m| session(&format!("p0-{m}"), &format!("2026-11-02T10:{m:02}:00Z")))
            .collect();
        produce_to(&broker, &topic, 0, &early);
        processed(&mut run, early.len());
        let burst: Vec<String> = (0..20)
            .map(|i| session(&format!("p1-{i}"), &format!("2026-11-02T12:00:{i:02}Z")))
            .collect();
        produce_to(&broker, &topic, 1, &burst);
        processed(&mut run, early.len() + burst.len());
        produce_to(
            &broker,
            &topic,
            0,
            &[session("p0-next", "2026-11-02T10:31:00Z")],
        );
        processed(&mut run, early.len() + burst.len() + 1);
        let m = run.metrics(None);
        assert_eq!(
            m.value("slawatch_records_late_total", &[]),
            0.0,
            "{topology}: partition 0's record after the burst was late"
        );
        assert_eq!(
            m.value("slawatch_records_accepted_total", &[]),
            (early.len() + burst.len() + 1) as f64,
            "{topology}"
        );
        assert!(run.sigterm().success());
    }
}
