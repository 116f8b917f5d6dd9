//! The `partitioned` topology: any number of `slawatch run` instances in one consumer group
//! produce the findings of one instance (the Kafka Streams repartition pattern).
//!
//! Records arrive keyed by session id, so every window key spans all input partitions. Work is
//! therefore split in two stages, each a consumer group of its own:
//!
//! * **Stage 1** (group `<groupId>`, the input topics): validates each record — rejects go to
//!   the dead letters with their reason — and forwards every record some spec selects, as the
//!   decoded session in a binary form ([`binary`]), to the repartition topic, to partition
//!   `xxh3(agent) mod n` (every window key starts with the agent, so one stage-2 partition sees
//!   all of a key's sessions), batched per (stage-2 partition, source partition) with each
//!   record's source offset (`SessionBatch`; headers name the source topic and partition), so
//!   stage 2 never parses JSON. A record's original bytes travel with it only when stage 2 may
//!   still dead-letter it (late, or from the future: see `State::stage2_may_reject`); for a
//!   rejected record without them stage 2 reads them from the source topic. Batches of the
//!   earlier format (`RecordBatch`, the original JSON bytes) are still read, so instances can
//!   be upgraded one by one. It also sends every stage-2 partition a
//!   *progress mark* per source partition (newest event time, idle) whenever that advances by
//!   a minute of event time (at most every 100 ms while catching up) or turns idle/active, so
//!   stage 2 computes the same watermark — the minimum over source partitions — that a single
//!   instance would. Its offsets are committed once what it forwarded is delivered; it keeps
//!   no other state.
//! * **Stage 2** (group `<groupId>.repartition`, the repartition topic): one [`Pipeline`] per
//!   owned partition. A record is skipped when its source offset is at or below the last one
//!   applied from that source partition (a stage-1 redelivery after a crash or a rebalance).
//!   At a checkpoint each changed partition's state is written to the state topic
//!   ([`StateTopic`]) and, once delivered with the findings and dead letters, the offsets are
//!   committed. A partition assigned to an instance is restored from its newest snapshot, so
//!   state follows the partition from instance to instance.
//!
//! **Alert state moves with the partition.** Each owned stage-2 partition has its own alert
//! engine ([`Output::focus`], [`Output::adopt`], [`Output::release`]), fed after every record
//! as one instance's is, and its snapshot carries that engine, the records of its incidents and
//! its pending and recent mails ([`PartAlerts`]). A mail is sent only after the snapshot
//! holding its decision is durable ([`Output::deliver_covered`]), and the partitions whose
//! mails went out are snapshotted again at once with the sent marks. The guarantee is
//! at-least-once and never lost: the next owner resumes from the newest snapshot, sends what
//! it holds as pending, and decides again (deterministically, in event time, with the same ids)
//! what came after it. A mail repeats only if its sender died (SIGKILL) between the SMTP
//! server's acceptance and the ack of the snapshot marking it, and then with the same
//! `Message-ID`; a clean leave repeats nothing. A group's incidents whose agents route to
//! different partitions get one mail thread per partition (see `AlertEngine`'s `scope`).
//!
//! Findings are identical to the single topology's: windows, lateness and drift families are
//! per key, and a key lives in exactly one stage-2 partition.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::timing::{CheckpointSchedule, EndOfInput, Liveness};
use super::{
    CLOSE_WITHIN, END_CHECK_EVERY, LAG_EVERY, Output, RunState, ServiceOptions, ServiceReport,
    WAITING_FOR_ASSIGNMENT, applied_mut, checkpoint_on_revoke, decode_cbor, deliver, encode_cbor,
    final_report, leave, lock, others_done, report_lag, spawn_lag_watcher, stopping,
    topic_partitions,
};
use crate::alerts::PartAlerts;
use crate::drift::baseline::Baseline;
use crate::finding::Finding;
use crate::ingest::encode::{RecordStyle, encode_record};
use crate::ingest::{DeadLetters, Position, RawRecord, binary};
use crate::kafka::{self, KafkaConfig, Polled, RebalanceEvent, SourceContext, StateTopic};
use crate::metrics::Metrics;
use crate::pipeline::{Outcome, Pipeline, PipelineState};
use crate::session::{EpochMs, Session};
use crate::store::Store;

/// Stage 1 marks a source partition's progress when it moved on by this much event time…
const MARK_TICK_MS: i64 = 60_000;
/// …and at most this often.
const MARK_EVERY: Duration = Duration::from_millis(100);
/// How long stage 1 waits for what it sent before a source's idle marks to be delivered, and
/// for those marks (best effort: see [`State::mark`]).
const MARK_ALONE_WITHIN: Duration = Duration::from_millis(500);
/// Header naming what a repartition-topic message is: `sessions` (a [`SessionBatch`]),
/// `records` (a [`RecordBatch`], written by earlier versions) or `mark`.
const KIND: &str = "slawatch.kind";
const SOURCE_ID: &str = "slawatch.source.id";
const SOURCE_TOPIC: &str = "slawatch.source.topic";
/// Fault injection for tests: while the file this variable names exists, the restore of an
/// assigned stage-2 partition waits (the readiness reason already set), polling every
/// [`HOLD_POLL`]. It lets a test observe `/readyz` during a restore, which otherwise takes
/// milliseconds, without timing anything. Read once at start; unset, nothing waits.
pub const RESTORE_HOLD_ENV: &str = "SLAWATCH_FAILPOINT_RESTORE_HOLD";
const HOLD_POLL: Duration = Duration::from_millis(50);
/// Fault injection for tests: when set (to anything), stage 1 forwards no record's original
/// bytes, so stage 2 reads every one it dead-letters back from the source topic — the path
/// otherwise taken only after an idle source partition or a change of its owner.
pub const NO_ORIGINALS_ENV: &str = "SLAWATCH_FAILPOINT_NO_ORIGINALS";
const SOURCE_PARTITION: &str = "slawatch.source.partition";
/// Stage 1 sends a source partition's records for one stage-2 partition in batches of about
/// this many bytes (fewer, larger messages: the broker's cost is per message).
const BATCH_BYTES: usize = 256 * 1024;

/// The format of a [`SessionBatch`] this build writes and reads.
const SESSIONS_V1: u8 = 1;
/// Bytes before a [`SessionBatch`]'s first record: format version, session layout.
const SESSIONS_HEADER: usize = 9;

