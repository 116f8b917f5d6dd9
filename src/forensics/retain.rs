//! The evidence forensics works from: per window key (and segment) and pane, a compact
//! [`ForensicPane`] — sessions, the sessions counting against each objective, counts by layer
//! value — kept for a bounded lookback after the pane's windows closed. Pure; no I/O, no clock.
//!
//! Bounds (what one key costs is measured by `retained_bytes_per_key_of_a_steady_day`):
//!
//! - at most [`MAX_VALUES`] distinct values per layer per pane; the rest are counted under
//!   [`OTHER`];
//! - at most [`MAX_BAD_IDS`] ids of sessions counting against an objective per pane; beyond
//!   that only `dropped` counts;
//! - panes older than the retention (the SLO period, at most [`MAX_RETENTION_MS`] = 7 days,
//!   at least the window size) are dropped, and never more than [`MAX_PANES`] per key.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashSet};
use serde::{Deserialize, Serialize};

use super::AffectedReason;
use crate::finding::Detail;
use crate::session::{EpochMs, Session, Status, ToolStatus};

/// Distinct values kept per layer and pane.
pub const MAX_VALUES: usize = 16;
/// Ids of sessions counting against an objective kept per pane.
pub const MAX_BAD_IDS: usize = 500;
/// The label that collects values beyond [`MAX_VALUES`].
pub const OTHER: &str = "(other)";
/// The longest lookback kept.
pub const MAX_RETENTION_MS: i64 = 7 * 86_400_000;
/// The most panes kept per key and segment (7 days of 5-minute panes).
pub const MAX_PANES: usize = 2_016;

/// Sessions and, per tracked objective, those counting against it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub sessions: u64,
    pub bad: Vec<u64>,
}

impl Cell {
    fn merge(&mut self, other: &Cell) {
        self.sessions += other.sessions;
        if self.bad.len() < other.bad.len() {
            self.bad.resize(other.bad.len(), 0);
        }
        for (n, b) in self.bad.iter_mut().zip(&other.bad) {
            *n += b;
        }
    }

    /// Sessions counting against tracked objective `j`.
    pub fn bad(&self, j: usize) -> u64 {
        self.bad.get(j).copied().unwrap_or(0)
    }
}

/// One tool in one pane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCell {
    pub calls: u64,
    pub errors: u64,
    /// Sum of the calls' durations in µs, fixed point so that merging panes in any order
    /// gives the same sum (a key's panes are merged in whatever order partitions deliver).
    pub latency_us: u64,
    /// Sessions calling the tool (and those of them counting against each objective).
    pub sessions: Cell,
}

impl ToolCell {
    fn merge(&mut self, other: &ToolCell) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency_us += other.latency_us;
        self.sessions.merge(&other.sessions);
    }
}

/// A session counting against an objective, as retained (key and segment are the pane's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadSession {
    pub session_id: String,
    pub event_time: EpochMs,
    /// The session's segment, when the spec segments.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segment: Option<Arc<str>>,
    pub reason: AffectedReason,
}

/// Fixed-point scale of [`ObjectivePane`]'s sums: 1e-9 of the unit.
pub const FIXED: f64 = 1e9;

fn fixed(v: f64) -> i128 {
    (v * FIXED).round() as i128
}

/// One tracked objective in one pane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectivePane {
    /// Sessions counting against the objective.
    pub bad: u64,
    /// Sessions the objective's value was known for, with sum and sum of squares of it (the
    /// Gaussian series of mean objectives), in fixed point ([`FIXED`] per unit) so that panes
    /// merged in any order give the same sums.
    pub count: u64,
    pub sum: i128,
    pub sum_sq: i128,
    /// The first [`MAX_BAD_IDS`] bad sessions in arrival order.
    pub kept: Vec<BadSession>,
    /// Bad sessions beyond the cap.
    pub dropped: u64,
}

