//! Scores closed windows against a spec's objectives and produces findings.
//!
//! A [`SpecRuntime`] owns everything one spec needs while a stream flows: its open windows
//! (per key and segment), the SLI timelines behind error budgets and burn rates, and per-
//! objective statistics for summaries. It is a plain synchronous state machine —
//! `observe(session)`, `advance(watermark)` → findings — so the same input always gives the same
//! findings, byte for byte. Never reads the wall clock, never does I/O.

mod drift_forensic;
mod forensic;
pub mod measure;
pub mod slo;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::confidence;
use crate::drift::baseline::{Baseline, BaselineKey};
use crate::drift::engine::DriftConfig;
use crate::drift::features::FeatureSample;
use crate::drift::{DriftInput, DriftRuntime};
use crate::finding::{
    BoundMethod, BurnRate, Check, Clear, Comparator, ConfidenceBound, FeatureResult,
    FeatureVerdict, Finding, LastSession, Side, Sli, Subject, Unit, Verdict, unit_of,
};
use crate::glob::glob_match;
use crate::session::{EpochMs, Session};
use crate::spec::model::{Bound, Confidence, KeyField, Objective, ObjectiveKind, Severity, Spec};
use crate::windowing::{ClosedWindow, Late, WindowConfig, Windows};
use measure::{CompiledMeasures, MeasureState, SpecSummary};
use slo::{SliTimeline, budget_consumed, evaluate_tiers, worst_firing};

/// The label of the segment that collects values beyond `maxSegments`.
pub const OTHER_SEGMENT: &str = "other";

/// Which windows a summary belongs to: a key, and optionally one segment of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// `agent=…,prompt_version=…,model=…`
    pub key: Arc<str>,
    /// `channel=web`, or `None` for the whole key.
    pub segment: Option<Arc<str>>,
}

/// What happened to one objective over a run, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveStats {
    /// Windows (per key and segment) that got a verdict.
    pub windows_evaluated: u64,
    pub insufficient_data: u64,
    /// Breach findings by severity.
    pub breaches: BTreeMap<Severity, u64>,
    /// The worst breach seen: most severe, then furthest from target.
    pub worst: Option<Finding>,
}

impl ObjectiveStats {
    /// Counts one finding; keeps it as the worst when it is.
    fn record(&mut self, f: &Finding) {
        match f.verdict {
            Verdict::InsufficientData => self.insufficient_data += 1,
            Verdict::Breach => {
                *self.breaches.entry(f.severity).or_default() += 1;
                if self.worst.as_ref().is_none_or(|w| worse(f, w)) {
                    self.worst = Some(f.clone());
                }
            }
        }
    }
}

/// Everything a [`SpecRuntime`] learned from the stream so far: what a crash-safe restart must
/// restore. Derived data (compiled measures, interned keys) is rebuilt instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeState {
    /// Fingerprint of the spec the state was built under: state of another spec is not used.
    pub spec_fingerprint: String,
    pub windows: Windows<GroupKey, SpecSummary>,
    #[serde(with = "crate::snapshot::pairs")]
    pub timelines: HashMap<GroupKey, Vec<SliTimeline>>,
    pub key_parts: HashMap<Arc<str>, Vec<(String, String)>>,
    pub segments: HashMap<Arc<str>, Vec<Arc<str>>>,
    pub stats: Vec<ObjectiveStats>,
    pub late: u64,
    /// Per drift objective (in objective order), its baselines.
    pub baselines: Vec<Vec<Baseline>>,
    /// Event time of every key's newest session (absent in snapshots from before it existed).
    #[serde(default)]
    pub last_session: HashMap<Arc<str>, EpochMs>,
    /// Retained panes and breach streaks of incident forensics (absent in snapshots from
    /// before it existed: forensics then starts from the restore).
    #[serde(default)]
    pub forensics: crate::forensics::retain::Retained<GroupKey>,
    /// Per drift objective (in objective order), its feature panes and streaks (absent in
    /// snapshots from before drift forensics: it then starts from the restore).
    #[serde(default)]
    pub drift_forensics: Vec<crate::forensics::drift::DriftRetained<GroupKey>>,
}

/// A [`RuntimeState`] that borrows the runtime instead of cloning it: serializes to exactly the
/// same bytes ([`SpecRuntime::snapshot_ref`]), for writers that only encode the snapshot.
#[derive(Serialize)]
pub struct RuntimeStateRef<'a> {
    spec_fingerprint: String,
    windows: &'a Windows<GroupKey, SpecSummary>,
    #[serde(serialize_with = "crate::snapshot::pairs_ref::serialize")]
    timelines: &'a HashMap<GroupKey, Vec<SliTimeline>>,
    key_parts: &'a HashMap<Arc<str>, Vec<(String, String)>>,
    segments: &'a HashMap<Arc<str>, Vec<Arc<str>>>,
    stats: &'a [ObjectiveStats],
    late: u64,
    baselines: Vec<Vec<&'a Baseline>>,
    last_session: &'a HashMap<Arc<str>, EpochMs>,
    forensics: &'a crate::forensics::retain::Retained<GroupKey>,
    drift_forensics: &'a [crate::forensics::drift::DriftRetained<GroupKey>],
}

/// A spec fingerprint's text: its hash in 16 hex digits.
fn fingerprint_text(hash: u64) -> String {
    format!("{hash:016x}")
}

/// What a configuration reload kept of a spec's state ([`SpecRuntime::carry_over`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carried {
    /// The spec did not change.
    Everything,
    /// Open windows, SLO timelines and statistics (and unchanged drift baselines).
    Windows,
    /// Only the baselines of unchanged drift objectives.
    Baselines,
    /// A new spec, or one whose windows and baselines had to start again.
    Nothing,
}

/// One spec's live state.
pub struct SpecRuntime {
    spec: Arc<Spec>,
    measures: CompiledMeasures,
    windows: Windows<GroupKey, SpecSummary>,
    /// SLO objectives: (objective index, ratio measure index, target).
    slos: Vec<(usize, usize, f64)>,
    timelines: HashMap<GroupKey, Vec<SliTimeline>>,
    timeline_bucket_ms: i64,
    timeline_span_ms: i64,
    key_parts: HashMap<Arc<str>, Vec<(String, String)>>,
    /// Formatted key → interned key, probed once per session. Fx, not SipHash: the probe is on
    /// the hot path and keys are short. (Fx is not collision-resistant; keys are the `keyBy`
    /// fields of the producers' own records, and the map is bounded by their cardinality.)
    interned: HashMap<Box<str>, Arc<str>, rustc_hash::FxBuildHasher>,
    segments: HashMap<Arc<str>, Vec<Arc<str>>>,
    stats: Vec<ObjectiveStats>,
    /// Objectives judged without a ticket or page since the last drain.
    clears: Vec<Clear>,
    /// Event time of every key's newest session: whether a key still receives sessions.
    last_session: HashMap<Arc<str>, EpochMs>,
    /// Keys whose windows closed since the last drain, with their newest session.
    last_sessions_out: Vec<LastSession>,
    /// Drift objectives: (objective index, their runtime with its baselines).
    drift: Vec<(usize, DriftRuntime)>,
    late: u64,
    scratch: String,
    /// Objectives with a per-session definition of "counts against it" (forensics).
    tracked: Vec<forensic::Tracked>,
    /// Incident forensics: retained panes per key and segment, breach streaks, reloads.
    retained: crate::forensics::retain::Retained<GroupKey>,
    /// Affected sessions handed out since the last drain.
    affected_out: Vec<crate::forensics::AffectedBatch>,
    /// Drift forensics, per drift objective (indexed like `drift`): feature panes and streaks.
    drift_retained: Vec<crate::forensics::drift::DriftRetained<GroupKey>>,
    /// Scratch: the current session's outcome against each tracked objective.
    outcomes: Vec<crate::forensics::retain::Outcome>,
    /// Scratch: the current session's `(eligible, good)` under each measure.
    judged: Vec<(bool, bool)>,
}

