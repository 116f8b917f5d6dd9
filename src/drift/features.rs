//! Agent-behaviour features taken from each session, and the bounded mergeable sample of them
//! that windows and baselines keep.
//!
//! Numeric and binary features go into one row per session (binary as 0/1, missing as NaN);
//! categorical features (tool mix, tool transitions, status mix, string attributes) are exact
//! counts. Rows are kept as a *bottom-k sample by hash of the session id*: the k sessions with
//! the smallest hashes. That choice is deterministic, unbiased, and mergeable —
//! `merge(sample(a), sample(b)) == sample(a ∪ b)` — so window panes and baselines combine
//! without ever holding more than k rows. No I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::session::{AttrValue, Session};

/// A numeric per-session feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NumericFeature {
    OutputTokens,
    InputTokens,
    DurationMs,
    CostUsd,
    Turns,
    ToolCalls,
    QualityScore,
    OutputChars,
    ContextUtilisation,
}

/// A yes/no per-session feature, compared as a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryFeature {
    Refusal,
    Resolved,
    Fallback,
}

/// A categorical feature, compared as a distribution over labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CategoricalFeature {
    /// Which tools are called (every call counts).
    ToolMix,
    /// Which tool follows which (`search_kb→get_order`; `start→x` for the first call).
    ToolTransitions,
    /// How sessions end.
    StatusMix,
    /// `attributes.<name>` as labels.
    Attribute(String),
}

/// The features one drift objective compares, in spec order within each kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub numeric: Vec<NumericFeature>,
    pub binary: Vec<BinaryFeature>,
    pub categorical: Vec<CategoricalFeature>,
}

/// Distinct labels kept per categorical feature: the `MAX_CATEGORIES` labels with the smallest
/// hashes ([`label_hash`]) among all labels seen; the others are counted together in
/// [`FeatureSample::overflow`]. Keeping the bottom-k *by hash* (not the first k to arrive) makes
/// the kept set a function of the set of labels seen, so merging panes in any order gives the
/// same counts, and a label that was ever kept has its exact count.
pub const MAX_CATEGORIES: usize = 64;

/// Display name of the overflow entry in comparisons. It is a separate entry, never a key of
/// the label counts, so a real label with this name cannot collide with it.
pub const OVERFLOW_LABEL: &str = "(other labels)";

/// The hash that ranks labels for [`MAX_CATEGORIES`] (ties broken by the label itself).
pub fn label_hash(label: &str) -> u64 {
    xxh3_64(label.as_bytes())
}

impl FeatureSet {
    /// Builds the set from the spec's feature names (already validated by the spec parser).
    pub fn from_names(names: &[String]) -> FeatureSet {
        let mut set = FeatureSet {
            numeric: Vec::new(),
            binary: Vec::new(),
            categorical: Vec::new(),
        };
        for name in names {
            match name.as_str() {
                "output_tokens" => set.numeric.push(NumericFeature::OutputTokens),
                "input_tokens" => set.numeric.push(NumericFeature::InputTokens),
                "duration_ms" => set.numeric.push(NumericFeature::DurationMs),
                "cost_usd" => set.numeric.push(NumericFeature::CostUsd),
                "turns" => set.numeric.push(NumericFeature::Turns),
                "tool_calls" => set.numeric.push(NumericFeature::ToolCalls),
                "quality.score" => set.numeric.push(NumericFeature::QualityScore),
                "output_chars" => set.numeric.push(NumericFeature::OutputChars),
                "context_utilisation" => set.numeric.push(NumericFeature::ContextUtilisation),
                "quality.refusal" => set.binary.push(BinaryFeature::Refusal),
                "quality.resolved" => set.binary.push(BinaryFeature::Resolved),
                "fallback" => set.binary.push(BinaryFeature::Fallback),
                "tool_mix" => set.categorical.push(CategoricalFeature::ToolMix),
                "tool_transitions" => set.categorical.push(CategoricalFeature::ToolTransitions),
                "status_mix" => set.categorical.push(CategoricalFeature::StatusMix),
                other => {
                    let attr = other.strip_prefix("attributes.").unwrap_or(other);
                    set.categorical
                        .push(CategoricalFeature::Attribute(attr.to_owned()));
                }
            }
        }
        set
    }

