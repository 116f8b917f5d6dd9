//! The transports of the span path, end to end with real servers: the OTLP/HTTP receiver of
//! `slawatch run --otlp-http` fed by the real OpenTelemetry Python SDK (protobuf + gzip, and
//! JSON), Kafka span topics on a real broker (tansu) in both encodings of the Collector's Kafka
//! exporter, and broken input dead-lettered while the stream goes on.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use slawatch::finding::Finding;
use slawatch::store::Store;

use crate::support::run::Run;
use crate::support::servers::{Tansu, tools_dir};

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")
}

/// `slawatch run ARGS` on the shipped specs with its API on a free port (log beside `data`).
fn spawn(args: &[&str], data: &Path) -> Run {
    let mut all: Vec<String> = vec!["run".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--specs".into(), specs().display().to_string()]);
    Run::spawn(&all, data, data.with_extension("log"))
}

fn endpoint(run: &Run) -> String {
    format!("http://{}/v1/traces", run.addr)
}

/// SIGTERM (the end of a receiver-only input), a clean exit, and the run's log.
fn finish(run: Run) -> String {
    let log = run.log.clone();
    let status = run.sigterm();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{text}");
    text
}

/// One raw HTTP/1.1 POST: status, headers (lowercase) and body bytes.
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw[split + 4..].to_vec();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "the receiver answers with a length"
    );
    (status, head, body)
}

fn python() -> PathBuf {
    tools_dir().join("venv/bin/python")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_id(records: Vec<Value>) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .map(|r| (r["session_id"].as_str().unwrap().to_owned(), r))
        .collect()
}

/// The Python agent exports its spans over OTLP/HTTP; the sessions slawatch assembles equal,
/// field by field, the records the agent wrote down of what it did.
#[test]
fn python_sdk_spans_become_the_sessions_the_agent_ran() {
    for encoding in ["proto", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let emitted = dir.path().join("sessions.jsonl");
        let expected = dir.path().join("expected.jsonl");
        let run = spawn(
            &["--otlp-http", "--emit-sessions", emitted.to_str().unwrap()],
            &data,
        );
        let out = Command::new(python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/otel/agent.py"))
            .arg(endpoint(&run))
            .arg(encoding)
            .arg(&expected)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agent.py {encoding}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The exporter got its 200s: the spans are in the assembler. The end of the input
        // completes every trace.
        let log = finish(run);
        let want = by_id(lines(&expected));
        let got = by_id(lines(&emitted));
        assert_eq!(want.len(), 5, "{encoding}");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{encoding}: sessions assembled\n{log}"
        );
        for (id, w) in &want {
            let g = &got[id];
            for (field, value) in w.as_object().unwrap() {
                assert_eq!(&g[field], value, "{encoding}: session {id}, field {field}");
            }
            // Nothing the agent did not do: every other field is absent or derived.
            for (field, value) in g.as_object().unwrap() {
                if !w.as_object().unwrap().contains_key(field) {
                    assert!(
                        value.is_null() || DERIVED.contains(&field.as_str()),
                        "{encoding}: session {id} has {field} = {value}"
                    );
                }
            }
        }
        // Nothing was dead-lettered.
        let dead = std::fs::read_to_string(data.join("dead-letters.jsonl")).unwrap_or_default();
        assert!(dead.is_empty(), "{encoding}: {dead}");
    }
}

/// Session fields slawatch fills in that the agent does not report.
const DERIVED: [&str; 0] = [];

/// `n` sessions of `slawatch simulate`, decoded.
fn simulated_sessions(n: u64) -> Vec<slawatch::session::Session> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let out = Command::new(BIN)
        .args(["simulate", "--seed", "9", "--sessions", &n.to_string()])
        .args(["--late-fraction", "0", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let catalog = std::sync::Arc::new(slawatch::catalog::Catalog::embedded());
    let p = slawatch::pipeline::Pipeline::new(Vec::new(), catalog, &Default::default());
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| p.decode(l.as_bytes()).unwrap())
        .collect()
}

