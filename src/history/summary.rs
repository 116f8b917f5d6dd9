//! The operational summary of many sessions of one key in one time bucket, and the bounded,
//! mergeable parts it is made of.
//!
//! `merge(summary(a), summary(b)) == summary(a ∪ b)` for every part, independent of order: counts
//! and fixed-point sums add, quantile sketches merge bin by bin, ranked lists keep the best `cap`
//! with ties broken by session id, id lists keep the earliest by (event time, id). Sizes are
//! bounded by caps, never by traffic. No I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::session::{EpochMs, PiiHandling, Session, Status, ToolStatus};
use crate::sketch::Quantiles;

/// Tool calls kept per listed session (the rest are counted in `tool_call_count`).
pub const MAX_TOOL_CALLS_LISTED: usize = 32;
/// Session ids kept per (PII type, handling, destination) in one summary.
pub const PII_IDS_PER_CELL: usize = 100;
/// Distinct `error_type` values counted per summary; the rest count as `(other)`.
pub const MAX_ERROR_TYPES: usize = 32;

/// Cost sums are kept in nano-dollars so that merged sums are bit-identical in any order.
const NANO: f64 = 1e9;

/// One tool call of a listed session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallWhy {
    pub name: String,
    pub status: Option<ToolStatus>,
    pub duration_ms: Option<f64>,
}

/// What made one session slow or expensive: everything a person needs to judge it, never
/// personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWhy {
    pub session_id: String,
    pub event_time: EpochMs,
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    pub status: Status,
    pub error_type: Option<String>,
    pub duration_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    /// True when the cost was estimated from the model catalog rather than reported.
    pub cost_derived: bool,
    pub turns: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub tool_call_count: u64,
    /// Tool calls that repeat the previous call's tool after it failed.
    pub retries: u64,
    /// Up to [`MAX_TOOL_CALLS_LISTED`] tool calls, in order.
    pub tool_calls: Vec<ToolCallWhy>,
    /// The fallback kind taken, when one was triggered.
    pub fallback: Option<String>,
}

impl SessionWhy {
    /// What a listed session shows; `with_calls` keeps its tool calls one by one (what explains
    /// a slow session; a costly one is explained by its counts).
    pub fn of(s: &Session, with_calls: bool) -> SessionWhy {
        let retries = s
            .tool_calls
            .windows(2)
            .filter(|w| w[0].status == Some(ToolStatus::Error) && w[0].name == w[1].name)
            .count() as u64;
        SessionWhy {
            session_id: s.session_id.clone(),
            event_time: s.event_time,
            agent: s.agent.clone(),
            prompt_version: s.prompt_version.clone(),
            model: s.model.clone(),
            status: s.status,
            error_type: s.error_type.clone(),
            duration_ms: s.duration_ms,
            cost_usd: s.cost_usd,
            cost_derived: s.cost_derived,
            turns: s.turns,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            tool_call_count: s.tool_calls.len() as u64,
            retries,
            tool_calls: s
                .tool_calls
                .iter()
                .take(if with_calls { MAX_TOOL_CALLS_LISTED } else { 0 })
                .map(|t| ToolCallWhy {
                    name: t.name.clone(),
                    status: t.status,
                    duration_ms: t.duration_ms,
                })
                .collect(),
            fallback: s
                .fallback
                .as_ref()
                .filter(|f| f.triggered)
                .map(|f| f.kind.clone().unwrap_or_else(|| "unspecified".into())),
        }
    }
}

/// A ranked entry: the value it is ranked by, and the session.
///
/// The session is shared, never copied: lists are kept sorted by inserting into a `Vec`, and
/// moving 16-byte entries instead of ~200-byte ones is what keeps an insert cheap; and one
/// session is listed in the pane, hour and day buckets it falls in, and merged from a delta into
/// stored buckets, so copying an entry must not copy its strings (the clones of boxed entries
/// were the largest share of a history flush in a profile).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: f64,
    pub why: Arc<SessionWhy>,
}

impl Entry {
    /// What the entry is ranked by: (value, session id).
    fn rank(&self) -> (f64, &str) {
        (self.value, &self.why.session_id)
    }
}

