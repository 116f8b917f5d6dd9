//! The spec format as data: every mapping of a `kind: AgentSLA` document with its keys, their
//! types and what they mean (the reference with examples is `sla-specs/README.md`).
//!
//! [`super::decode`] reads keys through these shapes and reports unknown ones against them;
//! `slawatch schema spec` turns them into `schemas/slawatch-spec.schema.json`. Pure data.

use super::decode::{
    BOOL_SIGNALS, BURN_RATE_PRESETS, DRIFT_FEATURES, DRIFT_TESTS, KEY_FIELDS, KS_DISTRIBUTIONS,
    LATE_POLICIES, NUMERIC_FIELDS, OBJECTIVE_KINDS, PII_HANDLINGS, STATUSES, is_spend_shorthand,
};
use super::model::{Dimension, Severity};
use crate::schema::decoder::{AGENT_SLA, API_VERSION};
use crate::schema::shape::{FALSE_ALARMS, PatternKeys, Shape, Ty, json_schema, opt, req, shape};

/// Where the JSON Schema of specs is committed (`slawatch schema spec` prints it).
pub const SCHEMA_FILE: &str = "schemas/slawatch-spec.schema.json";

/// The JSON Schema of specs, for editors.
pub fn schema() -> String {
    json_schema(&DOCUMENT, "slawatch SLA spec (kind: AgentSLA)")
}

const TEXTS: Ty = Ty::List(&Ty::Text);
/// A bound or threshold: a number, a duration (for `duration_ms`) or a percentage (for
/// fractions); which one depends on the field, so the decoder checks it.
const MEASURE: Ty = Ty::AnyOf(&[Ty::Number, Ty::Duration, Ty::Fraction]);
const NUMERIC_FIELD: Ty = Ty::OpenEnum(NUMERIC_FIELDS, "attributes.");
const KEY_FIELD: Ty = Ty::List(&Ty::OpenEnum(KEY_FIELDS, "attributes."));

/// The document.
#[rustfmt::skip]
pub static DOCUMENT: Shape = shape!(
    "document",
    "A slawatch SLA spec: which sessions of which agents are judged, in which windows, against which objectives.",
    &[
        req("apiVersion", Ty::Enum(&[API_VERSION]), "The format version: `slawatch/v1`."),
        req("kind", Ty::Enum(&[AGENT_SLA.kind]), "`AgentSLA`."),
        req("metadata", Ty::Object(&METADATA), "The spec's name, labels and runbook."),
        req("spec", Ty::Object(&SPEC), "What is judged and how."),
    ],
);

/// `metadata`.
#[rustfmt::skip]
pub static METADATA: Shape = shape!(
    "metadata",
    "The spec's name, labels and runbook.",
    &[
        req("name", Ty::Name, "Unique across all loaded specs; names findings and incidents (letters, digits, `-`, `_`, `.`)."),
        opt("labels", Ty::Map(&Ty::Scalar), "Free labels copied onto findings, for routing."),
        opt("runbook", Ty::Text, "Default runbook link of every objective."),
        opt("runbooks", Ty::Object(&RUNBOOKS), "Rollback runbooks per layer, shown next to the layer an incident is attributed to."),
    ],
);

/// `runbooks` (spec `metadata` and objective): one link per layer an agent's behaviour lives in.
#[rustfmt::skip]
pub static RUNBOOKS: Shape = shape!(
    "runbooks",
    "Runbook links per layer (http or https URLs); an objective's override the spec's layer by layer.",
    &[
        opt("prompt", Ty::Pattern(RUNBOOK_URL), "Reverting or pinning a prompt version."),
        opt("model", Ty::Pattern(RUNBOOK_URL), "Pinning or rolling back a model."),
        opt("provider", Ty::Pattern(RUNBOOK_URL), "Failing over or escalating to a provider."),
        opt("tool", Ty::Pattern(RUNBOOK_URL), "Disabling or fixing a tool."),
        opt("input", Ty::Pattern(RUNBOOK_URL), "A shift in the input mix (segments, attributes)."),
        opt("config", Ty::Pattern(RUNBOOK_URL), "slawatch's own spec or policy change."),
    ],
);

/// What a runbook link must look like (the decoder checks the same).
pub const RUNBOOK_URL: &str = r"^https?://[^\s/]+\S*$";

