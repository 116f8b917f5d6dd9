//! Spans → sessions: grouping by trace (or by conversation) on event time, with a grace for
//! late children and caps on what is held open. Pure: no I/O, no wall clock.
//!
//! The assembler keeps a watermark: the newest span end seen minus the grace (or a newer one
//! the shell passes to [`Assembler::advance`]). A trace whose root `invoke_agent` span has
//! arrived completes when the watermark reaches the root's end — every child ending up to a
//! grace after the root still joins it. A trace without a root is an orphan once the watermark
//! is a grace past its newest span. Both deadlines live in one ordered index, so a push costs
//! O(log open traces), never a scan.
//!
//! **Conversations** (`groupBy: conversation`). A completed trace whose spans carry
//! `gen_ai.conversation.id` (its root's, else the first span's in start order) joins the open
//! conversation of that id instead of becoming a session; the conversation becomes one
//! session when the watermark is more than `grace` past the end of its last root, i.e. no
//! turn has begun for `grace` of event time. A trace without the attribute is a session of
//! its own, as with `groupBy: trace`. Spans of a trace that already joined an open
//! conversation go straight to the conversation.
//!
//! Spans may come from several *sources* read at different paces (the partitions of a Kafka
//! span topic: the Collector's exporter partitions by trace id or not at all, so a trace's
//! spans may be spread over them; and the OTLP/HTTP receiver beside them,
//! [`RECEIVER_SOURCE`]). Then the watermark is the minimum over the sources that are not idle
//! of their newest span end, minus the grace — as the pipeline's watermark is over its
//! partitions —, so a source read behind the others never finds its traces completed without
//! it. A registered source that has delivered nothing yet holds the watermark back until it
//! does or is idle.
//!
//! **The watermark never goes back.** When an idle source resumes behind the others, the
//! watermark stays where it was until that source catches up; what was released stays
//! released. A span of a trace (or conversation) already released — completed as a session,
//! orphaned or evicted — is dead-lettered as `late_span`, as a record is when its windows
//! have closed. The assembler remembers the last `maxOpenTraces` released traces (and as
//! many conversations) for this; a span of a trace released before those is handled like any
//! new span (an orphan once its grace has passed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::session::Session;

use super::config::{GroupBy, OtelConfig};
use super::decode::{spans_to_otlp_json, trace_label};
use super::map::{conversation_id, is_root, session_from_trace};
use super::{Span, SpanReject};

/// The source number of the OTLP/HTTP receiver when it runs beside Kafka span partitions
/// (whose source numbers are never negative): one more source, idle when no request has come
/// for the idle timeout.
pub const RECEIVER_SOURCE: i32 = -1;

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

/// One open conversation: the completed traces of one `gen_ai.conversation.id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenConversation {
    /// Order of opening: the eviction order.
    seq: u64,
    id: String,
    spans: Vec<Span>,
    traces: Vec<[u8; 16]>,
    /// Newest end of an `invoke_agent` span of its traces.
    last_root_end_ms: i64,
}

