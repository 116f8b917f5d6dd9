//! Schema-directed decoding of a YAML [`Node`] tree into the typed [`Spec`] model.
//!
//! The decoder walks the whole tree even after it has found a problem, so that one run reports
//! every unknown key (with a "did you mean"), wrong type, missing key, bad enum value, ambiguous
//! fraction, bad duration and duplicate name of a document. A document yields a [`Spec`] only
//! when it produced no error. The semantic lints (warnings) live in [`super::lint`]; this module
//! never does I/O and never parses YAML syntax itself.

use super::format;
use super::model::{
    Alerting, BoolSignal, Bound, BurnRateTier, Confidence, Dimension, DriftSpec, FallbackSpec,
    FalseAlarmBudget, KeyField, LatePolicy, NumericField, Objective, ObjectiveKind, PiiRule,
    PiiSpec, Selector, SessionFilter, Severity, Spec, SpendSpec, ToolsSpec, WindowSpec,
};
use crate::duration::{format_duration_ms, parse_duration_ms};
use crate::schema::decoder::{AGENT_SLA, Ctx, Fields, Loc, Spot, fmt_num, index, pct};
use crate::schema::diagnostic::{did_you_mean, one_of};
use crate::schema::yaml::{Node, SNode};
use crate::session::{PiiHandling, Status};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};

use crate::forensics::Layer;

/// Default `spec.maxSegments`.
pub const DEFAULT_MAX_SEGMENTS: usize = 20;
/// Default `spec.minSessions`.
pub const DEFAULT_MIN_SESSIONS: u64 = 30;
/// Default `spec.period.rolling`: 28 days.
pub const DEFAULT_PERIOD_MS: i64 = 28 * 86_400_000;
/// Default `spec.window.size`: 1 hour.
pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// Default `drift.minSamples`.
pub const DEFAULT_DRIFT_MIN_SAMPLES: u64 = 200;
/// Default `drift.effectSize`.
pub const DEFAULT_DRIFT_EFFECT_SIZE: f64 = 0.1;

/// Features the drift engine can compare (plus `attributes.<name>`).
pub const DRIFT_FEATURES: &[&str] = &[
    "output_tokens",
    "input_tokens",
    "duration_ms",
    "cost_usd",
    "turns",
    "tool_calls",
    "tool_mix",
    "tool_transitions",
    "status_mix",
    "quality.refusal",
    "quality.resolved",
    "fallback",
    "quality.score",
    "output_chars",
    "context_utilisation",
];

/// Values of `drift.test`: `auto`, `evidently`, or a fixed test.
pub const DRIFT_TESTS: &[&str] = &[
    "auto",
    "evidently",
    "ks",
    "chisquare",
    "z",
    "psi",
    "wasserstein",
    "jensenshannon",
    "hellinger",
];

/// Names of the numeric fields objectives can measure (plus `attributes.<name>`).
pub const NUMERIC_FIELDS: &[&str] = &[
    "duration_ms",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "turns",
    "tool_calls",
    "quality.score",
    "output_chars",
    "context_tokens_max",
    "context_utilisation",
];

/// Names of the boolean signals of `rate.of`.
pub const BOOL_SIGNALS: &[&str] = &[
    "quality.resolved",
    "quality.refusal",
    "fallback.triggered",
    "status:success",
    "status:error",
    "status:timeout",
    "status:abandoned",
];

/// The objective kinds, as YAML keys.
pub const OBJECTIVE_KINDS: &[&str] = &[
    "ratio",
    "latency",
    "percentile",
    "mean",
    "rate",
    "spend",
    "pii",
    "tools",
    "fallback",
    "drift",
];

/// Values of `good.status` and `fallback.requiredOn`.
pub const STATUSES: &[&str] = &["success", "error", "timeout", "abandoned"];
/// Record fields of `keyBy`/`segmentBy` (plus `attributes.<name>`).
pub const KEY_FIELDS: &[&str] = &["prompt_version", "model", "provider"];
/// Values of `window.latePolicy`.
pub const LATE_POLICIES: &[&str] = &["deadLetter", "drop"];
/// The named sets of burn-rate tiers.
pub const BURN_RATE_PRESETS: &[&str] = &["sre-workbook"];
/// Values of `drift.ks`.
pub const KS_DISTRIBUTIONS: &[&str] = &["auto", "exact"];
/// Values of a PII rule's `allow` (the names of [`PiiHandling::ALL`]).
pub const PII_HANDLINGS: &[&str] = &["redacted", "masked", "blocked", "passed_through"];
/// Default `drift.baseline.minDuration`: a baseline learns for at least 6 hours.
pub const DEFAULT_BASELINE_MIN_DURATION_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Clone, Default)]
pub struct SpecSpans {
    /// `metadata.name` (or the document, if the name is missing).
    pub name: Spot,
    /// `spec.window.size`.
    pub window_size: Spot,
    /// `spec.window.step` (`None` when defaulted to the size).
    pub window_step: Option<Spot>,
    /// `spec.period.rolling` (the `spec` mapping when defaulted).
    pub period: Spot,
    /// One per `spec.keyBy` entry.
    pub key_by: Vec<Spot>,
    /// One per `spec.segmentBy` entry.
    pub segment_by: Vec<Spot>,
    /// One per objective.
    pub objectives: Vec<ObjectiveSpans>,
    /// One per burn-rate tier.
    pub tiers: Vec<TierSpans>,
    /// Whether the tiers were spelled out (rather than `sre-workbook` or defaulted).
    pub explicit_tiers: bool,
}

/// Where the parts of one objective were written.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveSpans {
    /// The objective's `name`.
    pub name: Spot,
    /// `target`, if any.
    pub target: Option<Spot>,
    /// `percentile.p`, if any.
    pub p: Option<Spot>,
}

/// Where one burn-rate tier was written.
#[derive(Debug, Clone, Default)]
pub struct TierSpans {
    /// `factor` (the `burnRates` value for presets).
    pub factor: Spot,
    /// `long` (the `burnRates` value for presets).
    pub long: Spot,
    /// `short`, when given explicitly.
    pub short: Option<Spot>,
}

/// A successfully decoded document.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The valid spec.
    pub spec: Spec,
    /// Where its parts were written.
    pub spans: SpecSpans,
}

/// Where a key that is unknown in one mapping belongs instead (for hints).
pub fn home_of(key: &str, here: &str) -> Option<String> {
    let objective_level = [
        "target",
        "dimension",
        "severity",
        "zeroTolerance",
        "name",
        "confidence",
    ];
    if objective_level.contains(&key) && OBJECTIVE_KINDS.contains(&here) {
        return Some(format!(
            "`{key}` belongs to the objective itself, next to `name`, not inside `{here}`"
        ));
    }
    if here == "objective" {
        if ["max", "min", "field", "threshold", "p", "of", "good"].contains(&key) {
            return Some(format!(
                "`{key}` belongs inside the objective's check, e.g. `percentile: {{{key}: ...}}`"
            ));
        }
        if key == "type" || key == "kind" {
            return Some(format!(
                "an objective names its check by key: one of {}",
                one_of(OBJECTIVE_KINDS)
            ));
        }
    }
    if here == "spec" && format::METADATA.declares(key) {
        return Some(format!("`{key}` belongs under `metadata`, not `spec`"));
    }
    if here == "document" && (format::SPEC.declares(key) || key == "objectives") {
        return Some(format!("`{key}` belongs under `spec`"));
    }
    if here == "document" && format::METADATA.declares(key) {
        return Some(format!("`{key}` belongs under `metadata`"));
    }
    None
}

