//! Checkpoint cost against state size: full (today's one CBOR value of the whole
//! `PipelineState`, written to a file and synced) against incremental (`checkpoint::Tracker`:
//! the parts that changed, appended to the checkpoint log and synced), in the same run.
//!
//! States of growing retention: K keys (prompt versions of one agent) × D days of traffic,
//! built at a light background rate so that every 5-minute pane of every key (and channel
//! segment) holds sessions; then S steps of "1 minute of traffic at 100k sessions/h" (1,667
//! sessions over the keys, event time continuing, one stream so that session ids never repeat;
//! a window closes every 15 steps), each followed by one checkpoint of each kind.
//!
//! `cargo bench --bench checkpoint [-- --keys 1,10,100 --days 1,7 --steps 30]`; without `--bench`
//! (`cargo test --benches`) one small state, checking that an increment is smaller than a full
//! checkpoint.
//!
//! `cargo bench --bench checkpoint -- --profile [--every 30000]`: which parts a catch-up
//! rewrites. The stream of `slawatch simulate --seed 9 --rate 100000 --sessions 100000 --agent
//! agent-0 … --agent agent-7` through the Kafka bench's spec (the shipped `support-bot.yaml`
//! selecting every agent), one increment every `--every` records (300 ms of a `single`
//! catch-up at ~100k records/s); per increment its bytes by part kind and its largest parts.
//!
//! `cargo bench --bench checkpoint -- --history [--every 20000,60000] [--sessions 100000]`: the
//! operational history's flush. The same stream, decoded once up front, into a `History` (the
//! default configuration, as the service keeps it), one delta sealed and applied to a sled
//! store every `--every` records (the global tables flush each second, `single` at each
//! checkpoint); time spent observing and applying, per `--every`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slawatch::catalog::Catalog;
use slawatch::checkpoint::{PartId, Tracker};
use slawatch::pipeline::Pipeline;
use slawatch::simulate::{AgentProfile, DEFAULT_START_MS, SimConfig, Simulator};
use slawatch::store::Store;

const HOUR_MS: i64 = 3_600_000;

fn specs() -> Vec<slawatch::spec::model::Spec> {
    let (specs, diags) = slawatch::spec::parse_str(
        include_str!("../sla-specs/support-bot.yaml"),
        "sla-specs/support-bot.yaml",
    );
    assert!(!slawatch::spec::has_errors(&diags));
    specs
}

fn agents(keys: usize) -> Vec<AgentProfile> {
    (0..keys)
        .map(|k| AgentProfile::new("support-bot", format!("sp-v{k}"), "m-2026-09"))
        .collect()
}

/// Event time of one step of traffic after the background.
const STEP_MS: i64 = 60_000;

fn feed(p: &mut Pipeline, lines: impl IntoIterator<Item = impl AsRef<[u8]>>) -> u64 {
    let mut out = Vec::new();
    let mut n = 0;
    for line in lines {
        p.process_bytes(line.as_ref(), 0, &mut out);
        n += 1;
    }
    n
}