/// `spec`.
#[rustfmt::skip]
pub static SPEC: Shape = shape!(
    "spec",
    "Which sessions are judged, how they are keyed and windowed, and the objectives.",
    &[
        req("selector", Ty::Object(&SELECTOR), "Which sessions this spec is about."),
        opt("keyBy", KEY_FIELD, "Fields that split windows and baselines (default `[prompt_version, model]`); the agent is always part of the key."),
        opt("segmentBy", KEY_FIELD, "Attribute fields that split each key further (`attributes.<name>`)."),
        opt("maxSegments", Ty::Uint(1), "Segments per key and window (default 20); the rest is folded into `other`."),
        opt("window", Ty::Object(&WINDOW), "Event-time windows (default: 1h tumbling)."),
        opt("minSessions", Ty::Uint(0), "Below this many sessions a window reports `insufficient_data` (default 30)."),
        opt("period", Ty::Object(&PERIOD), "The error-budget period (default `{rolling: 28d}`)."),
        req("objectives", Ty::Seq(&Ty::Object(&OBJECTIVE)), "What is promised: at least one objective."),
        opt("alerting", Ty::Object(&ALERTING), "Burn-rate tiers and who gets mail."),
    ],
);

/// `spec.selector`.
#[rustfmt::skip]
pub static SELECTOR: Shape = shape!(
    "selector",
    "Which sessions this spec is about.",
    &[
        req("agent", TEXTS, "Agent names, `*` globs allowed (`\"*\"`: every agent)."),
        opt("attributes", Ty::Map(&Ty::Scalar), "Every listed session attribute must equal its value."),
    ],
);

/// `spec.window`.
#[rustfmt::skip]
pub static WINDOW: Shape = shape!(
    "window",
    "Event-time windows.",
    &[
        req("size", Ty::Duration, "Window length, e.g. `1h`."),
        opt("step", Ty::Duration, "A new window starts every `step` (default: `size`, tumbling windows)."),
        opt("allowedLateness", Ty::Duration, "The watermark trails the newest event time by this much (default `0s`)."),
        opt("latePolicy", Ty::Enum(LATE_POLICIES), "A record older than every open window is dead-lettered (default) or dropped."),
    ],
);

/// `spec.period`.
#[rustfmt::skip]
pub static PERIOD: Shape = shape!(
    "period",
    "The error-budget period.",
    &[req(
        "rolling",
        Ty::Duration,
        "Rolling period length, e.g. `28d`; at least one window."
    )],
);

/// `spec.alerting`.
#[rustfmt::skip]
pub static ALERTING: Shape = shape!(
    "alerting",
    "Burn-rate alert tiers and receivers.",
    &[
        opt("burnRates", Ty::AnyOf(&[Ty::Enum(BURN_RATE_PRESETS), Ty::Seq(&Ty::Object(&TIER))]), "`sre-workbook` (default) or a list of tiers."),
        opt("notify", TEXTS, "Receivers (from the notification policy) of on-call mail."),
        opt("stakeholders", TEXTS, "Receivers of plain-language breach notices."),
    ],
);

/// One burn-rate tier.
#[rustfmt::skip]
pub static TIER: Shape = shape!(
    "tier",
    "A multiwindow burn-rate alert tier.",
    &[
        req("name", Ty::Text, "Unique within the spec, e.g. `fast`."),
        req("factor", Ty::Positive, "Burn rate that fires the tier, e.g. `14.4`."),
        req("long", Ty::Duration, "Long window, e.g. `1h`."),
        opt("short", Ty::Duration, "Short window (default: long/12)."),
        opt("severity", Ty::Enum(Severity::NAMES), "Severity of the alert (default `page`)."),
    ],
);

