//! `slawatch simulate`: command-line options and the runner that writes a stream to a file or
//! stdout.
//!
//! Only translates options into a [`SimConfig`] and streams the result; prints nothing itself
//! (the caller reports the returned [`Stats`]). Never reads the clock.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use anyhow::Context;
use clap::ArgAction;

use super::{
    AgentProfile, DEFAULT_START_MS, IncidentSpec, SimConfig, Simulator, Stats, demo_incidents, pump,
};
use crate::duration::parse_duration_ms;

/// Writes a seeded, realistic agent-session stream (JSON Lines) with injected incidents:
/// the options of `slawatch simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Seed of the random streams: the same seed and options give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Start of the stream (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z", value_parser = parse_start)]
    pub start: i64,

    /// Length of the stream, e.g. 48h, 30m, 2d, 1h30m [default: 24h, 48h with --demo,
    /// unbounded with --sessions].
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<i64>,

    /// Mean sessions per hour (200 ≈ 4800 a day).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Stop after N sessions (duplicates and dirty lines not counted).
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,

    /// Incidents to inject, as `NAME@OFFSET[+DURATION][:key=value,...]` specs.
    #[arg(
        long = "incident",
        value_name = "SPEC",
        help = "Inject an incident: NAME@OFFSET[+DURATION][:key=value,...], e.g. \
                latency-tail@26h+2h, error-burst@10h+1h:fallback_rate=0.1, prompt-change@24h \
                (no +DURATION = permanent). Names: latency-tail, error-burst, pii-leak, \
                cost-spike, prompt-change, model-swap, denied-tool, tool-loop. Repeatable"
    )]
    pub incidents: Vec<IncidentSpec>,

    /// Add the demo incidents, one per dimension across 48 h: error burst at 10h, cost spike at
    /// 20h, prompt change at 24h, latency tail at 26h, PII leak at 30h, model swap at 36h.
    #[arg(long)]
    pub demo: bool,

    /// Agents, as `NAME[:PROMPT_VERSION[:MODEL]]`.
    #[arg(
        long = "agent",
        value_name = "NAME[:PROMPT[:MODEL]]",
        help = "An agent as NAME[:PROMPT_VERSION[:MODEL]] (defaults sp-v1, m-2026-09); \
                repeatable, sessions split evenly [default: support-bot:sp-v1:m-2026-09 on \
                acme-llm]"
    )]
    pub agents: Vec<String>,

    /// Fraction of records delivered 15 s – 5 min late, out of ended_at order.
    #[arg(long, default_value_t = 0.01)]
    pub late_fraction: f64,

    /// Fraction of records delivered twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_fraction: f64,

    /// Fraction of sessions followed by a malformed line (every kind, oversized ones capped at 2).
    #[arg(long, default_value_t = 0.0)]
    pub dirty_fraction: f64,

    /// Fraction of records without usage.cost_usd (derived from the model catalog instead).
    #[arg(long, default_value_t = 0.1)]
    pub omit_cost_fraction: f64,

    /// Gentle day/night modulation of the rate (±30 %, peak 15:00 UTC).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub diurnal: bool,

    /// Output file [default: stdout].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Publish to Kafka instead (bootstrap servers), keyed by session id.
    #[arg(long, requires = "topic")]
    pub brokers: Option<String>,
    /// Topic to publish to (with --brokers).
    #[arg(long)]
    pub topic: Option<String>,
    /// At most this many records per second when publishing (default: as fast as possible).
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Write the sessions as OpenTelemetry GenAI spans instead of session records: one OTLP
    /// `ExportTraceServiceRequest` per session, `json` one per line (the Collector file
    /// exporter's format), `proto` length-delimited (u32 big-endian length, then the bytes).
    /// Malformed (`--dirty-fraction`) records have no span form and are left out. With
    /// `--brokers`/`--topic`: one request per Kafka message (the Collector Kafka exporter's
    /// `otlp_json`/`otlp_proto`).
    #[arg(long, value_enum)]
    pub otel: Option<OtelFormat>,
    /// With `--otel`: post the spans to this OTLP/HTTP endpoint (e.g.
    /// `http://127.0.0.1:8632/v1/traces`, the receiver of `slawatch run --otlp-http`) instead
    /// of writing them, retrying `429`/`503` after the server's `Retry-After`.
    #[arg(long, requires = "otel", conflicts_with_all = ["brokers", "out"])]
    pub otlp_endpoint: Option<String>,
    /// With `--otlp-endpoint`: sessions per request (an SDK's batch span processor sends the
    /// spans of many traces in one request).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub otlp_batch: u64,
}

/// The span encodings of `simulate --otel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtelFormat {
    Json,
    Proto,
}

impl OtelFormat {
    pub fn encoding(self) -> crate::otel::Encoding {
        match self {
            OtelFormat::Json => crate::otel::Encoding::Json,
            OtelFormat::Proto => crate::otel::Encoding::Protobuf,
        }
    }
}

/// The simulated sessions as OTLP span requests, one per session, in stream order. Records the
/// decoder rejects (the dirty ones) have no span form and are skipped.
pub fn span_requests(
    sim: &mut Simulator,
    encoding: crate::otel::Encoding,
) -> impl Iterator<Item = Vec<u8>> + '_ {
    span_batches(sim, encoding, 1)
}

