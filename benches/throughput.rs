//! End-to-end replay throughput: sessions/s, MB/s and peak RSS of `slawatch replay`'s pipeline
//! over generated streams, against two baselines measured on the same file in the same run:
//! reading lines only, and parsing every line into a `serde_json::Value`; `decode` (the
//! pipeline's typed decoder alone) shows how the pipeline's time splits.
//!
//! `cargo bench --bench throughput -- --sessions 1000000,5000000 [--repeat 3] [--heavy N]
//! [--long N] [--file PATH]…`
//!
//! `--heavy N` adds a high-traffic, drift-heavy stream of N sessions in the same run: two keys
//! of `support-bot` (prompt versions) at 10,000 sessions/hour each, so every drift window
//! compares a full 5,000-row window sample with a 10,000-row baseline (issue 10, item 12).
//!
//! `--spans N` adds the span path (issue 12): the same simulated stream of N sessions as
//! session records (`records`), as OTLP JSON requests, one a line (`otlp-json`), and as
//! length-delimited OTLP protobuf requests (`otlp-proto`), one request per session, each
//! replayed through the whole pipeline in the same run (`otel.groupBy: conversation`, so
//! the session ids travel as `gen_ai.conversation.id` and the findings are the records').
//!
//! `--long N` adds a light, long stream: N sessions at 200 sessions/hour (300,000 span 62
//! days), where closing windows costs more than reading records. `--file PATH` adds a stream
//! from a file (e.g. a `slawatch simulate --demo` stream with dirty lines and duplicates).
//! Every stream is also read by Python's `json.loads` (`benches/json_loads.py`, one call per
//! line, in the same run) when `python3` is on the path: the row `json.loads (Python)`.
//!
//! Streams are generated once into `target/bench-data/` at a fixed rate (100k sessions/hour),
//! so a longer stream means more hours, not denser windows: peak RSS must stay flat as N grows.
//! Each measurement runs in a child process so its peak RSS (VmHWM) is its own; with
//! `--repeat R` each mode runs R times and the best time is reported (peak RSS: the largest). Under
//! `cargo test` (no `--bench` argument) it runs a small smoke check instead.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use slawatch::catalog::Catalog;
use slawatch::cli::{SpanInput, replay_spans, replay_stream};
use slawatch::ingest::decode::Decoder;
use slawatch::ingest::{DeadLetters, FramedSource, LinesSource, Source};
use slawatch::otel::{Encoding, GroupBy, OtelConfig};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::service::spans::SpanPath;
use slawatch::simulate::{OtelFormat, SimConfig, Simulator};

