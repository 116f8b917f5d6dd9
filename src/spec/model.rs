//! The validated SLA spec: what `sla-specs/*.yaml` means once it has been checked.
//!
//! These types are produced only by [`crate::spec::parse_str`] and [`crate::spec::load_paths`],
//! which report every problem in a file at once; holding a [`Spec`] therefore means "this spec
//! was valid". Nothing here does I/O. Fractions are always stored as ratios in `0..=1` (a YAML
//! `99%` becomes `0.99`), times as milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::forensics::Layer;

/// One `kind: AgentSLA` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// `metadata.name`: unique among loaded specs; names findings and incidents.
    pub name: String,
    /// `metadata.labels`: free labels copied onto findings for routing.
    pub labels: Vec<(String, String)>,
    /// `metadata.runbook`: default runbook link for every objective.
    pub runbook: Option<String>,
    /// `metadata.runbooks`: rollback runbook links per layer (http(s) URLs).
    pub runbooks: BTreeMap<Layer, String>,
    /// File the spec came from (for messages), as given on the command line.
    pub source: String,
    /// `spec.selector`: which sessions this spec is about.
    pub selector: Selector,
    /// `spec.keyBy`: record fields that split windows and baselines (default
    /// `[prompt_version, model]`). The agent is always part of the key.
    pub key_by: Vec<KeyField>,
    /// `spec.segmentBy`: optional attribute fields that split each key further.
    pub segment_by: Vec<KeyField>,
    /// `spec.maxSegments`: cardinality cap per key and window; overflow is folded into `other`.
    pub max_segments: usize,
    /// `spec.window`.
    pub window: WindowSpec,
    /// `spec.minSessions`: below this many sessions in a window, objectives report
    /// `insufficient_data` instead of a verdict (never a page).
    pub min_sessions: u64,
    /// `spec.period.rolling`: the error-budget period, in ms.
    pub period_ms: i64,
    /// `spec.objectives`, in file order.
    pub objectives: Vec<Objective>,
    /// `spec.alerting`.
    pub alerting: Alerting,
}

impl Spec {
    /// The runbook links per layer of an objective: its own, else the spec's.
    pub fn runbooks_for(&self, objective: &Objective) -> BTreeMap<Layer, String> {
        let mut out = self.runbooks.clone();
        out.extend(objective.runbooks.iter().map(|(l, u)| (*l, u.clone())));
        out
    }
}

/// Which sessions a spec applies to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selector {
    /// `selector.agent`: exact agent names, or globs with `*` (empty = every agent).
    pub agents: Vec<String>,
    /// `selector.attributes`: every listed attribute must equal the given value.
    pub attributes: Vec<(String, String)>,
}

/// A record field usable in `keyBy` / `segmentBy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    PromptVersion,
    Model,
    Provider,
    /// `attributes.<name>`
    Attribute(String),
}

/// `spec.window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowSpec {
    /// `size`, ms.
    pub size_ms: i64,
    /// `step`, ms (`== size_ms` for tumbling windows).
    pub step_ms: i64,
    /// `allowedLateness`, ms: the watermark trails the newest event time by this much.
    pub allowed_lateness_ms: i64,
    /// `latePolicy`: what happens to a record older than the closed-window frontier.
    pub late_policy: LatePolicy,
}

/// What to do with a record that arrives after every window it belongs to has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LatePolicy {
    /// Count it and write it to the dead-letter file with reason `late` (default).
    DeadLetter,
    /// Count it and drop it.
    Drop,
}

/// The four SLA dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Availability,
    Behavior,
    Governance,
    Fallback,
}

impl Dimension {
    /// Every dimension, in the order of [`Dimension::NAMES`].
    pub const ALL: [Dimension; 4] = [
        Dimension::Availability,
        Dimension::Behavior,
        Dimension::Governance,
        Dimension::Fallback,
    ];
    /// The names as written in YAML.
    pub const NAMES: &'static [&'static str] =
        &["availability", "behavior", "governance", "fallback"];

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How urgent a finding is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Ticket,
    Page,
}

impl Severity {
    /// Every severity, in the order of [`Severity::NAMES`].
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Ticket, Severity::Page];
    /// The names as written in YAML.
    pub const NAMES: &'static [&'static str] = &["info", "ticket", "page"];

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One objective of a spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    /// `name`: unique within the spec.
    pub name: String,
    /// `dimension`.
    pub dimension: Dimension,
    /// `description`: shown in `explain` and in alert mails.
    pub description: Option<String>,
    /// `runbook`: overrides the spec-level runbook.
    pub runbook: Option<String>,
    /// `runbooks`: per-layer links that override the spec's layer by layer.
    pub runbooks: BTreeMap<Layer, String>,
    /// `severity`: severity of a breach of a per-window threshold (default `ticket`;
    /// burn-rate tiers carry their own).
    pub severity: Severity,
    /// `zeroTolerance`: the first violating session is a `page` finding, whatever the
    /// window's size or `minSessions`.
    pub zero_tolerance: bool,
    /// The check itself.
    pub kind: ObjectiveKind,
}

