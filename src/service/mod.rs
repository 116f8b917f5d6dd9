//! `slawatch run` on Kafka: a consumer-group service that never loses a record, never counts
//! one twice, and never stops because of one.
//!
//! Two topologies: [`partitioned`] (the default; any number of instances) and `single` (this
//! module: one instance evaluates every partition). The discipline below is the same in both.
//!
//! One thread polls the consumer and runs the pipeline synchronously, so a slow evaluation
//! slows consumption instead of growing a queue (librdkafka's prefetch queue is bounded by
//! `queued.max.messages.kbytes`). Delivery is at-least-once with exactly-once *effects*:
//!
//! 1. every record is applied to the pipeline in partition order; its offset is remembered as
//!    *applied* but not committed;
//! 2. a checkpoint — dead letters and findings flushed to Kafka, findings and the alert
//!    engine's state flushed to sled, then the pipeline state's parts that changed since the
//!    last checkpoint ([`crate::checkpoint`]) and the applied offsets appended to the checkpoint
//!    log in one synced record (the *commit point*: a restart resumes past what it covers, so
//!    every output of it is durable before it) — happens every `checkpointInterval` /
//!    `checkpointRecords`, before a partition is revoked, and at shutdown;
//! 3. only then are mails sent and the offsets committed to Kafka.
//!
//! After a crash the state is restored from the last checkpoint and consumption resumes from
//! the committed offsets; a redelivered record at or below a partition's applied offset is
//! skipped, so nothing is counted twice and findings are identical to a run without failure.
//! Findings emitted after the last checkpoint are emitted again with the same ids (consumers of
//! the findings topic drop copies by id).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::finding::{Clear, Finding, LastSession};
use crate::health::Readiness;
use crate::ingest::DeadLetters;
use crate::kafka::{self, KafkaConfig, Polled, RebalanceEvent, SourceContext, Topology};
use crate::metrics::Metrics;
use crate::pipeline::{Outcome, Pipeline, PipelineState};
use crate::store::Store;

pub mod partitioned;
pub mod reload;
pub mod spans;
pub mod tables;
pub mod timing;

use timing::{CheckpointSchedule, EndOfInput, Liveness};

/// What `/readyz` says while no input partition is assigned to this instance.
const WAITING_FOR_ASSIGNMENT: &str = "waiting for partition assignment";
/// How often consumer lag is read (from the consumer's cached watermarks).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How long a run that reached the end of its input waits for its consumers to leave the group.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// How often, at most, the broker is asked whether a finite input has ended everywhere.
const END_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Records the `single` loop applies between two readings of the wall clock.
const BATCH_RECORDS: usize = 1024;

/// What a checkpoint of before incremental checkpoints held, in one CBOR value (still read:
/// an upgraded instance restores from it, and its first checkpoint writes a base of parts).
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    pipeline: PipelineState,
    /// Last applied offset per (topic, partition).
    applied: Vec<((String, i32), i64)>,
    /// The open traces of the span path, so a restart loses no span.
    #[serde(default)]
    assembler: Option<crate::otel::AssemblerState>,
}

/// What a checkpoint holds besides the pipeline's parts ([`crate::checkpoint`]): the shell's
/// own state, written whole with every increment.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    /// Last applied offset per (topic, partition).
    applied: Vec<((String, i32), i64)>,
    /// The open traces of the span path, so a restart loses no span.
    assembler: Option<crate::otel::AssemblerState>,
    /// Which checkpoint of this data directory this is (1, 2, …; 0 before they were counted):
    /// the alert engine's saved state names the checkpoint it was saved for.
    #[serde(default)]
    serial: u64,
}

/// The checkpoint of the `single` topology read back: the pipeline state, the shell's state,
/// and what has been written of the pipeline's parts.
struct Restored {
    pipeline: PipelineState,
    meta: CheckpointMeta,
    tracker: crate::checkpoint::Tracker,
}

/// Reads the checkpoint in the data directory: parts (a base and its increments) or, from an
/// instance of before them, one whole value.
fn read_checkpoint(store: &Store) -> Result<Option<Restored>> {
    use crate::checkpoint::{PartId, Tracker, join};
    if let Some(cp) = store.part_checkpoint()? {
        let parts = cp
            .parts
            .iter()
            .map(|(id, bytes)| Ok((PartId::decode(id)?, &bytes[..])))
            .collect::<Result<Vec<_>, crate::checkpoint::PartError>>()
            .context("reading the checkpoint in the data dir")?;
        let pipeline = join(parts.iter().map(|(id, b)| (id, *b)))
            .context("reading the checkpoint in the data dir")?;
        return Ok(Some(Restored {
            pipeline,
            meta: decode_cbor(&cp.meta).context("reading the checkpoint in the data dir")?,
            tracker: Tracker::from_stored(parts.iter().map(|(id, b)| (id, *b))),
        }));
    }
    let Some(bytes) = store.checkpoint()? else {
        return Ok(None);
    };
    let cp = decode_cbor::<Checkpoint>(&bytes).context("reading the checkpoint in the data dir")?;
    Ok(Some(Restored {
        pipeline: cp.pipeline,
        meta: CheckpointMeta {
            applied: cp.applied,
            assembler: cp.assembler,
            serial: 0,
        },
        // Nothing written in parts yet: the first checkpoint writes them all as a base.
        tracker: Tracker::new(),
    }))
}

