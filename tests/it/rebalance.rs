//! Group membership changing while the `partitioned` topology consumes, on the real broker
//! (tansu): a member joins mid-stream, a member leaves mid-stream, a member is SIGKILLed in the
//! middle of a rebalance. In each the members together find exactly what one pipeline finds
//! replaying the whole stream, and every record is validated by exactly one member (or, after a
//! SIGKILL, at least once and counted once).
//!
//! The stream is produced by the test at a steady pace with its tail held back until the
//! membership change has happened, so every change falls in the middle of the stream whatever
//! the machine's speed: each step waits on a condition (a member's `/readyz`, its
//! `/metrics`, a line of its log), never on a sleep.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::kafka_e2e::{assert_same, replay_file, stored_findings};
use crate::metrics::kafka_args;
use crate::support::run::{Run, get, report, simulate};
use crate::support::servers::Tansu;

/// Log levels of the runs: the service's own debug lines say where a hung run stopped.
const RUST_LOG: &str = "warn,slawatch::service=debug";

/// A stream of about 11 h with incidents across the membership changes (dirty records and
/// duplicates included, so dead letters and dedupe state move too).
fn stream() -> Vec<String> {
    simulate(&[
        "--seed",
        "5",
        "--rate",
        "4000",
        "--sessions",
        "40000",
        "--incident",
        "latency-tail@3h+1h",
        "--incident",
        "pii-leak@5h+10m",
        "--incident",
        "error-burst@7h+1h",
        "--dirty-fraction",
        "0.01",
        "--duplicate-fraction",
        "0.01",
    ])
}

/// Publishes `lines` (keyed by session id, like `slawatch simulate --brokers`) on a thread
/// of its own at `per_sec`; the lines from `hold_at` on wait until `release` is set.
struct Paced {
    release: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Paced {
    fn start(broker: &Tansu, topic: &str, lines: &[String], hold_at: usize, per_sec: f64) -> Self {
        use rdkafka::ClientConfig;
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let release = Arc::new(AtomicBool::new(false));
        let (flag, lines, topic) = (release.clone(), lines.to_vec(), topic.to_owned());
        let bootstrap = broker.bootstrap();
        let thread = std::thread::spawn(move || {
            let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "5")
                .create()
                .unwrap();
            let started = Instant::now();
            for (i, line) in lines.iter().enumerate() {
                if i == hold_at {
                    p.flush(Duration::from_secs(60)).unwrap();
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                } else if i < hold_at {
                    let due = Duration::from_secs_f64(i as f64 / per_sec);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let key = session_id(line).unwrap_or_default();
                let mut record = BaseRecord::to(&topic).key(key).payload(line);
                loop {
                    match p.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            p.poll(Duration::from_millis(10));
                            record = r;
                        }
                    }
                }
            }
            p.flush(Duration::from_secs(60)).unwrap();
        });
        Paced {
            release,
            thread: Some(thread),
        }
    }

    /// Lets the held tail go and waits until every line is acknowledged.
    fn release_and_finish(mut self) {
        self.release.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.release.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn session_id(line: &str) -> Option<&str> {
    let start = line.find("\"session_id\":\"")? + "\"session_id\":\"".len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

fn topics(broker: &Tansu, topic: &str) {
    broker.create_topic(topic, 4);
    broker.create_topic(&format!("{topic}.dlq"), 1);
    broker.create_topic(&format!("{topic}.findings"), 1);
}

fn spawn(args: &[String], dir: &Path, name: &str, env: &[(&str, &OsStr)]) -> Run {
    let mut env = env.to_vec();
    env.push(("RUST_LOG", OsStr::new(RUST_LOG)));
    Run::spawn_with_env(
        args,
        &dir.join(name),
        dir.join(format!("{name}.log")),
        &env,
    )
}

/// Records the run has consumed (stage 1), from its `/metrics`.
fn consumed(run: &Run) -> f64 {
    run.metrics(None)
        .value("slawatch_records_consumed_total", &[])
}

/// Waits until the run is ready (partitions assigned, restored) and has consumed a record.
fn consuming(run: &mut Run) {
    run.wait_for(
        "ready and consuming",
        Duration::from_secs(120),
        |r| {
            let (code, _) = get(&r.addr, "/readyz", None);
            (code == 200 && consumed(r) > 0.0).then_some(())
        },
    );
}

/// Findings of both members' stores; a finding both stored must be stored the same.
fn union(dirs: &[&Path]) -> std::collections::BTreeMap<String, slawatch::finding::Finding> {
    let mut all = std::collections::BTreeMap::new();
    for d in dirs {
        for (id, f) in stored_findings(d) {
            if let Some(before) = all.insert(id.clone(), f.clone()) {
                assert_eq!(before, f, "two members stored finding {id} differently");
            }
        }
    }
    all
}

fn replay(lines: &[String]) -> std::collections::BTreeMap<String, slawatch::finding::Finding> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let want = replay_file(&file);
    assert!(
        want.values().any(|f| f.objective == "pii"),
        "the stream has incidents"
    );
    want
}

/// A second member joins while the first is consuming: input partitions and the state of the
/// stage-2 partitions move to it mid-stream, and the findings are still those of one run.
#[test]
fn a_member_joining_mid_stream_takes_over_state_and_changes_no_finding() {
    let broker = Tansu::start();
    topics(&broker, "join");
    let lines = stream();
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "join", "partitioned");
    args.push("--exit-at-eof".into());
    let producer = Paced::start(&broker, "join", &lines, lines.len() * 3 / 4, 4000.0);
    let mut a = spawn(&args, dir.path(), "a", &[]);
    consuming(&mut a);
    let mut b = spawn(&args, dir.path(), "b", &[]);
    consuming(&mut b);
    producer.release_and_finish();
    let (ra, rb) = (a.wait_exit(), b.wait_exit());
    eprintln!("member joining mid-stream: {ra} / {rb}");
    assert_eq!(rb["restored"], true, "the joiner took state over: {rb}");
    assert_eq!(
        ra["records"].as_u64().unwrap() + rb["records"].as_u64().unwrap(),
        lines.len() as u64,
        "every record (dirty ones and duplicates included) validated by exactly one member"
    );
    assert_same(
        &union(&[&dir.path().join("a"), &dir.path().join("b")]),
        &replay(&lines),
    );
}

