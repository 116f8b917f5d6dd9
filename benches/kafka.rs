//! Kafka end-to-end throughput: `slawatch run` consuming a topic from a real tansu broker,
//! against bare rdkafka consumption of the same topic in the same run (the ratio is the cost of
//! decoding, windows, evaluation and checkpoints), with peak RSS.
//!
//! `cargo bench --bench kafka -- --sessions 500000` (needs `scripts/install-deps.sh`). Under
//! `cargo test` (no `--bench` argument) it does nothing: the Kafka behaviour is tested by
//! `tests/it/kafka_e2e.rs`.

#[path = "../tests/it/support/servers.rs"]
#[allow(unused_imports)]
mod servers;

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let sessions: u64 = args
        .iter()
        .position(|a| a == "--sessions")
        .map(|i| args[i + 1].parse().expect("--sessions N"))
        .unwrap_or(500_000);
    let partitions = 4;
    let broker = servers::Tansu::start();
    broker.create_topic("bench", partitions);
    broker.create_topic("bench.dlq", 1);
    broker.create_topic("bench.findings", 1);
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["simulate", "--seed", "9", "--rate", "100000", "--sessions"])
        .arg(sessions.to_string())
        .args(["--brokers", &broker.bootstrap(), "--topic", "bench"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "published {sessions} sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let (bare_n, bare_s) = bare(&broker.bootstrap(), partitions as usize);
    let bare_rate = bare_n as f64 / bare_s;
    println!("| consumer | records | seconds | records/s | peak RSS MB | vs bare |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| bare rdkafka (poll + count) | {bare_n} | {bare_s:.2} | {bare_rate:.0} | — | 1.00× |"
    );
    for (topology, instances) in [("single", 1), ("partitioned", 1), ("partitioned", 2)] {
        let (n, s, rss) = slawatch_run(&broker.bootstrap(), topology, instances);
        println!(
            "| slawatch run, {topology}, {instances} instance(s) | {n} | {s:.2} | {:.0} | {rss:.0} | {:.2}× |",
            n / s,
            (n / s) / bare_rate
        );
    }
}

/// `instances` processes of `slawatch run --exit-at-eof` in one new group: records consumed
/// (all instances), seconds from the first record to the last instance's end, the largest
/// peak RSS (MB).
fn slawatch_run(bootstrap: &str, topology: &str, instances: usize) -> (f64, f64, f64) {
    let group = format!("slawatch-{topology}-{instances}");
    let specs = concat!(env!("CARGO_MANIFEST_DIR"), "/sla-specs");
    let dirs: Vec<_> = (0..instances)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|data| {
            Command::new(BIN)
                .args(["run", "--brokers", bootstrap, "--topic", "bench"])
                .args(["--group", &group, "--topology", topology])
                .args(["--dead-letter-topic", "bench.dlq"])
                .args(["--findings-topic", "bench.findings"])
                .args(["--exit-at-eof", "--specs", specs, "--data-dir"])
                .arg(data.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut n, mut s, mut rss) = (0.0, 0.0f64, 0.0f64);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        eprintln!("{topology} × {instances}: {report}");
        n += report["records"].as_f64().unwrap();
        s = s.max(report["consume_seconds"].as_f64().unwrap());
        rss = rss.max(report["peak_rss_kb"].as_f64().unwrap() / 1024.0);
    }
    (n, s, rss)
}

/// Consumes every partition to its end with a bare rdkafka consumer; timed from the first
/// record.
fn bare(bootstrap: &str, partitions: usize) -> (u64, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bare")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&["bench"]).unwrap();
    let mut n = 0u64;
    let mut first = None;
    let mut eof = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while eof.len() < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    (n, first.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64()))
}
