//! A pipeline's state as *parts* with stable ids, so that a checkpoint writes only what changed
//! since the last one. Pure: encodes and compares bytes, never does I/O, never reads a clock.
//!
//! | part | id | changes |
//! |---|---|---|
//! | the rest: dedupe settings, counters, source partitions, watermark, history, spec fingerprints | [`PartId::Rest`] | at every checkpoint with traffic |
//! | dedupe ids of one event-time bucket | [`PartId::Dedupe`] | while records of its times arrive |
//! | one spec's small state: window frontier, key labels, segments, statistics, newest session per key, forensic and drift streaks | [`PartId::Spec`] | at every checkpoint with traffic |
//! | one open window pane of a key (and segment) | [`PartId::Open`] | while sessions of its time arrive, then at its first window close; then never (*sealed*) |
//! | the heads of one key's SLO timelines (bucket size, first bucket, length) | [`PartId::Timelines`] | as the key receives sessions |
//! | one chunk of [`CHUNK_BUCKETS`](crate::evaluate::slo::CHUNK_BUCKETS) buckets of one SLO timeline of a key | [`PartId::TimelineChunk`] | while sessions of its time arrive, then never (sealed) until the period forgets its first bucket |
//! | one retained forensic pane of a key | [`PartId::Pane`] | until the windows pass it, then never (*sealed*) |
//! | one retained drift feature pane of a key and drift objective | [`PartId::DriftPane`] | the same |
//! | one drift baseline | [`PartId::Baseline`] | when a window of its key closes |
//!
//! The retained panes and the timelines are what grows with retention (up to 7 days of panes,
//! 28 days of timeline buckets, per key and segment), and a pane or timeline chunk is *sealed*
//! once the end of the last closed window has passed its end: a record that could change it is
//! late, and a late record touches nothing. So a checkpoint writes what the sessions since the
//! last one touched — the newest panes and chunks, the small per-spec and per-key heads — and
//! not what a key has accumulated. A sealed part
//! that was written sealed is not even encoded again. Every other part is encoded at every
//! checkpoint and written only when its bytes differ (xxh3) from what was written — a
//! comparison that cannot miss a mutation, which generation counters bumped at each mutation
//! site could.
//!
//! Spec-level ids carry the spec's fingerprint, so a reload that changes a spec writes its parts
//! under new ids and deletes the old ones in the same checkpoint; a sealed part never changes
//! under its id. [`join`] builds from a set of parts exactly the [`PipelineState`] that
//! [`crate::pipeline::Pipeline::snapshot`] would have given, and the pipeline restores it the
//! one way it restores any snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::drift::baseline::Baseline;
use crate::evaluate::measure::SpecSummary;
use crate::evaluate::slo::{SliTimeline, TimelineChunk, TimelineHead};
use crate::evaluate::{GroupKey, ObjectiveStats, RuntimeState};
use crate::forensics::drift::{DriftRetained, DriftTrack, FeaturePane};
use crate::forensics::retain::{ForensicPane, Retained, Track};
use crate::history::HistoryState;
use crate::ingest::{Dedupe, DedupeHead, HashSet64, IngestStats};
use crate::pipeline::{Pipeline, PipelineState};
use crate::session::EpochMs;
use crate::windowing::{WindowConfig, Windows};

/// The stable id of one part of a pipeline's state (see the module doc for what each holds).
/// Ordered so that [`PartId::Rest`] comes first and a spec's parts follow its [`PartId::Spec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PartId {
    Rest,
    Dedupe {
        bucket: i64,
    },
    Spec {
        spec: u32,
        fingerprint: u64,
    },
    /// A key's open panes and timelines in one part, as versions before [`PartId::Open`] wrote
    /// them: read, never written (the next checkpoint deletes it).
    Key {
        spec: u32,
        fingerprint: u64,
        key: GroupKey,
    },
    Open {
        spec: u32,
        fingerprint: u64,
        key: GroupKey,
        start: EpochMs,
    },
    Timelines {
        spec: u32,
        fingerprint: u64,
        key: GroupKey,
    },
    TimelineChunk {
        spec: u32,
        fingerprint: u64,
        key: GroupKey,
        timeline: u32,
        chunk: i64,
    },
    Pane {
        spec: u32,
        fingerprint: u64,
        key: GroupKey,
        start: EpochMs,
    },
    DriftPane {
        spec: u32,
        fingerprint: u64,
        objective: u32,
        key: GroupKey,
        start: EpochMs,
    },
    Baseline {
        spec: u32,
        fingerprint: u64,
        objective: u32,
        label: String,
    },
}

