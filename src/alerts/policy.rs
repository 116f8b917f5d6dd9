//! The notification policy (`kind: NotificationPolicy`): who gets which alert mail, when, and
//! what is held back — receivers, routes, group timings, inhibition rules and the two
//! audiences' switches — and label matchers shared with silences.
//!
//! Policy files are validated like SLA specs: YAML is read into the span-carrying node tree of
//! [`crate::spec::yaml`] and decoded by code that collects every problem at once, reported as
//! [`Diagnostic`]s (`file:line:col`, property path, expected vs found, did-you-mean). A
//! [`Policy`] therefore always holds a valid policy. The format reference is
//! `policies/README.md`; the embedded default is `policies/notification.yaml`.
//!
//! Pure: only [`load_policy`] reads a file. Nothing here sends mail or reads the clock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::glob::glob_match;
use crate::spec::decode::{Ctx, Loc};
use crate::spec::diagnostic::{Diagnostic, did_you_mean, has_errors, one_of};
use crate::spec::model::{Dimension, Severity, Spec};
use crate::spec::yaml::{Node, parse_documents};

type SNode = Spanned<Node>;

/// The only supported `apiVersion`.
pub const API_VERSION: &str = "slawatch/v1";
/// The `kind` of a policy document.
pub const KIND: &str = "NotificationPolicy";
/// The default policy, embedded from `policies/notification.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../policies/notification.yaml");

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Who reads a mail.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Engineers on call: what fired, numbers, exemplars, runbook.
    #[default]
    Oncall,
    /// Non-technical stakeholders: plain-language breach notices.
    Stakeholder,
}

impl Audience {
    /// `oncall` or `stakeholder`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Oncall => "oncall",
            Audience::Stakeholder => "stakeholder",
        }
    }
}

/// Group timings and incident lifecycle durations, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// `groupWait`: wait before the first mail of a group, to collect its other segments.
    pub group_wait_ms: i64,
    /// `groupInterval`: minimum time between mails announcing new incidents of a group.
    pub group_interval_ms: i64,
    /// `repeatInterval`: re-send a still-firing group after this long.
    pub repeat_interval_ms: i64,
    /// `keepFiringFor`: an incident resolves only after this long without a breach (0: the
    /// first clean window resolves it).
    pub keep_firing_for_ms: i64,
    /// `cooldown`: a group must stay clean this long before its resolved notice is sent and
    /// its thread closed; a re-breach inside it continues the same thread.
    pub cooldown_ms: i64,
    /// `noDataTimeout`: an incident whose key has had no session for this long resolves (its
    /// prompt version was replaced, its model retired, its traffic moved). `None`: per spec,
    /// [`DEFAULT_NO_DATA_WINDOWS`] × its window size. Never shorter than the window size.
    #[serde(default)]
    pub no_data_timeout_ms: Option<i64>,
}

/// Without `noDataTimeout`, a key is considered gone after this many window lengths without a
/// session: three whole windows with nothing to judge, so a sparse key that skips one window
/// is not mistaken for a replaced one.
pub const DEFAULT_NO_DATA_WINDOWS: i64 = 3;

impl Timing {
    /// How long a key of a spec with windows of `window_size_ms` may go without sessions
    /// before its incidents resolve: `noDataTimeout`, or [`DEFAULT_NO_DATA_WINDOWS`] windows;
    /// never shorter than one window, whose verdicts may still arrive until it closes.
    pub fn no_data_timeout_for(&self, window_size_ms: i64) -> i64 {
        self.no_data_timeout_ms
            .unwrap_or(DEFAULT_NO_DATA_WINDOWS * window_size_ms)
            .max(window_size_ms)
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            group_wait_ms: 30_000,
            group_interval_ms: 5 * MINUTE,
            repeat_interval_ms: 4 * HOUR,
            keep_firing_for_ms: 0,
            cooldown_ms: HOUR,
            no_data_timeout_ms: None,
        }
    }
}

/// How a [`Matcher`] compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// `name=value`
    Equal,
    /// `name!=value`
    NotEqual,
    /// `name~=pattern`: `*` matches any run of characters.
    Glob,
}

/// One label matcher: `spec=support-bot-prod`, `key~=*sp-v1*`, `segment!=channel=web`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// Label name.
    pub label: String,
    /// How to compare.
    pub op: MatchOp,
    /// Value or pattern.
    pub value: String,
}

