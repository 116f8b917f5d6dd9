//! The command line: arguments parsed into validated options, then one function per command.
//!
//! Everything here is the I/O edge: it reads files, prints, and decides exit codes. The work is
//! done by the pipeline and the pure core.

pub mod alerts;
mod baseline;
mod incident;
pub mod otlp_export;
mod query;
mod replay;
pub mod serve;
mod service;
pub mod spans;
pub use service::{parse_config_file, parse_otel_config};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::catalog::Catalog;
use crate::spec;

pub use replay::{ReplayReport, Sink, SpanInput, replay_spans, replay_stream};

/// slawatch — SLA, drift and governance monitoring for AI agents in production.
#[derive(Debug, Parser)]
#[command(name = "slawatch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr: `text` for people, `json` (one object per line, with fields such
    /// as spec, objective, partition) for a log pipeline. Level: `RUST_LOG` (default warn).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLAWATCH_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr (data goes to stdout). They carry names, counts, offsets and reasons —
/// never a record's content, so never personal data.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check SLA spec files: every error at once, with file:line:col and a hint.
    Validate(ValidateArgs),
    /// Explain what a spec's objectives measure, with its burn-rate table.
    Explain(ExplainArgs),
    /// Run the whole pipeline over a recorded stream and summarise every objective.
    Replay(ReplayArgs),
    /// The service: consume sessions, keep state in sled, send alert mail.
    Run(Box<RunArgs>),
    /// Send one test mail and report which SMTP stage fails.
    SmtpTest(alerts::SmtpTestArgs),
    /// Incident records: list | show ID | affected ID (timeline, onset, attribution, affected sessions).
    Incident(incident::IncidentArgs),
    /// Hold back alert mail for matching incidents: add | list | expire.
    Silence(alerts::SilenceArgs),
    /// Inspect and steer drift baselines: list, show, pin, reset, export.
    Baseline(baseline::BaselineArgs),
    /// Findings stored by `run`, oldest window first, as JSON Lines.
    Findings(FindingsArgs),
    /// Ask the operational questions: latency | slowest | outcomes | changes | cost | pii | status.
    Query(Box<query::QueryArgs>),
    /// Generate a realistic session stream, optionally with injected incidents.
    Simulate(crate::simulate::SimulateArgs),
    /// Print the JSON Schema of specs or policies, for editors with a YAML language server.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which format: `spec` (`kind: AgentSLA`) or `policy` (`kind: NotificationPolicy`).
    pub format: SchemaFormat,
}

/// A format `slawatch schema` describes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaFormat {
    /// SLA specs: `schemas/slawatch-spec.schema.json`.
    Spec,
    /// Notification policies: `schemas/notification-policy.schema.json`.
    Policy,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files or directories of `*.yaml`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Treat warnings (lints) as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A spec file (or directory).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Options shared by the commands that run the pipeline.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Directory (or file) of SLA specs.
    #[arg(long, default_value = "sla-specs")]
    pub specs: Vec<PathBuf>,
    /// Model catalog directory or file (default: the catalog built into the binary).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Rejected records are appended here with their reason and original bytes.
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Records larger than this many bytes are rejected.
    #[arg(long, default_value_t = crate::ingest::decode::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// What the input holds: `records` (session records, JSON Lines), `otlp-json` (one OTLP
    /// JSON ExportTraceServiceRequest per line, the Collector file exporter's format) or
    /// `otlp-proto` (protobuf requests, each a u32 big-endian length then the bytes). Spans
    /// are assembled into sessions as the `otel:` section of the configuration file says
    /// (docs/otel.md).
    #[arg(long, value_enum, default_value = "records")]
    pub input_format: InputFormat,
    /// With span input: write every assembled session here as a contract-v1 record (JSON Lines),
    /// to check the mapping.
    #[arg(long)]
    pub emit_sessions: Option<PathBuf>,
}