impl SpecRuntime {
    pub fn new(spec: Arc<Spec>) -> SpecRuntime {
        let measures = CompiledMeasures::compile(&spec);
        let slos = spec
            .objectives
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let target = o.kind.slo_target()?;
                Some((i, measures.objectives[i].ratio?, target))
            })
            .collect();
        let w = spec.window;
        let bucket = slo::timeline_bucket_ms(w.step_ms, &spec.alerting.burn_rates);
        let span = spec
            .alerting
            .burn_rates
            .iter()
            .map(|t| t.long_ms)
            .max()
            .unwrap_or(0)
            .max(spec.period_ms);
        let drift: Vec<(usize, DriftRuntime)> = spec
            .objectives
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match &o.kind {
                ObjectiveKind::Drift(d) => Some((i, DriftRuntime::new(DriftConfig::new(d)))),
                _ => None,
            })
            .collect();
        let tracked = forensic::tracked(&spec, &measures);
        let drift_retained = (0..drift.len()).map(|_| Default::default()).collect();
        SpecRuntime {
            drift_retained,
            tracked,
            retained: Default::default(),
            affected_out: Vec::new(),
            outcomes: Vec::new(),
            judged: Vec::new(),
            windows: Windows::new(WindowConfig {
                size_ms: w.size_ms,
                step_ms: w.step_ms,
                allowed_lateness_ms: w.allowed_lateness_ms,
            }),
            stats: vec![ObjectiveStats::default(); spec.objectives.len()],
            spec,
            measures,
            slos,
            timelines: HashMap::new(),
            timeline_bucket_ms: bucket,
            timeline_span_ms: span,
            key_parts: HashMap::new(),
            interned: HashMap::default(),
            segments: HashMap::new(),
            clears: Vec::new(),
            last_session: HashMap::new(),
            last_sessions_out: Vec::new(),
            drift,
            late: 0,
            scratch: String::new(),
        }
    }

    pub fn spec(&self) -> &Arc<Spec> {
        &self.spec
    }

    /// Per-objective statistics, indexed like `spec.objectives`.
    pub fn stats(&self) -> &[ObjectiveStats] {
        &self.stats
    }

    /// A fingerprint of a spec: snapshots are only restored into the same spec.
    pub fn fingerprint(spec: &Spec) -> String {
        fingerprint_text(SpecRuntime::fingerprint_hash(spec))
    }

    /// The number [`SpecRuntime::fingerprint`] writes in hex (checkpoint part ids carry it).
    pub fn fingerprint_hash(spec: &Spec) -> u64 {
        let text = serde_json::to_string(spec).expect("specs serialize");
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    /// The state to persist for a crash-safe restart.
    pub fn snapshot(&self) -> RuntimeState {
        RuntimeState {
            spec_fingerprint: SpecRuntime::fingerprint(&self.spec),
            windows: self.windows.clone(),
            timelines: self.timelines.clone(),
            key_parts: self.key_parts.clone(),
            segments: self.segments.clone(),
            stats: self.stats.clone(),
            late: self.late,
            baselines: self
                .drift
                .iter()
                .map(|(_, d)| d.baselines().values().cloned().collect())
                .collect(),
            last_session: self.last_session.clone(),
            forensics: self.retained.clone(),
            drift_forensics: self.drift_retained.clone(),
        }
    }

    /// [`SpecRuntime::snapshot`] without the copy: the same serialized bytes.
    pub fn snapshot_ref(&self) -> RuntimeStateRef<'_> {
        RuntimeStateRef {
            spec_fingerprint: SpecRuntime::fingerprint(&self.spec),
            windows: &self.windows,
            timelines: &self.timelines,
            key_parts: &self.key_parts,
            segments: &self.segments,
            stats: &self.stats,
            late: self.late,
            baselines: self
                .drift
                .iter()
                .map(|(_, d)| d.baselines().values().collect())
                .collect(),
            last_session: &self.last_session,
            forensics: &self.retained,
            drift_forensics: &self.drift_retained,
        }
    }

    /// Visits this runtime's parts ([`crate::checkpoint`]) as spec number `spec`: the small
    /// state as one part, then per key its open panes, its timelines' heads and chunks, its
    /// retained forensic and drift panes (panes and chunks sealed once the closed windows passed
    /// their end: a record that could change them is late), and the drift baselines. The same
    /// state [`SpecRuntime::snapshot`] holds.
    pub fn checkpoint_parts(&self, spec: u32, w: &mut crate::checkpoint::PartWriter<'_>) {
        use crate::checkpoint::{PartId, SpecRef};
        let fingerprint = SpecRuntime::fingerprint_hash(&self.spec);
        let fingerprint_text = fingerprint_text(fingerprint);
        fn sorted<'a, K: Ord + 'a, V: 'a>(
            it: impl Iterator<Item = (&'a K, &'a V)>,
        ) -> Vec<(&'a K, &'a V)> {
            let mut v: Vec<_> = it.collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v
        }
        let head: SpecRef<'_> = (
            &fingerprint_text,
            *self.windows.config(),
            self.windows.frontier(),
            sorted(self.key_parts.iter()),
            sorted(self.segments.iter()),
            &self.stats,
            self.late,
            sorted(self.last_session.iter()),
            self.retained.tracks.iter().collect(),
            &self.retained.reloads,
            self.drift_retained
                .iter()
                .map(|d| d.tracks.iter().collect())
                .collect(),
        );
        w.part(PartId::Spec { spec, fingerprint }, false, &head);
        let closed_until = self.windows.closed_until();
        let pane_ms = self.windows.config().pane_ms();
        let sealed = |start: EpochMs| closed_until.is_some_and(|c| start + pane_ms <= c);
        for (key, panes) in self.windows.panes_by_key() {
            for (start, summary) in panes {
                let id = PartId::Open {
                    spec,
                    fingerprint,
                    key: key.clone(),
                    start,
                };
                w.part(id, sealed(start), summary);
            }
        }
        for (key, timelines) in sorted(self.timelines.iter()) {
            let heads: Vec<_> = timelines.iter().map(SliTimeline::head).collect();
            let id = PartId::Timelines {
                spec,
                fingerprint,
                key: key.clone(),
            };
            w.part(id, false, &heads);
            for (i, timeline) in timelines.iter().enumerate() {
                for chunk in timeline.chunks() {
                    let id = PartId::TimelineChunk {
                        spec,
                        fingerprint,
                        key: key.clone(),
                        timeline: i as u32,
                        chunk,
                    };
                    let sealed = timeline.chunk_sealed(chunk, closed_until);
                    w.part_with(id, sealed, || timeline.chunk(chunk));
                }
            }
        }
        for (key, by_start) in sorted(self.retained.panes.iter()) {
            for (&start, pane) in by_start {
                let id = PartId::Pane {
                    spec,
                    fingerprint,
                    key: key.clone(),
                    start,
                };
                w.part(id, sealed(start), pane);
            }
        }
        for (objective, d) in self.drift_retained.iter().enumerate() {
            for (key, by_start) in sorted(d.panes.iter()) {
                for (&start, pane) in by_start {
                    let id = PartId::DriftPane {
                        spec,
                        fingerprint,
                        objective: objective as u32,
                        key: key.clone(),
                        start,
                    };
                    w.part(id, sealed(start), pane);
                }
            }
        }
        for (objective, (_, d)) in self.drift.iter().enumerate() {
            for b in d.baselines().values() {
                let id = PartId::Baseline {
                    spec,
                    fingerprint,
                    objective: objective as u32,
                    label: b.key.label(),
                };
                w.part(id, false, b);
            }
        }
    }

    /// Restores a snapshot taken under the same spec; returns false (and changes nothing) for
    /// a snapshot of another spec or shape.
    pub fn restore(&mut self, state: RuntimeState) -> bool {
        if state.spec_fingerprint != SpecRuntime::fingerprint(&self.spec)
            || state.stats.len() != self.stats.len()
            || state.baselines.len() != self.drift.len()
        {
            return false;
        }
        self.windows = state.windows;
        self.timelines = state.timelines;
        self.interned = state
            .key_parts
            .keys()
            .map(|k| (Box::from(&**k), k.clone()))
            .collect();
        self.key_parts = state.key_parts;
        self.segments = state.segments;
        self.stats = state.stats;
        self.late = state.late;
        self.last_session = state.last_session;
        self.retained = state.forensics;
        self.drift_retained = if state.drift_forensics.len() == self.drift.len() {
            state.drift_forensics
        } else {
            (0..self.drift.len()).map(|_| Default::default()).collect()
        };
        for ((_, d), baselines) in self.drift.iter_mut().zip(state.baselines) {
            d.restore(baselines);
        }
        true
    }

    /// Takes the clears produced since the last call: objectives judged on a key, segment and
    /// window without a ticket or page (what resolves an incident).
    pub fn drain_clears(&mut self) -> Vec<Clear> {
        std::mem::take(&mut self.clears)
    }

    /// Takes the newest session of every key whose windows closed since the last call (what
    /// tells the alert engine a key stopped receiving sessions).
    pub fn drain_affected(&mut self) -> Vec<crate::forensics::AffectedBatch> {
        std::mem::take(&mut self.affected_out)
    }

    pub fn drain_last_sessions(&mut self) -> Vec<LastSession> {
        std::mem::take(&mut self.last_sessions_out)
    }

    /// Event time of a key's newest session (`agent=…,prompt_version=…`), if it had one.
    pub fn last_session(&self, key: &str) -> Option<EpochMs> {
        self.last_session.get(key).copied()
    }

    /// Records rejected as late by this spec.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Pane summaries and timelines held: stays flat however long the stream (memory tests).
    pub fn state_size(&self) -> (usize, usize) {
        (self.windows.open_summaries(), self.timelines.len())
    }

    /// Whether the spec's selector covers this session.
    pub fn selects(&self, s: &Session) -> bool {
        let sel = &self.spec.selector;
        (sel.agents.is_empty() || sel.agents.iter().any(|a| glob_match(a, &s.agent)))
            && sel
                .attributes
                .iter()
                .all(|(k, v)| s.attribute(k).is_some_and(|a| a.label() == *v))
    }

    /// Adds a session the selector covers to its windows and timelines. A late session touches
    /// nothing and is counted.
    pub fn observe(&mut self, s: &Session) -> Result<(), Late> {
        if let Err(late) = self.windows.check(s.event_time) {
            self.late += 1;
            return Err(late);
        }
        let key = self.key_of(s);
        match self.last_session.get_mut(&key) {
            Some(t) => *t = (*t).max(s.event_time),
            None => {
                self.last_session.insert(key.clone(), s.event_time);
            }
        }
        let segment = self.segment_of(&key, s);
        // Each ratio measure judges the session once, for windows, timelines and forensics.
        let mut judged = std::mem::take(&mut self.judged);
        self.measures.judge(s, &mut judged);
        self.retain_forensics(&key, segment.as_ref(), s, &judged);
        self.retain_drift_forensics(&key, segment.as_ref(), s);
        let groups = [
            Some(GroupKey {
                key: key.clone(),
                segment: None,
            }),
            segment.map(|seg| GroupKey {
                key,
                segment: Some(seg),
            }),
        ];
        for group in groups.into_iter().flatten() {
            let measures = &self.measures;
            self.windows
                .observe(
                    s.event_time,
                    &group,
                    || measures.empty_summary(),
                    |sum| measures.observe_judged(sum, s, &judged),
                )
                .expect("checked above");
            if !self.slos.is_empty() {
                let (bucket, span) = (self.timeline_bucket_ms, self.timeline_span_ms);
                let n = self.slos.len();
                let timelines = self
                    .timelines
                    .entry(group)
                    .or_insert_with(|| vec![SliTimeline::new(bucket, span); n]);
                for ((_, m, _), tl) in self.slos.iter().zip(timelines.iter_mut()) {
                    let (eligible, good) = judged[*m];
                    if eligible {
                        tl.add(s.event_time, good);
                    } else {
                        tl.add_ineligible(s.event_time);
                    }
                }
            }
        }
        self.judged = judged;
        Ok(())
    }

    /// Moves the watermark and evaluates every window that closes.
    pub fn advance(&mut self, max_event_time: EpochMs) -> Vec<Finding> {
        let closed = self.windows.advance(max_event_time);
        if closed.is_empty() {
            return Vec::new();
        }
        self.note_last_sessions(&closed);
        let out = self.evaluate_all(closed);
        self.forget_idle_timelines();
        out
    }

    /// End of a finite stream: closes and evaluates every window holding data.
    pub fn flush(&mut self) -> Vec<Finding> {
        let closed = self.windows.flush();
        self.note_last_sessions(&closed);
        self.evaluate_all(closed)
    }

    /// Reports the newest session of every key with a window among `closed`, once per key.
    fn note_last_sessions(&mut self, closed: &[ClosedWindow<GroupKey, SpecSummary>]) {
        let mut keys: Vec<&Arc<str>> = closed
            .iter()
            .filter(|w| w.key.segment.is_none())
            .map(|w| &w.key.key)
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if let (Some(at), Some(parts)) = (self.last_session.get(k), self.key_parts.get(k)) {
                self.last_sessions_out.push(LastSession {
                    spec: self.spec.name.clone(),
                    key: parts.clone(),
                    at: *at,
                });
            }
        }
    }

    fn evaluate_all(&mut self, closed: Vec<ClosedWindow<GroupKey, SpecSummary>>) -> Vec<Finding> {
        let clears_from = self.clears.len();
        let mut out = self.evaluate_closed(&closed);
        self.investigate(&closed, &mut out, clears_from);
        self.investigate_drift(&closed, &mut out, clears_from);
        out
    }

    fn evaluate_closed(&mut self, closed: &[ClosedWindow<GroupKey, SpecSummary>]) -> Vec<Finding> {
        let mut out = Vec::new();
        self.evaluate_drift(closed, &mut out);
        for w in closed {
            for i in 0..self.spec.objectives.len() {
                let before = out.len();
                let standing = self.evaluate(i, w, &mut out);
                let evaluated = standing.is_some();
                let alerted = out[before..]
                    .iter()
                    .any(|f| f.verdict == Verdict::Breach && f.severity >= Severity::Ticket);
                if let Some(standing) = standing
                    && !alerted
                {
                    self.clears.push(self.clear_for(i, w, standing));
                }
                let stats = &mut self.stats[i];
                if evaluated {
                    stats.windows_evaluated += 1;
                }
                for f in &out[before..] {
                    stats.record(f);
                }
            }
        }
        out
    }

    /// Drift objectives, per family of windows Benjamini–Hochberg corrects over: one key's
    /// windows (the whole key and each of its segments) closing at the same instant. A family
    /// never spans keys, so findings do not depend on which other keys share the process — a
    /// key's verdicts are the same whether one instance or many evaluate the stream.
    fn evaluate_drift(
        &mut self,
        closed: &[ClosedWindow<GroupKey, SpecSummary>],
        out: &mut Vec<Finding>,
    ) {
        let step = self.spec.window.step_ms;
        for d in 0..self.drift.len() {
            let oi = self.drift[d].0;
            let Some(m) = self.measures.objectives[oi].drift else {
                continue;
            };
            let mut start = 0;
            while start < closed.len() {
                let (end, key) = (closed[start].end, &closed[start].key.key);
                let stop = start
                    + closed[start..]
                        .iter()
                        .take_while(|w| w.end == end && w.key.key == *key)
                        .count();
                let batch = &closed[start..stop];
                let inputs: Vec<DriftInput<'_>> = batch
                    .iter()
                    .map(|w| DriftInput {
                        key: self.baseline_key(oi, &w.key),
                        end,
                        step_ms: step,
                        window: drift_sample(&w.summary, m),
                        newest_step: drift_sample(&w.newest_step, m),
                    })
                    .collect();
                let results = self.drift[d].1.evaluate(&inputs);
                for r in results {
                    self.drift_finding(oi, &batch[r.window], r, out);
                }
                start = stop;
            }
        }
    }

    fn baseline_key(&self, objective: usize, group: &GroupKey) -> BaselineKey {
        let parts = self.key_parts.get(&group.key);
        let part = |name: &str| {
            parts
                .and_then(|p| p.iter().find(|(k, _)| k == name))
                .map_or_else(|| "*".to_owned(), |(_, v)| v.clone())
        };
        BaselineKey {
            spec: self.spec.name.clone(),
            objective: self.spec.objectives[objective].name.clone(),
            agent: part("agent"),
            prompt_version: part("prompt_version"),
            model: part("model"),
            segment: group.segment.as_deref().map(str::to_owned),
        }
    }

    fn drift_finding(
        &mut self,
        oi: usize,
        w: &ClosedWindow<GroupKey, SpecSummary>,
        r: crate::drift::WindowDrift,
        out: &mut Vec<Finding>,
    ) {
        let o = &self.spec.objectives[oi];
        let ctx = Ctx { rt: self, o, w };
        let whole_key = w.key.segment.is_none();
        let mut produced = None;
        let mut evaluated = false;
        match &r.report {
            None => {
                if whole_key {
                    let (learned, min) = r.learning.unwrap_or((0, 0));
                    produced = Some(ctx.finding(FindingParts {
                        check: Check::Drift,
                        verdict: Verdict::InsufficientData,
                        severity: Severity::Info,
                        sessions: w.summary.sessions,
                        observed: learned as f64,
                        comparator: Comparator::AtLeast,
                        target: min as f64,
                        unit: Unit::Sessions,
                        ..FindingParts::default()
                    }));
                }
            }
            Some(report) => {
                let drifted: Vec<&FeatureResult> = report
                    .features
                    .iter()
                    .filter(|f| f.verdict == FeatureVerdict::Drift)
                    .collect();
                let all_thin = report
                    .features
                    .iter()
                    .all(|f| f.verdict == FeatureVerdict::InsufficientData);
                evaluated = !all_thin;
                if !drifted.is_empty() {
                    let sequential_only = drifted.iter().all(|f| is_sequential(f));
                    let mut f = ctx.finding(FindingParts {
                        check: if sequential_only {
                            Check::DriftSignal
                        } else {
                            Check::Drift
                        },
                        verdict: Verdict::Breach,
                        // Sequential detectors and PCA are worth a look, not a ticket, until a
                        // calibrated window test agrees.
                        severity: if sequential_only {
                            Severity::Info
                        } else {
                            o.severity
                        },
                        sessions: w.summary.sessions,
                        observed: drifted.len() as f64,
                        comparator: Comparator::AtMost,
                        target: 0.0,
                        unit: Unit::Features,
                        ..FindingParts::default()
                    });
                    f.drift = Some(report.clone());
                    f.chart = r.chart.clone();
                    produced = Some(f);
                } else if all_thin && whole_key {
                    let mut f = ctx.insufficient(o_min_samples(o));
                    f.check = Check::Drift;
                    f.drift = Some(report.clone());
                    produced = Some(f);
                }
            }
        }
        // The drift objective's standing: how many features drifted, and the whole report
        // (feature by feature, also when nothing drifted).
        let standing = || Standing {
            sessions: w.summary.sessions,
            observed: r.report.as_ref().map(|rep| {
                rep.features
                    .iter()
                    .filter(|f| f.verdict == FeatureVerdict::Drift)
                    .count() as f64
            }),
            comparator: Comparator::AtMost,
            target: 0.0,
            unit: Unit::Features,
            budget_consumed: None,
            burn_rates: Vec::new(),
            drift: r.report.clone(),
            bound: None,
        };
        let stats = &mut self.stats[oi];
        if evaluated {
            stats.windows_evaluated += 1;
        }
        match produced {
            Some(f) => {
                stats.record(&f);
                if !(f.verdict == Verdict::Breach && f.severity >= Severity::Ticket) && evaluated {
                    self.clears.push(self.clear_for(oi, w, standing()));
                }
                out.push(f);
            }
            None if evaluated => self.clears.push(self.clear_for(oi, w, standing())),
            None => {}
        }
    }

    fn clear_for(
        &self,
        oi: usize,
        w: &ClosedWindow<GroupKey, SpecSummary>,
        standing: Standing,
    ) -> Clear {
        Clear {
            spec: self.spec.name.clone(),
            objective: self.spec.objectives[oi].name.clone(),
            key: self.key_parts.get(&w.key.key).cloned().unwrap_or_default(),
            segment: w.key.segment.as_deref().map(str::to_owned),
            window_end: w.end,
            sessions: standing.sessions,
            observed: standing.observed.map(round9),
            comparator: standing.comparator,
            target: standing.target,
            unit: standing.unit,
            budget_consumed: standing.budget_consumed.map(round9),
            burn_rates: standing.burn_rates.into_iter().map(round_rates).collect(),
            drift: standing.drift,
            bound: standing.bound,
        }
    }

    /// Baselines changed since the last call, to persist.
    pub fn take_dirty_baselines(&mut self) -> Vec<Baseline> {
        self.drift
            .iter_mut()
            .flat_map(|(_, d)| d.take_dirty())
            .collect()
    }

    /// Installs stored baselines that belong to this spec's drift objectives.
    pub fn restore_baselines(&mut self, baselines: &[Baseline]) {
        for (oi, d) in &mut self.drift {
            let objective = &self.spec.objectives[*oi].name;
            d.restore(
                baselines
                    .iter()
                    .filter(|b| b.key.spec == self.spec.name && &b.key.objective == objective)
                    .cloned(),
            );
        }
    }

    /// Moves into this fresh runtime what is still valid of `old`, the runtime of the spec of
    /// the same name before a configuration reload:
    ///
    /// - the same spec: everything;
    /// - the windows collect the same things (same selector, keys, segments, window, measures
    ///   and SLO timelines — e.g. only a target, severity or runbook changed): the open windows,
    ///   SLI timelines and per-objective statistics (matched by objective name);
    /// - otherwise nothing of the windows, which fill again from the next sessions.
    ///
    /// In every case a drift objective whose definition (and the spec's `keyBy`) did not change
    /// keeps its baselines.
    pub fn carry_over(&mut self, mut old: SpecRuntime) -> Carried {
        if SpecRuntime::fingerprint(&old.spec) == SpecRuntime::fingerprint(&self.spec) {
            *self = old;
            return Carried::Everything;
        }
        let slo_measures = |rt: &SpecRuntime| -> Vec<(usize, usize)> {
            rt.slos.iter().map(|&(i, m, _)| (i, m)).collect()
        };
        let (new, was) = (&*self.spec, &*old.spec);
        let same_windows = new.selector == was.selector
            && new.key_by == was.key_by
            && new.segment_by == was.segment_by
            && new.max_segments == was.max_segments
            && new.window == was.window
            && self.measures == old.measures
            && slo_measures(self) == slo_measures(&old)
            && self.timeline_bucket_ms == old.timeline_bucket_ms
            && self.timeline_span_ms == old.timeline_span_ms;
        let mut carried = Carried::Nothing;
        // A reload at the onset of a change is a candidate explanation of it (forensics).
        let reloaded_at = old.last_session.values().max().copied();
        if same_windows {
            std::mem::swap(&mut self.windows, &mut old.windows);
            std::mem::swap(&mut self.timelines, &mut old.timelines);
            std::mem::swap(&mut self.key_parts, &mut old.key_parts);
            std::mem::swap(&mut self.interned, &mut old.interned);
            std::mem::swap(&mut self.segments, &mut old.segments);
            std::mem::swap(&mut self.last_session, &mut old.last_session);
            std::mem::swap(&mut self.retained, &mut old.retained);
            // Same measures: the same drift objectives with the same features.
            std::mem::swap(&mut self.drift_retained, &mut old.drift_retained);
            self.late = old.late;
            for (o, st) in self.spec.objectives.iter().zip(&mut self.stats) {
                if let Some(i) = was.objectives.iter().position(|p| p.name == o.name) {
                    *st = old.stats[i].clone();
                }
            }
            carried = Carried::Windows;
        }
        self.retained.reloads.extend(reloaded_at);
        for (oi, d) in &mut self.drift {
            let objective = &self.spec.objectives[*oi];
            let before = old.drift.iter().find(|(pi, _)| {
                let p = &was.objectives[*pi];
                p == objective
            });
            if let Some((_, od)) = before.filter(|_| new.key_by == was.key_by) {
                d.restore(od.baselines().values().cloned());
                if carried == Carried::Nothing {
                    carried = Carried::Baselines;
                }
            }
        }
        carried
    }

    /// The drift runtimes (for `slawatch baseline`).
    pub fn drift_runtimes(&self) -> impl Iterator<Item = &DriftRuntime> {
        self.drift.iter().map(|(_, d)| d)
    }

    /// Timelines (and newest-session times) of keys that have been quiet for longer than every
    /// lookback are dropped.
    fn forget_idle_timelines(&mut self) {
        if let Some(wm) = self.windows.watermark() {
            let span = self.timeline_span_ms;
            self.timelines.retain(|_, tls| {
                tls.iter()
                    .any(|t| t.newest_end().is_some_and(|end| end + span > wm))
            });
            self.last_session.retain(|_, t| *t + span > wm);
        }
    }

    fn key_of(&mut self, s: &Session) -> Arc<str> {
        let buf = &mut self.scratch;
        buf.clear();
        buf.push_str("agent=");
        buf.push_str(&s.agent);
        for f in &self.spec.key_by {
            buf.push(',');
            push_field(buf, f, s);
        }
        if let Some(k) = self.interned.get(buf.as_str()) {
            return k.clone();
        }
        let key: Arc<str> = Arc::from(buf.as_str());
        let mut parts = vec![("agent".to_owned(), s.agent.clone())];
        for f in &self.spec.key_by {
            let mut one = String::new();
            push_field(&mut one, f, s);
            let (name, value) = one.split_once('=').expect("push_field writes name=value");
            parts.push((name.to_owned(), value.to_owned()));
        }
        self.key_parts.insert(key.clone(), parts);
        self.interned.insert(Box::from(buf.as_str()), key.clone());
        key
    }

    fn segment_of(&mut self, key: &Arc<str>, s: &Session) -> Option<Arc<str>> {
        if self.spec.segment_by.is_empty() {
            return None;
        }
        let mut label = String::new();
        for (i, f) in self.spec.segment_by.iter().enumerate() {
            if i > 0 {
                label.push(',');
            }
            push_field(&mut label, f, s);
        }
        let admitted = self.segments.entry(key.clone()).or_default();
        if let Some(seg) = admitted.iter().find(|a| ***a == *label) {
            return Some(seg.clone());
        }
        // Segments are admitted in order of first appearance up to the cap; the rest share
        // one `other` segment so a high-cardinality attribute cannot grow memory.
        if admitted.len() < self.spec.max_segments {
            let seg: Arc<str> = Arc::from(label);
            admitted.push(seg.clone());
            Some(seg)
        } else {
            Some(Arc::from(OTHER_SEGMENT))
        }
    }

    /// Evaluates objective `i` on one closed window; pushes findings; returns whether the
    /// objective reached a verdict (including "fine") for the window.
    fn evaluate(
        &self,
        i: usize,
        w: &ClosedWindow<GroupKey, SpecSummary>,
        out: &mut Vec<Finding>,
    ) -> Option<Standing> {
        let o = &self.spec.objectives[i];
        let om = &self.measures.objectives[i];
        let min = self.spec.min_sessions;
        let enough = w.summary.sessions >= min;
        let ctx = Ctx { rt: self, o, w };
        match &o.kind {
            ObjectiveKind::Drift(_) => None,
            ObjectiveKind::Ratio { .. }
            | ObjectiveKind::Threshold { .. }
            | ObjectiveKind::Fallback(_) => {
                let target = o.kind.slo_target().expect("SLO kinds have a target");
                let judged = self.evaluate_slo(&ctx, i, target, om.ratio, out);
                if let (ObjectiveKind::Fallback(f), Some(m)) = (&o.kind, om.fallback_rate)
                    && let Some(max) = f.max_rate
                    && enough
                {
                    let (good, total) = ratio(&w.summary, m);
                    if total > 0 {
                        let observed = good as f64 / total as f64;
                        if observed > max {
                            out.push(ctx.finding(FindingParts {
                                check: Check::MaxRate,
                                verdict: Verdict::Breach,
                                severity: o.severity,
                                sessions: w.summary.sessions,
                                observed,
                                comparator: Comparator::AtMost,
                                target: max,
                                unit: Unit::Ratio,
                                subject: Some(Subject::FallbackRate),
                                ..FindingParts::default()
                            }));
                        }
                    }
                }
                judged
            }
            ObjectiveKind::Percentile {
                field,
                p,
                bound,
                confidence,
            } => {
                let m = om.quantiles?;
                let MeasureState::Quantiles(q) = &w.summary.states[m] else {
                    unreachable!()
                };
                self.window_check(
                    &ctx,
                    out,
                    WindowCheck {
                        check: Check::Percentile,
                        enough,
                        observed: q.quantile(p / 100.0),
                        bound: *bound,
                        evidence: percentile_bound(q, p / 100.0, *bound, *confidence),
                        subject: subject_of(o, &self.spec),
                        unit: unit_of(field),
                    },
                )
            }
            ObjectiveKind::Mean {
                field,
                bound,
                confidence,
            } => {
                let m = om.sum?;
                let state = &w.summary.states[m];
                let (count, sum) = state.sum().expect("sum state");
                self.window_check(
                    &ctx,
                    out,
                    WindowCheck {
                        check: Check::Mean,
                        enough,
                        observed: (count > 0).then(|| sum / count as f64),
                        bound: *bound,
                        evidence: mean_bound(count, sum, state.sum_sq(), *bound, *confidence),
                        subject: subject_of(o, &self.spec),
                        unit: unit_of(field),
                    },
                )
            }
            ObjectiveKind::Rate {
                bound, confidence, ..
            } => {
                let m = om.ratio?;
                let (good, total) = ratio(&w.summary, m);
                self.window_check(
                    &ctx,
                    out,
                    WindowCheck {
                        check: Check::Rate,
                        enough: enough && total >= min.min(w.summary.sessions),
                        observed: (total > 0).then(|| good as f64 / total as f64),
                        bound: *bound,
                        evidence: rate_bound(good, total, *bound, *confidence),
                        subject: subject_of(o, &self.spec),
                        unit: Unit::Ratio,
                    },
                )
            }
            ObjectiveKind::Spend(sp) => {
                // The standing of a spend objective is its most window-wide check that judged:
                // window budget, then cost percentile, then the caps.
                let mut judged = None;
                if let (Some(m), Some(cap)) = (om.violations, sp.per_session_max_usd) {
                    let subject = Subject::CostCap { cap_usd: cap };
                    judged = judged.or(self.violation_check(
                        &ctx,
                        out,
                        m,
                        Check::HardCap,
                        Severity::Page,
                        subject,
                    ));
                }
                if let (Some(m), Some(cap)) = (om.soft_violations, sp.per_session_soft_usd) {
                    let subject = Subject::CostCap { cap_usd: cap };
                    judged = judged.or(self.violation_check(
                        &ctx,
                        out,
                        m,
                        Check::SoftCap,
                        o.severity,
                        subject,
                    ));
                }
                if let (Some(m), Some((p, max))) = (om.quantiles, sp.percentile) {
                    let MeasureState::Quantiles(q) = &w.summary.states[m] else {
                        unreachable!()
                    };
                    judged = self
                        .window_check(
                            &ctx,
                            out,
                            WindowCheck {
                                check: Check::Percentile,
                                enough,
                                observed: q.quantile(p / 100.0),
                                bound: Bound::Max(max),
                                evidence: None,
                                unit: Unit::Usd,
                                subject: Subject::CostPercentile { p },
                            },
                        )
                        .or(judged);
                }
                if let (Some(m), Some(budget)) = (om.sum, sp.window_budget_usd) {
                    let (_, sum) = w.summary.states[m].sum().expect("sum state");
                    judged = self
                        .window_check(
                            &ctx,
                            out,
                            WindowCheck {
                                check: Check::WindowBudget,
                                enough: true,
                                observed: Some(sum),
                                bound: Bound::Max(budget),
                                evidence: None,
                                unit: Unit::Usd,
                                subject: Subject::WindowSpend,
                            },
                        )
                        .or(judged);
                }
                judged
            }
            ObjectiveKind::Pii(_) | ObjectiveKind::Tools(_) => {
                let m = om.violations?;
                let severity = if o.zero_tolerance {
                    Severity::Page
                } else {
                    o.severity
                };
                let subject = subject_of(o, &self.spec);
                self.violation_check(&ctx, out, m, Check::Violation, severity, subject)
            }
        }
    }

    /// SLO objectives: burn-rate tiers over the timeline, and the window's own SLI.
    fn evaluate_slo(
        &self,
        ctx: &Ctx<'_>,
        i: usize,
        target: f64,
        ratio_measure: Option<usize>,
        out: &mut Vec<Finding>,
    ) -> Option<Standing> {
        let m = ratio_measure?;
        let w = ctx.w;
        let min = self.spec.min_sessions;
        let (good, total) = ratio(&w.summary, m);
        let slo_index = self.slos.iter().position(|(o, _, _)| *o == i);
        let timeline = slo_index.and_then(|s| self.timelines.get(&w.key).map(|t| &t[s]));
        let mut burn_rates = Vec::new();
        let mut firing = None;
        let mut consumed = None;
        if let Some(tl) = timeline {
            let outcomes = evaluate_tiers(tl, &self.spec.alerting.burn_rates, target, w.end, min);
            firing = worst_firing(&outcomes).cloned();
            consumed = budget_consumed(tl.sum(w.end - self.spec.period_ms, w.end), target);
            burn_rates = outcomes
                .iter()
                .map(|o| BurnRate {
                    tier: o.tier.name.clone(),
                    factor: o.tier.factor,
                    long_window_ms: o.tier.long_ms,
                    long_rate: o.long_rate.unwrap_or(0.0),
                    short_window_ms: o.tier.short_ms,
                    short_rate: o.short_rate.unwrap_or(0.0),
                })
                .collect();
        }
        let standing = |observed: Option<f64>| Standing {
            sessions: w.summary.sessions,
            observed,
            comparator: Comparator::AtLeast,
            target,
            unit: Unit::Ratio,
            budget_consumed: consumed,
            burn_rates: burn_rates.clone(),
            drift: None,
            bound: None,
        };
        let window_sli = (total > 0).then(|| good as f64 / total as f64);
        if let Some(f) = firing {
            let judged = standing(window_sli);
            let observed = f.long.good as f64 / f.long.total.max(1) as f64;
            out.push(ctx.finding(FindingParts {
                check: Check::BurnRate,
                verdict: Verdict::Breach,
                severity: f.tier.severity,
                sessions: w.summary.sessions,
                observed,
                comparator: Comparator::AtLeast,
                target,
                unit: Unit::Ratio,
                budget_consumed: consumed,
                burn_rates,
                exemplars: bad_exemplars(&w.summary, m),
                subject: Some(match subject_of(ctx.o, &self.spec) {
                    Subject::Slo { sli, period_ms, .. } => Subject::Slo {
                        sli,
                        period_ms,
                        tier: Some(f.tier.name.clone()),
                    },
                    other => other,
                }),
                ..FindingParts::default()
            }));
            return Some(judged);
        }
        if w.summary.sessions < min {
            if w.key.segment.is_none() {
                out.push(ctx.insufficient(min));
            }
            return None;
        }
        if total < min {
            // Enough sessions, but too few eligible ones (e.g. failures for fallback
            // coverage) to judge this window alone; the burn rates above still cover it.
            return Some(standing(None));
        }
        let judged = standing(window_sli);
        let observed = good as f64 / total as f64;
        if observed < target {
            out.push(ctx.finding(FindingParts {
                check: Check::Window,
                verdict: Verdict::Breach,
                severity: Severity::Info,
                sessions: w.summary.sessions,
                observed,
                comparator: Comparator::AtLeast,
                target,
                unit: Unit::Ratio,
                budget_consumed: consumed,
                burn_rates,
                exemplars: bad_exemplars(&w.summary, m),
                ..FindingParts::default()
            }));
        }
        Some(judged)
    }

    fn window_check(
        &self,
        ctx: &Ctx<'_>,
        out: &mut Vec<Finding>,
        c: WindowCheck,
    ) -> Option<Standing> {
        if !c.enough {
            if ctx.w.key.segment.is_none() && ctx.w.summary.sessions < self.spec.min_sessions {
                out.push(ctx.insufficient(self.spec.min_sessions));
            }
            return None;
        }
        let observed = c.observed?;
        let comparator = match c.bound {
            Bound::Max(_) => Comparator::AtMost,
            Bound::Min(_) => Comparator::AtLeast,
        };
        let evidence = c.evidence.map(|b| ConfidenceBound {
            value: b.value.map(round9),
            method: match b.method {
                BoundMethod::StudentT { std_error } => BoundMethod::StudentT {
                    std_error: std_error.map(round9),
                },
                other => other,
            },
            ..b
        });
        let judged = Standing {
            sessions: ctx.w.summary.sessions,
            observed: Some(observed),
            comparator,
            target: c.bound.value(),
            unit: c.unit,
            budget_consumed: None,
            burn_rates: Vec::new(),
            drift: None,
            bound: evidence.clone(),
        };
        // With a confidence bound, the bound itself (the side favourable to the service) must
        // be outside the objective; the point estimate then is too.
        let breached = !c.bound.holds(observed)
            && evidence
                .as_ref()
                .is_none_or(|b| b.value.is_some_and(|v| !c.bound.holds(v)));
        if breached {
            let exemplars = match c.unit {
                Unit::Usd => top_ids(&ctx.w.summary.costliest),
                Unit::Ms => top_ids(&ctx.w.summary.slowest),
                _ => Vec::new(),
            };
            out.push(ctx.finding(FindingParts {
                check: c.check,
                verdict: Verdict::Breach,
                severity: ctx.o.severity,
                sessions: ctx.w.summary.sessions,
                observed,
                comparator,
                target: c.bound.value(),
                unit: c.unit,
                subject: Some(c.subject),
                exemplars,
                bound: evidence,
                ..FindingParts::default()
            }));
        }
        Some(judged)
    }

    /// Per-session violations in the window's newest step, so each is reported once. The
    /// observed value is the number of violating sessions; the target is zero.
    fn violation_check(
        &self,
        ctx: &Ctx<'_>,
        out: &mut Vec<Finding>,
        m: usize,
        check: Check,
        severity: Severity,
        subject: Subject,
    ) -> Option<Standing> {
        let MeasureState::Violations {
            sessions,
            exemplars,
            details,
        } = &ctx.w.newest_step.states[m]
        else {
            unreachable!()
        };
        if *sessions > 0 {
            let step = self.spec.window.step_ms;
            out.push(ctx.finding(FindingParts {
                check,
                verdict: Verdict::Breach,
                severity,
                sessions: ctx.w.newest_step.sessions,
                observed: *sessions as f64,
                comparator: Comparator::AtMost,
                target: 0.0,
                unit: Unit::Count,
                exemplars: exemplars.ids(),
                details: details.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                subject: Some(subject),
                window_start: Some(ctx.w.end - step),
                ..FindingParts::default()
            }));
        }
        Some(Standing {
            sessions: ctx.w.newest_step.sessions,
            observed: Some(*sessions as f64),
            comparator: Comparator::AtMost,
            target: 0.0,
            unit: Unit::Count,
            budget_consumed: None,
            burn_rates: Vec::new(),
            drift: None,
            bound: None,
        })
    }
}

