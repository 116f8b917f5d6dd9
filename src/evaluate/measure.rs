//! What a window must remember about its sessions for a spec's objectives, and how one session
//! updates it.
//!
//! Each objective compiles to one or more [`Measure`]s; a [`SpecSummary`] holds one state per
//! measure plus counters every objective shares. Summaries are mergeable and bounded (sketches,
//! capped exemplar and detail lists). Sums are kept in fixed point so that merging in any order
//! gives bit-identical results. No I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drift::WINDOW_ROWS;
use crate::drift::features::{FeatureSample, FeatureSet};
use crate::finding::Detail;
use crate::glob::glob_match;
use crate::session::{PiiHandling, Session, Status};
use crate::sketch::{Exemplars, Quantiles, TopK};
use crate::spec::model::{
    BoolSignal, FallbackSpec, NumericField, ObjectiveKind, PiiSpec, SessionFilter, Spec, SpendSpec,
    ToolsSpec,
};
use crate::windowing::Summary;

/// Session ids kept as exemplars per measure.
pub const EXEMPLARS: usize = 5;
/// Sessions kept in the slowest / most expensive lists.
pub const TOP_K: usize = 10;
/// Distinct detail labels kept per violation measure; the rest are folded into `other`.
pub const MAX_DETAILS: usize = 32;
/// Fixed-point scale of sums: 1e-9 of the unit.
const FIXED: f64 = 1e9;

/// Which sessions count as good among the eligible ones.
#[derive(Debug, Clone, PartialEq)]
pub enum RatioDef {
    /// All sessions are eligible; good = matches the filter.
    Good(SessionFilter),
    /// Sessions with the field are eligible; good = value ≤ threshold.
    AtMost(NumericField, f64),
    /// Sessions where the signal is known are eligible; good = the signal holds.
    Signal(BoolSignal),
    /// Sessions with a listed status are eligible; good = an allowed fallback was taken.
    FallbackCovered(FallbackSpec),
}

/// A rule whose violations are counted session by session.
#[derive(Debug, Clone, PartialEq)]
pub enum ViolationRule {
    CostAbove(f64),
    Pii(PiiSpec),
    Tools(ToolsSpec),
}

/// One thing a window remembers.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Ratio(RatioDef),
    Quantiles(NumericField),
    Sum(NumericField),
    Violations(ViolationRule),
    /// A bounded sample of the drift objective's features.
    Drift(FeatureSet),
}

/// The measures of one objective, by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectiveMeasures {
    /// The SLI ratio (SLO objectives, `rate`, fallback coverage).
    pub ratio: Option<usize>,
    /// Quantile sketch (percentile, spend percentile).
    pub quantiles: Option<usize>,
    /// Sum and count (mean, window budget).
    pub sum: Option<usize>,
    /// Per-session violations (hard cap, PII, tools).
    pub violations: Option<usize>,
    /// Soft-cap violations (spend).
    pub soft_violations: Option<usize>,
    /// Share of all sessions that fell back (fallback `maxRate`).
    pub fallback_rate: Option<usize>,
    /// The feature sample of a drift objective.
    pub drift: Option<usize>,
}

/// A spec's objectives compiled into measures.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledMeasures {
    pub measures: Vec<Measure>,
    /// Indexed like `spec.objectives`.
    pub objectives: Vec<ObjectiveMeasures>,
}

