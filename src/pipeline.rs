//! The one place that wires the stages: raw record → decode → dedupe → every spec's windows →
//! findings, plus what happens to rejects.
//!
//! [`Pipeline`] is synchronous and deterministic: the same records in the same order give the
//! same findings and counters, byte for byte. `replay` drives it over a file; `run` drives it
//! and persists what it produces. The Kafka source plugs in through the same `process` call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::drift::baseline::Baseline;
use crate::evaluate::{Carried, RuntimeState, RuntimeStateRef, SpecRuntime};
use crate::finding::{Clear, Finding, LastSession};
use crate::history::{Delta, History, HistoryState};
use crate::ingest::decode::{Decoder, RejectReason};
use crate::ingest::{Dedupe, IngestStats, Position, RawRecord};
use crate::session::{EpochMs, Session};
use crate::spec::model::{LatePolicy, Spec};
use crate::time::format_rfc3339_ms;

/// Tunables of the pipeline that are not part of any spec.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub max_record_bytes: usize,
    /// Upper bound on session ids remembered for dedupe.
    pub dedupe_max_ids: usize,
    /// With a wall clock ([`Pipeline::with_wall_clock`], `run` only): records whose event time
    /// is more than this far ahead of it are rejected (`future`) and dead-lettered.
    pub max_future_skew_ms: i64,
}

/// Default `run --max-future-skew`: one hour.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 3_600_000;

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_record_bytes: crate::ingest::decode::DEFAULT_MAX_RECORD_BYTES,
            dedupe_max_ids: 4_000_000,
            max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS,
        }
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Decoded and added to every spec that selects it (possibly none).
    Accepted,
    /// Its `session_id` was seen before: counted once only.
    Duplicate,
    /// Rejected; the caller writes it to the dead letters when `dead_letter` is set.
    Rejected {
        reason: RejectReason,
        dead_letter: bool,
    },
}

/// Decoder, dedupe and one runtime per spec.
pub struct Pipeline {
    decoder: Decoder,
    dedupe: Dedupe,
    runtimes: Vec<SpecRuntime>,
    stats: IngestStats,
    /// Newest event time seen per source partition (a file or stdin is partition 0).
    partitions: BTreeMap<i32, EpochMs>,
    /// Partitions the shell declared idle: they do not hold the watermark back.
    idle: BTreeSet<i32>,
    /// Partitions assigned to this process: until one has delivered a record (or is idle) the
    /// watermark waits for it, so the first partition read cannot make the others late.
    assigned: BTreeSet<i32>,
    /// The stream watermark windows were last advanced to.
    advanced_to: Option<EpochMs>,
    /// What [`Pipeline::fresh`] builds another pipeline from.
    catalog: Arc<Catalog>,
    config: PipelineConfig,
    /// The operational history every accepted session updates, when the shell keeps one.
    history: Option<History>,
    /// The shell's wall clock (`run`); `None` in replays, whose records are history.
    wall_clock: Option<Arc<dyn crate::alerts::deliver::Clock>>,
}

/// What a configuration reload did to one spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecReload {
    pub spec: String,
    pub change: SpecChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "change", content = "kept")]
pub enum SpecChange {
    /// New in this configuration.
    Added,
    /// In both; what of its state survived.
    Kept(Carried),
    /// Gone from the configuration, with its state.
    Removed,
}

/// What a crash-safe restart restores: every runtime's state, dedupe, counters, watermarks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineState {
    pub runtimes: Vec<RuntimeState>,
    pub dedupe: Dedupe,
    pub stats: IngestStats,
    pub partitions: BTreeMap<i32, EpochMs>,
    /// Partitions idle at the snapshot (a repartitioned stage learns this only from marks).
    #[serde(default)]
    pub idle: BTreeSet<i32>,
    pub advanced_to: Option<EpochMs>,
    /// Operational history not yet acknowledged by the store.
    #[serde(default)]
    pub history: Option<HistoryState>,
}