impl OpenConversation {
    /// Complete once the watermark is more than `grace` past its last root's end.
    fn deadline(&self, grace_ms: i64) -> i64 {
        self.last_root_end_ms
            .saturating_add(grace_ms)
            .saturating_add(1)
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

/// The last `cap` keys released, oldest forgotten first.
#[derive(Debug, Clone)]
struct Recent<K: Eq + Hash + Clone> {
    set: FxHashSet<K>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone> Default for Recent<K> {
    fn default() -> Self {
        Recent {
            set: FxHashSet::default(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> From<Vec<K>> for Recent<K> {
    fn from(keys: Vec<K>) -> Self {
        Recent {
            set: keys.iter().cloned().collect(),
            order: keys.into(),
        }
    }
}

impl<K: Eq + Hash + Clone> From<Recent<K>> for Vec<K> {
    fn from(r: Recent<K>) -> Vec<K> {
        r.order.into()
    }
}

impl<K: Eq + Hash + Clone> Recent<K> {
    fn insert(&mut self, key: K, cap: usize) {
        if cap == 0 || !self.set.insert(key.clone()) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > cap {
            let old = self.order.pop_front().expect("over the cap");
            self.set.remove(&old);
        }
    }

    fn contains<Q: ?Sized + Hash + Eq>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        self.set.contains(key)
    }
}

/// Open traces and conversations to persist in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AssemblerState {
    traces: Vec<([u8; 16], OpenTrace)>,
    next_seq: u64,
    newest_end_ms: Option<i64>,
    external_ms: Option<i64>,
    /// Per-source progress; absent in checkpoints written before sources existed.
    #[serde(default)]
    sources: BTreeMap<i32, SourceProgress>,
    /// The newest watermark a release has acted on (the floor of the watermark).
    #[serde(default)]
    floor_ms: Option<i64>,
    #[serde(default)]
    conversations: Vec<OpenConversation>,
    #[serde(default)]
    released_traces: Vec<[u8; 16]>,
    #[serde(default)]
    released_conversations: Vec<String>,
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
    /// The newest watermark a release has acted on: the watermark never goes below it.
    floor_ms: Option<i64>,
    /// Registered sources; empty when spans come from one stream.
    sources: BTreeMap<i32, SourceProgress>,
    /// Open conversations by id, their order of opening, their deadlines, and the traces that
    /// joined them.
    conversations: FxHashMap<String, OpenConversation>,
    conversation_by_seq: BTreeMap<u64, String>,
    conversation_due: BTreeSet<(i64, u64)>,
    conversation_of_trace: FxHashMap<[u8; 16], String>,
    /// Released traces and conversations, for `late_span`.
    released_traces: Recent<[u8; 16]>,
    released_conversations: Recent<String>,
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
            floor_ms: None,
            sources: BTreeMap::new(),
            conversations: FxHashMap::default(),
            conversation_by_seq: BTreeMap::new(),
            conversation_due: BTreeSet::new(),
            conversation_of_trace: FxHashMap::default(),
            released_traces: Recent::default(),
            released_conversations: Recent::default(),
        }
    }

    /// Derives cost and context utilisation from the model catalog, as the record decoder does.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Assembler {
        self.catalog = Some(catalog);
        self
    }

    /// Traces open now (not counting those that joined an open conversation).
    pub fn open_traces(&self) -> usize {
        self.open.len()
    }

    /// Conversations open now.
    pub fn open_conversations(&self) -> usize {
        self.conversations.len()
    }

    /// The event-time watermark: the newest span end minus the grace, or the newest passed to
    /// [`Assembler::advance`] if that is later; never below what it has reached before.
    pub fn watermark(&self) -> Option<i64> {
        let own = self
            .sources_newest_end()
            .map(|t| t.saturating_sub(self.config.grace_ms));
        [own, self.external_ms, self.floor_ms]
            .into_iter()
            .flatten()
            .max()
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

    /// Declares a source of spans (a span partition, the receiver) before it delivers: from
    /// now on the watermark waits for it. Keeps the progress of a source already known
    /// (restored).
    pub fn add_source(&mut self, source: i32) {
        self.sources.entry(source).or_default();
    }

    /// Marks a source idle (no span for the idle timeout, at its end, or unassigned) or active
    /// again, and releases what became due.
    pub fn set_source_idle(&mut self, source: i32, idle: bool, out: &mut Vec<Assembled>) {
        self.sources.entry(source).or_default().idle = idle;
        self.release(out);
    }

    /// Adds spans; sessions they complete (and traces evicted, orphaned or late) go to `out`.
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

    /// End of input: every trace with a root becomes a session (or joins its conversation),
    /// the rest are dead-lettered (`incomplete_trace`); then every open conversation becomes a
    /// session. Deadline order, so the output is deterministic.
    pub fn finish(&mut self, out: &mut Vec<Assembled>) {
        while let Some(&(_, seq)) = self.due.first() {
            let trace = self.take(seq);
            if trace.root_end_ms.is_some() {
                self.complete_trace(trace.spans, out);
            } else {
                let reason = SpanReject::IncompleteTrace {
                    trace: trace_label(&trace.spans[0].trace_id),
                    spans: trace.spans.len(),
                };
                out.push(rejected(reason, &trace.spans));
            }
        }
        while let Some(&(_, seq)) = self.conversation_due.first() {
            let c = self.take_conversation(seq);
            out.push(self.complete(c.spans));
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
        if let Some(conversation) = self.conversation_of_trace.get(&id) {
            let conversation = conversation.clone();
            self.join_conversation(&conversation, vec![span], None, out);
            return;
        }
        if self.released_traces.contains(&id) {
            let reason = SpanReject::LateSpan {
                trace: trace_label(&id),
                spans: 1,
                released: "the trace".into(),
            };
            out.push(rejected(reason, std::slice::from_ref(&span)));
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

    /// Completes (or orphans) every trace whose deadline the watermark has reached, then every
    /// conversation whose deadline it has reached.
    fn release(&mut self, out: &mut Vec<Assembled>) {
        let Some(wm) = self.watermark() else { return };
        // What the watermark has reached, it keeps: an idle source that resumes behind the
        // others holds it where it is instead of moving it back.
        self.floor_ms = Some(wm);
        while let Some(&(deadline, seq)) = self.due.first() {
            if deadline > wm {
                break;
            }
            let trace = self.take(seq);
            if trace.root_end_ms.is_some() {
                self.complete_trace(trace.spans, out);
            } else {
                let reason = SpanReject::OrphanSpan {
                    trace: trace_label(&trace.spans[0].trace_id),
                    spans: trace.spans.len(),
                };
                out.push(rejected(reason, &trace.spans));
            }
        }
        while let Some(&(deadline, seq)) = self.conversation_due.first() {
            if deadline > wm {
                break;
            }
            let c = self.take_conversation(seq);
            out.push(self.complete(c.spans));
        }
    }

    /// A trace with a root is complete: a session, or (grouping by conversation) a turn of
    /// its conversation.
    fn complete_trace(&mut self, spans: Vec<Span>, out: &mut Vec<Assembled>) {
        if self.config.group_by == GroupBy::Trace {
            out.push(self.complete(spans));
            return;
        }
        match conversation_id(&spans) {
            Err(reason) => out.push(rejected(reason, &spans)),
            Ok(None) => out.push(self.complete(spans)),
            Ok(Some(id)) => {
                let trace = spans[0].trace_id;
                self.join_conversation(&id, spans, Some(trace), out);
            }
        }
    }

    /// Adds spans to conversation `id` (opening it when `new_trace` is a trace completing
    /// now), or dead-letters them when the conversation was released already or would go over
    /// its cap.
    fn join_conversation(
        &mut self,
        id: &str,
        spans: Vec<Span>,
        new_trace: Option<[u8; 16]>,
        out: &mut Vec<Assembled>,
    ) {
        let grace = self.config.grace_ms;
        let cap = self.config.max_spans_per_trace;
        if !self.conversations.contains_key(id) {
            if self.released_conversations.contains(id) {
                let reason = SpanReject::LateSpan {
                    trace: trace_label(&spans[0].trace_id),
                    spans: spans.len(),
                    released: format!("its conversation `{id}`"),
                };
                out.push(rejected(reason, &spans));
                return;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let c = OpenConversation {
                seq,
                id: id.to_owned(),
                spans: Vec::new(),
                traces: Vec::new(),
                last_root_end_ms: i64::MIN,
            };
            self.conversation_due.insert((c.deadline(grace), seq));
            self.conversation_by_seq.insert(seq, id.to_owned());
            self.conversations.insert(id.to_owned(), c);
        }
        let c = self.conversations.get_mut(id).expect("open conversation");
        // Never true of a new conversation: one trace holds at most `cap` spans.
        if c.spans.len() + spans.len() > cap {
            let reason = SpanReject::ConversationOverCap {
                conversation: id.to_owned(),
                spans: spans.len(),
                cap,
            };
            out.push(rejected(reason, &spans));
        } else {
            let old = c.deadline(grace);
            for s in spans.iter().filter(|s| is_root(s)) {
                c.last_root_end_ms = c.last_root_end_ms.max(s.end_ms());
            }
            c.spans.extend(spans);
            if let Some(trace) = new_trace {
                c.traces.push(trace);
                self.conversation_of_trace.insert(trace, id.to_owned());
            }
            let deadline = c.deadline(grace);
            if deadline != old {
                self.conversation_due.remove(&(old, c.seq));
                self.conversation_due.insert((deadline, c.seq));
            }
        }
        while self.conversations.len() > self.config.max_open_traces {
            let (&oldest, _) = self
                .conversation_by_seq
                .first_key_value()
                .expect("open conversations");
            let c = self.take_conversation(oldest);
            let reason = SpanReject::EvictedOpenConversation {
                conversation: c.id.clone(),
                spans: c.spans.len(),
                cap: self.config.max_open_traces,
            };
            out.push(rejected(reason, &c.spans));
        }
    }

    /// Removes an open trace; it counts as released from now on.
    fn take(&mut self, seq: u64) -> OpenTrace {
        let id = self.by_seq.remove(&seq).expect("seq of an open trace");
        let trace = self.open.remove(&id).expect("open trace");
        self.due.remove(&(trace.deadline, seq));
        self.released_traces.insert(id, self.config.max_open_traces);
        trace
    }

    /// Removes an open conversation; it and its traces count as released from now on.
    fn take_conversation(&mut self, seq: u64) -> OpenConversation {
        let id = self
            .conversation_by_seq
            .remove(&seq)
            .expect("seq of an open conversation");
        let c = self.conversations.remove(&id).expect("open conversation");
        self.conversation_due
            .remove(&(c.deadline(self.config.grace_ms), seq));
        for t in &c.traces {
            self.conversation_of_trace.remove(t);
        }
        self.released_conversations
            .insert(id, self.config.max_open_traces);
        c
    }

    fn complete(&self, spans: Vec<Span>) -> Assembled {
        match session_from_trace(&spans, &self.config, self.catalog.as_deref()) {
            Ok(s) => Assembled::Session(Box::new(s)),
            Err(reason) => rejected(reason, &spans),
        }
    }

    /// The open traces and conversations, for a checkpoint.
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
            floor_ms: self.floor_ms,
            conversations: self
                .conversation_by_seq
                .values()
                .map(|id| self.conversations[id].clone())
                .collect(),
            released_traces: self.released_traces.clone().into(),
            released_conversations: self.released_conversations.clone().into(),
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
        self.conversations.clear();
        self.conversation_by_seq.clear();
        self.conversation_due.clear();
        self.conversation_of_trace.clear();
        for c in state.conversations {
            self.conversation_by_seq.insert(c.seq, c.id.clone());
            self.conversation_due
                .insert((c.deadline(self.config.grace_ms), c.seq));
            for t in &c.traces {
                self.conversation_of_trace.insert(*t, c.id.clone());
            }
            self.conversations.insert(c.id.clone(), c);
        }
        self.next_seq = state.next_seq;
        self.newest_end_ms = state.newest_end_ms;
        self.external_ms = state.external_ms;
        self.floor_ms = state.floor_ms;
        self.sources = state.sources;
        self.released_traces = state.released_traces.into();
        self.released_conversations = state.released_conversations.into();
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
        // A source that delivers again is active again: it holds the watermark where it is
        // (never back) until it catches up.
        a.push_from(1, vec![span(4, 2, "chat", 0, 2_000 + GRACE)], &mut out);
        assert_eq!(a.watermark(), Some(1_000 + 9 * GRACE));
        a.push_from(1, vec![span(5, 2, "chat", 0, 1_000 + 11 * GRACE)], &mut out);
        a.push_from(0, vec![span(6, 2, "chat", 0, 1_000 + 12 * GRACE)], &mut out);
        assert_eq!(
            a.watermark(),
            Some(1_000 + 10 * GRACE),
            "source 1 caught up"
        );
    }

    /// Issue 12: with several sources the watermark went back when an idle source resumed, so
    /// what it had released could be assembled again. Now released stays released, and spans
    /// of a released trace are dead-lettered as late.
    #[test]
    fn an_idle_source_that_resumes_never_moves_the_watermark_back() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.add_source(0);
        a.add_source(1);
        a.push_from(0, vec![span(1, 1, "invoke_agent", 0, 1_000)], &mut out);
        a.push_from(1, vec![span(9, 2, "chat", 0, 500)], &mut out);
        assert_eq!(a.watermark(), Some(500 - GRACE));
        // Source 1 goes quiet; source 0 moves on and trace 1 completes.
        a.set_source_idle(1, true, &mut out);
        a.push_from(0, vec![span(2, 2, "chat", 0, 1_000 + GRACE)], &mut out);
        assert_eq!(a.watermark(), Some(1_000));
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[1; 16]), 0)]);
        out.clear();
        // Source 1 resumes far behind: a late child and a second root of trace 1, and a new
        // trace whose root ended before the watermark.
        a.push_from(
            1,
            vec![
                span(1, 3, "chat", 900, 950),
                span(1, 4, "invoke_agent", 0, 990),
                span(3, 1, "invoke_agent", 0, 700),
            ],
            &mut out,
        );
        assert_eq!(a.watermark(), Some(1_000), "not 990 − grace");
        assert_eq!(codes(&out), vec!["late_span", "late_span"]);
        let Assembled::Rejected { reason, .. } = &out[0] else {
            unreachable!()
        };
        assert!(
            reason
                .to_string()
                .contains("after the trace had been released")
        );
        // Trace 3 was never released: it completes at once, behind the watermark (the
        // pipeline judges whether its windows are still open).
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[3; 16]), 0)]);
        assert_eq!(a.open_traces(), 2, "traces 2 and 9");
        // The floor survives a checkpoint.
        let mut b = assembler();
        b.restore(a.snapshot());
        assert_eq!(b.watermark(), Some(1_000));
        let mut again = Vec::new();
        b.push_from(1, vec![span(1, 5, "chat", 0, 10)], &mut again);
        assert_eq!(codes(&again), vec!["late_span"]);
    }

    /// The OTLP/HTTP receiver beside span partitions is one more source: it holds the
    /// watermark back while it delivers and stops once idle; when it delivers again it holds
    /// the watermark where it is, never back.
    #[test]
    fn the_receiver_beside_span_partitions_is_one_more_source() {
        let mut a = assembler();
        let mut out = Vec::new();
        a.add_source(0);
        a.add_source(RECEIVER_SOURCE);
        a.push_from(0, vec![span(1, 1, "invoke_agent", 0, 1_000)], &mut out);
        a.push_from(0, vec![span(2, 2, "chat", 0, 1_000 + 5 * GRACE)], &mut out);
        assert_eq!(
            a.watermark(),
            None,
            "the receiver has delivered nothing yet"
        );
        // A child of trace 1 comes over HTTP: it joins, and the receiver's progress holds the
        // watermark back.
        a.push_from(
            RECEIVER_SOURCE,
            vec![span(1, 3, "chat", 100, 800)],
            &mut out,
        );
        assert_eq!(a.watermark(), Some(800 - GRACE));
        assert!(out.is_empty());
        // No request for the idle timeout: the partition alone moves the watermark.
        a.set_source_idle(RECEIVER_SOURCE, true, &mut out);
        assert_eq!(a.watermark(), Some(1_000 + 4 * GRACE));
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[1; 16]), 1)]);
        out.clear();
        // The receiver's next request is behind: the watermark stays, its span of trace 1 is
        // late, and its own spans move the watermark once they pass the partition's.
        a.push_from(RECEIVER_SOURCE, vec![span(1, 4, "chat", 0, 900)], &mut out);
        assert_eq!(a.watermark(), Some(1_000 + 4 * GRACE));
        assert_eq!(codes(&out), vec!["late_span"]);
        a.push_from(0, vec![span(4, 2, "chat", 0, 1_000 + 9 * GRACE)], &mut out);
        assert_eq!(
            a.watermark(),
            Some(1_000 + 4 * GRACE),
            "the receiver is behind"
        );
        a.push_from(
            RECEIVER_SOURCE,
            vec![span(5, 2, "chat", 0, 1_000 + 7 * GRACE)],
            &mut out,
        );
        assert_eq!(a.watermark(), Some(1_000 + 6 * GRACE));
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

    fn in_conversation(mut s: Span, conversation: &str) -> Span {
        s.attributes.push((
            "gen_ai.conversation.id".into(),
            Value::Str(conversation.into()),
        ));
        s
    }

    fn by_conversation() -> Assembler {
        Assembler::new(&OtelConfig {
            grace_ms: GRACE,
            group_by: GroupBy::Conversation,
            ..OtelConfig::default()
        })
    }

    fn session_list(out: &[Assembled]) -> Vec<&Session> {
        out.iter()
            .filter_map(|a| match a {
                Assembled::Session(s) => Some(&**s),
                Assembled::Rejected { .. } => None,
            })
            .collect()
    }

    /// `groupBy: conversation`: the traces of one `gen_ai.conversation.id` are one session,
    /// complete once the watermark is more than `grace` past its last root's end; a trace
    /// without the attribute is a session of its own.
    #[test]
    fn a_conversation_is_one_session_of_its_traces() {
        let mut a = by_conversation();
        let mut out = Vec::new();
        // Turn 1 of c1 (the attribute on the root), a trace without conversation, turn 2 of
        // c1 (the attribute only on its model call) 20 s later.
        a.push(
            vec![
                in_conversation(span(1, 1, "invoke_agent", 0, 1_000), "c1"),
                span(1, 2, "chat", 100, 900),
                span(2, 1, "invoke_agent", 500, 2_000),
                span(3, 1, "invoke_agent", 21_000, 24_000),
                in_conversation(span(3, 2, "chat", 21_100, 23_000), "c1"),
                span(3, 3, "chat", 23_000, 23_500),
            ],
            &mut out,
        );
        assert!(out.is_empty());
        // The watermark reaches trace 3's root: both c1 traces have completed and joined c1;
        // trace 2 is a session of its own.
        a.push(vec![span(8, 2, "chat", 0, 24_000 + GRACE)], &mut out);
        assert_eq!(sessions(&out), vec![(crate::otel::hex(&[2; 16]), 0)]);
        assert_eq!(a.open_conversations(), 1);
        // A late child of trace 1 (within its conversation's grace) still joins c1.
        a.push(vec![span(1, 3, "chat", 200, 300)], &mut out);
        // Exactly `grace` after the last root's end: still open.
        a.push(vec![span(8, 3, "chat", 0, 24_000 + 2 * GRACE)], &mut out);
        assert_eq!(a.open_conversations(), 1);
        a.push(
            vec![span(8, 4, "chat", 0, 24_000 + 2 * GRACE + 1)],
            &mut out,
        );
        assert_eq!(a.open_conversations(), 0);
        let all = session_list(&out);
        assert_eq!(all.len(), 2);
        let c1 = all[1];
        assert_eq!(c1.session_id, "c1");
        // From the first turn's start to the last turn's end; the model calls of both turns,
        // the late child included.
        assert_eq!(c1.started_at, Some(0));
        assert_eq!(c1.event_time, 24_000);
        assert_eq!(c1.duration_ms, Some(24_000.0));
        assert_eq!(c1.turns, Some(4));
        // A trace of the released conversation is late.
        out.clear();
        a.push(
            vec![in_conversation(span(4, 1, "invoke_agent", 0, 24_500), "c1")],
            &mut out,
        );
        assert_eq!(codes(&out), vec!["late_span"]);
        let Assembled::Rejected { reason, .. } = &out[0] else {
            unreachable!()
        };
        assert!(reason.to_string().contains("conversation `c1`"), "{reason}");
    }

    #[test]
    fn open_conversations_survive_a_snapshot_and_are_capped() {
        let mut a = Assembler::new(&OtelConfig {
            grace_ms: GRACE,
            group_by: GroupBy::Conversation,
            max_open_traces: 2,
            ..OtelConfig::default()
        });
        let mut out = Vec::new();
        a.push(
            vec![
                in_conversation(span(1, 1, "invoke_agent", 0, 1_000), "c1"),
                in_conversation(span(2, 1, "invoke_agent", 0, 1_100), "c2"),
            ],
            &mut out,
        );
        a.advance(1_100, &mut out);
        assert_eq!((a.open_traces(), a.open_conversations()), (0, 2));
        let mut b = Assembler::new(&OtelConfig {
            grace_ms: GRACE,
            group_by: GroupBy::Conversation,
            max_open_traces: 2,
            ..OtelConfig::default()
        });
        b.restore(a.snapshot());
        assert_eq!(b.open_conversations(), 2);
        // A third conversation evicts the oldest, c1.
        for x in [&mut a, &mut b] {
            x.push(
                vec![in_conversation(span(3, 1, "invoke_agent", 0, 1_200), "c3")],
                &mut out,
            );
            x.advance(1_200, &mut out);
        }
        assert_eq!(
            codes(&out),
            vec!["evicted_open_conversation", "evicted_open_conversation"]
        );
        for x in [&mut a, &mut b] {
            x.finish(&mut out);
        }
        let ids: Vec<&str> = session_list(&out)
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        assert_eq!(ids, vec!["c2", "c3", "c2", "c3"]);
    }
}
