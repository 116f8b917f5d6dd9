//! Operational history, independent of specs: every accepted session updates a summary of its
//! key (agent, prompt version, model) — and of each configured segment of that key — in small
//! event-time panes, so that any question about any range is a merge of stored buckets.
//!
//! [`History`] is the pure accumulator the pipeline feeds. It never does I/O and never reads the
//! clock: it collects *deltas* (pane summaries of the sessions seen since the last seal), and the
//! shell moves a sealed delta into the store ([`crate::store::history`]), where it is merged
//! into pane, hour and day buckets. A sealed delta carries `(origin, seq)` and the store applies
//! each sequence number of an origin once, so a delta that is part of a checkpoint and re-applied
//! after a crash is not counted twice.
//!
//! Bucket resolutions and what they keep:
//!
//! | resolution | bucket | kept (default) | slowest listed | costliest listed |
//! |---|---|---|---|---|
//! | pane | `pane` (5 min) | 8 days | 20 | 100 |
//! | hour | 1 h | 35 days | 50 | 1,000 |
//! | day  | 1 UTC day | 35 days | 100 | 10,000 |
//!
//! The top 1 % by cost of a UTC day is exact up to 1 M sessions with a cost that day (its day
//! bucket keeps the 10,000 costliest; a delta keeps up to 10,000 too, so nothing a day needs is
//! dropped on the way). Any other answer built from ranked lists says whether it is exact: a
//! list remembers the best entry it ever dropped ([`summary::TailList`]).

pub mod query;
pub mod summary;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::session::{EpochMs, Session};
pub use summary::{Caps, OpsSummary, SessionWhy};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// How the history is kept: pane size, segments, retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryConfig {
    /// Pane size in ms: the finest time resolution of answers (default 5 minutes; must divide
    /// an hour).
    #[serde(default = "default_pane_ms", with = "crate::duration::serde_ms")]
    pub pane: i64,
    /// Session attributes to keep separate summaries for (`attributes.channel` or `channel`),
    /// each on its own.
    #[serde(default)]
    pub segment_by: Vec<String>,
    /// Distinct values kept per key and attribute; later values share `(other)`.
    #[serde(default = "default_max_segments")]
    pub max_segments: usize,
    /// How long pane buckets are kept (default 8 days: "the same day last week" at pane
    /// resolution).
    #[serde(default = "default_pane_retention", with = "crate::duration::serde_ms")]
    pub pane_retention: i64,
    /// How long hour and day buckets are kept (default 35 days).
    #[serde(default = "default_hour_retention", with = "crate::duration::serde_ms")]
    pub hour_retention: i64,
}

fn default_pane_ms() -> i64 {
    5 * 60_000
}
fn default_max_segments() -> usize {
    50
}
fn default_pane_retention() -> i64 {
    8 * DAY_MS
}
fn default_hour_retention() -> i64 {
    35 * DAY_MS
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            pane: default_pane_ms(),
            segment_by: Vec::new(),
            max_segments: default_max_segments(),
            pane_retention: default_pane_retention(),
            hour_retention: default_hour_retention(),
        }
    }
}

impl HistoryConfig {
    /// The attribute names segments are kept for (without the `attributes.` prefix).
    pub fn segment_attributes(&self) -> impl Iterator<Item = &str> {
        self.segment_by
            .iter()
            .map(|a| a.strip_prefix("attributes.").unwrap_or(a))
    }

    /// A problem with the configuration, for the operator.
    pub fn check(&self) -> Result<(), String> {
        if self.pane <= 0 || HOUR_MS % self.pane != 0 {
            return Err(format!(
                "history.pane must divide an hour (1m, 5m, 10m, 15m, 30m, 1h); found {}",
                crate::duration::format_duration_ms(self.pane)
            ));
        }
        if self.pane_retention < DAY_MS || self.hour_retention < self.pane_retention {
            return Err(
                "history retention: panes at least 1d, hours at least as long as panes".into(),
            );
        }
        Ok(())
    }
}