/// Rank of an entry: larger value first, ties by smaller session id.
fn ranks_before(a: (f64, &str), b: (f64, &str)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// [`ranks_before`] as an order of entries (best first).
fn rank_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    if ranks_before(a.rank(), b.rank()) {
        std::cmp::Ordering::Less
    } else if ranks_before(b.rank(), a.rank()) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

/// Two ranked runs as one, best first; an entry of `b` equal to one of `a` (same session and
/// value) is taken once.
fn merge_ranked(a: Vec<Entry>, b: impl Iterator<Item = Entry>) -> Vec<Entry> {
    let mut merged = Vec::with_capacity(a.len() + b.size_hint().0);
    let (mut a, mut b) = (a.into_iter().peekable(), b.peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => {
                if x.rank() == y.rank() {
                    b.next();
                    true
                } else {
                    ranks_before(x.rank(), y.rank())
                }
            }
        };
        merged.push(if take_a { a.next() } else { b.next() }.expect("peeked"));
    }
    merged
}

/// The sessions with the largest values (slowest, costliest), at most `cap`, best first — and
/// the best entry it ever had to drop, which is what makes a merged list's exactness checkable:
/// any session missing from a merge of lists ranks no better than the best dropped one.
///
/// Offers that beat the list's last entry wait unsorted in `fresh` and are sorted in by the batch
/// ([`TailList::compact`]): a day's list holds 10,000 entries, and inserting each offer in place
/// moved ~80 KB a time (a fifth of a history-keeping replay in a profile). A list is compacted
/// whenever it is merged, sealed in a delta or written, so what is read is always sorted.
#[derive(Debug, Clone, Deserialize)]
pub struct TailList {
    cap: usize,
    #[serde(deserialize_with = "compact_entries::deserialize")]
    items: Vec<Entry>,
    /// Offers not yet sorted in; each ranked before `items`' last entry (or the list was not
    /// full) when it came.
    #[serde(skip)]
    fresh: Vec<Entry>,
    /// The best-ranked (value, session id) ever dropped by this list or the lists merged into it.
    dropped: Option<(f64, String)>,
}

impl Serialize for TailList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let list = self.compacted();
        let mut st = s.serialize_struct("TailList", 3)?;
        st.serialize_field("cap", &list.cap)?;
        st.serialize_field("items", &compact_entries::Rows(&list.items))?;
        st.serialize_field("dropped", &list.dropped)?;
        st.end()
    }
}

impl PartialEq for TailList {
    fn eq(&self, other: &TailList) -> bool {
        let (a, b) = (self.compacted(), other.compacted());
        a.cap == b.cap && a.items == b.items && a.dropped == b.dropped
    }
}

impl TailList {
    pub fn new(cap: usize) -> TailList {
        TailList {
            cap,
            items: Vec::new(),
            fresh: Vec::new(),
            dropped: None,
        }
    }

    /// The entries, best first. Lists read from the store or built by merging are compacted;
    /// a list still taking offers must be [`TailList::compact`]ed first.
    pub fn items(&self) -> &[Entry] {
        debug_assert!(self.fresh.is_empty(), "a list read before it was compacted");
        &self.items
    }

    pub fn dropped(&self) -> Option<(f64, &str)> {
        self.dropped.as_ref().map(|(v, id)| (*v, id.as_str()))
    }

    fn note_dropped(&mut self, value: f64, id: &str) {
        if self
            .dropped
            .as_ref()
            .is_none_or(|(v, d)| ranks_before((value, id), (*v, d)))
        {
            self.dropped = Some((value, id.to_owned()));
        }
    }

    /// Offers one session; cheap when it does not make the list.
    pub fn offer(&mut self, value: f64, why: impl FnOnce() -> Arc<SessionWhy>, id: &str) {
        if !value.is_finite() {
            return;
        }
        if self.items.len() >= self.cap {
            let last = self.items.last().map(Entry::rank);
            if self.cap == 0 || last.is_some_and(|l| !ranks_before((value, id), l)) {
                self.note_dropped(value, id);
                return;
            }
        }
        self.fresh.push(Entry { value, why: why() });
        if self.fresh.len() >= (self.cap / 4).max(32) {
            self.compact();
        }
    }

