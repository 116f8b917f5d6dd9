//! `slawatch replay` and `slawatch run`: drive the pipeline over a stream, write findings,
//! dead letters and mail, and print a summary people can read.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::serve::{HistoryWriter, run_origin, start_api};
use super::{InputFormat, PipelineArgs, ReplayArgs, RunArgs, load_catalog, load_specs};
use crate::alerts::{AlertService, MailSettings, Policy};
use crate::evaluate::ObjectiveStats;
use crate::finding::{Clear, Finding, LastSession};
use crate::health::Readiness;
use crate::ingest::{DeadLetters, FramedSource, IngestStats, LinesSource, Source};
use crate::metrics::Metrics;
use crate::otel::{self, Encoding};
use crate::pipeline::{Outcome, Pipeline, PipelineConfig};
use crate::present::fmt_value;
use crate::service::reload::Reloader;
use crate::service::spans::SpanPath;
use crate::spec::model::{Dimension, Severity};
use crate::store::Store;

/// How often a file run moves the history into the store: answers lag at most this much, and
/// each move rewrites the hour and day buckets it touches (a replay covers hours of event time
/// per second, so moving less often writes far less).
const HISTORY_FLUSH: Duration = Duration::from_secs(10);

/// A receiver-only run: when no span has come for this long, the assembler's watermark
/// follows the wall clock (minus the grace).
const SPANS_IDLE: Duration = Duration::from_secs(5);

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub ingest: IngestStats,
    /// Per objective: spec, objective, dimension, statistics.
    pub objectives: Vec<(String, String, Dimension, ObjectiveStats)>,
    pub findings: u64,
    pub elapsed_s: f64,
}

/// Where a replay's output goes: every finding, and (optionally) every clear.
pub trait Sink {
    fn finding(&mut self, f: &Finding) -> Result<()>;
    /// An objective judged without a ticket or page; ignored unless overridden.
    fn clear(&mut self, _c: &Clear) -> Result<()> {
        Ok(())
    }

    /// A key's newest session, as its windows close (before the batch's findings); ignored
    /// unless overridden.
    fn last_session(&mut self, _s: &LastSession) -> Result<()> {
        Ok(())
    }

    /// Sessions that count against an objective, handed out as its windows close; ignored
    /// unless overridden.
    fn affected(&mut self, _batch: crate::forensics::AffectedBatch) -> Result<()> {
        Ok(())
    }

    /// Called after the findings and clears of windows that closed together: the moment to
    /// persist what changed (baselines). Ignored unless overridden.
    fn windows_closed(&mut self, _pipeline: &mut Pipeline) -> Result<()> {
        Ok(())
    }

    /// Called every few thousand records: the moment for periodic work (moving the
    /// operational history into the store). Ignored unless overridden.
    fn tick(&mut self, _pipeline: &mut Pipeline) -> Result<()> {
        Ok(())
    }

    /// Called before each record is processed (configuration reloads). Must be cheap.
    fn before_record(&mut self, _pipeline: &mut Pipeline) {}
    /// Where the run's telemetry goes; a replay without one counts into a throwaway registry.
    fn metrics(&self) -> Option<Arc<Metrics>> {
        None
    }
}

impl<F: FnMut(&Finding) -> Result<()>> Sink for F {
    fn finding(&mut self, f: &Finding) -> Result<()> {
        self(f)
    }
}

/// Runs a whole stream through a pipeline. Findings and clears go to `sink`, in the order the
/// windows closed (clears of a batch after its findings); rejected records go to
/// `dead_letters`.
pub fn replay_stream(
    source: &mut dyn Source,
    pipeline: &mut Pipeline,
    dead_letters: &mut DeadLetters,
    progress: Option<&ProgressBar>,
    sink: &mut dyn Sink,
) -> Result<ReplayReport> {
    drive(source, pipeline, dead_letters, progress, sink, None)
}

/// The span path of a replay: each record of the source is one OTLP `ExportTraceServiceRequest`
/// in `encoding`; its spans go through `path` (the same [`SpanPath`] the receiver and the Kafka
/// loop use), whose sessions go to the pipeline.
pub struct SpanInput {
    pub encoding: Encoding,
    pub path: SpanPath,
}

