//! Kafka end-to-end throughput: `slawatch run` consuming a topic from a real tansu broker,
//! against bare rdkafka consumption of the same topic in the same run (the ratio is the cost of
//! decoding, windows, evaluation, checkpoints and — in `partitioned` — the repartition topic),
//! with peak RSS.
//!
//! `cargo bench --bench kafka -- --sessions 300000 --agents 8 --rounds 2 --baseline PATH`
//! (needs `scripts/install-deps.sh`). The stream has `--agents` agents (`agent-0`, …) that one
//! spec selects (the shipped `support-bot.yaml` with `agent: "*"`), so `partitioned` spreads
//! its stage 2 over the repartition partitions. `--baseline PATH` runs a second `slawatch`
//! binary (another build, e.g. before a change) on the same topic in the same rounds, each of
//! its runs right after the same run of this build, and prints after/before per pair. Each
//! round measures bare consumption first; the summary gives the median over rounds.
//! `--build PATH` measures that binary as "this build" instead of the one built with the
//! harness. Under `cargo test` (no `--bench` argument) it does nothing: the Kafka behaviour is
//! tested by `tests/it/kafka_e2e.rs`.

#[path = "../tests/it/support/servers.rs"]
#[allow(unused_imports)]
mod servers;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");
const RUNS: [(&str, usize); 3] = [("single", 1), ("partitioned", 1), ("partitioned", 2)];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let sessions: u64 = arg("--sessions").map_or(500_000, |v| v.parse().expect("--sessions N"));
    let agents: usize = arg("--agents").map_or(8, |v| v.parse().expect("--agents N"));
    let rounds: usize = arg("--rounds").map_or(1, |v| v.parse().expect("--rounds N"));
    // `--build PATH` measures another binary as "this build" (e.g. a release binary while
    // the harness itself was compiled by `cargo test --bench kafka --no-run`).
    let this = arg("--build").unwrap_or_else(|| BIN.to_owned());
    let mut binaries = vec![("this build".to_owned(), this.clone())];
    if let Some(b) = arg("--baseline") {
        binaries.push((format!("baseline {b}"), b));
    }
    let partitions = 4;
    let broker = servers::Tansu::start();
    broker.create_topic("bench", partitions);
    broker.create_topic("bench.dlq", 1);
    broker.create_topic("bench.findings", 1);
    let specs = tempfile::tempdir().unwrap();
    write_spec(specs.path());
    let t = Instant::now();
    let mut simulate = Command::new(&this);
    simulate.args(["simulate", "--seed", "9", "--rate", "100000", "--sessions"]);
    simulate.arg(sessions.to_string());
    for a in 0..agents {
        simulate.args(["--agent", &format!("agent-{a}")]);
    }
    let out = simulate
        .args(["--brokers", &broker.bootstrap(), "--topic", "bench"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "published {sessions} sessions of {agents} agents in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Per round: bare, then each run of every binary; rates and RSS by (binary, run).
    let mut bare_rates = Vec::new();
    let mut rates = vec![vec![Vec::new(); RUNS.len()]; binaries.len()];
    let mut rss = vec![vec![0.0f64; RUNS.len()]; binaries.len()];
    println!(
        "| round | consumer | binary | records | seconds | records/s | peak RSS MB | vs bare |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for round in 0..rounds {
        let (bare_n, bare_s) = bare(&broker.bootstrap(), partitions as usize, round);
        let bare_rate = bare_n as f64 / bare_s;
        bare_rates.push(bare_rate);
        println!(
            "| {round} | bare rdkafka (poll + count) | — | {bare_n} | {bare_s:.2} | {bare_rate:.0} | — | 1.00× |"
        );
        for (i, (topology, instances)) in RUNS.iter().enumerate() {
            for (b, (label, bin)) in binaries.iter().enumerate() {
                let group = format!("slawatch-{topology}-{instances}-b{b}-r{round}");
                let (n, s, peak) = slawatch_run(
                    bin,
                    &broker.bootstrap(),
                    specs.path(),
                    &group,
                    topology,
                    *instances,
                );
                rates[b][i].push((n / s) / bare_rate);
                rss[b][i] = rss[b][i].max(peak);
                println!(
                    "| {round} | `{topology}`, {instances} instance(s) | {label} | {n} | {s:.2} | {:.0} | {peak:.0} | {:.2}× |",
                    n / s,
                    (n / s) / bare_rate
                );
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "Median over {rounds} round(s); bare rdkafka {:.0} records/s.",
        median(&bare_rates)
    );
    println!();
    let mut head = "| consumer |".to_owned();
    for (label, _) in &binaries {
        head += &format!(" {label}: vs bare | peak RSS MB |");
    }
    if binaries.len() == 2 {
        head += " this build / baseline (per round) |";
    }
    println!("{head}");
    println!(
        "|---|{}",
        "---|".repeat(2 * binaries.len() + usize::from(binaries.len() == 2))
    );
    for (i, (topology, instances)) in RUNS.iter().enumerate() {
        let mut row = format!("| `{topology}`, {instances} instance(s) |");
        for b in 0..binaries.len() {
            row += &format!(" {:.2}× | {:.0} |", median(&rates[b][i]), rss[b][i]);
        }
        if binaries.len() == 2 {
            let pairs: Vec<String> = rates[0][i]
                .iter()
                .zip(&rates[1][i])
                .map(|(a, b)| format!("{:.2}", a / b))
                .collect();
            row += &format!(" {} |", pairs.join(", "));
        }
        println!("{row}");
    }
}

/// The shipped `support-bot.yaml` with a selector that takes every agent.
fn write_spec(dir: &Path) {
    let shipped = include_str!("../sla-specs/support-bot.yaml");
    assert!(shipped.contains("agent: support-bot"));
    let every = shipped.replace("agent: support-bot", "agent: \"*\"");
    std::fs::write(dir.join("every-agent.yaml"), every).unwrap();
}

/// `instances` processes of `slawatch run --exit-at-eof` in one new group: records consumed
/// (all instances), seconds from the first record to the last instance's end, the largest
/// peak RSS (MB).
fn slawatch_run(
    bin: &str,
    bootstrap: &str,
    specs: &Path,
    group: &str,
    topology: &str,
    instances: usize,
) -> (f64, f64, f64) {
    let dirs: Vec<_> = (0..instances)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|data| {
            Command::new(bin)
                .args(["run", "--brokers", bootstrap, "--topic", "bench"])
                .args(["--group", group, "--topology", topology])
                .args(["--dead-letter-topic", "bench.dlq"])
                .args(["--findings-topic", "bench.findings"])
                .args(["--exit-at-eof", "--specs"])
                .arg(specs)
                .arg("--data-dir")
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
fn bare(bootstrap: &str, partitions: usize, round: usize) -> (u64, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bare-r{round}"))
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