    /// Sorts the waiting offers in (an offer equal to a listed entry counts once) and drops what
    /// falls beyond the cap.
    pub fn compact(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.sort_by(rank_order);
        fresh.dedup_by(|a, b| a.rank() == b.rank());
        let items = std::mem::take(&mut self.items);
        self.items = merge_ranked(items, fresh.into_iter());
        self.truncate();
    }

    /// This list compacted: itself when nothing waits, else a compacted copy (entries are
    /// shared, so a copy costs the list's length in 16-byte moves).
    fn compacted(&self) -> std::borrow::Cow<'_, TailList> {
        if self.fresh.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut t = self.clone();
            t.compact();
            std::borrow::Cow::Owned(t)
        }
    }

    fn truncate(&mut self) {
        while self.items.len() > self.cap {
            let e = self.items.pop().expect("longer than cap");
            self.note_dropped(e.value, &e.why.session_id);
        }
    }

    /// Merges another list in, keeping at most this list's cap.
    pub fn merge(&mut self, other: &TailList) {
        self.compact();
        let other = other.compacted();
        if let Some((v, id)) = &other.dropped {
            self.note_dropped(*v, id);
        }
        let items = std::mem::take(&mut self.items);
        self.items = merge_ranked(items, other.items.iter().cloned());
        self.truncate();
    }

    /// A copy holding at most `cap` entries (what a coarser bucket keeps).
    pub fn with_cap(&self, cap: usize) -> TailList {
        let mut t = self.clone();
        t.compact();
        t.cap = cap;
        t.truncate();
        t
    }

    /// The top `n` entries, and whether they are provably the exact top `n` of every session
    /// that was ever offered to the lists merged here: true when the `n`-th entry ranks before
    /// everything any list dropped.
    pub fn top(&self, n: usize) -> (&[Entry], bool) {
        debug_assert!(self.fresh.is_empty(), "a list read before it was compacted");
        if n > self.items.len() {
            // Fewer kept than asked for: exact only if nothing was ever dropped.
            return (&self.items, self.dropped.is_none());
        }
        let exact = match (&self.dropped, n) {
            (None, _) => true,
            (Some(_), 0) => true,
            (Some((v, id)), n) => {
                let e = &self.items[n - 1];
                ranks_before(e.rank(), (*v, id))
            }
        };
        (&self.items[..n], exact)
    }
}

/// Ranked entries as positional tuples: stored buckets hold up to 10,000 of them, and field
/// names repeated per entry would triple their size.
mod compact_entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Arc, Entry, SessionWhy, ToolCallWhy};
    use crate::session::{Status, ToolStatus};

    type Call = (String, Option<ToolStatus>, Option<f64>);
    pub(super) type Row = (
        f64,
        String,
        i64,
        (String, String, String),
        Status,
        Option<String>,
        (Option<f64>, Option<f64>, bool),
        (Option<u64>, Option<u64>, Option<u64>),
        (u64, u64),
        Vec<Call>,
        Option<String>,
    );

    /// [`Row`] borrowing the entry's strings: a snapshot copies no string to write it.
    type RowRef<'a> = (
        f64,
        &'a str,
        i64,
        (&'a str, &'a str, &'a str),
        Status,
        Option<&'a str>,
        (Option<f64>, Option<f64>, bool),
        (Option<u64>, Option<u64>, Option<u64>),
        (u64, u64),
        Calls<'a>,
        Option<&'a str>,
    );

    /// A row's tool calls, written as [`Call`]s straight from the entry.
    struct Calls<'a>(&'a [ToolCallWhy]);

    impl Serialize for Calls<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(
                self.0
                    .iter()
                    .map(|t| (t.name.as_str(), t.status, t.duration_ms)),
            )
        }
    }

    /// Entries written as rows ([`TailList`]'s `Serialize`), one at a time: a day's list is
    /// 10,000 rows, written at every history flush.
    pub struct Rows<'a>(pub &'a [Entry]);

    impl Serialize for Rows<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|e| -> RowRef<'_> {
                let w = &e.why;
                (
                    e.value,
                    w.session_id.as_str(),
                    w.event_time,
                    (
                        w.agent.as_str(),
                        w.prompt_version.as_str(),
                        w.model.as_str(),
                    ),
                    w.status,
                    w.error_type.as_deref(),
                    (w.duration_ms, w.cost_usd, w.cost_derived),
                    (w.turns, w.input_tokens, w.output_tokens),
                    (w.tool_call_count, w.retries),
                    Calls(&w.tool_calls),
                    w.fallback.as_deref(),
                )
            }))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
        let rows: Vec<Row> = Vec::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|r| Entry {
                value: r.0,
                why: Arc::new(SessionWhy {
                    session_id: r.1,
                    event_time: r.2,
                    agent: r.3.0,
                    prompt_version: r.3.1,
                    model: r.3.2,
                    status: r.4,
                    error_type: r.5,
                    duration_ms: r.6.0,
                    cost_usd: r.6.1,
                    cost_derived: r.6.2,
                    turns: r.7.0,
                    input_tokens: r.7.1,
                    output_tokens: r.7.2,
                    tool_call_count: r.8.0,
                    retries: r.8.1,
                    tool_calls: r
                        .9
                        .into_iter()
                        .map(|(name, status, duration_ms)| ToolCallWhy {
                            name,
                            status,
                            duration_ms,
                        })
                        .collect(),
                    fallback: r.10,
                }),
            })
            .collect())
    }
}

