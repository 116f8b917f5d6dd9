//! The notification policy (`kind: NotificationPolicy`): who gets which alert mail, when, and
//! what is held back — receivers, routes, group timings, inhibition rules and the two
//! audiences' switches — and label matchers shared with silences.
//!
//! Policy files are validated exactly like SLA specs, with the toolkit of [`crate::schema`]:
//! every problem at once, reported as [`Diagnostic`]s (`file:line:col`, property path, expected
//! vs found, did-you-mean), keys read through the shapes below — the same shapes
//! `slawatch schema policy` turns into a JSON Schema. A [`Policy`] therefore always holds a
//! valid policy. The format reference is
//! `policies/README.md`; the embedded default is `policies/notification.yaml`.
//!
//! Pure: only [`load_policy`] reads a file. Nothing here sends mail or reads the clock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::glob::glob_match;
use crate::schema::decoder::{API_VERSION, Ctx, Loc, NOTIFICATION_POLICY, index};
use crate::schema::diagnostic::{Diagnostic, did_you_mean, has_errors, one_of};
use crate::schema::shape::{Shape, Ty, json_schema, opt, req, shape};
use crate::schema::yaml::{Node, SNode, parse_documents};
use crate::spec::model::{Dimension, Severity, Spec};

/// The `kind` of a policy document.
pub const KIND: &str = NOTIFICATION_POLICY.kind;
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
                .any(|s| Some(s.as_str()) == l.get("severity")))
            && (self.dimension.is_empty()
                || self
                    .dimension
                    .iter()
                    .any(|d| Some(d.as_str()) == l.get("dimension")))
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

/// Where the JSON Schema of policies is committed (`slawatch schema policy` prints it).
pub const SCHEMA_FILE: &str = "schemas/notification-policy.schema.json";

/// The JSON Schema of notification policies, for editors.
pub fn schema() -> String {
    json_schema(
        &DOCUMENT,
        "slawatch notification policy (kind: NotificationPolicy)",
    )
}

const TEXTS: Ty = Ty::List(&Ty::Text);

/// The policy document.
#[rustfmt::skip]
pub static DOCUMENT: Shape = shape!(
    "document",
    "A slawatch notification policy: who gets which alert mail, when, and what is held back.",
    &[
        req("apiVersion", Ty::Enum(&[API_VERSION]), "The format version: `slawatch/v1`."),
        req("kind", Ty::Enum(&[KIND]), "`NotificationPolicy`."),
        opt("metadata", Ty::Object(&METADATA), "The policy's name and labels."),
        req("spec", Ty::Object(&SPEC), "Receivers, routes, timings and inhibition."),
    ],
);

/// `metadata`.
#[rustfmt::skip]
pub static METADATA: Shape = shape!(
    "metadata",
    "The policy's name and labels.",
    &[
        opt("name", Ty::Name, "The policy's name (default `default`)."),
        opt("labels", Ty::Map(&Ty::Scalar), "Free labels."),
    ],
);

/// `spec`.
#[rustfmt::skip]
pub static SPEC: Shape = shape!(
    "spec",
    "Receivers, routes, timings and inhibition.",
    &[
        req("receivers", Ty::Map(&TEXTS), "Receiver name → email addresses."),
        opt("routes", Ty::Seq(&Ty::Object(&ROUTE)), "Which receivers get which groups, tried in order."),
        opt("timing", Ty::Object(&TIMING), "Group timings and incident lifecycle."),
        opt("inhibitRules", Ty::Seq(&Ty::Object(&INHIBIT_RULE)), "Incidents that hold back others (default: an availability page holds back behavior alerts on its key)."),
        opt("resolvedNotices", Ty::Bool, "Mail when a group resolves (default true)."),
        opt("stakeholderNotices", Ty::Object(&STAKEHOLDER_NOTICES), "What stakeholders are told."),
    ],
);

/// One `routes` entry.
#[rustfmt::skip]
pub static ROUTE: Shape = shape!(
    "route",
    "Which receivers get the groups this route matches.",
    &[
        opt("match", Ty::Object(&MATCH), "What the route matches (default: everything)."),
        req("receivers", TEXTS, "Receiver names."),
        opt("audience", Ty::Enum(AUDIENCES), "Who reads the mail (default `oncall`)."),
        opt("continue", Ty::Bool, "Keep looking for further matching routes (default false)."),
        opt("overrideSpec", Ty::Bool, "Use these receivers even when the spec names its own (default false)."),
    ],
);