/// Writes a checkpoint: the pipeline's parts that changed since `tracker`'s last write (all of
/// them the first time) and `meta`, durably; then `tracker` knows them as written.
fn write_checkpoint(
    store: &Store,
    tracker: &mut crate::checkpoint::Tracker,
    pipeline: &Pipeline,
    meta: &CheckpointMeta,
) -> Result<crate::store::parts::PartWrite> {
    let mut increment = tracker.diff(pipeline);
    let upserts: Vec<(Vec<u8>, Vec<u8>)> = std::mem::take(&mut increment.upserts)
        .into_iter()
        .map(|(id, bytes)| (id.encode(), bytes))
        .collect();
    let deletes: Vec<Vec<u8>> = increment.deletes.iter().map(|id| id.encode()).collect();
    let written = store.put_part_checkpoint(&encode_cbor(meta), &upserts, &deletes)?;
    tracker.written(increment);
    Ok(written)
}

/// The applied offset of (`topic`, `partition`), found by a scan of the few partitions rather
/// than by an owned key: this runs per record.
fn applied_mut<'a>(
    applied: &'a mut BTreeMap<(String, i32), i64>,
    topic: &str,
    partition: i32,
) -> Option<&'a mut i64> {
    (applied.iter_mut())
        .find(|((t, p), _)| *p == partition && t == topic)
        .map(|(_, a)| a)
}

/// CBOR rather than JSON: summaries hold NaN (a missing feature value) and ±∞ (an empty
/// sketch's bounds), which JSON cannot represent.
fn encode_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("checkpoints serialize");
    out
}

fn decode_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    ciborium::from_reader(bytes).map_err(|e| anyhow::anyhow!("invalid checkpoint: {e}"))
}

/// Where the service's findings and clears go besides Kafka (sled, mail).
pub trait Output: Send {
    fn finding(&mut self, f: &Finding) -> Result<()>;
    fn clear(&mut self, _c: &Clear) -> Result<()> {
        Ok(())
    }
    /// A key's newest session, as its windows close (before the batch's findings).
    fn last_session(&mut self, _s: &LastSession) -> Result<()> {
        Ok(())
    }
    /// Sessions that count against an objective, as its windows close.
    fn affected(&mut self, _batch: crate::forensics::AffectedBatch) -> Result<()> {
        Ok(())
    }
    /// After the findings and clears of windows that closed together.
    fn batch_done(&mut self) -> Result<()> {
        Ok(())
    }
    /// Before the commit point of checkpoint `serial` (`single`): the output's own state (the
    /// alert engine's) goes to the store, which is flushed next — ahead of, never behind, the
    /// checkpoint.
    fn persist(&mut self, _serial: u64) -> Result<()> {
        Ok(())
    }
    /// The pipeline resumed from checkpoint `serial` (`single`; 0: from none).
    fn restored(&mut self, _serial: u64) {}
    /// After a checkpoint: everything before it is durable.
    fn checkpointed(&mut self) -> Result<()> {
        Ok(())
    }
    /// A configuration reload (new specs and notification policy).
    fn reload(&mut self, _config: &reload::Config) {}

    // The `partitioned` topology keeps alert state per stage-2 partition, in the partition's
    // snapshot (`partitioned.rs`); an output without alerting ignores these.

    /// Alert state is kept per stage-2 partition from now on.
    fn set_partitioned(&mut self) -> Result<()> {
        Ok(())
    }
    /// What follows (findings, clears, sessions, affected batches, the batch's end) is of
    /// stage-2 partition `p`.
    fn focus(&mut self, _p: i32) -> Result<()> {
        Ok(())
    }
    /// Stage-2 partition `p` is owned here now, with the alert state of its snapshot.
    fn adopt(&mut self, _p: i32, _alerts: Option<crate::alerts::PartAlerts>) -> Result<()> {
        Ok(())
    }
    /// Stage-2 partition `p` went to another member.
    fn release(&mut self, _p: i32) -> Result<()> {
        Ok(())
    }
    /// The alert state of stage-2 partition `p`, for its snapshot.
    fn export(&mut self, _p: i32) -> Result<Option<crate::alerts::PartAlerts>> {
        Ok(None)
    }
    /// Sends the mails decided before the snapshots just made durable; returns the partitions
    /// whose mails changed state (their marks go into a snapshot at once).
    fn deliver_covered(&mut self) -> Result<BTreeSet<i32>> {
        Ok(BTreeSet::new())
    }
}

/// Options of one service run.
pub struct ServiceOptions {
    pub kafka: KafkaConfig,
    /// Stop when every assigned partition has reached its end, evaluating the windows still
    /// open (backfills and tests).
    pub exit_at_eof: bool,
    /// Set by SIGTERM/SIGINT: drain, checkpoint, commit, exit 0.
    pub shutdown: Arc<AtomicBool>,
    /// Shutdown must finish within this.
    pub shutdown_timeout: Duration,
    /// Configuration reloads (SIGHUP, `POST /-/reload`), applied between two records.
    pub reload: Option<Arc<reload::Reloader>>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports: restored, assigned, consuming — or why not.
    pub readiness: Arc<Readiness>,
    /// The span path (`--span-topic`, `--otlp-http`; `single` topology only).
    pub spans: Option<SpanInput>,
}