/// Sessions that had one kind of personal data, handled one way, going to one destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PiiCell {
    /// Sessions (each counted once per cell, however many items it had).
    pub sessions: u64,
    /// The earliest [`PII_IDS_PER_CELL`] session ids by (event time, id).
    pub ids: Vec<(EpochMs, String)>,
}

impl PiiCell {
    fn add(&mut self, t: EpochMs, id: &str) {
        self.sessions += 1;
        self.offer(t, id);
    }

    fn offer(&mut self, t: EpochMs, id: &str) {
        let pos = self
            .ids
            .partition_point(|(u, x)| (*u, x.as_str()) < (t, id));
        if pos >= PII_IDS_PER_CELL || self.ids.get(pos).is_some_and(|(_, x)| x == id) {
            return;
        }
        self.ids.insert(pos, (t, id.to_owned()));
        self.ids.truncate(PII_IDS_PER_CELL);
    }

    fn merge(&mut self, other: &PiiCell) {
        self.sessions += other.sessions;
        for (t, id) in &other.ids {
            self.offer(*t, id);
        }
    }
}

/// Where a PII item went: `model`, `tool:<name>`, `log`, … (as the record says), or `unknown`.
pub type PiiCellKey = (String, PiiHandling, String);

/// The session ids of each PII cell, stored apart from the counts.
pub type PiiIds = Vec<(PiiCellKey, Vec<(EpochMs, String)>)>;

/// Caps of the ranked lists of one summary (they differ by bucket resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub slowest: usize,
    pub costliest: usize,
}

/// What one session is listed as, built at most once however many lists take it (its pane,
/// hour and day bucket, of the whole key and of each segment).
pub struct Why<'a> {
    session: &'a Session,
    slow: Option<Arc<SessionWhy>>,
    costly: Option<Arc<SessionWhy>>,
}