    /// Columns of a row: numeric features, then binary ones.
    pub fn columns(&self) -> usize {
        self.numeric.len() + self.binary.len()
    }

    /// Column names, as the spec writes them.
    pub fn column_names(&self) -> Vec<String> {
        self.numeric
            .iter()
            .map(|f| f.name().to_owned())
            .chain(self.binary.iter().map(|f| f.name().to_owned()))
            .collect()
    }

    /// One session's row: numeric values then 0/1 for binary features; NaN when missing.
    pub fn row(&self, s: &Session) -> RowValues {
        let mut row = RowValues::with_capacity(self.columns());
        for f in &self.numeric {
            row.push(f.value(s).unwrap_or(f64::NAN));
        }
        for f in &self.binary {
            row.push(match f.value(s) {
                Some(true) => 1.0,
                Some(false) => 0.0,
                None => f64::NAN,
            });
        }
        row
    }
}

impl NumericFeature {
    pub fn name(self) -> &'static str {
        match self {
            NumericFeature::OutputTokens => "output_tokens",
            NumericFeature::InputTokens => "input_tokens",
            NumericFeature::DurationMs => "duration_ms",
            NumericFeature::CostUsd => "cost_usd",
            NumericFeature::Turns => "turns",
            NumericFeature::ToolCalls => "tool_calls",
            NumericFeature::QualityScore => "quality.score",
            NumericFeature::OutputChars => "output_chars",
            NumericFeature::ContextUtilisation => "context_utilisation",
        }
    }

    pub fn value(self, s: &Session) -> Option<f64> {
        match self {
            NumericFeature::OutputTokens => s.output_tokens.map(|v| v as f64),
            NumericFeature::InputTokens => s.input_tokens.map(|v| v as f64),
            NumericFeature::DurationMs => s.duration_ms,
            NumericFeature::CostUsd => s.cost_usd,
            NumericFeature::Turns => s.turns.map(|v| v as f64),
            NumericFeature::ToolCalls => Some(s.tool_calls.len() as f64),
            NumericFeature::QualityScore => s.quality.score,
            NumericFeature::OutputChars => s.output_chars.map(|v| v as f64),
            NumericFeature::ContextUtilisation => s.context_utilisation,
        }
    }
}

impl BinaryFeature {
    pub fn name(self) -> &'static str {
        match self {
            BinaryFeature::Refusal => "quality.refusal",
            BinaryFeature::Resolved => "quality.resolved",
            BinaryFeature::Fallback => "fallback",
        }
    }

    pub fn value(self, s: &Session) -> Option<bool> {
        match self {
            BinaryFeature::Refusal => s.quality.refusal,
            BinaryFeature::Resolved => s.quality.resolved,
            BinaryFeature::Fallback => Some(s.fell_back()),
        }
    }
}

impl CategoricalFeature {
    pub fn name(&self) -> String {
        match self {
            CategoricalFeature::ToolMix => "tool_mix".into(),
            CategoricalFeature::ToolTransitions => "tool_transitions".into(),
            CategoricalFeature::StatusMix => "status_mix".into(),
            CategoricalFeature::Attribute(a) => format!("attributes.{a}"),
        }
    }

    /// Calls `add` with each label one session contributes; `buf` is scratch space, so that
    /// labels are borrowed, never allocated (only a label new to a count map is).
    fn each_label(&self, s: &Session, buf: &mut String, mut add: impl FnMut(&str)) {
        match self {
            CategoricalFeature::ToolMix => s.tool_calls.iter().for_each(|c| add(&c.name)),
            CategoricalFeature::ToolTransitions => {
                let mut prev = "start";
                for c in &s.tool_calls {
                    buf.clear();
                    buf.push_str(prev);
                    buf.push('→');
                    buf.push_str(&c.name);
                    add(buf);
                    prev = &c.name;
                }
            }
            CategoricalFeature::StatusMix => add(s.status.as_str()),
            CategoricalFeature::Attribute(a) => match s.attribute(a) {
                Some(AttrValue::Str(v)) => add(v),
                Some(v) => add(&v.label()),
                None => {}
            },
        }
    }
}

