//! Operational history, independent of specs: every accepted session updates a summary of its
//! key (agent, prompt version, model) — and of each configured segment of that key — in small
//! event-time panes, so that any question about any range is a merge of stored buckets.
//!
//! [`History`] is the pure accumulator the pipeline feeds. It never does I/O and never reads the
//! clock: it collects *deltas* (the pane, hour and day summaries of the sessions seen since the
//! last seal, each with its resolution's caps), and the shell moves a sealed delta into the store
//! ([`crate::store::history`]), where each summary is merged into its bucket. A sealed delta
//! carries `(origin, seq)` and the store applies each sequence number of an origin once, so a
//! delta that is part of a checkpoint and re-applied after a crash is not counted twice.
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
//! bucket keeps the 10,000 costliest, and a delta's day summary keeps as many, so nothing a day
//! needs is dropped on the way). Any other answer built from ranked lists says whether it is
//! exact: a list remembers the best entry it ever dropped ([`summary::TailList`]).

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
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// Bucket summaries of the sessions seen since the last seal, ready to move into the store:
/// every session is in its pane, hour and day bucket, each with that resolution's caps, so the
/// store merges each summary into its one bucket and a delta is bounded by the caps of the
/// buckets it touches, not by the sessions it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Who produced it (one pipeline: a run, a Kafka partition); sequence numbers count per
    /// origin.
    pub origin: String,
    pub seq: u64,
    #[serde(default)]
    pub buckets: Vec<(Resolution, EpochMs, BucketKey, OpsSummary)>,
    /// Pane summaries with a day's caps: the form of deltas checkpointed by earlier versions,
    /// turned into `buckets` when restored ([`History::restore`]).
    #[serde(default, skip_serializing)]
    panes: Vec<(EpochMs, BucketKey, OpsSummary)>,
}

/// Where a pending summary goes: (resolution, bucket start, key).
pub type BucketSlot = (Resolution, EpochMs, BucketKey);

