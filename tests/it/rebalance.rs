//! Group membership changing while the `partitioned` topology consumes, on the real broker
//! (tansu): a member joins mid-stream, a member leaves mid-stream, a member is SIGKILLed in the
//! middle of a rebalance. In each the members together find exactly what one pipeline finds
//! replaying the whole stream, and every record is validated by exactly one member (or, after a
//! SIGKILL, at least once and counted once).
//!
//! Each step waits on a condition (a member's `/readyz`, its `/metrics`, a line of its log),
//! never on a sleep; where the change lands in the stream depends on the machine's speed, what
//! the members find does not.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::kafka_e2e::{assert_same, replay_file, stored_findings};
use crate::metrics::kafka_args;
use crate::support::run::{Run, get, report};
use crate::support::servers::{MailDev, Tansu};

/// Log levels of the runs: the service's own debug lines say where a hung run stopped.
const RUST_LOG: &str = "warn,slawatch::service=debug,slawatch::kafka=debug";

/// The test stream: its lines (bytes: dirty ones need not be UTF-8) and its file, which the
/// replay reads.
struct Stream {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    lines: Vec<Vec<u8>>,
}

/// A stream of about 10 h with incidents across the membership changes (dirty records and
/// duplicates included, so dead letters and dedupe state move too).
fn stream() -> Stream {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let args = [
        "--seed",
        "5",
        "--rate",
        "4000",
        "--sessions",
        "80000",
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
    ];
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .arg("simulate")
        .args(args)
        .arg("--out")
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let lines = std::fs::read(&file)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Stream {
        _dir: dir,
        file,
        lines,
    }
}