/// A member leaves (SIGTERM) while the stream flows: it checkpoints and commits on the way
/// out, the other takes its partitions over from the state topic, and nothing is lost or
/// counted twice.
#[test]
fn a_member_leaving_mid_stream_hands_over_and_changes_no_finding() {
    let broker = Tansu::start();
    topics(&broker, "leave");
    let lines = stream();
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "leave", "partitioned");
    let producer = Paced::start(&broker, "leave", &lines, lines.len() / 2, 4000.0);
    // B leaves; A stays to the end of the input.
    let mut b = spawn(&args, dir.path(), "b", &[]);
    args.push("--exit-at-eof".into());
    let mut a = spawn(&args, dir.path(), "a", &[]);
    consuming(&mut b);
    consuming(&mut a);
    // Both own input partitions now: B has consumed since A joined.
    let before = consumed(&b);
    b.wait_for("B consuming with A in the group", Duration::from_secs(120), |r| {
        (consumed(r) > before).then_some(())
    });
    let b_log = b.log.clone();
    assert!(b.sigterm().success(), "B exits 0 after SIGTERM");
    let rb = report(&b_log);
    producer.release_and_finish();
    let ra = a.wait_exit();
    eprintln!("member leaving mid-stream: {ra} / {rb}");
    assert!(rb["records"].as_u64().unwrap() > 0, "{rb}");
    assert_eq!(ra["restored"], true, "A took B's state over: {ra}");
    assert_eq!(
        ra["records"].as_u64().unwrap() + rb["records"].as_u64().unwrap(),
        lines.len() as u64,
        "every record validated by exactly one member"
    );
    assert_same(
        &union(&[&dir.path().join("a"), &dir.path().join("b")]),
        &replay(&lines),
    );
}

/// A joining member is SIGKILLed in the middle of the rebalance — inside the restore of a
/// stage-2 partition assigned to it, held open by the service's fault-injection hook so the
/// kill lands there on any machine. Once its session expires the survivor owns every
/// partition again and alone finds exactly what one pipeline finds.
#[test]
fn a_member_killed_mid_rebalance_changes_no_finding() {
    let broker = Tansu::start();
    topics(&broker, "kill");
    let lines = stream();
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "kill", "partitioned");
    args.push("--exit-at-eof".into());
    let producer = Paced::start(&broker, "kill", &lines, lines.len() / 2, 4000.0);
    let mut a = spawn(&args, dir.path(), "a", &[]);
    consuming(&mut a);
    let hold = dir.path().join("hold-restore");
    std::fs::write(&hold, "").unwrap();
    let mut b = spawn(
        &args,
        dir.path(),
        "b",
        &[("SLAWATCH_FAILPOINT_RESTORE_HOLD", OsStr::new(&hold))],
    );
    b.wait_for("B inside a restore", Duration::from_secs(120), |r| {
        r.log_text()
            .contains("restore held by SLAWATCH_FAILPOINT_RESTORE_HOLD")
            .then_some(())
    });
    b.signal("KILL");
    let _ = b.child.wait();
    producer.release_and_finish();
    let ra = a.wait_exit();
    eprintln!("member killed mid-rebalance: A {ra}");
    assert!(
        ra["records"].as_u64().unwrap() <= lines.len() as u64,
        "{ra}"
    );
    // B never evaluated: A's findings alone are those of one pipeline.
    assert!(stored_findings(&dir.path().join("b")).is_empty());
    assert_same(&stored_findings(&dir.path().join("a")), &replay(&lines));
}