impl Matcher {
    /// Whether the labels satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.label).unwrap_or("");
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Glob => glob_match(&self.value, v),
        }
    }

    /// Parses `a=b,c~=d*,e!=f` (commas inside values are not supported).
    pub fn parse_list(text: &str) -> Result<Vec<Matcher>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (label, op, value) = if let Some((l, v)) = part.split_once("~=") {
                (l, MatchOp::Glob, v)
            } else if let Some((l, v)) = part.split_once("!=") {
                (l, MatchOp::NotEqual, v)
            } else if let Some((l, v)) = part.split_once('=') {
                (l, MatchOp::Equal, v)
            } else {
                return Err(format!(
                    "`{part}` is not a matcher: write `label=value`, `label!=value` or \
                     `label~=pattern*`"
                ));
            };
            let label = label.trim();
            if label.is_empty()
                || !label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(format!("`{label}` is not a label name"));
            }
            out.push(Matcher {
                label: label.to_owned(),
                op,
                value: value.trim().to_owned(),
            });
        }
        if out.is_empty() {
            return Err("no matcher given: e.g. `spec=support-bot-prod,objective=pii`".into());
        }
        Ok(out)
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Glob => "~=",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// The labels of an incident or group: `spec`, `objective`, `dimension`, `severity`, `key`,
/// `segment`, each key field (`agent`, `prompt_version`, …) and the spec's metadata labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// The value of a label.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Sets a label (the first value set wins, so built-in labels beat spec labels).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0
            .entry(name.to_owned())
            .or_insert_with(|| value.into());
    }
}

/// What a route matches on. Every given field must match; lists match any of their values;
/// `spec` and `objective` accept `*` globs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteMatch {
    /// Any of these severities.
    pub severity: Vec<Severity>,
    /// Any of these dimensions.
    pub dimension: Vec<Dimension>,
    /// Any of these spec names (globs).
    pub spec: Vec<String>,
    /// Any of these objective names (globs).
    pub objective: Vec<String>,
    /// Every one of these spec labels (values may be globs).
    pub labels: Vec<(String, String)>,
}

impl RouteMatch {
    /// Whether a group with these labels matches.
    pub fn matches(&self, l: &Labels) -> bool {
        let any = |vals: &[String], label: &str| {
            vals.is_empty()
                || vals
                    .iter()
                    .any(|p| glob_match(p, l.get(label).unwrap_or("")))
        };
        (self.severity.is_empty()
            || self
                .severity
                .iter()
                .any(|s| Some(severity_name(*s)) == l.get("severity")))
            && (self.dimension.is_empty()
                || self
                    .dimension
                    .iter()
                    .any(|d| Some(dimension_name(*d)) == l.get("dimension")))
            && any(&self.spec, "spec")
            && any(&self.objective, "objective")
            && self
                .labels
                .iter()
                .all(|(k, v)| glob_match(v, l.get(k).unwrap_or("")))
    }
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `match` (empty: everything).
    pub matcher: RouteMatch,
    /// `receivers`: receiver names.
    pub receivers: Vec<String>,
    /// `audience` (default `oncall`).
    pub audience: Audience,
    /// `continue`: keep looking for further matching routes of the same audience.
    pub continue_matching: bool,
    /// `overrideSpec`: use this route's receivers even when the spec names its own.
    pub override_spec: bool,
}

/// One `inhibitRules` entry: while an incident matching `source` fires, incidents matching
/// `target` with the same values of the `equal` labels are not mailed.
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    /// Incidents that inhibit.
    pub source: Vec<Matcher>,
    /// Incidents that are inhibited.
    pub target: Vec<Matcher>,
    /// Labels whose values must be equal on both.
    pub equal: Vec<String>,
}

/// `stakeholderNotices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StakeholderNotices {
    /// `onBreach`: tell stakeholders when an SLA is breached.
    pub on_breach: bool,
    /// `onProjectedBreach`: tell them when, at the rate so far, the error budget will run out
    /// before the period ends.
    pub on_projected_breach: bool,
}

/// A valid notification policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    /// `spec.receivers`: name → addresses, in file order.
    pub receivers: Vec<(String, Vec<String>)>,
    /// `spec.routes`, in file order.
    pub routes: Vec<Route>,
    /// `spec.timing`.
    pub timing: Timing,
    /// `spec.inhibitRules`.
    pub inhibit_rules: Vec<InhibitRule>,
    /// `spec.resolvedNotices` (default true).
    pub resolved_notices: bool,
    /// `spec.stakeholderNotices`.
    pub stakeholder_notices: StakeholderNotices,
}

/// Errors loading a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the notification policy {path}: {source}")]
    /// The file cannot be read.
    Read {
        /// The file, as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("the notification policy is not valid:\n{rendered}")]
    /// The file has errors.
    Invalid {
        /// Every diagnostic, rendered for people, with a summary line.
        rendered: String,
        /// Every diagnostic (errors and warnings).
        diagnostics: Vec<Diagnostic>,
    },
}

