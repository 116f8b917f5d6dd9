//! Criterion benches of the core stages: decode, windowing (observe), evaluation (closing
//! windows), on the contract's sample day (4,800 sessions).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use slawatch::catalog::Catalog;
use slawatch::evaluate::SpecRuntime;
use slawatch::ingest::decode::Decoder;
use slawatch::session::Session;

const SAMPLE: &str = include_str!("../tests/data/sample-sessions.jsonl");

fn spec() -> Arc<slawatch::spec::Spec> {
    let (mut specs, diags) = slawatch::spec::parse_str(
        include_str!("../sla-specs/support-bot.yaml"),
        "sla-specs/support-bot.yaml",
    );
    assert!(!slawatch::spec::has_errors(&diags));
    Arc::new(specs.remove(0))
}

fn sessions(decoder: &Decoder) -> Vec<Session> {
    SAMPLE
        .lines()
        .map(|l| decoder.decode(l.as_bytes()).unwrap())
        .collect()
}

fn decode(c: &mut Criterion) {
    let decoder = Decoder::new(Arc::new(Catalog::embedded()));
    let lines: Vec<&[u8]> = SAMPLE.lines().map(str::as_bytes).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("sample_day", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(decoder.decode(l).unwrap());
            }
        })
    });
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    g.bench_function("sample_day_bytes", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(decoder.decode(l).unwrap());
            }
        })
    });
    // The same sessions in the binary form stage 1 of `partitioned` forwards to stage 2.
    let binary: Vec<Vec<u8>> = sessions(&decoder)
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            slawatch::ingest::binary::encode(s, &mut out);
            out
        })
        .collect();
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("binary_sample_day", |b| {
        b.iter(|| {
            for s in &binary {
                black_box(slawatch::ingest::binary::decode(s).unwrap());
            }
        })
    });
    let decoded = sessions(&decoder);
    g.bench_function("binary_encode_sample_day", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for s in &decoded {
                slawatch::ingest::binary::encode(s, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn windowing(c: &mut Criterion) {
    let decoder = Decoder::new(Arc::new(Catalog::embedded()));
    let sessions = sessions(&decoder);
    let spec = spec();
    let mut g = c.benchmark_group("windowing");
    g.throughput(Throughput::Elements(sessions.len() as u64));
    // Observe every session of a day and advance the watermark after each: the per-record
    // cost of keying, pane updates, timelines, and the evaluation of every window that closes.
    g.bench_function("observe_and_advance_sample_day", |b| {
        b.iter_batched(
            || SpecRuntime::new(spec.clone()),
            |mut rt| {
                let mut findings = 0;
                for s in &sessions {
                    if rt.observe(s).is_ok() {
                        findings += rt.advance(s.event_time).len();
                    }
                }
                black_box(findings)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn evaluation(c: &mut Criterion) {
    let decoder = Decoder::new(Arc::new(Catalog::embedded()));
    let sessions = sessions(&decoder);
    let spec = spec();
    let mut g = c.benchmark_group("evaluation");
    // Close and evaluate every window of a day at once (96 closes x keys x segments x 11
    // objectives).
    g.bench_function("flush_sample_day", |b| {
        b.iter_batched(
            || {
                let mut rt = SpecRuntime::new(spec.clone());
                for s in &sessions {
                    let _ = rt.observe(s);
                }
                rt
            },
            |mut rt| black_box(rt.flush().len()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decode, windowing, evaluation);
criterion_main!(benches);