/// Why a retained session counts against an objective: an [`AffectedReason`] whose names are
/// shared (`Arc<str>` made once per tracked objective), so a bad session allocates no string
/// for its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Status(Status),
    /// The signal's label, e.g. `resolved=false`.
    Signal(Arc<str>),
    Value {
        field: Arc<str>,
        value: f64,
        threshold: f64,
    },
    Violation(Box<Detail>),
    /// Drift objectives keep their sessions in `forensics::drift`; kept here so a pane's
    /// snapshot reads back whatever reason it holds.
    Drifted {
        feature: Arc<str>,
        value: Option<f64>,
    },
}

impl Reason {
    /// The reason as exported.
    pub fn to_affected(&self) -> AffectedReason {
        match self {
            Reason::Status(status) => AffectedReason::Status { status: *status },
            Reason::Signal(signal) => AffectedReason::Signal {
                signal: signal.to_string(),
            },
            Reason::Value {
                field,
                value,
                threshold,
            } => AffectedReason::Value {
                field: field.to_string(),
                value: *value,
                threshold: *threshold,
            },
            Reason::Violation(detail) => AffectedReason::Violation {
                detail: (**detail).clone(),
            },
            Reason::Drifted { feature, value } => AffectedReason::Drifted {
                feature: feature.to_string(),
                value: *value,
            },
        }
    }

    fn from_affected(r: AffectedReason, names: &mut Interner) -> Reason {
        match r {
            AffectedReason::Status { status } => Reason::Status(status),
            AffectedReason::Signal { signal } => Reason::Signal(names.intern(&signal)),
            AffectedReason::Value {
                field,
                value,
                threshold,
            } => Reason::Value {
                field: names.intern(&field),
                value,
                threshold,
            },
            AffectedReason::Violation { detail } => Reason::Violation(Box::new(detail)),
            AffectedReason::Drifted { feature, value } => Reason::Drifted {
                feature: names.intern(&feature),
                value,
            },
        }
    }
}

/// How one session stands against one tracked objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why it counts against the objective, or `None` when it does not.
    pub bad: Option<Reason>,
    /// The objective's value for the session (mean objectives).
    pub value: Option<f64>,
}

/// What one key (and segment) did in a range of panes, counts only: the totals attribution
/// compares (before and after an onset), and the snapshot form of one retained pane
/// ([`RetainedPane`] is written and read in this layout, so checkpoints of before the compact
/// panes restore).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForensicPane {
    pub sessions: u64,
    /// Indexed like the runtime's tracked objectives.
    pub objectives: Vec<ObjectivePane>,
    pub prompt: BTreeMap<String, Cell>,
    pub model: BTreeMap<String, Cell>,
    pub provider: BTreeMap<String, Cell>,
    /// Failed sessions by `provider/error_type` (the status when no `error_type`).
    pub errors: BTreeMap<String, Cell>,
    /// Sessions by segment label (`channel=web`), when the spec segments.
    pub segment: BTreeMap<String, Cell>,
    pub tools: BTreeMap<String, ToolCell>,
}

fn merge_map(into: &mut BTreeMap<String, Cell>, from: &BTreeMap<String, Cell>) {
    for (k, c) in from {
        into.entry(k.clone()).or_default().merge(c);
    }
}

impl ForensicPane {
    /// Adds another pane's counts (not its session ids): the totals of a range of panes.
    pub fn merge_counts(&mut self, other: &ForensicPane) {
        self.sessions += other.sessions;
        if self.objectives.len() < other.objectives.len() {
            self.objectives
                .resize_with(other.objectives.len(), ObjectivePane::default);
        }
        for (a, b) in self.objectives.iter_mut().zip(&other.objectives) {
            a.bad += b.bad;
            a.count += b.count;
            a.sum += b.sum;
            a.sum_sq += b.sum_sq;
            a.dropped += b.dropped;
        }
        merge_map(&mut self.prompt, &other.prompt);
        merge_map(&mut self.model, &other.model);
        merge_map(&mut self.provider, &other.provider);
        merge_map(&mut self.errors, &other.errors);
        merge_map(&mut self.segment, &other.segment);
        for (k, t) in &other.tools {
            self.tools.entry(k.clone()).or_default().merge(t);
        }
    }

    /// Sessions counting against tracked objective `j`.
    pub fn bad(&self, j: usize) -> u64 {
        self.objectives.get(j).map_or(0, |o| o.bad)
    }
}