/// The span inputs of a Kafka run: the assembler, and the OTLP/HTTP receiver's requests.
pub struct SpanInput {
    pub path: spans::SpanPath,
    pub requests: Option<std::sync::mpsc::Receiver<spans::Request>>,
    /// The assembler's grace: an idle advance moves its watermark to now − grace.
    pub grace_ms: i64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceReport {
    pub records: u64,
    /// Records and marks applied from the repartition topic (`partitioned` topology).
    pub repartitioned: u64,
    pub skipped_redelivered: u64,
    pub findings: u64,
    pub dead_letters: u64,
    pub checkpoints: u64,
    pub restored: bool,
    /// Seconds from the first record applied to the end of the run.
    pub consume_seconds: f64,
    /// Peak resident memory of the process, kB (Linux).
    pub peak_rss_kb: u64,
}

struct State {
    pipeline: Pipeline,
    store: Arc<Store>,
    sink: kafka::Sink,
    dead_file: DeadLetters,
    output: Box<dyn Output>,
    applied: BTreeMap<(String, i32), i64>,
    schedule: CheckpointSchedule,
    report: ServiceReport,
    topics: Vec<String>,
    found: Vec<Finding>,
    /// See [`RunState::closing`].
    closing: bool,
    metrics: Arc<Metrics>,
    /// The span path, when the run takes spans.
    spans: Option<spans::SpanPath>,
    span_topics: Vec<String>,
    span_encoding: crate::otel::Encoding,
    /// What has been written of the pipeline's parts: a checkpoint writes what changed since.
    parts: crate::checkpoint::Tracker,
    /// The serial of the last checkpoint written or restored.
    serial: u64,
}

/// Dead letters of the span path in a Kafka run: to the dead-letter topic and file, at the
/// position of the message (or request) the spans came in.
struct KafkaSpanOutputs<'a> {
    sink: &'a kafka::Sink,
    dead_file: &'a mut DeadLetters,
    key: Option<&'a [u8]>,
    report: &'a mut ServiceReport,
}

impl spans::SpanOutputs for KafkaSpanOutputs<'_> {
    fn dead_letter(
        &mut self,
        at: &crate::ingest::Position,
        reason: &crate::ingest::decode::RejectReason,
        raw: &[u8],
    ) -> Result<()> {
        let record = crate::ingest::RawRecord {
            bytes: raw.to_vec(),
            position: at.clone(),
        };
        self.sink.dead_letter(&record, self.key, reason)?;
        self.dead_file.write(&record, reason)?;
        self.report.dead_letters += 1;
        Ok(())
    }
}

impl RunState for State {
    fn closing(&mut self) -> &mut bool {
        &mut self.closing
    }

    fn report(&self) -> &ServiceReport {
        &self.report
    }
}

impl State {
    /// The pipeline's partition number of a (topic, partition).
    fn pid(&self, topic: &str, partition: i32) -> i32 {
        let t = self.topics.iter().position(|x| x == topic).unwrap_or(0) as i32;
        t * 1_000_000 + partition
    }

    fn apply(&mut self, m: &kafka::Record<'_>) -> Result<()> {
        self.metrics.record_consumed();
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let applied = applied_mut(&mut self.applied, topic, partition);
        if applied.as_ref().is_some_and(|a| offset <= **a) {
            // Already reflected in the restored state: a redelivery after a crash.
            self.report.skipped_redelivered += 1;
            return Ok(());
        }
        match applied {
            Some(a) => *a = offset,
            None => {
                self.applied.insert((topic.to_owned(), partition), offset);
            }
        }
        if self.span_topics.iter().any(|t| t == topic) {
            self.apply_spans(m)?;
            self.report.records += 1;
            self.schedule.changed();
            return self.emit();
        }
        // The pipeline counts partitions by number; topics are folded into it.
        let pid = self.pid(topic, partition);
        let payload = m.payload();
        let outcome = (self.metrics).evaluate(&mut self.pipeline, |p| {
            p.process_bytes(payload, pid, &mut self.found)
        });
        self.metrics.record_outcome(&outcome);
        if let Outcome::Rejected {
            reason,
            dead_letter: true,
        } = &outcome
        {
            // Headers name the original partition, not the folded one.
            let original = m.raw();
            self.sink.dead_letter(&original, m.key(), reason)?;
            self.dead_file.write(&original, reason)?;
            self.report.dead_letters += 1;
        }
        self.report.records += 1;
        self.schedule.changed();
        self.emit()
    }

    /// One message of a span topic: one `ExportTraceServiceRequest` into the assembler.
    fn apply_spans(&mut self, m: &kafka::Record<'_>) -> Result<()> {
        let Some(path) = &mut self.spans else {
            return Ok(());
        };
        let original = m.raw();
        let at = &original.position;
        let mut outputs = KafkaSpanOutputs {
            sink: &self.sink,
            dead_file: &mut self.dead_file,
            key: m.key(),
            report: &mut self.report,
        };
        let (pipeline, found) = (&mut self.pipeline, &mut self.found);
        let source = Self::span_source(&self.span_topics, m.topic(), m.partition());
        match crate::otel::decode_request(&original.bytes, self.span_encoding) {
            Ok(spans) => path.push(Some(source), spans, at, pipeline, found, &mut outputs)?,
            Err(reason) => path.reject(
                reason,
                original.bytes.clone(),
                at,
                pipeline,
                found,
                &mut outputs,
            )?,
        };
        Ok(())
    }

    /// One request of the OTLP/HTTP receiver. Its spans live in the assembler (and in the
    /// next checkpoint); HTTP has no redelivery, so what came after the last checkpoint is lost
    /// in a crash.
    fn apply_request(&mut self, request: spans::Request) -> Result<()> {
        let Some(path) = &mut self.spans else {
            return Ok(());
        };
        let mut outputs = KafkaSpanOutputs {
            sink: &self.sink,
            dead_file: &mut self.dead_file,
            key: None,
            report: &mut self.report,
        };
        spans::take_request(
            request,
            Some(crate::otel::RECEIVER_SOURCE),
            path,
            &mut self.pipeline,
            &mut self.found,
            &mut outputs,
        )?;
        self.schedule.changed();
        self.emit()
    }

    /// The assembler's source number of a span partition (span topics folded in as record
    /// topics are in [`State::pid`]).
    fn span_source(span_topics: &[String], topic: &str, partition: i32) -> i32 {
        let t = span_topics.iter().position(|x| x == topic).unwrap_or(0) as i32;
        t * 1_000_000 + partition
    }