impl CompiledMeasures {
    pub fn compile(spec: &Spec) -> CompiledMeasures {
        let mut measures = Vec::new();
        let mut add = |m: Measure| {
            measures.push(m);
            Some(measures.len() - 1)
        };
        let objectives = spec
            .objectives
            .iter()
            .map(|o| {
                let mut om = ObjectiveMeasures::default();
                match &o.kind {
                    ObjectiveKind::Ratio { good, .. } => {
                        om.ratio = add(Measure::Ratio(RatioDef::Good(good.clone())));
                    }
                    ObjectiveKind::Threshold {
                        field, threshold, ..
                    } => {
                        om.ratio = add(Measure::Ratio(RatioDef::AtMost(field.clone(), *threshold)));
                    }
                    ObjectiveKind::Percentile { field, .. } => {
                        om.quantiles = add(Measure::Quantiles(field.clone()));
                    }
                    ObjectiveKind::Mean { field, .. } => {
                        om.sum = add(Measure::Sum(field.clone()));
                    }
                    ObjectiveKind::Rate { of, .. } => {
                        om.ratio = add(Measure::Ratio(RatioDef::Signal(of.clone())));
                    }
                    ObjectiveKind::Spend(SpendSpec {
                        per_session_soft_usd,
                        per_session_max_usd,
                        percentile,
                        window_budget_usd,
                    }) => {
                        if let Some(max) = per_session_max_usd {
                            om.violations =
                                add(Measure::Violations(ViolationRule::CostAbove(*max)));
                        }
                        if let Some(soft) = per_session_soft_usd {
                            om.soft_violations =
                                add(Measure::Violations(ViolationRule::CostAbove(*soft)));
                        }
                        if percentile.is_some() {
                            om.quantiles = add(Measure::Quantiles(NumericField::CostUsd));
                        }
                        if window_budget_usd.is_some() {
                            om.sum = add(Measure::Sum(NumericField::CostUsd));
                        }
                    }
                    ObjectiveKind::Pii(p) => {
                        om.violations = add(Measure::Violations(ViolationRule::Pii(p.clone())));
                    }
                    ObjectiveKind::Tools(t) => {
                        om.violations = add(Measure::Violations(ViolationRule::Tools(t.clone())));
                    }
                    ObjectiveKind::Fallback(f) => {
                        om.ratio = add(Measure::Ratio(RatioDef::FallbackCovered(f.clone())));
                        if f.max_rate.is_some() {
                            om.fallback_rate = add(Measure::Ratio(RatioDef::Signal(
                                BoolSignal::FallbackTriggered,
                            )));
                        }
                    }
                    ObjectiveKind::Drift(d) => {
                        om.drift = add(Measure::Drift(FeatureSet::from_names(&d.features)));
                    }
                }
                om
            })
            .collect();
        CompiledMeasures {
            measures,
            objectives,
        }
    }

    /// A fresh summary with one empty state per measure.
    pub fn empty_summary(&self) -> SpecSummary {
        SpecSummary {
            sessions: 0,
            by_status: [0; 4],
            states: self
                .measures
                .iter()
                .map(MeasureState::for_measure)
                .collect(),
            slowest: TopK::new(TOP_K),
            costliest: TopK::new(TOP_K),
        }
    }

    /// Each measure's `(eligible, good)` for one session (`(false, false)` for a measure that
    /// is not a ratio), into `out`: judged once per session and shared by every summary,
    /// timeline and forensic pane the session updates.
    pub fn judge(&self, s: &Session, out: &mut Vec<(bool, bool)>) {
        out.clear();
        out.extend(self.measures.iter().map(|m| match m {
            Measure::Ratio(def) => ratio_outcome(def, s),
            _ => (false, false),
        }));
    }

    /// Adds one session to a summary.
    pub fn observe(&self, summary: &mut SpecSummary, s: &Session) {
        let mut judged = Vec::new();
        self.judge(s, &mut judged);
        self.observe_judged(summary, s, &judged);
    }

    /// Adds one session to a summary, with its ratio outcomes from [`judge`](Self::judge).
    pub fn observe_judged(&self, summary: &mut SpecSummary, s: &Session, judged: &[(bool, bool)]) {
        summary.sessions += 1;
        summary.by_status[s.status.index()] += 1;
        if let Some(d) = s.duration_ms {
            summary.slowest.offer(d, &s.session_id);
        }
        if let Some(c) = s.cost_usd {
            summary.costliest.offer(c, &s.session_id);
        }
        for ((m, state), ratio) in self.measures.iter().zip(&mut summary.states).zip(judged) {
            state.observe(m, s, *ratio);
        }
    }

    /// Whether a session is good and eligible for an SLO ratio measure: `(eligible, good)`.
    pub fn ratio_outcome(&self, measure: usize, s: &Session) -> (bool, bool) {
        match &self.measures[measure] {
            Measure::Ratio(def) => ratio_outcome(def, s),
            _ => (false, false),
        }
    }

    /// What a session violates under a violation measure (empty = compliant, or not a
    /// violation measure): the per-session definition forensics hands affected sessions out by.
    pub fn violations_of(&self, measure: usize, s: &Session) -> Vec<Detail> {
        match &self.measures[measure] {
            Measure::Violations(rule) => violations(rule, s),
            _ => Vec::new(),
        }
    }
}