impl<'a> Why<'a> {
    pub fn new(session: &'a Session) -> Why<'a> {
        Why {
            session,
            slow: None,
            costly: None,
        }
    }

    /// With its tool calls: what explains a slow session.
    fn slow(&mut self) -> Arc<SessionWhy> {
        let s = self.session;
        self.slow
            .get_or_insert_with(|| Arc::new(SessionWhy::of(s, true)))
            .clone()
    }

    /// Without them: a costly session is explained by its counts.
    fn costly(&mut self) -> Arc<SessionWhy> {
        let s = self.session;
        self.costly
            .get_or_insert_with(|| Arc::new(SessionWhy::of(s, false)))
            .clone()
    }
}

/// Everything the operational questions need about the sessions of one key in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsSummary {
    pub sessions: u64,
    /// Sessions per [`Status`], indexed by [`Status::index`].
    pub status: [u64; 4],
    /// Sessions per reported `error_type` (bounded; the rest under `(other)`).
    pub error_types: BTreeMap<String, u64>,
    /// Session duration, ms (sessions that report or imply one).
    pub latency: Quantiles,
    /// Session cost, USD (sessions with a reported or derived cost).
    pub cost: Quantiles,
    /// Sum of costs in nano-dollars, and how many sessions had a cost.
    pub cost_nano: i128,
    pub cost_sessions: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from and written to prompt caches; of `output_tokens`,
    /// those spent reasoning (sessions that report them; absent in buckets written before).
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub reasoning_output_tokens: u64,
    pub turns: u64,
    pub tool_calls: u64,
    /// Sessions that triggered a fallback.
    pub fallbacks: u64,
    /// Sessions with any personal data in context.
    pub pii_sessions: u64,
    #[serde(with = "crate::snapshot::pairs")]
    pub pii: BTreeMap<PiiCellKey, PiiCell>,
    pub slowest: TailList,
    pub costliest: TailList,
    pub first_seen: EpochMs,
    pub last_seen: EpochMs,
}

impl OpsSummary {
    pub fn new(caps: Caps) -> OpsSummary {
        OpsSummary {
            sessions: 0,
            status: [0; 4],
            error_types: BTreeMap::new(),
            latency: Quantiles::default(),
            cost: Quantiles::default(),
            cost_nano: 0,
            cost_sessions: 0,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            reasoning_output_tokens: 0,
            turns: 0,
            tool_calls: 0,
            fallbacks: 0,
            pii_sessions: 0,
            pii: BTreeMap::new(),
            slowest: TailList::new(caps.slowest),
            costliest: TailList::new(caps.costliest),
            first_seen: EpochMs::MAX,
            last_seen: EpochMs::MIN,
        }
    }

    /// Adds one session; `why` is what `s` is listed as, shared with the other summaries that
    /// take it.
    pub fn add(&mut self, s: &Session, why: &mut Why<'_>) {
        self.sessions += 1;
        self.status[s.status.index()] += 1;
        if let Some(e) = &s.error_type {
            count_error_type(&mut self.error_types, e, 1);
        }
        if let Some(d) = s.duration_ms {
            self.latency.add(d);
            self.slowest.offer(d, || why.slow(), &s.session_id);
        }
        if let Some(c) = s.cost_usd.filter(|c| c.is_finite()) {
            self.cost.add(c);
            self.cost_nano += (c * NANO).round() as i128;
            self.cost_sessions += 1;
            self.costliest.offer(c, || why.costly(), &s.session_id);
        }
        self.input_tokens += s.input_tokens.unwrap_or(0);
        self.output_tokens += s.output_tokens.unwrap_or(0);
        self.cache_read_input_tokens += s.cache_read_input_tokens.unwrap_or(0);
        self.cache_creation_input_tokens += s.cache_creation_input_tokens.unwrap_or(0);
        self.reasoning_output_tokens += s.reasoning_output_tokens.unwrap_or(0);
        self.turns += s.turns.unwrap_or(0);
        self.tool_calls += s.tool_calls.len() as u64;
        self.fallbacks += u64::from(s.fell_back());
        if !s.pii.is_empty() {
            self.pii_sessions += 1;
            let mut cells: Vec<PiiCellKey> = s
                .pii
                .iter()
                .map(|p| {
                    (
                        p.kind.clone(),
                        p.handling,
                        p.destination.clone().unwrap_or_else(|| "unknown".into()),
                    )
                })
                .collect();
            cells.sort();
            cells.dedup();
            for c in cells {
                self.pii
                    .entry(c)
                    .or_default()
                    .add(s.event_time, &s.session_id);
            }
        }
        self.first_seen = self.first_seen.min(s.event_time);
        self.last_seen = self.last_seen.max(s.event_time);
    }