/// Publishes `lines` keyed by session id (like `slawatch simulate --brokers`) and waits until
/// every one is acknowledged.
fn produce(broker: &Tansu, topic: &str, lines: &[Vec<u8>]) {
    use rdkafka::ClientConfig;
    use rdkafka::error::KafkaError;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::types::RDKafkaErrorCode;
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        // The dirty lines include records over slawatch's size limit.
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    for line in lines {
        let key = session_id(line).unwrap_or_default();
        let mut record = BaseRecord::to(topic).key(key).payload(line.as_slice());
        loop {
            match p.send(record) {
                Ok(()) => break,
                // The local queue is full: let it drain.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    std::thread::sleep(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => panic!("producing a line of {} bytes: {e}", line.len()),
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The bytes of `"session_id":"…"` in a line, without parsing it (dirty lines included).
fn session_id(line: &[u8]) -> Option<&[u8]> {
    let needle = b"\"session_id\":\"";
    let start = line.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
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
    Run::spawn_with_env(args, &dir.join(name), dir.join(format!("{name}.log")), &env)
}

/// Records the run has consumed (stage 1), from its `/metrics`.
fn consumed(run: &Run) -> f64 {
    run.metrics(None)
        .value("slawatch_records_consumed_total", &[])
}

/// Waits until the run is ready (partitions assigned, restored) and has consumed a record.
fn consuming(run: &mut Run) {
    run.wait_for("ready and consuming", Duration::from_secs(120), |r| {
        let (code, _) = get(&r.addr, "/readyz", None);
        (code == 200 && consumed(r) > 0.0).then_some(())
    });
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

fn replay(stream: &Stream) -> std::collections::BTreeMap<String, slawatch::finding::Finding> {
    let want = replay_file(&stream.file);
    assert!(
        want.values().any(|f| f.objective == "pii"),
        "the stream has incidents"
    );
    want
}

/// Waits until the run has taken a checkpoint: every stage-2 partition it owns has a snapshot
/// in the state topic (progress marks reach every partition before the first checkpoint).
fn checkpointed(run: &mut Run) {
    run.wait_for("a checkpoint", Duration::from_secs(120), |r| {
        (r.metrics(None)
            .value("slawatch_checkpoint_duration_seconds_count", &[])
            > 0.0)
            .then_some(())
    });
}

/// A second member joins while the first is consuming: input partitions and the state of the
/// stage-2 partitions move to it mid-stream, and the findings are still those of one run.
#[test]
fn a_member_joining_mid_stream_takes_over_state_and_changes_no_finding() {
    let broker = Tansu::start();
    topics(&broker, "join");
    let stream = stream();
    let lines = &stream.lines;
    produce(&broker, "join", lines);
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "join", "partitioned");
    args.push("--exit-at-eof".into());
    let mut a = spawn(&args, dir.path(), "a", &[]);
    consuming(&mut a);
    checkpointed(&mut a);
    let mut b = spawn(&args, dir.path(), "b", &[]);
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
        &replay(&stream),
    );
}

/// A member leaves (SIGTERM) while the stream is consumed: it checkpoints and commits on the
/// way out, the other takes its partitions over from the state topic, and nothing is lost or
/// counted twice.
#[test]
fn a_member_leaving_mid_stream_hands_over_and_changes_no_finding() {
    let broker = Tansu::start();
    topics(&broker, "leave");
    let stream = stream();
    let lines = &stream.lines;
    produce(&broker, "leave", lines);
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "leave", "partitioned");
    // B leaves; A stays to the end of the input.
    let mut b = spawn(&args, dir.path(), "b", &[]);
    consuming(&mut b);
    args.push("--exit-at-eof".into());
    let mut a = spawn(&args, dir.path(), "a", &[]);
    // Ready (assigned, restored), not necessarily consuming: on a fast machine B may have read
    // the whole input before A joined, and A then only takes B's stage-2 partitions over and
    // closes their last windows.
    a.wait_for("ready", Duration::from_secs(120), |r| {
        (get(&r.addr, "/readyz", None).0 == 200).then_some(())
    });
    let b_log = b.log.clone();
    assert!(b.sigterm().success(), "B exits 0 after SIGTERM");
    let rb = report(&b_log);
    let ra = a.wait_exit();
    eprintln!("member leaving mid-stream: {ra} / {rb}");
    assert!(rb["records"].as_u64().unwrap() > 0, "{rb}");
    assert_eq!(
        ra["records"].as_u64().unwrap() + rb["records"].as_u64().unwrap(),
        lines.len() as u64,
        "every record validated by exactly one member"
    );
    assert_same(
        &union(&[&dir.path().join("a"), &dir.path().join("b")]),
        &replay(&stream),
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
    let stream = stream();
    let lines = &stream.lines;
    produce(&broker, "kill", lines);
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, "kill", "partitioned");
    args.push("--exit-at-eof".into());
    let mut a = spawn(&args, dir.path(), "a", &[]);
    consuming(&mut a);
    checkpointed(&mut a);
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
    let ra = a.wait_exit();
    eprintln!("member killed mid-rebalance: A {ra}");
    // B never evaluated: A's findings alone are those of one pipeline.
    assert!(stored_findings(&dir.path().join("b")).is_empty());
    assert_same(&stored_findings(&dir.path().join("a")), &replay(&stream));
}

// ------------------------------------------------------------- alert state moves with it --

/// A stream of one agent (one stage-2 partition) whose latency breaches for an hour at 3 h:
/// its lines up to event time 4 h 15 min (its windows still breach) and the rest.
fn incident_stream() -> (Stream, usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args([
            "simulate",
            "--seed",
            "3",
            "--duration",
            "10h",
            "--rate",
            "400",
        ])
        .args(["--late-fraction", "0", "--incident", "latency-tail@3h+1h"])
        .arg("--out")
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<Vec<u8>> = std::fs::read(&file)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let ended = |l: &[u8]| -> String {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        v["ended_at"].as_str().unwrap().to_owned()
    };
    // RFC 3339 times of one format order as text.
    let cut = lines
        .iter()
        .position(|l| ended(l).as_str() >= "2026-11-01T04:15:00")
        .unwrap();
    assert!(
        lines[cut..]
            .iter()
            .all(|l| ended(l).as_str() >= "2026-11-01T04:15:00")
    );
    let stream = Stream {
        _dir: dir,
        file,
        lines,
    };
    (stream, cut)
}

/// The objective the incident of [`incident_stream`] breaches.
const LATENCY: &str = "support-bot-prod/latency-p99";

/// A header of a message as maildev's API gives it.
fn mail_header<'a>(m: &'a serde_json::Value, name: &str) -> &'a str {
    m["headers"][name].as_str().unwrap_or_default()
}