struct Row {
    keys: usize,
    days: i64,
    sessions: u64,
    full_bytes: u64,
    full: Vec<Duration>,
    inc_bytes: Vec<u64>,
    inc: Vec<Duration>,
    parts: usize,
    skipped: usize,
    base_bytes: u64,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_u(v: &mut [u64]) -> u64 {
    v.sort();
    v[v.len() / 2]
}

fn measure(keys: usize, days: i64, steps: usize, background_per_hour: f64) -> Row {
    let mut p = Pipeline::new(specs(), Arc::new(Catalog::embedded()), &Default::default());
    let start = DEFAULT_START_MS;
    let span = days * 24 * HOUR_MS;
    let background = SimConfig {
        seed: 1,
        start_ms: start,
        duration_ms: span,
        sessions_per_hour: background_per_hour,
        agents: agents(keys),
        diurnal: false,
        ..SimConfig::default()
    };
    let sessions = feed(&mut p, Simulator::new(background).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tracker = Tracker::new();
    // The first checkpoint of a run without one: every part, as a base.
    let mut first = tracker.diff(&p);
    let ids = |inc: &mut slawatch::checkpoint::Increment| {
        let upserts: Vec<(Vec<u8>, Vec<u8>)> = std::mem::take(&mut inc.upserts)
            .into_iter()
            .map(|(id, b)| (id.encode(), b))
            .collect();
        let deletes: Vec<Vec<u8>> = inc.deletes.iter().map(|id| id.encode()).collect();
        (upserts, deletes)
    };
    let (up, del) = ids(&mut first);
    let base_bytes = store.put_part_checkpoint(b"", &up, &del).unwrap().bytes;
    tracker.written(first);
    let mut row = Row {
        keys,
        days,
        sessions,
        full_bytes: 0,
        full: Vec::new(),
        inc_bytes: Vec::new(),
        inc: Vec::new(),
        parts: 0,
        skipped: 0,
        base_bytes,
    };
    let traffic: Vec<Vec<u8>> = Simulator::new(SimConfig {
        seed: 100,
        start_ms: start + span,
        duration_ms: steps as i64 * STEP_MS,
        sessions_per_hour: 100_000.0,
        agents: agents(keys),
        diurnal: false,
        late_fraction: 0.0,
        ..SimConfig::default()
    })
    .unwrap()
    .collect();
    for step in traffic.chunks(traffic.len().div_ceil(steps)) {
        row.sessions += feed(&mut p, step);
        // Full: what `single` wrote before parts — snapshot, one CBOR value, file + fsync.
        let t = Instant::now();
        let mut bytes = Vec::new();
        ciborium::into_writer(&p.snapshot(), &mut bytes).unwrap();
        store.put_checkpoint(&bytes).unwrap();
        row.full.push(t.elapsed());
        row.full_bytes = bytes.len() as u64;
        // Incremental: the parts that changed, one append + fdatasync.
        let t = Instant::now();
        let mut inc = tracker.diff(&p);
        let (up, del) = ids(&mut inc);
        let w = store.put_part_checkpoint(b"", &up, &del).unwrap();
        row.parts = inc.visited;
        row.skipped = inc.skipped;
        tracker.written(inc);
        row.inc.push(t.elapsed());
        row.inc_bytes.push(w.bytes);
    }
    row
}

fn list<T>(args: &[String], flag: &str, default: &[T]) -> Vec<T>
where
    T: std::str::FromStr + Clone,
    T::Err: std::fmt::Debug,
{
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1].split(',').map(|x| x.parse().unwrap()).collect(),
        None => default.to_vec(),
    }
}

/// The kind of a part (its `PartId` variant), from its debug form so that this bench builds
/// against the part layouts of earlier versions too (before/after in the same run).
fn kind(id: &PartId) -> String {
    let text = format!("{id:?}");
    text.split([' ', '{']).next().unwrap_or_default().to_owned()
}

/// The Kafka bench's stream: `slawatch simulate --seed 9 --rate 100000 --sessions N --agent
/// agent-0 … --agent agent-7`.
fn kafka_stream(sessions: u64) -> Vec<Vec<u8>> {
    let cfg = slawatch::simulate::SimulateArgs {
        seed: 9,
        rate: 100_000.0,
        sessions: Some(sessions),
        agents: (0..8).map(|a| format!("agent-{a}")).collect(),
        ..Default::default()
    }
    .to_config()
    .unwrap();
    Simulator::new(cfg).unwrap().collect()
}