/// Records of one source partition for one stage-2 partition, in source order, as stage 1
/// forwards them: the format version (u8, [`SESSIONS_V1`]) and the session layout
/// ([`binary::layout`], u64 LE), then per record its source offset (i64 LE), the length of its
/// original bytes (u32 LE), the length of its binary session (u32 LE), whether the original
/// bytes follow (u8), the session ([`binary`]) and, when they follow, the original bytes.
struct SessionBatch {
    bytes: Vec<u8>,
}

/// One record of a [`SessionBatch`].
struct Forwarded<'a> {
    offset: i64,
    original_len: usize,
    session: &'a [u8],
    original: Option<&'a [u8]>,
}

impl SessionBatch {
    fn new() -> SessionBatch {
        let mut bytes = Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 8);
        bytes.push(SESSIONS_V1);
        bytes.extend_from_slice(&binary::layout().to_le_bytes());
        SessionBatch { bytes }
    }

    fn push(&mut self, offset: i64, original: &[u8], session: &Session, keep_original: bool) {
        self.bytes.extend_from_slice(&offset.to_le_bytes());
        self.bytes
            .extend_from_slice(&(original.len() as u32).to_le_bytes());
        let len_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes.push(u8::from(keep_original));
        let start = self.bytes.len();
        binary::encode(session, &mut self.bytes);
        let len = (self.bytes.len() - start) as u32;
        self.bytes[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        if keep_original {
            self.bytes.extend_from_slice(original);
        }
    }

    /// The format version and layout a batch was written with.
    fn header(bytes: &[u8]) -> Option<(u8, u64)> {
        let layout = u64::from_le_bytes(bytes.get(1..SESSIONS_HEADER)?.try_into().ok()?);
        Some((bytes[0], layout))
    }

    /// The records of a batch (after its header); stops at a truncated frame.
    fn iter(bytes: &[u8]) -> impl Iterator<Item = Forwarded<'_>> {
        let mut bytes = bytes.get(SESSIONS_HEADER..).unwrap_or_default();
        std::iter::from_fn(move || {
            let offset = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
            let original_len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
            let session_len = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
            let kept = *bytes.get(16)? != 0;
            let session = bytes.get(17..17 + session_len)?;
            let mut end = 17 + session_len;
            let original = if kept {
                end += original_len;
                Some(bytes.get(17 + session_len..end)?)
            } else {
                None
            };
            bytes = &bytes[end..];
            Some(Forwarded {
                offset,
                original_len,
                session,
                original,
            })
        })
    }
}

/// Records of one source partition for one stage-2 partition, in source order, as earlier
/// versions forwarded them: each framed as its source offset (i64 LE), length (u32 LE) and
/// original bytes. Still read during an upgrade; no longer written.
struct RecordBatch;

impl RecordBatch {
    /// Appends one record's frame (what earlier versions wrote).
    #[cfg(test)]
    fn push(bytes: &mut Vec<u8>, offset: i64, record: &[u8]) {
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
        bytes.extend_from_slice(record);
    }

    /// The (source offset, record) pairs of a batch; stops at a truncated frame.
    fn iter(mut bytes: &[u8]) -> impl Iterator<Item = (i64, &[u8])> {
        std::iter::from_fn(move || {
            let offset = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
            let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
            let record = bytes.get(12..12 + len)?;
            bytes = &bytes[12 + len..];
            Some((offset, record))
        })
    }
}

/// One record as stage 2 takes it in.
enum Intake<'a> {
    /// A decoded session in its binary form.
    Binary(Forwarded<'a>),
    /// The original JSON (a batch of an earlier version, or of another session layout).
    Json(Cow<'a, [u8]>),
}

/// Reads records back from the source topics, outside any group: the original bytes of a
/// record stage 2 dead-letters when they did not travel with it. Connects on first use.
struct Originals {
    cfg: KafkaConfig,
    reader: Option<kafka::Reader>,
}

impl Originals {
    /// The original bytes of records of a source partition, by offset.
    fn read(
        &mut self,
        topic: &str,
        partition: i32,
        offsets: &[i64],
    ) -> Result<BTreeMap<i64, Vec<u8>>> {
        let (Some(&first), Some(&last)) = (offsets.iter().min(), offsets.iter().max()) else {
            return Ok(BTreeMap::new());
        };
        let reader = match &mut self.reader {
            Some(r) => r,
            None => self
                .reader
                .insert(kafka::Reader::new(&self.cfg).context("creating the Kafka reader")?),
        };
        let wanted: BTreeSet<i64> = offsets.iter().copied().collect();
        Ok(reader
            .read_range(topic, partition, first, (last - first + 1) as usize)?
            .into_iter()
            .filter(|r| wanted.contains(&r.offset))
            .map(|r| (r.offset, r.payload))
            .collect())
    }
}

/// A source partition's progress, as stage 1 reports it to every stage-2 partition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Mark {
    /// The source partition (topic index × 1,000,000 + partition).
    src: i32,
    newest: Option<EpochMs>,
    idle: bool,
}

/// What the state topic holds for one stage-2 partition.
/// (Written with the pipeline borrowed, [`crate::pipeline::PipelineStateRef`]: the same bytes.)
#[derive(Serialize, Deserialize)]
struct PartSnapshot<P = PipelineState> {
    pipeline: P,
    /// Last applied offset of the repartition partition.
    applied: Option<i64>,
    /// Last applied source offset per source partition.
    sources: Vec<(i32, i64)>,
    /// The partition's alert state: engine, incident records, pending and recent mails.
    #[serde(default)]
    alerts: Option<PartAlerts>,
    /// Its windows were flushed at the end of a finite input (`--exit-at-eof`) and nothing was
    /// applied since: a member waits for every partition to be finished before it exits.
    #[serde(default)]
    finished: bool,
}

/// The stage-2 partition an agent's sessions go to.
pub fn route(agent: &str, partitions: i32) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(agent.as_bytes()) % partitions.max(1) as u64) as i32
}

/// One owned stage-2 partition.
struct Part {
    pipeline: Pipeline,
    applied: Option<i64>,
    sources: BTreeMap<i32, i64>,
    dirty: bool,
    snapshot_id: u64,
    /// See [`PartSnapshot::finished`].
    finished: bool,
}

