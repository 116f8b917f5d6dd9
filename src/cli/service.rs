//! `slawatch run` with a Kafka source: configuration from `slawatch.yaml`, environment and
//! flags (flags win), signals, and the outputs of the service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

use super::{RunArgs, load_catalog, load_specs};
use crate::alerts::PartAlerts;
use crate::alerts::deliver::AlertService;
use crate::finding::{Clear, Finding, LastSession};
use crate::health::Readiness;
use crate::ingest::DeadLetters;
use crate::kafka::{KafkaConfig, Topology};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::service::{Output, ServiceOptions};
use crate::store::Store;

/// Kafka options of `slawatch run`; any of them turns the Kafka source on.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Service configuration file (`kafka:` section; see README).
    #[arg(long, env = "SLAWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides the config file).
    #[arg(long, env = "SLAWATCH_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Topic(s) of session records.
    #[arg(long = "topic", env = "SLAWATCH_KAFKA_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Consumer group id.
    #[arg(long = "group", env = "SLAWATCH_KAFKA_GROUP")]
    pub group_id: Option<String>,
    /// Topic for rejected records.
    #[arg(long, env = "SLAWATCH_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Topic for findings.
    #[arg(long, env = "SLAWATCH_FINDINGS_TOPIC")]
    pub findings_topic: Option<String>,
    /// Checkpoint interval, e.g. `2s`.
    #[arg(long)]
    pub checkpoint_interval: Option<String>,
    /// How long a partition must deliver no record before it stops holding the watermark
    /// back, e.g. `30s` (`idleTimeout`).
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Stop when every assigned partition is at its end, evaluating the windows still open.
    #[arg(long)]
    pub exit_at_eof: bool,
    /// How instances share the work: `partitioned` (any number of instances, the findings
    /// of one) or `single` (one instance only, no internal topics).
    #[arg(long, value_enum, env = "SLAWATCH_TOPOLOGY")]
    pub topology: Option<Topology>,
    /// Extra librdkafka properties, `key=value` (repeatable).
    #[arg(long = "kafka-property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("expected key=value, found `{s}`"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    kafka: Option<KafkaConfig>,
    otel: Option<crate::otel::OtelConfig>,
}

/// Parses the text of a service configuration file (`slawatch.yaml`): its `kafka:` section, if
/// any. Pure; the fuzz targets feed untrusted bytes through it.
pub fn parse_config_file(text: &str) -> Result<Option<KafkaConfig>, serde_saphyr::Error> {
    serde_saphyr::from_str::<ConfigFile>(text).map(|file| file.kafka)
}

/// Parses the `otel:` section of a service configuration file (`slawatch.yaml`), if any, with
/// the same positioned errors as the rest of the file. Pure.
pub fn parse_otel_config(
    text: &str,
) -> Result<Option<crate::otel::OtelConfig>, serde_saphyr::Error> {
    serde_saphyr::from_str::<ConfigFile>(text).map(|file| file.otel)
}

/// The Kafka configuration of a run, or `None` for a file/stdin run.
pub fn kafka_config(
    args: &KafkaArgs,
    spans: &super::spans::SpanArgs,
) -> Result<Option<KafkaConfig>> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_config_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => None,
    };
    if let Some(brokers) = &args.brokers {
        cfg.get_or_insert_with(|| KafkaConfig::new(brokers)).brokers = brokers.clone();
    }
    let Some(mut cfg) = cfg else { return Ok(None) };
    if !args.topics.is_empty() {
        cfg.topics = args.topics.clone();
    }
    if !spans.span_topics.is_empty() {
        // With span topics, record topics come from `--topic` only.
        if args.topics.is_empty() {
            cfg.topics.clear();
        }
        cfg.span_topics = spans.span_topics.clone();
        cfg.span_encoding = spans.span_encoding.encoding();
    }
    if let Some(g) = &args.group_id {
        cfg.group_id = g.clone();
    }
    if let Some(t) = &args.dead_letter_topic {
        cfg.dead_letter_topic = Some(t.clone());
    }
    if let Some(t) = &args.findings_topic {
        cfg.findings_topic = Some(t.clone());
    }
    if let Some(i) = &args.checkpoint_interval {
        cfg.checkpoint_interval_ms = crate::duration::parse_duration_ms(i)
            .map_err(|e| anyhow::anyhow!("--checkpoint-interval: {e}"))?;
    }
    if let Some(i) = &args.idle_timeout {
        cfg.idle_timeout_ms = crate::duration::parse_duration_ms(i)
            .map_err(|e| anyhow::anyhow!("--idle-timeout: {e}"))?;
    }
    if let Some(t) = args.topology {
        cfg.topology = t;
    }
    for (k, v) in &args.properties {
        cfg.properties.insert(k.clone(), v.clone());
    }
    anyhow::ensure!(
        cfg.span_topics.is_empty() || cfg.topology == Topology::Single,
        "--span-topic needs `--topology single`: in `partitioned`, stage 1 would have to \
         assemble traces whose spans are spread over partitions; run one `single` instance \
         for the span topics"
    );
    Ok(Some(cfg))
}