    /// A source of the assembler (a span partition, [`State::span_source`], or the receiver)
    /// became idle or active again.
    fn span_source_idle(&mut self, source: i32, idle: bool) -> Result<()> {
        let Some(path) = &mut self.spans else {
            return Ok(());
        };
        let mut outputs = KafkaSpanOutputs {
            sink: &self.sink,
            dead_file: &mut self.dead_file,
            key: None,
            report: &mut self.report,
        };
        path.set_source_idle(
            source,
            idle,
            &mut self.pipeline,
            &mut self.found,
            &mut outputs,
        )?;
        Ok(())
    }

    /// Advances the assembler (idle span inputs) or finishes it (end of input).
    fn spans_advance(&mut self, watermark: Option<i64>) -> Result<()> {
        let Some(path) = &mut self.spans else {
            return Ok(());
        };
        let mut outputs = KafkaSpanOutputs {
            sink: &self.sink,
            dead_file: &mut self.dead_file,
            key: None,
            report: &mut self.report,
        };
        match watermark {
            Some(w) => path.advance(w, &mut self.pipeline, &mut self.found, &mut outputs)?,
            None => path.finish(&mut self.pipeline, &mut self.found, &mut outputs)?,
        };
        self.emit()
    }

    /// Applies a reload between two records; the next checkpoint carries the new state.
    fn reload(&mut self, reloader: &reload::Reloader, pending: reload::Pending) {
        let changes = self.pipeline.reload(pending.config.specs.clone());
        self.output.reload(&pending.config);
        self.schedule.changed();
        reloader.applied(pending, self.report.records, changes);
    }

    fn emit(&mut self) -> Result<()> {
        let clears = self.pipeline.drain_clears();
        let seen = self.pipeline.drain_last_sessions();
        for b in self.pipeline.drain_affected() {
            self.output.affected(b)?;
        }
        deliver(
            &mut self.found,
            &clears,
            &seen,
            &mut self.report,
            &self.sink,
            self.output.as_mut(),
            &self.metrics,
        )
    }

    fn checkpoint(&mut self, consumer: &kafka::Committer<'_>) -> Result<()> {
        let started = Instant::now();
        self.emit()?;
        // Dead letters and findings first: offsets are never committed past a record whose
        // outputs are not delivered.
        self.sink.flush()?;
        self.dead_file.flush()?;
        // The history delta is sealed before the snapshot, so the checkpoint carries it until the
        // store has applied it: a crash in between re-applies it, and the store counts it once.
        self.pipeline.history_seal();
        if let Some(path) = &mut self.spans {
            path.flush()?;
        }
        // Findings and the alert engine's state are durable before the checkpoint's append,
        // its commit point: a crash after the append restores past their windows, which
        // are never closed again, so what sled had not flushed then would be lost for good. (A
        // crash before it restores an older checkpoint and emits those findings again; the
        // engine takes them as ones it has.)
        self.serial += 1;
        self.output.persist(self.serial)?;
        self.store.flush()?;
        // The crash tests' points on either side of the commit point: as a SIGKILL would, with
        // nothing flushed on the way out.
        fail::fail_point!("single-checkpoint-persisted", |_| std::process::abort());
        // Only the parts that changed since the last checkpoint, with the offsets they reflect,
        // in one durable append (or a base of every part, the first time).
        let meta = CheckpointMeta {
            applied: self.applied.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            assembler: self.spans.as_ref().map(|p| p.assembler().snapshot()),
            serial: self.serial,
        };
        let bytes = write_checkpoint(&self.store, &mut self.parts, &self.pipeline, &meta)?.bytes;
        fail::fail_point!("single-checkpoint-appended", |_| std::process::abort());
        // Baselines are in the checkpoint; the copies in sled (for `slawatch baseline` and a
        // start without a checkpoint) follow at the same pace rather than at every window —
        // after the checkpoint, never before: a start from sled for want of a checkpoint would
        // count the sessions after the committed offsets twice.
        for b in self.pipeline.take_dirty_baselines() {
            self.store.put_baseline(&b)?;
        }
        self.store.persist_history(&mut self.pipeline)?;
        self.store.flush()?;
        self.output.checkpointed()?;
        consumer
            .commit(&self.applied)
            .context("committing offsets")?;
        self.schedule.done(Instant::now());
        self.report.checkpoints += 1;
        self.metrics.record_checkpoint(started.elapsed(), bytes);
        self.metrics.set_watermark(self.pipeline.stream_time());
        Ok(())
    }
}

/// Positions of a consumer's assigned partitions, for the lag watcher: (its topics, then
/// (topic, partition, position) of each partition read from).
type Positions = (Vec<String>, Vec<(String, i32, i64)>);

/// Reads high watermarks on a thread of its own (each is a round trip, which the poll loop
/// must not wait for) and reports every partition's lag, high watermark − position, to the
/// metrics. Stops when the service drops its sender.
fn spawn_lag_watcher(cfg: &KafkaConfig, metrics: Arc<Metrics>) -> Result<SyncSender<Positions>> {
    let reader = kafka::Reader::new(cfg).context("creating the lag reader")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Positions>(4);
    std::thread::Builder::new()
        .name("slawatch-lag".into())
        .spawn(move || {
            for (topics, positions) in rx {
                let mut lags = Vec::new();
                for (topic, partition, position) in positions {
                    match reader.high_watermark(&topic, partition) {
                        // (tansu's high watermark can miss the rest of the newest batch: the
                        // lag is then 0 a little early, never negative.)
                        Ok(high) if high >= 0 => lags.push((topic, partition, high - position)),
                        Ok(_) => {}
                        // The broker did not answer: keep the last values.
                        Err(_) => continue,
                    }
                }
                metrics.set_consumer_lags(&topics, &lags);
            }
        })
        .context("starting the lag watcher")?;
    Ok(tx)
}