/// What an objective checks. Exactly one per objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectiveKind {
    /// `ratio: {good: {status: [success]}}` with `target`: an SLI of good/eligible sessions,
    /// evaluated per window and with an error budget and multiwindow burn rates.
    Ratio { good: SessionFilter, target: f64 },
    /// `latency: {field, threshold}` with `target`: the fraction of sessions whose field is
    /// `<= threshold` is an SLI like `Ratio`.
    Threshold {
        field: NumericField,
        threshold: f64,
        target: f64,
    },
    /// `percentile: {field, p, max|min}`: the window's p-th percentile must stay within bound.
    Percentile {
        field: NumericField,
        p: f64,
        bound: Bound,
        confidence: Confidence,
    },
    /// `mean: {field, max|min}`: the window's mean of the field must stay within bound.
    Mean {
        field: NumericField,
        bound: Bound,
        confidence: Confidence,
    },
    /// `rate: {of, max|min}`: the share of sessions where a boolean signal holds.
    Rate {
        of: BoolSignal,
        bound: Bound,
        confidence: Confidence,
    },
    /// `spend: {...}`: cost governance.
    Spend(SpendSpec),
    /// `pii: {...}`: which handling of personal data is allowed for which destination.
    Pii(PiiSpec),
    /// `tools: {...}`: tool-use constraints.
    Tools(ToolsSpec),
    /// `fallback: {...}` with `target`: failed sessions must get a fallback of an allowed kind.
    Fallback(FallbackSpec),
    /// `drift: {...}`: behavioural drift against a baseline (evaluated by the drift engine).
    Drift(DriftSpec),
}

/// How a per-window threshold (`percentile`, `mean`, `rate`) is judged: the objective's
/// `confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Confidence {
    /// `confidence: none`: the window's point estimate is compared with the bound, so chance
    /// alone breaches now and then (slawatch before the confidence bound existed).
    PointEstimate,
    /// `confidence: 95%` (the default): a breach needs the one-sided confidence bound at this
    /// level — the side favourable to the service — outside the bound. In `[0.5, 1)`.
    Level(f64),
}

impl Confidence {
    /// The default of every per-window threshold: 95%.
    pub const DEFAULT: Confidence = Confidence::Level(0.95);
}

/// An upper or lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Bound {
    /// `max: x` — observed must be `<= x`.
    Max(f64),
    /// `min: x` — observed must be `>= x`.
    Min(f64),
}

impl Bound {
    /// Whether `observed` satisfies the bound.
    pub fn holds(self, observed: f64) -> bool {
        match self {
            Bound::Max(m) => observed <= m,
            Bound::Min(m) => observed >= m,
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Bound::Max(v) | Bound::Min(v) => v,
        }
    }
}

/// A predicate on sessions, used for `ratio.good`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionFilter {
    /// `status`: the session's status must be one of these (empty = any).
    pub status: Vec<crate::session::Status>,
    /// `maxDurationMs` (`maxDuration: 20s`): and it must not have taken longer.
    pub max_duration_ms: Option<f64>,
}

/// Numeric per-session fields objectives can measure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericField {
    DurationMs,
    CostUsd,
    InputTokens,
    OutputTokens,
    Turns,
    ToolCalls,
    QualityScore,
    OutputChars,
    ContextTokensMax,
    ContextUtilisation,
    /// `attributes.<name>` holding a number.
    Attribute(String),
}

impl NumericField {
    /// The record field's name (`duration_ms`, `attributes.tier`).
    pub fn record_name(&self) -> String {
        match self {
            NumericField::DurationMs => "duration_ms".into(),
            NumericField::CostUsd => "cost_usd".into(),
            NumericField::InputTokens => "input_tokens".into(),
            NumericField::OutputTokens => "output_tokens".into(),
            NumericField::Turns => "turns".into(),
            NumericField::ToolCalls => "tool_calls".into(),
            NumericField::QualityScore => "quality.score".into(),
            NumericField::OutputChars => "output_chars".into(),
            NumericField::ContextTokensMax => "context_tokens_max".into(),
            NumericField::ContextUtilisation => "context_utilisation".into(),
            NumericField::Attribute(a) => format!("attributes.{a}"),
        }
    }
}