/// Supporting signals: the sequential detectors and PCA reconstruction error. Their thresholds
/// are not calibrated p-values on heavy-tailed behaviour data (a 3σ band of mean errors alarms
/// on one runaway session), so on their own they make an info finding; a ticket needs a
/// calibrated, corrected window test (KS, z, χ², cluster mix) to agree.
fn is_sequential(f: &FeatureResult) -> bool {
    matches!(
        f.test.as_str(),
        "cusum" | "page_hinkley" | "pca_reconstruction"
    )
}

fn o_min_samples(o: &Objective) -> u64 {
    match &o.kind {
        ObjectiveKind::Drift(d) => d.min_samples,
        _ => 0,
    }
}

fn drift_sample(summary: &SpecSummary, m: usize) -> &FeatureSample {
    match &summary.states[m] {
        MeasureState::Drift(s) => s,
        _ => unreachable!("drift measures hold drift samples"),
    }
}

fn worse(a: &Finding, b: &Finding) -> bool {
    let distance = |f: &Finding| {
        if f.target == 0.0 {
            f.observed
        } else {
            ((f.observed - f.target) / f.target).abs()
        }
    };
    (a.severity, distance(a)) > (b.severity, distance(b))
}

fn ratio(summary: &SpecSummary, m: usize) -> (u64, u64) {
    summary.states[m].ratio().expect("ratio state")
}