/// One objective: common keys and exactly one check.
#[rustfmt::skip]
pub static OBJECTIVE: Shape = Shape {
    name: "objective",
    doc: "One promise: a name and exactly one check.",
    fields: &[
        req("name", Ty::Name, "Unique within the spec (letters, digits, `-`, `_`, `.`)."),
        opt("dimension", Ty::Enum(Dimension::NAMES), "The SLA dimension (default by check)."),
        opt("description", Ty::Text, "Shown by `explain` and in alert mails."),
        opt("runbook", Ty::Text, "Overrides the spec's runbook."),
        opt("runbooks", Ty::Object(&RUNBOOKS), "Runbook links per layer; override the spec's layer by layer."),
        opt("severity", Ty::Enum(Severity::NAMES), "Severity of a per-window breach (default `ticket`)."),
        opt("zeroTolerance", Ty::Bool, "The first violating session pages (`spend`, `pii`, `tools` only)."),
        opt("target", Ty::Fraction, "The SLO of `ratio`, `latency` and `fallback`: share of sessions that must be good, e.g. `99.5%`."),
        opt("confidence", Ty::AnyOf(&[Ty::Enum(&["none"]), Ty::Fraction]), "For `percentile`, `mean`, `rate`: how sure the breach must be (default `95%`; `none`: point estimate)."),
        opt("ratio", Ty::Object(&RATIO), "SLO: share of good sessions."),
        opt("latency", Ty::Object(&LATENCY), "SLO: share of sessions at or below a threshold."),
        opt("percentile", Ty::Object(&PERCENTILE), "Per window: a percentile of a field within a bound."),
        opt("mean", Ty::Object(&MEAN), "Per window: the mean of a field within a bound."),
        opt("rate", Ty::Object(&RATE), "Per window: the rate of a boolean signal within a bound."),
        opt("spend", Ty::Object(&SPEND), "Cost caps per session, percentile and window budget."),
        opt("pii", Ty::OrNull(&Ty::Object(&PII)), "PII handling per destination (zero tolerance)."),
        opt("tools", Ty::Object(&TOOLS), "Tool deny/allow lists and call limits."),
        opt("fallback", Ty::OrNull(&Ty::Object(&FALLBACK)), "SLO: failed sessions that got an allowed fallback."),
        opt("drift", Ty::Object(&DRIFT), "Behaviour drift against a baseline."),
    ],
    pattern_keys: None,
    exactly_one_of: OBJECTIVE_KINDS,
};

/// `ratio`.
#[rustfmt::skip]
pub static RATIO: Shape = shape!(
    "ratio",
    "Share of good sessions.",
    &[req("good", Ty::Object(&GOOD), "Which sessions are good.")],
);

/// `ratio.good`.
#[rustfmt::skip]
pub static GOOD: Shape = shape!(
    "good",
    "Which sessions are good: every given condition holds.",
    &[
        opt("status", Ty::List(&Ty::Enum(STATUSES)), "Good statuses, e.g. `[success]`."),
        opt("maxDuration", Ty::Duration, "Good sessions take at most this long."),
    ],
);

/// `latency`.
#[rustfmt::skip]
pub static LATENCY: Shape = shape!(
    "latency",
    "Share of sessions at or below a threshold.",
    &[
        opt("field", NUMERIC_FIELD, "The measured field (default `duration_ms`)."),
        req("threshold", MEASURE, "Sessions at or below it are good, e.g. `8s`."),
    ],
);

/// `percentile`.
#[rustfmt::skip]
pub static PERCENTILE: Shape = shape!(
    "percentile",
    "A percentile of a field per window, within `max` or `min`.",
    &[
        opt("field", NUMERIC_FIELD, "The measured field (default `duration_ms`)."),
        req("p", Ty::Number, "The percentile, strictly between 0 and 100, e.g. `99`."),
        opt("max", MEASURE, "Upper bound (give `max` or `min`)."),
        opt("min", MEASURE, "Lower bound (give `max` or `min`)."),
    ],
);

/// `mean`.
#[rustfmt::skip]
pub static MEAN: Shape = shape!(
    "mean",
    "The mean of a field per window, within `max` or `min`.",
    &[
        req("field", NUMERIC_FIELD, "The measured field, e.g. `quality.score`."),
        opt("max", MEASURE, "Upper bound (give `max` or `min`)."),
        opt("min", MEASURE, "Lower bound (give `max` or `min`)."),
    ],
);

/// `rate`.
#[rustfmt::skip]
pub static RATE: Shape = shape!(
    "rate",
    "The rate of a boolean signal per window, within `max` or `min`.",
    &[
        req("of", Ty::Enum(BOOL_SIGNALS), "The signal, e.g. `quality.refusal`."),
        opt("max", Ty::Fraction, "Upper bound, e.g. `3%` (give `max` or `min`)."),
        opt("min", Ty::Fraction, "Lower bound (give `max` or `min`)."),
    ],
);