    pub fn merge(&mut self, o: &OpsSummary) {
        self.sessions += o.sessions;
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (e, n) in &o.error_types {
            count_error_type(&mut self.error_types, e, *n);
        }
        self.latency.merge(&o.latency);
        self.cost.merge(&o.cost);
        self.cost_nano += o.cost_nano;
        self.cost_sessions += o.cost_sessions;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_input_tokens += o.cache_read_input_tokens;
        self.cache_creation_input_tokens += o.cache_creation_input_tokens;
        self.reasoning_output_tokens += o.reasoning_output_tokens;
        self.turns += o.turns;
        self.tool_calls += o.tool_calls;
        self.fallbacks += o.fallbacks;
        self.pii_sessions += o.pii_sessions;
        for (k, c) in &o.pii {
            self.pii.entry(k.clone()).or_default().merge(c);
        }
        self.slowest.merge(&o.slowest);
        self.costliest.merge(&o.costliest);
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
    }

    /// Sorts the ranked lists' waiting offers in ([`TailList::compact`]).
    pub fn compact(&mut self) {
        self.slowest.compact();
        self.costliest.compact();
    }

    /// A copy whose ranked lists hold at most `caps` entries (what a coarser bucket keeps).
    pub fn with_caps(&self, caps: Caps) -> OpsSummary {
        let mut s = self.clone();
        s.slowest = self.slowest.with_cap(caps.slowest);
        s.costliest = self.costliest.with_cap(caps.costliest);
        s
    }

    /// An empty summary whose lists are unbounded: what a query merges buckets into.
    pub fn unbounded() -> OpsSummary {
        OpsSummary::new(Caps {
            slowest: usize::MAX,
            costliest: usize::MAX,
        })
    }

    /// Splits a summary into what every question reads (counts, sketches, sums, PII cell
    /// counts) and the three bulky parts only some read: the ranked lists and the PII ids.
    /// [`OpsSummary::join`] puts them back together.
    pub fn split(mut self) -> (OpsSummary, TailList, TailList, PiiIds) {
        let slowest = std::mem::replace(&mut self.slowest, TailList::new(0));
        let costliest = std::mem::replace(&mut self.costliest, TailList::new(0));
        let ids = self
            .pii
            .iter_mut()
            .map(|(k, c)| (k.clone(), std::mem::take(&mut c.ids)))
            .collect();
        (self, slowest, costliest, ids)
    }

    /// The inverse of [`OpsSummary::split`]; a part left out stays empty (a question that did
    /// not read it must not use it).
    pub fn join(
        mut self,
        slowest: Option<TailList>,
        costliest: Option<TailList>,
        ids: Option<PiiIds>,
    ) -> OpsSummary {
        if let Some(t) = slowest {
            self.slowest = t;
        }
        if let Some(t) = costliest {
            self.costliest = t;
        }
        for (k, v) in ids.into_iter().flatten() {
            if let Some(c) = self.pii.get_mut(&k) {
                c.ids = v;
            }
        }
        self
    }

    /// Total cost in USD.
    pub fn cost_usd(&self) -> f64 {
        self.cost_nano as f64 / NANO
    }
}

