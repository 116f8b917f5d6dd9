//! The span inputs of `slawatch run`: the OTLP/HTTP receiver (`--otlp-http`) and Kafka span
//! topics (`--span-topic`), and the loop of a run whose only input is the receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::replay::{ReplayReport, Sink, deliver};
use crate::ingest::DeadLetters;
use crate::otel::{Encoding, OtelConfig};
use crate::pipeline::Pipeline;
use crate::service::spans::{Request, SpanPath, now_ms, take_request};

/// Default `--otlp-max-body`: 8 MiB, compressed or once decompressed.
pub const DEFAULT_OTLP_MAX_BODY: usize = 8 * 1024 * 1024;

/// Span inputs of `run`.
#[derive(Debug, Clone, Args)]
pub struct SpanArgs {
    /// Receive OpenTelemetry spans at `POST /v1/traces` on the API listener (OTLP/HTTP,
    /// protobuf or JSON, gzip). Without `--input`, `--topic` or `--span-topic` the receiver is
    /// the run's only input and it runs until SIGTERM.
    #[arg(long)]
    pub otlp_http: bool,
    /// Largest OTLP/HTTP request body, compressed or once decompressed (413 beyond).
    #[arg(long, default_value_t = DEFAULT_OTLP_MAX_BODY)]
    pub otlp_max_body: usize,
    /// Kafka topic(s) of OpenTelemetry spans, one `ExportTraceServiceRequest` per message (the
    /// OpenTelemetry Collector's Kafka exporter). `single` topology only.
    #[arg(
        long = "span-topic",
        env = "SLAWATCH_SPAN_TOPICS",
        value_delimiter = ','
    )]
    pub span_topics: Vec<String>,
    /// Encoding of the span topics' messages (the Collector Kafka exporter's `encoding`).
    #[arg(long, value_enum, default_value_t = SpanEncoding::OtlpProto)]
    pub span_encoding: SpanEncoding,
}

impl SpanArgs {
    pub fn any(&self) -> bool {
        self.otlp_http || !self.span_topics.is_empty()
    }
}

/// The OpenTelemetry Collector Kafka exporter's trace encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum SpanEncoding {
    OtlpProto,
    OtlpJson,
}

impl SpanEncoding {
    pub fn encoding(self) -> Encoding {
        match self {
            SpanEncoding::OtlpProto => Encoding::Protobuf,
            SpanEncoding::OtlpJson => Encoding::Json,
        }
    }
}

/// Drives the pipeline from the OTLP/HTTP receiver (`(idle, grace_ms)`: the idle advance) until `stop` (SIGTERM/SIGINT): spans are
/// assembled into sessions as they come; when none has come for `idle`, the assembler's
/// watermark follows the wall clock (nothing older is coming); at the end every trace with a
/// root becomes a session and the open windows are evaluated, as at the end of a file.
pub fn span_stream(
    requests: &Receiver<Request>,
    path: &mut SpanPath,
    pipeline: &mut Pipeline,
    dead: &mut DeadLetters,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    (idle, grace_ms): (Duration, i64),
) -> Result<ReplayReport> {
    let started = Instant::now();
    let metrics = sink.metrics().unwrap_or_default();
    let mut found = Vec::new();
    let mut findings = 0u64;
    let mut last_span = Instant::now();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(request) => {
                sink.before_record(pipeline);
                take_request(request, None, path, pipeline, &mut found, dead)?;
                findings += deliver(&mut found, pipeline, sink, &metrics)?;
                last_span = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if last_span.elapsed() >= idle && path.assembler().open_traces() > 0 {
                    path.advance(now_ms() - grace_ms, pipeline, &mut found, dead)?;
                    findings += deliver(&mut found, pipeline, sink, &metrics)?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            metrics.set_watermark(pipeline.stream_time());
            dead.flush().context("writing dead letters")?;
            path.flush()?;
            sink.tick(pipeline)?;
        }
    }
    // Requests already queued are taken before the end.
    while let Ok(request) = requests.try_recv() {
        take_request(request, None, path, pipeline, &mut found, dead)?;
    }
    path.finish(pipeline, &mut found, dead)?;
    metrics.evaluate(pipeline, |p| p.finish(&mut found));
    metrics.set_watermark(pipeline.stream_time());
    findings += deliver(&mut found, pipeline, sink, &metrics)?;
    dead.flush().context("writing dead letters")?;
    Ok(super::replay::report(pipeline, findings, started))
}

/// The `otel:` section of the service configuration (`--config`), or the defaults.
pub fn otel_config(args: &super::RunArgs) -> Result<OtelConfig> {
    let Some(path) = &args.kafka.config else {
        return Ok(OtelConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let otel =
        super::parse_otel_config(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(otel.unwrap_or_default())
}

/// The assembler's grace, ms.
pub fn grace_ms(config: &OtelConfig) -> i64 {
    config.grace_ms
}