/// `routes[].match`.
#[rustfmt::skip]
pub static MATCH: Shape = shape!(
    "match",
    "Every given field must match; lists match any of their values.",
    &[
        opt("severity", Ty::List(&Ty::Enum(Severity::NAMES)), "Any of these severities."),
        opt("dimension", Ty::List(&Ty::Enum(Dimension::NAMES)), "Any of these dimensions."),
        opt("spec", TEXTS, "Any of these spec names (`*` globs)."),
        opt("objective", TEXTS, "Any of these objective names (`*` globs)."),
        opt("labels", Ty::Map(&Ty::Scalar), "Every one of these spec labels (values may be globs)."),
    ],
);

/// `timing`.
#[rustfmt::skip]
pub static TIMING: Shape = shape!(
    "timing",
    "Group timings and incident lifecycle durations.",
    &[
        opt("groupWait", Ty::Duration, "Wait before the first mail of a group (default `30s`)."),
        opt("groupInterval", Ty::Duration, "Minimum time between mails announcing new incidents of a group (default `5m`)."),
        opt("repeatInterval", Ty::Duration, "Re-send a still-firing group after this long (default `4h`)."),
        opt("keepFiringFor", Ty::Duration, "An incident resolves only after this long without a breach (default `0s`)."),
        opt("cooldown", Ty::Duration, "A group must stay clean this long before its resolved notice (default `1h`)."),
        opt("noDataTimeout", Ty::Duration, "An incident whose key has had no session this long resolves (default: three windows)."),
    ],
);

/// One `inhibitRules` entry.
#[rustfmt::skip]
pub static INHIBIT_RULE: Shape = shape!(
    "inhibitRule",
    "While an incident matching `source` fires, incidents matching `target` with equal `equal` labels are not mailed.",
    &[
        req("source", Ty::Map(&Ty::Scalar), "Labels of the incidents that inhibit (values may be globs)."),
        req("target", Ty::Map(&Ty::Scalar), "Labels of the incidents that are inhibited."),
        opt("equal", TEXTS, "Labels whose values must be equal on both."),
    ],
);

/// `stakeholderNotices`.
#[rustfmt::skip]
pub static STAKEHOLDER_NOTICES: Shape = shape!(
    "stakeholderNotices",
    "What stakeholders are told.",
    &[
        opt("onBreach", Ty::Bool, "When an SLA is breached (default true)."),
        opt("onProjectedBreach", Ty::Bool, "When the error budget will run out before the period ends (default true)."),
    ],
);

const AUDIENCES: &[&str] = &["oncall", "stakeholder"];