const RATE_PER_HOUR: f64 = 100_000.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let mode = &args[i + 1];
        let file = PathBuf::from(&args[i + 2]);
        child(mode, &file);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        smoke();
        return;
    }
    let sizes: Vec<u64> = args
        .iter()
        .position(|a| a == "--sessions")
        .map(|i| {
            args[i + 1]
                .split(',')
                .map(|s| s.parse().expect("--sessions N[,N]"))
                .collect()
        })
        // `--spans N` alone measures only the span path.
        .unwrap_or_else(|| {
            if args.iter().any(|a| a == "--spans") {
                Vec::new()
            } else {
                vec![1_000_000, 5_000_000]
            }
        });
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .map_or(1, |i| args[i + 1].parse().expect("--repeat R"));
    println!(
        "| stream | mode | seconds (best of {repeat}) | median s | sessions/s | MB/s | peak RSS MB \
         | vs read-only | vs parse-only |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let heavy: Option<u64> = args
        .iter()
        .position(|a| a == "--heavy")
        .map(|i| args[i + 1].parse().expect("--heavy N"));
    let long: Option<u64> = args
        .iter()
        .position(|a| a == "--long")
        .map(|i| args[i + 1].parse().expect("--long N"));
    if let Some(n) = args
        .iter()
        .position(|a| a == "--spans")
        .map(|i| args[i + 1].parse::<u64>().expect("--spans N"))
    {
        span_path(n, repeat);
    }
    let files = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--file")
        .map(|(i, _)| PathBuf::from(&args[i + 1]))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p));
    let streams = sizes
        .into_iter()
        .map(|n| (n.to_string(), generate(n)))
        .chain(heavy.map(|n| (format!("heavy {n}"), generate_heavy(n))))
        .chain(long.map(|n| (format!("long {n}"), generate_long(n))))
        .chain(files);
    for (n, file) in streams {
        // Untimed pass so the first timed mode does not pay for a cold page cache.
        run_child("read", &file);
        let (mut read_rate, mut parse_rate) = (None, None);
        for mode in ["read", "parse", "decode", "pipeline"] {
            let mut runs: Vec<[f64; 4]> = (0..repeat).map(|_| run_child(mode, &file)).collect();
            runs.sort_by(|a, b| a[0].total_cmp(&b[0]));
            let [secs, records, bytes, _] = runs[0];
            let median = runs[runs.len() / 2][0];
            let rss_kb = runs.iter().map(|r| r[3]).fold(0.0, f64::max);
            let rate = records / secs;
            match mode {
                "read" => read_rate = Some(rate),
                "parse" => parse_rate = Some(rate),
                _ => {}
            }
            let ratio =
                |base: Option<f64>| base.map_or("—".to_owned(), |p| format!("{:.3}×", rate / p));
            println!(
                "| {n} | {mode} | {secs:.2} | {median:.2} | {:.0} | {:.0} | {:.0} | {} | {} |",
                rate,
                bytes / secs / 1e6,
                rss_kb / 1024.0,
                ratio(read_rate),
                ratio(parse_rate),
            );
        }
        let python: Vec<[f64; 3]> = (0..repeat).filter_map(|_| json_loads(&file)).collect();
        if let Some(best) = python.iter().min_by(|a, b| a[0].total_cmp(&b[0])) {
            let [secs, records, bytes] = *best;
            println!(
                "| {n} | json.loads (Python) | {secs:.2} | — | {:.0} | {:.0} | — | {:.3}× | {:.3}× |",
                records / secs,
                bytes / secs / 1e6,
                records / secs / read_rate.unwrap_or(f64::NAN),
                records / secs / parse_rate.unwrap_or(f64::NAN),
            );
        }
    }
}

/// The span path against the record path on the same stream: sessions/s of the whole
/// pipeline from each input.
fn span_path(n: u64, repeat: usize) {
    let inputs = generate_spans(n);
    for (mode, file) in [
        ("records", &inputs[0]),
        ("otlp-json", &inputs[1]),
        ("otlp-proto", &inputs[2]),
    ] {
        run_child("read", file);
        let mut runs: Vec<[f64; 4]> = (0..repeat).map(|_| run_child(mode, file)).collect();
        runs.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let [secs, sessions, bytes, _] = runs[0];
        let median = runs[runs.len() / 2][0];
        let rss_kb = runs.iter().map(|r| r[3]).fold(0.0, f64::max);
        println!(
            "| spans {n} | {mode} | {secs:.2} | {median:.2} | {:.0} | {:.0} | {:.0} | — | — |",
            sessions / secs,
            bytes / secs / 1e6,
            rss_kb / 1024.0,
        );
    }
}

/// One simulated stream as records, OTLP JSON and OTLP protobuf (generated once).
fn generate_spans(n: u64) -> [PathBuf; 3] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = SimConfig {
        seed: 44,
        sessions_per_hour: RATE_PER_HOUR,
        duration_ms: i64::MAX / 4,
        max_sessions: Some(n),
        ..SimConfig::default()
    };
    let paths = [
        dir.join(format!("spans-{n}.records.jsonl")),
        dir.join(format!("spans-{n}.otlp.jsonl")),
        dir.join(format!("spans-{n}.otlp.bin")),
    ];
    for (i, path) in paths.iter().enumerate() {
        if path.exists() {
            continue;
        }
        let tmp = path.with_extension("tmp");
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
        let mut sim = Simulator::new(cfg.clone()).unwrap();
        match i {
            0 => drop(slawatch::simulate::write_jsonl(&cfg, &mut w).unwrap()),
            1 => slawatch::simulate::write_spans(&mut sim, OtelFormat::Json, &mut w).unwrap(),
            _ => slawatch::simulate::write_spans(&mut sim, OtelFormat::Proto, &mut w).unwrap(),
        }
        w.flush().unwrap();
        drop(w);
        std::fs::rename(&tmp, path).unwrap();
    }
    paths
}