/// What a checkpoint keeps of the history: the unsealed and the sealed-but-unacknowledged
/// deltas and the segment admissions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryState {
    pub origin: String,
    pub next_seq: u64,
    #[serde(default, with = "crate::snapshot::pairs")]
    pub buckets: BTreeMap<BucketSlot, OpsSummary>,
    /// Pending pane summaries of earlier versions (see [`Delta`]'s `panes`).
    #[serde(default, with = "crate::snapshot::pairs", skip_serializing)]
    pending: BTreeMap<(EpochMs, BucketKey), OpsSummary>,
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
    /// The slot a session is looked up by, rewritten in place for each (no allocation unless
    /// the slot is new).
    probe: BucketSlot,
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
            probe: (Resolution::Pane, 0, BucketKey::default()),
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

    /// Adds one accepted session to the pending delta: to its pane, hour and day bucket, of
    /// the whole key and of each segment it is in.
    pub fn observe(&mut self, s: &Session) {
        let mut why = summary::Why::new(s);
        let key = &mut self.probe.2;
        for (field, value) in [
            (&mut key.agent, &s.agent),
            (&mut key.prompt_version, &s.prompt_version),
            (&mut key.model, &s.model),
        ] {
            field.clear();
            field.push_str(value);
        }
        key.segment = None;
        self.add_to_buckets(s, &mut why);
        for attr in 0..self.attributes.len() {
            let Some(value) = s.attribute(&self.attributes[attr]) else {
                continue;
            };
            let label = self.admit(attr, value.label());
            self.probe.2.segment = Some(format!("{}={label}", self.attributes[attr]));
            self.add_to_buckets(s, &mut why);
        }
    }

    /// Adds a session to the pane, hour and day bucket of the probe's key.
    fn add_to_buckets(&mut self, s: &Session, why: &mut summary::Why<'_>) {
        for res in Resolution::ALL {
            self.probe.0 = res;
            self.probe.1 = res.floor(s.event_time, self.config.pane);
            match self.state.buckets.get_mut(&self.probe) {
                Some(summary) => summary.add(s, why),
                None => {
                    let mut summary = OpsSummary::new(res.caps());
                    summary.add(s, why);
                    self.state.buckets.insert(self.probe.clone(), summary);
                }
            }
        }
    }

    /// The label a segment value is kept under: itself while the key's attribute has fewer
    /// than `max_segments` values, else `(other)`.
    fn admit(&mut self, attr: usize, label: String) -> String {
        let name = &self.attributes[attr];
        let slot = (self.probe.2.whole(), name.clone());
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
        if self.state.sealed.is_none() && !self.state.buckets.is_empty() {
            let buckets = std::mem::take(&mut self.state.buckets)
                .into_iter()
                .map(|((r, t, k), mut s)| {
                    s.compact();
                    (r, t, k, s)
                })
                .collect();
            self.state.sealed = Some(Delta {
                origin: self.state.origin.clone(),
                seq: self.state.next_seq,
                buckets,
                panes: Vec::new(),
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
        self.state.buckets.is_empty() && self.state.sealed.is_none()
    }

    pub fn snapshot(&self) -> HistoryState {
        self.state.clone()
    }

    /// What [`History::snapshot`] copies.
    pub fn state(&self) -> &HistoryState {
        &self.state
    }

    /// Restores a checkpointed state, also one of an earlier version (pane summaries only).
    pub fn restore(&mut self, mut state: HistoryState) {
        let pane = self.config.pane;
        let pending = std::mem::take(&mut state.pending);
        merge_panes(&mut state.buckets, pending, pane);
        if let Some(d) = state.sealed.as_mut().filter(|d| !d.panes.is_empty()) {
            let mut buckets: BTreeMap<BucketSlot, OpsSummary> = std::mem::take(&mut d.buckets)
                .into_iter()
                .map(|(r, t, k, s)| ((r, t, k), s))
                .collect();
            let panes = std::mem::take(&mut d.panes).into_iter();
            merge_panes(&mut buckets, panes.map(|(t, k, s)| ((t, k), s)), pane);
            d.buckets = buckets
                .into_iter()
                .map(|((r, t, k), s)| (r, t, k, s))
                .collect();
        }
        self.state = state;
        self.admitted_fast.clear();
    }
}

/// Merges pane summaries kept with a day's caps (the delta form of earlier versions) into the
/// pane, hour and day summaries they belong to, each with its resolution's caps.
fn merge_panes(
    into: &mut BTreeMap<BucketSlot, OpsSummary>,
    panes: impl IntoIterator<Item = ((EpochMs, BucketKey), OpsSummary)>,
    pane_ms: i64,
) {
    for ((t, k), s) in panes {
        for res in Resolution::ALL {
            let summary = s.with_caps(res.caps());
            match into.entry((res, res.floor(t, pane_ms), k.clone())) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&summary),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(summary);
                }
            }
        }
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

    fn session(i: u64, t: EpochMs, channel: &str) -> Session {
        let line = format!(
            r#"{{"session_id":"s{i:05}","agent":"bot","prompt_version":"p1","model":"m-2026-09","ended_at":"{}","duration_ms":{},"status":"success","usage":{{"cost_usd":{}}},"attributes":{{"channel":"{channel}"}}}}"#,
            crate::time::format_rfc3339_ms(t),
            100 + (i * 7919) % 1000,
            0.001 * ((i * 104_729) % 997) as f64,
        );
        crate::ingest::decode::Decoder::new(
            std::sync::Arc::new(crate::catalog::Catalog::embedded()),
        )
        .decode(line.as_bytes())
        .expect("valid record")
    }

    /// The checkpointed history of the version before bucket deltas: pane summaries of every
    /// key and segment, with a day's caps.
    #[derive(Serialize)]
    struct OldState {
        origin: String,
        next_seq: u64,
        #[serde(with = "crate::snapshot::pairs")]
        pending: BTreeMap<(EpochMs, BucketKey), OpsSummary>,
        sealed: Option<OldDelta>,
        #[serde(with = "crate::snapshot::pairs")]
        admitted: BTreeMap<(BucketKey, String), Vec<String>>,
    }

    #[derive(Serialize)]
    struct OldDelta {
        origin: String,
        seq: u64,
        panes: Vec<(EpochMs, BucketKey, OpsSummary)>,
    }

    fn old_panes(
        sessions: &[Session],
        config: &HistoryConfig,
    ) -> Vec<(EpochMs, BucketKey, OpsSummary)> {
        let mut panes: BTreeMap<(EpochMs, BucketKey), OpsSummary> = BTreeMap::new();
        for s in sessions {
            let key = BucketKey {
                agent: s.agent.clone(),
                prompt_version: s.prompt_version.clone(),
                model: s.model.clone(),
                segment: None,
            };
            let channel = s.attribute("channel").unwrap().label();
            let segment = BucketKey {
                segment: Some(format!("channel={channel}")),
                ..key.clone()
            };
            for k in [key, segment] {
                panes
                    .entry((Resolution::Pane.floor(s.event_time, config.pane), k))
                    .or_insert_with(|| OpsSummary::new(Resolution::Day.caps()))
                    .add(s, &mut summary::Why::new(s));
            }
        }
        panes.into_iter().map(|((t, k), s)| (t, k, s)).collect()
    }

    /// A checkpoint of the earlier delta form (pane summaries with a day's caps, pending and
    /// sealed) restores into the bucket deltas a history that saw the same sessions has: the
    /// same pane, hour and day summaries, lists and dropped marks included.
    #[test]
    fn a_checkpoint_of_pane_deltas_restores_as_bucket_deltas() {
        let config = HistoryConfig {
            segment_by: vec!["attributes.channel".into()],
            ..HistoryConfig::default()
        };
        let day = 20_400 * DAY_MS;
        // 3,000 sessions over 2.5 days (several hours and days, and lists that overflow their
        // pane and hour caps); the first 1,800 sealed, the rest pending.
        let sessions: Vec<Session> = (0..3_000u64)
            .map(|i| session(i, day + i as i64 * 72_000, ["web", "app"][i as usize % 2]))
            .collect();
        let (first, rest) = sessions.split_at(1_800);
        let old = OldState {
            origin: "o".into(),
            next_seq: 8,
            pending: old_panes(rest, &config)
                .into_iter()
                .map(|(t, k, s)| ((t, k), s))
                .collect(),
            sealed: Some(OldDelta {
                origin: "o".into(),
                seq: 7,
                panes: old_panes(first, &config),
            }),
            admitted: BTreeMap::new(),
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&old, &mut bytes).unwrap();
        let mut restored = History::new(config.clone(), "o");
        restored.restore(ciborium::from_reader(bytes.as_slice()).unwrap());

        let mut fresh = History::new(config, "o");
        fresh.restore(HistoryState {
            next_seq: 7,
            ..HistoryState::default()
        });
        for s in first {
            fresh.observe(s);
        }
        let want_sealed = fresh.seal().unwrap().clone();
        fresh.ack(7);
        for s in rest {
            fresh.observe(s);
        }
        let want_pending = fresh.seal().unwrap().clone();

        let sealed = restored.seal().unwrap().clone();
        restored.ack(7);
        let pending = restored.seal().unwrap().clone();
        for (got, want) in [(sealed, want_sealed), (pending, want_pending)] {
            assert_eq!(got.buckets.len(), want.buckets.len());
            // Three resolutions of two keys (whole and one segment at a time) over 2.5 days.
            assert!(want.buckets.iter().any(|b| b.0 == Resolution::Day));
            for (g, w) in got.buckets.iter().zip(&want.buckets) {
                assert_eq!((g.0, g.1, &g.2), (w.0, w.1, &w.2));
                assert_eq!(g.3, w.3, "{:?} {} {:?}", w.0, w.1, w.2);
                assert_eq!(g.3.costliest.dropped(), w.3.costliest.dropped());
            }
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
