//! Schema-directed decoding of a YAML [`Node`] tree into the typed [`Spec`] model.
//!
//! The decoder walks the whole tree even after it has found a problem, so that one run reports
//! every unknown key (with a "did you mean"), wrong type, missing key, bad enum value, ambiguous
//! fraction, bad duration and duplicate name of a document. A document yields a [`Spec`] only
//! when it produced no error. The semantic lints (warnings) live in [`super::lint`]; this module
//! never does I/O and never parses YAML syntax itself.

use super::diagnostic::{Diagnostic, Level, did_you_mean, one_of};
use super::model::{
    Alerting, BoolSignal, Bound, BurnRateTier, Confidence, Dimension, DriftSpec, FallbackSpec,
    FalseAlarmBudget, KeyField, LatePolicy, NumericField, Objective, ObjectiveKind, PiiRule,
    PiiSpec, Selector, SessionFilter, Severity, Spec, SpendSpec, ToolsSpec, WindowSpec,
};
use super::yaml::{Node, fmt_float};
use crate::duration::{format_duration_ms, parse_duration_ms};
use crate::session::{PiiHandling, Status};
use serde_saphyr::Spanned;
use std::collections::HashMap;

type SNode = Spanned<Node>;

/// The only supported `apiVersion`.
pub const API_VERSION: &str = "slawatch/v1";
/// The only supported `kind`.
pub const KIND: &str = "AgentSLA";
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

const DIMENSIONS: &[&str] = &["availability", "behavior", "governance", "fallback"];
const SEVERITIES: &[&str] = &["info", "ticket", "page"];
const STATUSES: &[&str] = &["success", "error", "timeout", "abandoned"];
const KEY_FIELDS: &[&str] = &["prompt_version", "model", "provider", "attributes.<name>"];

const DOC_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_KEYS: &[&str] = &["name", "labels", "runbook"];
const SPEC_KEYS: &[&str] = &[
    "selector",
    "keyBy",
    "segmentBy",
    "maxSegments",
    "window",
    "minSessions",
    "period",
    "objectives",
    "alerting",
];
const SELECTOR_KEYS: &[&str] = &["agent", "attributes"];
const WINDOW_KEYS: &[&str] = &["size", "step", "allowedLateness", "latePolicy"];
const PERIOD_KEYS: &[&str] = &["rolling"];
const ALERTING_KEYS: &[&str] = &["burnRates", "notify", "stakeholders"];
const TIER_KEYS: &[&str] = &["name", "factor", "long", "short", "severity"];
const OBJECTIVE_COMMON_KEYS: &[&str] = &[
    "name",
    "dimension",
    "description",
    "runbook",
    "severity",
    "zeroTolerance",
    "target",
    "confidence",
];
const RATIO_KEYS: &[&str] = &["good"];
const GOOD_KEYS: &[&str] = &["status", "maxDuration"];
const LATENCY_KEYS: &[&str] = &["field", "threshold"];
const PERCENTILE_KEYS: &[&str] = &["field", "p", "max", "min"];
const MEAN_KEYS: &[&str] = &["field", "max", "min"];
const RATE_KEYS: &[&str] = &["of", "max", "min"];
const SPEND_KEYS: &[&str] = &[
    "perSessionSoftUsd",
    "perSessionMaxUsd",
    "percentile",
    "p99Usd",
    "windowBudgetUsd",
];
const SPEND_PERCENTILE_KEYS: &[&str] = &["p", "maxUsd"];
const PII_KEYS: &[&str] = &["allowPassThroughTo", "rules", "types"];
const PII_RULE_KEYS: &[&str] = &["destination", "allow"];
const TOOLS_KEYS: &[&str] = &["deny", "allow", "maxCallsPerSession", "maxConsecutiveCalls"];
const FALLBACK_KEYS: &[&str] = &["requiredOn", "allowedKinds", "maxRate"];
const DRIFT_KEYS: &[&str] = &[
    "features",
    "falseAlarms",
    "pValue",
    "minSamples",
    "test",
    "effectSize",
    "ks",
    "baseline",
    "multivariate",
    "sequential",
];
const DRIFT_BASELINE_KEYS: &[&str] = &["minDuration", "relearnEvery"];
/// Default `drift.baseline.minDuration`: a baseline learns for at least 6 hours.
pub const DEFAULT_BASELINE_MIN_DURATION_MS: i64 = 6 * 3_600_000;