/// A [`PipelineState`] that borrows the pipeline ([`Pipeline::snapshot_ref`]): the same
/// serialized bytes without copying the state first, for writers that only encode it.
#[derive(Serialize)]
pub struct PipelineStateRef<'a> {
    runtimes: Vec<RuntimeStateRef<'a>>,
    dedupe: &'a Dedupe,
    stats: &'a IngestStats,
    partitions: &'a BTreeMap<i32, EpochMs>,
    idle: &'a BTreeSet<i32>,
    advanced_to: Option<EpochMs>,
    history: Option<&'a HistoryState>,
}

impl Pipeline {
    pub fn new(specs: Vec<Spec>, catalog: Arc<Catalog>, config: &PipelineConfig) -> Pipeline {
        // A duplicate has its original's event time; once every window that time belongs to
        // has closed the record is late anyway, so ids need to be kept only that long.
        let horizon = specs
            .iter()
            .map(|s| s.window.size_ms + s.window.allowed_lateness_ms)
            .max()
            .unwrap_or(3_600_000);
        Pipeline {
            decoder: Decoder::new(catalog.clone()).with_max_bytes(config.max_record_bytes),
            dedupe: Dedupe::new(horizon, config.dedupe_max_ids),
            runtimes: specs
                .into_iter()
                .map(|s| SpecRuntime::new(Arc::new(s)))
                .collect(),
            stats: IngestStats::default(),
            partitions: BTreeMap::new(),
            idle: BTreeSet::new(),
            assigned: BTreeSet::new(),
            advanced_to: None,
            catalog,
            config: config.clone(),
            history: None,
            wall_clock: None,
        }
    }

    /// Keeps an operational history of every accepted session (see [`crate::history`]).
    pub fn with_history(mut self, history: History) -> Pipeline {
        self.history = Some(history);
        self
    }

    /// Seals the history's pending delta (or returns the one sealed and not yet acknowledged)
    /// for the shell to apply to the store.
    pub fn history_seal(&mut self) -> Option<&Delta> {
        self.history.as_mut()?.seal()
    }

    /// The store applied history delta `seq`.
    pub fn history_ack(&mut self, seq: u64) {
        if let Some(h) = &mut self.history {
            h.ack(seq);
        }
    }

    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// A pipeline of the same specs, catalog and tunables, with no state.
    pub fn fresh(&self) -> Pipeline {
        let mut p = Pipeline::new(
            self.runtimes
                .iter()
                .map(|rt| (**rt.spec()).clone())
                .collect(),
            self.catalog.clone(),
            &self.config,
        );
        p.wall_clock = self.wall_clock.clone();
        p
    }

    /// Decodes a record without counting or keeping anything.
    pub fn decode(&self, bytes: &[u8]) -> Result<Session, RejectReason> {
        self.decoder.decode(bytes)
    }

    /// Whether any spec's selector covers the session.
    pub fn selects_any(&self, session: &Session) -> bool {
        self.runtimes.iter().any(|rt| rt.selects(session))
    }

    /// Progress of a source partition reported by whoever consumes it (the repartitioned
    /// topology): the newest event time it has delivered and whether it is idle.
    pub fn source_progress(
        &mut self,
        partition: i32,
        newest: Option<EpochMs>,
        idle: bool,
        out: &mut Vec<Finding>,
    ) {
        if let Some(t) = newest {
            let n = self.partitions.entry(partition).or_insert(t);
            *n = (*n).max(t);
        }
        if idle {
            self.idle.insert(partition);
        } else {
            self.idle.remove(&partition);
        }
        self.advance(out);
    }