/// Layer values shared by the panes of one spec: each distinct value is allocated once, and a
/// pane holds a reference to it.
#[derive(Debug, Clone, Default)]
pub struct Interner(FxHashSet<Arc<str>>);

impl Interner {
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(v) = self.0.get(value) {
            return v.clone();
        }
        let v: Arc<str> = Arc::from(value);
        self.0.insert(v.clone());
        v
    }

    /// Forgets values no pane holds any more.
    fn forget_unused(&mut self) {
        self.0.retain(|v| Arc::strong_count(v) > 1);
    }
}

/// The layers a pane counts sessions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    Prompt,
    Model,
    Provider,
    /// `provider/error_type` of failed sessions.
    Errors,
    Segment,
    Tool,
}

/// One value of one layer in a pane; the call counters are a tool's only.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    layer: LayerKind,
    value: Arc<str>,
    calls: u32,
    errors: u32,
    /// Sum of the calls' durations in µs (fixed point, see [`ToolCell::latency_us`]).
    latency_us: u64,
}

/// A retained bad session; its id is a range of the pane's id arena.
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    id: (u32, u32),
    event_time: EpochMs,
    segment: Option<Arc<str>>,
    reason: Reason,
}

/// One tracked objective in one retained pane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectiveTally {
    /// Sessions counting against the objective.
    pub bad: u64,
    /// Sessions the objective's value was known for, with the fixed-point sums of it and its
    /// square (see [`ObjectivePane`]).
    pub count: u64,
    pub sum: i128,
    pub sum_sq: i128,
    /// Bad sessions beyond the cap.
    pub dropped: u64,
    /// The first [`MAX_BAD_IDS`] bad sessions in arrival order.
    kept: Vec<Kept>,
}

/// A retained bad session, borrowed from its pane.
#[derive(Debug, Clone, Copy)]
pub struct KeptSession<'a> {
    pub session_id: &'a str,
    pub event_time: EpochMs,
    pub segment: Option<&'a Arc<str>>,
    pub reason: &'a Reason,
}

/// What one key (and segment) did in one pane, as retained: [`ForensicPane`]'s counts in a
/// compact form. Layer values are shared `Arc<str>`s found by a scan of a short list (at most
/// [`MAX_VALUES`] + 1 per layer), counts are `u32` in one flat table, and the ids of bad
/// sessions are one string per pane, so a session adds no allocation to a pane that already
/// holds its values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetainedPane {
    pub sessions: u64,
    /// Indexed like the runtime's tracked objectives.
    objectives: Vec<ObjectiveTally>,
    entries: Vec<Entry>,
    /// Per entry, `1 + objectives.len()` counters: its sessions, then those counting against
    /// each objective.
    counts: Vec<u32>,
    /// The ids of the kept bad sessions, one after another.
    ids: String,
}

impl RetainedPane {
    fn width(&self) -> usize {
        1 + self.objectives.len()
    }

    /// Makes room for `n` tracked objectives.
    fn widen(&mut self, n: usize) {
        if n <= self.objectives.len() {
            return;
        }
        let (old, new) = (self.width(), 1 + n);
        let mut counts = vec![0; self.entries.len() * new];
        for (to, from) in counts.chunks_mut(new).zip(self.counts.chunks(old)) {
            to[..old].copy_from_slice(from);
        }
        self.counts = counts;
        self.objectives.resize_with(n, ObjectiveTally::default);
    }