/// [`replay_stream`] over OTLP span requests instead of session records.
pub fn replay_spans(
    source: &mut dyn Source,
    pipeline: &mut Pipeline,
    dead_letters: &mut DeadLetters,
    progress: Option<&ProgressBar>,
    sink: &mut dyn Sink,
    spans: &mut SpanInput,
) -> Result<ReplayReport> {
    drive(source, pipeline, dead_letters, progress, sink, Some(spans))
}

fn drive(
    source: &mut dyn Source,
    pipeline: &mut Pipeline,
    dead_letters: &mut DeadLetters,
    progress: Option<&ProgressBar>,
    sink: &mut dyn Sink,
    mut spans: Option<&mut SpanInput>,
) -> Result<ReplayReport> {
    let started = Instant::now();
    let mut found = Vec::new();
    let mut findings = 0u64;
    let metrics = sink.metrics().unwrap_or_default();
    while let Some(record) = source.next_record().context("reading the input")? {
        sink.before_record(pipeline);
        metrics.record_consumed();
        match spans.as_deref_mut() {
            None => {
                let outcome = metrics.evaluate(pipeline, |p| p.process(&record, &mut found));
                metrics.record_outcome(&outcome);
                if let Outcome::Rejected {
                    reason,
                    dead_letter: true,
                } = outcome
                {
                    dead_letters
                        .write(&record, &reason)
                        .context("writing a dead letter")?;
                }
            }
            Some(input) => {
                pipeline.count_input(record.bytes.len());
                let at = &record.position;
                match otel::decode_request(&record.bytes, input.encoding) {
                    Ok(decoded) => {
                        (input.path).push(None, decoded, at, pipeline, &mut found, dead_letters)?
                    }
                    Err(reason) => (input.path).reject(
                        reason,
                        record.bytes.clone(),
                        at,
                        pipeline,
                        &mut found,
                        dead_letters,
                    )?,
                };
            }
        }
        // Windows that close clean produce clears but no finding: hand them over at once so
        // incidents resolve on time.
        findings += deliver(&mut found, pipeline, sink, &metrics)?;
        if pipeline.stats().records % 4096 == 0 {
            metrics.set_watermark(pipeline.stream_time());
            if let Some(bar) = progress {
                bar.set_position(source.bytes_read());
            }
            sink.tick(pipeline)?;
        }
    }
    if let Some(input) = spans {
        // End of input: traces with a root complete, the rest are dead-lettered.
        input.path.finish(pipeline, &mut found, dead_letters)?;
        findings += deliver(&mut found, pipeline, sink, &metrics)?;
    }
    metrics.evaluate(pipeline, |p| p.finish(&mut found));
    metrics.set_watermark(pipeline.stream_time());
    findings += deliver(&mut found, pipeline, sink, &metrics)?;
    dead_letters.flush().context("writing dead letters")?;
    Ok(report(pipeline, findings, started))
}