/// The values of one row. Up to [`INLINE_COLUMNS`] columns are stored in the row itself:
/// samples are cloned, merged and dropped at every window close, and one heap allocation per
/// sampled session was most of that cost. Serialized as a plain list, like a `Vec<f64>`.
pub type RowValues = smallvec::SmallVec<[f64; INLINE_COLUMNS]>;

/// Row columns kept inline (more spill to the heap).
pub const INLINE_COLUMNS: usize = 6;

/// One session's row in a sample, ranked by the hash of its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub hash: u64,
    pub values: RowValues,
}

/// A bounded, mergeable sample of a feature set over many sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureSample {
    /// Sessions seen (not only those kept as rows).
    pub sessions: u64,
    /// Capacity of `rows`.
    pub capacity: usize,
    /// Candidate rows: after [`FeatureSample::compact`], exactly the bottom-k by hash, sorted.
    /// Between compactions up to `2k` candidates accumulate, so an insert costs O(1) instead of
    /// shifting a sorted array (amortised O(log k) per row).
    pub rows: Vec<Row>,
    /// Rows with a hash at or above this cannot be among the bottom k (largest kept hash at the
    /// last compaction while full).
    threshold: u64,
    /// Exact `(true, known)` counts per binary feature.
    pub binary: Vec<(u64, u64)>,
    /// Exact label counts per categorical feature, for the kept labels (see
    /// [`MAX_CATEGORIES`]).
    pub categorical: Vec<BTreeMap<String, u64>>,
    /// Per categorical feature: occurrences of labels that are not kept.
    #[serde(default)]
    pub overflow: Vec<u64>,
    /// Per categorical feature: `(Σ m, Σ m²)` over sessions, `m` = labels the session
    /// contributed (tool calls for `tool_mix`). Labels of one session are not independent
    /// draws; the χ² test divides by the design effect `Σm²/Σm` so that it tests sessions, not
    /// calls. Absent (zeros) in baselines stored before it existed.
    #[serde(default)]
    pub clusters: Vec<(u64, u64)>,
    /// Whether `rows` is in compacted form (bottom-k, sorted by hash, distinct), so that
    /// [`FeatureSample::compact`] has nothing to do and a merge of two compacted samples is
    /// one linear pass. Derived: not stored, and a restored sample is compacted again once.
    #[serde(skip)]
    compacted: bool,
}

impl PartialEq for FeatureSample {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.compact();
        b.compact();
        a.sessions == b.sessions
            && a.rows == b.rows
            && a.binary == b.binary
            && a.categorical == b.categorical
            && a.overflow == b.overflow
            && a.clusters == b.clusters
    }
}

impl FeatureSample {
    pub fn new(set: &FeatureSet, capacity: usize) -> FeatureSample {
        FeatureSample {
            sessions: 0,
            capacity,
            rows: Vec::new(),
            threshold: u64::MAX,
            binary: vec![(0, 0); set.binary.len()],
            categorical: vec![BTreeMap::new(); set.categorical.len()],
            overflow: vec![0; set.categorical.len()],
            clusters: vec![(0, 0); set.categorical.len()],
            compacted: true,
        }
    }

    /// An empty sample of the same shape.
    pub fn empty_like(&self) -> FeatureSample {
        FeatureSample {
            sessions: 0,
            capacity: self.capacity,
            rows: Vec::new(),
            threshold: u64::MAX,
            binary: vec![(0, 0); self.binary.len()],
            categorical: vec![BTreeMap::new(); self.categorical.len()],
            overflow: vec![0; self.categorical.len()],
            clusters: vec![(0, 0); self.categorical.len()],
            compacted: true,
        }
    }