/// [`span_requests`] with the spans of `batch` sessions per request.
pub fn span_batches(
    sim: &mut Simulator,
    encoding: crate::otel::Encoding,
    batch: usize,
) -> impl Iterator<Item = Vec<u8>> + '_ {
    let decoder = crate::ingest::decode::Decoder::new(std::sync::Arc::new(
        crate::catalog::Catalog::embedded(),
    ));
    let options = crate::otel::EncodeOptions::default();
    let mut line = Vec::new();
    let mut sessions = Vec::with_capacity(batch);
    std::iter::from_fn(move || {
        sessions.clear();
        while sessions.len() < batch {
            line.clear();
            if !sim.write_next(&mut line) {
                break;
            }
            if let Ok(session) = decoder.decode(&line) {
                sessions.push(session);
            }
        }
        (!sessions.is_empty()).then(|| crate::otel::encode_request(&sessions, encoding, &options))
    })
}

/// Writes the simulated sessions as span requests, framed for a file (see `--otel`).
pub fn write_spans(
    sim: &mut Simulator,
    format: OtelFormat,
    w: &mut impl io::Write,
) -> io::Result<()> {
    for request in span_requests(sim, format.encoding()) {
        match format {
            OtelFormat::Json => {
                w.write_all(&request)?;
                w.write_all(b"\n")?;
            }
            OtelFormat::Proto => {
                let len = u32::try_from(request.len()).map_err(io::Error::other)?;
                w.write_all(&len.to_be_bytes())?;
                w.write_all(&request)?;
            }
        }
    }
    w.flush()
}

fn parse_start(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected an RFC 3339 time like 2026-11-01T00:00:00Z: {e}"))
}

fn parse_duration_arg(s: &str) -> Result<i64, String> {
    parse_duration_ms(s).map_err(|e| e.to_string())
}

impl Default for SimulateArgs {
    /// The CLI defaults.
    fn default() -> SimulateArgs {
        SimulateArgs {
            seed: 1,
            start: DEFAULT_START_MS,
            duration: None,
            rate: 200.0,
            sessions: None,
            incidents: Vec::new(),
            demo: false,
            agents: Vec::new(),
            late_fraction: 0.01,
            duplicate_fraction: 0.0,
            dirty_fraction: 0.0,
            omit_cost_fraction: 0.1,
            diurnal: true,
            out: None,
            brokers: None,
            topic: None,
            rate_limit: None,
            otel: None,
            otlp_endpoint: None,
            otlp_batch: 64,
        }
    }
}

impl SimulateArgs {
    /// The simulation these options describe (validated).
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let duration_ms = match (self.duration, self.sessions) {
            (Some(d), _) => d,
            (None, Some(_)) => i64::MAX,
            (None, None) if self.demo => 48 * 3_600_000,
            (None, None) => 24 * 3_600_000,
        };
        let mut agents = Vec::new();
        for spec in &self.agents {
            let mut parts = spec.split(':');
            let name = parts.next().unwrap_or_default();
            let prompt = parts.next().unwrap_or("sp-v1");
            let model = parts.next().unwrap_or("m-2026-09");
            if name.is_empty() || prompt.is_empty() || model.is_empty() || parts.next().is_some() {
                anyhow::bail!("invalid --agent {spec:?}: expected NAME[:PROMPT_VERSION[:MODEL]]");
            }
            agents.push(AgentProfile::new(name, prompt, model));
        }
        if agents.is_empty() {
            agents.push(AgentProfile::default());
        }
        let mut incidents = if self.demo {
            demo_incidents(self.start)
        } else {
            Vec::new()
        };
        incidents.extend(self.incidents.iter().map(|s| s.at(self.start)));
        let cfg = SimConfig {
            seed: self.seed,
            start_ms: self.start,
            duration_ms,
            max_sessions: self.sessions,
            sessions_per_hour: self.rate,
            agents,
            incidents,
            diurnal: self.diurnal,
            late_fraction: self.late_fraction,
            duplicate_fraction: self.duplicate_fraction,
            dirty_fraction: self.dirty_fraction,
            omit_cost_fraction: self.omit_cost_fraction,
            ..SimConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs `slawatch simulate`: writes the stream to `--out` (or stdout) and returns its counts.
/// A closed stdout (`| head`) ends the stream early without error.
pub fn run(args: &SimulateArgs) -> anyhow::Result<Stats> {
    let mut sim = Simulator::new(args.to_config()?)?;
    if let (Some(brokers), Some(topic), Some(format)) = (&args.brokers, &args.topic, args.otel) {
        // One ExportTraceServiceRequest per message, as the Collector's Kafka exporter writes.
        let requests = span_requests(&mut sim, format.encoding());
        crate::kafka::publish_lines(brokers, topic, requests, args.rate_limit)
            .with_context(|| format!("publishing spans to {topic} on {brokers}"))?;
        return Ok(sim.into_stats());
    }
    if let (Some(brokers), Some(topic)) = (&args.brokers, &args.topic) {
        let mut line = Vec::new();
        let lines = std::iter::from_fn(|| {
            line.clear();
            sim.write_next(&mut line).then(|| line.clone())
        });
        crate::kafka::publish_lines(brokers, topic, lines, args.rate_limit)
            .with_context(|| format!("publishing to {topic} on {brokers}"))?;
        return Ok(sim.into_stats());
    }
    if let Some(format) = args.otel {
        let result = match &args.out {
            Some(path) => {
                let file = File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                write_spans(
                    &mut sim,
                    format,
                    &mut BufWriter::with_capacity(1 << 16, file),
                )
                .with_context(|| format!("writing {}", path.display()))
            }
            None => match write_spans(&mut sim, format, &mut io::stdout().lock()) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("writing to stdout"),
            },
        };
        return result.map(|()| sim.into_stats());
    }
    match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            pump(sim, &mut w)
                .map_err(|(e, _)| e)
                .with_context(|| format!("writing {}", path.display()))
        }
        None => match pump(sim, &mut io::stdout().lock()) {
            Ok(stats) => Ok(stats),
            Err((e, stats)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(stats),
            Err((e, _)) => Err(e).context("writing to stdout"),
        },
    }
}