/// A position in the file: 1-based line and column, and how many characters to underline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loc {
    /// 1-based line (0 = unknown).
    pub line: u32,
    /// 1-based column in characters (0 = unknown).
    pub col: u32,
    /// Characters to underline.
    pub width: u32,
}

/// A position together with the property path it belongs to (for lints).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spot {
    /// Where.
    pub loc: Loc,
    /// Property path, e.g. `spec.window.step`.
    pub path: String,
}

/// Where the parts of a decoded spec were written, for the lints.
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

/// Decoding state for one file: collects diagnostics.
pub struct Ctx<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    /// Everything found so far.
    pub diags: Vec<Diagnostic>,
    /// Line offset of the document being decoded (see [`super::yaml::Document`]).
    pub line_offset: u32,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Formats a ratio as a percentage: `0.995` → `99.5%`.
pub fn pct(v: f64) -> String {
    let s = format!("{:.4}", v * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A mapping being decoded.
struct Fields<'n> {
    entries: &'n [(Spanned<String>, SNode)],
    loc: Loc,
    path: String,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n SNode> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }

    fn key(&self, key: &str) -> Option<&'n Spanned<String>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(k, _)| k)
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// Where a key that is unknown in one mapping belongs instead (for hints).
fn home_of(key: &str, here: &str) -> Option<String> {
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
    if here == "spec" && METADATA_KEYS.contains(&key) {
        return Some(format!("`{key}` belongs under `metadata`, not `spec`"));
    }
    if here == "document" && (SPEC_KEYS.contains(&key) || key == "objectives") {
        return Some(format!("`{key}` belongs under `spec`"));
    }
    if here == "document" && METADATA_KEYS.contains(&key) {
        return Some(format!("`{key}` belongs under `metadata`"));
    }
    None
}

impl<'a> Ctx<'a> {
    /// A context for `src`, named `file` in messages.
    pub fn new(src: &'a str, file: &'a str) -> Self {
        Ctx {
            file,
            lines: src.lines().collect(),
            diags: Vec::new(),
            line_offset: 0,
        }
    }

    /// How many errors were reported so far.
    pub fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    /// Records a diagnostic at `loc`.
    pub fn emit(
        &mut self,
        severity: Level,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let source_line = if loc.line > 0 {
            self.lines
                .get(loc.line as usize - 1)
                .map(|s| (*s).to_owned())
        } else {
            None
        };
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line: loc.line,
            col: loc.col,
            path: path.to_owned(),
            message: message.into(),
            hint,
            source_line,
            width: loc.width.max(1),
        });
    }

    /// Records an error.
    pub fn error(
        &mut self,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.emit(Level::Error, loc, path, message, hint);
    }

    /// Records a warning.
    pub fn warn(&mut self, loc: Loc, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.emit(Level::Warning, loc, path, message, hint);
    }

    fn loc_of(&self, l: &serde_saphyr::Location, width: u64) -> Loc {
        if l.line() == 0 {
            return Loc::default();
        }
        Loc {
            line: clamp(l.line()) + self.line_offset,
            col: clamp(l.column()),
            width: clamp(width).max(1),
        }
    }

    /// The position of a node (the whole scalar is underlined).
    pub fn loc(&self, n: &SNode) -> Loc {
        let l = if n.referenced.line() > 0 {
            &n.referenced
        } else {
            &n.defined
        };
        let width = if n.value.is_scalar() {
            l.span().len()
        } else {
            1
        };
        self.loc_of(l, width)
    }

    pub fn key_loc(&self, k: &Spanned<String>) -> Loc {
        self.loc_of(&k.referenced, k.referenced.span().len())
    }

    pub fn type_error(&mut self, n: &SNode, path: &str, expected: &str, hint: Option<String>) {
        let hint = hint.or_else(|| match &n.value {
            Node::Str(s) if s.trim().parse::<f64>().is_ok() => {
                Some(format!("remove the quotes: `{}`", s.trim()))
            }
            Node::Seq(items) if items.len() == 1 && items[0].value.is_scalar() => {
                let text = match &items[0].value {
                    Node::Str(s) => s.clone(),
                    Node::Int(i) => i.to_string(),
                    Node::Float(f) => fmt_float(*f),
                    Node::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                Some(format!("write the value without brackets: `{text}`"))
            }
            _ => None,
        });
        let msg = format!("expected {expected}, found {}", n.value.describe());
        let loc = self.loc(n);
        self.error(loc, path, msg, hint);
    }

    /// `node` as a mapping, or a type error.
    fn as_map<'n>(&mut self, n: &'n SNode, path: &str, expected: &str) -> Option<Fields<'n>> {
        match &n.value {
            Node::Map(entries) => Some(Fields {
                entries,
                loc: self.loc(n),
                path: path.to_owned(),
            }),
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    /// Reports unknown and duplicate keys of `f`. `here` names the mapping for hints.
    fn check_keys(&mut self, f: &Fields<'_>, known: &[&str], here: &str, extra: fn(&str) -> bool) {
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (k, _) in f.entries {
            let path = f.path(&k.value);
            let loc = self.key_loc(k);
            if let Some(first) = seen.get(k.value.as_str()) {
                self.error(
                    loc,
                    &path,
                    format!("duplicate key `{}`", k.value),
                    Some(format!(
                        "it was already given on line {first}; keep one of them"
                    )),
                );
                continue;
            }
            seen.insert(&k.value, loc.line);
            if known.contains(&k.value.as_str()) || extra(&k.value) {
                continue;
            }
            let hint = if let Some(s) = did_you_mean(&k.value, known) {
                format!("did you mean `{s}`?")
            } else if let Some(h) = home_of(&k.value, here) {
                h
            } else {
                format!(
                    "valid keys here: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.error(loc, &path, format!("unknown key `{}`", k.value), Some(hint));
        }
    }

    fn fields<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
        known: &[&str],
        here: &str,
    ) -> Option<Fields<'n>> {
        let f = self.as_map(n, path, expected)?;
        self.check_keys(&f, known, here, |_| false);
        Some(f)
    }

    fn require<'n>(
        &mut self,
        f: &Fields<'n>,
        key: &str,
        hint: Option<String>,
    ) -> Option<&'n SNode> {
        let v = f.get(key);
        if v.is_none() {
            self.error(
                f.loc,
                &f.path(key),
                format!("missing required key `{key}`"),
                hint,
            );
        }
        v
    }

    fn string(&mut self, n: &SNode, path: &str) -> Option<String> {
        match &n.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(_) | Node::Float(_) | Node::Bool(_) => {
                self.type_error(
                    n,
                    path,
                    "a string",
                    Some("quote it to use it as text".into()),
                );
                None
            }
            _ => {
                self.type_error(n, path, "a string", None);
                None
            }
        }
    }

    fn nonempty_string(&mut self, n: &SNode, path: &str) -> Option<String> {
        let s = self.string(n, path)?;
        if s.trim().is_empty() {
            let loc = self.loc(n);
            self.error(loc, path, "must not be empty", None);
            return None;
        }
        Some(s)
    }

    /// A scalar rendered as a string (labels and attribute values).
    fn scalar_text(&mut self, n: &SNode, path: &str) -> Option<String> {
        match &n.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(fmt_float(*f)),
            Node::Bool(b) => Some(b.to_string()),
            _ => {
                self.type_error(n, path, "a string", None);
                None
            }
        }
    }

    /// A list of items, also accepting a single scalar as a one-item list.
    fn list<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
    ) -> Option<Vec<(&'n SNode, String)>> {
        match &n.value {
            Node::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (item, index(path, i)))
                    .collect(),
            ),
            Node::Map(_) | Node::Null => {
                self.type_error(n, path, expected, None);
                None
            }
            _ => Some(vec![(n, path.to_owned())]),
        }
    }

    fn string_list(&mut self, n: &SNode, path: &str) -> Option<Vec<String>> {
        let items = self.list(n, path, "a list of strings")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (item, p) in items {
            match self.nonempty_string(item, &p) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub fn bool(&mut self, n: &SNode, path: &str) -> Option<bool> {
        match &n.value {
            Node::Bool(b) => Some(*b),
            Node::Str(s) => {
                let hint = match s.to_ascii_lowercase().as_str() {
                    "yes" | "on" | "y" => Some("write `true`".to_owned()),
                    "no" | "off" | "n" => Some("write `false`".to_owned()),
                    _ => Some("write `true` or `false`".to_owned()),
                };
                self.type_error(n, path, "`true` or `false`", hint);
                None
            }
            _ => {
                self.type_error(n, path, "`true` or `false`", None);
                None
            }
        }
    }

    fn number(&mut self, n: &SNode, path: &str, expected: &str) -> Option<f64> {
        match &n.value {
            Node::Int(i) => Some(*i as f64),
            Node::Float(f) => Some(*f),
            Node::Str(s) if s.trim().ends_with('%') => {
                self.type_error(
                    n,
                    path,
                    expected,
                    Some("percentages are only for fractions; write a plain number".into()),
                );
                None
            }
            Node::Str(s) if s.trim().starts_with('$') => {
                let rest = s.trim().trim_start_matches('$');
                self.type_error(
                    n,
                    path,
                    expected,
                    Some(format!(
                        "amounts are in USD without a currency sign: `{rest}`"
                    )),
                );
                None
            }
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    /// A number that must be `> 0` (or `>= 0` when `allow_zero`).
    fn positive(&mut self, n: &SNode, path: &str, expected: &str, allow_zero: bool) -> Option<f64> {
        let v = self.number(n, path, expected)?;
        let bad = if allow_zero { v < 0.0 } else { v <= 0.0 };
        if bad {
            let loc = self.loc(n);
            let must = if allow_zero {
                "0 or more"
            } else {
                "more than 0"
            };
            self.error(
                loc,
                path,
                format!("must be {must}, found `{}`", fmt_num(v)),
                None,
            );
            return None;
        }
        Some(v)
    }

    fn uint(&mut self, n: &SNode, path: &str, min: u64) -> Option<u64> {
        let expected = if min == 0 {
            "a whole number"
        } else {
            "a positive whole number"
        };
        let v = match &n.value {
            Node::Int(i) => *i as f64,
            Node::Float(f) if f.fract() == 0.0 => *f,
            _ => {
                self.type_error(n, path, expected, None);
                return None;
            }
        };
        let problem = if v < min as f64 {
            format!("must be at least {min}, found `{}`", fmt_num(v))
        } else if v > 1e12 {
            format!("`{}` is too large", fmt_num(v))
        } else {
            return Some(v as u64);
        };
        let loc = self.loc(n);
        self.error(loc, path, problem, None);
        None
    }

    /// A fraction: `99%`, or a number in `[0, 1]`. A bare number above 1 is ambiguous.
    fn fraction(&mut self, n: &SNode, path: &str) -> Option<f64> {
        let loc = self.loc(n);
        let expected = "a fraction like `99%` or `0.99`";
        let out_of_range = |ctx: &mut Self, shown: &str| {
            ctx.error(
                loc,
                path,
                format!("`{shown}` is not a fraction: it must lie between 0% and 100%"),
                None,
            );
            None
        };
        match &n.value {
            Node::Int(1) => {
                self.error(
                    loc,
                    path,
                    "`1` is ambiguous as a fraction",
                    Some("write `100%` (or `1.0`) for all, or `1%` for one percent".into()),
                );
                None
            }
            Node::Int(i) => {
                let v = *i as f64;
                if (0.0..=1.0).contains(&v) {
                    Some(v)
                } else {
                    self.ambiguous(loc, path, v, &i.to_string())
                }
            }
            Node::Float(v) => {
                if (0.0..=1.0).contains(v) {
                    Some(*v)
                } else {
                    self.ambiguous(loc, path, *v, &fmt_float(*v))
                }
            }
            Node::Str(s) => {
                let t = s.trim();
                if let Some(num) = t.strip_suffix('%') {
                    match num.trim().parse::<f64>() {
                        Ok(v) if (0.0..=100.0).contains(&v) => Some(v / 100.0),
                        Ok(_) => out_of_range(self, t),
                        Err(_) => {
                            self.type_error(n, path, expected, None);
                            None
                        }
                    }
                } else if let Ok(v) = t.parse::<f64>() {
                    let hint = if (0.0..=1.0).contains(&v) {
                        format!("write `{t}` without quotes, or `{}`", pct(v))
                    } else if v <= 100.0 {
                        format!("write `{t}%` or `{}`", fmt_num(v / 100.0))
                    } else {
                        "write a percentage like `99%` or a number between 0 and 1".to_owned()
                    };
                    self.error(
                        loc,
                        path,
                        format!("string `{s:?}` is ambiguous as a fraction"),
                        Some(hint),
                    );
                    None
                } else {
                    self.type_error(n, path, expected, None);
                    None
                }
            }
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    fn ambiguous(&mut self, loc: Loc, path: &str, v: f64, shown: &str) -> Option<f64> {
        if v > 1.0 && v <= 100.0 {
            self.error(
                loc,
                path,
                format!("`{shown}` is ambiguous as a fraction"),
                Some(format!("write `{shown}%` or `{}`", fmt_num(v / 100.0))),
            );
        } else {
            self.error(
                loc,
                path,
                format!("`{shown}` is not a fraction: it must lie between 0% and 100%"),
                Some("write a percentage like `99%` or a number between 0 and 1".into()),
            );
        }
        None
    }

    /// A duration string (`90s`, `15m`, `1h30m`, `28d`) in ms.
    /// `N per DURATION` (e.g. `1 per 30d`, `0.5 per 7d`).
    pub fn false_alarms(&mut self, n: &SNode, path: &str) -> Option<FalseAlarmBudget> {
        let loc = self.loc(n);
        let expected = "a budget like `1 per 30d` (false tickets per key per period)";
        let Node::Str(s) = &n.value else {
            self.type_error(n, path, expected, None);
            return None;
        };
        let parsed = s.split_once(" per ").and_then(|(count, period)| {
            let tickets: f64 = count.trim().parse().ok()?;
            let per_ms = parse_duration_ms(period.trim()).ok()?;
            (tickets.is_finite() && tickets > 0.0 && per_ms > 0)
                .then_some(FalseAlarmBudget { tickets, per_ms })
        });
        if parsed.is_none() {
            self.error(
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

    pub fn duration(&mut self, n: &SNode, path: &str, allow_zero: bool) -> Option<i64> {
        let loc = self.loc(n);
        let expected = "a duration like `90s`, `15m`, `1h` or `28d`";
        let ms = match &n.value {
            Node::Str(s) => match parse_duration_ms(s.trim()) {
                Ok(ms) => ms,
                Err(_) => {
                    self.error(
                        loc,
                        path,
                        format!("invalid duration `{s}`"),
                        Some(duration_hint(s)),
                    );
                    return None;
                }
            },
            Node::Int(i) => {
                let hint = if *i > 0 && i % 60 == 0 {
                    format!(
                        "durations need a unit: `{i}s` is {}, `{i}ms` is {}",
                        format_duration_ms(i * 1000),
                        format_duration_ms(*i)
                    )
                } else {
                    format!("durations need a unit, e.g. `{i}s` or `{i}ms`")
                };
                self.type_error(n, path, expected, Some(hint));
                return None;
            }
            _ => {
                self.type_error(n, path, expected, None);
                return None;
            }
        };
        if ms < 0 || (ms == 0 && !allow_zero) {
            self.error(loc, path, "must be longer than 0", None);
            return None;
        }
        Some(ms)
    }

    pub fn enum_value(
        &mut self,
        n: &SNode,
        path: &str,
        what: &str,
        valid: &[&str],
    ) -> Option<usize> {
        let s = match &n.value {
            Node::Str(s) => s.as_str(),
            _ => {
                let expected = format!("a {what}: {}", one_of(valid));
                self.type_error(n, path, &expected, None);
                return None;
            }
        };
        if let Some(i) = valid.iter().position(|v| *v == s) {
            return Some(i);
        }
        let hint = match did_you_mean(s, valid) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("valid values: {}", one_of(valid)),
        };
        let loc = self.loc(n);
        self.error(loc, path, format!("unknown {what} `{s}`"), Some(hint));
        None
    }

    fn status(&mut self, n: &SNode, path: &str) -> Option<Status> {
        let i = self.enum_value(n, path, "status", STATUSES)?;
        Status::parse(STATUSES[i])
    }

    fn status_list(&mut self, n: &SNode, path: &str) -> Option<Vec<Status>> {
        let items = self.list(n, path, "a list of statuses")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (item, p) in items {
            match self.status(item, &p) {
                Some(s) if out.contains(&s) => {
                    let loc = self.loc(item);
                    self.error(loc, &p, format!("`{}` is listed twice", s.as_str()), None);
                    ok = false;
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn severity(&mut self, n: &SNode, path: &str) -> Option<Severity> {
        let i = self.enum_value(n, path, "severity", SEVERITIES)?;
        Some([Severity::Info, Severity::Ticket, Severity::Page][i])
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn duration_hint(s: &str) -> String {
    let t = s.trim();
    if t.starts_with('-') {
        return "durations cannot be negative".to_owned();
    }
    let digits: String = t
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit: String = t[digits.len()..].trim().to_owned();
    let known = [
        ("ms", "ms"),
        ("msec", "ms"),
        ("millis", "ms"),
        ("sec", "s"),
        ("secs", "s"),
        ("second", "s"),
        ("seconds", "s"),
        ("min", "m"),
        ("mins", "m"),
        ("minute", "m"),
        ("minutes", "m"),
        ("hr", "h"),
        ("hrs", "h"),
        ("hour", "h"),
        ("hours", "h"),
        ("day", "d"),
        ("days", "d"),
        ("wk", "w"),
        ("week", "w"),
        ("weeks", "w"),
        ("H", "h"),
        ("S", "s"),
        ("D", "d"),
    ];
    if !digits.is_empty()
        && let Some((_, u)) = known
            .iter()
            .find(|(k, _)| *k == unit)
            .or_else(|| known.iter().find(|(k, _)| k.eq_ignore_ascii_case(&unit)))
    {
        return format!("write `{digits}{u}`");
    }
    "write a number and a unit (`ms`, `s`, `m`, `h`, `d`, `w`), e.g. `250ms`, `90s`, `15m`, `1h30m` or `28d`".to_owned()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A hint with a valid spelling of an invalid name, when one is obvious.
fn name_hint(s: &str) -> Option<String> {
    let slug = slug(s);
    (s.is_ascii() && !slug.is_empty()).then(|| format!("e.g. `{slug}`"))
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Decodes one document; returns `None` (with the reasons in `ctx.diags`) if it is invalid.
pub fn decode_document(ctx: &mut Ctx<'_>, root: &SNode) -> Option<Decoded> {
    let errors_before = ctx.error_count();
    let doc = ctx.as_map(
        root,
        "",
        "an AgentSLA document (a mapping with `apiVersion`, `kind`, `metadata` and `spec`)",
    )?;

    // apiVersion and kind first: a document of another kind is not checked any further.
    if let (Some(an), Some(kn)) = (doc.get("apiVersion"), doc.get("kind"))
        && let (Node::Str(a), Node::Str(k)) = (&an.value, &kn.value)
        && a != API_VERSION
        && k != KIND
        && !a.starts_with("slawatch")
    {
        let loc = ctx.loc(an);
        ctx.error(
            loc,
            "",
            format!("not a slawatch spec: apiVersion `{a}`, kind `{k}`"),
            Some(format!(
                "slawatch reads documents with `apiVersion: {API_VERSION}` and `kind: {KIND}`; keep other manifests out of the spec files"
            )),
        );
        return None;
    }
    let mut foreign = false;
    match doc.get("apiVersion") {
        None => {
            ctx.error(
                doc.loc,
                "apiVersion",
                "missing required key `apiVersion`",
                Some(format!("add `apiVersion: {API_VERSION}`")),
            );
            foreign = true;
        }
        Some(n) => {
            if let Some(v) = ctx.string(n, "apiVersion")
                && v != API_VERSION
            {
                let loc = ctx.loc(n);
                ctx.error(
                    loc,
                    "apiVersion",
                    format!("unsupported apiVersion `{v}`"),
                    Some(format!("the supported apiVersion is `{API_VERSION}`")),
                );
                foreign = true;
            }
        }
    }
    match doc.get("kind") {
        None => {
            ctx.error(
                doc.loc,
                "kind",
                "missing required key `kind`",
                Some(format!("add `kind: {KIND}`")),
            );
            foreign = true;
        }
        Some(n) => {
            if let Some(v) = ctx.string(n, "kind")
                && v != KIND
            {
                let loc = ctx.loc(n);
                let hint = if did_you_mean(&v, &[KIND]).is_some() {
                    format!("did you mean `{KIND}`? It is the only supported kind")
                } else {
                    format!("`{API_VERSION}` has only `kind: {KIND}`")
                };
                ctx.error(loc, "kind", format!("unsupported kind `{v}`"), Some(hint));
                foreign = true;
            }
        }
    }
    if foreign {
        return None;
    }
    ctx.check_keys(&doc, DOC_KEYS, "document", |_| false);

    let mut spans = SpecSpans::default();
    let mut name = String::new();
    let mut labels = Vec::new();
    let mut runbook = None;
    spans.name = Spot {
        loc: doc.loc,
        path: "metadata.name".into(),
    };
    if let Some(m) = ctx.require(
        &doc,
        "metadata",
        Some("add `metadata: {name: my-agent-sla}`".into()),
    ) && let Some(meta) = ctx.fields(m, "metadata", "a mapping", METADATA_KEYS, "metadata")
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
            if let Some(s) = ctx.nonempty_string(n, "metadata.name") {
                if valid_name(&s) {
                    name = s;
                } else {
                    let loc = ctx.loc(n);
                    ctx.error(
                        loc,
                        "metadata.name",
                        format!("invalid name `{s}`: use letters, digits, `-`, `_` and `.` only"),
                        name_hint(&s),
                    );
                }
            }
        }
        if let Some(n) = meta.get("labels") {
            labels = decode_string_map(ctx, n, "metadata.labels");
        }
        if let Some(n) = meta.get("runbook") {
            runbook = ctx.nonempty_string(n, "metadata.runbook");
        }
    }

    let spec_node = ctx.require(&doc, "spec", None)?;
    let sf = ctx.fields(spec_node, "spec", "a mapping", SPEC_KEYS, "spec")?;

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
                    let pf = ctx.fields(n, "spec.period", "a mapping", PERIOD_KEYS, "period")?;
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

fn decode_string_map(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Vec<(String, String)> {
    if !matches!(n.value, Node::Map(_)) {
        ctx.type_error(
            n,
            path,
            "a mapping of names to values",
            Some("e.g. `{team: cx-ai}`".into()),
        );
        return Vec::new();
    }
    let Some(f) = ctx.as_map(n, path, "a mapping of names to values") else {
        return Vec::new();
    };
    ctx.check_keys(&f, &[], "", |_| true);
    let mut out = Vec::new();
    for (k, v) in f.entries {
        if let Some(s) = ctx.scalar_text(v, &f.path(&k.value)) {
            out.push((k.value.clone(), s));
        }
    }
    out
}

fn decode_selector(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<Selector> {
    let f = ctx.fields(
        n,
        path,
        "a mapping like `{agent: support-bot}`",
        SELECTOR_KEYS,
        "selector",
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
        Some(a) => decode_string_map(ctx, a, &f.path("attributes")),
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
    } else if let Some(m) = did_you_mean(&s, &["prompt_version", "model", "provider"]) {
        format!("did you mean `{m}`?")
    } else if !s.contains('.') {
        format!("custom attributes are written `attributes.{s}`")
    } else {
        format!("valid fields: {}", one_of(KEY_FIELDS))
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
        WINDOW_KEYS,
        "window",
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
            .enum_value(
                s,
                &f.path("latePolicy"),
                "late policy",
                &["deadLetter", "drop"],
            )
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
    let f = ctx.fields(n, "spec.alerting", "a mapping", ALERTING_KEYS, "alerting")?;
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
            ctx.enum_value(n, path, "burn-rate preset", &["sre-workbook"])?;
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
            TIER_KEYS,
            "tier",
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
            Some(x) => ctx.severity(x, &f.path("severity")),
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

fn dimension_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Availability => "availability",
        Dimension::Behavior => "behavior",
        Dimension::Governance => "governance",
        Dimension::Fallback => "fallback",
    }
}

fn decode_objective(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    spans: &mut ObjectiveSpans,
    names: &mut HashMap<String, u32>,
) -> Option<Objective> {
    let f = ctx.as_map(
        n,
        path,
        "an objective (a mapping with `name` and one check)",
    )?;
    let known: Vec<&str> = OBJECTIVE_COMMON_KEYS
        .iter()
        .chain(OBJECTIVE_KINDS)
        .copied()
        .collect();
    let errors_before = ctx.error_count();
    ctx.check_keys(&f, &known, "objective", |_| false);

    spans.name = Spot {
        loc: f.loc,
        path: f.path("name"),
    };
    let name = match ctx.require(&f, "name", Some("e.g. `name: success-rate`".into())) {
        Some(x) => {
            spans.name.loc = ctx.loc(x);
            let s = ctx.nonempty_string(x, &f.path("name"));
            match s {
                Some(s) if !valid_name(&s) => {
                    let loc = ctx.loc(x);
                    ctx.error(
                        loc,
                        &f.path("name"),
                        format!("invalid objective name `{s}`: use letters, digits, `-`, `_` and `.` only"),
                        name_hint(&s),
                    );
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
        !known.contains(&k.value.as_str()) && did_you_mean(&k.value, OBJECTIVE_KINDS).is_some()
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
    let severity = match f.get("severity") {
        Some(x) => ctx.severity(x, &f.path("severity")),
        None => Some(Severity::Ticket),
    };
    let zero_tolerance = match f.get("zeroTolerance") {
        Some(x) => ctx.bool(x, &f.path("zeroTolerance")),
        None => Some(false),
    };

    let dimension_node = f.get("dimension");
    let dimension = dimension_node.and_then(|x| {
        ctx.enum_value(x, &f.path("dimension"), "dimension", DIMENSIONS)
            .map(|i| {
                [
                    Dimension::Availability,
                    Dimension::Behavior,
                    Dimension::Governance,
                    Dimension::Fallback,
                ][i]
            })
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
                    let names: Vec<&str> = allowed.iter().map(|d| dimension_name(*d)).collect();
                    ctx.error(
                        loc,
                        &f.path("dimension"),
                        format!(
                            "a `{kind_key}` objective cannot be in dimension `{}`",
                            dimension_name(d)
                        ),
                        Some(format!(
                            "use {} (or leave `dimension` out: it defaults to `{}`)",
                            one_of(&names),
                            dimension_name(default_dimension(&kind_key, field.as_ref()))
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
        severity: severity?,
        zero_tolerance: zero_tolerance?,
        kind: kind?,
    })
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
        RATIO_KEYS,
        "ratio",
    )?;
    let g = ctx.require(&f, "good", Some("e.g. `good: {status: [success]}`".into()))?;
    let gp = f.path("good");
    let gf = ctx.fields(
        g,
        &gp,
        "a session filter like `{status: [success]}`",
        GOOD_KEYS,
        "good",
    )?;
    let status = match gf.get("status") {
        Some(x) => ctx.status_list(x, &gf.path("status")),
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
        LATENCY_KEYS,
        "latency",
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
        PERCENTILE_KEYS,
        "percentile",
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
        MEAN_KEYS,
        "mean",
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
        RATE_KEYS,
        "rate",
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

fn is_spend_shorthand(key: &str) -> bool {
    key.strip_prefix('p')
        .and_then(|k| k.strip_suffix("Usd"))
        .is_some_and(|p| p.parse::<f64>().is_ok_and(|v| v > 0.0 && v < 100.0))
}

fn decode_spend(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<SpendSpec> {
    let f = ctx.as_map(n, path, "a mapping like `{perSessionMaxUsd: 0.50}`")?;
    ctx.check_keys(&f, SPEND_KEYS, "spend", is_spend_shorthand);
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
                SPEND_PERCENTILE_KEYS,
                "spend percentile",
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
        PII_KEYS,
        "pii",
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
        PII_RULE_KEYS,
        "rule",
    )?;
    let destination = ctx
        .require(&f, "destination", None)
        .and_then(|x| ctx.nonempty_string(x, &f.path("destination")));
    let allow = ctx
        .require(&f, "allow", Some("e.g. `allow: [redacted, masked]`".into()))
        .and_then(|x| {
            let handlings: Vec<&str> = PiiHandling::ALL.iter().map(|h| h.as_str()).collect();
            let items = ctx.list(x, &f.path("allow"), "a list of handlings")?;
            let mut out = Vec::new();
            let mut ok = true;
            for (item, p) in items {
                match ctx.enum_value(item, &p, "PII handling", &handlings) {
                    Some(i) => out.push(PiiHandling::ALL[i]),
                    None => ok = false,
                }
            }
            ok.then_some(out)
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
        TOOLS_KEYS,
        "tools",
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
        FALLBACK_KEYS,
        "fallback",
    )?;
    let required_on = match f.get("requiredOn") {
        Some(x) => {
            let v = ctx.status_list(x, &f.path("requiredOn"));
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
        DRIFT_KEYS,
        "drift",
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
        Some(x) => ctx.false_alarms(x, &f.path("falseAlarms")),
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
            DRIFT_BASELINE_KEYS,
            "drift.baseline",
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
            .enum_value(x, &f.path("ks"), "KS distribution", &["auto", "exact"])
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
