//! `slawatch run` against a real Kafka-protocol broker (tansu, started by the fixture on a free
//! port): findings equal a replay of the same records; SIGKILLs at random points change
//! nothing; dirty input lands in the dead-letter topic with its reason; two consumers split the
//! work and together find exactly what one finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use slawatch::catalog::Catalog;
use slawatch::cli::{load_specs, replay_stream};
use slawatch::finding::Finding;
use slawatch::ingest::{DeadLetters, LinesSource, Position, RawRecord};
use slawatch::pipeline::{Outcome, Pipeline, PipelineConfig};
use slawatch::store::Store;

use crate::support::servers::Tansu;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")
}

/// `slawatch simulate` args of the test stream (written to a file or published).
fn sim_args(sessions: u64, dirty: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "simulate",
        "--seed",
        "5",
        "--rate",
        "10000",
        "--sessions",
        &sessions.to_string(),
        "--incident",
        "latency-tail@3h+1h",
        "--incident",
        "pii-leak@5h+10m",
        "--incident",
        "error-burst@8h+1h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if dirty {
        a.extend(
            ["--dirty-fraction", "0.01", "--duplicate-fraction", "0.01"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    a
}

fn slawatch(args: &[String]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "slawatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn publish(broker: &Tansu, topic: &str, sessions: u64, dirty: bool) {
    let mut a = sim_args(sessions, dirty);
    a.extend([
        "--brokers".into(),
        broker.bootstrap(),
        "--topic".into(),
        topic.into(),
    ]);
    slawatch(&a);
}

/// Findings of `slawatch replay` over the same records, by id.
fn replay_findings(sessions: u64, dirty: bool) -> BTreeMap<String, Finding> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let mut a = sim_args(sessions, dirty);
    a.extend(["--out".into(), file.display().to_string()]);
    slawatch(&a);
    replay_file(&file)
}

/// Findings of one pipeline over the records of `file` (the shipped specs), by id: what a
/// service run must equal.
pub(crate) fn replay_file(file: &Path) -> BTreeMap<String, Finding> {
    let mut p = Pipeline::new(
        load_specs(&[specs()]).unwrap(),
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    );
    let mut out = BTreeMap::new();
    replay_stream(
        &mut LinesSource::open(file).unwrap(),
        &mut p,
        &mut DeadLetters::discard(),
        None,
        &mut |f: &Finding| {
            out.insert(f.id.clone(), f.clone());
            Ok(())
        },
    )
    .unwrap();
    out
}

fn run_args(
    broker: &Tansu,
    topic: &str,
    group: &str,
    data: &Path,
    exit_at_eof: bool,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        "--brokers",
        &broker.bootstrap(),
        "--topic",
        topic,
        "--group",
        group,
        "--dead-letter-topic",
        &format!("{topic}.dlq"),
        "--findings-topic",
        &format!("{topic}.findings"),
        "--checkpoint-interval",
        "300ms",
        "--data-dir",
        &data.display().to_string(),
        "--specs",
        &specs().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if exit_at_eof {
        a.push("--exit-at-eof".into());
    }
    a
}

/// Where each spawned run's stderr goes, by pid: a file, not a pipe, so a chatty run can never
/// block on a full pipe while the test waits for it to exit.
static STDERR: std::sync::Mutex<BTreeMap<u32, PathBuf>> = std::sync::Mutex::new(BTreeMap::new());

fn spawn(args: &[String]) -> Child {
    spawn_with(args, &[])
}

fn spawn_with(args: &[String], env: &[(&str, &str)]) -> Child {
    let log = tempfile::Builder::new()
        .prefix("slawatch-it-run-")
        .suffix(".log")
        .tempfile()
        .unwrap()
        .into_temp_path()
        .keep()
        .unwrap();
    let child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn,slawatch::service=debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    STDERR.lock().unwrap().insert(child.id(), log);
    child
}

/// The stderr of a spawned run (removed once read).
fn stderr_of(pid: u32) -> String {
    let Some(path) = STDERR.lock().unwrap().remove(&pid) else {
        return String::new();
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    // The tail is what tells why a run failed or hung.
    let start = text.len().saturating_sub(20_000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// Waits for a run to exit by itself (it stops at the end of the input): its status, or a panic
/// with its log once `deadline` has passed.
fn exited(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "run did not finish in {deadline:?}; its log ends:\n{}",
                stderr_of(child.id())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a run to exit by itself, successfully: its stdout.
fn finish(mut child: Child, deadline: Duration) -> String {
    let status = exited(&mut child, deadline);
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "run failed: {}", stderr_of(pid));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stored_findings(data: &Path) -> BTreeMap<String, Finding> {
    Store::open(data)
        .unwrap()
        .findings()
        .unwrap()
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect()
}

pub(crate) fn assert_same(got: &BTreeMap<String, Finding>, want: &BTreeMap<String, Finding>) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing, {} extra; first missing: {:?}; first extra: {:?}",
        missing.len(),
        extra.len(),
        missing.first().map(|k| &want[*k].message),
        extra.first().map(|k| &got[*k].message)
    );
    for (id, f) in want {
        assert_eq!(&got[id], f, "finding {id} differs");
    }
}

/// A consumed message: key, payload, headers.
type Consumed = (Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>);

/// Every message of a topic (all partitions, from the beginning).
pub(crate) fn drain(broker: &Tansu, topic: &str, expect_at_least: usize) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("drain-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
                quiet_since = Instant::now();
            }
            _ => {
                if out.len() >= expect_at_least && quiet_since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    out
}

fn produce(broker: &Tansu, topic: &str, key: &[u8], payload: &[u8]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    p.send(BaseRecord::to(topic).key(key).payload(payload))
        .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn kafka_run_finds_what_replay_finds() {
    let broker = Tansu::start();
    let sessions = 200_000;
    broker.create_topic("sessions", 4);
    broker.create_topic("sessions.dlq", 1);
    broker.create_topic("sessions.findings", 2);
    publish(&broker, "sessions", sessions, false);
    let data = tempfile::tempdir().unwrap();
    let stdout = finish(
        spawn(&run_args(&broker, "sessions", "e2e", data.path(), true)),
        Duration::from_secs(300),
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["records"], sessions);
    let want = replay_findings(sessions, false);
    assert!(
        want.values().any(|f| f.objective == "pii"),
        "the stream has incidents"
    );
    assert_same(&stored_findings(data.path()), &want);
    // The findings topic carries them too (JSON, keyed by spec/objective/key).
    let published = drain(&broker, "sessions.findings", want.len());
    let ids: BTreeSet<String> = published
        .iter()
        .map(|(_, v, _)| serde_json::from_slice::<Finding>(v).unwrap().id)
        .collect();
    assert_eq!(ids, want.keys().cloned().collect());
}

#[test]
fn sigkill_at_random_points_changes_no_finding() {
    sigkill_at_random_points("crash", None);
}

/// The `single` topology checkpoints in parts (a base, then a log of increments: every 300 ms
/// here): a SIGKILL after several increments — possibly in the middle of one — restores the
/// base plus every complete increment, and findings equal a replay.
#[test]
fn sigkill_of_single_after_incremental_checkpoints_changes_no_finding() {
    let increments = sigkill_at_random_points("crash-single", Some("single"));
    assert!(
        increments > 0,
        "no kill happened after an incremental checkpoint (the log was empty every time)"
    );
}

/// A crash on either side of a checkpoint's commit point (its append to the checkpoint log;
/// the `FAILPOINTS` crash points abort the process there, as a SIGKILL would) loses no finding
/// and repeats or loses no mail.
/// - Right after the append, the run resumes past the windows that checkpoint closed, so their
///   findings and the alert engine's decisions on them must be durable before it. (They were
///   flushed after it: the findings lived only in sled's buffers, and the engine never saw them
///   again.)
/// - Right before it, the engine's saved state is ahead of the checkpoint the run resumes from
///   (here: none), and the findings emitted again are ones it has.
#[test]
fn a_crash_on_either_side_of_a_checkpoint_append_loses_no_finding_and_no_mail() {
    crash_at_points(
        "crash-appended",
        "single",
        &[
            ("single-checkpoint-appended", true),
            ("single-checkpoint-persisted", false),
        ],
    );
}

/// `partitioned`: a crash right after a checkpoint's state snapshots are durable in the state
/// topic (stage 2's commit point) loses no finding and no mail. The partitions resume from
/// those snapshots, past the windows they closed, so the findings of those windows must be in
/// sled before them. (sled was flushed after them: a crash in between lost what its buffers
/// held.)
#[test]
fn a_crash_right_after_partitioned_snapshots_loses_no_finding_and_no_mail() {
    crash_at_points(
        "crash-snapshots",
        "partitioned",
        &[("partitioned-snapshots-durable", true)],
    );
}

/// Runs `topology` over one stream once cleanly, then once per crash point: a run that aborts
/// there (`FAILPOINTS`) at its one checkpoint, the final one at the end of the input, after
/// the last windows closed, so that checkpoint covers every finding and mail of the run; then
/// a run that resumes (restored from a checkpoint or not, as given) and finishes. Its findings
/// equal a replay's, its mail log the clean run's.
fn crash_at_points(topic: &str, topology: &str, points: &[(&str, bool)]) {
    let broker = Tansu::start();
    let sessions = 20_000;
    broker.create_topic(topic, 3);
    broker.create_topic(&format!("{topic}.dlq"), 1);
    broker.create_topic(&format!("{topic}.findings"), 1);
    publish(&broker, topic, sessions, true);
    let args = |group: &str, data: &Path| {
        let mut a = run_args(&broker, topic, group, data, true);
        let at = a.iter().position(|x| x == "--checkpoint-interval").unwrap();
        a[at + 1] = "1h".into();
        a.extend(["--topology".into(), topology.into()]);
        a
    };
    let mails = |data: &Path| -> Vec<_> {
        let store = Store::open(data).unwrap();
        let mut all: Vec<_> = (store.notify_log().unwrap().all().unwrap().into_iter())
            .map(|m| {
                let sent = matches!(
                    m.status,
                    slawatch::store::notify_log::MailStatus::Sent { .. }
                );
                (m.id, m.due_at, m.subject, m.to, sent)
            })
            .collect();
        all.sort();
        all
    };
    let clean = tempfile::tempdir().unwrap();
    finish(
        spawn(&args("clean", clean.path())),
        Duration::from_secs(300),
    );
    let want_mails = mails(clean.path());
    assert!(
        !want_mails.is_empty(),
        "the stream mails nobody: the test shows nothing"
    );
    let want = replay_findings(sessions, true);
    for (point, restored) in points {
        let data = tempfile::tempdir().unwrap();
        let mut crashing = spawn_with(
            &args(point, data.path()),
            // sled's background flusher off, so what the crash loses does not depend on when
            // it last ran.
            &[(
                "FAILPOINTS",
                &format!("{point}=return;store-no-background-flush=return"),
            )],
        );
        let status = exited(&mut crashing, Duration::from_secs(300));
        let log = stderr_of(crashing.id());
        assert!(
            !status.success(),
            "{point}: the crash point was not reached: {log}"
        );
        let stdout = finish(spawn(&args(point, data.path())), Duration::from_secs(300));
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["restored"], *restored, "{point}: {report}");
        assert_same(&stored_findings(data.path()), &want);
        assert_eq!(mails(data.path()), want_mails, "{point}");
    }
}

/// Runs `slawatch run` on `topic` and SIGKILLs it at three random points, then lets a last run
/// finish: its findings must equal a replay's. Returns how many kills found increments in the
/// checkpoint log (`single` only).
fn sigkill_at_random_points(topic: &str, topology: Option<&str>) -> usize {
    let broker = Tansu::start();
    let sessions = 120_000;
    broker.create_topic(topic, 3);
    broker.create_topic(&format!("{topic}.dlq"), 1);
    broker.create_topic(&format!("{topic}.findings"), 1);
    publish(&broker, topic, sessions, true);
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&broker, topic, topic, data.path(), true);
    if let Some(t) = topology {
        args.extend(["--topology".to_owned(), t.to_owned()]);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut kills, mut increments) = (0, 0);
    for _ in 0..3 {
        let mut child = spawn(&args);
        let log_len = || {
            std::fs::metadata(data.path().join(slawatch::store::parts::LOG_FILE))
                .map_or(0, |m| m.len())
        };
        if topology == Some("single") {
            // Kill once this run has written to the checkpoint log (appended an increment, or
            // folded the log into a new base), within 300 ms of noticing it — possibly in the
            // middle of the next write or fold.
            let before = log_len();
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while log_len() == before
                && child.try_wait().unwrap().is_none()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        } else {
            // A restarted member joins once the killed one's session (6 s) has expired, then
            // consumes for a few seconds: kill somewhere in there.
            std::thread::sleep(Duration::from_millis(rng.random_range(3500..10_000)));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL: no checkpoint, no leave-group.
            kills += 1;
        }
        let _ = child.wait();
        stderr_of(child.id());
        let log = log_len();
        let base = std::fs::metadata(data.path().join(slawatch::store::parts::BASE_FILE))
            .map_or(0, |m| m.len());
        eprintln!("after run {kills}: checkpoint base of {base} bytes, log of {log} bytes");
        increments += usize::from(log > 0);
    }
    // A run that finished before its kill proves nothing about crashes.
    assert!(kills > 0, "no run was killed: every run finished first");
    let stdout = finish(spawn(&args), Duration::from_secs(300));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("after {kills} SIGKILLs the last run reports {report}");
    if topology.is_some() {
        assert_eq!(report["restored"], true, "{report}");
    }
    let want = replay_findings(sessions, true);
    assert_same(&stored_findings(data.path()), &want);
    // The findings topic may hold copies of findings emitted after a crash's last checkpoint:
    // every finding is there, and copies carry the same id.
    let published = drain(&broker, &format!("{topic}.findings"), want.len());
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for (_, v, _) in &published {
        *copies
            .entry(serde_json::from_slice::<Finding>(v).unwrap().id)
            .or_default() += 1;
    }
    assert_eq!(
        copies.keys().cloned().collect::<BTreeSet<_>>(),
        want.keys().cloned().collect()
    );
    let extra: usize = copies.values().map(|c| c - 1).sum();
    eprintln!(
        "{kills} SIGKILLs: {} findings, {extra} redelivered copies in the findings topic",
        want.len()
    );
    increments
}

#[test]
fn dirty_records_go_to_the_dead_letter_topic_with_their_reason() {
    let broker = Tansu::start();
    let sessions = 20_000;
    broker.create_topic("dirty", 2);
    broker.create_topic("dirty.dlq", 1);
    broker.create_topic("dirty.findings", 1);
    publish(&broker, "dirty", sessions, true);
    // A huge record: 300 kB, over the 256 kB limit this run sets (brokers cap messages at
    // about 1 MB, slawatch's default limit, so a record over that cannot arrive by Kafka).
    let huge = format!(
        r#"{{"session_id":"huge-1","agent":"support-bot","prompt_version":"sp-v1","model":"m-2026-09","ended_at":"2026-11-01T05:00:00Z","status":"success","pad":"{}"}}"#,
        "x".repeat(300_000)
    );
    produce(&broker, "dirty", b"huge-1", huge.as_bytes());
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&broker, "dirty", "dirty", data.path(), true);
    args.extend(["--max-record-bytes".into(), "262144".into()]);
    let stdout = finish(spawn(&args), Duration::from_secs(300));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let dead = report["dead_letters"].as_u64().unwrap() as usize;
    assert!(dead > 100, "{report}");
    let letters = drain(&broker, "dirty.dlq", dead);
    assert_eq!(letters.len(), dead);
    let mut reasons = BTreeSet::new();
    for (_, payload, headers) in &letters {
        let reason = &headers["slawatch.reason"];
        reasons.insert(reason.clone());
        assert_eq!(headers["slawatch.source.topic"], "dirty");
        assert!(headers["slawatch.source.partition"].parse::<i32>().unwrap() < 2);
        assert!(headers["slawatch.source.offset"].parse::<i64>().is_ok());
        assert!(!headers["slawatch.detail"].is_empty());
        assert!(!payload.is_empty() || reason == "not_json");
    }
    for reason in [
        "not_json",
        "not_object",
        "wrong_type",
        "negative_value",
        "bad_timestamp",
        "unknown_schema_version",
        "missing_field",
        "too_large",
    ] {
        assert!(
            reasons.contains(reason),
            "no `{reason}` dead letter in {reasons:?}"
        );
    }
    // The stream kept flowing: the valid sessions were all processed.
    let records = report["records"].as_u64().unwrap();
    assert!(records as usize > sessions as usize);
    assert!(!stored_findings(data.path()).is_empty());
}

/// Findings stored by several runs (each keeps those of the keys it evaluated).
fn union_of(dirs: &[&Path]) -> BTreeMap<String, Finding> {
    let mut all = BTreeMap::new();
    for d in dirs {
        for (id, f) in stored_findings(d) {
            if let Some(before) = all.insert(id.clone(), f.clone()) {
                assert_eq!(before, f, "two instances stored finding {id} differently");
            }
        }
    }
    all
}

#[test]
fn two_consumers_split_the_work_and_find_what_one_finds() {
    let broker = Tansu::start();
    let sessions = 40_000;
    broker.create_topic("pair", 4);
    broker.create_topic("pair.dlq", 1);
    broker.create_topic("pair.findings", 1);
    publish(&broker, "pair", sessions, false);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = spawn(&run_args(&broker, "pair", "pair", a.path(), true));
    let second = spawn(&run_args(&broker, "pair", "pair", b.path(), true));
    let ra: serde_json::Value =
        serde_json::from_str(finish(first, Duration::from_secs(300)).trim()).unwrap();
    let rb: serde_json::Value =
        serde_json::from_str(finish(second, Duration::from_secs(300)).trim()).unwrap();
    let (na, nb) = (
        ra["records"].as_u64().unwrap(),
        rb["records"].as_u64().unwrap(),
    );
    eprintln!("two consumers: {na} + {nb} records; {ra} / {rb}");
    assert_eq!(
        na + nb,
        sessions,
        "every record validated by exactly one member"
    );
    assert!(na > 0 && nb > 0, "both members took input partitions");
    let want = replay_findings(sessions, false);
    assert_same(&union_of(&[a.path(), b.path()]), &want);
    let published: BTreeSet<String> = drain(&broker, "pair.findings", want.len())
        .iter()
        .map(|(_, v, _)| serde_json::from_slice::<Finding>(v).unwrap().id)
        .collect();
    assert_eq!(published, want.keys().cloned().collect());
}

#[test]
fn sigterm_drains_commits_and_exits_zero_in_bounded_time() {
    let broker = Tansu::start();
    let sessions = 60_000;
    broker.create_topic("term", 2);
    broker.create_topic("term.dlq", 1);
    broker.create_topic("term.findings", 1);
    publish(&broker, "term", sessions, false);
    for topology in ["partitioned", "single"] {
        sigterm_then_restart(&broker, topology, sessions);
    }
}

fn sigterm_then_restart(broker: &Tansu, topology: &str, sessions: u64) {
    let data = tempfile::tempdir().unwrap();
    let group = format!("term-{topology}");
    let with_topology = |mut a: Vec<String>| {
        a.extend(["--topology".to_owned(), topology.to_owned()]);
        a
    };
    let args = with_topology(run_args(broker, "term", &group, data.path(), false));
    let child = spawn(&args);
    // Let it join the group and consume for a while, then ask it to stop.
    std::thread::sleep(Duration::from_secs(8));
    let asked = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stdout = finish(child, Duration::from_secs(15));
    eprintln!("{topology}: SIGTERM to exit: {:?}", asked.elapsed());
    let first: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(first["checkpoints"].as_u64().unwrap() >= 1, "{first}");
    // A restart continues from the checkpoint and ends with the replay's findings.
    let second: serde_json::Value = serde_json::from_str(
        finish(
            spawn(&with_topology(run_args(
                broker,
                "term",
                &group,
                data.path(),
                true,
            ))),
            Duration::from_secs(300),
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(second["restored"], true, "{second}");
    assert_eq!(
        first["records"].as_u64().unwrap() + second["records"].as_u64().unwrap(),
        sessions,
        "nothing lost, nothing counted twice: {first} then {second}"
    );
    assert_same(
        &stored_findings(data.path()),
        &replay_findings(sessions, false),
    );
}

/// The dead letters (reason, original bytes) of one pipeline over `lines`, in order.
fn replay_dead_letters(lines: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut p = Pipeline::new(
        load_specs(&[specs()]).unwrap(),
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    );
    let mut letters = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let record = RawRecord {
            bytes: line.clone(),
            position: Position::Line {
                source: "late".into(),
                line: i as u64 + 1,
            },
        };
        if let Outcome::Rejected {
            reason,
            dead_letter: true,
        } = p.process(&record, &mut Vec::new())
        {
            letters.push((reason.code().to_owned(), line.clone()));
        }
    }
    letters
}

#[test]
fn partitioned_stage_2_dead_letters_late_records_with_their_original_bytes() {
    // A stream with late records — moved to its end, and written with spaces no encoder would
    // put there —, so stage 2 (not stage 1) rejects them and must dead-letter the bytes as
    // they arrived. One input partition, so the watermark is a replay's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let mut a = sim_args(20_000, false);
    a.extend(["--out".into(), file.display().to_string()]);
    slawatch(&a);
    let text = std::fs::read_to_string(&file).unwrap();
    let (mut lines, mut late) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if i < 4_000 && i % 200 == 7 {
            late.push(
                line.replacen(",\"agent\":", " , \"agent\" : ", 1)
                    .into_bytes(),
            );
        } else {
            lines.push(line.as_bytes().to_vec());
        }
    }
    assert_eq!(late.len(), 20);
    lines.extend(late.iter().cloned());
    let mut want = replay_dead_letters(&lines);
    want.sort();
    let mut late_sorted = late.clone();
    late_sorted.sort();
    assert_eq!(
        want.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        late_sorted,
        "the replay dead-letters exactly the moved records"
    );
    assert!(want.iter().all(|(reason, _)| reason == "late"));
    let findings = {
        let moved = dir.path().join("moved.jsonl");
        let mut all = lines.join(&b"\n"[..]);
        all.push(b'\n');
        std::fs::write(&moved, all).unwrap();
        replay_file(&moved)
    };

    let broker = Tansu::start();
    // Once with the originals forwarded by stage 1, once read back from the source by stage 2.
    for (topic, env) in [
        ("late", vec![]),
        ("late-read-back", vec![(NO_ORIGINALS_ENV, "1")]),
    ] {
        broker.create_topic(topic, 1);
        broker.create_topic(&format!("{topic}.dlq"), 1);
        broker.create_topic(&format!("{topic}.findings"), 1);
        let sent =
            slawatch::kafka::publish_lines(&broker.bootstrap(), topic, lines.iter().cloned(), None)
                .unwrap();
        assert_eq!(sent, lines.len() as u64);
        let data = tempfile::tempdir().unwrap();
        let run = spawn_with(&run_args(&broker, topic, topic, data.path(), true), &env);
        let report: serde_json::Value =
            serde_json::from_str(finish(run, Duration::from_secs(300)).trim()).unwrap();
        assert_eq!(report["dead_letters"], 20, "{topic}: {report}");
        let mut got: Vec<(String, Vec<u8>)> = drain(&broker, &format!("{topic}.dlq"), 20)
            .into_iter()
            .map(|(_, payload, headers)| (headers["slawatch.reason"].clone(), payload))
            .collect();
        got.sort();
        assert_eq!(got, want, "{topic}: dead letters differ from the replay's");
        assert_same(&stored_findings(data.path()), &findings);
    }
}

const NO_ORIGINALS_ENV: &str = slawatch::service::partitioned::NO_ORIGINALS_ENV;
