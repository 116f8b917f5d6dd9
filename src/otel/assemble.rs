//! Spans → sessions: grouping by trace on event time, with a grace for late children and a cap
//! on open traces. Pure: no I/O, no wall clock.
//!
//! The assembler keeps a watermark: the newest span end seen minus the grace (or a newer one
//! the shell passes to [`Assembler::advance`]). A trace whose root `invoke_agent` span has
//! arrived completes when the watermark reaches the root's end — every child ending up to a
//! grace after the root still joins it. A trace without a root is an orphan once the watermark
//! is a grace past its newest span. Both deadlines live in one ordered index, so a push costs
//! O(log open traces), never a scan.
//!
//! Spans may come from several *sources* read at different paces (the partitions of a Kafka
//! span topic: the Collector's exporter partitions by trace id or not at all, so a trace's
//! spans may be spread over them). Then the watermark is the minimum over the sources that
//! are not idle of their newest span end, minus the grace — as the pipeline's watermark is over
//! its partitions —, so a source read behind the others never finds its traces completed
//! without it. A registered source that has delivered nothing yet holds the watermark back
//! until it does or is idle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::session::Session;

use super::config::OtelConfig;
use super::decode::{spans_to_otlp_json, trace_label};
use super::map::{is_root, session_from_trace};
use super::{Span, SpanReject};

/// What the assembler hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A complete session, for `Pipeline::accept`.
    Session(Box<Session>),
    /// Spans that did not become a session; `raw` is them as OTLP JSON for the dead letters.
    Rejected { reason: SpanReject, raw: Vec<u8> },
}

/// One open trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenTrace {
    /// Order of opening: the eviction order.
    seq: u64,
    spans: Vec<Span>,
    /// Newest end of an `invoke_agent` span, once one has arrived.
    root_end_ms: Option<i64>,
    /// Newest end of any span.
    newest_end_ms: i64,
    /// Its entry in `due`.
    deadline: i64,
}

impl OpenTrace {
    fn deadline(&self, grace_ms: i64) -> i64 {
        match self.root_end_ms {
            Some(end) => end,
            None => self.newest_end_ms.saturating_add(grace_ms),
        }
    }
}

/// Progress of one source of spans (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SourceProgress {
    /// Newest span end it delivered.
    newest_end_ms: Option<i64>,
    /// Idle sources do not hold the watermark back.
    idle: bool,
}

/// Open traces to persist in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AssemblerState {
    traces: Vec<([u8; 16], OpenTrace)>,
    next_seq: u64,
    newest_end_ms: Option<i64>,
    external_ms: Option<i64>,
    /// Per-source progress; absent in checkpoints written before sources existed.
    #[serde(default)]
    sources: BTreeMap<i32, SourceProgress>,
}

/// Groups spans into sessions. See the module documentation.
pub struct Assembler {
    config: OtelConfig,
    catalog: Option<Arc<Catalog>>,
    open: FxHashMap<[u8; 16], OpenTrace>,
    /// `seq` → trace: oldest first, for eviction.
    by_seq: BTreeMap<u64, [u8; 16]>,
    /// `(deadline, seq)` of every open trace: due when the watermark reaches the deadline.
    due: BTreeSet<(i64, u64)>,
    next_seq: u64,
    newest_end_ms: Option<i64>,
    /// The newest watermark passed to [`Assembler::advance`].
    external_ms: Option<i64>,
    /// Registered sources; empty when spans come from one stream.
    sources: BTreeMap<i32, SourceProgress>,
}

impl Assembler {
    pub fn new(config: &OtelConfig) -> Assembler {
        Assembler {
            config: config.clone(),
            catalog: None,
            open: FxHashMap::default(),
            by_seq: BTreeMap::new(),
            due: BTreeSet::new(),
            next_seq: 0,
            newest_end_ms: None,
            external_ms: None,
            sources: BTreeMap::new(),
        }
    }