/// A bucket's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Pane,
    Hour,
    Day,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Pane, Resolution::Hour, Resolution::Day];

    /// How many sessions a bucket lists: the slowest for "which took longest" (a page of them),
    /// the costliest enough for the top 1 % of a million-session day.
    pub fn caps(self) -> Caps {
        match self {
            Resolution::Pane => Caps {
                slowest: 20,
                costliest: 100,
            },
            Resolution::Hour => Caps {
                slowest: 50,
                costliest: 1_000,
            },
            Resolution::Day => Caps {
                slowest: 100,
                costliest: 10_000,
            },
        }
    }

    pub fn bucket_ms(self, pane_ms: i64) -> i64 {
        match self {
            Resolution::Pane => pane_ms,
            Resolution::Hour => HOUR_MS,
            Resolution::Day => DAY_MS,
        }
    }

    /// The start of the bucket of this resolution that holds time `t`.
    pub fn floor(self, t: EpochMs, pane_ms: i64) -> EpochMs {
        t.div_euclid(self.bucket_ms(pane_ms)) * self.bucket_ms(pane_ms)
    }

    pub fn code(self) -> u8 {
        match self {
            Resolution::Pane => b'p',
            Resolution::Hour => b'h',
            Resolution::Day => b'd',
        }
    }
}

/// Which sessions a bucket summarises: one key, and optionally one segment of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BucketKey {
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    /// `channel=web`; `None` for every session of the key.
    pub segment: Option<String>,
}

const SEP: char = '\u{1f}';

impl BucketKey {
    /// The key as bytes for the store: the four parts separated by U+001F.
    pub fn encode(&self) -> String {
        format!(
            "{}{SEP}{}{SEP}{}{SEP}{}",
            self.agent,
            self.prompt_version,
            self.model,
            self.segment.as_deref().unwrap_or("")
        )
    }

    pub fn decode(s: &str) -> Option<BucketKey> {
        let mut it = s.split(SEP);
        let (agent, prompt_version, model, segment) =
            (it.next()?, it.next()?, it.next()?, it.next()?);
        Some(BucketKey {
            agent: agent.to_owned(),
            prompt_version: prompt_version.to_owned(),
            model: model.to_owned(),
            segment: (!segment.is_empty()).then(|| segment.to_owned()),
        })
    }

    /// The same key without its segment.
    pub fn whole(&self) -> BucketKey {
        BucketKey {
            segment: None,
            ..self.clone()
        }
    }
}

/// Pane summaries of the sessions seen since the last seal, ready to move into the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Who produced it (one pipeline: a run, a Kafka partition); sequence numbers count per
    /// origin.
    pub origin: String,
    pub seq: u64,
    pub panes: Vec<(EpochMs, BucketKey, OpsSummary)>,
}

/// What a checkpoint keeps of the history: the unsealed and the sealed-but-unacknowledged
/// deltas and the segment admissions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryState {
    pub origin: String,
    pub next_seq: u64,
    #[serde(with = "crate::snapshot::pairs")]
    pub pending: BTreeMap<(EpochMs, BucketKey), OpsSummary>,
    pub sealed: Option<Delta>,
    #[serde(with = "crate::snapshot::pairs")]
    pub admitted: BTreeMap<(BucketKey, String), Vec<String>>,
}

/// The pure accumulator of operational history.
#[derive(Debug, Clone)]
pub struct History {
    config: HistoryConfig,
    state: HistoryState,
    /// Segment attribute names, resolved once.
    attributes: Vec<String>,
    /// Fast path: admitted segment labels, by (key, attribute).
    admitted_fast: HashMap<(BucketKey, String), Vec<String>>,
}

/// Label of a segment value beyond the cap (parenthesised so no real value can collide).
pub const OTHER_SEGMENT: &str = "(other)";