/// The report of a run that has ended.
pub(super) fn report(pipeline: &Pipeline, findings: u64, started: Instant) -> ReplayReport {
    let objectives = pipeline
        .runtimes()
        .iter()
        .flat_map(|rt| {
            let spec = rt.spec();
            rt.stats()
                .iter()
                .zip(&spec.objectives)
                .map(|(st, o)| (spec.name.clone(), o.name.clone(), o.dimension, st.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    ReplayReport {
        ingest: pipeline.stats().clone(),
        objectives,
        findings,
        elapsed_s: started.elapsed().as_secs_f64(),
    }
}

/// Hands a batch of findings, then the clears of the same windows, to the sink; returns how
/// many findings there were.
pub(super) fn deliver(
    found: &mut Vec<Finding>,
    pipeline: &mut Pipeline,
    sink: &mut dyn Sink,
    metrics: &Metrics,
) -> Result<u64> {
    let clears = pipeline.drain_clears();
    let seen = pipeline.drain_last_sessions();
    if found.is_empty() && clears.is_empty() && seen.is_empty() {
        return Ok(0);
    }
    // Which keys still receive sessions first: the findings move the alert engine's time.
    for s in &seen {
        sink.last_session(s)?;
    }
    let n = found.len() as u64;
    for f in found.drain(..) {
        metrics.record_finding(&f);
        sink.finding(&f)?;
    }
    for c in &clears {
        sink.clear(c)?;
    }
    for b in pipeline.drain_affected() {
        sink.affected(b)?;
    }
    sink.windows_closed(pipeline)?;
    Ok(n)
}

fn open_source(input: &Path, args: &PipelineArgs) -> Result<Box<dyn Source>> {
    let stdin = input == Path::new("-");
    let open_err = || format!("opening {}", input.display());
    Ok(match (args.input_format, stdin) {
        (InputFormat::OtlpProto, true) => Box::new(FramedSource::new(
            std::io::stdin(),
            "<stdin>".into(),
            args.max_record_bytes,
        )),
        (InputFormat::OtlpProto, false) => {
            Box::new(FramedSource::open(input, args.max_record_bytes).with_context(open_err)?)
        }
        (_, true) => Box::new(LinesSource::stdin()),
        (_, false) => Box::new(LinesSource::open(input).with_context(open_err)?),
    })
}

/// The span path's input, when `--input-format` names an OTLP encoding: the `otel:` section of
/// the configuration file (defaults without one) and `--emit-sessions`; its rejects counted in
/// `metrics`.
fn span_input(
    args: &PipelineArgs,
    config: Option<&Path>,
    metrics: Arc<Metrics>,
) -> Result<Option<SpanInput>> {
    let encoding = match args.input_format {
        InputFormat::Records => {
            if args.emit_sessions.is_some() {
                anyhow::bail!("--emit-sessions needs --input-format otlp-json or otlp-proto");
            }
            return Ok(None);
        }
        InputFormat::OtlpJson => Encoding::Json,
        InputFormat::OtlpProto => Encoding::Protobuf,
    };
    let otel_config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            super::parse_otel_config(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .unwrap_or_default()
        }
        None => otel::OtelConfig::default(),
    };
    let catalog = load_catalog(args.models.as_ref())?;
    let path = SpanPath::new(
        &otel_config,
        catalog,
        0,
        args.emit_sessions.as_deref(),
        metrics,
    )?;
    Ok(Some(SpanInput { encoding, path }))
}

fn build_pipeline(args: &PipelineArgs) -> Result<Pipeline> {
    let specs = load_specs(&args.specs)?;
    let catalog = load_catalog(args.models.as_ref())?;
    Ok(Pipeline::new(
        specs,
        catalog,
        &PipelineConfig {
            max_record_bytes: args.max_record_bytes,
            ..PipelineConfig::default()
        },
    ))
}

fn progress_bar(input: &Path, hidden: bool) -> Option<ProgressBar> {
    if hidden || input == Path::new("-") || !std::io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(input).ok()?.len();
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .ok()?,
    );
    Some(bar)
}

pub fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    let mut pipeline = build_pipeline(&args.pipeline)?;
    let mut source = open_source(&args.input, &args.pipeline)?;
    let mut spans = span_input(&args.pipeline, args.config.as_deref(), Arc::default())?;
    let mut dead = match &args.pipeline.dead_letters {
        Some(p) => DeadLetters::to_file(p).with_context(|| format!("opening {}", p.display()))?,
        None => DeadLetters::discard(),
    };
    let out = match &args.out {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    // With a data directory, findings and the operational history are kept there too, so a
    // recorded stream can be asked the questions of `slawatch query`.
    let mut keep = None;
    if let Some(dir) = &args.data_dir {
        crate::store::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let store = Arc::new(Store::open(dir)?);
        let writer = HistoryWriter::new(store.clone(), args.history.config()?, HISTORY_FLUSH);
        pipeline = pipeline.with_history(writer.history(run_origin()));
        keep = Some((store, writer));
    }
    let bar = progress_bar(&args.input, args.no_progress);
    let mut sink = ReplaySink { out, keep };
    let report = match &mut spans {
        Some(input) => replay_spans(
            source.as_mut(),
            &mut pipeline,
            &mut dead,
            bar.as_ref(),
            &mut sink,
            input,
        )?,
        None => replay_stream(
            source.as_mut(),
            &mut pipeline,
            &mut dead,
            bar.as_ref(),
            &mut sink,
        )?,
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(mut w) = sink.out {
        w.flush()?;
    }
    if let Some((store, mut writer)) = sink.keep {
        writer.flush(&mut pipeline)?;
        store.flush()?;
    }
    print!(
        "{}",
        render_summary(&report, args.pipeline.dead_letters.as_deref())
    );
    Ok(ExitCode::SUCCESS)
}

/// What `replay` does with the pipeline's output: findings to a file, and with a data
/// directory also to sled along with the operational history.
struct ReplaySink {
    out: Option<BufWriter<File>>,
    keep: Option<(Arc<Store>, HistoryWriter)>,
}

impl Sink for ReplaySink {
    fn finding(&mut self, f: &Finding) -> Result<()> {
        if let Some(w) = &mut self.out {
            serde_json::to_writer(&mut *w, f)?;
            w.write_all(b"\n")?;
        }
        if let Some((store, _)) = &self.keep {
            store.put_finding(f)?;
        }
        Ok(())
    }

    fn tick(&mut self, pipeline: &mut Pipeline) -> Result<()> {
        if let Some((_, writer)) = &mut self.keep {
            writer.maybe_flush(pipeline)?;
        }
        Ok(())
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let mut pipeline = build_pipeline(&args.pipeline)?;
    // `run` reads live traffic: bound event times by the wall clock (a replay reads history).
    pipeline.set_future_skew(args.max_future_skew);
    let mut pipeline =
        pipeline.with_wall_clock(std::sync::Arc::new(crate::alerts::deliver::SystemClock));
    crate::store::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = Arc::new(Store::open(&args.data_dir)?);
    let history = HistoryWriter::new(store.clone(), args.history.config()?, HISTORY_FLUSH);
    pipeline = pipeline.with_history(history.history(run_origin()));
    let specs: Vec<_> = pipeline
        .runtimes()
        .iter()
        .map(|rt| (**rt.spec()).clone())
        .collect();
    let readiness = Arc::new(Readiness::new("restoring state"));
    let metrics = Arc::new(Metrics::new());
    metrics.record_initial_config();
    let reload = super::serve::reloader(args, &specs, metrics.clone())?;
    // `--otlp-http` without `--input`: the receiver is the only input.
    anyhow::ensure!(
        !(args.spans.otlp_http && args.input.is_some()),
        "--otlp-http takes spans as the run's only input, or beside Kafka topics; \
         drop --input (or replay the file separately)"
    );
    anyhow::ensure!(
        args.spans.span_topics.is_empty(),
        "--span-topic needs Kafka brokers (--brokers or the config file)"
    );
    let (intake, requests) = match args.spans.otlp_http {
        true => {
            let (i, r) = crate::service::spans::SpanIntake::channel(args.spans.otlp_max_body);
            (Some(i), Some(r))
        }
        false => (None, None),
    };
    let api = start_api(
        &args.api,
        &args.data_dir,
        store.clone(),
        reload.clone(),
        args.history.config()?,
        readiness.clone(),
        metrics.clone(),
        intake,
    )?;
    let outbox_dir = args.data_dir.join("outbox");
    let mut alerts = open_alerts(args, &store, &specs)?;
    alerts.set_metrics(metrics.clone());
    let dead_path = args
        .pipeline
        .dead_letters
        .clone()
        .unwrap_or_else(|| args.data_dir.join("dead-letters.jsonl"));
    let mut dead = DeadLetters::to_file(&dead_path)
        .with_context(|| format!("opening {}", dead_path.display()))?;
    let input = args.input.clone().unwrap_or_else(|| "-".into());
    // A file or stdin of spans (`--input-format`); the receiver's spans take their own loop.
    let mut spans = match requests {
        Some(_) => None,
        None => span_input(
            &args.pipeline,
            args.kafka.config.as_deref(),
            metrics.clone(),
        )?,
    };
    // Baselines survive restarts: comparisons continue where the last run left off.
    pipeline.restore_baselines(&store.baselines()?);
    let mut sink = RunSink {
        store: &store,
        alerts: &mut alerts,
        new_findings: 0,
        batch_end: None,
        history,
        reload: reload.clone(),
        metrics,
    };
    // State restored, reading begins: the answers grow from here.
    readiness.set_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let report = match requests {
        Some(requests) => {
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            let otel = super::spans::otel_config(args)?;
            let mut path = crate::service::spans::SpanPath::new(
                &otel,
                super::load_catalog(args.pipeline.models.as_ref())?,
                0,
                args.pipeline.emit_sessions.as_deref(),
                sink.metrics.clone(),
            )?;
            super::spans::span_stream(
                &requests,
                &mut path,
                &mut pipeline,
                &mut dead,
                &mut sink,
                &stop,
                (SPANS_IDLE, super::spans::grace_ms(&otel)),
            )?
        }
        None => {
            let mut source = open_source(&input, &args.pipeline)?;
            match &mut spans {
                Some(input) => replay_spans(
                    source.as_mut(),
                    &mut pipeline,
                    &mut dead,
                    None,
                    &mut sink,
                    input,
                )?,
                None => replay_stream(source.as_mut(), &mut pipeline, &mut dead, None, &mut sink)?,
            }
        }
    };
    reload.finish();
    sink.history.flush(&mut pipeline)?;
    let new_findings = sink.new_findings;
    alerts.checkpoint()?;
    let delivery = alerts.drain(std::time::Duration::from_secs(30))?;
    if delivery.pending > 0 {
        eprintln!(
            "warning: {} alert mail(s) not delivered yet; they stay queued in the store and \
             are retried by the next run",
            delivery.pending
        );
    }
    let mailed = alerts.recorded();
    store.flush()?;
    print!("{}", render_summary(&report, Some(&dead_path)));
    println!(
        "state: {} new finding(s) stored in {}; {} alert mail(s) written to {}",
        new_findings,
        args.data_dir.join("state").display(),
        mailed,
        outbox_dir.display()
    );
    if args.api.serve && api.addr().is_some() && !args.spans.otlp_http {
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
        }
        super::serve::serve_until(&stop);
    }
    drop(api);
    Ok(ExitCode::SUCCESS)
}

/// The alert engine of `run`: the policy (`--policy` or the embedded one), SMTP when
/// configured, else the outbox directory.
pub(crate) fn open_alerts(
    args: &RunArgs,
    store: &Store,
    specs: &[crate::spec::Spec],
) -> Result<AlertService> {
    let policy = std::sync::Arc::new(match &args.policy {
        Some(p) => crate::alerts::policy::load_policy(p)?,
        None => Policy::embedded(),
    });
    for problem in policy.check_specs(specs) {
        eprintln!("warning: {problem}");
    }
    let smtp = args.smtp.config()?;
    Ok(AlertService::open_default(
        store,
        policy,
        specs,
        smtp.as_ref(),
        &args.data_dir.join("outbox"),
        MailSettings {
            from: args.smtp.mail_from.clone(),
            fallback_to: args.mail_to.clone(),
        },
    )?)
}

/// What `run` does with the pipeline's output: findings into sled (each once, by id); findings
/// and clears into the alert engine, which advances (and mails) after every batch of closed
/// windows; changed baselines into sled.
struct RunSink<'a> {
    store: &'a Store,
    alerts: &'a mut AlertService,
    new_findings: u64,
    /// Newest window end of the current batch.
    batch_end: Option<i64>,
    history: HistoryWriter,
    reload: Arc<Reloader>,
    metrics: Arc<Metrics>,
}

impl RunSink<'_> {
    fn note(&mut self, window_end: crate::session::EpochMs) {
        self.batch_end = Some(self.batch_end.map_or(window_end, |b| b.max(window_end)));
    }
}

impl Sink for RunSink<'_> {
    fn finding(&mut self, f: &Finding) -> Result<()> {
        // A finding already in the store was produced by an earlier run over the same input:
        // the alert engine saw it then, so it is not fed again.
        if self.store.put_finding(f)? {
            self.new_findings += 1;
            self.alerts.on_finding(f);
        }
        self.note(f.window_end);
        Ok(())
    }

    fn clear(&mut self, c: &Clear) -> Result<()> {
        self.alerts.on_clear(c);
        self.note(c.window_end);
        Ok(())
    }

    fn last_session(&mut self, s: &LastSession) -> Result<()> {
        self.alerts.on_last_session(s);
        Ok(())
    }

    fn affected(&mut self, batch: crate::forensics::AffectedBatch) -> Result<()> {
        Ok(self.alerts.on_affected(batch)?)
    }

    fn windows_closed(&mut self, pipeline: &mut Pipeline) -> Result<()> {
        for b in pipeline.take_dirty_baselines() {
            self.store.put_baseline(&b)?;
        }
        if let Some(t) = self.batch_end {
            self.alerts.advance(t)?;
        }
        Ok(())
    }

    fn tick(&mut self, pipeline: &mut Pipeline) -> Result<()> {
        self.history.maybe_flush(pipeline)
    }

    fn before_record(&mut self, pipeline: &mut Pipeline) {
        if let Some(pending) = self.reload.take() {
            let changes = pipeline.reload(pending.config.specs.clone());
            self.alerts
                .reload(pending.config.policy.clone(), &pending.config.specs);
            let records = pipeline.stats().records;
            self.reload.applied(pending, records, changes);
        }
    }

    fn metrics(&self) -> Option<Arc<Metrics>> {
        Some(self.metrics.clone())
    }
}

