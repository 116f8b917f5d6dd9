//! The evidence drift forensics works from: per window key (and segment) and pane, a
//! [`FeaturePane`] — the moments (count, sum, sum of squares) of every numeric and yes/no
//! feature of a drift objective, overall and by prompt version, model, provider and segment,
//! and the ids of the pane's sessions — kept for the same bounded lookback as
//! [`super::retain`]. Pure; no I/O, no clock.
//!
//! A drift objective has no per-session "bad" outcome: drift is a property of a distribution.
//! So forensics follows the feature itself: the onset is a change point of the drifted
//! feature's per-pane series (a Gaussian mean shift for a numeric feature, a binomial rate
//! change for a yes/no one), the attribution splits the feature's shift across layer values
//! ([`super::attribute::attribute_shift`]), and the sessions that count against a drift
//! objective are **every session of the drifted key (and segment) from the onset to the end of
//! each drifting window** — they are the sessions the changed distribution is made of. Each
//! carries its value of the drifted feature, so an export can be narrowed further.
//!
//! Categorical features (`tool_mix`, `status_mix`, attributes) are not retained: their drift
//! gets affected sessions but no onset (the streak starts at the window's start).
//!
//! Bounds: at most [`MAX_VALUES`] values per layer and pane (the rest under [`OTHER`]); at most
//! [`MAX_BAD_IDS`] session ids per pane, the rest counted in `dropped`; panes older than the
//! retention dropped, never more than [`MAX_PANES`] per key.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Layer;
use super::onset::{RatePane, ValuePane};
use super::retain::{FIXED, MAX_BAD_IDS, MAX_PANES, MAX_VALUES, OTHER};
use crate::session::{EpochMs, Session};

/// Count, sum and sum of squares of a feature's values, in fixed point ([`FIXED`] per unit) so
/// that panes merged in any order give the same sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub sum: i128,
    pub sum_sq: i128,
}

impl Moments {
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += (v * FIXED).round() as i128;
        self.sum_sq += (v * v * FIXED).round() as i128;
    }

    fn merge(&mut self, o: &Moments) {
        self.count += o.count;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }

    /// The sum in the feature's unit.
    pub fn total(&self) -> f64 {
        self.sum as f64 / FIXED
    }

    /// A pane of the Gaussian series ([`super::onset::gaussian`]).
    pub fn value_pane(&self) -> ValuePane {
        ValuePane {
            count: self.count,
            sum: self.total(),
            sum_sq: self.sum_sq as f64 / FIXED,
        }
    }

    /// A pane of the binomial series of a yes/no feature: `ones` counts the yes (`rise`) or
    /// the no sessions.
    pub fn rate_pane(&self, rise: bool) -> RatePane {
        let ones = (self.total().round().max(0.0) as u64).min(self.count);
        RatePane {
            bad: if rise { ones } else { self.count - ones },
            sessions: self.count,
        }
    }
}

fn merge_all(into: &mut Vec<Moments>, from: &[Moments]) {
    if into.len() < from.len() {
        into.resize(from.len(), Moments::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.merge(b);
    }
}

fn add_row(into: &mut Vec<Moments>, row: &[Option<f64>]) {
    if into.len() < row.len() {
        into.resize(row.len(), Moments::default());
    }
    for (m, v) in into.iter_mut().zip(row) {
        if let Some(v) = v {
            m.add(*v);
        }
    }
}

/// A session of a drift objective's key, as retained (key and segment are the pane's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptSession {
    pub session_id: String,
    pub event_time: EpochMs,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segment: Option<Arc<str>>,
    /// The session's feature row (numeric features, then yes/no as 0/1; `None` when missing).
    pub values: Vec<Option<f64>>,
}

/// What one key (and segment) did in one pane, for one drift objective.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeaturePane {
    pub sessions: u64,
    /// Per feature column (numeric, then yes/no), its moments.
    pub features: Vec<Moments>,
    /// Per layer (prompt, model, provider, input) and value: sessions and feature moments.
    pub layers: BTreeMap<Layer, BTreeMap<String, LayerCell>>,
    /// The first [`MAX_BAD_IDS`] sessions in arrival order.
    pub kept: Vec<KeptSession>,
    /// Sessions beyond the cap.
    pub dropped: u64,
}

/// One layer value in one pane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerCell {
    pub sessions: u64,
    pub features: Vec<Moments>,
}

impl FeaturePane {
    /// Adds one session with its feature row.
    pub fn observe(&mut self, s: &Session, segment: Option<&Arc<str>>, row: &[Option<f64>]) {
        self.sessions += 1;
        add_row(&mut self.features, row);
        let provider = s.provider.as_deref().unwrap_or("(none)");
        let values = [
            (Layer::Prompt, Some(s.prompt_version.as_str())),
            (Layer::Model, Some(s.model.as_str())),
            (Layer::Provider, Some(provider)),
            (Layer::Input, segment.map(|s| &**s)),
        ];
        for (layer, value) in values {
            let Some(value) = value else { continue };
            let map = self.layers.entry(layer).or_default();
            let label = if map.contains_key(value) || map.len() < MAX_VALUES {
                value
            } else {
                OTHER
            };
            if !map.contains_key(label) {
                map.insert(label.to_owned(), LayerCell::default());
            }
            let cell = map.get_mut(label).expect("inserted above");
            cell.sessions += 1;
            add_row(&mut cell.features, row);
        }
        if self.kept.len() < MAX_BAD_IDS {
            self.kept.push(KeptSession {
                session_id: s.session_id.clone(),
                event_time: s.event_time,
                segment: segment.cloned(),
                values: row.to_vec(),
            });
        } else {
            self.dropped += 1;
        }
    }