fn bad_exemplars(summary: &SpecSummary, m: usize) -> Vec<String> {
    match &summary.states[m] {
        MeasureState::Ratio { bad, .. } => bad.ids(),
        _ => Vec::new(),
    }
}

fn top_ids(top: &crate::sketch::TopK) -> Vec<String> {
    top.items()
        .iter()
        .take(measure::EXEMPLARS)
        .map(|r| r.session_id.clone())
        .collect()
}

fn push_field(buf: &mut String, f: &KeyField, s: &Session) {
    match f {
        KeyField::PromptVersion => {
            buf.push_str("prompt_version=");
            buf.push_str(&s.prompt_version);
        }
        KeyField::Model => {
            buf.push_str("model=");
            buf.push_str(&s.model);
        }
        KeyField::Provider => {
            buf.push_str("provider=");
            buf.push_str(s.provider.as_deref().unwrap_or("(none)"));
        }
        KeyField::Attribute(name) => {
            buf.push_str(name);
            buf.push('=');
            match s.attribute(name) {
                Some(v) => buf.push_str(&v.label()),
                None => buf.push_str("(none)"),
            }
        }
    }
}

/// The side of a confidence bound that judges `bound`: the one favourable to the service.
fn side_of(bound: Bound) -> Side {
    match bound {
        Bound::Max(_) => Side::Lower,
        Bound::Min(_) => Side::Upper,
    }
}