    /// The entry of `value` in `layer`, or of [`OTHER`] once the layer holds [`MAX_VALUES`]
    /// values; `make` builds the value's text when it is new to the pane.
    fn entry(
        &mut self,
        layer: LayerKind,
        matches: impl Fn(&str) -> bool,
        make: impl FnOnce(&mut Interner) -> Arc<str>,
        names: &mut Interner,
    ) -> usize {
        let mut in_layer = 0;
        let mut other = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.layer == layer {
                if matches(&e.value) {
                    return i;
                }
                if &*e.value == OTHER {
                    other = Some(i);
                }
                in_layer += 1;
            }
        }
        let value = if in_layer >= MAX_VALUES {
            if let Some(i) = other {
                return i;
            }
            names.intern(OTHER)
        } else {
            make(names)
        };
        self.entries.push(Entry {
            layer,
            value,
            calls: 0,
            errors: 0,
            latency_us: 0,
        });
        self.counts.resize(self.entries.len() * self.width(), 0);
        self.entries.len() - 1
    }

    fn entry_of(&mut self, layer: LayerKind, value: &str, names: &mut Interner) -> usize {
        self.entry(layer, |v| v == value, |n| n.intern(value), names)
    }

    /// Counts a session in entry `i`.
    fn add(&mut self, i: usize, outcomes: &[Outcome]) {
        let w = self.width();
        let row = &mut self.counts[i * w..(i + 1) * w];
        row[0] += 1;
        for (n, o) in row[1..].iter_mut().zip(outcomes) {
            *n += u32::from(o.bad.is_some());
        }
    }

    /// Adds one session with its outcome against every tracked objective.
    pub fn observe(
        &mut self,
        s: &Session,
        segment: Option<&Arc<str>>,
        outcomes: &[Outcome],
        names: &mut Interner,
    ) {
        self.sessions += 1;
        self.widen(outcomes.len());
        let mut id = None;
        for (pane, o) in self.objectives.iter_mut().zip(outcomes) {
            if let Some(v) = o.value {
                pane.count += 1;
                pane.sum += fixed(v);
                pane.sum_sq += fixed(v * v);
            }
            if let Some(reason) = &o.bad {
                pane.bad += 1;
                if pane.kept.len() < MAX_BAD_IDS {
                    let id = *id.get_or_insert_with(|| {
                        let start = self.ids.len() as u32;
                        self.ids.push_str(&s.session_id);
                        (start, self.ids.len() as u32)
                    });
                    pane.kept.push(Kept {
                        id,
                        event_time: s.event_time,
                        segment: segment.cloned(),
                        reason: reason.clone(),
                    });
                } else {
                    pane.dropped += 1;
                }
            }
        }
        let i = self.entry_of(LayerKind::Prompt, &s.prompt_version, names);
        self.add(i, outcomes);
        let i = self.entry_of(LayerKind::Model, &s.model, names);
        self.add(i, outcomes);
        let provider = s.provider.as_deref().unwrap_or("(none)");
        let i = self.entry_of(LayerKind::Provider, provider, names);
        self.add(i, outcomes);
        if s.status != Status::Success {
            let what = s.error_type.as_deref().unwrap_or(s.status.as_str());
            // `provider/what`, compared in parts: the label is only made when new to the pane.
            let i = self.entry(
                LayerKind::Errors,
                |v| {
                    v.len() == provider.len() + 1 + what.len()
                        && v.starts_with(provider)
                        && v.ends_with(what)
                        && v.as_bytes()[provider.len()] == b'/'
                },
                |n| n.intern(&format!("{provider}/{what}")),
                names,
            );
            self.add(i, outcomes);
        }
        if let Some(seg) = segment {
            let i = self.entry(LayerKind::Segment, |v| v == &**seg, |_| seg.clone(), names);
            self.add(i, outcomes);
        }
        // Each tool's session counters once per session, however often it was called: the
        // entries already counted are remembered (a session calls few distinct tools).
        let mut seen: [usize; 8] = [usize::MAX; 8];
        let mut seen_more: Vec<usize> = Vec::new();
        for call in &s.tool_calls {
            let i = self.entry_of(LayerKind::Tool, &call.name, names);
            let e = &mut self.entries[i];
            e.calls += 1;
            e.errors += u32::from(call.status == Some(ToolStatus::Error));
            e.latency_us += (call.duration_ms.unwrap_or(0.0).max(0.0) * 1e3).round() as u64;
            if seen.contains(&i) || seen_more.contains(&i) {
                continue;
            }
            match seen.iter_mut().find(|x| **x == usize::MAX) {
                Some(slot) => *slot = i,
                None => seen_more.push(i),
            }
            self.add(i, outcomes);
        }
    }

    /// Sessions counting against tracked objective `j`.
    pub fn bad(&self, j: usize) -> u64 {
        self.objectives.get(j).map_or(0, |o| o.bad)
    }

    /// Tracked objective `j`'s counts in this pane.
    pub fn objective(&self, j: usize) -> Option<&ObjectiveTally> {
        self.objectives.get(j)
    }

    /// The kept bad sessions of tracked objective `j`, in arrival order.
    pub fn kept(&self, j: usize) -> impl Iterator<Item = KeptSession<'_>> {
        self.objectives
            .get(j)
            .into_iter()
            .flat_map(|o| &o.kept)
            .map(|k| KeptSession {
                session_id: &self.ids[k.id.0 as usize..k.id.1 as usize],
                event_time: k.event_time,
                segment: k.segment.as_ref(),
                reason: &k.reason,
            })
    }

    fn cell(&self, i: usize) -> Cell {
        let w = self.width();
        let row = &self.counts[i * w..(i + 1) * w];
        Cell {
            sessions: u64::from(row[0]),
            bad: row[1..].iter().map(|n| u64::from(*n)).collect(),
        }
    }

    /// Adds this pane's counts (not its session ids) to `into`.
    pub fn add_counts_to(&self, into: &mut ForensicPane) {
        into.merge_counts(&self.to_pane(false));
    }

    /// The pane in [`ForensicPane`]'s form, with the kept sessions or without.
    pub fn to_pane(&self, with_ids: bool) -> ForensicPane {
        let mut p = ForensicPane {
            sessions: self.sessions,
            objectives: self
                .objectives
                .iter()
                .enumerate()
                .map(|(j, o)| ObjectivePane {
                    bad: o.bad,
                    count: o.count,
                    sum: o.sum,
                    sum_sq: o.sum_sq,
                    kept: if with_ids {
                        self.kept(j)
                            .map(|k| BadSession {
                                session_id: k.session_id.to_owned(),
                                event_time: k.event_time,
                                segment: k.segment.cloned(),
                                reason: k.reason.to_affected(),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    dropped: o.dropped,
                })
                .collect(),
            ..ForensicPane::default()
        };
        for (i, e) in self.entries.iter().enumerate() {
            let name = e.value.to_string();
            let cell = self.cell(i);
            let map = match e.layer {
                LayerKind::Prompt => &mut p.prompt,
                LayerKind::Model => &mut p.model,
                LayerKind::Provider => &mut p.provider,
                LayerKind::Errors => &mut p.errors,
                LayerKind::Segment => &mut p.segment,
                LayerKind::Tool => {
                    p.tools.insert(
                        name,
                        ToolCell {
                            calls: u64::from(e.calls),
                            errors: u64::from(e.errors),
                            latency_us: e.latency_us,
                            sessions: cell,
                        },
                    );
                    continue;
                }
            };
            map.insert(name, cell);
        }
        p
    }

    /// A pane restored from its snapshot form, its values shared through `names`.
    pub fn from_pane(p: ForensicPane, names: &mut Interner) -> RetainedPane {
        let cells = p
            .prompt
            .values()
            .chain(p.model.values())
            .chain(p.provider.values())
            .chain(p.errors.values())
            .chain(p.segment.values())
            .chain(p.tools.values().map(|t| &t.sessions));
        let n = cells
            .map(|c| c.bad.len())
            .fold(p.objectives.len(), usize::max);
        let mut out = RetainedPane {
            sessions: p.sessions,
            ..RetainedPane::default()
        };
        out.widen(n);
        let w = out.width();
        let to_u32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let mut push =
            |out: &mut RetainedPane, layer, value: &str, cell: &Cell, tool: (u64, u64, u64)| {
                out.entries.push(Entry {
                    layer,
                    value: names.intern(value),
                    calls: to_u32(tool.0),
                    errors: to_u32(tool.1),
                    latency_us: tool.2,
                });
                let mut row = vec![0; w];
                row[0] = to_u32(cell.sessions);
                for (to, from) in row[1..].iter_mut().zip(&cell.bad) {
                    *to = to_u32(*from);
                }
                out.counts.extend(row);
            };
        let layers = [
            (LayerKind::Prompt, &p.prompt),
            (LayerKind::Model, &p.model),
            (LayerKind::Provider, &p.provider),
            (LayerKind::Errors, &p.errors),
            (LayerKind::Segment, &p.segment),
        ];
        for (layer, map) in layers {
            for (v, c) in map {
                push(&mut out, layer, v, c, (0, 0, 0));
            }
        }
        for (v, t) in &p.tools {
            push(
                &mut out,
                LayerKind::Tool,
                v,
                &t.sessions,
                (t.calls, t.errors, t.latency_us),
            );
        }
        for (tally, o) in out.objectives.iter_mut().zip(p.objectives) {
            tally.bad = o.bad;
            tally.count = o.count;
            tally.sum = o.sum;
            tally.sum_sq = o.sum_sq;
            tally.dropped = o.dropped;
            for b in o.kept {
                let start = out.ids.len() as u32;
                out.ids.push_str(&b.session_id);
                tally.kept.push(Kept {
                    id: (start, out.ids.len() as u32),
                    event_time: b.event_time,
                    segment: b.segment.map(|s| names.intern(&s)),
                    reason: Reason::from_affected(b.reason, names),
                });
            }
        }
        out
    }
}

/// Heap bytes of a `BTreeMap` of `n` entries, about: std's nodes hold up to 11 entries each,
/// and a node is allocated whole however few it holds.
fn btree_bytes<K, V>(n: usize) -> usize {
    let node = 11 * (std::mem::size_of::<K>() + std::mem::size_of::<V>()) + 16;
    n.div_ceil(11) * node
}

impl ForensicPane {
    /// Heap bytes this form of a pane holds, about (the capacities asked of the allocator; the
    /// memory figure of `retained_bytes_per_key_of_a_steady_day`).
    pub fn heap_bytes(&self) -> usize {
        let cells = |m: &BTreeMap<String, Cell>| {
            btree_bytes::<String, Cell>(m.len())
                + m.iter()
                    .map(|(k, c)| k.capacity() + c.bad.capacity() * 8)
                    .sum::<usize>()
        };
        let reason = |r: &AffectedReason| match r {
            AffectedReason::Signal { signal } => signal.capacity(),
            AffectedReason::Value { field, .. } => field.capacity(),
            _ => 0,
        };
        self.objectives.capacity() * std::mem::size_of::<ObjectivePane>()
            + self
                .objectives
                .iter()
                .map(|o| {
                    o.kept.capacity() * std::mem::size_of::<BadSession>()
                        + o.kept
                            .iter()
                            .map(|b| b.session_id.capacity() + reason(&b.reason))
                            .sum::<usize>()
                })
                .sum::<usize>()
            + cells(&self.prompt)
            + cells(&self.model)
            + cells(&self.provider)
            + cells(&self.errors)
            + cells(&self.segment)
            + btree_bytes::<String, ToolCell>(self.tools.len())
            + self
                .tools
                .iter()
                .map(|(k, t)| k.capacity() + t.sessions.bad.capacity() * 8)
                .sum::<usize>()
    }
}

impl RetainedPane {
    /// Heap bytes this pane holds, about (shared layer values and labels not counted: one
    /// copy serves every pane).
    pub fn heap_bytes(&self) -> usize {
        self.objectives.capacity() * std::mem::size_of::<ObjectiveTally>()
            + self
                .objectives
                .iter()
                .map(|o| o.kept.capacity() * std::mem::size_of::<Kept>())
                .sum::<usize>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.counts.capacity() * 4
            + self.ids.capacity()
    }
}

impl Serialize for RetainedPane {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_pane(true).serialize(s)
    }
}

/// Where an objective of one key (and segment) stands for forensics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// A breach streak is open (its first finding carried the forensics).
    pub open: bool,
    /// Panes before this time have been handed out as affected sessions.
    pub handed_until: Option<EpochMs>,
    /// End of the window that closed the last streak: the next onset looks no further back.
    pub closed_at: Option<EpochMs>,
}