struct State {
    /// Decodes and selects for stage 1; what stage-2 pipelines are made from.
    template: Pipeline,
    store: Arc<Store>,
    sink: kafka::Sink,
    dead_file: DeadLetters,
    output: Box<dyn Output>,
    state_topic: StateTopic,
    repartition: String,
    internal_partitions: i32,
    input_topics: Vec<String>,
    /// Every source partition (folded ids): each holds stage 2's watermark back.
    sources: Vec<i32>,
    // Stage 1.
    input_applied: BTreeMap<(String, i32), i64>,
    newest: BTreeMap<i32, EpochMs>,
    marked: BTreeMap<i32, (Option<EpochMs>, bool, Instant)>,
    /// Records not sent yet, per (stage-2 partition, source partition).
    batches: BTreeMap<(i32, i32), SessionBatch>,
    // Stage 2.
    parts: BTreeMap<i32, Part>,
    found: Vec<Finding>,
    /// Reads the original bytes of a record stage 2 rejects when they did not travel with it
    /// (made on first use: rarely needed).
    originals: Originals,
    /// [`NO_ORIGINALS_ENV`] is set.
    no_originals: bool,
    report: ServiceReport,
    schedule: CheckpointSchedule,
    /// See [`RunState::closing`].
    closing: bool,
    metrics: Arc<Metrics>,
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
    fn pid(&self, topic: &str, partition: i32) -> i32 {
        let t = self
            .input_topics
            .iter()
            .position(|x| x == topic)
            .unwrap_or(0) as i32;
        t * 1_000_000 + partition
    }

    /// Applies a reload between two records: stage 1's selection and every owned stage-2
    /// partition; partitions restored later are built from the new template.
    fn reload(&mut self, reloader: &super::reload::Reloader, pending: super::reload::Pending) {
        let changes = self.template.reload(pending.config.specs.clone());
        for part in self.parts.values_mut() {
            part.pipeline.reload(pending.config.specs.clone());
            part.dirty = true;
        }
        self.output.reload(&pending.config);
        self.schedule.changed();
        reloader.applied(pending, self.report.records, changes);
    }

    /// Whether stage 2 may still dead-letter a selected record of source `pid` — as late or
    /// as from the future —, so its original bytes travel with it. A stage-2 watermark is held
    /// back by each active source partition's newest event time, so a record at or after the
    /// newest one forwarded from its partition, while the partition is marked active, is late
    /// only if the watermark moved on while the partition was idle or an earlier owner of the
    /// partition forwarded newer records: rare, and then stage 2 reads the original from the
    /// source topic. Everything else out of order, the first record after an assignment or an
    /// idle mark, and records ahead of the wall clock keep theirs.
    fn stage2_may_reject(&self, pid: i32, event_time: EpochMs) -> bool {
        if self.no_originals {
            return false;
        }
        let active = matches!(self.marked.get(&pid), Some((_, false, _)));
        let in_order = self.newest.get(&pid).is_some_and(|n| event_time >= *n);
        !(active && in_order) || self.template.ahead_of_clock(event_time)
    }

    /// Stage 1: validate, dead-letter or forward, mark progress.
    fn ingest(&mut self, m: &kafka::Record<'_>) -> Result<()> {
        self.metrics.record_consumed();
        let pid = self.pid(m.topic(), m.partition());
        let payload = m.payload();
        match self.template.decode(payload) {
            Ok(session) => {
                if self.template.selects_any(&session) {
                    let p = route(&session.agent, self.internal_partitions);
                    let keep = self.stage2_may_reject(pid, session.event_time);
                    let batch = self
                        .batches
                        .entry((p, pid))
                        .or_insert_with(SessionBatch::new);
                    batch.push(m.offset(), payload, &session, keep);
                    if batch.bytes.len() >= BATCH_BYTES {
                        self.flush_batch(p, pid)?;
                    }
                } else {
                    // Its story ends here: stage 2 never sees a record no spec selects.
                    self.metrics.record_accepted();
                }
                let n = self.newest.entry(pid).or_insert(session.event_time);
                *n = (*n).max(session.event_time);
                self.mark(pid, false)?;
            }
            Err(reason) => {
                self.metrics.record_rejected(&reason);
                let record = m.raw();
                self.sink.dead_letter(&record, m.key(), &reason)?;
                self.dead_file.write(&record, &reason)?;
                self.report.dead_letters += 1;
            }
        }
        let (topic, partition) = (m.topic(), m.partition());
        match applied_mut(&mut self.input_applied, topic, partition) {
            Some(applied) => *applied = m.offset(),
            None => {
                self.input_applied
                    .insert((topic.to_owned(), partition), m.offset());
            }
        }
        self.report.records += 1;
        self.schedule.changed();
        Ok(())
    }

    /// Sends the records buffered for stage-2 partition `p` from source `pid` as one message.
    fn flush_batch(&mut self, p: i32, pid: i32) -> Result<()> {
        let Some(batch) = self.batches.remove(&(p, pid)) else {
            return Ok(());
        };
        let topic = &self.input_topics[(pid / 1_000_000) as usize];
        let (src, partition) = (pid.to_string(), (pid % 1_000_000).to_string());
        self.sink.send_to(
            &self.repartition,
            p,
            None,
            &batch.bytes,
            &[
                (KIND, "sessions"),
                (SOURCE_ID, &src),
                (SOURCE_TOPIC, topic),
                (SOURCE_PARTITION, &partition),
            ],
        )?;
        Ok(())
    }

    /// Sends every buffered batch (of one source partition, or all).
    fn flush_batches(&mut self, only: Option<i32>) -> Result<()> {
        let keys: Vec<(i32, i32)> = self
            .batches
            .keys()
            .filter(|(_, pid)| only.is_none_or(|o| o == *pid))
            .copied()
            .collect();
        for (p, pid) in keys {
            self.flush_batch(p, pid)?;
        }
        Ok(())
    }