/// Broken protobuf, an unsupported media type and an oversized body get their HTTP answers
/// (400 dead-lettered with its reason, 415, 413) and the good requests around them still
/// become sessions.
#[test]
fn broken_requests_are_refused_and_dead_lettered_and_the_stream_goes_on() {
    use slawatch::otel::Encoding;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let emitted = dir.path().join("sessions.jsonl");
    let run = spawn(
        &[
            "--otlp-http",
            "--otlp-max-body",
            "200000",
            "--emit-sessions",
            emitted.to_str().unwrap(),
        ],
        &data,
    );
    let proto = [("Content-Type", "application/x-protobuf")];
    let sessions = simulated_sessions(50);
    let (first, rest) = sessions.split_at(20);
    let good = slawatch::otel::encode_request(first, Encoding::Protobuf, &Default::default());
    let (status, head, body) = post(&run.addr, "/v1/traces", &proto, &good);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("content-type: application/x-protobuf"));
    assert!(
        body.is_empty(),
        "full success: an empty ExportTraceServiceResponse"
    );

    // Field 1 (resource_spans) claims 100 bytes and there are 3.
    let broken = [0x0a, 0x64, 0x01, 0x02, 0x03];
    let (status, _, body) = post(&run.addr, "/v1/traces", &proto, &broken);
    assert_eq!(status, 400);
    // A google.rpc.Status: field 1 = code 3 (INVALID_ARGUMENT), field 2 = the message.
    assert_eq!(&body[..2], &[0x08, 0x03], "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("bad_protobuf"));

    let (status, _, body) = post(
        &run.addr,
        "/v1/traces",
        &[("Content-Type", "application/json")],
        b"{\"resourceSpans\": [",
    );
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);

    let (status, _, _) = post(
        &run.addr,
        "/v1/traces",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(status, 415);
    let (status, _, _) = post(&run.addr, "/v1/traces", &proto, &vec![0u8; 200_001]);
    assert_eq!(status, 413);
    // A gzip body that inflates past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 300_000]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 200_000);
    let (status, _, _) = post(
        &run.addr,
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(status, 413);

    // After all that, the receiver still takes good spans, gzipped JSON this time.
    let json = slawatch::otel::encode_request(rest, Encoding::Json, &Default::default());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let (status, head, body) = post(
        &run.addr,
        "/v1/traces",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gz.finish().unwrap(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("content-type: application/json"));
    finish(run);

    let dead = lines(&data.join("dead-letters.jsonl"));
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["bad_protobuf", "bad_json"], "{dead:?}");
    // The broken protobuf is kept as sent (base64: not UTF-8).
    assert!(dead[0]["raw_base64"].is_string() || dead[0]["raw"].is_string());
    // Every simulated session came through, once.
    let got = lines(&emitted);
    let distinct: std::collections::BTreeSet<&str> = got
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!((got.len(), distinct.len()), (50, 50));
    let agents: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r["agent"].as_str().unwrap()).collect();
    let want: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.agent.as_str()).collect();
    assert_eq!(agents, want);
}

// ------------------------------------------------------------------------------- Kafka ----