/// The order-statistic bound of the `q`-quantile in a window's sketch.
fn percentile_bound(
    sketch: &crate::sketch::Quantiles,
    q: f64,
    bound: Bound,
    confidence: Confidence,
) -> Option<ConfidenceBound> {
    let Confidence::Level(c) = confidence else {
        return None;
    };
    let n = sketch.count();
    let side = side_of(bound);
    let rank = confidence::order_statistic_rank(n, q, c, side);
    Some(ConfidenceBound {
        confidence: c,
        side,
        value: rank.and_then(|k| sketch.order_statistic(k)),
        n,
        method: BoundMethod::OrderStatistic { rank },
    })
}

/// The Student t bound of a window's mean.
fn mean_bound(
    count: u64,
    sum: f64,
    sum_sq: Option<f64>,
    bound: Bound,
    confidence: Confidence,
) -> Option<ConfidenceBound> {
    let Confidence::Level(c) = confidence else {
        return None;
    };
    let side = side_of(bound);
    // Without the sum of squares (a window restored from an older checkpoint) there is no
    // spread to judge by: the point estimate decides, as before.
    let sum_sq = sum_sq?;
    let t = confidence::t_bound(count, sum, sum_sq, c, side);
    Some(ConfidenceBound {
        confidence: c,
        side,
        value: t.map(|t| t.value),
        n: count,
        method: BoundMethod::StudentT {
            std_error: t.map(|t| t.std_error),
        },
    })
}