/// `python3 benches/json_loads.py FILE`: `[seconds, records, bytes]`, or `None` without Python.
fn json_loads(file: &Path) -> Option<[f64; 3]> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/json_loads.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("json_loads.py: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.len() == 3).then(|| [f[0], f[1], f[2]])
}

/// Runs one measurement in a child process: `[seconds, records, bytes, peak_rss_kb]`.
fn run_child(mode: &str, file: &Path) -> [f64; 4] {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode, file.to_str().unwrap()])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    [f[0], f[1], f[2], f[3]]
}

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")
}

fn generate(n: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("stream-{n}.jsonl"));
    if path.exists() {
        return path;
    }
    let started = Instant::now();
    let cfg = SimConfig {
        seed: 42,
        sessions_per_hour: RATE_PER_HOUR,
        duration_ms: i64::MAX / 4,
        max_sessions: Some(n),
        ..SimConfig::default()
    };
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    let mut sim = Simulator::new(cfg).unwrap();
    let mut line = Vec::new();
    while {
        line.clear();
        sim.write_next(&mut line)
    } {
        w.write_all(&line).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eprintln!(
        "generated {n} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    path
}

/// Two keys of `support-bot` at 10,000 sessions/hour each, no day/night modulation.
fn generate_heavy(n: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("heavy-{n}.jsonl"));
    if path.exists() {
        return path;
    }
    let cfg = SimConfig {
        seed: 43,
        sessions_per_hour: 20_000.0,
        duration_ms: i64::MAX / 4,
        max_sessions: Some(n),
        diurnal: false,
        agents: vec![
            slawatch::simulate::AgentProfile::default(),
            slawatch::simulate::AgentProfile::new("support-bot", "sp-v2", "m-2026-09")
                .with_provider("acme-llm"),
        ],
        ..SimConfig::default()
    };
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    slawatch::simulate::write_jsonl(&cfg, &mut w).unwrap();
    w.flush().unwrap();
    drop(w);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The light, long stream: 200 sessions/hour (the sample day's rate), one agent, seed 42.
fn generate_long(n: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("long-{n}.jsonl"));
    if path.exists() {
        return path;
    }
    let cfg = SimConfig {
        seed: 42,
        sessions_per_hour: 200.0,
        duration_ms: i64::MAX / 4,
        max_sessions: Some(n),
        ..SimConfig::default()
    };
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    slawatch::simulate::write_jsonl(&cfg, &mut w).unwrap();
    w.flush().unwrap();
    drop(w);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Runs one measurement and prints `seconds records bytes peak_rss_kb`.
fn child(mode: &str, file: &Path) {
    let started = Instant::now();
    if let Some(encoding) = match mode {
        "otlp-json" => Some(Encoding::Json),
        "otlp-proto" => Some(Encoding::Protobuf),
        _ => None,
    } {
        let (sessions, bytes) = run_spans(encoding, file);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{secs} {sessions} {bytes} {}",
            slawatch::service::peak_rss_kb()
        );
        return;
    }
    let mut src = LinesSource::open(file).unwrap();
    let (records, bytes) = match mode {
        "read" => {
            let mut n = 0u64;
            while src.next_record().unwrap().is_some() {
                n += 1;
            }
            (n, src.bytes_read())
        }
        "parse" => {
            let mut n = 0u64;
            while let Some(r) = src.next_record().unwrap() {
                let v: serde_json::Value = serde_json::from_slice(&r.bytes).unwrap();
                std::hint::black_box(v);
                n += 1;
            }
            (n, src.bytes_read())
        }
        "decode" => {
            // The pipeline's own decoder (typed, catalog lookups), without windows.
            let decoder = Decoder::new(Arc::new(Catalog::embedded()));
            let mut n = 0u64;
            while let Some(r) = src.next_record().unwrap() {
                std::hint::black_box(decoder.decode(&r.bytes).ok());
                n += 1;
            }
            (n, src.bytes_read())
        }
        "pipeline" | "records" => {
            let report = run_pipeline(&mut src);
            (report.0, report.1)
        }
        other => panic!("unknown mode {other}"),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{secs} {records} {bytes} {}",
        slawatch::service::peak_rss_kb()
    );
}

/// The whole pipeline over span requests: `(sessions accepted, bytes read)`.
fn run_spans(encoding: Encoding, file: &Path) -> (u64, u64) {
    let mut src: Box<dyn Source> = match encoding {
        Encoding::Json => Box::new(LinesSource::open(file).unwrap()),
        Encoding::Protobuf => Box::new(FramedSource::open(file, 1 << 20).unwrap()),
    };
    let specs = slawatch::cli::load_specs(&[spec_dir()]).unwrap();
    let catalog = Arc::new(Catalog::embedded());
    let mut pipeline = Pipeline::new(specs, catalog.clone(), &PipelineConfig::default());
    let config = OtelConfig {
        group_by: GroupBy::Conversation,
        ..OtelConfig::default()
    };
    let path = SpanPath::new(&config, catalog, 0, None, Arc::default()).unwrap();
    let mut input = SpanInput { encoding, path };
    let mut findings = 0u64;
    let report = replay_spans(
        src.as_mut(),
        &mut pipeline,
        &mut DeadLetters::discard(),
        None,
        &mut |_: &slawatch::finding::Finding| {
            findings += 1;
            Ok(())
        },
        &mut input,
    )
    .unwrap();
    std::hint::black_box(findings);
    (report.ingest.accepted, src.bytes_read())
}

fn run_pipeline(src: &mut dyn Source) -> (u64, u64) {
    let specs = slawatch::cli::load_specs(&[spec_dir()]).unwrap();
    let mut pipeline = Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    );
    let mut findings = 0u64;
    let report = replay_stream(
        src,
        &mut pipeline,
        &mut DeadLetters::discard(),
        None,
        &mut |_: &slawatch::finding::Finding| {
            findings += 1;
            Ok(())
        },
    )
    .unwrap();
    std::hint::black_box(findings);
    (report.ingest.records, src.bytes_read())
}

/// `cargo test` runs benches once: check the harness works on a small stream.
fn smoke() {
    let cfg = SimConfig {
        seed: 1,
        max_sessions: Some(20_000),
        sessions_per_hour: RATE_PER_HOUR,
        ..SimConfig::default()
    };
    let mut bytes = Vec::new();
    slawatch::simulate::write_jsonl(&cfg, &mut bytes).unwrap();
    let mut src = LinesSource::new(&bytes[..], "smoke".into());
    let (records, read) = run_pipeline(&mut src);
    assert_eq!(records, 20_000);
    assert_eq!(read, bytes.len() as u64);
    // The span modes on a small stream: every session assembled.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        max_sessions: Some(2_000),
        ..cfg
    };
    for (format, encoding) in [
        (OtelFormat::Json, Encoding::Json),
        (OtelFormat::Proto, Encoding::Protobuf),
    ] {
        let path = dir.path().join(format!("{format:?}"));
        let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
        slawatch::simulate::write_spans(&mut Simulator::new(cfg.clone()).unwrap(), format, &mut w)
            .unwrap();
        drop(w);
        assert_eq!(run_spans(encoding, &path).0, 2_000, "{format:?}");
    }
}