    /// Sends every stage-2 partition the progress of source `pid` when its idleness changed,
    /// or when it moved on by a tick of event time — at most every [`MARK_EVERY`] of wall time
    /// while catching up, so a backfill sends a few marks per second, not one per minute of
    /// history. (A mark only lets windows close; a later one never changes what they hold.)
    fn mark(&mut self, pid: i32, idle: bool) -> Result<()> {
        let newest = self.newest.get(&pid).copied();
        let due = match self.marked.get(&pid) {
            None => newest.is_some() || idle,
            Some(&(last, was_idle, at)) => {
                was_idle != idle
                    || match (newest, last) {
                        (Some(n), Some(l)) => n >= l + MARK_TICK_MS && at.elapsed() >= MARK_EVERY,
                        (Some(_), None) => true,
                        _ => false,
                    }
            }
        };
        if !due {
            return Ok(());
        }
        // A mark covers every record of its source before it: those go first.
        self.flush_batches(Some(pid))?;
        let payload = serde_json::to_vec(&Mark {
            src: pid,
            newest,
            idle,
        })
        .expect("marks serialize");
        // A source going idle may be the last thing written to the repartition partitions for a
        // long time, so its marks go out alone, each the only record of its batch (as far as a
        // short wait allows): tansu's high watermark misses the rest of a partition's newest
        // batch, and a consumer stops there until another batch comes — a mark batched with
        // others would hold stage 2's watermark back until the source's next record.
        let alone = idle && self.marked.get(&pid).is_none_or(|m| !m.1);
        if alone {
            self.sink.flush_within(MARK_ALONE_WITHIN);
        }
        for p in 0..self.internal_partitions {
            self.sink
                .send_to(&self.repartition, p, None, &payload, &[(KIND, "mark")])?;
        }
        if alone {
            self.sink.flush_within(MARK_ALONE_WITHIN);
        }
        self.marked.insert(pid, (newest, idle, Instant::now()));
        // A checkpoint follows, so the exit check (nothing pending) also covers marks.
        self.schedule.changed();
        Ok(())
    }

    /// Stage 2: apply a forwarded record or a progress mark to its partition's pipeline.
    fn evaluate(&mut self, m: &kafka::Record<'_>) -> Result<()> {
        let p = m.partition();
        let Some(part) = self.parts.get_mut(&p) else {
            // Fetched before a revoke and delivered after it: the new owner applies it.
            tracing::debug!(
                partition = p,
                "a message of a partition no longer assigned here"
            );
            return Ok(());
        };
        if part.applied.is_some_and(|a| m.offset() <= a) {
            self.report.skipped_redelivered += 1;
            return Ok(());
        }
        part.applied = Some(m.offset());
        part.dirty = true;
        part.finished = false;
        self.report.repartitioned += 1;
        self.schedule.changed();
        let payload = m.payload();
        if m.header(KIND) == Some("mark") {
            match serde_json::from_slice::<Mark>(payload) {
                Ok(mark) => self.metrics.evaluate(&mut part.pipeline, |p| {
                    p.source_progress(mark.src, mark.newest, mark.idle, &mut self.found)
                }),
                Err(e) => tracing::warn!(error = %e, offset = m.offset(), "an unreadable mark"),
            }
            return self.emit(p);
        }
        let num = |k: &str| m.header(k).and_then(|v| v.parse::<i64>().ok());
        let (Some(src), Some(src_partition)) = (num(SOURCE_ID), num(SOURCE_PARTITION)) else {
            tracing::warn!(
                offset = m.offset(),
                "repartitioned records without their source"
            );
            return Ok(());
        };
        let (src, src_partition) = (src as i32, src_partition as i32);
        let topic = m.header(SOURCE_TOPIC).unwrap_or_default();
        let frames: Vec<(i64, Intake<'_>)> = match m.header(KIND) {
            Some("sessions") => match SessionBatch::header(payload) {
                Some((SESSIONS_V1, layout)) if layout == binary::layout() => {
                    SessionBatch::iter(payload)
                        .map(|f| (f.offset, Intake::Binary(f)))
                        .collect()
                }
                Some((SESSIONS_V1, layout)) => {
                    // Written by a build whose `Session` differs (an upgrade in progress):
                    // decode the originals, read back from the source topic.
                    tracing::info!(
                        layout,
                        ours = binary::layout(),
                        "a batch of another session layout: reading its records from the source"
                    );
                    let offsets: Vec<i64> = SessionBatch::iter(payload).map(|f| f.offset).collect();
                    let mut read = self.originals.read(topic, src_partition, &offsets)?;
                    let mut frames = Vec::with_capacity(offsets.len());
                    for o in offsets {
                        let bytes = read.remove(&o).with_context(|| {
                            format!("record {topic}/{src_partition}@{o} is gone from the source")
                        })?;
                        frames.push((o, Intake::Json(Cow::Owned(bytes))));
                    }
                    frames
                }
                other => anyhow::bail!(
                    "repartition message {}/{}@{} is a batch of format {:?}; this build reads \
                     format {SESSIONS_V1} and JSON batches: run one version on every instance",
                    m.topic(),
                    p,
                    m.offset(),
                    other.map(|(v, _)| v)
                ),
            },
            // An earlier version's batch: the original JSON records.
            _ => RecordBatch::iter(payload)
                .map(|(o, bytes)| (o, Intake::Json(Cow::Borrowed(bytes))))
                .collect(),
        };
        for (src_offset, intake) in frames {
            let part = self.parts.get_mut(&p).expect("looked up above");
            if part.sources.get(&src).is_some_and(|a| src_offset <= *a) {
                // Forwarded again by stage 1 after a crash or rebalance: already applied.
                self.report.skipped_redelivered += 1;
                continue;
            }
            part.sources.insert(src, src_offset);
            let (outcome, original) = match intake {
                Intake::Json(bytes) => {
                    let outcome = (self.metrics).evaluate(&mut part.pipeline, |p| {
                        p.process_bytes(&bytes, src, &mut self.found)
                    });
                    (outcome, Ok(bytes))
                }
                Intake::Binary(f) => {
                    let session = binary::decode(f.session).with_context(|| {
                        format!(
                            "an unreadable session in repartition message {}/{p}@{} \
                             (source {topic}/{src_partition}@{src_offset})",
                            m.topic(),
                            m.offset()
                        )
                    })?;
                    let outcome = (self.metrics).evaluate(&mut part.pipeline, |p| {
                        p.count_input(f.original_len);
                        p.accept(&session, src, &mut self.found)
                    });
                    (outcome, f.original.map(Cow::Borrowed).ok_or(session))
                }
            };
            self.metrics.record_outcome(&outcome);
            if let Outcome::Rejected {
                reason,
                dead_letter: true,
            } = &outcome
            {
                let bytes = match original {
                    Ok(bytes) => bytes.into_owned(),
                    Err(session) => {
                        let read = self.originals.read(topic, src_partition, &[src_offset]);
                        match read.map(|mut r| r.remove(&src_offset)) {
                            Ok(Some(bytes)) => bytes,
                            failed => {
                                // Never lose the dead letter: the session as a record instead.
                                tracing::error!(
                                    error = ?failed.err(),
                                    "cannot read {topic}/{src_partition}@{src_offset} back \
                                     from the source: dead-lettering the decoded session"
                                );
                                encode_record(&session, RecordStyle::Full).into_bytes()
                            }
                        }
                    }
                };
                let record = RawRecord {
                    bytes,
                    position: Position::Kafka {
                        topic: topic.to_owned(),
                        partition: src_partition,
                        offset: src_offset,
                    },
                };
                self.sink.dead_letter(&record, None, reason)?;
                self.dead_file.write(&record, reason)?;
                self.report.dead_letters += 1;
            }
            // After every record, as one instance does: the alert engine advances window close
            // by window close, never over a whole batch's hours of event time at once (it
            // would judge repeats and resolutions at the batch's end).
            self.emit(p)?;
        }
        self.emit(p)
    }