/// Every key's retained panes and every objective's track, for one spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    bound(
        serialize = "K: Serialize + Eq + Hash + Ord",
        deserialize = "K: Deserialize<'de> + Eq + Hash + Ord"
    ),
    from = "RetainedSnapshot<K>"
)]
pub struct Retained<K> {
    #[serde(with = "crate::snapshot::pairs")]
    pub panes: HashMap<K, BTreeMap<EpochMs, RetainedPane>, FxBuildHasher>,
    /// Per (tracked objective, key).
    #[serde(with = "crate::snapshot::pairs")]
    pub tracks: BTreeMap<(usize, K), Track>,
    /// Event times at which a configuration reload replaced the spec (newest session then).
    #[serde(default)]
    pub reloads: Vec<EpochMs>,
    /// The layer values and reason labels the panes share.
    #[serde(skip)]
    names: Interner,
}

/// [`Retained`] as its snapshot is read: panes in [`ForensicPane`]'s form.
#[derive(Deserialize)]
#[serde(bound(deserialize = "K: Deserialize<'de> + Eq + Hash + Ord"))]
struct RetainedSnapshot<K> {
    #[serde(with = "crate::snapshot::pairs")]
    panes: Vec<(K, BTreeMap<EpochMs, ForensicPane>)>,
    #[serde(with = "crate::snapshot::pairs")]
    tracks: BTreeMap<(usize, K), Track>,
    #[serde(default)]
    reloads: Vec<EpochMs>,
}

