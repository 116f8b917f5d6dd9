//! The one place that wires the stages: raw record → decode → dedupe → every spec's windows →
//! findings, plus what happens to rejects.
//!
//! [`Pipeline`] is synchronous and deterministic: the same records in the same order give the
//! same findings and counters, byte for byte. `replay` drives it over a file; `run` drives it
//! and persists what it produces. The Kafka source plugs in through the same `process` call.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::drift::baseline::Baseline;
use crate::evaluate::SpecRuntime;
use crate::finding::{Clear, Finding};
use crate::ingest::decode::{Decoder, RejectReason};
use crate::ingest::{Dedupe, IngestStats, RawRecord};
use crate::session::{EpochMs, Session};
use crate::spec::model::{LatePolicy, Spec};
use crate::time::format_rfc3339_ms;

/// Tunables of the pipeline that are not part of any spec.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub max_record_bytes: usize,
    /// Upper bound on session ids remembered for dedupe.
    pub dedupe_max_ids: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_record_bytes: crate::ingest::decode::DEFAULT_MAX_RECORD_BYTES,
            dedupe_max_ids: 4_000_000,
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
    max_event_time: Option<EpochMs>,
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
            decoder: Decoder::new(catalog).with_max_bytes(config.max_record_bytes),
            dedupe: Dedupe::new(horizon, config.dedupe_max_ids),
            runtimes: specs
                .into_iter()
                .map(|s| SpecRuntime::new(Arc::new(s)))
                .collect(),
            stats: IngestStats::default(),
            max_event_time: None,
        }
    }

    pub fn runtimes(&self) -> &[SpecRuntime] {
        &self.runtimes
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Dedupe ids held (memory telemetry).
    pub fn dedupe_len(&self) -> usize {
        self.dedupe.len()
    }

    /// Processes one record; findings of windows it closes are appended to `out`.
    pub fn process(&mut self, record: &RawRecord, out: &mut Vec<Finding>) -> Outcome {
        self.stats.records += 1;
        self.stats.bytes += record.bytes.len() as u64;
        match self.decoder.decode(&record.bytes) {
            Ok(session) => self.accept(&session, out),
            Err(reason) => self.reject(reason, true),
        }
    }

    /// Processes an already decoded session (simulations and benchmarks of later stages).
    pub fn accept(&mut self, session: &Session, out: &mut Vec<Finding>) -> Outcome {
        if !self
            .dedupe
            .first_time(&session.session_id, session.event_time)
        {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
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
        self.advance_to(session.event_time, out);
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

    fn reject(&mut self, reason: RejectReason, dead_letter: bool) -> Outcome {
        *self.stats.rejected.entry(reason.code()).or_default() += 1;
        Outcome::Rejected {
            reason,
            dead_letter,
        }
    }

    fn advance_to(&mut self, t: EpochMs, out: &mut Vec<Finding>) {
        if self.max_event_time.is_some_and(|m| m >= t) {
            return;
        }
        self.max_event_time = Some(t);
        self.dedupe.expire(t);
        for rt in &mut self.runtimes {
            out.extend(rt.advance(t));
        }
    }

    /// Takes the clears of every spec produced since the last call.
    pub fn drain_clears(&mut self) -> Vec<Clear> {
        self.runtimes
            .iter_mut()
            .flat_map(SpecRuntime::drain_clears)
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
            out.extend(rt.flush());
        }
    }
}