    /// Adds one session.
    pub fn observe(&mut self, set: &FeatureSet, s: &Session) {
        self.sessions += 1;
        let hash = xxh3_64(s.session_id.as_bytes());
        if hash < self.threshold {
            self.rows.push(Row {
                hash,
                values: set.row(s),
            });
            self.compacted = false;
            if self.rows.len() >= 2 * self.capacity.max(1) {
                self.shrink();
            }
        }
        for (f, counts) in set.binary.iter().zip(&mut self.binary) {
            if let Some(v) = f.value(s) {
                counts.1 += 1;
                counts.0 += u64::from(v);
            }
        }
        let mut buf = String::new();
        self.fill_categorical_shape();
        for (i, (f, counts)) in set
            .categorical
            .iter()
            .zip(&mut self.categorical)
            .enumerate()
        {
            let overflow = &mut self.overflow[i];
            let mut m = 0u64;
            f.each_label(s, &mut buf, |l| {
                m += 1;
                add_label(counts, overflow, l, 1);
            });
            if m > 0 {
                let c = &mut self.clusters[i];
                c.0 += m;
                c.1 += m * m;
            }
        }
    }

    /// Keeps the k smallest candidates (unsorted) and tightens the threshold: O(n) per call.
    fn shrink(&mut self) {
        let k = self.capacity;
        if k == 0 {
            self.rows.clear();
            return;
        }
        if self.rows.len() > k {
            self.rows.select_nth_unstable_by_key(k - 1, |r| r.hash);
            self.rows.truncate(k);
        }
        if self.rows.len() == k {
            self.threshold = self.rows.iter().map(|r| r.hash).max().unwrap_or(u64::MAX);
        }
    }

    /// Reduces the candidates to the bottom-k rows by hash, sorted by hash (one row per
    /// session: equal hashes are the same session).
    pub fn compact(&mut self) {
        if self.compacted {
            return;
        }
        self.compacted = true;
        let k = self.capacity;
        if self.rows.len() > k && k > 0 {
            self.rows.select_nth_unstable_by_key(k, |r| r.hash);
        }
        self.rows.sort_unstable_by_key(|r| r.hash);
        self.rows.dedup_by_key(|r| r.hash);
        self.rows.truncate(k);
        if self.rows.len() == k
            && let Some(last) = self.rows.last()
        {
            self.threshold = last.hash;
        }
    }

    /// Merges another sample of the same feature set into this one.
    pub fn merge(&mut self, other: &FeatureSample) {
        self.sessions += other.sessions;
        if self.compacted && other.compacted {
            self.merge_compacted(&other.rows);
        } else {
            let threshold = self.threshold;
            self.rows
                .extend(other.rows.iter().filter(|r| r.hash < threshold).cloned());
            self.compacted = false;
            self.compact();
        }
        for (a, b) in self.binary.iter_mut().zip(&other.binary) {
            a.0 += b.0;
            a.1 += b.1;
        }
        self.fill_categorical_shape();
        for (i, (a, b)) in self
            .categorical
            .iter_mut()
            .zip(&other.categorical)
            .enumerate()
        {
            for (label, n) in b {
                add_label(a, &mut self.overflow[i], label, *n);
            }
            self.overflow[i] += other.overflow.get(i).copied().unwrap_or(0);
            let (m, m2) = other.clusters.get(i).copied().unwrap_or((0, 0));
            self.clusters[i].0 += m;
            self.clusters[i].1 += m2;
        }
    }