/// The Wilson bound of a window's rate.
fn rate_bound(k: u64, n: u64, bound: Bound, confidence: Confidence) -> Option<ConfidenceBound> {
    let Confidence::Level(c) = confidence else {
        return None;
    };
    let side = side_of(bound);
    Some(ConfidenceBound {
        confidence: c,
        side,
        value: (n > 0).then(|| confidence::wilson(k, n, confidence::z(c), side)),
        n,
        method: BoundMethod::Wilson,
    })
}

struct WindowCheck {
    check: Check,
    enough: bool,
    observed: Option<f64>,
    bound: Bound,
    /// The confidence bound to judge on, or `None` for the point estimate.
    evidence: Option<ConfidenceBound>,
    unit: Unit,
    /// Spend checks name what they measured; other checks take it from the objective.
    subject: Subject,
}

#[derive(Default)]
struct FindingParts {
    check: Check,
    verdict: Verdict,
    severity: Severity,
    sessions: u64,
    observed: f64,
    comparator: Comparator,
    target: f64,
    unit: Unit,
    budget_consumed: Option<f64>,
    burn_rates: Vec<BurnRate>,
    exemplars: Vec<String>,
    details: Vec<(crate::finding::Detail, u64)>,
    /// What was measured, when the objective's kind alone does not say (spend checks, the
    /// firing burn-rate tier).
    subject: Option<Subject>,
    /// Overrides the window start (violations report the newest step only).
    window_start: Option<EpochMs>,
    bound: Option<ConfidenceBound>,
}