    /// Hands what partition `p`'s pipeline produced to the outputs — to `p`'s alert engine.
    /// (`found` holds only `p`'s findings: it is emitted after every record and mark.)
    fn emit(&mut self, p: i32) -> Result<()> {
        let Some(part) = self.parts.get_mut(&p) else {
            return Ok(());
        };
        let clears = part.pipeline.drain_clears();
        let affected = part.pipeline.drain_affected();
        let seen = part.pipeline.drain_last_sessions();
        if self.found.is_empty() && clears.is_empty() && seen.is_empty() && affected.is_empty() {
            return Ok(());
        }
        self.output.focus(p)?;
        for b in affected {
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

    /// Makes everything applied so far durable: state snapshots of changed stage-2 partitions,
    /// findings, forwarded records and dead letters delivered. Offsets may be committed after.
    fn persist(&mut self) -> Result<()> {
        let checkpoint_started = Instant::now();
        self.flush_batches(None)?;
        let owned: Vec<i32> = self.parts.keys().copied().collect();
        for p in &owned {
            self.emit(*p)?;
        }
        // Findings and dead letters are durable before any snapshot is sent — the producer may
        // deliver one before the flush below, and the snapshots are stage 2's commit point: a
        // partition resumed from them is past the windows they came from, which never close
        // again, so what sled had not flushed then would be lost for good. (A crash before it
        // resumes from older snapshots and emits those findings again, with the same ids; the
        // alert engine resumed with them takes each as new.)
        self.dead_file.flush()?;
        self.store.flush()?;
        let started = Instant::now();
        let mut bytes_written = 0;
        let dirty: Vec<i32> = (self.parts.iter())
            .filter(|(_, part)| part.dirty)
            .map(|(p, _)| *p)
            .collect();
        for p in dirty {
            bytes_written += self.write_snapshot(p)?;
        }
        let encoded = started.elapsed();
        self.sink.flush()?;
        // The crash test's point: as a SIGKILL would, with nothing flushed on the way out.
        fail::fail_point!("partitioned-snapshots-durable", |_| std::process::abort());
        // Baselines are in the snapshots; the copies in sled (for `slawatch baseline` and a
        // partition without a snapshot) follow at the same pace rather than at every window —
        // after the snapshots are durable, never before: a partition restored from sled for want
        // of a snapshot would count the sessions after its committed offsets twice.
        let mut copied = false;
        for part in self.parts.values_mut() {
            for b in part.pipeline.take_dirty_baselines() {
                self.store.put_baseline(&b)?;
                copied = true;
            }
        }
        if copied {
            self.store.flush()?;
        }
        tracing::debug!(
            bytes = bytes_written,
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            stage1 = self.report.records,
            stage2 = self.report.repartitioned,
            "state snapshots written"
        );
        self.output.checkpointed()?;
        // Mail goes out only now, when the snapshots holding the decisions are durable (a
        // decision after the last snapshot is made again by whoever resumes from it). The
        // marks of what was sent go into a snapshot at once, so the next owner of a partition
        // — after a clean leave, or a crash after this point — sends none of it again.
        let marked: Vec<i32> = (self.output.deliver_covered()?.into_iter())
            .filter(|p| self.parts.contains_key(p))
            .collect();
        if !marked.is_empty() {
            for p in &marked {
                bytes_written += self.write_snapshot(*p)?;
            }
            self.sink.flush()?;
            tracing::debug!(partitions = ?marked, "mail marks checkpointed");
        }
        for part in self.parts.values_mut() {
            part.dirty = false;
        }
        self.schedule.done(Instant::now());
        self.report.checkpoints += 1;
        self.metrics
            .record_checkpoint(checkpoint_started.elapsed(), bytes_written as u64);
        let frontier = self
            .parts
            .values()
            .filter_map(|p| p.pipeline.stream_time())
            .min();
        self.metrics.set_watermark(frontier);
        Ok(())
    }

    /// Sends snapshot of stage-2 partition `p` (its pipeline, offsets and alert state) to the
    /// state topic; durable once the sink is flushed. Returns its size.
    fn write_snapshot(&mut self, p: i32) -> Result<usize> {
        let alerts = self.output.export(p)?;
        let part = self.parts.get_mut(&p).expect("an owned partition");
        part.snapshot_id += 1;
        let snapshot = PartSnapshot {
            pipeline: part.pipeline.snapshot_ref(),
            applied: part.applied,
            sources: part.sources.iter().map(|(k, v)| (*k, *v)).collect(),
            alerts,
            finished: part.finished,
        };
        let bytes = encode_cbor(&snapshot);
        tracing::debug!(
            partition = p,
            snapshot = part.snapshot_id,
            bytes = bytes.len(),
            applied = part.applied,
            "writing a stage-2 snapshot"
        );
        self.state_topic
            .write(&self.sink, p, part.snapshot_id, &bytes)?;
        Ok(bytes.len())
    }

    /// A checkpoint of both stages: [`State::persist`], then both consumers' offsets.
    fn checkpoint(&mut self, input: &kafka::Consumer, stage2: &kafka::Consumer) -> Result<()> {
        self.persist()?;
        self.commit_input(&input.committer())?;
        self.commit_parts(&stage2.committer())
    }

    fn commit_input(&self, consumer: &kafka::Committer<'_>) -> Result<()> {
        consumer
            .commit(&self.input_applied)
            .context("committing input offsets")
    }

    fn commit_parts(&self, consumer: &kafka::Committer<'_>) -> Result<()> {
        let applied: BTreeMap<(String, i32), i64> = self
            .parts
            .iter()
            .filter_map(|(p, part)| Some(((self.repartition.clone(), *p), part.applied?)))
            .collect();
        consumer
            .commit(&applied)
            .context("committing repartition offsets")
    }

    /// Whether every stage-2 partition not assigned here was finished by its owner (its newest
    /// snapshot says so) or never received a message.
    fn others_finished(
        &self,
        reader: &kafka::Reader,
        assigned: &BTreeSet<(String, i32)>,
    ) -> Result<bool> {
        for p in 0..self.internal_partitions {
            if assigned.contains(&(self.repartition.clone(), p)) {
                continue;
            }
            let finished = match self.state_topic.read_latest(p)? {
                Some((id, bytes)) => {
                    let snapshot: PartSnapshot = decode_cbor(&bytes).with_context(|| {
                        format!("reading snapshot {id} of {}/{p}", self.state_topic.topic())
                    })?;
                    snapshot.finished
                }
                None => reader
                    .end_offset(&self.repartition, p)
                    .is_ok_and(|end| end == 0),
            };
            if !finished {
                tracing::debug!(
                    partition = p,
                    "waiting for a stage-2 partition to be finished"
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A stage-2 partition from its newest snapshot, or fresh (with the stored baselines of
    /// the agents routed to it), and the alert state its snapshot carries.
    fn load_part(&self, p: i32) -> Result<(Part, Option<PartAlerts>)> {
        let started = Instant::now();
        let mut part = Part {
            pipeline: self.template.fresh(),
            applied: None,
            sources: BTreeMap::new(),
            dirty: false,
            snapshot_id: 0,
            finished: false,
        };
        let mut alerts = None;
        match self.state_topic.read_latest(p)? {
            Some((id, bytes)) => {
                let snapshot: PartSnapshot = decode_cbor(&bytes).with_context(|| {
                    format!("reading snapshot {id} of {}/{p}", self.state_topic.topic())
                })?;
                part.snapshot_id = id;
                tracing::debug!(
                    partition = p,
                    snapshot = id,
                    bytes = bytes.len(),
                    applied = snapshot.applied,
                    incidents = snapshot
                        .alerts
                        .as_ref()
                        .map_or(0, |a| a.incidents().count()),
                    mails = snapshot.alerts.as_ref().map_or(0, |a| a.mails().len()),
                    "restoring a stage-2 partition"
                );
                // Alert state does not depend on the specs (a reload resolves what they drop).
                alerts = snapshot.alerts;
                if part.pipeline.restore(snapshot.pipeline) {
                    part.applied = snapshot.applied;
                    part.finished = snapshot.finished;
                    part.sources = snapshot.sources.into_iter().collect();
                } else {
                    tracing::warn!(
                        partition = p,
                        "the specs changed since the last snapshot: starting with fresh state"
                    );
                }
            }
            None => {
                let own: Vec<Baseline> = self
                    .store
                    .baselines()?
                    .into_iter()
                    .filter(|b| route(&b.key.agent, self.internal_partitions) == p)
                    .collect();
                part.pipeline.restore_baselines(&own);
            }
        }
        for src in &self.sources {
            part.pipeline.assign_partition(*src);
        }
        tracing::debug!(
            partition = p,
            ms = started.elapsed().as_millis() as u64,
            "stage-2 partition ready"
        );
        Ok((part, alerts))
    }
}

/// Runs the partitioned service until shutdown (or end of input with `exit_at_eof`).
pub fn run(
    opts: ServiceOptions,
    template: Pipeline,
    store: Arc<Store>,
    dead_file: DeadLetters,
    output: Box<dyn Output>,
) -> Result<ServiceReport> {
    let cfg = &opts.kafka;
    let repartition = cfg.repartition_topic_name();
    let state_name = cfg.state_topic_name();
    let mut input_partitions = 0;
    for t in &cfg.topics {
        input_partitions += cfg
            .partition_count(t)
            .with_context(|| format!("reading the metadata of `{t}`"))?
            .unwrap_or(0);
    }
    let wanted = cfg.internal_partitions.unwrap_or(input_partitions).max(1);
    let counts = cfg
        .ensure_topics(&[(repartition.clone(), wanted), (state_name.clone(), wanted)])
        .context("creating the internal topics")?;
    anyhow::ensure!(
        counts[0] == counts[1],
        "`{repartition}` has {} partitions but `{state_name}` has {}: they must match",
        counts[0],
        counts[1]
    );
    tracing::info!(
        input_partitions,
        repartition = %repartition,
        partitions = counts[0],
        "partitioned topology: internal topics ready"
    );
    let mut output = output;
    output.set_partitioned()?;
    let sink = cfg.producer().context("creating the Kafka producer")?;
    let state_topic = StateTopic::new(cfg, state_name).context("creating the state reader")?;
    let state = Arc::new(Mutex::new(State {
        template,
        store,
        sink,
        dead_file,
        output,
        state_topic,
        repartition: repartition.clone(),
        internal_partitions: counts[0],
        input_topics: cfg.topics.clone(),
        sources: Vec::new(),
        input_applied: BTreeMap::new(),
        newest: BTreeMap::new(),
        marked: BTreeMap::new(),
        batches: BTreeMap::new(),
        parts: BTreeMap::new(),
        found: Vec::new(),
        originals: Originals {
            cfg: cfg.clone(),
            reader: None,
        },
        no_originals: std::env::var_os(NO_ORIGINALS_ENV).is_some(),
        report: ServiceReport::default(),
        schedule: CheckpointSchedule::new(
            Duration::from_millis(cfg.checkpoint_interval_ms.max(0) as u64),
            cfg.checkpoint_records,
            Instant::now(),
        ),
        closing: false,
        metrics: opts.metrics.clone(),
    }));
    opts.readiness.set_not_ready(WAITING_FOR_ASSIGNMENT);

    let s1_revoke = state.clone();
    let input = cfg
        .consumer_of(
            &cfg.group_id,
            &cfg.topics,
            SourceContext::new(
                Some(Box::new(move |consumer, revoked| {
                    let mut st = lock(&s1_revoke);
                    let checkpoint = |st: &mut State| {
                        st.persist()?;
                        st.commit_input(consumer)
                    };
                    if !checkpoint_on_revoke(&mut *st, checkpoint) {
                        return;
                    }
                    for (topic, p) in revoked {
                        st.input_applied.remove(&(topic.clone(), *p));
                        let pid = st.pid(topic, *p);
                        st.newest.remove(&pid);
                        st.marked.remove(&pid);
                    }
                })),
                None,
            ),
        )
        .context("creating the Kafka consumer")?;
    let (s2_assign, s2_revoke) = (state.clone(), state.clone());
    let restoring = opts.readiness.clone();
    let restore_hold = std::env::var_os(RESTORE_HOLD_ENV).map(std::path::PathBuf::from);
    let stage2 = cfg
        .consumer_of(
            &format!("{}.repartition", cfg.group_id),
            std::slice::from_ref(&repartition),
            SourceContext::new(
                Some(Box::new(move |consumer, revoked| {
                    let mut st = lock(&s2_revoke);
                    let checkpoint = |st: &mut State| {
                        st.persist()?;
                        st.commit_parts(consumer)
                    };
                    if !checkpoint_on_revoke(&mut *st, checkpoint) {
                        return;
                    }
                    for (_, p) in revoked {
                        st.parts.remove(p);
                        // Its alert state is in the snapshot just written: the next owner's.
                        if let Err(e) = st.output.release(*p) {
                            tracing::error!(error = %e, partition = p, "releasing alert state");
                        }
                    }
                })),
                Some(Box::new(move |assigned| {
                    // Restored before any record of the partition is delivered.
                    let mut st = lock(&s2_assign);
                    for (_, p) in assigned {
                        if st.parts.contains_key(p) {
                            continue;
                        }
                        // Ready again once the loop sees the partitions assigned after this.
                        restoring.set_not_ready(format!(
                            "restoring stage-2 partition {p} from the state topic"
                        ));
                        if let Some(hold) = restore_hold.as_ref().filter(|h| h.exists()) {
                            tracing::warn!(
                                partition = p,
                                file = %hold.display(),
                                "restore held by {RESTORE_HOLD_ENV} until the file is removed"
                            );
                            while hold.exists() {
                                std::thread::sleep(HOLD_POLL);
                            }
                        }
                        match st.load_part(*p).and_then(|(part, alerts)| {
                            st.output.adopt(*p, alerts)?;
                            Ok(part)
                        }) {
                            Ok(part) => {
                                st.report.restored |= part.applied.is_some();
                                st.parts.insert(*p, part);
                            }
                            Err(e) => {
                                // Never evaluate on partial state: stop, the group rebalances.
                                tracing::error!(
                                    error = format!("{e:#}"),
                                    partition = p,
                                    "cannot restore the partition's state"
                                );
                                std::process::exit(3);
                            }
                        }
                    }
                })),
            ),
        )
        .context("creating the repartition consumer")?;

    let expected = topic_partitions(&input, &cfg.topics)?;
    let reader = kafka::Reader::new(cfg).context("creating the Kafka reader")?;
    {
        let mut st = lock(&state);
        st.sources = expected.iter().map(|(t, p)| st.pid(t, *p)).collect();
    }
    // Stage 1's input partitions: only those assigned here are marked (idle or not) to stage
    // 2; a source partition nobody has marked yet holds stage 2's watermark back.
    let mut liveness = Liveness::new(
        Duration::from_millis(cfg.idle_timeout_ms.max(0) as u64),
        opts.exit_at_eof,
    );
    let mut assigned_r: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut end_of_input = EndOfInput::new(END_CHECK_EVERY);
    let mut last_progress = Instant::now();
    let mut first_record: Option<Instant> = None;
    let mut last_lag = Instant::now();
    let lag = spawn_lag_watcher(cfg, opts.metrics.clone())?;
    let r_topics = vec![repartition.clone()];
    loop {
        if let Some(deadline) = stopping(&opts) {
            let mut st = lock(&state);
            st.checkpoint(&input, &stage2)?;
            leave(st, [input, stage2], deadline);
            break;
        }
        let mut busy = false;
        // Stage 1 and stage 2 take turns, a bounded batch each.
        // One reading of the clock for stage 1's batch (its records' liveness), not one per record.
        let now = Instant::now();
        for _ in 0..4096 {
            let polled = input.poll(Duration::ZERO);
            for ev in input.take_events() {
                match ev {
                    RebalanceEvent::Assigned(ps) => {
                        ps.into_iter().for_each(|p| liveness.assigned(p, now))
                    }
                    RebalanceEvent::Revoked(ps) => {
                        ps.into_iter().for_each(|p| liveness.revoked(p, now))
                    }
                }
            }
            match polled {
                Some(Polled::Record(m)) => {
                    busy = true;
                    first_record.get_or_insert_with(|| {
                        tracing::debug!("first input record");
                        now
                    });
                    liveness.record(m.topic(), m.partition(), now);
                    lock(&state).ingest(&m)?;
                }
                Some(Polled::End(p)) => {
                    // The event names no topic: every assigned partition of that number.
                    for t in &cfg.topics {
                        liveness.at_end(&(t.clone(), p));
                    }
                }
                Some(Polled::Failed(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
                None => break,
            }
        }
        // What stage 1 forwarded this round goes out now, not when a batch fills.
        lock(&state).flush_batches(None)?;
        for _ in 0..4096 {
            let polled = stage2.poll(Duration::ZERO);
            for ev in stage2.take_events() {
                match ev {
                    RebalanceEvent::Assigned(ps) => assigned_r.extend(ps),
                    RebalanceEvent::Revoked(ps) => ps.iter().for_each(|p| {
                        assigned_r.remove(p);
                    }),
                }
            }
            match polled {
                Some(Polled::Record(m)) => {
                    busy = true;
                    lock(&state).evaluate(&m)?;
                }
                Some(Polled::End(_)) => {}
                Some(Polled::Failed(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
                None => break,
            }
        }
        if !busy {
            // Nothing to do: wait for either consumer without spinning.
            std::thread::sleep(Duration::from_millis(1));
        }
        let unassigned = !liveness.any_assigned() && assigned_r.is_empty();
        opts.readiness
            .set(unassigned.then_some(WAITING_FOR_ASSIGNMENT));
        if last_lag.elapsed() >= LAG_EVERY {
            last_lag = Instant::now();
            report_lag(&input, &cfg.topics, &lag);
            report_lag(&stage2, &r_topics, &lag);
        }
        let mut st = lock(&state);
        if let Some(r) = &opts.reload
            && let Some(pending) = r.take()
        {
            st.reload(r, pending);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            tracing::debug!(
                stage1 = st.report.records,
                stage2 = st.report.repartitioned,
                "progress"
            );
        }
        // Owned source partitions quiet for the idle timeout (or at their end of a finite
        // input) stop holding the watermark back.
        let now = Instant::now();
        let marks: Vec<(i32, bool)> = liveness
            .assigned_partitions()
            .map(|tp| (st.pid(&tp.0, tp.1), liveness.is_idle(tp, now)))
            .collect();
        for (pid, idle) in marks {
            st.mark(pid, idle)?;
        }
        let input_at_end = liveness.all_assigned_at_end();
        // At the end of a finite input, checkpoint at once: the exit check needs everything
        // committed, and waiting for the interval would only idle.
        let draining = opts.exit_at_eof && input_at_end && !busy;
        if st.schedule.due(now, draining) {
            st.checkpoint(&input, &stage2)?;
        }
        // The end of a finite input is asked of the broker only when there is nothing to do
        // (the questions take round trips): every input partition, ours or not, consumed and
        // committed — so everything was forwarded — then every repartition partition drained:
        // ours up to its current end, the others committed at theirs.
        if opts.exit_at_eof
            && end_of_input.ask(
                now,
                !busy
                    && !st.schedule.pending()
                    && (liveness.any_assigned() || !assigned_r.is_empty())
                    && input_at_end,
            )
            && others_done(&input, &reader, &cfg.topics, &BTreeSet::new())
            && assigned_r.iter().all(|(t, p)| {
                let applied = st.parts.get(p).and_then(|x| x.applied);
                reader
                    .end_offset(t, *p)
                    .is_ok_and(|end| end == 0 || applied.is_some_and(|a| a + 1 >= end))
            })
            && others_done(&stage2, &reader, &r_topics, &assigned_r)
        {
            // Flush the windows of every owned partition not yet finished. A partition another
            // member left behind (committed at its end, its windows never flushed) is finished
            // by whoever owns it next, so exit only once every partition is.
            let unfinished: Vec<i32> = (st.parts.iter())
                .filter(|(_, part)| !part.finished)
                .map(|(p, _)| *p)
                .collect();
            for p in unfinished {
                let st = &mut *st;
                let part = st.parts.get_mut(&p).expect("owned");
                (opts.metrics).evaluate(&mut part.pipeline, |x| x.finish(&mut st.found));
                part.finished = true;
                part.dirty = true;
                st.emit(p)?;
            }
            st.checkpoint(&input, &stage2)?;
            if !st.others_finished(&reader, &assigned_r)? {
                continue;
            }
            report_lag(&input, &cfg.topics, &lag);
            report_lag(&stage2, &r_topics, &lag);
            // Serve the revokes and leave both groups, within a bound.
            leave(st, [input, stage2], Instant::now() + CLOSE_WITHIN);
            break;
        }
    }
    Ok(final_report(&state, first_record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_batches_frame_offsets_and_bytes() {
        let mut b = Vec::new();
        RecordBatch::push(&mut b, 7, b"{\"a\":1}");
        RecordBatch::push(&mut b, 9, b"");
        RecordBatch::push(&mut b, i64::MAX, b"x");
        let got: Vec<(i64, &[u8])> = RecordBatch::iter(&b).collect();
        assert_eq!(
            got,
            vec![(7, &b"{\"a\":1}"[..]), (9, &b""[..]), (i64::MAX, &b"x"[..])]
        );
        // A truncated frame ends the batch instead of reading past it.
        assert_eq!(RecordBatch::iter(&b[..b.len() - 1]).count(), 2);
    }

    #[test]
    fn session_batches_carry_sessions_and_only_the_originals_asked_for() {
        let decoder =
            crate::ingest::decode::Decoder::new(Arc::new(crate::catalog::Catalog::embedded()));
        let records: Vec<(&str, Session)> = include_str!("../../tests/data/sample-sessions.jsonl")
            .lines()
            .filter_map(|l| Some((l, decoder.decode(l.as_bytes()).ok()?)))
            .take(3)
            .collect();
        let mut b = SessionBatch::new();
        for (i, (line, session)) in records.iter().enumerate() {
            b.push(10 + i as i64, line.as_bytes(), session, i == 1);
        }
        assert_eq!(
            SessionBatch::header(&b.bytes),
            Some((SESSIONS_V1, binary::layout()))
        );
        let got: Vec<Forwarded<'_>> = SessionBatch::iter(&b.bytes).collect();
        assert_eq!(got.len(), 3);
        for (i, (f, (line, session))) in got.iter().zip(&records).enumerate() {
            assert_eq!(f.offset, 10 + i as i64);
            assert_eq!(f.original_len, line.len());
            assert_eq!(&binary::decode(f.session).unwrap(), session);
            assert_eq!(f.original, (i == 1).then_some(line.as_bytes()));
        }
        let json: usize = records.iter().map(|(l, _)| l.len()).sum();
        assert!(b.bytes.len() < json, "{} ≥ {json} bytes", b.bytes.len());
        // A truncated frame ends the batch instead of reading past it.
        assert_eq!(SessionBatch::iter(&b.bytes[..b.bytes.len() - 1]).count(), 2);
        assert_eq!(SessionBatch::header(&b.bytes[..4]), None);
    }

    #[test]
    fn routing_is_stable_and_covers_the_partitions() {
        // The route decides which instance owns an agent: it must never change between
        // versions, or state would be restored into the wrong partition.
        assert_eq!(route("support-bot", 4), route("support-bot", 4));
        let hit: BTreeSet<i32> = (0..200).map(|i| route(&format!("agent-{i}"), 4)).collect();
        assert_eq!(hit, (0..4).collect());
        assert_eq!(route("anything", 1), 0);
        assert_eq!(route("anything", 0), 0);
    }
}