/// The human summary: ingest counters, then one line per objective.
pub fn render_summary(r: &ReplayReport, dead_letters: Option<&Path>) -> String {
    let i = &r.ingest;
    let mut s = String::new();
    let rate = i.records as f64 / r.elapsed_s.max(1e-9);
    let _ = writeln!(
        s,
        "Replayed {} records ({:.1} MB) in {:.2} s — {:.0} records/s",
        i.records,
        i.bytes as f64 / 1e6,
        r.elapsed_s,
        rate
    );
    let _ = write!(
        s,
        "  accepted {} · duplicates {} · unmatched {} · rejected {}",
        i.accepted,
        i.duplicates,
        i.unmatched,
        i.rejected_total()
    );
    if !i.rejected.is_empty() {
        let reasons: Vec<String> = i.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = write!(s, " ({})", reasons.join(", "));
    }
    let _ = writeln!(s);
    if let Some(p) = dead_letters.filter(|_| i.rejected_total() > 0) {
        let _ = writeln!(s, "  dead letters: {}", p.display());
    }
    let _ = writeln!(s, "  findings: {}", r.findings);
    let mut current_spec = "";
    for (spec, objective, dim, st) in &r.objectives {
        if spec != current_spec {
            current_spec = spec;
            let _ = writeln!(s, "\nspec {spec}");
            let _ = writeln!(
                s,
                "  {:<18} {:<12} {:>7} {:>5} {:>6} {:>5} {:>6}  worst window",
                "objective", "dimension", "windows", "page", "ticket", "info", "no-data"
            );
        }
        let count = |sev| st.breaches.get(&sev).copied().unwrap_or(0);
        let worst = st.worst.as_ref().map_or_else(
            || "—".to_owned(),
            |f| {
                format!(
                    "{}..{} {}{} {} (target {} {})",
                    &crate::time::format_minute(f.window_start)[..16],
                    &crate::time::format_minute(f.window_end)[11..16],
                    short_key(f),
                    f.segment
                        .as_deref()
                        .map(|x| format!(" [{x}]"))
                        .unwrap_or_default(),
                    fmt_value(f.observed, f.unit),
                    match f.comparator {
                        crate::finding::Comparator::AtMost => "≤",
                        crate::finding::Comparator::AtLeast => "≥",
                    },
                    fmt_value(f.target, f.unit),
                )
            },
        );
        let _ = writeln!(
            s,
            "  {:<18} {:<12} {:>7} {:>5} {:>6} {:>5} {:>6}  {}",
            objective,
            format!("{dim:?}").to_lowercase(),
            st.windows_evaluated,
            count(Severity::Page),
            count(Severity::Ticket),
            count(Severity::Info),
            st.insufficient_data,
            worst
        );
    }
    s
}

fn short_key(f: &Finding) -> String {
    f.key
        .iter()
        .filter(|(k, _)| k != "agent")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("/")
}