/// `N per DURATION` (e.g. `1 per 30d`, `0.5 per 7d`).
fn false_alarms(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<FalseAlarmBudget> {
    let loc = ctx.loc(n);
    let expected = "a budget like `1 per 30d` (false tickets per key per period)";
    let Node::Str(s) = &n.value else {
        ctx.type_error(n, path, expected, None);
        return None;
    };
    let parsed = s.split_once(" per ").and_then(|(count, period)| {
        let tickets: f64 = count.trim().parse().ok()?;
        let per_ms = parse_duration_ms(period.trim()).ok()?;
        (tickets.is_finite() && tickets > 0.0 && per_ms > 0)
            .then_some(FalseAlarmBudget { tickets, per_ms })
    });
    if parsed.is_none() {
        ctx.error(
            loc,
            path,
            format!("invalid false-alarm budget `{s}`"),
            Some(format!(
                "write {expected}: a positive number, ` per `, and a duration like `7d` or `30d`"
            )),
        );
    }
    parsed
}

fn status(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Status> {
    let i = ctx.enum_value(n, path, "status", STATUSES)?;
    Status::parse(STATUSES[i])
}

fn status_list(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Vec<Status>> {
    let items = ctx.list(n, path, "a list of statuses")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (item, p) in items {
        match status(ctx, item, &p) {
            Some(s) if out.contains(&s) => {
                let loc = ctx.loc(item);
                ctx.error(loc, &p, format!("`{}` is listed twice", s.as_str()), None);
                ok = false;
            }
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn severity(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Severity> {
    let i = ctx.enum_value(n, path, "severity", Severity::NAMES)?;
    Some(Severity::ALL[i])
}

/// Decodes one document; returns `None` (with the reasons in `ctx.diags`) if it is invalid.
pub fn decode_document(ctx: &mut Ctx<'_>, root: &SNode) -> Option<Decoded> {
    let errors_before = ctx.error_count();
    let doc = ctx.document(root, &AGENT_SLA, &format::DOCUMENT)?;

    let mut spans = SpecSpans::default();
    let mut name = String::new();
    let mut labels = Vec::new();
    let mut runbook = None;
    let mut runbooks = BTreeMap::new();
    spans.name = Spot {
        loc: doc.loc,
        path: "metadata.name".into(),
    };
    if let Some(m) = ctx.require(
        &doc,
        "metadata",
        Some("add `metadata: {name: my-agent-sla}`".into()),
    ) && let Some(meta) = ctx.fields(m, "metadata", "a mapping", &format::METADATA)
    {
        if let Some(n) = ctx.require(
            &meta,
            "name",
            Some("e.g. `name: support-bot-prod`; it names findings and incidents".into()),
        ) {
            spans.name = Spot {
                loc: ctx.loc(n),
                path: "metadata.name".into(),
            };
            let loc = ctx.loc(n);
            if let Some(s) = ctx.nonempty_string(n, "metadata.name")
                && ctx.check_name(loc, "metadata.name", "name", &s)
            {
                name = s;
            }
        }
        if let Some(n) = meta.get("labels") {
            labels = ctx.string_map(n, "metadata.labels").unwrap_or_default();
        }
        if let Some(n) = meta.get("runbook") {
            runbook = ctx.nonempty_string(n, "metadata.runbook");
        }
        if let Some(n) = meta.get("runbooks") {
            runbooks = decode_runbooks(ctx, n, "metadata.runbooks").unwrap_or_default();
        }
    }

    let spec_node = ctx.require(&doc, "spec", None)?;
    let sf = ctx.fields(spec_node, "spec", "a mapping", &format::SPEC)?;

    let selector = match ctx.require(
        &sf,
        "selector",
        Some("e.g. `selector: {agent: support-bot}`".into()),
    ) {
        Some(n) => decode_selector(ctx, n, "spec.selector"),
        None => None,
    };

    let key_by = match sf.get("keyBy") {
        Some(n) => decode_key_fields(ctx, n, "spec.keyBy", &mut spans.key_by),
        None => Some(vec![KeyField::PromptVersion, KeyField::Model]),
    };
    let segment_by = match sf.get("segmentBy") {
        Some(n) => decode_key_fields(ctx, n, "spec.segmentBy", &mut spans.segment_by),
        None => Some(Vec::new()),
    };
    let max_segments = match sf.get("maxSegments") {
        Some(n) => ctx.uint(n, "spec.maxSegments", 1).map(|v| v as usize),
        None => Some(DEFAULT_MAX_SEGMENTS),
    };
    let window = decode_window(ctx, &sf, &mut spans);
    let min_sessions = match sf.get("minSessions") {
        Some(n) => ctx.uint(n, "spec.minSessions", 0),
        None => Some(DEFAULT_MIN_SESSIONS),
    };
    spans.period = Spot {
        loc: sf.loc,
        path: "spec.period".into(),
    };
    let period_ms = match sf.get("period") {
        None => Some(DEFAULT_PERIOD_MS),
        Some(n) => {
            let hint = match &n.value {
                Node::Str(s) => Some(format!("write `period: {{rolling: {s}}}`")),
                _ => Some("write e.g. `period: {rolling: 28d}`".into()),
            };
            if !matches!(n.value, Node::Map(_)) {
                ctx.type_error(n, "spec.period", "a mapping like `{rolling: 28d}`", hint);
                None
            } else {
                (|| {
                    let pf = ctx.fields(n, "spec.period", "a mapping", &format::PERIOD)?;
                    let r = ctx.require(&pf, "rolling", Some("e.g. `rolling: 28d`".into()))?;
                    spans.period = Spot {
                        loc: ctx.loc(r),
                        path: "spec.period.rolling".into(),
                    };
                    ctx.duration(r, "spec.period.rolling", false)
                })()
            }
        }
    };
    if let (Some(p), Some(w)) = (period_ms, window)
        && p < w.size_ms
    {
        ctx.error(
            spans.period.loc,
            &spans.period.path.clone(),
            format!(
                "the period ({}) is shorter than one window ({})",
                format_duration_ms(p),
                format_duration_ms(w.size_ms)
            ),
            Some("the error-budget period spans many windows, e.g. `28d`".into()),
        );
    }

    let alerting = match sf.get("alerting") {
        Some(n) => decode_alerting(ctx, n, &mut spans),
        None => {
            spans.tiers = tiers_at(sf.loc, "spec.alerting", BurnRateTier::sre_workbook().len());
            Some(Alerting {
                burn_rates: BurnRateTier::sre_workbook(),
                notify: Vec::new(),
                stakeholders: Vec::new(),
            })
        }
    };

    let objectives = match ctx.require(&sf, "objectives", Some("add at least one objective".into()))
    {
        Some(n) => decode_objectives(ctx, n, &mut spans),
        None => None,
    };

    if ctx.error_count() > errors_before {
        return None;
    }
    let mut objectives = objectives?;
    if let Some(w) = &window {
        for o in &mut objectives {
            if let ObjectiveKind::Drift(d) = &mut o.kind
                && !d.p_value_explicit
            {
                d.p_value = d.false_alarms.alpha(w.step_ms);
            }
        }
    }
    let spec = Spec {
        name,
        labels,
        runbook,
        runbooks,
        source: ctx.file.to_owned(),
        selector: selector?,
        key_by: key_by?,
        segment_by: segment_by?,
        max_segments: max_segments?,
        window: window?,
        min_sessions: min_sessions?,
        period_ms: period_ms?,
        objectives,
        alerting: alerting?,
    };
    Some(Decoded { spec, spans })
}

fn tiers_at(loc: Loc, path: &str, n: usize) -> Vec<TierSpans> {
    let spot = Spot {
        loc,
        path: path.to_owned(),
    };
    (0..n)
        .map(|_| TierSpans {
            factor: spot.clone(),
            long: spot.clone(),
            short: None,
        })
        .collect()
}

fn decode_selector(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Selector> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{agent: support-bot}`",
        &format::SELECTOR,
    )?;
    let agents = match ctx.require(
        &f,
        "agent",
        Some("name the agent, e.g. `agent: support-bot` (`\"*\"` for every agent)".into()),
    ) {
        Some(a) => ctx.string_list(a, &f.path("agent")),
        None => None,
    };
    let attributes = match f.get("attributes") {
        Some(a) => ctx.string_map(a, &f.path("attributes")).unwrap_or_default(),
        None => Vec::new(),
    };
    Some(Selector {
        agents: agents?,
        attributes,
    })
}

/// Parses a `keyBy`/`segmentBy` entry.
fn key_field(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<KeyField> {
    let s = ctx.nonempty_string(n, path)?;
    match s.as_str() {
        "prompt_version" => return Some(KeyField::PromptVersion),
        "model" => return Some(KeyField::Model),
        "provider" => return Some(KeyField::Provider),
        _ => {}
    }
    if let Some(attr) = s.strip_prefix("attributes.")
        && !attr.is_empty()
    {
        return Some(KeyField::Attribute(attr.to_owned()));
    }
    let loc = ctx.loc(n);
    let hint = if s == "agent" {
        "the agent is always part of the key; remove it".to_owned()
    } else if let Some(m) = did_you_mean(&s, KEY_FIELDS) {
        format!("did you mean `{m}`?")
    } else if !s.contains('.') {
        format!("custom attributes are written `attributes.{s}`")
    } else {
        format!(
            "valid fields: {}",
            one_of(&[KEY_FIELDS, &["attributes.<name>"]].concat())
        )
    };
    ctx.error(loc, path, format!("unknown key field `{s}`"), Some(hint));
    None
}

fn decode_key_fields(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    spots: &mut Vec<Spot>,
) -> Option<Vec<KeyField>> {
    let items = ctx.list(n, path, "a list of fields")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (item, p) in items {
        match key_field(ctx, item, &p) {
            Some(k) if out.contains(&k) => {
                let loc = ctx.loc(item);
                ctx.error(loc, &p, "this field is listed twice", None);
                ok = false;
            }
            Some(k) => {
                spots.push(Spot {
                    loc: ctx.loc(item),
                    path: p,
                });
                out.push(k);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_window(ctx: &mut Ctx<'_>, sf: &Fields<'_>, spans: &mut SpecSpans) -> Option<WindowSpec> {
    let Some(n) = sf.get("window") else {
        spans.window_size = Spot {
            loc: sf.loc,
            path: "spec.window".into(),
        };
        return Some(WindowSpec {
            size_ms: DEFAULT_WINDOW_MS,
            step_ms: DEFAULT_WINDOW_MS,
            allowed_lateness_ms: 0,
            late_policy: LatePolicy::DeadLetter,
        });
    };
    let f = ctx.fields(
        n,
        "spec.window",
        "a mapping like `{size: 1h, step: 15m}`",
        &format::WINDOW,
    )?;
    let size = ctx.require(&f, "size", Some("e.g. `size: 1h`".into()));
    let size_ms = size.and_then(|s| {
        spans.window_size = Spot {
            loc: ctx.loc(s),
            path: f.path("size"),
        };
        ctx.duration(s, &f.path("size"), false)
    });
    let step_ms = match f.get("step") {
        Some(s) => {
            spans.window_step = Some(Spot {
                loc: ctx.loc(s),
                path: f.path("step"),
            });
            ctx.duration(s, &f.path("step"), false)
        }
        None => size_ms,
    };
    let lateness = match f.get("allowedLateness") {
        Some(s) => ctx.duration(s, &f.path("allowedLateness"), true),
        None => Some(0),
    };
    let late_policy = match f.get("latePolicy") {
        Some(s) => ctx
            .enum_value(s, &f.path("latePolicy"), "late policy", LATE_POLICIES)
            .map(|i| [LatePolicy::DeadLetter, LatePolicy::Drop][i]),
        None => Some(LatePolicy::DeadLetter),
    };
    Some(WindowSpec {
        size_ms: size_ms?,
        step_ms: step_ms?,
        allowed_lateness_ms: lateness?,
        late_policy: late_policy?,
    })
}

fn decode_alerting(ctx: &mut Ctx<'_>, n: &SNode, spans: &mut SpecSpans) -> Option<Alerting> {
    let f = ctx.fields(n, "spec.alerting", "a mapping", &format::ALERTING)?;
    let burn_rates = match f.get("burnRates") {
        None => {
            spans.tiers = tiers_at(f.loc, "spec.alerting", BurnRateTier::sre_workbook().len());
            Some(BurnRateTier::sre_workbook())
        }
        Some(b) => decode_burn_rates(ctx, b, &f.path("burnRates"), spans),
    };
    let notify = match f.get("notify") {
        Some(x) => ctx.string_list(x, &f.path("notify")),
        None => Some(Vec::new()),
    };
    let stakeholders = match f.get("stakeholders") {
        Some(x) => ctx.string_list(x, &f.path("stakeholders")),
        None => Some(Vec::new()),
    };
    Some(Alerting {
        burn_rates: burn_rates?,
        notify: notify?,
        stakeholders: stakeholders?,
    })
}

fn decode_burn_rates(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    spans: &mut SpecSpans,
) -> Option<Vec<BurnRateTier>> {
    let items = match &n.value {
        Node::Str(_) => {
            ctx.enum_value(n, path, "burn-rate preset", BURN_RATE_PRESETS)?;
            spans.tiers = tiers_at(ctx.loc(n), path, BurnRateTier::sre_workbook().len());
            return Some(BurnRateTier::sre_workbook());
        }
        Node::Seq(items) => items,
        _ => {
            ctx.type_error(
                n,
                path,
                "`sre-workbook` or a list of tiers",
                Some("e.g. `burnRates: [{name: fast, factor: 14.4, long: 1h, short: 5m, severity: page}]`".into()),
            );
            return None;
        }
    };
    spans.explicit_tiers = true;
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, u32> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(f) = ctx.fields(
            item,
            &p,
            "a tier like `{name: fast, factor: 14.4, long: 1h}`",
            &format::TIER,
        ) else {
            ok = false;
            continue;
        };
        let name = ctx
            .require(&f, "name", None)
            .and_then(|x| ctx.nonempty_string(x, &f.path("name")));
        if let (Some(nm), Some(x)) = (&name, f.get("name")) {
            let loc = ctx.loc(x);
            if let Some(first) = names.get(nm) {
                ctx.error(
                    loc,
                    &f.path("name"),
                    format!("duplicate tier name `{nm}`"),
                    Some(format!("it is already used on line {first}")),
                );
                ok = false;
            } else {
                names.insert(nm.clone(), loc.line);
            }
        }
        let factor = ctx
            .require(&f, "factor", Some("e.g. `factor: 14.4`".into()))
            .and_then(|x| {
                ctx.positive(
                    x,
                    &f.path("factor"),
                    "a burn-rate factor (a number like `14.4`)",
                    false,
                )
            });
        let long = ctx
            .require(&f, "long", Some("e.g. `long: 1h`".into()))
            .and_then(|x| ctx.duration(x, &f.path("long"), false));
        let short = match f.get("short") {
            Some(x) => ctx.duration(x, &f.path("short"), false),
            None => long.map(|l| l / 12),
        };
        if let (Some(l), Some(s), Some(x)) = (long, short, f.get("short"))
            && s >= l
        {
            let loc = ctx.loc(x);
            ctx.error(
                loc,
                &f.path("short"),
                format!(
                    "the short window ({}) must be shorter than the long window ({})",
                    format_duration_ms(s),
                    format_duration_ms(l)
                ),
                Some(format!(
                    "the usual short window is long/12: `{}`",
                    format_duration_ms(l / 12)
                )),
            );
            ok = false;
        }
        let severity = match f.get("severity") {
            Some(x) => severity(ctx, x, &f.path("severity")),
            None => Some(Severity::Page),
        };
        let spot = |ctx: &Ctx<'_>, key: &str| {
            f.get(key).map(|x| Spot {
                loc: ctx.loc(x),
                path: f.path(key),
            })
        };
        spans.tiers.push(TierSpans {
            factor: spot(ctx, "factor").unwrap_or_default(),
            long: spot(ctx, "long").unwrap_or_default(),
            short: spot(ctx, "short"),
        });
        match (name, factor, long, short, severity) {
            (Some(name), Some(factor), Some(long_ms), Some(short_ms), Some(severity)) => {
                out.push(BurnRateTier {
                    name,
                    factor,
                    long_ms,
                    short_ms,
                    severity,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_objectives(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    spans: &mut SpecSpans,
) -> Option<Vec<Objective>> {
    let path = "spec.objectives";
    let Node::Seq(items) = &n.value else {
        ctx.type_error(n, path, "a list of objectives", None);
        return None;
    };
    if items.is_empty() {
        let loc = ctx.loc(n);
        ctx.error(loc, path, "a spec needs at least one objective", None);
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, u32> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let mut os = ObjectiveSpans::default();
        match decode_objective(ctx, item, &p, &mut os, &mut names) {
            Some(o) => out.push(o),
            None => ok = false,
        }
        spans.objectives.push(os);
    }
    ok.then_some(out)
}

fn default_dimension(kind: &str, field: Option<&NumericField>) -> Dimension {
    match kind {
        "ratio" | "latency" => Dimension::Availability,
        "percentile" => match field {
            Some(NumericField::CostUsd) => Dimension::Governance,
            Some(NumericField::DurationMs) | None => Dimension::Availability,
            Some(_) => Dimension::Behavior,
        },
        "mean" | "rate" | "drift" => Dimension::Behavior,
        "spend" | "pii" | "tools" => Dimension::Governance,
        _ => Dimension::Fallback,
    }
}

/// The dimensions an objective kind may be filed under.
pub fn allowed_dimensions(kind: &str) -> &'static [Dimension] {
    use Dimension::*;
    match kind {
        "ratio" | "latency" => &[Availability, Behavior],
        "spend" | "pii" | "tools" => &[Governance],
        "fallback" => &[Fallback],
        _ => &[Availability, Behavior, Governance, Fallback],
    }
}

fn decode_objective(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    spans: &mut ObjectiveSpans,
    names: &mut HashMap<String, u32>,
) -> Option<Objective> {
    let errors_before = ctx.error_count();
    let f = ctx.fields(
        n,
        path,
        "an objective (a mapping with `name` and one check)",
        &format::OBJECTIVE,
    )?;

    spans.name = Spot {
        loc: f.loc,
        path: f.path("name"),
    };
    let name = match ctx.require(&f, "name", Some("e.g. `name: success-rate`".into())) {
        Some(x) => {
            spans.name.loc = ctx.loc(x);
            let s = ctx.nonempty_string(x, &f.path("name"));
            match s {
                Some(s) if !ctx.check_name(ctx.loc(x), &f.path("name"), "objective name", &s) => {
                    None
                }
                Some(s) => {
                    let loc = ctx.loc(x);
                    if let Some(first) = names.get(&s) {
                        ctx.error(
                            loc,
                            &f.path("name"),
                            format!("duplicate objective name `{s}`"),
                            Some(format!(
                                "objective names must be unique within a spec; `{s}` is already used on line {first}"
                            )),
                        );
                        None
                    } else {
                        names.insert(s.clone(), loc.line);
                        Some(s)
                    }
                }
                None => None,
            }
        }
        None => None,
    };

    // Exactly one check.
    let kinds: Vec<&Spanned<String>> = f
        .entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| OBJECTIVE_KINDS.contains(&k.value.as_str()))
        .collect();
    let misspelled_kind = f.entries.iter().any(|(k, _)| {
        !format::OBJECTIVE.declares(&k.value) && did_you_mean(&k.value, OBJECTIVE_KINDS).is_some()
    });
    let kind_key = match kinds.as_slice() {
        [] if misspelled_kind => None,
        [] => {
            ctx.error(
                f.loc,
                path,
                "the objective has no check",
                Some(format!("add exactly one of {}", one_of(OBJECTIVE_KINDS))),
            );
            None
        }
        [k] => Some(k.value.clone()),
        [first, rest @ ..] => {
            for k in rest {
                let loc = ctx.key_loc(k);
                ctx.error(
                    loc,
                    &f.path(&k.value),
                    format!(
                        "an objective has exactly one check, but this one has `{}` and `{}`",
                        first.value, k.value
                    ),
                    Some("split it into two objectives with different names".into()),
                );
            }
            None
        }
    };

    let target_node = f.get("target");
    // Only an SLO's target is checked as a fraction: on other checks it is an error anyway.
    let target_applies = kind_key
        .as_deref()
        .is_none_or(|k| matches!(k, "ratio" | "latency" | "fallback"));
    let target = target_node.filter(|_| target_applies).and_then(|t| {
        spans.target = Some(Spot {
            loc: ctx.loc(t),
            path: f.path("target"),
        });
        let v = ctx.fraction(t, &f.path("target"))?;
        if v <= 0.0 || v >= 1.0 {
            let loc = ctx.loc(t);
            let hint = if v >= 1.0 {
                "a 100% target leaves no error budget, so burn rates are undefined: use e.g. `99.9%`"
            } else {
                "a target is the share of sessions that must be good, e.g. `99%`"
            };
            ctx.error(
                loc,
                &f.path("target"),
                format!("target must lie strictly between 0% and 100%, found `{}`", pct(v)),
                Some(hint.into()),
            );
            return None;
        }
        Some(v)
    });

    let description = f
        .get("description")
        .and_then(|x| ctx.nonempty_string(x, &f.path("description")));
    let runbook = f
        .get("runbook")
        .and_then(|x| ctx.nonempty_string(x, &f.path("runbook")));
    let runbooks = match f.get("runbooks") {
        Some(x) => decode_runbooks(ctx, x, &f.path("runbooks")),
        None => Some(BTreeMap::new()),
    };
    let severity = match f.get("severity") {
        Some(x) => severity(ctx, x, &f.path("severity")),
        None => Some(Severity::Ticket),
    };
    let zero_tolerance = match f.get("zeroTolerance") {
        Some(x) => ctx.bool(x, &f.path("zeroTolerance")),
        None => Some(false),
    };

    let dimension_node = f.get("dimension");
    let dimension = dimension_node.and_then(|x| {
        ctx.enum_value(x, &f.path("dimension"), "dimension", Dimension::NAMES)
            .map(|i| Dimension::ALL[i])
    });

    let kind_key = kind_key?;
    let kind_node = f.get(&kind_key)?;
    let kp = f.path(&kind_key);
    let slo = matches!(kind_key.as_str(), "ratio" | "latency" | "fallback");
    let misplaced_target =
        matches!(&kind_node.value, Node::Map(es) if es.iter().any(|(k, _)| k.value == "target"));
    if slo && target_node.is_none() && !misplaced_target {
        ctx.error(
            f.loc,
            &f.path("target"),
            format!("missing required key `target`: a `{kind_key}` objective is an SLO"),
            Some("e.g. `target: 99%` (the share of sessions that must be good)".into()),
        );
    }
    if !slo && let Some(t) = target_node {
        let hint = match kind_key.as_str() {
            "percentile" | "mean" | "rate" => {
                format!(
                    "`{kind_key}` states its bound inside: `{kind_key}: {{..., max: ...}}` or `min: ...`"
                )
            }
            _ => {
                "remove it; only `ratio`, `latency` and `fallback` objectives have a target".into()
            }
        };
        let loc = ctx.loc(t);
        ctx.error(
            loc,
            &f.path("target"),
            format!("`target` does not apply to a `{kind_key}` objective"),
            Some(hint),
        );
    }
    if let Some(true) = zero_tolerance
        && !matches!(kind_key.as_str(), "spend" | "pii" | "tools")
    {
        let loc = f.get("zeroTolerance").map(|x| ctx.loc(x)).unwrap_or(f.loc);
        ctx.error(
            loc,
            &f.path("zeroTolerance"),
            format!("`zeroTolerance` does not apply to a `{kind_key}` objective"),
            Some("zero tolerance is for per-session rules: `spend`, `pii` and `tools`".into()),
        );
    }

    let confidence = match f.get("confidence") {
        None => Some(Confidence::DEFAULT),
        Some(x) if matches!(kind_key.as_str(), "percentile" | "mean" | "rate") => {
            decode_confidence(ctx, x, &f.path("confidence"))
        }
        Some(x) => {
            let loc = ctx.loc(x);
            ctx.error(
                loc,
                &f.path("confidence"),
                format!("`confidence` does not apply to a `{kind_key}` objective"),
                Some(
                    "only per-window thresholds (`percentile`, `mean`, `rate`) are judged with a confidence bound; remove it"
                        .into(),
                ),
            );
            None
        }
    };

    let (kind, field) = decode_kind(
        ctx,
        &kind_key,
        kind_node,
        &kp,
        target,
        confidence.unwrap_or(Confidence::DEFAULT),
        spans,
    );

    let dimension = match dimension_node {
        Some(x) => {
            let d = dimension;
            if let Some(d) = d {
                let allowed = allowed_dimensions(&kind_key);
                if !allowed.contains(&d) {
                    let loc = ctx.loc(x);
                    let names: Vec<&str> = allowed.iter().map(|d| Dimension::as_str(*d)).collect();
                    ctx.error(
                        loc,
                        &f.path("dimension"),
                        format!(
                            "a `{kind_key}` objective cannot be in dimension `{}`",
                            Dimension::as_str(d)
                        ),
                        Some(format!(
                            "use {} (or leave `dimension` out: it defaults to `{}`)",
                            one_of(&names),
                            Dimension::as_str(default_dimension(&kind_key, field.as_ref()))
                        )),
                    );
                }
            }
            d
        }
        None => Some(default_dimension(&kind_key, field.as_ref())),
    };

    if ctx.error_count() > errors_before {
        return None;
    }
    Some(Objective {
        name: name?,
        dimension: dimension?,
        description,
        runbook,
        runbooks: runbooks?,
        severity: severity?,
        zero_tolerance: zero_tolerance?,
        kind: kind?,
    })
}

/// `runbooks`: a link per layer — only the layers of [`Layer`] (an unknown key gets a "did you
/// mean"), each an http(s) URL with a host.
fn decode_runbooks(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<BTreeMap<Layer, String>> {
    let f = ctx.fields(
        n,
        path,
        "a mapping of layers to runbook URLs",
        &format::RUNBOOKS,
    )?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for layer in Layer::ALL {
        let Some(v) = f.get(layer.as_str()) else {
            continue;
        };
        let at = f.path(layer.as_str());
        let Some(url) = ctx.nonempty_string(v, &at) else {
            ok = false;
            continue;
        };
        if is_runbook_url(&url) {
            out.insert(layer, url);
        } else {
            let loc = ctx.loc(v);
            ctx.error(
                loc,
                &at,
                format!("a runbook must be an http or https URL, found `{url}`"),
                Some(format!(
                    "e.g. `{}: https://wiki.example.com/runbooks/{}`",
                    layer.as_str(),
                    layer.as_str()
                )),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

/// `http(s)://host…` without blanks: what [`format::RUNBOOK_URL`] says.
fn is_runbook_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !url.chars().any(char::is_whitespace)
}

/// Decodes the check of an objective; also returns the measured field (for the dimension).
fn decode_kind(
    ctx: &mut Ctx<'_>,
    kind: &str,
    n: &SNode,
    path: &str,
    target: Option<f64>,
    confidence: Confidence,
    spans: &mut ObjectiveSpans,
) -> (Option<ObjectiveKind>, Option<NumericField>) {
    let target = target.unwrap_or(0.0);
    match kind {
        "ratio" => (decode_ratio(ctx, n, path, target), None),
        "latency" => decode_latency(ctx, n, path, target),
        "percentile" => decode_percentile(ctx, n, path, confidence, spans),
        "mean" => decode_mean(ctx, n, path, confidence),
        "rate" => (decode_rate(ctx, n, path, confidence), None),
        "spend" => (decode_spend(ctx, n, path).map(ObjectiveKind::Spend), None),
        "pii" => (decode_pii(ctx, n, path).map(ObjectiveKind::Pii), None),
        "tools" => (decode_tools(ctx, n, path).map(ObjectiveKind::Tools), None),
        "fallback" => (
            decode_fallback(ctx, n, path, target).map(ObjectiveKind::Fallback),
            None,
        ),
        _ => (decode_drift(ctx, n, path).map(ObjectiveKind::Drift), None),
    }
}

fn decode_ratio(ctx: &mut Ctx<'_>, n: &SNode, path: &str, target: f64) -> Option<ObjectiveKind> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{good: {status: [success]}}`",
        &format::RATIO,
    )?;
    let g = ctx.require(&f, "good", Some("e.g. `good: {status: [success]}`".into()))?;
    let gp = f.path("good");
    let gf = ctx.fields(
        g,
        &gp,
        "a session filter like `{status: [success]}`",
        &format::GOOD,
    )?;
    let status = match gf.get("status") {
        Some(x) => status_list(ctx, x, &gf.path("status")),
        None => Some(Vec::new()),
    };
    let max_duration = match gf.get("maxDuration") {
        Some(x) => ctx.duration(x, &gf.path("maxDuration"), false).map(Some),
        None => Some(None),
    };
    if gf.get("status").is_none() && gf.get("maxDuration").is_none() {
        ctx.error(
            gf.loc,
            &gp,
            "`good` must say which sessions are good",
            Some("give `status: [success]` and/or `maxDuration: 20s`".into()),
        );
        return None;
    }
    Some(ObjectiveKind::Ratio {
        good: SessionFilter {
            status: status?,
            max_duration_ms: max_duration?.map(|ms| ms as f64),
        },
        target,
    })
}

/// Parses a numeric field name (`duration_ms`, `quality.score`, `attributes.<name>`).
fn numeric_field(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<NumericField> {
    let s = ctx.nonempty_string(n, path)?;
    let f = match s.as_str() {
        "duration_ms" => NumericField::DurationMs,
        "cost_usd" => NumericField::CostUsd,
        "input_tokens" => NumericField::InputTokens,
        "output_tokens" => NumericField::OutputTokens,
        "turns" => NumericField::Turns,
        "tool_calls" => NumericField::ToolCalls,
        "quality.score" => NumericField::QualityScore,
        "output_chars" => NumericField::OutputChars,
        "context_tokens_max" => NumericField::ContextTokensMax,
        "context_utilisation" => NumericField::ContextUtilisation,
        other => match other.strip_prefix("attributes.") {
            Some(a) if !a.is_empty() => NumericField::Attribute(a.to_owned()),
            _ => {
                let loc = ctx.loc(n);
                let hint = match did_you_mean(other, NUMERIC_FIELDS) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => format!(
                        "valid fields: {}, or `attributes.<name>`",
                        NUMERIC_FIELDS
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                ctx.error(
                    loc,
                    path,
                    format!("unknown numeric field `{other}`"),
                    Some(hint),
                );
                return None;
            }
        },
    };
    Some(f)
}

/// A bound or threshold value of `field`: a duration (or ms) for `duration_ms`, a fraction for
/// `context_utilisation`, a plain number otherwise.
fn field_value(ctx: &mut Ctx<'_>, field: &NumericField, n: &SNode, path: &str) -> Option<f64> {
    match field {
        NumericField::DurationMs => match &n.value {
            Node::Str(_) => ctx.duration(n, path, true).map(|ms| ms as f64),
            _ => ctx.positive(
                n,
                path,
                "a duration like `20s` or a number of milliseconds",
                true,
            ),
        },
        NumericField::ContextUtilisation => ctx.fraction(n, path),
        NumericField::CostUsd => ctx.positive(n, path, "an amount in USD like `0.05`", true),
        NumericField::QualityScore | NumericField::Attribute(_) => ctx.number(n, path, "a number"),
        _ => {
            if let Node::Str(s) = &n.value
                && parse_duration_ms(s.trim()).is_ok()
            {
                ctx.type_error(
                    n,
                    path,
                    "a count",
                    Some("durations only apply to `duration_ms`".into()),
                );
                return None;
            }
            ctx.positive(n, path, "a count (a number)", true)
        }
    }
}

fn decode_bound(
    ctx: &mut Ctx<'_>,
    f: &Fields<'_>,
    value: impl Fn(&mut Ctx<'_>, &SNode, &str) -> Option<f64>,
) -> Option<Bound> {
    match (f.get("max"), f.get("min")) {
        (Some(x), None) => value(ctx, x, &f.path("max")).map(Bound::Max),
        (None, Some(x)) => value(ctx, x, &f.path("min")).map(Bound::Min),
        (None, None) => {
            ctx.error(
                f.loc,
                &f.path("max"),
                "missing the bound: give `max` or `min`",
                Some("`max: x` means observed ≤ x, `min: x` means observed ≥ x".into()),
            );
            None
        }
        (Some(_), Some(x)) => {
            let loc = f.key("min").map(|k| ctx.key_loc(k)).unwrap_or(ctx.loc(x));
            ctx.error(
                loc,
                &f.path("min"),
                "give either `max` or `min`, not both",
                Some("for a band, write two objectives".into()),
            );
            None
        }
    }
}

fn decode_latency(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    target: f64,
) -> (Option<ObjectiveKind>, Option<NumericField>) {
    let Some(f) = ctx.fields(
        n,
        path,
        "a mapping like `{threshold: 8s}`",
        &format::LATENCY,
    ) else {
        return (None, None);
    };
    let field = match f.get("field") {
        Some(x) => numeric_field(ctx, x, &f.path("field")),
        None => Some(NumericField::DurationMs),
    };
    let threshold = match (
        ctx.require(&f, "threshold", Some("e.g. `threshold: 8s`".into())),
        &field,
    ) {
        (Some(x), Some(fld)) => field_value(ctx, fld, x, &f.path("threshold")),
        _ => None,
    };
    let threshold = match (threshold, f.get("threshold")) {
        (Some(t), Some(x)) if t <= 0.0 => {
            let loc = ctx.loc(x);
            ctx.error(
                loc,
                &f.path("threshold"),
                "the threshold must be more than 0",
                Some("sessions at or below the threshold are good, e.g. `threshold: 8s`".into()),
            );
            None
        }
        (t, _) => t,
    };
    let kind = match (&field, threshold) {
        (Some(fld), Some(t)) => Some(ObjectiveKind::Threshold {
            field: fld.clone(),
            threshold: t,
            target,
        }),
        _ => None,
    };
    (kind, field)
}

fn decode_percentile(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    confidence: Confidence,
    spans: &mut ObjectiveSpans,
) -> (Option<ObjectiveKind>, Option<NumericField>) {
    let Some(f) = ctx.fields(
        n,
        path,
        "a mapping like `{field: duration_ms, p: 99, max: 20s}`",
        &format::PERCENTILE,
    ) else {
        return (None, None);
    };
    let field = match f.get("field") {
        Some(x) => numeric_field(ctx, x, &f.path("field")),
        None => Some(NumericField::DurationMs),
    };
    let p = ctx
        .require(&f, "p", Some("e.g. `p: 99` for the 99th percentile".into()))
        .and_then(|x| {
            spans.p = Some(Spot {
                loc: ctx.loc(x),
                path: f.path("p"),
            });
            percentile_p(ctx, x, &f.path("p"))
        });
    let bound = match &field {
        Some(fld) => decode_bound(ctx, &f, |c, x, p| field_value(c, fld, x, p)),
        None => None,
    };
    let kind = match (&field, p, bound) {
        (Some(fld), Some(p), Some(bound)) => Some(ObjectiveKind::Percentile {
            field: fld.clone(),
            p,
            bound,
            confidence,
        }),
        _ => None,
    };
    (kind, field)
}

fn percentile_p(ctx: &mut Ctx<'_>, x: &SNode, path: &str) -> Option<f64> {
    let hint = match &x.value {
        Node::Str(s) if s.trim().ends_with('%') => Some(format!(
            "write the percentile as a plain number: `p: {}`",
            s.trim().trim_end_matches('%').trim()
        )),
        _ => None,
    };
    if hint.is_some() {
        ctx.type_error(x, path, "a percentile between 0 and 100 (e.g. `99`)", hint);
        return None;
    }
    let v = ctx.number(x, path, "a percentile between 0 and 100 (e.g. `99`)")?;
    if v <= 0.0 || v >= 100.0 {
        let loc = ctx.loc(x);
        ctx.error(
            loc,
            path,
            format!(
                "percentile must lie strictly between 0 and 100, found `{}`",
                fmt_num(v)
            ),
            Some("e.g. `p: 99` for the 99th percentile, `p: 50` for the median".into()),
        );
        return None;
    }
    Some(v)
}

fn decode_mean(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    confidence: Confidence,
) -> (Option<ObjectiveKind>, Option<NumericField>) {
    let Some(f) = ctx.fields(
        n,
        path,
        "a mapping like `{field: quality.score, min: 0.7}`",
        &format::MEAN,
    ) else {
        return (None, None);
    };
    let field = ctx
        .require(&f, "field", Some("e.g. `field: quality.score`".into()))
        .and_then(|x| numeric_field(ctx, x, &f.path("field")));
    let bound = match &field {
        Some(fld) => decode_bound(ctx, &f, |c, x, p| field_value(c, fld, x, p)),
        None => None,
    };
    let kind = match (&field, bound) {
        (Some(fld), Some(bound)) => Some(ObjectiveKind::Mean {
            field: fld.clone(),
            bound,
            confidence,
        }),
        _ => None,
    };
    (kind, field)
}

/// The valid forms of `confidence`, for diagnostics.
const CONFIDENCE_FORMS: &str =
    "`none`, or a level like `95%`, `0.95` or `99.9%` (at least 50%, below 100%)";

/// An objective's `confidence`: `none` or a fraction in `[50%, 100%)`.
fn decode_confidence(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Confidence> {
    let expected = format!("a confidence: {CONFIDENCE_FORMS}");
    match &n.value {
        Node::Str(s) if s.trim() == "none" => return Some(Confidence::PointEstimate),
        Node::Str(s) if s.trim().eq_ignore_ascii_case("none") => {
            let loc = ctx.loc(n);
            ctx.error(
                loc,
                path,
                format!("unknown confidence `{s}`"),
                Some("write `none` (lower case)".into()),
            );
            return None;
        }
        Node::Int(_) | Node::Float(_) => {
            let v = match n.value {
                Node::Int(i) => i as f64,
                Node::Float(f) => f,
                _ => unreachable!(),
            };
            if (0.5..1.0).contains(&v) {
                return Some(Confidence::Level(v));
            }
            let loc = ctx.loc(n);
            let shown = fmt_num(v);
            if (50.0..100.0).contains(&v) {
                ctx.error(
                    loc,
                    path,
                    format!("`{shown}` is ambiguous as a confidence"),
                    Some(format!("write `{shown}%` or `{}`", fmt_num(v / 100.0))),
                );
            } else {
                ctx.error(
                    loc,
                    path,
                    format!("confidence must be at least 50% and below 100%, found `{shown}`"),
                    Some(format!("valid: {CONFIDENCE_FORMS}")),
                );
            }
            return None;
        }
        // `95%`, and what `fraction` explains best (`"0.95"`, `150%`).
        Node::Str(s) if s.trim().trim_end_matches('%').trim().parse::<f64>().is_ok() => {}
        _ => {
            ctx.type_error(n, path, &expected, None);
            return None;
        }
    }
    let v = ctx.fraction(n, path)?;
    if !(0.5..1.0).contains(&v) {
        let loc = ctx.loc(n);
        let why = if v >= 1.0 {
            "100% confidence would need infinite evidence: nothing could ever breach"
        } else {
            "below 50% the bound lies on the unfavourable side of the estimate: chance alone would breach more often than the point estimate"
        };
        ctx.error(
            loc,
            path,
            format!(
                "confidence must be at least 50% and below 100%, found `{}`",
                pct(v)
            ),
            Some(format!("{why}; valid: {CONFIDENCE_FORMS}")),
        );
        return None;
    }
    Some(Confidence::Level(v))
}

fn bool_signal(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<BoolSignal> {
    let s = ctx.nonempty_string(n, path)?;
    match s.as_str() {
        "quality.resolved" => return Some(BoolSignal::Resolved),
        "quality.refusal" => return Some(BoolSignal::Refusal),
        "fallback.triggered" => return Some(BoolSignal::FallbackTriggered),
        _ => {}
    }
    if let Some(st) = s
        .strip_prefix("status:")
        .and_then(|x| Status::parse(x.trim()))
    {
        return Some(BoolSignal::Status(st));
    }
    let loc = ctx.loc(n);
    let hint = match did_you_mean(&s, BOOL_SIGNALS) {
        Some(m) => format!("did you mean `{m}`?"),
        None => format!("valid signals: {}", one_of(BOOL_SIGNALS)),
    };
    ctx.error(loc, path, format!("unknown signal `{s}`"), Some(hint));
    None
}

fn decode_rate(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    confidence: Confidence,
) -> Option<ObjectiveKind> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{of: quality.refusal, max: 3%}`",
        &format::RATE,
    )?;
    let of = ctx
        .require(&f, "of", Some("e.g. `of: quality.refusal`".into()))
        .and_then(|x| bool_signal(ctx, x, &f.path("of")));
    let bound = decode_bound(ctx, &f, |c, x, p| c.fraction(x, p));
    Some(ObjectiveKind::Rate {
        of: of?,
        bound: bound?,
        confidence,
    })
}

pub fn is_spend_shorthand(key: &str) -> bool {
    key.strip_prefix('p')
        .and_then(|k| k.strip_suffix("Usd"))
        .is_some_and(|p| p.parse::<f64>().is_ok_and(|v| v > 0.0 && v < 100.0))
}

fn decode_spend(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<SpendSpec> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{perSessionMaxUsd: 0.50}`",
        &format::SPEND,
    )?;
    let usd = |ctx: &mut Ctx<'_>, key: &str| -> Option<Option<f64>> {
        match f.get(key) {
            Some(x) => ctx
                .positive(x, &f.path(key), "an amount in USD like `0.05`", false)
                .map(Some),
            None => Some(None),
        }
    };
    let soft = usd(ctx, "perSessionSoftUsd");
    let max = usd(ctx, "perSessionMaxUsd");
    let budget = usd(ctx, "windowBudgetUsd");
    let mut percentile: Option<Option<(f64, f64)>> = Some(None);
    let shorthands: Vec<&(Spanned<String>, SNode)> = f
        .entries
        .iter()
        .filter(|(k, _)| is_spend_shorthand(&k.value))
        .collect();
    let long_form = f.get("percentile");
    if shorthands.len() + usize::from(long_form.is_some()) > 1 {
        let (k, _) = shorthands.last().copied()?;
        let loc = ctx.key_loc(k);
        ctx.error(
            loc,
            &f.path(&k.value),
            "only one spend percentile can be given",
            Some("keep one of `percentile: {p, maxUsd}` and `p<N>Usd`".into()),
        );
        percentile = None;
    } else if let Some((k, v)) = shorthands.first() {
        let p: f64 = k.value[1..k.value.len() - 3].parse().unwrap_or(99.0);
        percentile = ctx
            .positive(v, &f.path(&k.value), "an amount in USD like `0.05`", false)
            .map(|usd| Some((p, usd)));
    } else if let Some(x) = long_form {
        let pp = f.path("percentile");
        percentile = (|| {
            let pf = ctx.fields(
                x,
                &pp,
                "a mapping like `{p: 99, maxUsd: 0.05}`",
                &format::SPEND_PERCENTILE,
            )?;
            let p = ctx
                .require(&pf, "p", Some("e.g. `p: 99`".into()))
                .and_then(|y| percentile_p(ctx, y, &pf.path("p")));
            let m = ctx
                .require(&pf, "maxUsd", Some("e.g. `maxUsd: 0.05`".into()))
                .and_then(|y| {
                    ctx.positive(y, &pf.path("maxUsd"), "an amount in USD like `0.05`", false)
                });
            Some(Some((p?, m?)))
        })();
    }
    let (soft, max, budget, percentile) = (soft?, max?, budget?, percentile?);
    if soft.is_none() && max.is_none() && budget.is_none() && percentile.is_none() {
        ctx.error(
            f.loc,
            path,
            "`spend` needs at least one limit",
            Some(
                "give `perSessionSoftUsd`, `perSessionMaxUsd`, `p99Usd` or `windowBudgetUsd`"
                    .into(),
            ),
        );
        return None;
    }
    if let (Some(s), Some(m)) = (soft, max)
        && s >= m
    {
        let loc = f
            .get("perSessionSoftUsd")
            .map(|x| ctx.loc(x))
            .unwrap_or(f.loc);
        ctx.error(
            loc,
            &f.path("perSessionSoftUsd"),
            format!(
                "the soft limit ({}) must be below the hard cap `perSessionMaxUsd` ({})",
                fmt_num(s),
                fmt_num(m)
            ),
            None,
        );
        return None;
    }
    Some(SpendSpec {
        per_session_soft_usd: soft,
        per_session_max_usd: max,
        percentile,
        window_budget_usd: budget,
    })
}

fn decode_pii(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<PiiSpec> {
    if matches!(n.value, Node::Null) {
        return Some(PiiSpec {
            allow_pass_through_to: Vec::new(),
            rules: Vec::new(),
            types: Vec::new(),
        });
    }
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{allowPassThroughTo: [model]}`",
        &format::PII,
    )?;
    let allow = match f.get("allowPassThroughTo") {
        Some(x) => ctx.string_list(x, &f.path("allowPassThroughTo")),
        None => Some(Vec::new()),
    };
    let types = match f.get("types") {
        Some(x) => ctx.string_list(x, &f.path("types")),
        None => Some(Vec::new()),
    };
    let rules = match f.get("rules") {
        None => Some(Vec::new()),
        Some(x) => {
            let rp = f.path("rules");
            match &x.value {
                Node::Seq(items) => {
                    let mut out = Vec::new();
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        match decode_pii_rule(ctx, item, &index(&rp, i)) {
                            Some(r) => out.push(r),
                            None => ok = false,
                        }
                    }
                    ok.then_some(out)
                }
                _ => {
                    ctx.type_error(
                        x,
                        &rp,
                        "a list of rules like `{destination: \"tool:*\", allow: [redacted]}`",
                        None,
                    );
                    None
                }
            }
        }
    };
    Some(PiiSpec {
        allow_pass_through_to: allow?,
        rules: rules?,
        types: types?,
    })
}

fn decode_pii_rule(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<PiiRule> {
    let f = ctx.fields(
        n,
        path,
        "a rule like `{destination: log, allow: [redacted]}`",
        &format::PII_RULE,
    )?;
    let destination = ctx
        .require(&f, "destination", None)
        .and_then(|x| ctx.nonempty_string(x, &f.path("destination")));
    let allow = ctx
        .require(&f, "allow", Some("e.g. `allow: [redacted, masked]`".into()))
        .and_then(|x| {
            let items = ctx.enum_list(x, &f.path("allow"), "PII handling", PII_HANDLINGS)?;
            Some(items.into_iter().map(|i| PiiHandling::ALL[i]).collect())
        });
    Some(PiiRule {
        destination: destination?,
        allow: allow?,
    })
}

fn decode_tools(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<ToolsSpec> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{deny: [delete_account]}`",
        &format::TOOLS,
    )?;
    let deny = match f.get("deny") {
        Some(x) => ctx.string_list(x, &f.path("deny")),
        None => Some(Vec::new()),
    };
    let allow = match f.get("allow") {
        Some(x) => ctx.string_list(x, &f.path("allow")),
        None => Some(Vec::new()),
    };
    let max_calls = match f.get("maxCallsPerSession") {
        Some(x) => ctx
            .uint(x, &f.path("maxCallsPerSession"), 1)
            .map(|v| Some(v.min(u32::MAX as u64) as u32)),
        None => Some(None),
    };
    let max_consecutive = match f.get("maxConsecutiveCalls") {
        Some(x) => ctx
            .uint(x, &f.path("maxConsecutiveCalls"), 1)
            .map(|v| Some(v.min(u32::MAX as u64) as u32)),
        None => Some(None),
    };
    let (deny, allow, max_calls, max_consecutive) = (deny?, allow?, max_calls?, max_consecutive?);
    if deny.is_empty() && allow.is_empty() && max_calls.is_none() && max_consecutive.is_none() {
        ctx.error(
            f.loc,
            path,
            "`tools` needs at least one rule",
            Some("give `deny`, `allow`, `maxCallsPerSession` or `maxConsecutiveCalls`".into()),
        );
        return None;
    }
    if let Some(both) = deny.iter().find(|d| allow.contains(d)) {
        let loc = f.get("allow").map(|x| ctx.loc(x)).unwrap_or(f.loc);
        ctx.error(
            loc,
            &f.path("allow"),
            format!("tool `{both}` is both allowed and denied"),
            Some("remove it from one of the lists".into()),
        );
        return None;
    }
    Some(ToolsSpec {
        deny,
        allow,
        max_calls_per_session: max_calls,
        max_consecutive_calls: max_consecutive,
    })
}

fn decode_fallback(ctx: &mut Ctx<'_>, n: &SNode, path: &str, target: f64) -> Option<FallbackSpec> {
    if matches!(n.value, Node::Null) {
        return Some(FallbackSpec {
            required_on: vec![Status::Error, Status::Timeout],
            allowed_kinds: Vec::new(),
            target,
            max_rate: None,
        });
    }
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{requiredOn: [error, timeout]}`",
        &format::FALLBACK,
    )?;
    let required_on = match f.get("requiredOn") {
        Some(x) => {
            let v = status_list(ctx, x, &f.path("requiredOn"));
            if v.as_ref().is_some_and(Vec::is_empty) {
                let loc = ctx.loc(x);
                ctx.error(
                    loc,
                    &f.path("requiredOn"),
                    "must list at least one status",
                    Some("e.g. `[error, timeout]`".into()),
                );
                None
            } else {
                v
            }
        }
        None => Some(vec![Status::Error, Status::Timeout]),
    };
    let allowed_kinds = match f.get("allowedKinds") {
        Some(x) => ctx.string_list(x, &f.path("allowedKinds")),
        None => Some(Vec::new()),
    };
    let max_rate = match f.get("maxRate") {
        Some(x) => ctx.fraction(x, &f.path("maxRate")).map(Some),
        None => Some(None),
    };
    Some(FallbackSpec {
        required_on: required_on?,
        allowed_kinds: allowed_kinds?,
        target,
        max_rate: max_rate?,
    })
}

fn decode_drift(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<DriftSpec> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{features: [output_tokens, tool_mix]}`",
        &format::DRIFT,
    )?;
    let features = ctx
        .require(
            &f,
            "features",
            Some("e.g. `features: [output_tokens, tool_mix, quality.refusal]`".into()),
        )
        .and_then(|x| {
            let fp = f.path("features");
            let items = ctx.list(x, &fp, "a list of features")?;
            if items.is_empty() {
                let loc = ctx.loc(x);
                ctx.error(loc, &fp, "must list at least one feature", None);
                return None;
            }
            let mut out: Vec<String> = Vec::new();
            let mut ok = true;
            for (item, p) in items {
                let Some(s) = ctx.nonempty_string(item, &p) else {
                    ok = false;
                    continue;
                };
                let known = DRIFT_FEATURES.contains(&s.as_str())
                    || s.strip_prefix("attributes.").is_some_and(|a| !a.is_empty());
                let loc = ctx.loc(item);
                if !known {
                    let hint = match did_you_mean(&s, DRIFT_FEATURES) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!(
                            "valid features: {}, or `attributes.<name>`",
                            DRIFT_FEATURES
                                .iter()
                                .map(|f| format!("`{f}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    ctx.error(loc, &p, format!("unknown drift feature `{s}`"), Some(hint));
                    ok = false;
                } else if out.contains(&s) {
                    ctx.error(loc, &p, format!("feature `{s}` is listed twice"), None);
                    ok = false;
                } else {
                    out.push(s);
                }
            }
            ok.then_some(out)
        });
    let p_value = match f.get("pValue") {
        Some(x) => ctx.fraction(x, &f.path("pValue")).and_then(|v| {
            if v <= 0.0 || v >= 0.5 {
                let loc = ctx.loc(x);
                ctx.error(
                    loc,
                    &f.path("pValue"),
                    format!(
                        "pValue must lie strictly between 0 and 0.5, found `{}`",
                        fmt_num(v)
                    ),
                    Some("the usual significance levels are `0.05`, `0.01` or `0.001`".into()),
                );
                None
            } else {
                Some(v)
            }
        }),
        // Set from `falseAlarms` and the window step once the spec is decoded.
        None => Some(f64::NAN),
    };
    let false_alarms = match f.get("falseAlarms") {
        Some(x) => false_alarms(ctx, x, &f.path("falseAlarms")),
        None => Some(FalseAlarmBudget::DEFAULT),
    };
    let min_samples = match f.get("minSamples") {
        Some(x) => ctx.uint(x, &f.path("minSamples"), 2),
        None => Some(DEFAULT_DRIFT_MIN_SAMPLES),
    };
    let test = match f.get("test") {
        Some(x) => ctx
            .enum_value(x, &f.path("test"), "drift test", DRIFT_TESTS)
            .map(|i| DRIFT_TESTS[i].to_owned()),
        None => Some("auto".to_owned()),
    };
    let effect_size = match f.get("effectSize") {
        Some(x) => ctx.positive(x, &f.path("effectSize"), "an effect size like `0.1`", false),
        None => Some(DEFAULT_DRIFT_EFFECT_SIZE),
    };
    let (mut min_duration, mut relearn) = (Some(DEFAULT_BASELINE_MIN_DURATION_MS), Some(None));
    if let Some(b) = f.get("baseline") {
        let bp = f.path("baseline");
        if let Some(bf) = ctx.fields(
            b,
            &bp,
            "a mapping like `{minDuration: 6h, relearnEvery: 7d}`",
            &format::DRIFT_BASELINE,
        ) {
            if let Some(x) = bf.get("minDuration") {
                min_duration = ctx.duration(x, &bf.path("minDuration"), true);
            }
            if let Some(x) = bf.get("relearnEvery") {
                relearn = ctx.duration(x, &bf.path("relearnEvery"), false).map(Some);
            }
        }
    }
    let multivariate = match f.get("multivariate") {
        Some(x) => ctx.bool(x, &f.path("multivariate")),
        None => Some(true),
    };
    let sequential = match f.get("sequential") {
        Some(x) => ctx.bool(x, &f.path("sequential")),
        None => Some(true),
    };
    let ks_exact = match f.get("ks") {
        Some(x) => ctx
            .enum_value(x, &f.path("ks"), "KS distribution", KS_DISTRIBUTIONS)
            .map(|i| i == 1),
        None => Some(false),
    };
    Some(DriftSpec {
        features: features?,
        p_value_explicit: f.get("pValue").is_some(),
        p_value: p_value?,
        false_alarms: false_alarms?,
        min_samples: min_samples?,
        test: test?,
        effect_size: effect_size?,
        baseline_min_duration_ms: min_duration?,
        relearn_every_ms: relearn?,
        multivariate: multivariate?,
        sequential: sequential?,
        ks_exact: ks_exact?,
    })
}