/// Hands the positions of every partition the consumer has assigned (a local call) to the lag
/// watcher; a partition not read from yet has none. Never blocks: a busy watcher skips a round.
fn report_lag(consumer: &kafka::Consumer, topics: &[String], lag: &SyncSender<Positions>) {
    let positions = (consumer.positions().into_iter())
        .map(|((t, p), o)| (t, p, o))
        .collect();
    let _ = lag.try_send((topics.to_vec(), positions));
}

/// Every partition of the topics, from the broker's metadata (retried until it answers).
fn topic_partitions(
    consumer: &kafka::Consumer,
    topics: &[String],
) -> Result<BTreeSet<(String, i32)>> {
    let mut out = BTreeSet::new();
    for topic in topics {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.partitions(topic, Duration::from_secs(5)) {
                Ok(partitions) if !partitions.is_empty() => {
                    out.extend(partitions.into_iter().map(|p| (topic.clone(), p)));
                    break;
                }
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Ok(_) => anyhow::bail!("topic `{topic}` has no partitions (does it exist?)"),
                Err(e) => return Err(e).context(format!("reading the metadata of `{topic}`")),
            }
        }
    }
    Ok(out)
}

/// Whether every partition of the topics that is not assigned to us has its committed offset
/// at its end (another member finished it).
fn others_done(
    consumer: &kafka::Consumer,
    reader: &kafka::Reader,
    topics: &[String],
    assigned: &BTreeSet<(String, i32)>,
) -> bool {
    let timeout = Duration::from_secs(5);
    for topic in topics {
        let Ok(partitions) = consumer.partitions(topic, timeout) else {
            return false;
        };
        for p in partitions {
            if assigned.contains(&(topic.clone(), p)) {
                continue;
            }
            let Ok(high) = reader.end_offset(topic, p) else {
                return false;
            };
            match consumer.committed(topic, p, timeout) {
                Some(o) if o >= high => {}
                _ if high == 0 => {}
                _ => return false,
            }
        }
    }
    true
}