/// Parses a policy file's text (`file` names it in messages). Returns the policy when it has
/// no error, and every diagnostic (errors and warnings), sorted by position.
pub fn parse_policy(src: &str, file: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(src, file);
    let (docs, syntax) = parse_documents(src);
    ctx.syntax_errors(&syntax);
    let mut policy = None;
    if docs.is_empty() && syntax.is_empty() {
        ctx.error(
            Loc::default(),
            "",
            "the file holds no YAML document, so no policy",
            Some(format!(
                "start with `apiVersion: {API_VERSION}` and `kind: {KIND}`"
            )),
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
        policy = decode_policy(&mut ctx, &doc.root);
    }
    let mut diags = ctx.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    if has_errors(&diags) {
        policy = None;
    }
    (policy, diags)
}

fn decode_policy(ctx: &mut Ctx<'_>, root: &SNode) -> Option<Policy> {
    let errors_before = ctx.error_count();
    let top = ctx.document(root, &NOTIFICATION_POLICY, &DOCUMENT)?;
    let mut name = "default".to_owned();
    if let Some(m) = top.get("metadata")
        && let Some(meta) = ctx.fields(m, "metadata", "a mapping", &METADATA)
    {
        if let Some(n) = meta.get("name") {
            let loc = ctx.loc(n);
            if let Some(s) = ctx.nonempty_string(n, "metadata.name")
                && ctx.check_name(loc, "metadata.name", "name", &s)
            {
                name = s;
            }
        }
        if let Some(l) = meta.get("labels") {
            ctx.string_map(l, "metadata.labels");
        }
    }
    let spec_node = ctx.require(
        &top,
        "spec",
        Some("add `spec:` with `receivers` and `routes`".into()),
    )?;
    let spec = ctx.fields(spec_node, "spec", "a mapping", &SPEC)?;
    let receivers = ctx
        .require(
            &spec,
            "receivers",
            Some("add receivers, e.g. `receivers: {oncall: [oncall@example.com]}`".into()),
        )
        .and_then(|n| decode_receivers(ctx, n))
        .unwrap_or_default();
    let names: Vec<&str> = receivers.iter().map(|(n, _)| n.as_str()).collect();
    let routes = match spec.get("routes") {
        Some(n) => decode_routes(ctx, n, &names).unwrap_or_default(),
        None => Vec::new(),
    };
    let timing = match spec.get("timing") {
        Some(n) => decode_timing(ctx, n),
        None => Timing::default(),
    };
    let inhibit_rules = match spec.get("inhibitRules") {
        Some(n) => decode_inhibit_rules(ctx, n).unwrap_or_default(),
        None => default_inhibit_rules(),
    };
    let resolved_notices = spec
        .get("resolvedNotices")
        .and_then(|n| ctx.bool(n, "spec.resolvedNotices"))
        .unwrap_or(true);
    let mut stakeholder_notices = StakeholderNotices {
        on_breach: true,
        on_projected_breach: true,
    };
    if let Some(n) = spec.get("stakeholderNotices")
        && let Some(m) = ctx.fields(
            n,
            "spec.stakeholderNotices",
            "a mapping",
            &STAKEHOLDER_NOTICES,
        )
    {
        for (key, slot) in [
            ("onBreach", &mut stakeholder_notices.on_breach),
            (
                "onProjectedBreach",
                &mut stakeholder_notices.on_projected_breach,
            ),
        ] {
            if let Some(v) = m.get(key).and_then(|v| ctx.bool(v, &m.path(key))) {
                *slot = v;
            }
        }
    }
    (ctx.error_count() == errors_before).then_some(Policy {
        name,
        receivers,
        routes,
        timing,
        inhibit_rules,
        resolved_notices,
        stakeholder_notices,
    })
}

fn decode_receivers(ctx: &mut Ctx<'_>, n: &SNode) -> Option<Vec<(String, Vec<String>)>> {
    let entries = ctx.free_map(
        n,
        "spec.receivers",
        "a mapping of receiver names to email addresses",
    )?;
    let mut out = Vec::new();
    for (k, v) in entries.entries {
        let path = entries.path(&k.value);
        ctx.check_name(ctx.key_loc(k), &path, "receiver name", &k.value);
        let Some(list) = ctx.string_items(v, &path) else {
            continue;
        };
        if list.is_empty() {
            let loc = ctx.loc(v);
            ctx.error(
                loc,
                &path,
                "a receiver needs at least one email address",
                None,
            );
            continue;
        }
        let mut addrs = Vec::new();
        for (a, node, p) in list {
            match a.parse::<lettre::Address>() {
                Ok(_) => addrs.push(a),
                Err(e) => {
                    let hint = if a.contains('<') {
                        Some("write the bare address, without a display name".to_owned())
                    } else if !a.contains('@') {
                        Some("an address looks like `oncall@example.com`".to_owned())
                    } else {
                        None
                    };
                    let loc = ctx.loc(node);
                    ctx.error(
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

fn decode_receiver_refs(
    ctx: &mut Ctx<'_>,
    n: &SNode,
    path: &str,
    known: &[&str],
) -> Option<Vec<String>> {
    let list = ctx.string_items(n, path)?;
    if list.is_empty() {
        let loc = ctx.loc(n);
        ctx.error(loc, path, "a route needs at least one receiver", None);
        return None;
    }
    let mut ok = true;
    for (r, node, p) in &list {
        if !known.contains(&r.as_str()) {
            ok = false;
            let hint = match did_you_mean(r, known) {
                Some(m) => format!("did you mean `{m}`?"),
                None if known.is_empty() => "define it under `spec.receivers`".to_owned(),
                None => format!("defined receivers: {}", one_of(known)),
            };
            let loc = ctx.loc(node);
            ctx.error(loc, p, format!("unknown receiver `{r}`"), Some(hint));
        }
    }
    ok.then(|| list.into_iter().map(|(r, _, _)| r).collect())
}

fn decode_routes(ctx: &mut Ctx<'_>, n: &SNode, names: &[&str]) -> Option<Vec<Route>> {
    let Node::Seq(items) = &n.value else {
        ctx.type_error(n, "spec.routes", "a list of routes", None);
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("spec.routes", i);
        let Some(r) = ctx.fields(item, &path, "a route (a mapping)", &ROUTE) else {
            continue;
        };
        let matcher = match r.get("match") {
            Some(m) => decode_route_match(ctx, m, &r.path("match")),
            None => Some(RouteMatch::default()),
        };
        let receivers = ctx
            .require(
                &r,
                "receivers",
                Some("name who gets the mail, e.g. `receivers: [oncall]`".into()),
            )
            .and_then(|v| decode_receiver_refs(ctx, v, &r.path("receivers"), names));
        let audience = match r.get("audience") {
            Some(v) => ctx
                .enum_value(v, &r.path("audience"), "audience", AUDIENCES)
                .map(|i| [Audience::Oncall, Audience::Stakeholder][i]),
            None => Some(Audience::Oncall),
        };
        let mut flag = |key: &str| match r.get(key) {
            Some(v) => ctx.bool(v, &r.path(key)),
            None => Some(false),
        };
        let (continue_matching, override_spec) = (flag("continue"), flag("overrideSpec"));
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

fn decode_route_match(ctx: &mut Ctx<'_>, n: &SNode, path: &str) -> Option<RouteMatch> {
    let m = ctx.fields(n, path, "a mapping of what to match", &MATCH)?;
    let mut out = RouteMatch::default();
    let mut ok = true;
    if let Some(v) = m.get("severity") {
        match ctx.enum_list(v, &m.path("severity"), "severity", Severity::NAMES) {
            Some(l) => out.severity = l.into_iter().map(|i| Severity::ALL[i]).collect(),
            None => ok = false,
        }
    }
    if let Some(v) = m.get("dimension") {
        match ctx.enum_list(v, &m.path("dimension"), "dimension", Dimension::NAMES) {
            Some(l) => out.dimension = l.into_iter().map(|i| Dimension::ALL[i]).collect(),
            None => ok = false,
        }
    }
    for (key, slot) in [("spec", &mut out.spec), ("objective", &mut out.objective)] {
        if let Some(v) = m.get(key) {
            match ctx.string_list(v, &m.path(key)) {
                Some(l) => *slot = l,
                None => ok = false,
            }
        }
    }
    if let Some(v) = m.get("labels") {
        match ctx.string_map(v, &m.path("labels")) {
            Some(l) => out.labels = l,
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_timing(ctx: &mut Ctx<'_>, n: &SNode) -> Timing {
    let mut t = Timing::default();
    let Some(m) = ctx.fields(n, "spec.timing", "a mapping of durations", &TIMING) else {
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
        if let Some(v) = m.get(key)
            && let Some(ms) = ctx.duration(v, &m.path(key), zero)
        {
            *slot = ms;
        }
    }
    if let Some(v) = m.get("noDataTimeout") {
        t.no_data_timeout_ms = ctx.duration(v, &m.path("noDataTimeout"), false);
    }
    if t.repeat_interval_ms < t.group_interval_ms
        && let Some(v) = m.get("repeatInterval")
    {
        let loc = ctx.loc(v);
        ctx.warn(
            loc,
            "spec.timing.repeatInterval",
            "repeatInterval is shorter than groupInterval: updates and repeats will \
             interleave",
            Some("repeatInterval is usually hours (`4h`), groupInterval minutes (`5m`)".into()),
        );
    }
    t
}

fn decode_inhibit_rules(ctx: &mut Ctx<'_>, n: &SNode) -> Option<Vec<InhibitRule>> {
    let Node::Seq(items) = &n.value else {
        ctx.type_error(n, "spec.inhibitRules", "a list of inhibition rules", None);
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("spec.inhibitRules", i);
        let Some(r) = ctx.fields(
            item,
            &path,
            "a mapping with `source`, `target`, `equal`",
            &INHIBIT_RULE,
        ) else {
            continue;
        };
        let mut side = |key: &str| -> Option<Vec<Matcher>> {
            let v = ctx.require(
                &r,
                key,
                Some(format!(
                    "`{key}` is a mapping of labels, e.g. `{{dimension: availability}}`"
                )),
            )?;
            let labels = ctx.string_map(v, &r.path(key))?;
            if labels.is_empty() {
                let loc = ctx.loc(v);
                ctx.error(loc, &r.path(key), "must match at least one label", None);
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
        let (source, target) = (side("source"), side("target"));
        let equal = match r.get("equal") {
            Some(v) => ctx.string_list(v, &r.path("equal")),
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
