//! A finding: one verdict of one objective about one key, segment and window.
//!
//! Findings are the output of evaluation and the input of alerting. They carry session ids
//! as exemplars, PII *types* and counts — never personal data. Every finding has a
//! deterministic id (same input → same id), so consumers can drop redelivered copies.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use crate::confidence::Side;
use crate::session::{EpochMs, PiiHandling};
use crate::spec::model::{BoolSignal, Dimension, NumericField, Severity};

/// What a finding says about its objective.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The objective was violated.
    #[default]
    Breach,
    /// Too few sessions to judge (`minSessions`, or a drift test's `minSamples`).
    InsufficientData,
}

/// How the observed value compares with the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparator {
    #[default]
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
}

/// Which check of an objective a finding reports. Serialized as its snake_case name, the
/// same strings findings carried before the type existed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The window's own SLI (or too few sessions for one).
    #[default]
    Window,
    /// A multi-window burn-rate tier fired.
    BurnRate,
    /// Fallback objectives: the share of sessions that fell back is above `maxRate`.
    MaxRate,
    Percentile,
    Mean,
    Rate,
    /// Spend in the window above `windowBudgetUsd`.
    WindowBudget,
    /// Sessions above the per-session hard cost cap.
    HardCap,
    /// Sessions above the per-session soft cost cap.
    SoftCap,
    /// Per-session governance violations (PII, tool rules).
    Violation,
    /// A calibrated drift test fired (or a drift objective could not judge).
    Drift,
    /// Only sequential detectors or PCA fired: worth a look, not a ticket.
    DriftSignal,
}

impl Check {
    /// The wire name (`burn_rate`), as in ids and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Window => "window",
            Check::BurnRate => "burn_rate",
            Check::MaxRate => "max_rate",
            Check::Percentile => "percentile",
            Check::Mean => "mean",
            Check::Rate => "rate",
            Check::WindowBudget => "window_budget",
            Check::HardCap => "hard_cap",
            Check::SoftCap => "soft_cap",
            Check::Violation => "violation",
            Check::Drift => "drift",
            Check::DriftSignal => "drift_signal",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of a finding's `observed` and `target`. Serialized as the strings findings carried
/// before the type existed (`ratio`, `ms`, …; `""` for a custom attribute's plain number).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A share in `[0, 1]`.
    Ratio,
    Ms,
    Usd,
    /// Sessions or events counted.
    Count,
    /// A quality score.
    Score,
    Tokens,
    Chars,
    /// Sessions learned (drift objectives still learning their baseline).
    Sessions,
    /// Features that drifted.
    Features,
    /// A plain number without a unit (numeric custom attributes).
    #[default]
    #[serde(rename = "")]
    Number,
}

/// The unit findings use for a numeric field.
pub fn unit_of(field: &NumericField) -> Unit {
    match field {
        NumericField::DurationMs => Unit::Ms,
        NumericField::CostUsd => Unit::Usd,
        NumericField::InputTokens | NumericField::OutputTokens | NumericField::ContextTokensMax => {
            Unit::Tokens
        }
        NumericField::Turns | NumericField::ToolCalls => Unit::Count,
        NumericField::QualityScore => Unit::Score,
        NumericField::OutputChars => Unit::Chars,
        NumericField::ContextUtilisation => Unit::Ratio,
        NumericField::Attribute(_) => Unit::Number,
    }
}

/// What a finding measured, typed, so that every view can say it in its own words
/// (`crate::present` for the one-line message) without parsing the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// An SLO objective: its SLI, the error-budget period, and the burn-rate tier that fired.
    Slo {
        sli: Sli,
        period_ms: i64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        tier: Option<String>,
    },
    /// A percentile of a numeric field against a bound.
    Percentile { field: NumericField, p: f64 },
    /// The mean of a numeric field against a bound.
    Mean { field: NumericField },
    /// The rate of a boolean signal against a bound.
    Rate { signal: BoolSignal },
    /// A percentile of per-session cost (spend objectives).
    CostPercentile { p: f64 },
    /// Spend in the window against `windowBudgetUsd`.
    WindowSpend,
    /// Sessions above a per-session cost cap (hard or soft, as the check says).
    CostCap { cap_usd: f64 },
    /// Sessions that sent personal data where the policy forbids it.
    Pii,
    /// Sessions that broke the tool-use policy.
    ToolRules,
    /// Fallback objectives: the share of sessions that fell back.
    FallbackRate,
    /// Drift objectives: behaviour compared with a baseline.
    Drift,
}

/// The SLI of an SLO objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sli", rename_all = "snake_case")]
pub enum Sli {
    /// Share of sessions that succeeded.
    Success,
    /// Share of sessions with `field ≤ threshold` (latency SLOs).
    Threshold { field: NumericField, threshold: f64 },
    /// Share of failed sessions with an allowed fallback.
    Fallback,
}