impl<K: Eq + Hash> From<RetainedSnapshot<K>> for Retained<K> {
    fn from(s: RetainedSnapshot<K>) -> Self {
        let mut names = Interner::default();
        let panes = s
            .panes
            .into_iter()
            .map(|(k, panes)| {
                let panes = panes
                    .into_iter()
                    .map(|(t, p)| (t, RetainedPane::from_pane(p, &mut names)))
                    .collect();
                (k, panes)
            })
            .collect();
        Retained {
            panes,
            tracks: s.tracks,
            reloads: s.reloads,
            names,
        }
    }
}

impl<K: Eq + Hash> Retained<K> {
    /// Retained panes and tracks from their snapshot form (a checkpoint written pane by pane,
    /// [`crate::checkpoint`]), as a whole snapshot would restore them.
    pub fn from_parts(
        panes: Vec<(K, BTreeMap<EpochMs, ForensicPane>)>,
        tracks: BTreeMap<(usize, K), Track>,
        reloads: Vec<EpochMs>,
    ) -> Retained<K> {
        RetainedSnapshot {
            panes,
            tracks,
            reloads,
        }
        .into()
    }
}

impl<K> Default for Retained<K> {
    fn default() -> Self {
        Retained {
            panes: HashMap::default(),
            tracks: BTreeMap::new(),
            reloads: Vec::new(),
            names: Interner::default(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Retained<K> {
    /// Adds a session to its key's pane starting at `pane`.
    pub fn observe(
        &mut self,
        key: &K,
        pane: EpochMs,
        s: &Session,
        segment: Option<&Arc<str>>,
        outcomes: &[Outcome],
    ) {
        let panes = match self.panes.get_mut(key) {
            Some(p) => p,
            None => self.panes.entry(key.clone()).or_default(),
        };
        panes
            .entry(pane)
            .or_default()
            .observe(s, segment, outcomes, &mut self.names);
    }

    /// Drops panes that start before `oldest`, keeps at most [`MAX_PANES`] per key, forgets
    /// keys without panes and without an open streak, and reloads older than `oldest`.
    pub fn trim(&mut self, oldest: EpochMs) {
        let mut dropped = false;
        self.panes.retain(|_, panes| {
            while let Some((&start, _)) = panes.first_key_value() {
                if start < oldest || panes.len() > MAX_PANES {
                    panes.pop_first();
                    dropped = true;
                } else {
                    break;
                }
            }
            !panes.is_empty()
        });
        if dropped {
            self.names.forget_unused();
        }
        let panes = &self.panes;
        self.tracks
            .retain(|(_, k), t| t.open || panes.contains_key(k));
        self.reloads.retain(|t| *t >= oldest);
    }

    /// The retained panes of a key.
    pub fn panes_of(&self, key: &K) -> Option<&BTreeMap<EpochMs, RetainedPane>> {
        self.panes.get(key)
    }
}