impl Policy {
    /// The embedded default policy (`policies/notification.yaml`).
    pub fn embedded() -> Policy {
        let (p, diags) = parse_policy(DEFAULT_POLICY_YAML, "policies/notification.yaml");
        match p {
            Some(p) => p,
            None => panic!(
                "the embedded policy is invalid:\n{}",
                crate::spec::render_all(&diags)
            ),
        }
    }

    /// The addresses of a receiver.
    pub fn addresses(&self, receiver: &str) -> Option<&[String]> {
        self.receivers
            .iter()
            .find(|(n, _)| n == receiver)
            .map(|(_, a)| a.as_slice())
    }

    /// Receiver names for a group with `labels`, for one audience. `spec_receivers` are the
    /// spec's `alerting.notify` (on-call) or `alerting.stakeholders`: used unless a matching
    /// route has `overrideSpec: true`; without them, the matching routes decide. Routes of an
    /// audience are tried in order; the first match wins unless it says `continue: true`.
    pub fn route(
        &self,
        labels: &Labels,
        audience: Audience,
        spec_receivers: &[String],
    ) -> Vec<String> {
        let mut matched: Vec<&Route> = Vec::new();
        for r in self.routes.iter().filter(|r| r.audience == audience) {
            if r.matcher.matches(labels) {
                matched.push(r);
                if !r.continue_matching {
                    break;
                }
            }
        }
        let overriding: Vec<&&Route> = matched.iter().filter(|r| r.override_spec).collect();
        let mut out: Vec<String> = if !overriding.is_empty() {
            overriding
                .iter()
                .flat_map(|r| r.receivers.clone())
                .collect()
        } else if !spec_receivers.is_empty() {
            spec_receivers.to_vec()
        } else {
            matched.iter().flat_map(|r| r.receivers.clone()).collect()
        };
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|r| seen.insert(r.clone()));
        out
    }

    /// The addresses of receivers, deduplicated, in order. Unknown names are skipped (see
    /// [`Policy::check_specs`]).
    pub fn recipients(&self, receivers: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in receivers {
            for a in self.addresses(r).unwrap_or(&[]) {
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
        out
    }

    /// Problems between this policy and the loaded specs: receivers a spec names in
    /// `alerting.notify` / `alerting.stakeholders` that the policy does not define, and a
    /// `noDataTimeout` shorter than a spec's window (the window size is used instead).
    pub fn check_specs(&self, specs: &[Spec]) -> Vec<String> {
        let names: Vec<&str> = self.receivers.iter().map(|(n, _)| n.as_str()).collect();
        let mut out = Vec::new();
        for s in specs {
            if let Some(t) = self.timing.no_data_timeout_ms
                && t < s.window.size_ms
            {
                out.push(format!(
                    "{}: spec `{}` has {} windows, longer than the notification policy's \
                     `timing.noDataTimeout` ({}): its incidents resolve for lack of data only \
                     after one window without sessions",
                    s.source,
                    s.name,
                    crate::duration::format_duration_ms(s.window.size_ms),
                    crate::duration::format_duration_ms(t),
                ));
            }
            for (field, list) in [
                ("notify", &s.alerting.notify),
                ("stakeholders", &s.alerting.stakeholders),
            ] {
                for r in list {
                    if !names.contains(&r.as_str()) {
                        let hint = did_you_mean(r, &names)
                            .map(|m| format!(" (did you mean `{m}`?)"))
                            .unwrap_or_default();
                        out.push(format!(
                            "{}: spec `{}` names receiver `{r}` in `alerting.{field}`, but the \
                             notification policy `{}` defines no such receiver{hint}; defined: {}",
                            s.source,
                            s.name,
                            self.name,
                            one_of(&names)
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Reads and validates a policy file; every problem is in the error.
pub fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: name.clone(),
        source,
    })?;
    let (policy, diags) = parse_policy(&src, &name);
    match policy {
        Some(p) if !has_errors(&diags) => Ok(p),
        _ => Err(PolicyError::Invalid {
            rendered: format!(
                "{}{}",
                crate::spec::render_all(&diags),
                crate::spec::summary(&diags)
            ),
            diagnostics: diags,
        }),
    }
}

/// The name of a severity as written in YAML.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Ticket => "ticket",
        Severity::Page => "page",
    }
}

/// The name of a dimension as written in YAML.
pub fn dimension_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Availability => "availability",
        Dimension::Behavior => "behavior",
        Dimension::Governance => "governance",
        Dimension::Fallback => "fallback",
    }
}

const DOC_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_KEYS: &[&str] = &["name", "labels"];
const SPEC_KEYS: &[&str] = &[
    "receivers",
    "routes",
    "timing",
    "inhibitRules",
    "resolvedNotices",
    "stakeholderNotices",
];
const ROUTE_KEYS: &[&str] = &["match", "receivers", "audience", "continue", "overrideSpec"];
const MATCH_KEYS: &[&str] = &["severity", "dimension", "spec", "objective", "labels"];
const TIMING_KEYS: &[&str] = &[
    "groupWait",
    "groupInterval",
    "repeatInterval",
    "keepFiringFor",
    "cooldown",
    "noDataTimeout",
];
const INHIBIT_KEYS: &[&str] = &["source", "target", "equal"];
const STAKEHOLDER_KEYS: &[&str] = &["onBreach", "onProjectedBreach"];
const SEVERITIES: &[&str] = &["info", "ticket", "page"];
const DIMENSIONS: &[&str] = &["availability", "behavior", "governance", "fallback"];
const AUDIENCES: &[&str] = &["oncall", "stakeholder"];

/// Parses a policy file's text (`file` names it in messages). Returns the policy when it has
/// no error, and every diagnostic (errors and warnings), sorted by position.
pub fn parse_policy(src: &str, file: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(src, file);
    let (docs, syntax) = parse_documents(src);
    for e in &syntax {
        let loc = Loc {
            line: e.line,
            col: e.col,
            width: 1,
        };
        ctx.error(loc, "", format!("invalid YAML: {}", e.message), None);
    }
    let mut policy = None;
    if docs.is_empty() && syntax.is_empty() {
        ctx.error(
            Loc::default(),
            "",
            "the file holds no YAML document, so no policy",
            Some("start with `apiVersion: slawatch/v1` and `kind: NotificationPolicy`".into()),
        );
    }
    if docs.len() > 1 {
        let second = &docs[1];
        ctx.line_offset = second.line_offset;
        let loc = ctx.loc(&second.root);
        ctx.error(
            loc,
            "",
            "a policy file holds exactly one document",
            Some("put each notification policy in its own file".into()),
        );
    }
    if let Some(doc) = docs.first() {
        ctx.line_offset = doc.line_offset;
        let mut d = Decoder { ctx: &mut ctx };
        policy = d.document(&doc.root);
    }
    let mut diags = ctx.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    if has_errors(&diags) {
        policy = None;
    }
    (policy, diags)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

type Entries<'n> = &'n [(Spanned<String>, SNode)];

struct Decoder<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl Decoder<'_, '_> {
    fn key_loc(&self, k: &Spanned<String>) -> Loc {
        self.ctx.key_loc(k)
    }

    fn type_error(&mut self, n: &SNode, path: &str, expected: &str, hint: Option<String>) {
        self.ctx.type_error(n, path, expected, hint);
    }

    /// A mapping with known keys: reports unknown (with did-you-mean) and duplicate keys.
    fn mapping<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
        known: &[&str],
    ) -> Option<Entries<'n>> {
        let Node::Map(entries) = &n.value else {
            self.type_error(n, path, expected, None);
            return None;
        };
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (k, _) in entries {
            let loc = self.key_loc(k);
            let p = join(path, &k.value);
            if let Some(first) = seen.get(k.value.as_str()) {
                self.ctx.error(
                    loc,
                    &p,
                    format!("duplicate key `{}`", k.value),
                    Some(format!(
                        "it was already given on line {first}; keep one of them"
                    )),
                );
                continue;
            }
            seen.insert(&k.value, loc.line);
            if known.is_empty() || known.contains(&k.value.as_str()) {
                continue;
            }
            let hint = match did_you_mean(&k.value, known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "valid keys here: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.ctx
                .error(loc, &p, format!("unknown key `{}`", k.value), Some(hint));
        }
        Some(entries)
    }

    fn get<'n>(entries: Entries<'n>, key: &str) -> Option<&'n SNode> {
        entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }

    fn string(&mut self, n: &SNode, path: &str) -> Option<String> {
        match &n.value {
            Node::Str(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Node::Str(_) => {
                let loc = self.ctx.loc(n);
                self.ctx.error(loc, path, "must not be empty", None);
                None
            }
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

    /// A list of strings; a single string counts as a one-item list.
    fn string_list<'n>(&mut self, n: &'n SNode, path: &str) -> Option<Vec<(String, &'n SNode)>> {
        match &n.value {
            Node::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.string(item, &format!("{path}[{i}]")) {
                        Some(s) => out.push((s, item)),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Node::Str(_) => self.string(n, path).map(|s| vec![(s, n)]),
            _ => {
                self.type_error(n, path, "a list of strings", None);
                None
            }
        }
    }

    fn bool(&mut self, n: &SNode, path: &str) -> Option<bool> {
        self.ctx.bool(n, path)
    }

    fn duration(&mut self, n: &SNode, path: &str, allow_zero: bool) -> Option<i64> {
        self.ctx.duration(n, path, allow_zero)
    }

    fn enum_value(&mut self, n: &SNode, path: &str, what: &str, valid: &[&str]) -> Option<usize> {
        self.ctx.enum_value(n, path, what, valid)
    }

    fn enum_list(
        &mut self,
        n: &SNode,
        path: &str,
        what: &str,
        valid: &[&str],
    ) -> Option<Vec<usize>> {
        let items: Vec<(&SNode, String)> = match &n.value {
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| (it, format!("{path}[{i}]")))
                .collect(),
            _ => vec![(n, path.to_owned())],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (item, p) in items {
            match self.enum_value(item, &p, what, valid) {
                Some(i) => out.push(i),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn document(&mut self, root: &SNode) -> Option<Policy> {
        let top = self.mapping(
            root,
            "",
            "a mapping with `apiVersion`, `kind`, `metadata` and `spec`",
            DOC_KEYS,
        )?;
        let errors_before = self.ctx.error_count();
        match Self::get(top, "apiVersion") {
            Some(n) => {
                if let Some(v) = self.string(n, "apiVersion")
                    && v != API_VERSION
                {
                    let loc = self.ctx.loc(n);
                    self.ctx.error(
                        loc,
                        "apiVersion",
                        format!("unsupported apiVersion `{v}`"),
                        Some(format!("write `apiVersion: {API_VERSION}`")),
                    );
                }
            }
            None => self.missing(
                root,
                "apiVersion",
                Some(format!("add `apiVersion: {API_VERSION}`")),
            ),
        }
        match Self::get(top, "kind") {
            Some(n) => {
                if let Some(v) = self.string(n, "kind")
                    && v != KIND
                {
                    let hint = if v == "AgentSLA" {
                        "this is an SLA spec: check it with `slawatch validate`; a notification \
                         policy says `kind: NotificationPolicy`"
                            .to_owned()
                    } else {
                        match did_you_mean(&v, &[KIND]) {
                            Some(m) => format!("did you mean `{m}`?"),
                            None => format!("write `kind: {KIND}`"),
                        }
                    };
                    let loc = self.ctx.loc(n);
                    self.ctx
                        .error(loc, "kind", format!("unknown kind `{v}`"), Some(hint));
                }
            }
            None => self.missing(root, "kind", Some(format!("add `kind: {KIND}`"))),
        }
        let mut name = "default".to_owned();
        if let Some(m) = Self::get(top, "metadata")
            && let Some(meta) = self.mapping(m, "metadata", "a mapping", METADATA_KEYS)
        {
            if let Some(n) = Self::get(meta, "name")
                && let Some(s) = self.string(n, "metadata.name")
            {
                name = s;
            }
            if let Some(l) = Self::get(meta, "labels") {
                self.mapping(
                    l,
                    "metadata.labels",
                    "a mapping of label names to values",
                    &[],
                );
            }
        }
        let Some(spec_node) = Self::get(top, "spec") else {
            self.missing(
                root,
                "spec",
                Some("add `spec:` with `receivers` and `routes`".into()),
            );
            return None;
        };
        let spec = self.mapping(spec_node, "spec", "a mapping", SPEC_KEYS)?;

        let receivers = match Self::get(spec, "receivers") {
            Some(n) => self.receivers(n).unwrap_or_default(),
            None => {
                let loc = top
                    .iter()
                    .find(|(k, _)| k.value == "spec")
                    .map_or_else(|| self.ctx.loc(spec_node), |(k, _)| self.key_loc(k));
                self.ctx.error(
                    loc,
                    "spec.receivers",
                    "missing required key `receivers`",
                    Some("add receivers, e.g. `receivers: {oncall: [oncall@example.com]}`".into()),
                );
                Vec::new()
            }
        };
        let names: Vec<String> = receivers.iter().map(|(n, _)| n.clone()).collect();
        let routes = match Self::get(spec, "routes") {
            Some(n) => self.routes(n, &names).unwrap_or_default(),
            None => Vec::new(),
        };
        let timing = match Self::get(spec, "timing") {
            Some(n) => self.timing(n),
            None => Timing::default(),
        };
        let inhibit_rules = match Self::get(spec, "inhibitRules") {
            Some(n) => self.inhibit_rules(n).unwrap_or_default(),
            None => default_inhibit_rules(),
        };
        let resolved_notices = Self::get(spec, "resolvedNotices")
            .and_then(|n| self.bool(n, "spec.resolvedNotices"))
            .unwrap_or(true);
        let mut stakeholder_notices = StakeholderNotices {
            on_breach: true,
            on_projected_breach: true,
        };
        if let Some(n) = Self::get(spec, "stakeholderNotices")
            && let Some(m) =
                self.mapping(n, "spec.stakeholderNotices", "a mapping", STAKEHOLDER_KEYS)
        {
            if let Some(v) = Self::get(m, "onBreach") {
                stakeholder_notices.on_breach = self
                    .bool(v, "spec.stakeholderNotices.onBreach")
                    .unwrap_or(true);
            }
            if let Some(v) = Self::get(m, "onProjectedBreach") {
                stakeholder_notices.on_projected_breach = self
                    .bool(v, "spec.stakeholderNotices.onProjectedBreach")
                    .unwrap_or(true);
            }
        }
        (self.ctx.error_count() == errors_before).then_some(Policy {
            name,
            receivers,
            routes,
            timing,
            inhibit_rules,
            resolved_notices,
            stakeholder_notices,
        })
    }

    fn missing(&mut self, at: &SNode, path: &str, hint: Option<String>) {
        let loc = self.ctx.loc(at);
        let key = path.rsplit('.').next().unwrap_or(path);
        self.ctx
            .error(loc, path, format!("missing required key `{key}`"), hint);
    }

    fn receivers(&mut self, n: &SNode) -> Option<Vec<(String, Vec<String>)>> {
        let entries = self.mapping(
            n,
            "spec.receivers",
            "a mapping of receiver names to email addresses",
            &[],
        )?;
        let mut out = Vec::new();
        for (k, v) in entries {
            let path = format!("spec.receivers.{}", k.value);
            if !valid_name(&k.value) {
                let loc = self.key_loc(k);
                self.ctx.error(
                    loc,
                    &path,
                    format!("`{}` is not a valid receiver name", k.value),
                    Some("use letters, digits, `-`, `_` and `.`".into()),
                );
            }
            let Some(list) = self.string_list(v, &path) else {
                continue;
            };
            if list.is_empty() {
                let loc = self.ctx.loc(v);
                self.ctx.error(
                    loc,
                    &path,
                    "a receiver needs at least one email address",
                    None,
                );
                continue;
            }
            let mut addrs = Vec::new();
            for (i, (a, node)) in list.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match a.parse::<lettre::Address>() {
                    Ok(_) => addrs.push(a.clone()),
                    Err(e) => {
                        let loc = self.ctx.loc(node);
                        let hint = if a.contains('<') {
                            Some("write the bare address, without a display name".to_owned())
                        } else if !a.contains('@') {
                            Some("an address looks like `oncall@example.com`".to_owned())
                        } else {
                            None
                        };
                        self.ctx.error(
                            loc,
                            &p,
                            format!("`{a}` is not a valid email address ({e})"),
                            hint,
                        );
                    }
                }
            }
            out.push((k.value.clone(), addrs));
        }
        Some(out)
    }

    fn receiver_refs(&mut self, n: &SNode, path: &str, names: &[String]) -> Option<Vec<String>> {
        let list = self.string_list(n, path)?;
        if list.is_empty() {
            let loc = self.ctx.loc(n);
            self.ctx
                .error(loc, path, "a route needs at least one receiver", None);
            return None;
        }
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut ok = true;
        for (i, (r, node)) in list.iter().enumerate() {
            if !known.contains(&r.as_str()) {
                ok = false;
                let hint = match did_you_mean(r, &known) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None if known.is_empty() => "define it under `spec.receivers`".to_owned(),
                    None => format!("defined receivers: {}", one_of(&known)),
                };
                let loc = self.ctx.loc(node);
                self.ctx.error(
                    loc,
                    &format!("{path}[{i}]"),
                    format!("unknown receiver `{r}`"),
                    Some(hint),
                );
            }
        }
        ok.then(|| list.into_iter().map(|(r, _)| r).collect())
    }

    fn routes(&mut self, n: &SNode, names: &[String]) -> Option<Vec<Route>> {
        let Node::Seq(items) = &n.value else {
            self.type_error(n, "spec.routes", "a list of routes", None);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("spec.routes[{i}]");
            let Some(r) = self.mapping(item, &path, "a route (a mapping)", ROUTE_KEYS) else {
                continue;
            };
            let matcher = match Self::get(r, "match") {
                Some(m) => self.route_match(m, &join(&path, "match")),
                None => Some(RouteMatch::default()),
            };
            let receivers = match Self::get(r, "receivers") {
                Some(v) => self.receiver_refs(v, &join(&path, "receivers"), names),
                None => {
                    self.missing(
                        item,
                        &join(&path, "receivers"),
                        Some("name who gets the mail, e.g. `receivers: [oncall]`".into()),
                    );
                    None
                }
            };
            let audience = match Self::get(r, "audience") {
                Some(v) => self
                    .enum_value(v, &join(&path, "audience"), "audience", AUDIENCES)
                    .map(|i| [Audience::Oncall, Audience::Stakeholder][i]),
                None => Some(Audience::Oncall),
            };
            let continue_matching = Self::get(r, "continue")
                .map(|v| self.bool(v, &join(&path, "continue")))
                .unwrap_or(Some(false));
            let override_spec = Self::get(r, "overrideSpec")
                .map(|v| self.bool(v, &join(&path, "overrideSpec")))
                .unwrap_or(Some(false));
            if let (Some(matcher), Some(receivers), Some(audience), Some(c), Some(o)) = (
                matcher,
                receivers,
                audience,
                continue_matching,
                override_spec,
            ) {
                out.push(Route {
                    matcher,
                    receivers,
                    audience,
                    continue_matching: c,
                    override_spec: o,
                });
            }
        }
        Some(out)
    }

    fn route_match(&mut self, n: &SNode, path: &str) -> Option<RouteMatch> {
        let m = self.mapping(n, path, "a mapping of what to match", MATCH_KEYS)?;
        let mut out = RouteMatch::default();
        let mut ok = true;
        if let Some(v) = Self::get(m, "severity") {
            match self.enum_list(v, &join(path, "severity"), "severity", SEVERITIES) {
                Some(l) => {
                    out.severity = l
                        .into_iter()
                        .map(|i| [Severity::Info, Severity::Ticket, Severity::Page][i])
                        .collect();
                }
                None => ok = false,
            }
        }
        if let Some(v) = Self::get(m, "dimension") {
            match self.enum_list(v, &join(path, "dimension"), "dimension", DIMENSIONS) {
                Some(l) => {
                    out.dimension = l
                        .into_iter()
                        .map(|i| {
                            [
                                Dimension::Availability,
                                Dimension::Behavior,
                                Dimension::Governance,
                                Dimension::Fallback,
                            ][i]
                        })
                        .collect();
                }
                None => ok = false,
            }
        }
        for (key, slot) in [("spec", &mut out.spec), ("objective", &mut out.objective)] {
            if let Some(v) = Self::get(m, key) {
                match self.string_list(v, &join(path, key)) {
                    Some(l) => *slot = l.into_iter().map(|(s, _)| s).collect(),
                    None => ok = false,
                }
            }
        }
        if let Some(v) = Self::get(m, "labels") {
            match self.label_map(v, &join(path, "labels")) {
                Some(l) => out.labels = l,
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn label_map(&mut self, n: &SNode, path: &str) -> Option<Vec<(String, String)>> {
        let entries = self.mapping(n, path, "a mapping of label names to values", &[])?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let p = join(path, &k.value);
            let value = match &v.value {
                Node::Str(s) => Some(s.clone()),
                Node::Int(i) => Some(i.to_string()),
                Node::Bool(b) => Some(b.to_string()),
                _ => {
                    self.type_error(v, &p, "a label value (a string)", None);
                    None
                }
            };
            match value {
                Some(val) => out.push((k.value.clone(), val)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn timing(&mut self, n: &SNode) -> Timing {
        let mut t = Timing::default();
        let Some(m) = self.mapping(n, "spec.timing", "a mapping of durations", TIMING_KEYS) else {
            return t;
        };
        let fields: [(&str, &mut i64, bool); 5] = [
            ("groupWait", &mut t.group_wait_ms, true),
            ("groupInterval", &mut t.group_interval_ms, false),
            ("repeatInterval", &mut t.repeat_interval_ms, false),
            ("keepFiringFor", &mut t.keep_firing_for_ms, true),
            ("cooldown", &mut t.cooldown_ms, true),
        ];
        for (key, slot, zero) in fields {
            if let Some(v) = Self::get(m, key)
                && let Some(ms) = self.duration(v, &format!("spec.timing.{key}"), zero)
            {
                *slot = ms;
            }
        }
        if let Some(v) = Self::get(m, "noDataTimeout") {
            t.no_data_timeout_ms = self.duration(v, "spec.timing.noDataTimeout", false);
        }
        if t.repeat_interval_ms < t.group_interval_ms
            && let Some(v) = Self::get(m, "repeatInterval")
        {
            let loc = self.ctx.loc(v);
            self.ctx.warn(
                loc,
                "spec.timing.repeatInterval",
                "repeatInterval is shorter than groupInterval: updates and repeats will \
                 interleave",
                Some("repeatInterval is usually hours (`4h`), groupInterval minutes (`5m`)".into()),
            );
        }
        t
    }

    fn inhibit_rules(&mut self, n: &SNode) -> Option<Vec<InhibitRule>> {
        let Node::Seq(items) = &n.value else {
            self.type_error(n, "spec.inhibitRules", "a list of inhibition rules", None);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("spec.inhibitRules[{i}]");
            let Some(r) = self.mapping(
                item,
                &path,
                "a mapping with `source`, `target`, `equal`",
                INHIBIT_KEYS,
            ) else {
                continue;
            };
            let side = |d: &mut Self, key: &str| -> Option<Vec<Matcher>> {
                let Some(v) = Self::get(r, key) else {
                    d.missing(
                        item,
                        &join(&path, key),
                        Some(format!(
                            "`{key}` is a mapping of labels, e.g. `{{dimension: availability}}`"
                        )),
                    );
                    return None;
                };
                let labels = d.label_map(v, &join(&path, key))?;
                if labels.is_empty() {
                    let loc = d.ctx.loc(v);
                    d.ctx.error(
                        loc,
                        &join(&path, key),
                        "must match at least one label",
                        None,
                    );
                    return None;
                }
                Some(
                    labels
                        .into_iter()
                        .map(|(label, value)| Matcher {
                            op: if value.contains('*') {
                                MatchOp::Glob
                            } else {
                                MatchOp::Equal
                            },
                            label,
                            value,
                        })
                        .collect(),
                )
            };
            let source = side(self, "source");
            let target = side(self, "target");
            let equal = match Self::get(r, "equal") {
                Some(v) => self
                    .string_list(v, &join(&path, "equal"))
                    .map(|l| l.into_iter().map(|(s, _)| s).collect()),
                None => Some(Vec::new()),
            };
            if let (Some(source), Some(target), Some(equal)) = (source, target, equal) {
                out.push(InhibitRule {
                    source,
                    target,
                    equal,
                });
            }
        }
        Some(out)
    }
}

/// The default inhibition: an availability page on a key silences behavior alerts on it.
pub fn default_inhibit_rules() -> Vec<InhibitRule> {
    let eq = |label: &str, value: &str| Matcher {
        label: label.into(),
        op: MatchOp::Equal,
        value: value.into(),
    };
    vec![InhibitRule {
        source: vec![eq("dimension", "availability"), eq("severity", "page")],
        target: vec![eq("dimension", "behavior")],
        equal: vec!["key".into()],
    }]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_policy_is_valid() {
        let (p, diags) = parse_policy(DEFAULT_POLICY_YAML, "policies/notification.yaml");
        assert!(diags.is_empty(), "{}", crate::spec::render_all(&diags));
        let p = p.unwrap();
        assert_eq!(p.timing, Timing::default());
        assert!(p.resolved_notices);
        assert_eq!(p.inhibit_rules, default_inhibit_rules());
    }

    #[test]
    fn matchers_parse_and_match() {
        let m = Matcher::parse_list("spec=s, key~=*sp-v1*,segment!=channel=web").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].value, "channel=web");
        let mut l = Labels::default();
        l.set("spec", "s");
        l.set("key", "agent=a,prompt_version=sp-v1");
        assert!(m.iter().all(|m| m.matches(&l)));
        l.0.insert("segment".into(), "channel=web".into());
        assert!(!m[2].matches(&l));
        assert!(Matcher::parse_list("nope").is_err());
        assert!(Matcher::parse_list("").is_err());
    }

    #[test]
    fn routing_prefers_spec_receivers_unless_overridden() {
        let src = "apiVersion: slawatch/v1\nkind: NotificationPolicy\nspec:\n  receivers:\n    a: [a@x.io]\n    b: [b@x.io]\n  routes:\n    - match: {severity: page}\n      receivers: [a]\n      continue: true\n    - match: {spec: 'pay*'}\n      receivers: [b]\n      overrideSpec: true\n";
        let (p, d) = parse_policy(src, "p.yaml");
        assert!(d.is_empty(), "{}", crate::spec::render_all(&d));
        let p = p.unwrap();
        let mut l = Labels::default();
        l.set("severity", "page");
        l.set("spec", "support");
        assert_eq!(p.route(&l, Audience::Oncall, &[]), ["a"]);
        assert_eq!(p.route(&l, Audience::Oncall, &["b".into()]), ["b"]);
        let mut l2 = Labels::default();
        l2.set("severity", "page");
        l2.set("spec", "payments");
        assert_eq!(p.route(&l2, Audience::Oncall, &["a".into()]), ["b"]);
        assert!(p.route(&l2, Audience::Stakeholder, &[]).is_empty());
        assert_eq!(
            p.recipients(&["a".into(), "b".into(), "a".into()]),
            ["a@x.io", "b@x.io"]
        );
    }
}