/// The shared counters and per-measure states of one key's sessions in one pane or window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecSummary {
    pub sessions: u64,
    /// Indexed by [`Status::index`].
    pub by_status: [u64; 4],
    pub states: Vec<MeasureState>,
    pub slowest: TopK,
    pub costliest: TopK,
}

impl SpecSummary {
    pub fn status_count(&self, s: Status) -> u64 {
        self.by_status[s.index()]
    }
}

impl Summary for SpecSummary {
    fn merge(&mut self, other: &Self) {
        self.sessions += other.sessions;
        for (a, b) in self.by_status.iter_mut().zip(other.by_status) {
            *a += b;
        }
        for (a, b) in self.states.iter_mut().zip(&other.states) {
            a.merge(b);
        }
        self.slowest.merge(&other.slowest);
        self.costliest.merge(&other.costliest);
    }

    fn seal(&mut self) {
        for st in &mut self.states {
            if let MeasureState::Drift(sample) = st {
                sample.compact();
            }
        }
    }

    fn empty_like(&self) -> Self {
        SpecSummary {
            sessions: 0,
            by_status: [0; 4],
            states: self.states.iter().map(MeasureState::empty_like).collect(),
            slowest: TopK::new(TOP_K),
            costliest: TopK::new(TOP_K),
        }
    }
}

/// The state of one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MeasureState {
    Ratio {
        good: u64,
        total: u64,
        /// Eligible sessions that were not good.
        bad: Exemplars,
    },
    Quantiles(Quantiles),
    Sum {
        count: u64,
        /// Sum in units of 1e-9, exact under any merge order.
        fixed: i128,
        /// Sum of squares in units of 1e-9, exact likewise (saturating): the spread behind a
        /// mean's confidence bound. `None` in state restored from a checkpoint written before
        /// it existed, until those windows have closed.
        #[serde(default)]
        fixed_sq: Option<i128>,
    },
    Violations {
        sessions: u64,
        exemplars: Exemplars,
        /// What was violated, with session counts.
        details: BTreeMap<Detail, u64>,
    },
    Drift(FeatureSample),
}

impl MeasureState {
    fn for_measure(m: &Measure) -> MeasureState {
        match m {
            Measure::Ratio(_) => MeasureState::Ratio {
                good: 0,
                total: 0,
                bad: Exemplars::new(EXEMPLARS),
            },
            Measure::Quantiles(_) => MeasureState::Quantiles(Quantiles::default()),
            Measure::Sum(_) => MeasureState::Sum {
                count: 0,
                fixed: 0,
                fixed_sq: Some(0),
            },
            Measure::Violations(_) => MeasureState::Violations {
                sessions: 0,
                exemplars: Exemplars::new(EXEMPLARS),
                details: BTreeMap::new(),
            },
            Measure::Drift(set) => MeasureState::Drift(FeatureSample::new(set, WINDOW_ROWS)),
        }
    }

    fn empty_like(&self) -> MeasureState {
        match self {
            MeasureState::Ratio { .. } => MeasureState::Ratio {
                good: 0,
                total: 0,
                bad: Exemplars::new(EXEMPLARS),
            },
            MeasureState::Quantiles(_) => MeasureState::Quantiles(Quantiles::default()),
            MeasureState::Sum { .. } => MeasureState::Sum {
                count: 0,
                fixed: 0,
                fixed_sq: Some(0),
            },
            MeasureState::Violations { .. } => MeasureState::Violations {
                sessions: 0,
                exemplars: Exemplars::new(EXEMPLARS),
                details: BTreeMap::new(),
            },
            MeasureState::Drift(sample) => MeasureState::Drift(sample.empty_like()),
        }
    }