    /// Adds another pane's counts (not its session ids): the totals of a range of panes.
    pub fn merge_counts(&mut self, other: &FeaturePane) {
        self.sessions += other.sessions;
        self.dropped += other.dropped;
        merge_all(&mut self.features, &other.features);
        for (layer, values) in &other.layers {
            let map = self.layers.entry(*layer).or_default();
            for (v, c) in values {
                let cell = map.entry(v.clone()).or_default();
                cell.sessions += c.sessions;
                merge_all(&mut cell.features, &c.features);
            }
        }
    }

    /// The moments of feature column `c`.
    pub fn feature(&self, c: usize) -> Moments {
        self.features.get(c).copied().unwrap_or_default()
    }
}

/// Where a drift objective of one key (and segment) stands for forensics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftTrack {
    /// A drift streak is open (its first finding carried the forensics).
    pub open: bool,
    /// Panes before this time have been handed out as affected sessions.
    pub handed_until: Option<EpochMs>,
    /// End of the window that closed the last streak: the next onset looks no further back.
    pub closed_at: Option<EpochMs>,
    /// The feature column the streak's forensics followed (named in the affected reasons).
    pub column: Option<usize>,
}

/// One drift objective's retained panes and streaks, per key and segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash + Ord",
    deserialize = "K: Deserialize<'de> + Eq + Hash + Ord"
))]
pub struct DriftRetained<K> {
    #[serde(with = "crate::snapshot::pairs")]
    pub panes: HashMap<K, BTreeMap<EpochMs, FeaturePane>>,
    #[serde(with = "crate::snapshot::pairs")]
    pub tracks: BTreeMap<K, DriftTrack>,
}

impl<K> Default for DriftRetained<K> {
    fn default() -> Self {
        DriftRetained {
            panes: HashMap::new(),
            tracks: BTreeMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> DriftRetained<K> {
    /// Adds a session to its key's pane starting at `pane`.
    pub fn observe(
        &mut self,
        key: &K,
        pane: EpochMs,
        s: &Session,
        segment: Option<&Arc<str>>,
        row: &[Option<f64>],
    ) {
        let panes = match self.panes.get_mut(key) {
            Some(p) => p,
            None => self.panes.entry(key.clone()).or_default(),
        };
        panes.entry(pane).or_default().observe(s, segment, row);
    }

    /// Drops panes that start before `oldest`, keeps at most [`MAX_PANES`] per key, and
    /// forgets keys without panes and without an open streak.
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
        self.tracks.retain(|k, t| t.open || panes.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, prompt: &str) -> Session {
        let line = format!(
            r#"{{"schema_version":"1","session_id":"{id}","agent":"a","prompt_version":"{prompt}","model":"m","started_at":"2026-01-01T00:00:00Z","ended_at":"2026-01-01T00:01:00Z","status":"success"}}"#
        );
        crate::ingest::decode::Decoder::new(Arc::new(crate::catalog::Catalog::embedded()))
            .decode(line.as_bytes())
            .unwrap()
    }

    #[test]
    fn moments_merge_to_the_moments_of_the_union_and_layers_count_sessions() {
        let mut a = FeaturePane::default();
        let mut b = FeaturePane::default();
        let mut whole = FeaturePane::default();
        let rows = [
            ("s1", "p1", [Some(1.5), Some(1.0)]),
            ("s2", "p2", [Some(2.25), None]),
            ("s3", "p1", [None, Some(0.0)]),
        ];
        for (i, (id, prompt, row)) in rows.iter().enumerate() {
            let s = session(id, prompt);
            if i == 1 { &mut b } else { &mut a }.observe(&s, None, row);
            whole.observe(&s, None, row);
        }
        let mut merged = FeaturePane::default();
        merged.merge_counts(&b);
        merged.merge_counts(&a);
        assert_eq!(merged.features, whole.features);
        assert_eq!(merged.layers, whole.layers);
        // Independent: (1.5 + 2.25) over two values; squares 2.25 + 5.0625.
        let m = whole.feature(0);
        assert_eq!(m.count, 2);
        assert!((m.total() - 3.75).abs() < 1e-12);
        assert!((m.value_pane().sum_sq - 7.3125).abs() < 1e-12);
        assert_eq!(
            whole.feature(1).rate_pane(true),
            RatePane {
                bad: 1,
                sessions: 2
            }
        );
        assert_eq!(
            whole.feature(1).rate_pane(false),
            RatePane {
                bad: 1,
                sessions: 2
            }
        );
        assert_eq!(whole.layers[&Layer::Prompt]["p1"].sessions, 2);
        assert_eq!(whole.kept.len(), 3);
        assert_eq!(whole.kept[1].values, vec![Some(2.25), None]);
    }
}