fn lock<T>(state: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the service until shutdown (or end of input with `exit_at_eof`) in the configured
/// topology.
pub fn run(
    opts: ServiceOptions,
    pipeline: Pipeline,
    store: Arc<Store>,
    dead_file: DeadLetters,
    output: Box<dyn Output>,
) -> Result<ServiceReport> {
    match opts.kafka.topology {
        Topology::Partitioned => {
            anyhow::ensure!(
                opts.spans.is_none(),
                "spans (--span-topic, --otlp-http) need `--topology single`: `partitioned` \
                 routes records by agent, and a trace's agent is known only once one assembler \
                 has seen all of its spans, which may come from any partition"
            );
            partitioned::run(opts, pipeline, store, dead_file, output)
        }
        Topology::Single => run_single(opts, pipeline, store, dead_file, output),
    }
}

/// The `single` topology: this instance consumes every partition and evaluates directly.
fn run_single(
    mut opts: ServiceOptions,
    mut pipeline: Pipeline,
    store: Arc<Store>,
    dead_file: DeadLetters,
    mut output: Box<dyn Output>,
) -> Result<ServiceReport> {
    let mut report = ServiceReport::default();
    let mut applied = BTreeMap::new();
    let mut serial = 0;
    let (mut span_path, span_requests, span_grace_ms) = match opts.spans.take() {
        Some(s) => (Some(s.path), s.requests, s.grace_ms),
        None => (None, None, 0),
    };
    opts.readiness
        .set_not_ready("restoring state from the checkpoint");
    let mut parts = crate::checkpoint::Tracker::new();
    if let Some(cp) = read_checkpoint(&store)? {
        parts = cp.tracker;
        if pipeline.restore(cp.pipeline) {
            applied = cp.meta.applied.into_iter().collect();
            serial = cp.meta.serial;
            if let (Some(path), Some(state)) = (&mut span_path, cp.meta.assembler) {
                path.assembler_mut().restore(state);
            }
            report.restored = true;
            // A history delta sealed by the last checkpoint may not have reached the store.
            store.persist_history(&mut pipeline)?;
            tracing::info!(
                partitions = applied.len(),
                "restored state from the checkpoint"
            );
        } else {
            tracing::warn!(
                "the specs changed since the last checkpoint: starting with fresh state"
            );
        }
    } else {
        pipeline.restore_baselines(&store.baselines()?);
    }
    output.restored(serial);
    let sink = opts
        .kafka
        .producer()
        .context("creating the Kafka producer")?;
    let state = Arc::new(Mutex::new(State {
        pipeline,
        store,
        sink,
        dead_file,
        output,
        applied,
        schedule: CheckpointSchedule::new(
            Duration::from_millis(opts.kafka.checkpoint_interval_ms.max(0) as u64),
            opts.kafka.checkpoint_records,
            Instant::now(),
        ),
        report,
        topics: opts.kafka.topics.clone(),
        found: Vec::new(),
        closing: false,
        metrics: opts.metrics.clone(),
        spans: span_path,
        span_topics: opts.kafka.span_topics.clone(),
        span_encoding: opts.kafka.span_encoding,
        parts,
        serial,
    }));
    let takes_spans = lock(&state).spans.is_some();
    opts.readiness.set_not_ready(WAITING_FOR_ASSIGNMENT);
    let revoke_state = state.clone();
    let context = SourceContext::new(
        Some(Box::new(move |consumer, revoked| {
            // Persist and commit before the partitions go to another member.
            let mut st = lock(&revoke_state);
            if !checkpoint_on_revoke(&mut *st, |st| st.checkpoint(consumer)) {
                return;
            }
            for (topic, p) in revoked {
                let pid = st.pid(topic, *p);
                st.pipeline.drop_partition(pid);
            }
        })),
        None,
    );
    let consumer = opts
        .kafka
        .consumer(context)
        .context("creating the Kafka consumer")?;

    // Every partition of the topics holds the watermark back until it has delivered, reached
    // its end, or stayed quiet (or unassigned) for the idle timeout: after a crash, partitions
    // still held by the dead member come back once its session expires, and their records
    // must not be late by then.
    let all_topics = opts.kafka.input_topics();
    let expected = topic_partitions(&consumer, &all_topics)?;
    let reader = kafka::Reader::new(&opts.kafka).context("creating the Kafka reader")?;
    let is_span_topic = |t: &str| opts.kafka.span_topics.iter().any(|s| s == t);
    // The last span message or request: the wall-clock advance of the assembler waits for
    // the span inputs to be quiet this long.
    let mut last_span_input = Instant::now();
    let mut last_request = last_span_input;
    let mut receiver_idle = false;
    let mut spans_idle = false;
    let mut span_idle: BTreeMap<(String, i32), bool> = BTreeMap::new();
    let idle_after = Duration::from_millis(opts.kafka.idle_timeout_ms.max(0) as u64);
    let mut liveness = Liveness::new(idle_after, opts.exit_at_eof);
    for p in &expected {
        liveness.expect(p.clone(), Instant::now());
    }
    {
        let mut st = lock(&state);
        for (topic, p) in &expected {
            if !is_span_topic(topic) {
                let pid = st.pid(topic, *p);
                st.pipeline.assign_partition(pid);
            }
        }
        // Sessions assembled from spans arrive in a partition of their own. One assembler
        // serves every span partition (the Collector's exporter partitions by trace id or not
        // at all, so a trace may be spread over several): its watermark waits for each of them.
        if takes_spans {
            st.pipeline.assign_partition(spans::SPAN_PARTITION);
            let topics = st.span_topics.clone();
            if let Some(path) = &mut st.spans {
                for (topic, p) in expected.iter().filter(|(t, _)| is_span_topic(t)) {
                    path.assembler_mut()
                        .add_source(State::span_source(&topics, topic, *p));
                }
                // The receiver is one more source: its spans move the watermark as a span
                // partition's do, and it stops holding it back once idle (no request for the
                // idle timeout).
                if span_requests.is_some() {
                    path.assembler_mut()
                        .add_source(crate::otel::RECEIVER_SOURCE);
                }
            }
        }
    }
    let mut end_of_input = EndOfInput::new(END_CHECK_EVERY);
    let mut first_record: Option<Instant> = None;
    let mut last_lag = Instant::now();
    let lag = spawn_lag_watcher(&opts.kafka, opts.metrics.clone())?;
    loop {
        if let Some(deadline) = stopping(&opts) {
            let mut st = lock(&state);
            st.checkpoint(&consumer.committer())?;
            leave(st, [consumer], deadline);
            break;
        }
        // A batch of what the consumer has fetched, under one reading of the clock: the first
        // poll waits for input, the rest take only what is already there. The wall-clock
        // bookkeeping below (idleness, lag, checkpoints) runs once per batch, not per record.
        let mut wait = Duration::from_millis(100);
        let mut now = Instant::now();
        for taken in 0..BATCH_RECORDS {
            let polled = consumer.poll(wait);
            if taken == 0 {
                now = Instant::now();
            }
            wait = Duration::ZERO;
            for ev in consumer.take_events() {
                match ev {
                    RebalanceEvent::Assigned(ps) => {
                        let mut st = lock(&state);
                        for (topic, p) in ps {
                            if !is_span_topic(&topic) {
                                let pid = st.pid(&topic, p);
                                st.pipeline.assign_partition(pid);
                            }
                            liveness.assigned((topic, p), now);
                        }
                    }
                    RebalanceEvent::Revoked(ps) => {
                        for p in ps {
                            liveness.revoked(p, now);
                        }
                    }
                }
            }
            match polled {
                Some(Polled::Record(m)) => {
                    first_record.get_or_insert(now);
                    liveness.record(m.topic(), m.partition(), now);
                    if is_span_topic(m.topic()) {
                        last_span_input = now;
                    }
                    lock(&state).apply(&m)?;
                }
                Some(Polled::End(p)) => {
                    // Every assigned partition of that number (the event names no topic).
                    for tp in expected.iter().filter(|(_, q)| *q == p) {
                        liveness.at_end(tp);
                    }
                    // The partition stops holding the watermark before the next record.
                    break;
                }
                Some(Polled::Failed(e)) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    break;
                }
                None => break,
            }
        }
        opts.readiness
            .set((!liveness.any_assigned()).then_some(WAITING_FOR_ASSIGNMENT));
        if now.saturating_duration_since(last_lag) >= LAG_EVERY {
            last_lag = now;
            report_lag(&consumer, &opts.kafka.topics, &lag);
        }
        let mut st = lock(&state);
        if let Some(r) = &opts.reload
            && let Some(pending) = r.take()
        {
            st.reload(r, pending);
        }
        if let Some(requests) = &span_requests {
            while let Ok(request) = requests.try_recv() {
                last_span_input = Instant::now();
                last_request = last_span_input;
                st.apply_request(request)?;
            }
        }
        // Partitions quiet for the idle timeout (or unassigned that long, or at their end of a
        // finite input) stop holding the watermark.
        let now = Instant::now();
        let mut out = Vec::new();
        let mut all_spans_idle = true;
        for tp in &expected {
            let idle = liveness.is_idle(tp, now);
            if is_span_topic(&tp.0) {
                all_spans_idle &= idle;
                if span_idle.get(tp) != Some(&idle) {
                    span_idle.insert(tp.clone(), idle);
                    let source = State::span_source(&st.span_topics, &tp.0, tp.1);
                    st.span_source_idle(source, idle)?;
                }
                continue;
            }
            let pid = st.pid(&tp.0, tp.1);
            (opts.metrics).evaluate(&mut st.pipeline, |pl| pl.set_idle(pid, idle, &mut out));
        }
        if takes_spans {
            // The span inputs are idle when every span partition is and the receiver has had
            // no request for the idle timeout: nothing older is coming, so the assembler's
            // watermark follows the wall clock and its partition stops holding the stream.
            // Quiet, not merely at their end: a partition at its end has delivered all there is
            // now, but children of open traces may still be on their way; only a wall-clock
            // timeout says they are not.
            if span_requests.is_some() {
                let idle = now.saturating_duration_since(last_request) >= idle_after;
                if idle != receiver_idle {
                    receiver_idle = idle;
                    st.span_source_idle(crate::otel::RECEIVER_SOURCE, idle)?;
                }
            }
            let idle =
                all_spans_idle && now.saturating_duration_since(last_span_input) >= idle_after;
            if idle && !spans_idle {
                st.found.extend(std::mem::take(&mut out));
                st.spans_advance(Some(spans::now_ms() - span_grace_ms))?;
            }
            spans_idle = idle;
            (opts.metrics).evaluate(&mut st.pipeline, |pl| {
                pl.set_idle(spans::SPAN_PARTITION, idle, &mut out)
            });
        }
        st.found.extend(out);
        st.emit()?;
        if st.schedule.due(now, false) {
            st.checkpoint(&consumer.committer())?;
        }
        if opts.exit_at_eof
            && end_of_input.ask(
                now,
                liveness.any_assigned() && liveness.all_assigned_at_end(),
            )
            // End-of-partition events name no topic, so our own partitions are checked
            // against their end offsets too; and the rest of the topics must be done: partitions
            // still held by a member that crashed come back to us after its session times out.
            && {
                let positions = consumer.positions();
                liveness.assigned_partitions().all(|tp| {
                    let next = (st.applied.get(tp).map(|a| a + 1))
                        .max(positions.get(tp).copied())
                        .unwrap_or(0);
                    reader.end_offset(&tp.0, tp.1).is_ok_and(|end| next >= end)
                })
            }
            && others_done(
                &consumer,
                &reader,
                &all_topics,
                &liveness.assigned_partitions().cloned().collect(),
            )
        {
            // End of input: every trace with a root becomes a session first.
            st.spans_advance(None)?;
            let mut out = Vec::new();
            (opts.metrics).evaluate(&mut st.pipeline, |pl| pl.finish(&mut out));
            st.found.extend(out);
            st.checkpoint(&consumer.committer())?;
            report_lag(&consumer, &opts.kafka.topics, &lag);
            leave(st, [consumer], Instant::now() + CLOSE_WITHIN);
            break;
        }
    }
    Ok(final_report(&state, first_record))
}