/// Feeds the Kafka bench's stream and prints what every `every` records' increment holds.
fn profile(every: usize) {
    let spec =
        include_str!("../sla-specs/support-bot.yaml").replace("agent: support-bot", "agent: \"*\"");
    let (specs, diags) = slawatch::spec::parse_str(&spec, "every-agent.yaml");
    assert!(!slawatch::spec::has_errors(&diags));
    let lines = kafka_stream(100_000);
    let mut p = Pipeline::new(specs, Arc::new(Catalog::embedded()), &Default::default());
    let mut tracker = Tracker::new();
    let mut out = Vec::new();
    println!(
        "| records | parts | upserts | deletes | bytes | by kind (bytes, parts) | largest parts |"
    );
    println!("|---:|---:|---:|---:|---:|---|---|");
    for (n, chunk) in lines.chunks(every).enumerate() {
        for line in chunk {
            p.process_bytes(line, 0, &mut out);
        }
        let inc = tracker.diff(&p);
        let mut by_kind: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for (id, bytes) in &inc.upserts {
            let e = by_kind.entry(kind(id)).or_default();
            e.0 += bytes.len();
            e.1 += 1;
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by_key(|(_, (b, _))| std::cmp::Reverse(*b));
        let mut largest: Vec<(usize, String)> = inc
            .upserts
            .iter()
            .map(|(id, b)| (b.len(), format!("{id:?}")))
            .collect();
        largest.sort_by_key(|(b, _)| std::cmp::Reverse(*b));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            n * every + chunk.len(),
            inc.visited,
            inc.upserts.len(),
            inc.deletes.len(),
            inc.upserts.iter().map(|(_, b)| b.len()).sum::<usize>(),
            kinds
                .iter()
                .map(|(k, (b, c))| format!("{k} {b} ({c})"))
                .collect::<Vec<_>>()
                .join(", "),
            largest
                .iter()
                .take(3)
                .map(|(b, id)| format!("{b} `{id}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        tracker.written(inc);
    }
}

/// Feeds the Kafka bench's stream into a history and applies a delta every `every` records.
fn history(every: &[usize], sessions: u64) {
    use slawatch::history::{History, HistoryConfig};
    let decoder = slawatch::ingest::decode::Decoder::new(Arc::new(Catalog::embedded()));
    let sessions: Vec<_> = kafka_stream(sessions)
        .iter()
        .filter_map(|l| decoder.decode(l).ok())
        .collect();
    println!("| every | deltas | observe s | apply s | apply ms per delta | stored MB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &every in every {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut h = History::new(HistoryConfig::default(), "bench");
        let (mut observe, mut apply, mut deltas) = (Duration::ZERO, Duration::ZERO, 0);
        for chunk in sessions.chunks(every) {
            let t = Instant::now();
            for s in chunk {
                h.observe(s);
            }
            observe += t.elapsed();
            let t = Instant::now();
            let delta = h.seal().expect("sessions observed");
            assert!(store.apply_history(delta).unwrap());
            let seq = delta.seq;
            h.ack(seq);
            apply += t.elapsed();
            deltas += 1;
        }
        let stored: u64 = store.history_bytes().unwrap().iter().sum();
        println!(
            "| {every} | {deltas} | {:.2} | {:.2} | {:.1} | {:.1} |",
            observe.as_secs_f64(),
            apply.as_secs_f64(),
            apply.as_secs_f64() * 1e3 / deltas as f64,
            stored as f64 / 1e6,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--history") {
        let sessions = list(&args, "--sessions", &[100_000u64])[0];
        history(&list(&args, "--every", &[20_000, 60_000]), sessions);
        return;
    }
    if args.iter().any(|a| a == "--profile") {
        profile(list(&args, "--every", &[30_000])[0]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        let mut row = measure(2, 1, 3, 2_000.0);
        let inc = median_u(&mut row.inc_bytes);
        assert!(
            inc * 2 < row.full_bytes,
            "an increment ({inc} B) is not much smaller than a full checkpoint ({} B)",
            row.full_bytes
        );
        println!(
            "checkpoint smoke: full {} B, increment {inc} B",
            row.full_bytes
        );
        return;
    }
    let keys: Vec<usize> = list(&args, "--keys", &[1, 10, 100]);
    let days: Vec<i64> = list(&args, "--days", &[1, 7]);
    let steps: Vec<usize> = list(&args, "--steps", &[30]);
    let rate: Vec<f64> = list(&args, "--background", &[2_000.0]);
    println!(
        "| keys | days | sessions | parts | not encoded (sealed) | full: bytes | full: ms (median) | incremental: bytes (median / max) | incremental: ms (median / max) | base bytes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &k in &keys {
        for &d in &days {
            let mut r = measure(k, d, steps[0], rate[0]);
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} / {} | {:.2} / {:.2} | {} |",
                r.keys,
                r.days,
                r.sessions,
                r.parts,
                r.skipped,
                r.full_bytes,
                median(&mut r.full).as_secs_f64() * 1e3,
                median_u(&mut r.inc_bytes),
                r.inc_bytes.iter().max().unwrap_or(&0),
                median(&mut r.inc).as_secs_f64() * 1e3,
                r.inc.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64() * 1e3,
                r.base_bytes,
            );
        }
    }
}