struct Ctx<'a> {
    rt: &'a SpecRuntime,
    o: &'a Objective,
    w: &'a ClosedWindow<GroupKey, SpecSummary>,
}

impl Ctx<'_> {
    fn finding(&self, p: FindingParts) -> Finding {
        let spec = &self.rt.spec;
        let key = self
            .rt
            .key_parts
            .get(&self.w.key.key)
            .cloned()
            .unwrap_or_default();
        let segment = self.w.key.segment.as_deref().map(str::to_owned);
        let start = p.window_start.unwrap_or(self.w.start);
        let end = self.w.end;
        Finding {
            id: Finding::make_id(
                &spec.name,
                &self.o.name,
                p.check,
                &key,
                segment.as_deref(),
                start,
                end,
            ),
            spec: spec.name.clone(),
            objective: self.o.name.clone(),
            check: p.check,
            dimension: self.o.dimension,
            verdict: p.verdict,
            severity: p.severity,
            key,
            segment,
            window_start: start,
            window_end: end,
            sessions: p.sessions,
            observed: round9(p.observed),
            comparator: p.comparator,
            target: p.target,
            unit: p.unit,
            budget_consumed: p.budget_consumed.map(round9),
            burn_rates: p.burn_rates.into_iter().map(round_rates).collect(),
            exemplars: p.exemplars,
            details: p.details,
            subject: Some(p.subject.unwrap_or_else(|| subject_of(self.o, spec))),
            message: String::new(),
            runbook: self.o.runbook.clone().or_else(|| spec.runbook.clone()),
            chart: None,
            drift: None,
            bound: p.bound,
            forensics: None,
        }
    }

    fn insufficient(&self, min: u64) -> Finding {
        self.finding(FindingParts {
            check: Check::Window,
            verdict: Verdict::InsufficientData,
            severity: Severity::Info,
            sessions: self.w.summary.sessions,
            observed: self.w.summary.sessions as f64,
            comparator: Comparator::AtLeast,
            target: min as f64,
            unit: Unit::Count,
            ..FindingParts::default()
        })
    }
}