impl PartId {
    /// The id as stored (CBOR): what the store keys a part by.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<PartId, PartError> {
        decode(bytes, "a part id")
    }

    fn spec(&self) -> Option<(u32, u64)> {
        match self {
            PartId::Rest | PartId::Dedupe { .. } => None,
            PartId::Spec { spec, fingerprint }
            | PartId::Key {
                spec, fingerprint, ..
            }
            | PartId::Open {
                spec, fingerprint, ..
            }
            | PartId::Timelines {
                spec, fingerprint, ..
            }
            | PartId::TimelineChunk {
                spec, fingerprint, ..
            }
            | PartId::Pane {
                spec, fingerprint, ..
            }
            | PartId::DriftPane {
                spec, fingerprint, ..
            }
            | PartId::Baseline {
                spec, fingerprint, ..
            } => Some((*spec, *fingerprint)),
        }
    }
}

/// A part that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("checkpoint part {what} is not valid CBOR: {detail}")]
    Decode { what: String, detail: String },
    #[error("checkpoint parts lack the rest part (`Rest`): not a complete checkpoint")]
    NoRest,
    #[error("checkpoint parts lack the spec part of spec {spec}")]
    NoSpec { spec: u32 },
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("checkpoint parts serialize");
    out
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, PartError> {
    ciborium::from_reader(bytes).map_err(|e| PartError::Decode {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// One part as visited: its id, whether it is sealed, and its bytes unless the visitor skipped
/// encoding it.
pub struct Visited {
    pub id: PartId,
    pub sealed: bool,
    pub bytes: Option<Vec<u8>>,
}

/// Collects the parts of a pipeline's state; `skip` says which parts need not be encoded.
pub struct PartWriter<'a> {
    skip: &'a dyn Fn(&PartId, bool) -> bool,
    pub(crate) parts: Vec<Visited>,
}

impl<'a> PartWriter<'a> {
    pub fn new(skip: &'a dyn Fn(&PartId, bool) -> bool) -> PartWriter<'a> {
        PartWriter {
            skip,
            parts: Vec::new(),
        }
    }

    /// Visits one part: encodes `value` unless the writer skips it.
    pub fn part<T: Serialize + ?Sized>(&mut self, id: PartId, sealed: bool, value: &T) {
        self.part_with(id, sealed, || value);
    }

    /// Visits one part whose value is built only if the writer encodes it.
    pub fn part_with<T: Serialize>(&mut self, id: PartId, sealed: bool, value: impl FnOnce() -> T) {
        let bytes = (!(self.skip)(&id, sealed)).then(|| encode(&value()));
        self.parts.push(Visited { id, sealed, bytes });
    }

    pub fn into_parts(self) -> Vec<Visited> {
        self.parts
    }
}

/// The rest part as written: everything of [`PipelineState`] besides the specs and dedupe ids.
pub(crate) type RestRef<'a> = (
    DedupeHead,
    &'a IngestStats,
    &'a BTreeMap<i32, EpochMs>,
    &'a std::collections::BTreeSet<i32>,
    Option<EpochMs>,
    Option<&'a HistoryState>,
    Vec<u64>,
);
type Rest = (
    DedupeHead,
    IngestStats,
    BTreeMap<i32, EpochMs>,
    std::collections::BTreeSet<i32>,
    Option<EpochMs>,
    Option<HistoryState>,
    Vec<u64>,
);

/// A spec part as written (see [`crate::evaluate::SpecRuntime::checkpoint_parts`]).
pub(crate) type SpecRef<'a> = (
    &'a str,
    WindowConfig,
    (Option<EpochMs>, Option<EpochMs>),
    Vec<(&'a Arc<str>, &'a Vec<(String, String)>)>,
    Vec<(&'a Arc<str>, &'a Vec<Arc<str>>)>,
    &'a [ObjectiveStats],
    u64,
    Vec<(&'a Arc<str>, &'a EpochMs)>,
    Vec<(&'a (usize, GroupKey), &'a Track)>,
    &'a [EpochMs],
    Vec<Vec<(&'a GroupKey, &'a DriftTrack)>>,
);
type SpecPart = (
    String,
    WindowConfig,
    (Option<EpochMs>, Option<EpochMs>),
    Vec<(Arc<str>, Vec<(String, String)>)>,
    Vec<(Arc<str>, Vec<Arc<str>>)>,
    Vec<ObjectiveStats>,
    u64,
    Vec<(Arc<str>, EpochMs)>,
    Vec<((usize, GroupKey), Track)>,
    Vec<EpochMs>,
    Vec<Vec<(GroupKey, DriftTrack)>>,
);

/// A [`PartId::Key`] part as earlier versions wrote it: a key's open panes (start, summary)
/// and its SLO timelines.
type KeyPart = (Vec<(EpochMs, SpecSummary)>, Option<Vec<SliTimeline>>);

/// Every part of a pipeline's state, encoded (a full checkpoint in parts).
pub fn all_parts(pipeline: &Pipeline) -> Vec<(PartId, Vec<u8>)> {
    let never = |_: &PartId, _: bool| false;
    let mut w = PartWriter::new(&never);
    pipeline.checkpoint_parts(&mut w);
    w.parts
        .into_iter()
        .map(|v| (v.id, v.bytes.expect("nothing skipped")))
        .collect()
}

/// What was written of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    xxh3: u64,
    /// Sealed when written: it will not change under its id.
    sealed: bool,
}