    pub fn runtimes(&self) -> &[SpecRuntime] {
        &self.runtimes
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Objective windows evaluated so far over every spec (the shell counts closed windows
    /// from the difference).
    pub fn windows_evaluated(&self) -> u64 {
        self.runtimes
            .iter()
            .flat_map(SpecRuntime::stats)
            .map(|s| s.windows_evaluated)
            .sum()
    }

    /// Dedupe ids held (memory telemetry).
    pub fn dedupe_len(&self) -> usize {
        self.dedupe.len()
    }

    /// Processes one record; findings of windows it closes are appended to `out`.
    pub fn process(&mut self, record: &RawRecord, out: &mut Vec<Finding>) -> Outcome {
        let partition = match record.position {
            Position::Kafka { partition, .. } => partition,
            Position::Line { .. } => 0,
        };
        self.process_bytes(&record.bytes, partition, out)
    }

    /// Processes one record's bytes from a source partition.
    pub fn process_bytes(
        &mut self,
        bytes: &[u8],
        partition: i32,
        out: &mut Vec<Finding>,
    ) -> Outcome {
        self.stats.records += 1;
        self.stats.bytes += bytes.len() as u64;
        match self.decoder.decode(bytes) {
            Ok(session) => self.accept(&session, partition, out),
            Err(reason) => self.reject(reason, true),
        }
    }

    /// Counts one input unit the shell decoded itself (an OTLP request of the span path): it
    /// is a record of the stream, whatever sessions or rejects it turns into.
    pub fn count_input(&mut self, bytes: usize) {
        self.stats.records += 1;
        self.stats.bytes += bytes as u64;
    }

    /// Rejects records more than `max_future_skew_ms` ahead of `clock` (the shell's wall
    /// clock; the core never reads one). Without it (replays) event times are not bounded.
    pub fn with_wall_clock(mut self, clock: Arc<dyn crate::alerts::deliver::Clock>) -> Pipeline {
        self.wall_clock = Some(clock);
        self
    }

    /// Whether an event time is ahead of the shell's wall clock (never, without one): such a
    /// record may yet be rejected as from the future by whoever applies it later.
    pub fn ahead_of_clock(&self, event_time: EpochMs) -> bool {
        self.wall_clock
            .as_ref()
            .is_some_and(|c| event_time > c.now_ms())
    }

    /// Sets `max_future_skew_ms` (see [`PipelineConfig`]).
    pub fn set_future_skew(&mut self, skew_ms: i64) {
        self.config.max_future_skew_ms = skew_ms;
    }

    /// Processes an already decoded session from a source partition.
    pub fn accept(&mut self, session: &Session, partition: i32, out: &mut Vec<Finding>) -> Outcome {
        if let Some(clock) = &self.wall_clock {
            let limit = clock
                .now_ms()
                .saturating_add(self.config.max_future_skew_ms);
            if session.event_time > limit {
                // Before dedupe and windowing: it must not move the watermark nor claim an id.
                return self.reject(
                    RejectReason::Future {
                        event_time: format_rfc3339_ms(session.event_time),
                        limit: format_rfc3339_ms(limit),
                    },
                    true,
                );
            }
        }
        if !self
            .dedupe
            .first_time(&session.session_id, session.event_time)
        {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
        }
        if let Some(h) = &mut self.history {
            h.observe(session);
        }
        let mut late_policy: Option<(LatePolicy, i64)> = None;
        let mut matched = false;
        for rt in &mut self.runtimes {
            if !rt.selects(session) {
                continue;
            }
            matched = true;
            if let Err(late) = rt.observe(session) {
                let policy = rt.spec().window.late_policy;
                // One dead letter per record, even when several specs find it late.
                if late_policy.is_none_or(|(p, _)| p == LatePolicy::Drop) {
                    late_policy = Some((policy, late.closed_before));
                }
            }
        }
        if !matched {
            self.stats.unmatched += 1;
        }
        let newest = self
            .partitions
            .entry(partition)
            .or_insert(session.event_time);
        *newest = (*newest).max(session.event_time);
        self.idle.remove(&partition);
        self.advance(out);
        match late_policy {
            None => {
                self.stats.accepted += 1;
                Outcome::Accepted
            }
            Some((policy, closed_before)) => self.reject(
                RejectReason::Late {
                    event_time: format_rfc3339_ms(session.event_time),
                    closed_before: format_rfc3339_ms(closed_before),
                },
                policy == LatePolicy::DeadLetter,
            ),
        }
    }

    /// Spans that did not become a session: counted by reason like a rejected record (the
    /// caller dead-letters them).
    pub fn reject_spans(&mut self, reason: &crate::otel::SpanReject) -> Outcome {
        let reason = RejectReason::Span {
            code: reason.code(),
            detail: reason.to_string(),
        };
        self.reject(reason, true)
    }

    fn reject(&mut self, reason: RejectReason, dead_letter: bool) -> Outcome {
        *self
            .stats
            .rejected
            .entry(reason.code().to_owned())
            .or_default() += 1;
        Outcome::Rejected {
            reason,
            dead_letter,
        }
    }

    /// The stream's event-time frontier: the minimum over partitions that are not idle of the
    /// newest event time each has delivered (all partitions idle: the newest overall).
    pub fn stream_time(&self) -> Option<EpochMs> {
        let waiting = self
            .assigned
            .iter()
            .any(|p| !self.idle.contains(p) && !self.partitions.contains_key(p));
        if waiting {
            return None;
        }
        let active = self
            .partitions
            .iter()
            .filter(|(p, _)| !self.idle.contains(p))
            .map(|(_, t)| *t)
            .min();
        active.or_else(|| self.partitions.values().copied().max())
    }

    /// Marks a partition idle (no records for the idle timeout) or active again.
    pub fn set_idle(&mut self, partition: i32, idle: bool, out: &mut Vec<Finding>) {
        let changed = if idle {
            self.idle.insert(partition)
        } else {
            self.idle.remove(&partition)
        };
        if changed {
            self.advance(out);
        }
    }

    /// A partition assigned to this process (rebalance).
    pub fn assign_partition(&mut self, partition: i32) {
        self.assigned.insert(partition);
    }

    /// Forgets a partition this process no longer owns (rebalance).
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.idle.remove(&partition);
        self.assigned.remove(&partition);
    }

    fn advance(&mut self, out: &mut Vec<Finding>) {
        let Some(t) = self.stream_time() else { return };
        if self.advanced_to.is_some_and(|a| a >= t) {
            return;
        }
        self.advanced_to = Some(t);
        self.dedupe.expire(t);
        for rt in &mut self.runtimes {
            out.extend(rt.advance(t).into_iter().map(with_message));
        }
    }

    /// Replaces the specs (a configuration reload), keeping what is still valid of each
    /// spec's state ([`SpecRuntime::carry_over`]): a spec of the same name that did not change
    /// keeps everything. Added specs start at the stream's watermark, so records the old
    /// configuration already judged late stay late. Dedupe, watermarks, counters and the
    /// history are not touched.
    pub fn reload(&mut self, specs: Vec<Spec>) -> Vec<SpecReload> {
        let mut old: BTreeMap<String, SpecRuntime> = self
            .runtimes
            .drain(..)
            .map(|rt| (rt.spec().name.clone(), rt))
            .collect();
        let mut changes = Vec::new();
        for spec in specs {
            let mut rt = SpecRuntime::new(Arc::new(spec));
            let change = match old.remove(&rt.spec().name) {
                Some(before) => SpecChange::Kept(rt.carry_over(before)),
                None => SpecChange::Added,
            };
            if change != SpecChange::Kept(Carried::Everything)
                && change != SpecChange::Kept(Carried::Windows)
                && let Some(t) = self.advanced_to
            {
                // Nothing is open yet, so nothing closes.
                let closed = rt.advance(t);
                debug_assert!(closed.is_empty());
            }
            changes.push(SpecReload {
                spec: rt.spec().name.clone(),
                change,
            });
            self.runtimes.push(rt);
        }
        changes.extend(old.into_keys().map(|spec| SpecReload {
            spec,
            change: SpecChange::Removed,
        }));
        changes
    }

    /// Everything to persist for a crash-safe restart.
    pub fn snapshot(&self) -> PipelineState {
        PipelineState {
            runtimes: self.runtimes.iter().map(SpecRuntime::snapshot).collect(),
            dedupe: self.dedupe.clone(),
            stats: self.stats.clone(),
            partitions: self.partitions.clone(),
            idle: self.idle.clone(),
            advanced_to: self.advanced_to,
            history: self.history.as_ref().map(History::snapshot),
        }
    }

    /// [`Pipeline::snapshot`] without the copy: the same serialized bytes.
    pub fn snapshot_ref(&self) -> PipelineStateRef<'_> {
        PipelineStateRef {
            runtimes: self
                .runtimes
                .iter()
                .map(SpecRuntime::snapshot_ref)
                .collect(),
            dedupe: &self.dedupe,
            stats: &self.stats,
            partitions: &self.partitions,
            idle: &self.idle,
            advanced_to: self.advanced_to,
            history: self.history.as_ref().map(History::state),
        }
    }