/// What one counted violation was: the typed form of a finding's `details`.
///
/// On the wire a detail is still the label findings always carried
/// (`card_number passed_through→tool:update_address`, `denied tool shell`, `cost above $0.5`):
/// this type's serde is the one codec for that label, both ways, so sled values, the findings
/// topic and checkpoints keep their bytes while every consumer in the process matches on
/// variants. A label no variant reads decodes as [`Detail::Unrecognized`] and encodes back
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Detail {
    /// Personal data of `kind` handled as `handling` reached `destination` (`None`: unknown).
    Pii {
        kind: String,
        handling: PiiHandling,
        destination: Option<String>,
    },
    /// A call to a denied tool.
    DeniedTool { tool: String },
    /// A call to a tool outside the allow list.
    ToolNotAllowed { tool: String },
    /// More tool calls in one session than allowed.
    TooManyToolCalls { max: u64 },
    /// The same tool called more times in a row than allowed.
    ToolRun { tool: String, max: u64 },
    /// A session cost above a per-session cap, in the cap's decimal text (`0.5`) so details
    /// stay orderable map keys.
    CostAbove { cap_usd: String },
    /// The bucket for distinct details beyond the per-window cap.
    Other,
    /// A label this version does not read (kept verbatim).
    Unrecognized(String),
}

impl Detail {
    /// A session cost above `cap` USD.
    pub fn cost_above(cap: f64) -> Detail {
        Detail::CostAbove {
            cap_usd: format!("{cap}"),
        }
    }

    /// The wire label.
    fn label(&self) -> String {
        match self {
            Detail::Pii {
                kind,
                handling,
                destination,
            } => format!(
                "{kind} {}→{}",
                handling.as_str(),
                destination.as_deref().unwrap_or(UNKNOWN_DESTINATION)
            ),
            Detail::DeniedTool { tool } => format!("denied tool {tool}"),
            Detail::ToolNotAllowed { tool } => format!("tool not allowed {tool}"),
            Detail::TooManyToolCalls { max } => format!("more than {max} tool calls"),
            Detail::ToolRun { tool, max } => {
                format!("{tool} called more than {max} times in a row")
            }
            Detail::CostAbove { cap_usd } => format!("cost above ${cap_usd}"),
            Detail::Other => "other".into(),
            Detail::Unrecognized(label) => label.clone(),
        }
    }

    /// Reads a wire label; the inverse of [`Detail::label`].
    fn from_label(label: &str) -> Detail {
        let parsed = if let Some((left, dest)) = label.split_once('→') {
            left.rsplit_once(' ').and_then(|(kind, handling)| {
                Some(Detail::Pii {
                    kind: kind.to_owned(),
                    handling: PiiHandling::parse(handling)?,
                    destination: (dest != UNKNOWN_DESTINATION).then(|| dest.to_owned()),
                })
            })
        } else if let Some(tool) = label.strip_prefix("denied tool ") {
            Some(Detail::DeniedTool { tool: tool.into() })
        } else if let Some(tool) = label.strip_prefix("tool not allowed ") {
            Some(Detail::ToolNotAllowed { tool: tool.into() })
        } else if let Some(cap) = label.strip_prefix("cost above $") {
            Some(Detail::CostAbove {
                cap_usd: cap.into(),
            })
        } else if let Some(rest) = label.strip_prefix("more than ")
            && let Some(n) = rest.strip_suffix(" tool calls")
        {
            n.parse().ok().map(|max| Detail::TooManyToolCalls { max })
        } else if let Some(rest) = label.strip_suffix(" times in a row")
            && let Some((tool, n)) = rest.rsplit_once(" called more than ")
        {
            n.parse().ok().map(|max| Detail::ToolRun {
                tool: tool.into(),
                max,
            })
        } else if label == "other" {
            Some(Detail::Other)
        } else {
            None
        };
        // Only a label that encodes back to itself is read as a variant: the wire stays
        // byte for byte.
        match parsed {
            Some(d) if d.label() == label => d,
            _ => Detail::Unrecognized(label.to_owned()),
        }
    }
}

/// Details order by their label, as they did when they were labels: a finding lists them in
/// the same order on the wire as before they were typed.
impl Ord for Detail {
    fn cmp(&self, other: &Detail) -> std::cmp::Ordering {
        self.label().cmp(&other.label())
    }
}

impl PartialOrd for Detail {
    fn partial_cmp(&self, other: &Detail) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Shows the wire label (`card_number passed_through→tool:update_address`): mail lists
/// details as they are stored, so on-call can grep for them.
impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// How a detail names a destination the record did not give.
const UNKNOWN_DESTINATION: &str = "(unknown)";

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Detail, D::Error> {
        let label = String::deserialize(d)?;
        Ok(Detail::from_label(&label))
    }
}