/// What changed since the last checkpoint: parts to write and parts to delete.
pub struct Increment {
    pub upserts: Vec<(PartId, Vec<u8>)>,
    pub deletes: Vec<PartId>,
    /// Parts visited, and of those how many were not encoded (sealed and written sealed).
    pub visited: usize,
    pub skipped: usize,
    next: HashMap<PartId, Written>,
}

/// What has been written of a pipeline's state, part by part: the shell asks it for the
/// [`Increment`] of each checkpoint and tells it when that is durable.
#[derive(Default)]
pub struct Tracker {
    written: HashMap<PartId, Written>,
}

impl Tracker {
    /// Nothing written yet: the first increment holds every part (a full checkpoint).
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The parts a restored checkpoint holds. Every part is compared again at the next
    /// checkpoint (none counts as sealed), and parts no longer live — of specs that changed
    /// while the service was down — are deleted by it.
    pub fn from_stored<'a>(parts: impl IntoIterator<Item = (&'a PartId, &'a [u8])>) -> Tracker {
        Tracker {
            written: parts
                .into_iter()
                .map(|(id, bytes)| {
                    (
                        id.clone(),
                        Written {
                            xxh3: xxhash_rust::xxh3::xxh3_64(bytes),
                            sealed: false,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Whether nothing has been written (the next increment is a full checkpoint).
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// The parts of `pipeline` that differ from what was written, and those written that are
    /// gone (expired panes, evicted keys, replaced specs).
    pub fn diff(&self, pipeline: &Pipeline) -> Increment {
        let skip =
            |id: &PartId, sealed: bool| sealed && self.written.get(id).is_some_and(|w| w.sealed);
        let mut w = PartWriter::new(&skip);
        pipeline.checkpoint_parts(&mut w);
        let visited = w.parts.len();
        let mut next = HashMap::with_capacity(visited);
        let mut upserts = Vec::new();
        let mut skipped = 0;
        for Visited { id, sealed, bytes } in w.parts {
            let Some(bytes) = bytes else {
                skipped += 1;
                let before = self.written[&id];
                next.insert(id, before);
                continue;
            };
            let xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
            if self.written.get(&id).is_none_or(|w| w.xxh3 != xxh3) {
                upserts.push((id.clone(), bytes));
            }
            next.insert(id, Written { xxh3, sealed });
        }
        let mut deletes: Vec<PartId> = self
            .written
            .keys()
            .filter(|id| !next.contains_key(*id))
            .cloned()
            .collect();
        deletes.sort();
        Increment {
            upserts,
            deletes,
            visited,
            skipped,
            next,
        }
    }

    /// The increment is durable: it is what has been written now.
    pub fn written(&mut self, increment: Increment) {
        self.written = increment.next;
    }
}

/// The pipeline state a set of parts holds: exactly what [`Pipeline::snapshot`] gave when they
/// were written. Parts of specs other than those the rest part names (left by a crash between
/// writes that a store would never expose, or foreign) are ignored.
pub fn join<'a>(
    parts: impl IntoIterator<Item = (&'a PartId, &'a [u8])>,
) -> Result<PipelineState, PartError> {
    let mut rest: Option<Rest> = None;
    let mut buckets: Vec<(i64, HashSet64)> = Vec::new();
    let mut specs: BTreeMap<u32, SpecBuilder> = BTreeMap::new();
    let mut sorted: Vec<(&PartId, &[u8])> = parts.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (id, bytes) in sorted {
        let what = || format!("{id:?}");
        let wanted = |rest: &Option<Rest>| {
            let Some((spec, fp)) = id.spec() else {
                return true;
            };
            rest.as_ref()
                .is_some_and(|r| r.6.get(spec as usize) == Some(&fp))
        };
        if !wanted(&rest) {
            continue;
        }
        match id {
            PartId::Rest => rest = Some(decode(bytes, &what())?),
            PartId::Dedupe { bucket } => buckets.push((*bucket, decode(bytes, &what())?)),
            PartId::Spec { spec, .. } => {
                let part: SpecPart = decode(bytes, &what())?;
                specs.insert(*spec, SpecBuilder::new(part));
            }
            PartId::Key { spec, key, .. } => {
                let (panes, timelines): KeyPart = decode(bytes, &what())?;
                let b = spec_of(&mut specs, *spec)?;
                b.panes.entry(key.clone()).or_default().extend(panes);
                if let Some(t) = timelines {
                    b.timelines.insert(key.clone(), t);
                }
            }
            PartId::Open {
                spec, key, start, ..
            } => {
                let pane: SpecSummary = decode(bytes, &what())?;
                let b = spec_of(&mut specs, *spec)?;
                b.panes.entry(key.clone()).or_default().push((*start, pane));
            }
            PartId::Timelines { spec, key, .. } => {
                let heads: Vec<TimelineHead> = decode(bytes, &what())?;
                spec_of(&mut specs, *spec)?
                    .timeline_heads
                    .insert(key.clone(), heads);
            }
            PartId::TimelineChunk {
                spec,
                key,
                timeline,
                ..
            } => {
                let chunk: TimelineChunk = decode(bytes, &what())?;
                spec_of(&mut specs, *spec)?
                    .chunks
                    .entry((key.clone(), *timeline))
                    .or_default()
                    .push(chunk);
            }
            PartId::Pane {
                spec, key, start, ..
            } => {
                let pane: ForensicPane = decode(bytes, &what())?;
                spec_of(&mut specs, *spec)?
                    .retained
                    .entry(key.clone())
                    .or_default()
                    .insert(*start, pane);
            }
            PartId::DriftPane {
                spec,
                objective,
                key,
                start,
                ..
            } => {
                let pane: FeaturePane = decode(bytes, &what())?;
                let b = spec_of(&mut specs, *spec)?;
                if let Some(d) = b.drift_retained.get_mut(*objective as usize) {
                    d.panes.entry(key.clone()).or_default().insert(*start, pane);
                }
            }
            PartId::Baseline {
                spec, objective, ..
            } => {
                let baseline: Baseline = decode(bytes, &what())?;
                let b = spec_of(&mut specs, *spec)?;
                if let Some(d) = b.baselines.get_mut(*objective as usize) {
                    d.push(baseline);
                }
            }
        }
    }
    let (head, stats, partitions, idle, advanced_to, history, fingerprints) =
        rest.ok_or(PartError::NoRest)?;
    let mut runtimes = Vec::with_capacity(fingerprints.len());
    for spec in 0..fingerprints.len() as u32 {
        let b = specs.remove(&spec).ok_or(PartError::NoSpec { spec })?;
        runtimes.push(b.build());
    }
    Ok(PipelineState {
        runtimes,
        dedupe: Dedupe::from_parts(head, buckets),
        stats,
        partitions,
        idle,
        advanced_to,
        history,
    })
}

fn spec_of(
    specs: &mut BTreeMap<u32, SpecBuilder>,
    spec: u32,
) -> Result<&mut SpecBuilder, PartError> {
    specs.get_mut(&spec).ok_or(PartError::NoSpec { spec })
}

/// One spec's state gathered from its parts.
struct SpecBuilder {
    head: SpecPart,
    /// Open panes by key, oldest first (parts are read in id order).
    panes: BTreeMap<GroupKey, Vec<(EpochMs, SpecSummary)>>,
    /// Timelines of [`PartId::Key`] parts, whole.
    timelines: HashMap<GroupKey, Vec<SliTimeline>>,
    timeline_heads: HashMap<GroupKey, Vec<TimelineHead>>,
    /// Per key and timeline (index), its chunks.
    chunks: HashMap<(GroupKey, u32), Vec<TimelineChunk>>,
    retained: HashMap<GroupKey, BTreeMap<EpochMs, ForensicPane>>,
    drift_retained: Vec<DriftRetained<GroupKey>>,
    baselines: Vec<Vec<Baseline>>,
}

impl SpecBuilder {
    fn new(head: SpecPart) -> SpecBuilder {
        let drift = head.10.len();
        SpecBuilder {
            panes: BTreeMap::new(),
            timelines: HashMap::new(),
            timeline_heads: HashMap::new(),
            chunks: HashMap::new(),
            retained: HashMap::new(),
            drift_retained: head
                .10
                .iter()
                .map(|tracks| DriftRetained {
                    panes: HashMap::new(),
                    tracks: tracks.iter().cloned().collect(),
                })
                .collect(),
            baselines: vec![Vec::new(); drift],
            head,
        }
    }

    fn build(mut self) -> RuntimeState {
        for (key, heads) in std::mem::take(&mut self.timeline_heads) {
            let timelines = heads
                .into_iter()
                .enumerate()
                .map(|(i, head)| {
                    let chunks = self.chunks.get(&(key.clone(), i as u32));
                    SliTimeline::from_chunks(head, chunks.into_iter().flatten())
                })
                .collect();
            self.timelines.insert(key, timelines);
        }
        let (
            fingerprint,
            config,
            frontier,
            key_parts,
            segments,
            stats,
            late,
            last_session,
            tracks,
            reloads,
            _,
        ) = self.head;
        RuntimeState {
            spec_fingerprint: fingerprint,
            windows: Windows::from_parts(config, self.panes, frontier),
            timelines: self.timelines,
            key_parts: key_parts.into_iter().collect(),
            segments: segments.into_iter().collect(),
            stats,
            late,
            baselines: self.baselines,
            last_session: last_session.into_iter().collect(),
            forensics: Retained::from_parts(
                self.retained.into_iter().collect(),
                tracks.into_iter().collect(),
                reloads,
            ),
            drift_forensics: self.drift_retained,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::finding::Finding;
    use crate::simulate::{AgentProfile, SimConfig, Simulator};

    const HOUR_MS: i64 = 3_600_000;
    use crate::spec::model::Spec;

    /// The shipped support-bot spec with a 2-hour period (forensic panes expire after 2 h) and
    /// a drift baseline that freezes after an hour; `target` varies it for a reload.
    fn specs(target: &str) -> Vec<Spec> {
        let text = include_str!("../sla-specs/support-bot.yaml")
            .replace("rolling: 28d", "rolling: 2h")
            .replace(
                "burnRates: sre-workbook",
                "burnRates: [{name: fast, factor: 14.4, long: 1h, short: 5m, severity: page}]",
            )
            .replace("minDuration: 12h", "minDuration: 1h")
            .replace("target: 99%", &format!("target: {target}"));
        let (specs, diags) = crate::spec::parse_str(&text, "support-bot.yaml");
        assert!(!crate::spec::has_errors(&diags), "{diags:?}");
        specs
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(
            specs("99%"),
            Arc::new(Catalog::embedded()),
            &Default::default(),
        )
    }

    /// Prompt `sp-v1` for hours 0–4, then `sp-v2` for hours 4–10: the first key stops, its
    /// windows close and its retained panes expire (and the key with them).
    fn stream() -> Vec<Vec<u8>> {
        let part = |prompt: &str, from: i64, hours: i64, seed: u64| {
            Simulator::new(SimConfig {
                seed,
                start_ms: crate::simulate::DEFAULT_START_MS + from * HOUR_MS,
                duration_ms: hours * HOUR_MS,
                sessions_per_hour: 400.0,
                agents: vec![AgentProfile::new("support-bot", prompt, "m-2026-09")],
                ..SimConfig::default()
            })
            .unwrap()
            .collect::<Vec<_>>()
        };
        let mut lines = part("sp-v1", 0, 4, 1);
        lines.extend(part("sp-v2", 4, 6, 2));
        lines
    }

    fn feed(p: &mut Pipeline, lines: &[Vec<u8>], out: &mut Vec<Finding>) {
        for l in lines {
            p.process_bytes(l, 0, out);
        }
    }

    /// What a store of parts holds after applying increments.
    #[derive(Default)]
    struct Stored(BTreeMap<PartId, Vec<u8>>);

    impl Stored {
        fn apply(&mut self, tracker: &mut Tracker, p: &Pipeline) -> (usize, usize) {
            let inc = tracker.diff(p);
            let (up, del) = (inc.upserts.len(), inc.deletes.len());
            for (id, bytes) in &inc.upserts {
                self.0.insert(id.clone(), bytes.clone());
            }
            for id in &inc.deletes {
                assert!(
                    self.0.remove(id).is_some(),
                    "{id:?} deleted but never written"
                );
            }
            tracker.written(inc);
            (up, del)
        }

        fn state(&self) -> PipelineState {
            join(self.0.iter().map(|(id, b)| (id, &b[..]))).unwrap()
        }
    }

    /// A CBOR value with every array and map in a canonical order: hash sets and maps are
    /// written in iteration order, which a restored one need not share.
    fn canonical(v: ciborium::Value) -> ciborium::Value {
        use ciborium::Value;
        let key = |v: &Value| {
            let mut b = Vec::new();
            ciborium::into_writer(v, &mut b).unwrap();
            b
        };
        match v {
            Value::Array(a) => {
                let mut a: Vec<Value> = a.into_iter().map(canonical).collect();
                a.sort_by_cached_key(key);
                Value::Array(a)
            }
            Value::Map(m) => {
                let mut m: Vec<(Value, Value)> = m
                    .into_iter()
                    .map(|(k, v)| (canonical(k), canonical(v)))
                    .collect();
                m.sort_by_cached_key(|(k, _)| key(k));
                Value::Map(m)
            }
            other => other,
        }
    }

    /// Two part sets hold the same ids and, part by part, the same values (byte for byte, or
    /// equal up to the order of hash sets and maps).
    pub(crate) fn same_parts(a: Vec<(PartId, Vec<u8>)>, b: Vec<(PartId, Vec<u8>)>, at: usize) {
        let (a, b) = (by_id(a), by_id(b));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "part ids at checkpoint {at}"
        );
        for (id, x) in &a {
            let y = &b[id];
            if x != y {
                let value = |bytes: &[u8]| {
                    canonical(ciborium::from_reader::<ciborium::Value, _>(bytes).unwrap())
                };
                assert_eq!(value(x), value(y), "part {id:?} at checkpoint {at}");
            }
        }
    }

    fn by_id(parts: Vec<(PartId, Vec<u8>)>) -> BTreeMap<PartId, Vec<u8>> {
        parts.into_iter().collect()
    }

    /// A snapshot written borrowed (`Pipeline::snapshot_ref`, what the state topic and the
    /// global tables write) is byte for byte the snapshot written from a copy, for a pipeline
    /// with open windows, timelines, baselines, retained forensic and drift panes, dedupe ids
    /// and a history with a sealed delta and pending buckets.
    #[test]
    fn a_borrowed_snapshot_encodes_to_the_same_bytes_as_a_copy() {
        fn cbor(v: &impl Serialize) -> Vec<u8> {
            let mut out = Vec::new();
            ciborium::into_writer(v, &mut out).unwrap();
            out
        }
        let mut p = pipeline().with_history(crate::history::History::new(
            crate::history::HistoryConfig::default(),
            "test",
        ));
        let lines = stream();
        let mut out = Vec::new();
        let (first, second) = lines.split_at(lines.len() * 3 / 4);
        feed(&mut p, first, &mut out);
        p.history_seal();
        feed(&mut p, second, &mut out);
        assert!(
            !out.is_empty(),
            "the stream found nothing: the state is thin"
        );
        let copy = p.snapshot();
        assert!(copy.runtimes[0].baselines.iter().any(|b| !b.is_empty()));
        assert!(copy.history.as_ref().is_some_and(|h| h.sealed.is_some()));
        assert_eq!(cbor(&p.snapshot_ref()), cbor(&copy));
    }

    /// Base + increments hold byte for byte what a full write of the same moment holds, at every
    /// checkpoint of a stream in which panes expire, a key stops and is evicted, baselines learn
    /// and freeze, and a reload replaces a spec; restored, they give the pipeline a restore of
    /// the full snapshot gives, and the rest of the stream the same findings as no restart.
    #[test]
    fn base_plus_increments_restore_what_a_full_checkpoint_restores() {
        let lines = stream();
        let checkpoint_every = lines.len() / 40;
        let mut p = pipeline();
        let mut tracker = Tracker::new();
        let mut stored = Stored::default();
        let mut out = Vec::new();
        let (mut deleted, mut sealed_skips, mut reloaded) = (0, 0, false);
        let mut saw_pane_parts = (false, false, false);
        let mut at_30 = None;
        for (n, chunk) in lines.chunks(checkpoint_every).enumerate() {
            feed(&mut p, chunk, &mut out);
            if n == 25 {
                // A reload that changes one objective's target: the spec's parts move to ids
                // of the new fingerprint, the old ones are deleted.
                p.reload(specs("98%"));
                reloaded = true;
            }
            let before = tracker.is_empty();
            let skippable = tracker.diff(&p).skipped;
            let (upserts, deletes) = stored.apply(&mut tracker, &p);
            if before {
                assert_eq!(
                    upserts,
                    stored.0.len(),
                    "the first checkpoint writes every part"
                );
            }
            deleted += deletes;
            sealed_skips += skippable;
            assert_eq!(stored.0, by_id(all_parts(&p)), "checkpoint {n}");
            for id in stored.0.keys() {
                match id {
                    PartId::Pane { .. } => saw_pane_parts.0 = true,
                    PartId::DriftPane { .. } => saw_pane_parts.1 = true,
                    PartId::Baseline { .. } => saw_pane_parts.2 = true,
                    _ => {}
                }
            }
            if n == 30 {
                at_30 = Some((Stored(stored.0.clone()), out.len()));
            }
            if n % 10 == 9 {
                let from_parts = stored.state();
                let mut q = pipeline();
                if reloaded {
                    q.reload(specs("98%"));
                }
                assert!(q.restore(from_parts));
                let mut r = pipeline();
                if reloaded {
                    r.reload(specs("98%"));
                }
                assert!(r.restore(p.snapshot()));
                same_parts(all_parts(&q), all_parts(&r), n);
            }
        }
        assert!(
            reloaded && deleted > 0 && sealed_skips > 0,
            "{deleted} {sealed_skips}"
        );
        assert_eq!(saw_pane_parts, (true, true, true));
        // Evicted: the stopped key holds no part at the end.
        assert!(
            !stored
                .0
                .keys()
                .any(|id| matches!(id, PartId::Pane { key, .. } if key.key.contains("sp-v1"))),
            "the stopped key's panes expired"
        );
        // A restart from the parts of checkpoint 30 (a base and 30 increments) finds what the
        // uninterrupted run finds after it.
        let (saved, mark) = at_30.expect("40 checkpoints");
        let mut resumed = pipeline();
        resumed.reload(specs("98%"));
        assert!(resumed.restore(saved.state()));
        let mut after = Vec::new();
        feed(&mut resumed, &lines[31 * checkpoint_every..], &mut after);
        resumed.finish(&mut after);
        p.finish(&mut out);
        assert!(!after.is_empty());
        assert_eq!(
            serde_json::to_string(&after).unwrap(),
            serde_json::to_string(&out[mark..]).unwrap()
        );
    }

    /// After a window close, an increment holds what the step's sessions touched (the newest
    /// panes, timeline chunks, the small heads), not what the key accumulated: on a steady
    /// stream, bytes per session of the step are no higher after a day of closed windows (and
    /// 28-day timelines filling) than after a few hours. Sessions per step are counted from
    /// the input; the drift baseline freezes after an hour, so it stops changing.
    #[test]
    fn a_steady_streams_increment_after_a_window_close_does_not_grow_with_closed_windows() {
        let text = include_str!("../sla-specs/support-bot.yaml")
            .replace("minDuration: 12h", "minDuration: 1h");
        let (specs, diags) = crate::spec::parse_str(&text, "support-bot.yaml");
        assert!(!crate::spec::has_errors(&diags), "{diags:?}");
        let mut p = Pipeline::new(specs, Arc::new(Catalog::embedded()), &Default::default());
        let lines: Vec<Vec<u8>> = Simulator::new(SimConfig {
            seed: 3,
            duration_ms: 30 * HOUR_MS,
            sessions_per_hour: 400.0,
            agents: vec![AgentProfile::new("support-bot", "sp-v1", "m-2026-09")],
            diurnal: false,
            ..SimConfig::default()
        })
        .unwrap()
        .collect();
        let mut tracker = Tracker::new();
        let first = tracker.diff(&p);
        tracker.written(first);
        let (mut out, mut evaluated, mut since) = (Vec::new(), 0, 0);
        // Per window close: bytes written per session of the step.
        let mut per_session = Vec::new();
        for line in &lines {
            p.process_bytes(line, 0, &mut out);
            since += 1;
            if p.windows_evaluated() == evaluated {
                continue;
            }
            evaluated = p.windows_evaluated();
            let inc = tracker.diff(&p);
            let bytes: usize = inc
                .upserts
                .iter()
                .map(|(id, b)| id.encode().len() + b.len())
                .sum();
            per_session.push(bytes as f64 / since as f64);
            tracker.written(inc);
            since = 0;
        }
        // 4 closes an hour: hours 3–9 (after the baseline froze) against hours 24–30.
        assert!(per_session.len() >= 4 * 29, "{} closes", per_session.len());
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let early = median(&per_session[4 * 3..4 * 9]);
        let late = median(&per_session[per_session.len() - 4 * 6..]);
        assert!(
            late <= early * 1.25,
            "bytes per session of a step: {early:.0} after hours 3–9, {late:.0} after hours 24–30"
        );
    }

    /// Ids read back as written, and a part set without its rest part is refused.
    #[test]
    fn ids_round_trip_and_an_incomplete_set_is_refused() {
        let mut p = pipeline();
        feed(&mut p, &stream()[..3000], &mut Vec::new());
        let parts = all_parts(&p);
        for (id, _) in &parts {
            assert_eq!(&PartId::decode(&id.encode()).unwrap(), id);
        }
        let without_rest: Vec<_> = parts.iter().filter(|(id, _)| *id != PartId::Rest).collect();
        assert!(matches!(
            join(without_rest.iter().map(|(id, b)| (id, &b[..]))),
            Err(PartError::NoRest)
        ));
    }
}