/// What a file or stdin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Session records (contract v1), JSON Lines.
    Records,
    /// OTLP JSON `ExportTraceServiceRequest`s, one per line.
    OtlpJson,
    /// Length-delimited OTLP protobuf `ExportTraceServiceRequest`s.
    OtlpProto,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// JSON Lines file of session records, or `-` for stdin.
    pub input: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Write every finding here as JSON Lines.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw a progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Also keep the operational history (and findings) in this state directory, so the
    /// questions of `slawatch query` can be asked of a recorded stream.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub history: serve::HistoryArgs,
    /// Configuration file (`slawatch.yaml`); a replay reads its `otel:` section.
    #[arg(long, env = "SLAWATCH_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// JSON Lines file of session records, or `-` for stdin (the default unless the run takes
    /// spans: `--otlp-http` alone has the receiver as its only input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// State directory: sled store, outbox, dead letters.
    #[arg(long, default_value = "slawatch-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Recipients of on-call mail that no route of the policy sends elsewhere.
    #[arg(long, default_value = "oncall@localhost", env = "SLAWATCH_MAIL_TO")]
    pub mail_to: Vec<String>,
    /// Notification policy (`kind: NotificationPolicy`; default: the embedded one, see
    /// policies/README.md).
    #[arg(long, env = "SLAWATCH_POLICY")]
    pub policy: Option<PathBuf>,
    /// SMTP server; without one, mail is written as `.eml` files to `<data-dir>/outbox`.
    #[command(flatten)]
    pub smtp: alerts::SmtpArgs,
    #[command(flatten)]
    pub kafka: service::KafkaArgs,
    #[command(flatten)]
    pub spans: spans::SpanArgs,
    #[command(flatten)]
    pub api: serve::ApiArgs,
    #[command(flatten)]
    pub history: serve::HistoryArgs,
    /// Records whose event time is more than this ahead of the wall clock are rejected
    /// (reason `future`) and dead-lettered, so one broken producer clock cannot move the
    /// watermark and make every other record late.
    #[arg(long, default_value = "1h", value_parser = parse_skew)]
    pub max_future_skew: i64,
}

fn parse_skew(s: &str) -> Result<i64, String> {
    crate::duration::parse_duration_ms(s).map_err(|e| e.to_string())
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Explain(a) => explain(&a),
        Command::Replay(a) => replay::replay(&a),
        Command::Run(a) => match service::kafka_config(&a.kafka, &a.spans) {
            Ok(Some(kafka)) => service::run_kafka(&a, kafka),
            Ok(None) => replay::run(&a),
            Err(e) => Err(e),
        },
        Command::Baseline(a) => baseline::baseline(&a),
        Command::Findings(a) => findings(&a),
        Command::Query(a) => query::query(&a),
        Command::SmtpTest(a) => alerts::smtp_test(&a),
        Command::Silence(a) => alerts::silence(&a),
        Command::Incident(a) => incident::incident(&a),
        Command::Simulate(a) => match (&a.otlp_endpoint, a.otel) {
            (Some(url), Some(format)) => otlp_export::simulate_to(url, format, &a),
            _ => crate::simulate::run(&a).map(|_| ExitCode::SUCCESS),
        },
        Command::Schema(a) => {
            print!(
                "{}",
                match a.format {
                    SchemaFormat::Spec => spec::format::schema(),
                    SchemaFormat::Policy => crate::alerts::policy::schema(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: &ValidateArgs) -> Result<ExitCode> {
    let (specs, mut diags) = spec::load_paths(&args.paths);
    if args.strict {
        spec::make_strict(&mut diags);
    }
    if !diags.is_empty() {
        eprint!("{}", spec::render_all(&diags));
    }
    if spec::has_errors(&diags) {
        eprintln!("{}", spec::summary(&diags));
        return Ok(ExitCode::FAILURE);
    }
    let objectives: usize = specs.iter().map(|s| s.objectives.len()).sum();
    println!(
        "ok: {} spec(s), {} objective(s){}",
        specs.len(),
        objectives,
        if diags.is_empty() {
            String::new()
        } else {
            format!(", {}", spec::summary(&diags))
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(args: &ExplainArgs) -> Result<ExitCode> {
    let specs = load_specs(&args.paths)?;
    for (i, s) in specs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", spec::explain(s));
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads specs, failing with every diagnostic when any has an error.
pub fn load_specs(paths: &[PathBuf]) -> Result<Vec<spec::Spec>> {
    let (specs, diags) = spec::load_paths(paths);
    if spec::has_errors(&diags) {
        bail!(
            "the specs are not valid:\n{}{}",
            spec::render_all(&diags),
            spec::summary(&diags)
        );
    }
    if specs.is_empty() {
        bail!("no spec found in {paths:?}");
    }
    Ok(specs)
}

/// The model catalog: a directory or file given by the user, or the embedded one.
pub fn load_catalog(path: Option<&PathBuf>) -> Result<Arc<Catalog>> {
    Ok(Arc::new(match path {
        Some(p) => Catalog::load(p).with_context(|| format!("loading the model catalog {p:?}"))?,
        None => Catalog::embedded(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct FindingsArgs {
    /// State directory of `slawatch run`.
    #[arg(long, default_value = "slawatch-data")]
    pub data_dir: PathBuf,
}

/// `slawatch findings`: every stored finding as one JSON line, by window end then id.
fn findings(args: &FindingsArgs) -> Result<ExitCode> {
    use std::io::Write as _;
    let store = crate::store::Store::open(&args.data_dir)
        .with_context(|| format!("opening the state in {}", args.data_dir.display()))?;
    let mut all = store.findings()?;
    all.sort_by(|a, b| (&a.window_end, &a.id).cmp(&(&b.window_end, &b.id)));
    let mut out = std::io::stdout().lock();
    for f in &all {
        serde_json::to_writer(&mut out, f)?;
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}