    /// Merges the rows of another compacted sample into this compacted one: the bottom k of
    /// two hash-sorted lists is a prefix of their merge, so no sort is needed. Equal hashes are
    /// the same session; the row already here is kept.
    fn merge_compacted(&mut self, other: &[Row]) {
        let k = self.capacity;
        if other.is_empty() {
            return;
        }
        let mine = std::mem::take(&mut self.rows);
        let mut rows = Vec::with_capacity(k.min(mine.len() + other.len()));
        let (mut a, mut b) = (mine.into_iter().peekable(), other.iter().peekable());
        while rows.len() < k {
            let row = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if y.hash < x.hash => b.next().cloned(),
                (Some(x), Some(y)) if y.hash == x.hash => {
                    b.next();
                    a.next()
                }
                (Some(_), _) => a.next(),
                (None, _) => b.next().cloned(),
            };
            match row {
                Some(r) => rows.push(r),
                None => break,
            }
        }
        self.rows = rows;
        if self.rows.len() == k
            && let Some(last) = self.rows.last()
        {
            self.threshold = last.hash;
        }
    }

    /// Samples restored from before `overflow`/`clusters` existed have them empty.
    fn fill_categorical_shape(&mut self) {
        let k = self.categorical.len();
        self.overflow.resize(k, 0);
        self.clusters.resize(k, (0, 0));
    }

    /// Categorical feature `i` of this sample (the reference) and `current` on one label axis:
    /// `(labels, reference counts, current counts, design effect)`.
    ///
    /// A side that overflowed knows exact counts only for labels hashing at or below its largest
    /// kept hash; labels above the smaller such limit of the two sides go to one overflow entry
    /// ([`OVERFLOW_LABEL`]) on *both* sides, so the two sides partition labels identically.
    /// The design effect is `Σm²/Σm` over both sides' sessions (at least 1; see `clusters`).
    pub fn aligned_categorical(
        &self,
        current: &FeatureSample,
        i: usize,
    ) -> (Vec<String>, Vec<f64>, Vec<f64>, f64) {
        let (r, c) = (&self.categorical[i], &current.categorical[i]);
        let ov = |s: &FeatureSample| s.overflow.get(i).copied().unwrap_or(0);
        fn limit(overflowed: bool, m: &BTreeMap<String, u64>) -> Option<(u64, &str)> {
            overflowed
                .then(|| m.keys().map(|k| (label_hash(k), k.as_str())).max())
                .flatten()
        }
        let cut = match (limit(ov(self) > 0, r), limit(ov(current) > 0, c)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let kept = |l: &str| cut.is_none_or(|cut| (label_hash(l), l) <= cut);
        let labels: Vec<String> = r
            .keys()
            .chain(c.keys())
            .filter(|l| kept(l))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let side = |s: &FeatureSample, m: &BTreeMap<String, u64>| {
            let mut v: Vec<f64> = labels
                .iter()
                .map(|l| *m.get(l).unwrap_or(&0) as f64)
                .collect();
            let rest: u64 = ov(s)
                + m.iter()
                    .filter(|(l, _)| !kept(l))
                    .map(|(_, n)| n)
                    .sum::<u64>();
            v.push(rest as f64);
            v
        };
        let (mut rv, mut cv) = (side(self, r), side(current, c));
        let mut labels = labels;
        if rv.last() == Some(&0.0) && cv.last() == Some(&0.0) {
            rv.pop();
            cv.pop();
        } else {
            labels.push(OVERFLOW_LABEL.to_owned());
        }
        let cl = |s: &FeatureSample| s.clusters.get(i).copied().unwrap_or((0, 0));
        let (m, m2) = (cl(self).0 + cl(current).0, cl(self).1 + cl(current).1);
        let deff = if m > 0 {
            (m2 as f64 / m as f64).max(1.0)
        } else {
            1.0
        };
        (labels, rv, cv, deff)
    }

    /// The non-missing values of row column `col` (of the bottom-k rows).
    pub fn column(&self, col: usize) -> Vec<f64> {
        debug_assert!(self.rows.len() <= self.capacity, "read after compact()");
        self.rows
            .iter()
            .map(|r| r.values[col])
            .filter(|v| !v.is_nan())
            .collect()
    }
}

/// Counts `n` occurrences of `label`, keeping the [`MAX_CATEGORIES`] labels of smallest
/// `(hash, label)`: a new label that ranks below the largest kept one evicts it to `overflow`.
fn add_label(counts: &mut BTreeMap<String, u64>, overflow: &mut u64, label: &str, n: u64) {
    if let Some(c) = counts.get_mut(label) {
        *c += n;
        return;
    }
    if counts.len() < MAX_CATEGORIES {
        counts.insert(label.to_owned(), n);
        return;
    }
    let largest = counts
        .keys()
        .map(|k| (label_hash(k), k.as_str()))
        .max()
        .map(|(h, k)| (h, k.to_owned()));
    match largest {
        Some((h, k)) if (label_hash(label), label) < (h, k.as_str()) => {
            *overflow += counts.remove(&k).unwrap_or(0);
            counts.insert(label.to_owned(), n);
        }
        _ => *overflow += n,
    }
}