/// Boolean per-session signals for `rate` objectives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoolSignal {
    /// `quality.resolved`
    Resolved,
    /// `quality.refusal`
    Refusal,
    /// `fallback.triggered`
    FallbackTriggered,
    /// `status:<s>` — the session ended with this status.
    Status(crate::session::Status),
}

/// `spend: {...}`. Every part is optional, at least one is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendSpec {
    /// `perSessionSoftUsd`: sessions above it are a `ticket` (with exemplars).
    pub per_session_soft_usd: Option<f64>,
    /// `perSessionMaxUsd`: sessions above it are a `page` (hard cap).
    pub per_session_max_usd: Option<f64>,
    /// `percentile: {p: 99, maxUsd: 0.05}` (shorthand `p99Usd: 0.05`).
    pub percentile: Option<(f64, f64)>,
    /// `windowBudgetUsd`: total spend of one window must stay within it.
    pub window_budget_usd: Option<f64>,
}

/// `pii: {...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiSpec {
    /// `allowPassThroughTo`: destinations (globs such as `tool:*`) that may receive personal
    /// data `passed_through` unredacted. Any other handling is allowed everywhere unless a rule
    /// says otherwise.
    pub allow_pass_through_to: Vec<String>,
    /// `rules`: per-destination allowed handlings, first match wins.
    pub rules: Vec<PiiRule>,
    /// `types`: restrict the objective to these PII types (empty = all).
    pub types: Vec<String>,
}

/// One `pii.rules` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiRule {
    /// `destination` glob, e.g. `tool:*`, `log`.
    pub destination: String,
    /// `allow`: the handlings permitted for that destination.
    pub allow: Vec<crate::session::PiiHandling>,
}

/// `tools: {...}`. Every part is optional, at least one is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolsSpec {
    /// `deny`: tools that must never be called (globs allowed).
    pub deny: Vec<String>,
    /// `allow`: if non-empty, only these tools may be called.
    pub allow: Vec<String>,
    /// `maxCallsPerSession`.
    pub max_calls_per_session: Option<u32>,
    /// `maxConsecutiveCalls`: the longest run of one tool called back to back (loop guard).
    pub max_consecutive_calls: Option<u32>,
}

/// `fallback: {...}` with `target`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FallbackSpec {
    /// `requiredOn`: statuses that require a fallback (default `[error, timeout]`).
    pub required_on: Vec<crate::session::Status>,
    /// `allowedKinds`: fallback kinds that count (empty = any kind).
    pub allowed_kinds: Vec<String>,
    /// `target`: share of failed sessions that must get an allowed fallback.
    pub target: f64,
    /// `maxRate`: upper bound on the share of all sessions that fell back.
    pub max_rate: Option<f64>,
}

/// `drift.falseAlarms: N per DURATION`: the expected number of false drift tickets a key with
/// unchanged behaviour may get per `DURATION`.
///
/// Met by the union bound: a window's tests are corrected together by Benjamini–Hochberg, which
/// under unchanged behaviour keeps the chance of any false drift in one window at most the
/// level it is run at (independent or positively dependent tests); a key has `period / step`
/// windows per period, so a level of `tickets × step / period` expects at most `tickets`
/// false drift windows — and a ticket needs at least one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FalseAlarmBudget {
    pub tickets: f64,
    pub per_ms: i64,
}

impl FalseAlarmBudget {
    /// One false ticket per key per 30 days.
    pub const DEFAULT: FalseAlarmBudget = FalseAlarmBudget {
        tickets: 1.0,
        per_ms: 30 * 86_400_000,
    };

    /// The per-window significance level that meets the budget with windows `step_ms` apart.
    pub fn alpha(&self, step_ms: i64) -> f64 {
        (self.tickets * step_ms as f64 / self.per_ms as f64).min(0.25)
    }

    /// The expected false tickets per period a level `alpha` allows at most (the bound above,
    /// read backwards): what `explain` says of an explicit `pValue`.
    pub fn bound_at(&self, alpha: f64, step_ms: i64) -> f64 {
        alpha * self.per_ms as f64 / step_ms as f64
    }
}