/// Waits until the inbox holds a mail of `kind` about objective `about` and returns the inbox.
fn wait_for_kind(mail: &MailDev, kind: &str, about: &str) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let msgs = mail.wait_for_messages(0, Duration::from_secs(10));
        let hit = |m: &serde_json::Value| {
            mail_header(m, "x-slawatch-kind") == kind
                && m["subject"].as_str().is_some_and(|s| s.contains(about))
        };
        if msgs.iter().any(hit) {
            return msgs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{kind}` mail within 180 s; inbox: {:?}",
            subjects(&msgs)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn subjects(msgs: &[serde_json::Value]) -> Vec<String> {
    let mut s: Vec<String> = (msgs.iter())
        .map(|m| m["subject"].as_str().unwrap_or("?").to_owned())
        .collect();
    s.sort();
    s
}

/// Waits until every consumer lag the run reports is zero (and, when known, stage 1 consumed
/// `records`), then for two more checkpoints: the mails decided by then are out.
fn drained(run: &mut Run, records: Option<u64>) {
    run.wait_for(
        "every record consumed and evaluated",
        Duration::from_secs(180),
        |r| {
            let m = r.metrics(None);
            let consumed = m.value("slawatch_records_consumed_total", &[]) as u64;
            let lags = m.all("slawatch_consumer_lag_records");
            let lag: f64 = lags.iter().map(|s| s.value).sum();
            (records.is_none_or(|n| consumed == n)
                && consumed > 0
                && !lags.is_empty()
                && lag == 0.0)
                .then_some(())
        },
    );
    let at = run
        .metrics(None)
        .value("slawatch_checkpoint_duration_seconds_count", &[]);
    run.wait_for(
        "two checkpoints after the last record",
        Duration::from_secs(60),
        |r| {
            (r.metrics(None)
                .value("slawatch_checkpoint_duration_seconds_count", &[])
                >= at + 2.0)
                .then_some(())
        },
    );
}

/// The incident ids of the records in `dirs`' stores.
fn incident_ids(dirs: &[&Path]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for d in dirs {
        let store = slawatch::store::Store::open(d).unwrap();
        let records: Vec<slawatch::alerts::archive::IncidentRecord> =
            store.incident_archive().unwrap().all().unwrap();
        out.extend(records.into_iter().map(|r| r.incident_id));
    }
    out
}

/// Member A mails "firing" for an incident, then leaves while it still fires, and member B,
/// which takes the stage-2 partition over from the state topic, sees it resolve.
///
/// The guarantee at the SMTP server: every notification one instance replaying the stream
/// mails arrives (the same subjects; none lost), and a notification arrives twice only when a
/// member died between the server's acceptance of a mail and the snapshot that marks it sent,
/// then with the same `Message-ID` (mail clients merge the copies). A clean leave (SIGTERM)
/// hands over a snapshot with every sent mail marked, and the SIGKILL here lands after such a
/// snapshot (A killed once everything it consumed is checkpointed, mail marks included), so
/// in both variants each notification arrives exactly once: one firing and one resolved mail
/// per thread.
fn alert_state_moves_with_the_partition(kill: bool) {
    let name = if kill { "mailkill" } else { "mailleave" };
    let broker = Tansu::start();
    topics(&broker, name);
    let mail = MailDev::start();
    let (stream, cut) = incident_stream();
    let lines = &stream.lines;
    produce(&broker, name, &lines[..cut]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = kafka_args(&broker, name, "partitioned");
    args.extend(
        [
            "--smtp-url",
            &format!("smtp://{}", mail.smtp_addr()),
            "--smtp-tls",
            "none",
        ]
        .map(String::from),
    );
    let mut a = spawn(&args, dir.path(), "a", &[]);
    // A alone mails the first breach of the incident.
    let inbox = wait_for_kind(&mail, "firing", LATENCY);
    assert!(
        !subjects(&inbox)
            .iter()
            .any(|s| s.starts_with("[RESOLVED]") && s.contains(LATENCY)),
        "the incident still fires when A leaves: {:?}",
        subjects(&inbox)
    );
    let a_log = a.log.clone();
    let mut b = if kill {
        // Killed once all it consumed is evaluated and checkpointed, mail marks included:
        // nothing it sent is left to repeat.
        drained(&mut a, Some(cut as u64));
        assert!(a.log_text().contains("mail marks checkpointed"));
        a.signal("KILL");
        let _ = a.child.wait();
        spawn(&args, dir.path(), "b", &[])
    } else {
        // B joins (the partition may move to it now), then A leaves mid-incident.
        let mut b = spawn(&args, dir.path(), "b", &[]);
        b.wait_for("B ready", Duration::from_secs(120), |r| {
            (get(&r.addr, "/readyz", None).0 == 200).then_some(())
        });
        assert!(a.sigterm().success(), "A exits 0 after SIGTERM");
        b
    };
    produce(&broker, name, &lines[cut..]);
    wait_for_kind(&mail, "resolved", LATENCY);
    // A consumed part one (after the SIGKILL: all of it committed, as the drain waited for).
    let by_a = match kill {
        true => cut as u64,
        false => report(&a_log)["records"].as_u64().unwrap(),
    };
    drained(&mut b, Some(lines.len() as u64 - by_a));
    // B's incident API shows the incident of the partition it owns now.
    let (code, body) = get(&b.addr, "/v1/incidents", None);
    assert_eq!(code, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert!(
        !listed.is_empty(),
        "B lists the incident it took over: {body}"
    );
    assert!(b.sigterm().success(), "B exits 0 after SIGTERM");

    let msgs = mail.messages().as_array().unwrap().clone();
    for m in &msgs {
        eprintln!(
            "mail: {} | {} | {}",
            mail_header(m, "x-slawatch-kind"),
            mail_header(m, "x-slawatch-notification"),
            m["subject"].as_str().unwrap_or("?")
        );
    }
    // A notification id that arrived more than once came with one Message-ID (at least once,
    // the copies merged) — and here, where nothing sent was unmarked, it never does.
    let mut by_id = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for m in &msgs {
        by_id
            .entry(mail_header(m, "x-slawatch-notification"))
            .or_default()
            .push(mail_header(m, "message-id"));
    }
    assert!(
        by_id.values().all(|ids| ids.iter().all(|id| *id == ids[0])),
        "copies of a notification with different Message-IDs: {by_id:?}"
    );
    assert!(
        by_id.values().all(|ids| ids.len() == 1),
        "a notification mailed twice: {:?}",
        subjects(&msgs)
    );
    // Per thread (incident group): exactly one firing and one resolved mail.
    let mut threads = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for m in &msgs {
        let t = threads
            .entry(mail_header(m, "x-slawatch-incident"))
            .or_default();
        match mail_header(m, "x-slawatch-kind") {
            "firing" => t.0 += 1,
            "resolved" => t.1 += 1,
            _ => {}
        }
    }
    let oncall: Vec<_> = threads.values().filter(|(f, r)| f + r > 0).collect();
    assert!(!oncall.is_empty());
    assert!(
        oncall.iter().all(|(f, r)| (*f, *r) == (1, 1)),
        "firing/resolved per thread {threads:?}: {:?}",
        subjects(&msgs)
    );

    // One instance replaying the same stream mails the same subjects about the same incidents.
    let replay_dir = dir.path().join("replay");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["run", "--no-api", "--specs"])
        .arg(&args[args.iter().position(|a| a == "--specs").unwrap() + 1])
        .arg("--input")
        .arg(&stream.file)
        .arg("--data-dir")
        .arg(&replay_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let replayed = (slawatch::store::Store::open(&replay_dir).unwrap())
        .notify_log()
        .unwrap()
        .all()
        .unwrap();
    // Every mail, repeats included: the members' engines advance window close by window
    // close as the replay's does.
    let mut want: Vec<String> = replayed.into_iter().map(|m| m.subject).collect();
    want.sort();
    assert_eq!(
        subjects(&msgs),
        want,
        "the members mailed what one instance mails"
    );
    assert_eq!(
        incident_ids(&[&dir.path().join("a"), &dir.path().join("b")]),
        incident_ids(&[&replay_dir]),
    );
}

#[test]
fn a_member_leaving_mid_incident_hands_its_alert_state_over_and_no_mail_repeats() {
    alert_state_moves_with_the_partition(false);
}

#[test]
fn a_member_killed_mid_incident_hands_its_alert_state_over_and_no_mail_is_lost() {
    alert_state_moves_with_the_partition(true);
}