/// What both loops' states share at the end of a run.
trait RunState {
    /// Set after the final checkpoint: the revokes of closing consumers change nothing (a
    /// commit from inside a consumer's close could hang librdkafka).
    fn closing(&mut self) -> &mut bool;
    fn report(&self) -> &ServiceReport;
}

/// Whether SIGTERM/SIGINT asked the run to stop: then it is not ready any more, and the
/// shutdown must be done by the deadline returned.
fn stopping(opts: &ServiceOptions) -> Option<Instant> {
    if !opts.shutdown.load(Ordering::Relaxed) {
        return None;
    }
    let deadline = Instant::now() + opts.shutdown_timeout;
    opts.readiness.set_not_ready("shutting down");
    Some(deadline)
}

/// Checkpoints (with `checkpoint`, which commits too) before revoked partitions go to another
/// member; false when closing after the final checkpoint, where there is nothing left to do.
fn checkpoint_on_revoke<S: RunState>(
    st: &mut S,
    checkpoint: impl FnOnce(&mut S) -> Result<()>,
) -> bool {
    if *st.closing() {
        return false;
    }
    if let Err(e) = checkpoint(st) {
        tracing::error!(error = %e, "checkpoint on revoke failed; the new owner will reprocess");
    }
    true
}

/// Ends a run after its final checkpoint: marks the state closing, releases it (a close serves
/// the last revokes, which lock it) and has every consumer leave its group, never past
/// `deadline`.
fn leave<S: RunState>(
    mut st: std::sync::MutexGuard<'_, S>,
    consumers: impl IntoIterator<Item = kafka::Consumer>,
    deadline: Instant,
) {
    *st.closing() = true;
    drop(st);
    for consumer in consumers {
        consumer.close(deadline);
    }
}

/// What a run did, once its consumers have left.
fn final_report<S: RunState>(state: &Mutex<S>, first_record: Option<Instant>) -> ServiceReport {
    let mut report = lock(state).report().clone();
    report.consume_seconds = first_record.map_or(0.0, |t| t.elapsed().as_secs_f64());
    report.peak_rss_kb = peak_rss_kb();
    report
}

/// Publishes findings (to Kafka, then to the output) and the clears of windows that closed
/// together.
fn deliver(
    found: &mut Vec<Finding>,
    clears: &[Clear],
    seen: &[LastSession],
    report: &mut ServiceReport,
    sink: &kafka::Sink,
    output: &mut dyn Output,
    metrics: &Metrics,
) -> Result<()> {
    if found.is_empty() && clears.is_empty() && seen.is_empty() {
        return Ok(());
    }
    for s in seen {
        output.last_session(s)?;
    }
    for f in found.drain(..) {
        report.findings += 1;
        metrics.record_finding(&f);
        sink.finding(&f)?;
        output.finding(&f)?;
    }
    for c in clears {
        output.clear(c)?;
    }
    output.batch_done()
}