/// Findings into sled (each once, by id); findings and clears into the alert engine, which
/// advances with the event time of every batch of closed windows and delivers mail. In the
/// `partitioned` topology the engine is the focused stage-2 partition's, and so is the batch.
struct ServiceOutput {
    store: Arc<Store>,
    alerts: AlertService,
    /// The newest window end of the batch, per stage-2 partition (`None`: `single`).
    batch_end: BTreeMap<Option<i32>, i64>,
    focus: Option<i32>,
    /// `single`: the engine's saved state is of a checkpoint after the one the pipeline
    /// resumed from (see [`Output::finding`]).
    engine_ahead: bool,
}

impl ServiceOutput {
    fn note(&mut self, window_end: crate::session::EpochMs) {
        let b = self.batch_end.entry(self.focus).or_insert(window_end);
        *b = (*b).max(window_end);
    }
}

impl Output for ServiceOutput {
    fn finding(&mut self, f: &Finding) -> Result<()> {
        // `partitioned`: the engine resumes from the snapshot of the stage-2 partition, whose
        // pipeline resumed from the same snapshot, so every finding it hands over is new to
        // that engine — even one this store kept from before a crash, or from an earlier
        // ownership of the partition. `single`: the engine's state is saved for a checkpoint
        // just before that checkpoint's commit point, so it is the restored checkpoint's, and
        // every finding is new to it too (sled flushes in the background: that this store
        // has a finding says nothing of the engine) — unless a crash came between the save
        // and the commit point. Then the engine is one checkpoint ahead, and until the next
        // checkpoint a finding this store has is one the engine has.
        if self.store.put_finding(f)? || !self.engine_ahead {
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

    fn batch_done(&mut self) -> Result<()> {
        if let Some(t) = self.batch_end.get(&self.focus) {
            self.alerts.advance(*t)?;
        }
        Ok(())
    }

    fn persist(&mut self, serial: u64) -> Result<()> {
        if !self.alerts.is_partitioned() {
            self.alerts.checkpoint_for(serial)?;
        }
        Ok(())
    }

    fn restored(&mut self, serial: u64) {
        self.engine_ahead = self.alerts.saved_for() > serial;
        if self.engine_ahead {
            tracing::info!(
                checkpoint = serial,
                engine = self.alerts.saved_for(),
                "the alert engine was saved for a checkpoint that a crash interrupted: \
                 findings stored before it are not fed to it again"
            );
        }
    }

    fn checkpointed(&mut self) -> Result<()> {
        self.engine_ahead = false;
        if self.alerts.is_partitioned() {
            self.alerts.checkpoint()?;
        } else {
            self.alerts.deliver()?;
        }
        Ok(())
    }

    fn reload(&mut self, config: &crate::service::reload::Config) {
        self.alerts.reload(config.policy.clone(), &config.specs);
    }

    fn set_partitioned(&mut self) -> Result<()> {
        Ok(self.alerts.set_partitioned()?)
    }

    fn focus(&mut self, p: i32) -> Result<()> {
        self.focus = Some(p);
        Ok(self.alerts.focus(p)?)
    }

    fn adopt(&mut self, p: i32, alerts: Option<PartAlerts>) -> Result<()> {
        Ok(self.alerts.adopt(p, alerts)?)
    }

    fn release(&mut self, p: i32) -> Result<()> {
        self.batch_end.remove(&Some(p));
        Ok(self.alerts.release(p)?)
    }

    fn export(&mut self, p: i32) -> Result<Option<PartAlerts>> {
        Ok(Some(self.alerts.export(p)?))
    }

    fn deliver_covered(&mut self) -> Result<BTreeSet<i32>> {
        Ok(self.alerts.deliver_covered()?)
    }
}

pub fn run_kafka(args: &RunArgs, kafka: KafkaConfig) -> Result<ExitCode> {
    let specs = load_specs(&args.pipeline.specs)?;
    let catalog = load_catalog(args.pipeline.models.as_ref())?;
    let history = args.history.config()?;
    let pipeline_config = PipelineConfig {
        max_record_bytes: args.pipeline.max_record_bytes,
        max_future_skew_ms: args.max_future_skew,
        ..PipelineConfig::default()
    };
    let clock: Arc<dyn crate::alerts::deliver::Clock> =
        Arc::new(crate::alerts::deliver::SystemClock);
    let mut pipeline = Pipeline::new(specs.clone(), catalog.clone(), &pipeline_config)
        .with_wall_clock(clock.clone());
    let new_history = || crate::history::History::new(history.clone(), super::serve::run_origin());
    // One instance sees every record: its pipeline keeps the history. Several instances each
    // read the input whole into the history instead (`service::tables`), so any answers all.
    let tables_pipeline = match kafka.topology {
        Topology::Single => {
            pipeline = pipeline.with_history(new_history());
            None
        }
        Topology::Partitioned => Some(
            Pipeline::new(Vec::new(), catalog, &pipeline_config)
                .with_wall_clock(clock)
                .with_history(new_history()),
        ),
    };
    crate::store::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = Arc::new(Store::open(&args.data_dir)?);
    let dead_path = args
        .pipeline
        .dead_letters
        .clone()
        .unwrap_or_else(|| args.data_dir.join("dead-letters.jsonl"));
    let dead = DeadLetters::to_file(&dead_path)?;
    let metrics = Arc::new(Metrics::new());
    metrics.record_initial_config();
    let readiness = Arc::new(Readiness::default());
    let mut alerts = super::replay::open_alerts(args, &store, &specs)?;
    alerts.set_metrics(metrics.clone());
    // The API answers from the store while the service fills it.
    let reload = super::serve::reloader(args, &specs, metrics.clone())?;
    let otel = super::spans::otel_config(args)?;
    let (intake, requests) = match args.spans.otlp_http {
        true => {
            let (intake, requests) =
                crate::service::spans::SpanIntake::channel(args.spans.otlp_max_body);
            (Some(intake), Some(requests))
        }
        false => (None, None),
    };
    let spans = match args.spans.any() {
        true => Some(crate::service::SpanInput {
            path: crate::service::spans::SpanPath::new(
                &otel,
                super::load_catalog(args.pipeline.models.as_ref())?,
                crate::service::spans::SPAN_PARTITION,
                args.pipeline.emit_sessions.as_deref(),
                metrics.clone(),
            )?,
            requests,
            grace_ms: super::spans::grace_ms(&otel),
        }),
        false => None,
    };
    let api = super::serve::start_api(
        &args.api,
        &args.data_dir,
        store.clone(),
        reload.clone(),
        history,
        readiness.clone(),
        metrics.clone(),
        intake,
    )?;
    let tables = match tables_pipeline {
        Some(p) => Some(crate::service::tables::GlobalTables::start(
            kafka.clone(),
            store.clone(),
            p,
        )?),
        None => None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handlers")?;
    }
    let report = crate::service::run(
        ServiceOptions {
            kafka,
            exit_at_eof: args.kafka.exit_at_eof,
            shutdown: shutdown.clone(),
            shutdown_timeout: Duration::from_secs(10),
            reload: Some(reload.clone()),
            metrics,
            readiness: readiness.clone(),
            spans,
        },
        pipeline,
        store.clone(),
        dead,
        Box::new(ServiceOutput {
            store: store.clone(),
            alerts,
            batch_end: BTreeMap::new(),
            focus: None,
            engine_ahead: false,
        }),
    )?;
    if args.api.serve && api.addr().is_some() {
        // Input done (`--exit-at-eof`): keep answering, and keep the global tables current with
        // what other instances still publish, until SIGTERM/SIGINT. The answers are complete.
        readiness.set_ready();
        super::serve::serve_until(&shutdown);
    }
    if let Some(t) = tables {
        t.stop()?;
    }
    drop(api);
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_spans() -> crate::cli::spans::SpanArgs {
        crate::cli::spans::SpanArgs {
            otlp_http: false,
            otlp_max_body: 1,
            span_topics: Vec::new(),
            span_encoding: crate::cli::spans::SpanEncoding::OtlpProto,
        }
    }

    #[test]
    fn the_example_config_parses_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slawatch.yaml");
        std::fs::write(&path, include_str!("../../slawatch.example.yaml")).unwrap();
        let args = KafkaArgs {
            config: Some(path),
            brokers: Some("10.0.0.1:9092".into()),
            topics: Vec::new(),
            group_id: Some("other".into()),
            dead_letter_topic: None,
            findings_topic: None,
            checkpoint_interval: Some("500ms".into()),
            idle_timeout: None,
            exit_at_eof: false,
            topology: Some(Topology::Single),
            properties: vec![("client.id".into(), "x".into())],
        };
        let cfg = kafka_config(&args, &no_spans()).unwrap().unwrap();
        assert_eq!(cfg.brokers, "10.0.0.1:9092");
        assert_eq!(cfg.topics, ["agent-sessions"]);
        assert_eq!(cfg.group_id, "other");
        assert_eq!(cfg.dead_letter_topic.as_deref(), Some("agent-sessions.dlq"));
        assert_eq!(cfg.idle_timeout_ms, 30_000);
        assert_eq!(cfg.checkpoint_interval_ms, 500);
        assert_eq!(cfg.properties["queued.max.messages.kbytes"], "65536");
        assert_eq!(cfg.properties["client.id"], "x");
        assert_eq!(cfg.topology, Topology::Single);
        assert_eq!(cfg.repartition_topic_name(), "other.repartition");
    }

    #[test]
    fn no_brokers_anywhere_means_file_input() {
        let args = KafkaArgs {
            config: None,
            brokers: None,
            topics: vec!["t".into()],
            group_id: None,
            dead_letter_topic: None,
            findings_topic: None,
            checkpoint_interval: None,
            idle_timeout: Some("5m".into()),
            exit_at_eof: false,
            topology: None,
            properties: Vec::new(),
        };
        assert!(kafka_config(&args, &no_spans()).unwrap().is_none());
    }
}