/// `spend`.
#[rustfmt::skip]
pub static SPEND: Shape = Shape {
    name: "spend",
    doc: "Cost limits in USD: at least one.",
    fields: &[
        opt("perSessionSoftUsd", Ty::Positive, "A session above it is a ticket finding."),
        opt("perSessionMaxUsd", Ty::Positive, "Hard cap per session."),
        opt("percentile", Ty::Object(&SPEND_PERCENTILE), "A cost percentile per window."),
        opt("p99Usd", Ty::Positive, "Shorthand for `percentile: {p: 99, maxUsd: ...}` (any `p<N>Usd`)."),
        opt("windowBudgetUsd", Ty::Positive, "Total cost per window."),
    ],
    pattern_keys: Some(PatternKeys {
        pattern: r"^p[0-9]+(\.[0-9]+)?Usd$",
        matches: is_spend_shorthand,
        ty: Ty::Positive,
    }),
    exactly_one_of: &[],
};

/// `spend.percentile`.
#[rustfmt::skip]
pub static SPEND_PERCENTILE: Shape = shape!(
    "spendPercentile",
    "A cost percentile per window.",
    &[
        req("p", Ty::Number, "The percentile, e.g. `99`."),
        req("maxUsd", Ty::Positive, "Its upper bound in USD."),
    ],
);

/// `pii`.
#[rustfmt::skip]
pub static PII: Shape = shape!(
    "pii",
    "How PII may leave, per destination.",
    &[
        opt("allowPassThroughTo", TEXTS, "Destinations that may receive PII unredacted."),
        opt("rules", Ty::Seq(&Ty::Object(&PII_RULE)), "Allowed handlings per destination."),
        opt("types", TEXTS, "Only these PII types are judged (default: all)."),
    ],
);

/// One `pii.rules` entry.
#[rustfmt::skip]
pub static PII_RULE: Shape = shape!(
    "piiRule",
    "Allowed handlings for one destination.",
    &[
        req("destination", Ty::Text, "A destination, `*` globs allowed, e.g. `tool:*`."),
        req("allow", Ty::List(&Ty::Enum(PII_HANDLINGS)), "Allowed handlings."),
    ],
);

/// `tools`.
#[rustfmt::skip]
pub static TOOLS: Shape = shape!(
    "tools",
    "Tool rules: at least one.",
    &[
        opt("deny", TEXTS, "Tools that must never be called."),
        opt("allow", TEXTS, "The only tools that may be called."),
        opt("maxCallsPerSession", Ty::Uint(1), "Tool calls per session."),
        opt("maxConsecutiveCalls", Ty::Uint(1), "Calls of one tool in a row (loops)."),
    ],
);

/// `fallback`.
#[rustfmt::skip]
pub static FALLBACK: Shape = shape!(
    "fallback",
    "Failed sessions must get a fallback.",
    &[
        opt("requiredOn", Ty::List(&Ty::Enum(STATUSES)), "Statuses that need a fallback (default `[error, timeout]`)."),
        opt("allowedKinds", TEXTS, "Fallback kinds that count (default: any)."),
        opt("maxRate", Ty::Fraction, "Upper bound of the fallback rate."),
    ],
);

/// `drift`.
#[rustfmt::skip]
pub static DRIFT: Shape = shape!(
    "drift",
    "Behaviour drift of each key against its baseline.",
    &[
        req("features", Ty::List(&Ty::OpenEnum(DRIFT_FEATURES, "attributes.")), "Compared features, e.g. `[output_tokens, tool_mix]`."),
        opt("falseAlarms", Ty::Pattern(FALSE_ALARMS), "False tickets per key per period, e.g. `1 per 30d` (sets the significance level)."),
        opt("pValue", Ty::Fraction, "Significance level, strictly between 0 and 0.5 (overrides `falseAlarms`)."),
        opt("minSamples", Ty::Uint(2), "Below this many sessions a feature is `insufficient_data` (default 200)."),
        opt("test", Ty::Enum(DRIFT_TESTS), "The test (default `auto`)."),
        opt("effectSize", Ty::Positive, "Smallest effect that counts (default 0.1)."),
        opt("ks", Ty::Enum(KS_DISTRIBUTIONS), "KS p-values: `auto` or `exact`."),
        opt("baseline", Ty::Object(&DRIFT_BASELINE), "How baselines learn."),
        opt("multivariate", Ty::Bool, "PCA reconstruction and cluster-mix tests (default true)."),
        opt("sequential", Ty::Bool, "CUSUM and Page-Hinkley signals (default true)."),
    ],
);

/// `drift.baseline`.
#[rustfmt::skip]
pub static DRIFT_BASELINE: Shape = shape!(
    "driftBaseline",
    "How baselines learn.",
    &[
        opt("minDuration", Ty::Duration, "A baseline learns for at least this long (default `6h`)."),
        opt("relearnEvery", Ty::Duration, "Relearn the baseline this often."),
    ],
);