    /// Visits every part of the state a [`Pipeline::snapshot`] holds, with stable ids
    /// ([`crate::checkpoint`]): what an incremental checkpoint compares and writes.
    pub fn checkpoint_parts(&self, w: &mut crate::checkpoint::PartWriter<'_>) {
        use crate::checkpoint::{PartId, RestRef};
        let rest: RestRef<'_> = (
            self.dedupe.head(),
            &self.stats,
            &self.partitions,
            &self.idle,
            self.advanced_to,
            self.history.as_ref().map(History::state),
            self.runtimes
                .iter()
                .map(|rt| SpecRuntime::fingerprint_hash(rt.spec()))
                .collect(),
        );
        w.part(PartId::Rest, false, &rest);
        for (bucket, ids) in self.dedupe.buckets() {
            // Sorted: a hash set's order depends on its history (a restored one differs), and
            // an unchanged bucket must encode to the bytes it was written as.
            w.part_with(PartId::Dedupe { bucket }, false, || {
                let mut sorted: Vec<u64> = ids.iter().copied().collect();
                sorted.sort_unstable();
                sorted
            });
        }
        for (i, rt) in self.runtimes.iter().enumerate() {
            rt.checkpoint_parts(i as u32, w);
        }
    }

    /// Restores a snapshot taken with the same specs; false (nothing changed) otherwise.
    pub fn restore(&mut self, state: PipelineState) -> bool {
        if state.runtimes.len() != self.runtimes.len()
            || self
                .runtimes
                .iter()
                .zip(&state.runtimes)
                .any(|(rt, st)| SpecRuntime::fingerprint(rt.spec()) != st.spec_fingerprint)
        {
            return false;
        }
        for (rt, st) in self.runtimes.iter_mut().zip(state.runtimes) {
            rt.restore(st);
        }
        self.dedupe = state.dedupe;
        self.stats = state.stats;
        self.partitions = state.partitions;
        self.idle = state.idle;
        self.advanced_to = state.advanced_to;
        if let (Some(h), Some(st)) = (&mut self.history, state.history) {
            h.restore(st);
        }
        true
    }

    /// Takes the sessions counting against an objective handed out since the last call
    /// (`crate::forensics::AffectedBatch`), for the shell to file under their incidents.
    pub fn drain_affected(&mut self) -> Vec<crate::forensics::AffectedBatch> {
        self.runtimes
            .iter_mut()
            .flat_map(SpecRuntime::drain_affected)
            .collect()
    }

    /// Takes the clears of every spec produced since the last call.
    pub fn drain_clears(&mut self) -> Vec<Clear> {
        self.runtimes
            .iter_mut()
            .flat_map(SpecRuntime::drain_clears)
            .collect()
    }

    /// Takes the newest session of every key whose windows closed since the last call, for
    /// the alert engine (see [`SpecRuntime::drain_last_sessions`]).
    pub fn drain_last_sessions(&mut self) -> Vec<LastSession> {
        self.runtimes
            .iter_mut()
            .flat_map(SpecRuntime::drain_last_sessions)
            .collect()
    }

    /// Baselines changed since the last call, to persist.
    pub fn take_dirty_baselines(&mut self) -> Vec<Baseline> {
        self.runtimes
            .iter_mut()
            .flat_map(SpecRuntime::take_dirty_baselines)
            .collect()
    }

    /// Installs stored baselines (each goes to the spec and objective it belongs to).
    pub fn restore_baselines(&mut self, baselines: &[Baseline]) {
        for rt in &mut self.runtimes {
            rt.restore_baselines(baselines);
        }
    }

    /// End of a finite stream: evaluates every window still open.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        for rt in &mut self.runtimes {
            out.extend(rt.flush().into_iter().map(with_message));
        }
    }
}

/// Findings leave the pipeline with their sentence for people: the core builds none, and every
/// output that carries `message` (sled, the findings topic, `replay --out`) gets the same one.
fn with_message(mut f: Finding) -> Finding {
    f.message = crate::present::message(&f);
    f
}