    /// Adds one session; `ratio` is its `(eligible, good)` under a ratio measure.
    fn observe(&mut self, m: &Measure, s: &Session, ratio: (bool, bool)) {
        match (m, self) {
            (Measure::Ratio(_), MeasureState::Ratio { good, total, bad }) => {
                let (eligible, is_good) = ratio;
                if eligible {
                    *total += 1;
                    if is_good {
                        *good += 1;
                    } else {
                        bad.offer(s.event_time, &s.session_id);
                    }
                }
            }
            (Measure::Quantiles(f), MeasureState::Quantiles(q)) => {
                if let Some(v) = numeric(f, s) {
                    q.add(v);
                }
            }
            (
                Measure::Sum(f),
                MeasureState::Sum {
                    count,
                    fixed,
                    fixed_sq,
                },
            ) => {
                if let Some(v) = numeric(f, s) {
                    *count += 1;
                    *fixed += (v * FIXED).round() as i128;
                    if let Some(sq) = fixed_sq {
                        *sq = sq.saturating_add((v * v * FIXED).round() as i128);
                    }
                }
            }
            (
                Measure::Violations(rule),
                MeasureState::Violations {
                    sessions,
                    exemplars,
                    details,
                },
            ) => {
                let found = violations(rule, s);
                if !found.is_empty() {
                    *sessions += 1;
                    exemplars.offer(s.event_time, &s.session_id);
                    for label in found {
                        add_detail(details, label, 1);
                    }
                }
            }
            (Measure::Drift(set), MeasureState::Drift(sample)) => sample.observe(set, s),
            _ => unreachable!("states are built from their measures"),
        }
    }

    fn merge(&mut self, other: &MeasureState) {
        match (self, other) {
            (
                MeasureState::Ratio { good, total, bad },
                MeasureState::Ratio {
                    good: g,
                    total: t,
                    bad: b,
                },
            ) => {
                *good += g;
                *total += t;
                bad.merge(b);
            }
            (MeasureState::Quantiles(a), MeasureState::Quantiles(b)) => a.merge(b),
            (
                MeasureState::Sum {
                    count,
                    fixed,
                    fixed_sq,
                },
                MeasureState::Sum {
                    count: c,
                    fixed: f,
                    fixed_sq: f_sq,
                },
            ) => {
                *count += c;
                *fixed += f;
                *fixed_sq = match (*fixed_sq, f_sq) {
                    (Some(a), Some(b)) => Some(a.saturating_add(*b)),
                    _ => None,
                };
            }
            (
                MeasureState::Violations {
                    sessions,
                    exemplars,
                    details,
                },
                MeasureState::Violations {
                    sessions: s,
                    exemplars: e,
                    details: d,
                },
            ) => {
                *sessions += s;
                exemplars.merge(e);
                for (label, n) in d {
                    add_detail(details, label.clone(), *n);
                }
            }
            (MeasureState::Drift(a), MeasureState::Drift(b)) => a.merge(b),
            _ => unreachable!("summaries of one spec have the same shape"),
        }
    }

    /// `(good, total)` of a ratio state.
    pub fn ratio(&self) -> Option<(u64, u64)> {
        match self {
            MeasureState::Ratio { good, total, .. } => Some((*good, *total)),
            _ => None,
        }
    }

    /// `(count, sum)` of a sum state.
    pub fn sum(&self) -> Option<(u64, f64)> {
        match self {
            MeasureState::Sum { count, fixed, .. } => Some((*count, *fixed as f64 / FIXED)),
            _ => None,
        }
    }

    /// The sum of squares of a sum state, when it has been kept for every value.
    pub fn sum_sq(&self) -> Option<f64> {
        match self {
            MeasureState::Sum {
                fixed_sq: Some(sq), ..
            } => Some(*sq as f64 / FIXED),
            _ => None,
        }
    }
}

fn add_detail(details: &mut BTreeMap<Detail, u64>, label: Detail, n: u64) {
    if details.len() >= MAX_DETAILS && !details.contains_key(&label) {
        *details.entry(Detail::Other).or_default() += n;
    } else {
        *details.entry(label).or_default() += n;
    }
}