    /// Derives cost and context utilisation from the model catalog, as the record decoder does.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Assembler {
        self.catalog = Some(catalog);
        self
    }

    /// Traces open now.
    pub fn open_traces(&self) -> usize {
        self.open.len()
    }

    /// The event-time watermark: the newest span end minus the grace, or the newest passed to
    /// [`Assembler::advance`] if that is later.
    pub fn watermark(&self) -> Option<i64> {
        let own = self
            .sources_newest_end()
            .map(|t| t.saturating_sub(self.config.grace_ms));
        match (own, self.external_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The newest span end the watermark may follow: the minimum over the registered sources
    /// that are not idle (none while one of them has delivered nothing), else the newest of all.
    fn sources_newest_end(&self) -> Option<i64> {
        let mut active = self.sources.values().filter(|s| !s.idle).peekable();
        if active.peek().is_none() {
            return self.newest_end_ms;
        }
        active
            .map(|s| s.newest_end_ms)
            .try_fold(i64::MAX, |m, t| t.map(|t| m.min(t)))
    }

    /// Declares a source of spans (a span partition) before it delivers: from now on the
    /// watermark waits for it. Keeps the progress of a source already known (restored).
    pub fn add_source(&mut self, source: i32) {
        self.sources.entry(source).or_default();
    }

    /// Marks a source idle (no span for the idle timeout, at its end, or unassigned) or active
    /// again, and releases what became due.
    pub fn set_source_idle(&mut self, source: i32, idle: bool, out: &mut Vec<Assembled>) {
        self.sources.entry(source).or_default().idle = idle;
        self.release(out);
    }

    /// Adds spans; sessions they complete (and traces evicted or orphaned) go to `out`.
    pub fn push(&mut self, spans: Vec<Span>, out: &mut Vec<Assembled>) {
        for span in spans {
            self.add(span, out);
        }
        self.release(out);
    }

    /// [`Assembler::push`] of spans read from `source` (registered if it was not).
    pub fn push_from(&mut self, source: i32, spans: Vec<Span>, out: &mut Vec<Assembled>) {
        let newest = spans.iter().map(Span::end_ms).max();
        let progress = self.sources.entry(source).or_default();
        progress.idle = false;
        if let Some(t) = newest {
            progress.newest_end_ms = Some(progress.newest_end_ms.map_or(t, |n| n.max(t)));
        }
        self.push(spans, out);
    }

    /// Moves the watermark to at least `watermark_ms` (idle input, another partition's
    /// progress) and releases what became due.
    pub fn advance(&mut self, watermark_ms: i64, out: &mut Vec<Assembled>) {
        self.external_ms = Some(
            self.external_ms
                .map_or(watermark_ms, |w| w.max(watermark_ms)),
        );
        self.release(out);
    }

    /// End of input: every trace with a root becomes a session, the rest are dead-lettered
    /// (`incomplete_trace`). Deadline order, so the output is deterministic.
    pub fn finish(&mut self, out: &mut Vec<Assembled>) {
        while let Some(&(_, seq)) = self.due.first() {
            let trace = self.take(seq);
            if trace.root_end_ms.is_some() {
                out.push(self.complete(trace.spans));
            } else {
                let reason = SpanReject::IncompleteTrace {
                    trace: trace_label(&trace.spans[0].trace_id),
                    spans: trace.spans.len(),
                };
                out.push(rejected(reason, &trace.spans));
            }
        }
    }

    fn add(&mut self, span: Span, out: &mut Vec<Assembled>) {
        let end_ms = span.end_ms();
        self.newest_end_ms = Some(self.newest_end_ms.map_or(end_ms, |t| t.max(end_ms)));
        let grace = self.config.grace_ms;
        let root = is_root(&span);
        let id = span.trace_id;
        if let Some(trace) = self.open.get_mut(&id) {
            if trace.spans.len() >= self.config.max_spans_per_trace {
                let reason = SpanReject::EvictedOpenTrace {
                    trace: trace_label(&id),
                    spans: 1,
                    cap: self.config.max_spans_per_trace,
                };
                out.push(rejected(reason, std::slice::from_ref(&span)));
                return;
            }
            trace.newest_end_ms = trace.newest_end_ms.max(end_ms);
            if root {
                trace.root_end_ms = Some(trace.root_end_ms.map_or(end_ms, |t| t.max(end_ms)));
            }
            trace.spans.push(span);
            let deadline = trace.deadline(grace);
            if deadline != trace.deadline {
                self.due.remove(&(trace.deadline, trace.seq));
                self.due.insert((deadline, trace.seq));
                trace.deadline = deadline;
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut trace = OpenTrace {
            seq,
            spans: vec![span],
            root_end_ms: root.then_some(end_ms),
            newest_end_ms: end_ms,
            deadline: 0,
        };
        trace.deadline = trace.deadline(grace);
        self.due.insert((trace.deadline, seq));
        self.by_seq.insert(seq, id);
        self.open.insert(id, trace);
        while self.open.len() > self.config.max_open_traces {
            let (&oldest, _) = self.by_seq.first_key_value().expect("open traces");
            let trace = self.take(oldest);
            let reason = SpanReject::EvictedOpenTrace {
                trace: trace_label(&trace.spans[0].trace_id),
                spans: trace.spans.len(),
                cap: self.config.max_open_traces,
            };
            out.push(rejected(reason, &trace.spans));
        }
    }

    /// Completes (or orphans) every trace whose deadline the watermark has reached.
    fn release(&mut self, out: &mut Vec<Assembled>) {
        let Some(wm) = self.watermark() else { return };
        while let Some(&(deadline, seq)) = self.due.first() {
            if deadline > wm {
                break;
            }
            let trace = self.take(seq);
            if trace.root_end_ms.is_some() {
                out.push(self.complete(trace.spans));
            } else {
                let reason = SpanReject::OrphanSpan {
                    trace: trace_label(&trace.spans[0].trace_id),
                    spans: trace.spans.len(),
                };
                out.push(rejected(reason, &trace.spans));
            }
        }
    }

    fn take(&mut self, seq: u64) -> OpenTrace {
        let id = self.by_seq.remove(&seq).expect("seq of an open trace");
        let trace = self.open.remove(&id).expect("open trace");
        self.due.remove(&(trace.deadline, seq));
        trace
    }

    fn complete(&self, spans: Vec<Span>) -> Assembled {
        match session_from_trace(&spans, &self.config, self.catalog.as_deref()) {
            Ok(s) => Assembled::Session(Box::new(s)),
            Err(reason) => rejected(reason, &spans),
        }
    }

    /// The open traces, for a checkpoint.
    pub fn snapshot(&self) -> AssemblerState {
        AssemblerState {
            traces: self
                .by_seq
                .values()
                .map(|id| (*id, self.open[id].clone()))
                .collect(),
            next_seq: self.next_seq,
            newest_end_ms: self.newest_end_ms,
            external_ms: self.external_ms,
            sources: self.sources.clone(),
        }
    }

    /// Replaces the state with a snapshot's.
    pub fn restore(&mut self, state: AssemblerState) {
        self.open.clear();
        self.by_seq.clear();
        self.due.clear();
        for (id, trace) in state.traces {
            self.by_seq.insert(trace.seq, id);
            self.due.insert((trace.deadline, trace.seq));
            self.open.insert(id, trace);
        }
        self.next_seq = state.next_seq;
        self.newest_end_ms = state.newest_end_ms;
        self.external_ms = state.external_ms;
        self.sources = state.sources;
    }
}

fn rejected(reason: SpanReject, spans: &[Span]) -> Assembled {
    Assembled::Rejected {
        reason,
        raw: spans_to_otlp_json(spans),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::{SpanStatus, Value};

    const GRACE: i64 = 30_000;

    fn span(trace: u8, id: u8, op: &str, start_ms: i64, end_ms: i64) -> Span {
        let mut attributes = vec![("gen_ai.operation.name".to_owned(), Value::Str(op.into()))];
        if op == "invoke_agent" {
            attributes.push(("gen_ai.agent.name".into(), Value::Str("bot".into())));
            attributes.push(("gen_ai.request.model".into(), Value::Str("m-1".into())));
        }
        if op == "chat" {
            attributes.push(("gen_ai.response.model".into(), Value::Str("m-1".into())));
        }
        Span {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: (op != "invoke_agent").then_some([1; 8]),
            name: op.into(),
            kind: 1,
            start_unix_nano: start_ms as u64 * 1_000_000,
            end_unix_nano: end_ms as u64 * 1_000_000,
            status: SpanStatus::Unset,
            status_message: String::new(),
            attributes,
            events: Vec::new(),
            service_name: None,
            schema_url: String::new(),
        }
    }

    fn assembler() -> Assembler {
        Assembler::new(&OtelConfig {
            grace_ms: GRACE,
            ..OtelConfig::default()
        })
    }

    fn sessions(out: &[Assembled]) -> Vec<(String, u64)> {
        out.iter()
            .filter_map(|a| match a {
                Assembled::Session(s) => Some((s.session_id.clone(), s.turns.unwrap())),
                Assembled::Rejected { .. } => None,
            })
            .collect()
    }

    fn codes(out: &[Assembled]) -> Vec<&'static str> {
        out.iter()
            .filter_map(|a| match a {
                Assembled::Rejected { reason, .. } => Some(reason.code()),
                Assembled::Session(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_session_completes_when_the_watermark_passes_its_root_end() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(
            vec![
                span(1, 2, "chat", 0, 900),
                span(1, 1, "invoke_agent", 0, 1_000),
            ],
            &mut out,
        );
        assert!(out.is_empty());
        // Another trace's span one millisecond short of root end + grace: still waiting.
        a.push(vec![span(2, 2, "chat", 0, 1_000 + GRACE - 1)], &mut out);
        assert!(out.is_empty());
        assert_eq!(a.watermark(), Some(999));
        // A late child within the grace still joins the session.
        a.push(vec![span(1, 3, "chat", 950, 990)], &mut out);
        assert!(out.is_empty());
        a.push(vec![span(3, 2, "chat", 0, 1_000 + GRACE)], &mut out);
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[1; 16]), 2)]);
        assert_eq!(a.open_traces(), 2);
    }

    #[test]
    fn advance_moves_the_watermark_from_outside() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(vec![span(1, 1, "invoke_agent", 0, 5_000)], &mut out);
        a.advance(4_999, &mut out);
        assert!(out.is_empty());
        a.advance(5_000, &mut out);
        assert_eq!(sessions(&out).len(), 1);
        // An older watermark never moves it back.
        a.advance(0, &mut out);
        assert_eq!(a.watermark(), Some(5_000));
    }

    #[test]
    fn a_trace_without_root_is_an_orphan_a_grace_after_its_newest_span() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(vec![span(1, 2, "chat", 0, 1_000)], &mut out);
        // Watermark = newest end − grace; the orphan deadline is its newest end + grace.
        a.push(vec![span(2, 2, "chat", 0, 1_000 + 2 * GRACE - 1)], &mut out);
        assert!(codes(&out).is_empty());
        a.push(vec![span(3, 2, "chat", 0, 1_000 + 2 * GRACE)], &mut out);
        assert_eq!(codes(&out), vec!["orphan_span"]);
        // Its dead letter is the span as OTLP JSON.
        let Assembled::Rejected { raw, .. } = &out[0] else {
            unreachable!()
        };
        let spans = crate::otel::decode_request(raw, crate::otel::Encoding::Json).unwrap();
        assert_eq!(spans, vec![span(1, 2, "chat", 0, 1_000)]);
    }

    #[test]
    fn finish_completes_rooted_traces_and_dead_letters_the_rest() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(
            vec![
                span(1, 1, "invoke_agent", 0, 1_000),
                span(2, 2, "chat", 0, 1_000),
            ],
            &mut out,
        );
        a.finish(&mut out);
        assert_eq!(sessions(&out).len(), 1);
        assert_eq!(codes(&out), vec!["incomplete_trace"]);
        assert_eq!(a.open_traces(), 0);
    }

    #[test]
    fn the_cap_evicts_the_oldest_open_trace() {
        let mut a = Assembler::new(&OtelConfig {
            max_open_traces: 2,
            ..OtelConfig::default()
        });
        let mut out = Vec::new();
        for t in 1..=3 {
            a.push(vec![span(t, 2, "chat", 0, 10)], &mut out);
            assert!(a.open_traces() <= 2);
        }
        assert_eq!(codes(&out), vec!["evicted_open_trace"]);
        let Assembled::Rejected { reason, .. } = &out[0] else {
            unreachable!()
        };
        assert!(reason.to_string().contains(&crate::otel::hex(&[1; 16])));
    }

    #[test]
    fn the_watermark_waits_for_the_slowest_source() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.add_source(0);
        a.add_source(1);
        // The root on source 0, a child on source 1 not read yet; source 0 races ahead.
        a.push_from(0, vec![span(1, 1, "invoke_agent", 0, 1_000)], &mut out);
        a.push_from(0, vec![span(2, 2, "chat", 0, 1_000 + 10 * GRACE)], &mut out);
        assert_eq!(a.watermark(), None, "source 1 has delivered nothing");
        assert!(out.is_empty());
        // Source 1 delivers the late child: it joins the session.
        a.push_from(1, vec![span(1, 3, "chat", 500, 900)], &mut out);
        assert_eq!(a.watermark(), Some(900 - GRACE));
        assert!(out.is_empty());
        a.push_from(1, vec![span(3, 2, "chat", 0, 1_000 + GRACE)], &mut out);
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[1; 16]), 1)]);
        // An idle source stops holding the watermark back.
        a.set_source_idle(1, true, &mut out);
        assert_eq!(a.watermark(), Some(1_000 + 9 * GRACE));
        assert_eq!(codes(&out), vec!["orphan_span"], "trace 3 has no root");
        // A source that delivers again is active again.
        a.push_from(1, vec![span(4, 2, "chat", 0, 2_000 + GRACE)], &mut out);
        assert_eq!(a.watermark(), Some(2_000));
    }

    #[test]
    fn a_snapshot_keeps_the_sources() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.add_source(0);
        a.add_source(1);
        a.push_from(0, vec![span(1, 1, "invoke_agent", 0, 1_000)], &mut out);
        a.push_from(0, vec![span(2, 2, "chat", 0, 1_000 + GRACE)], &mut out);
        let mut b = assembler();
        b.restore(a.snapshot());
        b.add_source(0);
        assert_eq!(b.watermark(), None, "source 1 still holds it back");
        b.push_from(1, vec![span(3, 2, "chat", 0, 1_000 + GRACE)], &mut out);
        assert_eq!(sessions(&out).len(), 1);
    }

    #[test]
    fn a_snapshot_restores_the_open_traces() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(
            vec![
                span(1, 1, "invoke_agent", 0, 1_000),
                span(2, 2, "chat", 0, 500),
            ],
            &mut out,
        );
        let mut b = assembler();
        b.restore(a.snapshot());
        assert_eq!(b.open_traces(), 2);
        for x in [&mut a, &mut b] {
            x.push(vec![span(3, 1, "invoke_agent", 0, 1_000 + GRACE)], &mut out);
        }
        let half = sessions(&out[..out.len() / 2]);
        assert_eq!(half.len(), 1);
        assert_eq!(sessions(&out), [half.clone(), half].concat());
        assert_eq!(a.open_traces(), b.open_traces());
    }
}