fn slawatch(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "slawatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test stream: a day with an incident, no late or dirty records (spans carry sessions).
const SIM: [&str; 10] = [
    "simulate",
    "--seed",
    "12",
    "--sessions",
    "3000",
    "--rate",
    "400",
    "--incident",
    "error-burst@3h+1h",
    "--late-fraction=0",
];

fn stored_findings(data: &Path) -> BTreeMap<String, Finding> {
    let store = Store::open(data).unwrap();
    store
        .findings()
        .unwrap()
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect()
}

/// `run --exit-at-eof` in the `single` topology over `input` (extra args), until it stops.
fn run_to_end(broker: &Tansu, input: &[&str], group: &str, data: &Path) -> String {
    let bootstrap = broker.bootstrap();
    let mut args = vec![
        "run",
        "--brokers",
        &bootstrap,
        "--group",
        group,
        "--topology",
        "single",
        "--exit-at-eof",
        "--no-api",
        "--checkpoint-interval",
        "500ms",
    ];
    args.extend_from_slice(input);
    let log = data.with_extension("log");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let mut child = Command::new(BIN)
        .args(&args)
        .arg("--data-dir")
        .arg(data)
        .arg("--specs")
        .arg(specs())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(status.success(), "run {input:?} failed:\n{log}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "run {input:?} did not finish:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same simulated stream as session records on one topic and as spans on another (both
/// encodings of the Collector's Kafka exporter): `run` on each finds exactly the same. A broken
/// protobuf message among the spans is dead-lettered with its reason and the stream goes on.
#[test]
fn kafka_span_topics_find_what_the_records_find() {
    let broker = Tansu::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("records", 1);
    let mut a: Vec<&str> = SIM.to_vec();
    a.extend(["--brokers", &bootstrap, "--topic", "records"]);
    slawatch(&a);
    let dir = tempfile::tempdir().unwrap();
    let records = stored_findings_of(&broker, &["--topic", "records"], "g-records", dir.path());
    assert!(
        records.len() >= 3,
        "the incident must produce findings: {}",
        records.len()
    );

    for (encoding, flag) in [("otlp_proto", "proto"), ("otlp_json", "json")] {
        let topic = format!("spans-{flag}");
        broker.create_topic(&topic, 1);
        let mut a: Vec<&str> = SIM.to_vec();
        a.extend(["--otel", flag, "--brokers", &bootstrap, "--topic", &topic]);
        slawatch(&a);
        // A message that is not an ExportTraceServiceRequest, in the middle of the topic's
        // partitions.
        publish_raw(&broker, &topic, &[0x0a, 0xff, 0xff, 0x01]);
        let data = dir.path().join(format!("data-{flag}"));
        let dlq = format!("{topic}.dlq");
        // Sessions keep the ids of their records (`gen_ai.conversation.id`, which the encoder
        // writes), so exemplars and PII ids in findings are the same.
        let config = dir.path().join(format!("slawatch-{flag}.yaml"));
        std::fs::write(&config, "otel:\n  groupBy: conversation\n").unwrap();
        let report = run_to_end(
            &broker,
            &[
                "--span-topic",
                &topic,
                "--span-encoding",
                encoding,
                "--dead-letter-topic",
                &dlq,
                "--config",
                config.to_str().unwrap(),
            ],
            &format!("g-{flag}"),
            &data,
        );
        let spans = stored_findings(&data);
        let ids = |m: &BTreeMap<String, Finding>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&spans), ids(&records), "{encoding}: {report}");
        assert_eq!(spans, records, "{encoding}");
        let dead = lines(&data.join("dead-letters.jsonl"));
        let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
        let want = if flag == "proto" {
            "bad_protobuf"
        } else {
            "bad_json"
        };
        assert_eq!(reasons, [want], "{encoding}");
    }

    // The same sessions, one span per message spread round-robin over a span topic of three
    // partitions (the Collector's exporter without `partition_traces_by_id`: a trace's spans
    // land in several partitions): one assembler over all of them finds the same.
    let mut sim: Vec<&str> = SIM.to_vec();
    let file = dir.path().join("sim.jsonl");
    sim.extend(["--out", file.to_str().unwrap()]);
    slawatch(&sim);
    let sessions = decode_lines(&std::fs::read_to_string(&file).unwrap());
    broker.create_topic("spans-three", 3);
    produce_spread(&broker, "spans-three", &span_messages(&sessions));
    let config = dir.path().join("slawatch-three.yaml");
    std::fs::write(&config, "otel:\n  groupBy: conversation\n").unwrap();
    let data = dir.path().join("data-three");
    let report = run_to_end(
        &broker,
        &[
            "--span-topic",
            "spans-three",
            "--span-encoding",
            "otlp_json",
        ]
        .into_iter()
        .chain(["--config", config.to_str().unwrap()])
        .collect::<Vec<_>>(),
        "g-three",
        &data,
    );
    let dead = std::fs::read_to_string(data.join("dead-letters.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "three partitions: {dead}");
    assert!(
        stored_findings(&data) == records,
        "three partitions: {report}"
    );
}

/// Contract-v1 lines, decoded.
fn decode_lines(text: &str) -> Vec<slawatch::session::Session> {
    let catalog = std::sync::Arc::new(slawatch::catalog::Catalog::embedded());
    let p = slawatch::pipeline::Pipeline::new(Vec::new(), catalog, &Default::default());
    text.lines()
        .map(|l| p.decode(l.as_bytes()).unwrap())
        .collect()
}

/// The spans of `sessions` one per message (OTLP JSON), in the order they end — the order an
/// SDK exports them —, with `gen_ai.conversation.id` so grouping by conversation gives the
/// session ids back; each with its session's id.
fn span_messages(sessions: &[slawatch::session::Session]) -> Vec<(String, Vec<u8>)> {
    use slawatch::otel::{EncodeOptions, GroupBy, session_spans, spans_to_otlp_json};
    let options = EncodeOptions {
        group_by: GroupBy::Conversation,
        ..EncodeOptions::default()
    };
    let mut spans: Vec<_> = sessions
        .iter()
        .flat_map(|s| {
            session_spans(s, &options)
                .into_iter()
                .map(|x| (&s.session_id, x))
        })
        .collect();
    spans.sort_by_key(|(_, s)| s.end_unix_nano);
    spans
        .iter()
        .map(|(id, s)| (id.to_string(), spans_to_otlp_json(std::slice::from_ref(s))))
        .collect()
}

/// Produces message `i` to partition `i mod 3` (never by trace), and waits for the acks.
fn produce_spread(broker: &Tansu, topic: &str, messages: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for (i, (_, payload)) in messages.iter().enumerate() {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition((i % 3) as i32)
            .payload(payload);
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
}

/// Spans of traces split across a restart: the first half of the messages, a SIGTERM while
/// traces are open (a root's children on both sides of the stop), the rest to a new run on the
/// same data directory. The sessions of the two runs are exactly the sessions of the input —
/// none lost, none twice, none missing a child —, as a run without restart assembles them.
#[test]
fn a_restart_keeps_the_open_traces() {
    let broker = Tansu::start();
    let bootstrap = broker.bootstrap();
    let sessions = simulated_sessions(300);
    let messages = span_messages(&sessions);
    // Stop in the middle, between two spans of one session (its root, which ends last, comes
    // after the stop).
    let cut = (messages.len() / 2..messages.len())
        .find(|&i| messages[i - 1].0 == messages[i].0)
        .expect("a session of several spans");
    // The cut is between spans of traces (computed from the input), so open traces must
    // survive the stop.
    let before: std::collections::BTreeSet<&str> =
        messages[..cut].iter().map(|(t, _)| t.as_str()).collect();
    let split = messages[cut..]
        .iter()
        .filter(|(t, _)| before.contains(t.as_str()))
        .map(|(t, _)| t.as_str())
        .collect::<std::collections::BTreeSet<_>>();
    assert!(!split.is_empty(), "no trace spans the cut");
    broker.create_topic("spans", 3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("slawatch.yaml");
    std::fs::write(&config, "otel:\n  groupBy: conversation\n").unwrap();
    let common = [
        "--brokers",
        &bootstrap,
        "--group",
        "g-restart",
        "--topology",
        "single",
        "--span-topic",
        "spans",
        "--span-encoding",
        "otlp_json",
        "--config",
        config.to_str().unwrap(),
        "--checkpoint-interval",
        "500ms",
    ];

    produce_spread(&broker, "spans", &messages[..cut]);
    let first = dir.path().join("first.jsonl");
    let mut args = common.to_vec();
    args.extend(["--emit-sessions", first.to_str().unwrap()]);
    let mut run = spawn(&args, &data);
    run.wait_for("the first half consumed", Duration::from_secs(180), |r| {
        let consumed = r
            .metrics(None)
            .value("slawatch_records_consumed_total", &[]);
        assert!(consumed <= cut as f64, "consumed {consumed} of {cut}");
        (consumed == cut as f64).then_some(())
    });
    finish(run);

    produce_spread(&broker, "spans", &messages[cut..]);
    let second = dir.path().join("second.jsonl");
    let mut args = common.to_vec();
    args.extend(["--emit-sessions", second.to_str().unwrap(), "--exit-at-eof"]);
    let log = finish_at_eof(spawn(&args, &data));

    let first = decode_lines(&std::fs::read_to_string(&first).unwrap());
    let second = decode_lines(&std::fs::read_to_string(&second).unwrap());
    assert!(!first.is_empty() && !second.is_empty(), "{log}");
    let ids_first: std::collections::BTreeSet<_> =
        first.iter().map(|s| s.session_id.clone()).collect();
    let by_id = |v: Vec<slawatch::session::Session>| {
        v.into_iter()
            .map(|s| (s.session_id.clone(), s))
            .collect::<BTreeMap<_, _>>()
    };
    let want = by_id(assembled_without_restart(&messages));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        by_id(sessions).keys().collect::<Vec<_>>(),
        "every input session is assembled"
    );
    let n = first.len() + second.len();
    let got = by_id(first.into_iter().chain(second).collect());
    assert_eq!(n, got.len(), "a session assembled twice");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{log}"
    );
    for (id, w) in &want {
        assert_eq!(&got[id], w, "session {id}");
    }
    // The traces open at the stop were completed by the second run.
    assert!(
        split.iter().all(|id| !ids_first.contains(*id)),
        "a trace completed before all its spans came"
    );
    let dead = std::fs::read_to_string(data.join("dead-letters.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "{dead}");
}

/// The sessions one assembler makes of the messages read in one go, as `--emit-sessions`
/// writes them (a contract-v1 line each), decoded.
fn assembled_without_restart(messages: &[(String, Vec<u8>)]) -> Vec<slawatch::session::Session> {
    use slawatch::ingest::encode::{RecordStyle, encode_record};
    use slawatch::otel::{Assembled, Assembler, Encoding, GroupBy, OtelConfig, decode_request};
    let catalog = std::sync::Arc::new(slawatch::catalog::Catalog::embedded());
    let config = OtelConfig {
        group_by: GroupBy::Conversation,
        ..OtelConfig::default()
    };
    let mut assembler = Assembler::new(&config).with_catalog(catalog);
    let mut out = Vec::new();
    for (_, m) in messages {
        assembler.push(decode_request(m, Encoding::Json).unwrap(), &mut out);
    }
    assembler.finish(&mut out);
    let lines: Vec<String> = out
        .iter()
        .map(|a| match a {
            Assembled::Session(s) => encode_record(s, RecordStyle::Sparse),
            Assembled::Rejected { reason, .. } => panic!("{reason}"),
        })
        .collect();
    decode_lines(&lines.join("\n"))
}

/// Waits for a run with `--exit-at-eof` to stop by itself; its log.
fn finish_at_eof(mut run: Run) -> String {
    let status = run.wait_for("the end of the input", Duration::from_secs(300), |r| {
        r.child.try_wait().unwrap()
    });
    let text = run.log_text();
    assert!(status.success(), "exit {status}:\n{text}");
    text
}

fn stored_findings_of(
    broker: &Tansu,
    input: &[&str],
    group: &str,
    dir: &Path,
) -> BTreeMap<String, Finding> {
    let data = dir.join(group);
    run_to_end(broker, input, group, &data);
    stored_findings(&data)
}

/// Publishes one message as is.
fn publish_raw(broker: &Tansu, topic: &str, payload: &[u8]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    p.send(BaseRecord::<[u8], [u8]>::to(topic).payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
}

/// `simulate --otel … --otlp-endpoint` posts the simulated stream to `run --otlp-http` (in
/// batches of sessions, and one session per request so the loop's queue fills and the
/// exporter meets `503 Retry-After`); the findings equal those of the same stream replayed as
/// session records.
#[test]
fn simulate_posts_spans_to_the_receiver_and_they_find_what_the_records_find() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim.jsonl");
    let mut sim: Vec<&str> = SIM.to_vec();
    sim.extend(["--out", file.to_str().unwrap()]);
    slawatch(&sim);
    let records_data = dir.path().join("records");
    let specs = specs();
    slawatch(&[
        "replay",
        file.to_str().unwrap(),
        "--no-progress",
        "--specs",
        specs.to_str().unwrap(),
        "--data-dir",
        records_data.to_str().unwrap(),
    ]);
    let records = stored_findings(&records_data);
    assert!(records.len() >= 3, "the incident must produce findings");
    let config = dir.path().join("slawatch.yaml");
    std::fs::write(&config, "otel:\n  groupBy: conversation\n").unwrap();
    for (flag, batch) in [("proto", "64"), ("json", "1")] {
        let data = dir.path().join(format!("http-{flag}"));
        let run = spawn(
            &["--otlp-http", "--config", config.to_str().unwrap()],
            &data,
        );
        let url = endpoint(&run);
        let mut sim: Vec<&str> = SIM.to_vec();
        sim.extend([
            "--otel",
            flag,
            "--otlp-endpoint",
            &url,
            "--otlp-batch",
            batch,
        ]);
        slawatch(&sim);
        let log = finish(run);
        let spans = stored_findings(&data);
        assert_eq!(
            spans.keys().collect::<Vec<_>>(),
            records.keys().collect::<Vec<_>>(),
            "{flag}:\n{log}"
        );
        assert!(spans == records, "{flag}: findings differ");
        let dead = std::fs::read_to_string(data.join("dead-letters.jsonl")).unwrap_or_default();
        assert!(dead.is_empty(), "{flag}: {dead}");
    }
}