/// A burn rate over a long and a short window, and the tier it was checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurnRate {
    pub tier: String,
    pub factor: f64,
    /// Long window, ms; serialized as a duration (`1h`), as before the type existed.
    #[serde(rename = "long_window", with = "duration_text")]
    pub long_window_ms: i64,
    pub long_rate: f64,
    /// Short window, ms; serialized like `long_window_ms`.
    #[serde(rename = "short_window", with = "duration_text")]
    pub short_window_ms: i64,
    pub short_rate: f64,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Deterministic id: a hash of spec, objective, check, key, segment and window.
    pub id: String,
    pub spec: String,
    pub objective: String,
    /// Which check of the objective.
    pub check: Check,
    pub dimension: Dimension,
    pub verdict: Verdict,
    pub severity: Severity,
    /// The window key: agent plus the spec's `keyBy` fields, as `name=value` pairs.
    pub key: Vec<(String, String)>,
    /// The segment (`channel=web`), or `None` for the whole key.
    pub segment: Option<String>,
    /// Window start; serialized as RFC 3339 with milliseconds.
    #[serde(with = "rfc3339_ms")]
    pub window_start: EpochMs,
    /// Window end (exclusive); serialized like `window_start`.
    #[serde(with = "rfc3339_ms")]
    pub window_end: EpochMs,
    /// Sessions in the window for this key and segment.
    pub sessions: u64,
    pub observed: f64,
    pub comparator: Comparator,
    pub target: f64,
    pub unit: Unit,
    /// Share of the period's error budget used so far (SLO objectives).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget_consumed: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub burn_rates: Vec<BurnRate>,
    /// Up to N session ids that show the problem.
    pub exemplars: Vec<String>,
    /// Sessions behind the verdict per kind of violation (PII type, handling and destination;
    /// tool rule; cost cap).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub details: Vec<(Detail, u64)>,
    /// What was measured, typed (absent in findings written before it existed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Subject>,
    /// One sentence for people. Empty inside the core: filled at the edge by
    /// `crate::present::message` when a finding leaves the pipeline, so the JSON keeps it.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub runbook: Option<String>,
    /// Data for a chart in alert mail, when the finding has a picture worth a thousand words.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chart: Option<Chart>,
    /// For drift findings: every feature tested, and the baseline compared against.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drift: Option<DriftReport>,
    /// Per-window thresholds judged with a confidence bound (`percentile`, `mean`, `rate`):
    /// the bound the verdict rests on. Absent when judged on the point estimate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bound: Option<ConfidenceBound>,
    /// Onset and layer attribution (`crate::forensics`), on the first breach of a key's
    /// objective.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub forensics: Option<Box<crate::forensics::Forensics>>,
}

/// The one-sided confidence bound a per-window threshold was judged on
/// (`crate::evaluate::confidence`): the window breaches only when `value` is outside the
/// objective, i.e. we are `confidence` sure the true value violates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceBound {
    /// The level, e.g. `0.95`.
    pub confidence: f64,
    pub side: Side,
    /// The bound, in the finding's unit; `None` when the window has too few values for any
    /// bound at this confidence (it then cannot breach).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<f64>,
    /// Values the bound stands on: sessions that had the field or signal.
    pub n: u64,
    pub method: BoundMethod,
}

/// How a [`ConfidenceBound`] was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BoundMethod {
    /// A percentile: the `rank`-th smallest of the `n` values (distribution-free, from the
    /// binomial distribution), read from the quantile sketch (±1%).
    OrderStatistic {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rank: Option<u64>,
    },
    /// A rate: the Wilson score bound.
    Wilson,
    /// A mean: `mean ∓ t · std_error` with `n − 1` degrees of freedom.
    StudentT {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        std_error: Option<f64>,
    },
}

/// What a drift evaluation compared and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The baseline compared against (`spec/objective/agent/prompt/model[/segment]`).
    pub baseline: String,
    /// True when the key has no frozen baseline of its own yet and was compared with the
    /// baseline of the version it replaced (a prompt update or a model swap).
    pub predecessor: bool,
    /// `auto`, `evidently`, or a fixed test.
    pub rule: String,
    pub features: Vec<FeatureResult>,
}

/// One feature's test in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureResult {
    pub feature: String,
    /// `ks`, `z`, `chisquare`, `psi`, `wasserstein`, `jensenshannon`, `hellinger`,
    /// `pca_reconstruction`, `cluster_mix`, `cusum`, `page_hinkley`.
    pub test: String,
    pub statistic: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p_value: Option<f64>,
    /// Benjamini–Hochberg adjusted over every feature × segment tested in the window.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p_adjusted: Option<f64>,
    /// Effect size and what it is (`wasserstein/σ`, `cohen_h`, `js_distance`, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub effect_size: Option<f64>,
    pub effect: String,
    /// Reference vs current summary, e.g. `median 300` → `median 405`.
    pub reference: String,
    pub current: String,
    pub n_reference: u64,
    pub n_current: u64,
    pub verdict: FeatureVerdict,
}