fn count_error_type(map: &mut BTreeMap<String, u64>, e: &str, n: u64) {
    if let Some(c) = map.get_mut(e) {
        *c += n;
    } else if map.len() < MAX_ERROR_TYPES {
        map.insert(e.to_owned(), n);
    } else {
        *map.entry("(other)".to_owned()).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(id: &str) -> SessionWhy {
        SessionWhy {
            session_id: id.into(),
            event_time: 0,
            agent: "a".into(),
            prompt_version: "p".into(),
            model: "m".into(),
            status: Status::Success,
            error_type: None,
            duration_ms: None,
            cost_usd: None,
            cost_derived: false,
            turns: None,
            input_tokens: None,
            output_tokens: None,
            tool_call_count: 0,
            retries: 0,
            tool_calls: Vec::new(),
            fallback: None,
        }
    }

    /// Rows written one at a time are the bytes of the same rows collected and written as a
    /// `Vec` (what earlier versions wrote and what `deserialize` reads).
    #[test]
    fn rows_written_one_at_a_time_are_the_bytes_of_a_collected_vec() {
        let entries: Vec<Entry> = (0..3u32)
            .map(|i| {
                let mut w = why(&format!("s{i}"));
                w.error_type = (i == 1).then(|| "timeout".into());
                w.duration_ms = Some(1_000.5 * f64::from(i));
                w.turns = Some(u64::from(i));
                w.tool_calls = (0..i)
                    .map(|c| ToolCallWhy {
                        name: format!("tool{c}"),
                        status: Some(crate::session::ToolStatus::Error),
                        duration_ms: Some(f64::from(c)),
                    })
                    .collect();
                w.fallback = (i == 2).then(|| "handoff_human".into());
                Entry {
                    value: f64::from(i) * 0.25,
                    why: Arc::new(w),
                }
            })
            .collect();
        let collected: Vec<compact_entries::Row> = entries
            .iter()
            .map(|e| {
                let w = &e.why;
                (
                    e.value,
                    w.session_id.clone(),
                    w.event_time,
                    (w.agent.clone(), w.prompt_version.clone(), w.model.clone()),
                    w.status,
                    w.error_type.clone(),
                    (w.duration_ms, w.cost_usd, w.cost_derived),
                    (w.turns, w.input_tokens, w.output_tokens),
                    (w.tool_call_count, w.retries),
                    w.tool_calls
                        .iter()
                        .map(|t| (t.name.clone(), t.status, t.duration_ms))
                        .collect(),
                    w.fallback.clone(),
                )
            })
            .collect();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        ciborium::into_writer(&collected, &mut want).unwrap();
        ciborium::into_writer(&compact_entries::Rows(&entries), &mut got).unwrap();
        assert_eq!(got, want);
    }

    fn offer(t: &mut TailList, v: f64, id: &str) {
        t.offer(v, || Arc::new(why(id)), id);
    }

    /// Merging capped lists in any grouping keeps the same entries as one list that saw
    /// everything, and the exactness check is right: exact exactly when the n-th kept entry
    /// beats everything dropped.
    #[test]
    fn tail_lists_merge_like_union_and_know_when_they_are_exact() {
        let values: Vec<(f64, String)> = (0..500)
            .map(|i| ((((i * 7919) % 997) / 3) as f64, format!("s{i:04}")))
            .collect();
        let mut truth: Vec<(f64, String)> = values.clone();
        truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));

        // Ten lists of cap 20, merged into an unbounded list.
        let mut parts: Vec<TailList> = (0..10).map(|_| TailList::new(20)).collect();
        for (i, (v, id)) in values.iter().enumerate() {
            offer(&mut parts[i % 10], *v, id);
        }
        let mut merged = TailList::new(usize::MAX);
        for p in parts.iter().rev() {
            merged.merge(p);
        }
        for n in [1, 5, 20, 50, 150] {
            let (top, exact) = merged.top(n);
            let ids: Vec<&str> = top.iter().map(|e| e.why.session_id.as_str()).collect();
            let want: Vec<&str> = truth[..n].iter().map(|(_, id)| id.as_str()).collect();
            // Exact must never be claimed for a wrong answer, and at least the top 20 of
            // 500 spread over 10 lists of 20 must be provably exact.
            if exact {
                assert_eq!(ids, want, "n={n}");
            }
            if n <= 20 {
                assert!(exact, "n={n}");
            }
        }
        // 300 of 500 cannot come from ten lists of 20, and a list that dropped something
        // cannot claim to be complete.
        assert!(!merged.top(300).1);
        let mut small = TailList::new(2);
        for (v, id) in [(10.0, "a"), (9.0, "b"), (8.0, "c")] {
            offer(&mut small, v, id);
        }
        small.compact();
        assert_eq!(small.top(2).0.len(), 2);
        assert!(small.top(2).1);
        assert!(!small.top(3).1);
        assert_eq!(small.dropped(), Some((8.0, "c")));
    }

    /// A large list sorts its offers in by the batch: what it keeps, in order, and the best
    /// entry it dropped are those of a sort of everything offered, also when an offer repeats.
    #[test]
    fn a_large_list_keeps_the_exact_top_of_a_sort() {
        let values: Vec<(f64, String)> = (0..20_000u64)
            .map(|i| {
                (
                    ((i * 7919) % 4999) as f64,
                    format!("s{:05}", (i * 104_729) % 20_000),
                )
            })
            .collect();
        let mut list = TailList::new(1_000);
        for (v, id) in values.iter().chain(&values[..3_000]) {
            offer(&mut list, *v, id);
            if id == "s00007" {
                offer(&mut list, *v, id);
            }
        }
        let mut truth = values.clone();
        truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // Written as a checkpoint writes it, without compacting first.
        let mut bytes = Vec::new();
        ciborium::into_writer(&list, &mut bytes).unwrap();
        let read: TailList = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(read, list);
        list.compact();
        for l in [&list, &read] {
            let got: Vec<(f64, &str)> = l
                .items()
                .iter()
                .map(|e| (e.value, e.why.session_id.as_str()))
                .collect();
            let want: Vec<(f64, &str)> = truth[..1_000]
                .iter()
                .map(|(v, id)| (*v, id.as_str()))
                .collect();
            assert_eq!(got, want);
            assert_eq!(l.dropped(), Some((truth[1_000].0, truth[1_000].1.as_str())));
        }
    }

    #[test]
    fn pii_cells_count_sessions_once_and_keep_the_earliest_ids() {
        let mut c = PiiCell::default();
        for i in (0..300).rev() {
            c.add(i, &format!("s{i:03}"));
        }
        assert_eq!(c.sessions, 300);
        assert_eq!(c.ids.len(), PII_IDS_PER_CELL);
        assert_eq!(c.ids[0].1, "s000");
        assert_eq!(c.ids[99].1, "s099");
    }

    /// Cache and reasoning tokens are summed like the other counts, merge like them, and a
    /// bucket written before they existed reads as zero.
    #[test]
    fn cache_and_reasoning_tokens_are_summed_and_merged() {
        let decoder = crate::ingest::decode::Decoder::new(std::sync::Arc::new(
            crate::catalog::Catalog::embedded(),
        ));
        let line = |id: &str, usage: &str| {
            let text = format!(
                r#"{{"session_id":"{id}","agent":"a","prompt_version":"p","model":"m","ended_at":"2026-11-01T00:00:02Z","status":"success","usage":{{{usage}}}}}"#
            );
            decoder.decode(text.as_bytes()).unwrap()
        };
        let sessions = [
            line(
                "s1",
                r#""input_tokens":100,"cache_read_input_tokens":60,"reasoning_output_tokens":7"#,
            ),
            line(
                "s2",
                r#""input_tokens":50,"cache_creation_input_tokens":30"#,
            ),
            line("s3", r#""input_tokens":10"#),
        ];
        let caps = Caps {
            slowest: 5,
            costliest: 5,
        };
        let mut whole = OpsSummary::new(caps);
        let (mut a, mut b) = (OpsSummary::new(caps), OpsSummary::new(caps));
        for (i, s) in sessions.iter().enumerate() {
            whole.add(s, &mut Why::new(s));
            if i == 0 { &mut a } else { &mut b }.add(s, &mut Why::new(s));
        }
        a.merge(&b);
        for x in [&whole, &a] {
            assert_eq!(
                (
                    x.input_tokens,
                    x.cache_read_input_tokens,
                    x.cache_creation_input_tokens,
                    x.reasoning_output_tokens
                ),
                (160, 60, 30, 7)
            );
        }
        // The store's form (CBOR) of a bucket without the three counts.
        let ciborium::Value::Map(fields) = ciborium::Value::serialized(&whole).unwrap() else {
            panic!("a summary is a map")
        };
        let old = ciborium::Value::Map(
            fields
                .into_iter()
                .filter(|(k, _)| {
                    !k.as_text().is_some_and(|k| {
                        k.ends_with("put_tokens") && k != "input_tokens" && k != "output_tokens"
                    })
                })
                .collect(),
        );
        let old: OpsSummary = old.deserialized().unwrap();
        assert_eq!((old.input_tokens, old.cache_read_input_tokens), (160, 0));
    }
}