impl History {
    pub fn new(config: HistoryConfig, origin: impl Into<String>) -> History {
        let attributes = config.segment_attributes().map(str::to_owned).collect();
        History {
            config,
            state: HistoryState {
                origin: origin.into(),
                next_seq: 1,
                ..HistoryState::default()
            },
            attributes,
            admitted_fast: HashMap::new(),
        }
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// An empty history of the same configuration for another pipeline (`origin` names it).
    pub fn sibling(&self, origin: &str) -> History {
        History::new(
            self.config.clone(),
            format!("{}-{origin}", self.state.origin),
        )
    }

    /// Adds one accepted session to the pending delta.
    pub fn observe(&mut self, s: &Session) {
        let pane = Resolution::Pane.floor(s.event_time, self.config.pane);
        let key = BucketKey {
            agent: s.agent.clone(),
            prompt_version: s.prompt_version.clone(),
            model: s.model.clone(),
            segment: None,
        };
        // A delta keeps as much of the ranked lists as the coarsest bucket needs, so merging it
        // into a day bucket loses nothing that bucket would keep.
        let caps = Resolution::Day.caps();
        for attr in 0..self.attributes.len() {
            let Some(value) = s.attribute(&self.attributes[attr]) else {
                continue;
            };
            let label = self.admit(&key, attr, value.label());
            let seg_key = BucketKey {
                segment: Some(format!("{}={label}", self.attributes[attr])),
                ..key.clone()
            };
            self.state
                .pending
                .entry((pane, seg_key))
                .or_insert_with(|| OpsSummary::new(caps))
                .add(s);
        }
        self.state
            .pending
            .entry((pane, key))
            .or_insert_with(|| OpsSummary::new(caps))
            .add(s);
    }

    /// The label a segment value is kept under: itself while the key's attribute has fewer
    /// than `max_segments` values, else `(other)`.
    fn admit(&mut self, key: &BucketKey, attr: usize, label: String) -> String {
        let name = &self.attributes[attr];
        let slot = (key.clone(), name.clone());
        let admitted = self
            .admitted_fast
            .entry(slot.clone())
            .or_insert_with(|| self.state.admitted.get(&slot).cloned().unwrap_or_default());
        if admitted.contains(&label) {
            return label;
        }
        if admitted.len() < self.config.max_segments {
            admitted.push(label.clone());
            self.state.admitted.insert(slot, admitted.clone());
            label
        } else {
            OTHER_SEGMENT.to_owned()
        }
    }

    /// Seals the pending delta (unless one is sealed and not yet acknowledged) and returns the
    /// sealed delta, if any, for the shell to apply to the store.
    pub fn seal(&mut self) -> Option<&Delta> {
        if self.state.sealed.is_none() && !self.state.pending.is_empty() {
            let panes = std::mem::take(&mut self.state.pending)
                .into_iter()
                .map(|((t, k), s)| (t, k, s))
                .collect();
            self.state.sealed = Some(Delta {
                origin: self.state.origin.clone(),
                seq: self.state.next_seq,
                panes,
            });
            self.state.next_seq += 1;
        }
        self.state.sealed.as_ref()
    }

    /// The store has applied the sealed delta `seq`: forget it.
    pub fn ack(&mut self, seq: u64) {
        if self.state.sealed.as_ref().is_some_and(|d| d.seq == seq) {
            self.state.sealed = None;
        }
    }

    /// Whether nothing is pending or sealed.
    pub fn is_idle(&self) -> bool {
        self.state.pending.is_empty() && self.state.sealed.is_none()
    }

    pub fn snapshot(&self) -> HistoryState {
        self.state.clone()
    }

    pub fn restore(&mut self, state: HistoryState) {
        self.state = state;
        self.admitted_fast.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_round_trip_through_their_encoding() {
        for segment in [None, Some("channel=web".to_owned())] {
            let k = BucketKey {
                agent: "support-bot".into(),
                prompt_version: "sp-v1".into(),
                model: "m".into(),
                segment,
            };
            assert_eq!(BucketKey::decode(&k.encode()), Some(k));
        }
    }

    #[test]
    fn buckets_floor_to_their_resolution() {
        let t = 1_764_979_500_123; // 2025-12-06T00:05:00.123Z
        assert_eq!(Resolution::Pane.floor(t, 300_000), 1_764_979_500_000);
        assert_eq!(Resolution::Hour.floor(t, 300_000), 1_764_979_200_000);
        assert_eq!(Resolution::Day.floor(t, 300_000), 1_764_979_200_000);
        assert_eq!(Resolution::Day.floor(-1, 300_000), -DAY_MS);
    }
}