/// A feature's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureVerdict {
    Drift,
    NoDrift,
    /// Fewer than `minSamples` on either side: never reported as "no drift".
    InsufficientData,
}

/// What an alert mail can draw for a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Chart {
    /// Reference vs current distribution of a drifted feature, on shared bins: `edges` has one
    /// more entry than each count list; counts are shares (sum 1).
    Distribution {
        feature: String,
        edges: Vec<f64>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    /// Reference vs current shares of categories (tool mix, status mix).
    Categories {
        feature: String,
        labels: Vec<String>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    /// Error budget consumed over the period: `(time, share consumed)` points, oldest first,
    /// with the period's end for projections.
    Budget {
        points: Vec<(EpochMs, f64)>,
        period_ms: i64,
    },
}

/// One objective judged on one key, segment and window with no alert-worthy breach: what lets
/// an incident resolve. Emitted for every evaluation that produced no ticket or page, with
/// where the objective stands at that window — so every judged window yields a finding or a
/// clear that says its current value, budget and burn rates (or its drift report).
///
/// The standing fields default when absent, so clears stored before they existed decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Clear {
    pub spec: String,
    pub objective: String,
    pub key: Vec<(String, String)>,
    pub segment: Option<String>,
    /// Serialized as RFC 3339 with milliseconds, like a finding's.
    #[serde(with = "rfc3339_ms")]
    pub window_end: EpochMs,
    /// Sessions judged (for violations: in the window's newest step).
    #[serde(default)]
    pub sessions: u64,
    /// The objective's value in this window, when it has one (an SLO window with too few
    /// eligible sessions has none; its burn rates still stand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    #[serde(default)]
    pub comparator: Comparator,
    #[serde(default)]
    pub target: f64,
    #[serde(default)]
    pub unit: Unit,
    /// SLO objectives: share of the period's error budget used so far (as in findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_consumed: Option<f64>,
    /// SLO objectives: every burn-rate tier at this window, firing or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub burn_rates: Vec<BurnRate>,
    /// Drift objectives: every feature's verdict against the baseline, also when nothing
    /// drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// Per-window thresholds: the confidence bound the window was judged on (as in findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<ConfidenceBound>,
}

/// A key's newest session, as known when its windows close: how the alert engine learns that
/// a key (agent × `keyBy`, e.g. a prompt version on a model) stopped receiving sessions, and
/// which other key of the same agent took its traffic. Event time only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSession {
    pub spec: String,
    /// The window key: agent plus `keyBy` fields.
    pub key: Vec<(String, String)>,
    /// Event time of the key's newest session.
    pub at: EpochMs,
}

impl Finding {
    /// The deterministic id of a finding with these coordinates.
    /// The window bounds enter the hash as their RFC 3339 text and the check as its wire
    /// name, so ids are the same as before those fields were typed.
    pub fn make_id(
        spec: &str,
        objective: &str,
        check: Check,
        key: &[(String, String)],
        segment: Option<&str>,
        window_start: EpochMs,
        window_end: EpochMs,
    ) -> String {
        let window_start = crate::time::format_rfc3339_ms(window_start);
        let window_end = crate::time::format_rfc3339_ms(window_end);
        let mut text = String::with_capacity(128);
        for part in [spec, objective, check.as_str()] {
            text.push_str(part);
            text.push('\u{1f}');
        }
        for (k, v) in key {
            text.push_str(k);
            text.push('=');
            text.push_str(v);
            text.push('\u{1f}');
        }
        text.push_str(segment.unwrap_or(""));
        text.push('\u{1f}');
        text.push_str(&window_start);
        text.push('\u{1f}');
        text.push_str(&window_end);
        format!("{:032x}", xxh3_128(text.as_bytes()))
    }

    /// The key as `agent=support-bot,prompt_version=sp-v1,model=m-2026-09`.
    pub fn key_label(&self) -> String {
        self.key
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Serde for epoch milliseconds as RFC 3339 text with milliseconds
/// (`2026-11-01T00:00:00.000Z`): the wire form window bounds have always had.
pub mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::session::EpochMs;

    pub fn serialize<S: Serializer>(ms: &EpochMs, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format_rfc3339_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EpochMs, D::Error> {
        let text = String::deserialize(d)?;
        crate::time::parse_rfc3339_ms(&text)
            .ok_or_else(|| D::Error::custom(format!("expected an RFC 3339 time, found `{text}`")))
    }
}

/// Serde for a duration in ms as its short text (`1h`, `5m`): the wire form of burn-rate
/// windows.
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_duration_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse_duration_ms(&text).map_err(D::Error::custom)
    }
}