/// What an objective measures, for its findings (spend objectives name their check instead).
fn subject_of(o: &Objective, spec: &Spec) -> Subject {
    let slo = |sli| Subject::Slo {
        sli,
        period_ms: spec.period_ms,
        tier: None,
    };
    match &o.kind {
        ObjectiveKind::Ratio { .. } => slo(Sli::Success),
        ObjectiveKind::Threshold {
            field, threshold, ..
        } => slo(Sli::Threshold {
            field: field.clone(),
            threshold: *threshold,
        }),
        ObjectiveKind::Fallback(_) => slo(Sli::Fallback),
        ObjectiveKind::Percentile { field, p, .. } => Subject::Percentile {
            field: field.clone(),
            p: *p,
        },
        ObjectiveKind::Mean { field, .. } => Subject::Mean {
            field: field.clone(),
        },
        ObjectiveKind::Rate { of, .. } => Subject::Rate { signal: of.clone() },
        ObjectiveKind::Spend(_) => Subject::WindowSpend,
        ObjectiveKind::Pii(_) => Subject::Pii,
        ObjectiveKind::Tools(_) => Subject::ToolRules,
        ObjectiveKind::Drift(_) => Subject::Drift,
    }
}

/// Burn rates rounded like every other number in findings and clears.
fn round_rates(b: BurnRate) -> BurnRate {
    BurnRate {
        long_rate: round9(b.long_rate),
        short_rate: round9(b.short_rate),
        ..b
    }
}

/// Where an objective stands after one window was judged: what a [`Clear`] carries when the
/// window raised no ticket or page.
struct Standing {
    sessions: u64,
    observed: Option<f64>,
    comparator: Comparator,
    target: f64,
    unit: Unit,
    budget_consumed: Option<f64>,
    burn_rates: Vec<BurnRate>,
    drift: Option<crate::finding::DriftReport>,
    /// Per-window thresholds: the confidence bound judged on.
    bound: Option<ConfidenceBound>,
}

/// Rounds to 9 significant digits so floating noise never shows in findings.
fn round9(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 9 - v.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}
