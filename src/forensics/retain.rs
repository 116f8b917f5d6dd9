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

use serde::{Deserialize, Serialize};

use super::AffectedReason;
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
    fn add(&mut self, bad: &[bool]) {
        self.sessions += 1;
        if self.bad.len() < bad.len() {
            self.bad.resize(bad.len(), 0);
        }
        for (n, b) in self.bad.iter_mut().zip(bad) {
            *n += u64::from(*b);
        }
    }

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

/// How one session stands against one tracked objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why it counts against the objective, or `None` when it does not.
    pub bad: Option<AffectedReason>,
    /// The objective's value for the session (mean objectives).
    pub value: Option<f64>,
}

/// What one key (and segment) did in one pane.
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

fn cell<'a>(map: &'a mut BTreeMap<String, Cell>, value: &str) -> &'a mut Cell {
    if !map.contains_key(value) {
        let label = if map.len() >= MAX_VALUES {
            OTHER
        } else {
            value
        };
        return map.entry(label.to_owned()).or_default();
    }
    map.get_mut(value).expect("checked")
}

fn merge_map(into: &mut BTreeMap<String, Cell>, from: &BTreeMap<String, Cell>) {
    for (k, c) in from {
        into.entry(k.clone()).or_default().merge(c);
    }
}

impl ForensicPane {
    /// Adds one session with its outcome against every tracked objective.
    pub fn observe(&mut self, s: &Session, segment: Option<&Arc<str>>, outcomes: &[Outcome]) {
        self.sessions += 1;
        if self.objectives.len() < outcomes.len() {
            self.objectives
                .resize_with(outcomes.len(), ObjectivePane::default);
        }
        let bad: Vec<bool> = outcomes.iter().map(|o| o.bad.is_some()).collect();
        for (pane, o) in self.objectives.iter_mut().zip(outcomes) {
            if let Some(v) = o.value {
                pane.count += 1;
                pane.sum += fixed(v);
                pane.sum_sq += fixed(v * v);
            }
            if let Some(reason) = &o.bad {
                pane.bad += 1;
                if pane.kept.len() < MAX_BAD_IDS {
                    pane.kept.push(BadSession {
                        session_id: s.session_id.clone(),
                        event_time: s.event_time,
                        segment: segment.cloned(),
                        reason: reason.clone(),
                    });
                } else {
                    pane.dropped += 1;
                }
            }
        }
        cell(&mut self.prompt, &s.prompt_version).add(&bad);
        cell(&mut self.model, &s.model).add(&bad);
        let provider = s.provider.as_deref().unwrap_or("(none)");
        cell(&mut self.provider, provider).add(&bad);
        if s.status != Status::Success {
            let what = s.error_type.as_deref().unwrap_or(s.status.as_str());
            cell(&mut self.errors, &format!("{provider}/{what}")).add(&bad);
        }
        if let Some(seg) = segment {
            cell(&mut self.segment, seg).add(&bad);
        }
        let mut seen: Vec<&str> = Vec::new();
        for call in &s.tool_calls {
            let name = if self.tools.contains_key(&call.name) || self.tools.len() < MAX_VALUES {
                call.name.as_str()
            } else {
                OTHER
            };
            // Look up before inserting: a tool already in the pane costs no allocation.
            if !self.tools.contains_key(name) {
                self.tools.insert(name.to_owned(), ToolCell::default());
            }
            let t = self.tools.get_mut(name).expect("inserted above");
            t.calls += 1;
            t.errors += u64::from(call.status == Some(ToolStatus::Error));
            t.latency_us += (call.duration_ms.unwrap_or(0.0).max(0.0) * 1e3).round() as u64;
            if !seen.contains(&name) {
                seen.push(name);
                t.sessions.add(&bad);
            }
        }
    }

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
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash + Ord",
    deserialize = "K: Deserialize<'de> + Eq + Hash + Ord"
))]
pub struct Retained<K> {
    #[serde(with = "crate::snapshot::pairs")]
    pub panes: HashMap<K, BTreeMap<EpochMs, ForensicPane>>,
    /// Per (tracked objective, key).
    #[serde(with = "crate::snapshot::pairs")]
    pub tracks: BTreeMap<(usize, K), Track>,
    /// Event times at which a configuration reload replaced the spec (newest session then).
    #[serde(default)]
    pub reloads: Vec<EpochMs>,
}

impl<K> Default for Retained<K> {
    fn default() -> Self {
        Retained {
            panes: HashMap::new(),
            tracks: BTreeMap::new(),
            reloads: Vec::new(),
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
        panes.entry(pane).or_default().observe(s, segment, outcomes);
    }

    /// Drops panes that start before `oldest`, keeps at most [`MAX_PANES`] per key, forgets
    /// keys without panes and without an open streak, and reloads older than `oldest`.
    pub fn trim(&mut self, oldest: EpochMs) {
        self.panes.retain(|_, panes| {
            while let Some((&start, _)) = panes.first_key_value() {
                if start < oldest || panes.len() > MAX_PANES {
                    panes.pop_first();
                } else {
                    break;
                }
            }
            !panes.is_empty()
        });
        let panes = &self.panes;
        self.tracks
            .retain(|(_, k), t| t.open || panes.contains_key(k));
        self.reloads.retain(|t| *t >= oldest);
    }

    /// The retained panes of a key.
    pub fn panes_of(&self, key: &K) -> Option<&BTreeMap<EpochMs, ForensicPane>> {
        self.panes.get(key)
    }
}