/// `drift: {...}`: evaluated by the drift engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftSpec {
    /// `features`: what to compare (e.g. `output_tokens`, `tool_mix`, `quality.refusal`,
    /// `attributes.<name>`).
    pub features: Vec<String>,
    /// The significance level after Benjamini–Hochberg correction that each window is judged
    /// at: `pValue` when the spec sets it, otherwise derived from `falseAlarms` and the window
    /// step ([`FalseAlarmBudget::alpha`]).
    pub p_value: f64,
    /// Whether `pValue` was set in the spec (else it comes from `falseAlarms`).
    pub p_value_explicit: bool,
    /// `falseAlarms`: at most this many false drift tickets per key and period on unchanged
    /// behaviour (default: 1 per 30 days).
    pub false_alarms: FalseAlarmBudget,
    /// `minSamples`: below this many sessions on either side: `insufficient_data`.
    pub min_samples: u64,
    /// `test`: `auto` (slawatch's rule), `evidently` (Evidently's default rule), or a fixed
    /// test name.
    pub test: String,
    /// `effectSize`: the effect floor, applied at every n in each test family's unit:
    /// normalised Wasserstein ≥ `effectSize` (numeric), Cohen's h ≥ 2·`effectSize` (rates),
    /// Jensen–Shannon distance ≥ `effectSize` (categories). Default 0.1.
    pub effect_size: f64,
    /// `baseline.minDuration`: a key's baseline learns at least this long (and `minSamples`
    /// sessions) before it freezes (default 6h).
    pub baseline_min_duration_ms: i64,
    /// `baseline.relearnEvery`: a frozen baseline is re-learned from recent traffic this often
    /// (default: never — frozen until `slawatch baseline reset`).
    pub relearn_every_ms: Option<i64>,
    /// `multivariate`: also run PCA reconstruction error and the behaviour-cluster mix
    /// (default true).
    pub multivariate: bool,
    /// `sequential`: also run CUSUM and Page–Hinkley per feature over windows (default true).
    pub sequential: bool,
    /// `ks`: `auto` (default: the exact KS distribution while n·m stays under a work budget,
    /// the asymptotic one above) or `exact` (scipy's `method='auto'` at any cost).
    pub ks_exact: bool,
}

/// `spec.alerting`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alerting {
    /// `burnRates`: `sre-workbook` (default) or an explicit list of tiers.
    pub burn_rates: Vec<BurnRateTier>,
    /// `notify`: receiver names for on-call mail.
    pub notify: Vec<String>,
    /// `stakeholders`: receiver names for plain-language breach notices.
    pub stakeholders: Vec<String>,
}

/// One multiwindow burn-rate alert tier: fire when the burn rate over both the long and the
/// short window is at least `factor`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnRateTier {
    pub name: String,
    pub factor: f64,
    pub long_ms: i64,
    pub short_ms: i64,
    pub severity: Severity,
}

impl BurnRateTier {
    /// The Google SRE workbook's tiers for a 30-day-ish period: 14.4x over 1h/5m and 6x over
    /// 6h/30m page; 1x over 3d/6h opens a ticket.
    pub fn sre_workbook() -> Vec<BurnRateTier> {
        const MIN: i64 = 60_000;
        const HOUR: i64 = 60 * MIN;
        let tier = |name: &str, factor, long_ms, short_ms, severity| BurnRateTier {
            name: name.to_owned(),
            factor,
            long_ms,
            short_ms,
            severity,
        };
        vec![
            tier("fast", 14.4, HOUR, 5 * MIN, Severity::Page),
            tier("medium", 6.0, 6 * HOUR, 30 * MIN, Severity::Page),
            tier("slow", 1.0, 72 * HOUR, 6 * HOUR, Severity::Ticket),
        ]
    }
}

impl ObjectiveKind {
    /// The SLO target of an objective that has an error budget.
    pub fn slo_target(&self) -> Option<f64> {
        match self {
            ObjectiveKind::Ratio { target, .. } | ObjectiveKind::Threshold { target, .. } => {
                Some(*target)
            }
            ObjectiveKind::Fallback(f) => Some(f.target),
            _ => None,
        }
    }

    /// The YAML key naming this kind.
    pub fn yaml_key(&self) -> &'static str {
        match self {
            ObjectiveKind::Ratio { .. } => "ratio",
            ObjectiveKind::Threshold { .. } => "latency",
            ObjectiveKind::Percentile { .. } => "percentile",
            ObjectiveKind::Mean { .. } => "mean",
            ObjectiveKind::Rate { .. } => "rate",
            ObjectiveKind::Spend(_) => "spend",
            ObjectiveKind::Pii(_) => "pii",
            ObjectiveKind::Tools(_) => "tools",
            ObjectiveKind::Fallback(_) => "fallback",
            ObjectiveKind::Drift(_) => "drift",
        }
    }
}