/// `(eligible, good)` of one session for a ratio.
fn ratio_outcome(def: &RatioDef, s: &Session) -> (bool, bool) {
    match def {
        RatioDef::Good(filter) => {
            let status_ok = filter.status.is_empty() || filter.status.contains(&s.status);
            let duration_ok = match (filter.max_duration_ms, s.duration_ms) {
                (Some(max), Some(d)) => d <= max,
                (Some(_), None) => false,
                (None, _) => true,
            };
            (true, status_ok && duration_ok)
        }
        RatioDef::AtMost(field, threshold) => match numeric(field, s) {
            Some(v) => (true, v <= *threshold),
            None => (false, false),
        },
        RatioDef::Signal(signal) => match bool_signal(signal, s) {
            Some(b) => (true, b),
            None => (false, false),
        },
        RatioDef::FallbackCovered(f) => {
            if !f.required_on.contains(&s.status) {
                return (false, false);
            }
            let covered = s.fallback.as_ref().is_some_and(|fb| {
                fb.triggered
                    && (f.allowed_kinds.is_empty()
                        || fb
                            .kind
                            .as_deref()
                            .is_some_and(|k| f.allowed_kinds.iter().any(|a| a == k)))
            });
            (true, covered)
        }
    }
}

/// The value of a numeric field of a session.
pub fn numeric(field: &NumericField, s: &Session) -> Option<f64> {
    match field {
        NumericField::DurationMs => s.duration_ms,
        NumericField::CostUsd => s.cost_usd,
        NumericField::InputTokens => s.input_tokens.map(|v| v as f64),
        NumericField::OutputTokens => s.output_tokens.map(|v| v as f64),
        NumericField::Turns => s.turns.map(|v| v as f64),
        NumericField::ToolCalls => Some(s.tool_calls.len() as f64),
        NumericField::QualityScore => s.quality.score,
        NumericField::OutputChars => s.output_chars.map(|v| v as f64),
        NumericField::ContextTokensMax => s.context_tokens_max.map(|v| v as f64),
        NumericField::ContextUtilisation => s.context_utilisation,
        NumericField::Attribute(name) => s.attribute(name).and_then(|v| v.as_f64()),
    }
}

/// The value of a boolean signal of a session, if known.
pub fn bool_signal(signal: &BoolSignal, s: &Session) -> Option<bool> {
    match signal {
        BoolSignal::Resolved => s.quality.resolved,
        BoolSignal::Refusal => s.quality.refusal,
        BoolSignal::FallbackTriggered => Some(s.fell_back()),
        BoolSignal::Status(st) => Some(s.status == *st),
    }
}

/// Labels of everything a session violates under a rule (empty = compliant).
fn violations(rule: &ViolationRule, s: &Session) -> Vec<Detail> {
    match rule {
        ViolationRule::CostAbove(cap) => match s.cost_usd {
            Some(c) if c > *cap => vec![Detail::cost_above(*cap)],
            _ => Vec::new(),
        },
        ViolationRule::Pii(p) => s
            .pii
            .iter()
            .filter(|item| p.types.is_empty() || p.types.contains(&item.kind))
            .filter(|item| !pii_allowed(p, item.handling, item.destination.as_deref()))
            .map(|item| Detail::Pii {
                kind: item.kind.clone(),
                handling: item.handling,
                destination: item.destination.clone(),
            })
            .collect(),
        ViolationRule::Tools(t) => {
            let mut out = Vec::new();
            for call in &s.tool_calls {
                if t.deny.iter().any(|d| glob_match(d, &call.name)) {
                    out.push(Detail::DeniedTool {
                        tool: call.name.clone(),
                    });
                } else if !t.allow.is_empty() && !t.allow.iter().any(|a| glob_match(a, &call.name))
                {
                    out.push(Detail::ToolNotAllowed {
                        tool: call.name.clone(),
                    });
                }
            }
            out.dedup();
            if let Some(max) = t.max_calls_per_session
                && s.tool_calls.len() > max as usize
            {
                out.push(Detail::TooManyToolCalls { max: max as u64 });
            }
            if let Some(max) = t.max_consecutive_calls
                && let Some((tool, run)) = s.longest_tool_run()
                && run > max
            {
                out.push(Detail::ToolRun {
                    tool: tool.to_string(),
                    max: max as u64,
                });
            }
            out
        }
    }
}

/// Whether personal data handled this way may reach this destination.
pub fn pii_allowed(p: &PiiSpec, handling: PiiHandling, destination: Option<&str>) -> bool {
    let dest = destination.unwrap_or("");
    if let Some(rule) = p.rules.iter().find(|r| glob_match(&r.destination, dest)) {
        return rule.allow.contains(&handling);
    }
    handling != PiiHandling::PassedThrough
        || p.allow_pass_through_to.iter().any(|d| glob_match(d, dest))
}