/// VmHWM of this process from /proc (0 where there is none).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::ingest::LinesSource;
    use crate::ingest::Source;

    fn pipeline() -> Pipeline {
        let (specs, diags) = crate::spec::parse_str(
            include_str!("../../sla-specs/support-bot.yaml"),
            "sla-specs/support-bot.yaml",
        );
        assert!(!crate::spec::has_errors(&diags));
        Pipeline::new(specs, Arc::new(Catalog::embedded()), &Default::default())
    }

    #[derive(Default)]
    struct Loop {
        closing: bool,
        report: ServiceReport,
        checkpoints: u32,
    }

    impl RunState for Loop {
        fn closing(&mut self) -> &mut bool {
            &mut self.closing
        }

        fn report(&self) -> &ServiceReport {
            &self.report
        }
    }

    /// A revoke checkpoints (a failure is logged: the new owner reprocesses) until the final
    /// checkpoint marks the run closing; then the revokes of its close change nothing.
    #[test]
    fn a_revoke_checkpoints_until_the_run_is_closing() {
        let mut st = Loop::default();
        let ok = |st: &mut Loop| {
            st.checkpoints += 1;
            Ok(())
        };
        assert!(checkpoint_on_revoke(&mut st, ok));
        assert!(checkpoint_on_revoke(&mut st, |st: &mut Loop| {
            st.checkpoints += 1;
            anyhow::bail!("the broker is gone")
        }));
        assert_eq!(st.checkpoints, 2);
        st.closing = true;
        assert!(!checkpoint_on_revoke(&mut st, ok));
        assert_eq!(st.checkpoints, 2);
    }

    /// An instance upgraded from whole checkpoints restores its `checkpoint.json`; its first
    /// checkpoint in parts is a base of every part, which supersedes the old file, and later
    /// ones are increments that restore to the same state.
    #[test]
    fn an_old_whole_checkpoint_is_restored_then_superseded_by_parts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lines: Vec<&str> = include_str!("../../tests/data/sample-sessions.jsonl")
            .lines()
            .collect();
        let feed = |p: &mut Pipeline, lines: &[&str]| {
            for l in lines {
                p.process_bytes(l.as_bytes(), 0, &mut Vec::new());
            }
        };
        let mut before = pipeline();
        feed(&mut before, &lines[..2000]);
        let applied = vec![(("t".to_owned(), 0), 1999)];
        store
            .put_checkpoint(&encode_cbor(&Checkpoint {
                pipeline: before.snapshot(),
                applied: applied.clone(),
                assembler: None,
            }))
            .unwrap();
        let old = read_checkpoint(&store)
            .unwrap()
            .expect("the old file is read");
        assert!(old.tracker.is_empty());
        assert_eq!(old.meta.applied, applied);
        let mut p = pipeline();
        assert!(p.restore(old.pipeline));
        let mut tracker = old.tracker;
        let meta = |n: i64| CheckpointMeta {
            applied: vec![(("t".to_owned(), 0), n)],
            assembler: None,
            serial: n as u64,
        };
        let first = write_checkpoint(&store, &mut tracker, &p, &meta(1999)).unwrap();
        assert!(first.base);
        assert!(!dir.path().join("checkpoint.json").exists());
        feed(&mut p, &lines[2000..2100]);
        let second = write_checkpoint(&store, &mut tracker, &p, &meta(2099)).unwrap();
        assert!(
            !second.base && second.bytes * 2 < first.bytes,
            "{second:?} after {first:?}"
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let new = read_checkpoint(&store).unwrap().expect("parts are read");
        assert_eq!(new.meta.applied, meta(2099).applied);
        let mut q = pipeline();
        assert!(q.restore(new.pipeline));
        let mut r = pipeline();
        assert!(r.restore(p.snapshot()));
        crate::checkpoint::tests::same_parts(
            crate::checkpoint::all_parts(&q),
            crate::checkpoint::all_parts(&r),
            2,
        );
    }

    /// A restart from a checkpoint taken half way gives the same findings as no restart, even
    /// when summaries hold NaN (records missing fields) and empty sketches.
    #[test]
    fn a_checkpoint_restores_the_pipeline_exactly() {
        let mut text = String::new();
        for (i, line) in include_str!("../../tests/data/sample-sessions.jsonl")
            .lines()
            .enumerate()
        {
            if i % 7 == 0 {
                // Missing optional fields: NaN feature values, empty sketches.
                let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("usage");
                o.remove("duration_ms");
                o.remove("started_at");
                o.remove("quality");
                text.push_str(&v.to_string());
            } else {
                text.push_str(line);
            }
            text.push('\n');
        }
        let run = |p: &mut Pipeline, src: &mut dyn Source, out: &mut Vec<Finding>| {
            while let Some(r) = src.next_record().unwrap() {
                p.process(&r, out);
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        let (a, b) = lines.split_at(lines.len() / 2);
        let (a, b) = (a.join("\n"), b.join("\n"));

        let mut whole = Vec::new();
        let mut p = pipeline();
        run(
            &mut p,
            &mut LinesSource::new(text.as_bytes(), "t".into()),
            &mut whole,
        );
        p.finish(&mut whole);

        let mut split = Vec::new();
        let mut first = pipeline();
        run(
            &mut first,
            &mut LinesSource::new(a.as_bytes(), "t".into()),
            &mut split,
        );
        let bytes = encode_cbor(&Checkpoint {
            pipeline: first.snapshot(),
            applied: Vec::new(),
            assembler: None,
        });
        drop(first);
        let mut second = pipeline();
        assert!(second.restore(decode_cbor::<Checkpoint>(&bytes).unwrap().pipeline));
        run(
            &mut second,
            &mut LinesSource::new(b.as_bytes(), "t".into()),
            &mut split,
        );
        second.finish(&mut split);
        assert!(whole.len() > 50);
        assert_eq!(split, whole);
    }
}
