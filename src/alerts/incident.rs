//! The alert engine: findings and clears in, notifications out — incidents, groups, threads,
//! silences and inhibition as a pure, serializable state machine in event time.
//!
//! An *incident* is one objective failing on one key and segment
//! (`spec, objective, key, segment`): pending → firing → resolved. Incidents are gathered into
//! *groups* by `(spec, objective, severity)`; each group episode is one mail *thread* with a
//! stable `Message-ID`, whose mails list every segment and key of the group:
//!
//! - the first mail waits `groupWait` (to collect the other segments of the same window),
//!   except for zero-tolerance governance findings (a `page` from a `violation` or `hard_cap`
//!   check), which go out at once;
//! - incidents that join later are announced at most every `groupInterval`;
//! - a group that keeps firing is re-sent every `repeatInterval`;
//! - an incident resolves after `keepFiringFor` without a breach (default: the first clean
//!   window), or after `noDataTimeout` without a session on its key (a replaced prompt
//!   version, a retired model: [`NoData`] says since when, and which newer key of the same
//!   agent took the traffic); once every incident of a group is resolved and the group has stayed clean for
//!   `cooldown`, a resolved notice closes the thread. A re-breach inside the cooldown continues
//!   the same thread without a fresh mail until `repeatInterval` — a flapping objective gets one
//!   mail, its repeats, and one resolved notice;
//! - stakeholders get a plain-language notice in their own thread when an SLA is breached or
//!   projected to be breached before its period ends, and a notice when it is over.
//!
//! Silences (label matchers with an expiry) and inhibition rules hold mail back; info findings
//! never notify. Time is event time only (window ends), so a replay always yields the same
//! notifications, and every [`Notification`] has a deterministic id: the hash of its thread and
//! its place in the thread's sequence. Never reads the clock, never does I/O, never renders.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::policy::{Audience, Labels, Matcher, Policy};
use crate::finding::{Check, Clear, Finding, LastSession, Verdict};
use crate::forensics::{Forensics, Layer};
use crate::session::EpochMs;
use crate::spec::model::{Dimension, Severity, Spec};

/// Version of [`EngineState`]'s layout; a snapshot of another version is not loaded.
pub const STATE_VERSION: u32 = 1;

/// What the engine needs to know about a spec (not part of its state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Vec<(String, String)>,
    /// Error-budget period, ms.
    pub period_ms: i64,
    /// `alerting.notify` receiver names.
    pub notify: Vec<String>,
    /// `alerting.stakeholders` receiver names.
    pub stakeholders: Vec<String>,
    /// `selector.agent` patterns.
    pub agents: Vec<String>,
    /// Window geometry: size, step and allowed lateness, ms.
    pub window: (i64, i64, i64),
    /// Objectives by name.
    pub objectives: Vec<ObjectiveInfo>,
}

/// What the engine and the renderer need to know about an objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveInfo {
    /// `name`.
    pub name: String,
    /// `dimension`.
    pub dimension: Dimension,
    /// `description`, in plain words.
    pub description: Option<String>,
    /// The SLO target of objectives with an error budget.
    pub slo_target: Option<f64>,
    /// The YAML key of the check (`ratio`, `percentile`, `pii`, …).
    pub kind: String,
    /// Runbook links per layer (the objective's, else the spec's), shown next to the layer
    /// an incident is attributed to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runbooks: BTreeMap<Layer, String>,
}

impl SpecInfo {
    /// Extracts what alerting needs from a validated spec.
    pub fn from_spec(s: &Spec) -> SpecInfo {
        SpecInfo {
            name: s.name.clone(),
            labels: s.labels.clone(),
            period_ms: s.period_ms,
            notify: s.alerting.notify.clone(),
            stakeholders: s.alerting.stakeholders.clone(),
            agents: s.selector.agents.clone(),
            window: (
                s.window.size_ms,
                s.window.step_ms,
                s.window.allowed_lateness_ms,
            ),
            objectives: s
                .objectives
                .iter()
                .map(|o| ObjectiveInfo {
                    name: o.name.clone(),
                    dimension: o.dimension,
                    description: o.description.clone(),
                    slo_target: o.kind.slo_target(),
                    kind: o.kind.yaml_key().to_owned(),
                    runbooks: s.runbooks_for(o),
                })
                .collect(),
        }
    }

    /// The objective called `name`.
    pub fn objective(&self, name: &str) -> Option<&ObjectiveInfo> {
        self.objectives.iter().find(|o| o.name == name)
    }
}

/// What an incident is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IncidentKey {
    /// Spec name.
    pub spec: String,
    /// Objective name.
    pub objective: String,
    /// The window key: agent plus `keyBy` fields.
    pub key: Vec<(String, String)>,
    /// The segment, or `None` for the whole key.
    pub segment: Option<String>,
}

impl IncidentKey {
    /// The incident coordinates of a finding.
    pub fn of_finding(f: &Finding) -> IncidentKey {
        IncidentKey {
            spec: f.spec.clone(),
            objective: f.objective.clone(),
            key: f.key.clone(),
            segment: f.segment.clone(),
        }
    }

    /// The incident coordinates of a clear.
    pub fn of_clear(c: &Clear) -> IncidentKey {
        IncidentKey {
            spec: c.spec.clone(),
            objective: c.objective.clone(),
            key: c.key.clone(),
            segment: c.segment.clone(),
        }
    }

    /// A stable id: 32 hex digits.
    pub fn id(&self) -> String {
        let mut s = format!("{}\u{1f}{}\u{1f}", self.spec, self.objective);
        for (k, v) in &self.key {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\u{1f}');
        }
        s.push_str(self.segment.as_deref().unwrap_or(""));
        format!("{:032x}", xxh3_128(s.as_bytes()))
    }

    /// The key as `agent=…,prompt_version=…`.
    pub fn key_label(&self) -> String {
        self.key
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How mails about an incident group are grouped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    /// Spec name.
    pub spec: String,
    /// Objective name.
    pub objective: String,
    /// Severity the group's incidents have.
    pub severity: Severity,
}

impl GroupKey {
    /// `spec/objective/severity`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.spec,
            self.objective,
            self.severity.as_str()
        )
    }
}

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Breaching, not announced yet (waiting for its group).
    Pending,
    /// Breaching and announced.
    Firing,
    /// No breach for `keepFiringFor`.
    Resolved,
}

/// One objective failing on one key and segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// [`IncidentKey::id`].
    pub id: String,
    /// What it is about.
    pub key: IncidentKey,
    /// The objective's dimension.
    pub dimension: Dimension,
    /// The highest severity seen while the incident lives.
    pub severity: Severity,
    /// Where it is in its life.
    pub status: IncidentStatus,
    /// Window start of the first breach.
    pub since: EpochMs,
    /// Window end of the first breach: when it was detected.
    pub detected: EpochMs,
    /// When it last became pending/firing (window end of that breach).
    pub active_since: EpochMs,
    /// Window end of the latest breach.
    pub last_breach: EpochMs,
    /// Newest window end applied (older findings and clears are stale).
    pub last_event: EpochMs,
    /// First clean window end after the last breach.
    pub clean_since: Option<EpochMs>,
    /// When it resolved (event time), while resolved.
    pub resolved_at: Option<EpochMs>,
    /// Windows that breached.
    pub breaches: u32,
    /// Times it came back after resolving, within its thread.
    pub reopened: u32,
    /// A `page` from a `violation` or `hard_cap` check: mailed without waiting.
    pub zero_tolerance: bool,
    /// The most recent breach finding.
    pub latest: Finding,
    /// The worst breach finding (furthest from target).
    pub peak: Finding,
    /// Set when it resolved because its key had no sessions for `noDataTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoData>,
    /// Set when it resolved because a configuration reload removed its objective (or spec).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// Onset and layer attribution, from the newest breach finding that carried them (the
    /// first breach finding of the incident does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forensics: Option<Box<Forensics>>,
}

impl Incident {
    fn is_active(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }

    /// Pending or firing (not resolved).
    pub fn is_open(&self) -> bool {
        self.is_active()
    }
}

/// Why an incident resolved without a clean window: its key stopped receiving sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoData {
    /// Event time of the key's newest session.
    pub last_session: EpochMs,
    /// The key of the same agent that has had sessions since and still has (a newer prompt
    /// version and/or model), as the fields that differ from this key — e.g.
    /// `[("prompt_version", "sp-v2")]`; `None` when no such key is live.
    pub superseded_by: Option<Vec<(String, String)>>,
}

/// Key fields that name a *version* of an agent: a key that differs from another of the same
/// agent only in these replaces it.
const VERSION_FIELDS: [&str; 3] = ["prompt_version", "model", "provider"];

/// The stakeholder side of a group episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaLevel {
    /// At the rate so far, the error budget runs out before the period ends.
    Projected,
    /// The promise is broken: budget exhausted, or a zero-tolerance page.
    Breached,
}

/// One group episode's mail thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The incident-group id: also the root `Message-ID`'s local part.
    pub id: String,
    /// Event time the first incident of the episode became mailable.
    pub opened_at: EpochMs,
    /// When the first mail is due.
    pub due: EpochMs,
    /// Whether the first mail went out.
    pub root_sent: bool,
    /// Event time of the first mail.
    #[serde(default)]
    pub root_at: Option<EpochMs>,
    /// On-call mails emitted in this thread.
    pub seq: u32,
    /// Incidents already announced in this thread.
    pub announced: BTreeSet<String>,
    /// Event time of the last on-call mail.
    pub last_mail_at: Option<EpochMs>,
    /// Event time of the last mail announcing firing incidents (for repeats).
    pub last_firing_at: Option<EpochMs>,
    /// The highest SLA level told to stakeholders, and their mails so far.
    pub stakeholder_level: Option<SlaLevel>,
    /// Stakeholder mails emitted in this thread.
    pub stakeholder_seq: u32,
}

/// Incidents of one `(spec, objective, severity)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `(spec, objective, severity)`.
    pub key: GroupKey,
    /// The objective's dimension.
    pub dimension: Dimension,
    /// Incident ids.
    pub members: BTreeSet<String>,
    /// Incidents that moved on to a more severe group, with when.
    pub escalated: BTreeMap<String, EpochMs>,
    /// The open episode's thread, if any.
    pub thread: Option<Thread>,
}

/// Mail held back for incidents whose labels match, between two event times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Short id, e.g. `s-1a2b3c4d`.
    pub id: String,
    /// Every matcher must match an incident's labels.
    pub matchers: Vec<Matcher>,
    /// Start, event time (ms).
    pub starts_at: EpochMs,
    /// End (exclusive), event time (ms).
    pub ends_at: EpochMs,
    /// Why.
    pub comment: String,
    /// Who added it.
    pub created_by: String,
}

impl Silence {
    /// Whether the silence holds at `t`.
    pub fn active_at(&self, t: EpochMs) -> bool {
        self.starts_at <= t && t < self.ends_at
    }

    /// Whether the silence covers an incident with these labels at `t`.
    pub fn covers(&self, labels: &Labels, t: EpochMs) -> bool {
        self.active_at(t) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// On-call: the first mail of a thread.
    Firing,
    /// On-call: incidents joined the group.
    Update,
    /// On-call: still firing after `repeatInterval`.
    Repeat,
    /// On-call: every incident resolved and stayed clean for the cooldown.
    Resolved,
    /// On-call: every incident moved on to a more severe group.
    Escalated,
    /// Stakeholder: the SLA is breached.
    Breach,
    /// Stakeholder: the SLA will be breached before the period ends at this rate.
    ProjectedBreach,
    /// Stakeholder: it is over.
    Recovered,
}

impl NotificationKind {
    /// A short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Update => "update",
            NotificationKind::Repeat => "repeat",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Escalated => "escalated",
            NotificationKind::Breach => "breach",
            NotificationKind::ProjectedBreach => "projected_breach",
            NotificationKind::Recovered => "recovered",
        }
    }
}

/// How an incident stands in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewStatus {
    /// Breaching and mailed.
    Firing,
    /// Breaching, held back by a silence.
    Silenced,
    /// Breaching, held back by an inhibition rule.
    Inhibited,
    /// No longer breaching.
    Resolved,
    /// Moved on to a more severe group.
    Escalated,
}

/// One incident as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    /// [`IncidentKey::id`].
    pub id: String,
    /// The window key.
    pub key: Vec<(String, String)>,
    /// The segment, or `None` for the whole key.
    pub segment: Option<String>,
    /// How it stands now.
    pub status: ViewStatus,
    /// First announced in this notification.
    pub new: bool,
    /// Window start of the first breach.
    pub since: EpochMs,
    /// Window end of the first breach (when it was detected).
    pub detected: EpochMs,
    /// Window end of the latest breach.
    pub last_breach: EpochMs,
    /// When it resolved, if it did.
    pub resolved_at: Option<EpochMs>,
    /// Windows that breached.
    pub breaches: u32,
    /// Times it came back after resolving.
    pub reopened: u32,
    /// The most recent breach finding.
    pub latest: Finding,
    /// The worst breach finding.
    pub peak: Finding,
    /// Resolved because its key had no sessions for `noDataTimeout`: since when, and what
    /// replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoData>,
    /// Resolved because a configuration reload removed its objective.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// Onset and layer attribution of the incident, when evaluation found them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forensics: Option<Box<Forensics>>,
}

/// Error budget and projection of the group's headline incident (SLO objectives).
///
/// A finding's `budget_consumed` is bad events over the budget of the events seen so far in
/// the period, so early in a period it already extrapolates. The share of the *whole period's*
/// budget spent so far is `used = budget_consumed × elapsed / period`; the SLA is breached when
/// `used ≥ 1`, and projected to be breached when `used × period / elapsed ≥ 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    /// Share of the whole period's error budget spent so far (may exceed 1).
    pub consumed: f64,
    /// The finding's `budget_consumed`: relative to the traffic seen so far.
    pub consumed_so_far_rate: f64,
    /// `consumed × period / elapsed`: the share spent by the period's end at the rate so far.
    pub projected: Option<f64>,
    /// When the budget runs out at the current burn rate (absent when exhausted or not
    /// burning faster than sustainable).
    pub exhaustion_at: Option<EpochMs>,
    /// The burn rate used for `exhaustion_at` (1 = sustainable).
    pub burn_rate: Option<f64>,
    /// The error-budget period, ms.
    pub period_ms: i64,
    /// How much of the period the data covers so far, ms.
    pub elapsed_ms: i64,
}

/// Everything a mail about a group needs, self-contained (it is rendered later, perhaps after
/// a restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Deterministic: hash of thread id, audience, sequence number and kind.
    pub id: String,
    /// What it announces.
    pub kind: NotificationKind,
    /// Who reads it.
    pub audience: Audience,
    /// Event time the notification was due.
    pub at: EpochMs,
    /// The group it is about.
    pub group: GroupKey,
    /// The objective's dimension.
    pub dimension: Dimension,
    /// The incident-group (thread) id.
    pub thread_id: String,
    /// `<…@slawatch>`: the root's is `<thread_id@slawatch>` (on-call).
    pub message_id: String,
    /// The thread root's `Message-ID`, on every mail but the root.
    pub in_reply_to: Option<String>,
    /// `References`: the thread root, on every mail but the root.
    pub references: Vec<String>,
    /// Position in the audience's thread (0 = root).
    pub seq: u32,
    /// Receiver names the policy routed to.
    pub receivers: Vec<String>,
    /// Their addresses (empty: no receiver; the shell may use fallback recipients).
    pub recipients: Vec<String>,
    /// Event time the thread opened.
    pub opened_at: EpochMs,
    /// Incidents of the episode: active ones first, worst first.
    pub incidents: Vec<IncidentView>,
    /// The objective, as the spec describes it.
    pub objective: Option<ObjectiveInfo>,
    /// The spec's `metadata.labels`.
    pub spec_labels: Vec<(String, String)>,
    /// The spec's `selector.agent` patterns.
    pub agents: Vec<String>,
    /// Error budget of the headline incident (SLO objectives).
    pub budget: Option<BudgetView>,
    /// What stakeholders have been told in this thread.
    pub sla_level: Option<SlaLevel>,
}

/// Counters for summaries and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Ticket and page breaches applied.
    pub findings: u64,
    /// Clears applied.
    pub clears: u64,
    /// Findings and clears older than what an incident already knew.
    pub stale: u64,
    /// Info breaches (counted as clean).
    pub info_ignored: u64,
    /// Notifications emitted.
    pub notifications: u64,
}

/// The engine's whole state: serializable, so a restart neither re-sends nor forgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// Event time reached.
    pub now: Option<EpochMs>,
    /// Earliest window start seen per spec (elapsed part of the budget period).
    pub first_seen: BTreeMap<String, EpochMs>,
    /// Live incidents by id.
    pub incidents: BTreeMap<String, Incident>,
    /// Groups by `spec/objective/severity`.
    pub groups: BTreeMap<String, Group>,
    /// Silences in force or to come.
    pub silences: Vec<Silence>,
    /// Newest session per spec and key ([`AlertEngine::on_last_session`]), by
    /// `spec␟key label`: which keys still receive sessions.
    #[serde(default)]
    pub last_sessions: BTreeMap<String, LastSession>,
    /// Emitted, not yet taken by [`AlertEngine::advance`].
    pub outbox: Vec<Notification>,
    /// Incidents as they were when they opened, came back or resolved, not yet taken by
    /// [`AlertEngine::take_changed`] (the shell's incident archive; a resolved incident may be
    /// forgotten by the engine in the same step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Incident>,
    /// Counters.
    pub stats: EngineStats,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            version: STATE_VERSION,
            now: None,
            first_seen: BTreeMap::new(),
            incidents: BTreeMap::new(),
            groups: BTreeMap::new(),
            silences: Vec::new(),
            last_sessions: BTreeMap::new(),
            outbox: Vec::new(),
            changed: Vec::new(),
            stats: EngineStats::default(),
        }
    }
}

/// The pure alerting core. See the module docs.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    policy: Arc<Policy>,
    specs: BTreeMap<String, SpecInfo>,
    state: EngineState,
    /// The share of the keys this engine sees, when it is one of several (a stage-2 partition
    /// of the `partitioned` topology): part of every thread id, so two engines that open a
    /// thread of the same group at the same event time never share a thread or notification id.
    /// It cannot be left out to match one instance's ids: a group's thread is one engine's
    /// state, so a group whose agents route to k partitions is k threads (each with its own
    /// firing and resolved mails), and two of them opened in the same window would otherwise
    /// share a `Message-ID` — mail clients would merge two different incidents, and a log
    /// holding both would drop one. The ids depend on the partition, never on the instance, so
    /// a thread keeps its ids when its partition moves.
    scope: Option<i32>,
}

fn thread_id(group: &GroupKey, opened_at: EpochMs, scope: Option<i32>) -> String {
    let mut s = format!(
        "thread\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{opened_at}",
        group.spec,
        group.objective,
        group.severity.as_str()
    );
    if let Some(scope) = scope {
        s.push_str(&format!("\u{1f}partition={scope}"));
    }
    format!("{:032x}", xxh3_128(s.as_bytes()))
}

/// The [`EngineState::last_sessions`] id of a spec's key.
fn seen_id(spec: &str, key: &[(String, String)]) -> String {
    let mut s = format!("{spec}\u{1f}");
    for (i, (k, v)) in key.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

fn notification_id(thread: &str, audience: Audience, seq: u32, kind: NotificationKind) -> String {
    let s = format!(
        "notification\u{1f}{thread}\u{1f}{}\u{1f}{seq}\u{1f}{}",
        audience.as_str(),
        kind.as_str()
    );
    format!("{:032x}", xxh3_128(s.as_bytes()))
}

/// How far a finding is from its target, for ordering (larger is worse).
pub fn distance(f: &Finding) -> f64 {
    if f.target == 0.0 {
        f.observed
    } else {
        ((f.observed - f.target) / f.target).abs()
    }
}

fn is_zero_tolerance(f: &Finding) -> bool {
    f.severity == Severity::Page && matches!(f.check, Check::Violation | Check::HardCap)
}

impl AlertEngine {
    /// A fresh engine for a policy and the loaded specs.
    pub fn new(policy: Arc<Policy>, specs: &[Spec]) -> AlertEngine {
        AlertEngine::with_state(policy, specs, EngineState::default())
    }

    /// An engine resuming from a snapshot (a snapshot of another layout version starts
    /// fresh).
    pub fn with_state(policy: Arc<Policy>, specs: &[Spec], state: EngineState) -> AlertEngine {
        let state = if state.version == STATE_VERSION {
            state
        } else {
            EngineState::default()
        };
        AlertEngine {
            policy,
            specs: specs
                .iter()
                .map(|s| (s.name.clone(), SpecInfo::from_spec(s)))
                .collect(),
            state,
            scope: None,
        }
    }

    /// The same engine (policy, specs, scope) resuming from another snapshot.
    pub fn resumed(&self, state: EngineState) -> AlertEngine {
        AlertEngine {
            policy: self.policy.clone(),
            specs: self.specs.clone(),
            state: if state.version == STATE_VERSION {
                state
            } else {
                EngineState::default()
            },
            scope: self.scope,
        }
    }

    /// This engine as the one of a share of the keys (see [`AlertEngine`]'s `scope`): thread
    /// and notification ids name the share.
    pub fn with_scope(mut self, scope: i32) -> AlertEngine {
        self.scope = Some(scope);
        self
    }

    /// A configuration reload: the new policy and specs. Active incidents of an objective (or
    /// spec) that is gone resolve now, marked [`Incident::retired`]; nothing else changes, so
    /// incidents of objectives that stay keep their threads and timers.
    pub fn reload(&mut self, policy: Arc<Policy>, specs: &[Spec]) {
        self.policy = policy;
        self.specs = specs
            .iter()
            .map(|s| (s.name.clone(), SpecInfo::from_spec(s)))
            .collect();
        let now = self.state.now;
        for inc in self.state.incidents.values_mut() {
            let kept = self
                .specs
                .get(&inc.key.spec)
                .is_some_and(|s| s.objectives.iter().any(|o| o.name == inc.key.objective));
            if inc.is_active() && !kept {
                let at = now.unwrap_or(inc.last_breach).max(inc.last_breach);
                inc.status = IncidentStatus::Resolved;
                inc.resolved_at = Some(at);
                inc.last_event = inc.last_event.max(at);
                inc.retired = true;
                self.state.changed.push(inc.clone());
            }
        }
    }

    /// The state, for snapshots.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What the engine knows about a spec.
    pub fn spec_info(&self, name: &str) -> Option<&SpecInfo> {
        self.specs.get(name)
    }

    /// Event time the engine has reached.
    pub fn now(&self) -> Option<EpochMs> {
        self.state.now
    }

    /// Every live incident, ordered by id.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.state.incidents.values()
    }

    /// Every group, ordered by `spec/objective/severity`.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.state.groups.values()
    }

    /// The incidents that opened, came back or resolved since the last call, as they were
    /// then (oldest change first).
    pub fn take_changed(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.state.changed)
    }

    /// The silences whose matchers cover the incident and whose time overlaps its life so far
    /// (from its first breach window to its resolution, or to now): its acknowledgements.
    pub fn silences_of(&self, inc: &Incident) -> Vec<&Silence> {
        let labels = self.labels(inc);
        let end = inc
            .resolved_at
            .or(self.state.now)
            .unwrap_or(inc.last_breach)
            .max(inc.detected);
        self.state
            .silences
            .iter()
            .filter(|s| {
                s.starts_at < end
                    && s.ends_at > inc.since
                    && s.matchers.iter().all(|m| m.matches(&labels))
            })
            .collect()
    }

    /// Replaces the silences (e.g. after `slawatch silence add` changed the store).
    pub fn set_silences(&mut self, mut silences: Vec<Silence>) {
        silences.sort_by(|a, b| a.id.cmp(&b.id));
        self.state.silences = silences;
    }

    /// Applies a finding. Breaches of severity ticket or page open or extend an incident; info
    /// breaches count as clean; insufficient-data findings change nothing.
    pub fn on_finding(&mut self, f: &Finding) {
        let (start, end) = (f.window_start, f.window_end);
        // Whatever fell due before this event happens first; what is due at its own time
        // waits for `advance`, so findings of one window close are applied together.
        self.tick(end - 1);
        self.note_first_seen(&f.spec, start);
        if f.verdict != Verdict::Breach {
            return;
        }
        if f.severity == Severity::Info {
            self.state.stats.info_ignored += 1;
            self.apply_clean(&IncidentKey::of_finding(f), end);
            return;
        }
        self.state.stats.findings += 1;
        let ik = IncidentKey::of_finding(f);
        let id = ik.id();
        match self.state.incidents.get_mut(&id) {
            Some(inc) => {
                if end < inc.last_event {
                    self.state.stats.stale += 1;
                    return;
                }
                let old_severity = inc.severity;
                inc.last_event = end;
                if end > inc.last_breach {
                    inc.breaches += 1;
                    inc.last_breach = end;
                }
                if end > inc.latest.window_end || f.severity > inc.latest.severity {
                    inc.latest = f.clone();
                }
                if (f.severity, distance(f)) > (inc.peak.severity, distance(&inc.peak)) {
                    inc.peak = f.clone();
                }
                inc.clean_since = None;
                inc.zero_tolerance |= is_zero_tolerance(f);
                if f.forensics.is_some() {
                    inc.forensics = f.forensics.clone();
                }
                if inc.status == IncidentStatus::Resolved {
                    inc.status = IncidentStatus::Pending;
                    inc.resolved_at = None;
                    inc.no_data = None;
                    inc.retired = false;
                    inc.reopened += 1;
                    inc.active_since = end;
                    self.state.changed.push(inc.clone());
                }
                inc.severity = inc.severity.max(f.severity);
                let new_severity = inc.severity;
                let dimension = inc.dimension;
                if new_severity != old_severity {
                    let old = GroupKey {
                        spec: ik.spec.clone(),
                        objective: ik.objective.clone(),
                        severity: old_severity,
                    };
                    if let Some(g) = self.state.groups.get_mut(&old.id()) {
                        g.members.remove(&id);
                        g.escalated.insert(id.clone(), end);
                    }
                    if let Some(inc) = self.state.incidents.get_mut(&id) {
                        inc.status = IncidentStatus::Pending;
                        inc.active_since = end;
                    }
                    self.join_group(&ik, new_severity, dimension, &id);
                } else if let Some(inc) = self.state.incidents.get(&id) {
                    // A re-opened incident whose announcement is already in the thread is
                    // firing again, not pending.
                    let group = GroupKey {
                        spec: ik.spec.clone(),
                        objective: ik.objective.clone(),
                        severity: inc.severity,
                    };
                    let announced = self
                        .state
                        .groups
                        .get(&group.id())
                        .and_then(|g| g.thread.as_ref())
                        .is_some_and(|t| t.announced.contains(&id));
                    if announced && inc.status == IncidentStatus::Pending {
                        self.state.incidents.get_mut(&id).expect("present").status =
                            IncidentStatus::Firing;
                    }
                }
            }
            None => {
                let inc = Incident {
                    id: id.clone(),
                    key: ik.clone(),
                    dimension: f.dimension,
                    severity: f.severity,
                    status: IncidentStatus::Pending,
                    since: start,
                    detected: end,
                    active_since: end,
                    last_breach: end,
                    last_event: end,
                    clean_since: None,
                    resolved_at: None,
                    breaches: 1,
                    reopened: 0,
                    zero_tolerance: is_zero_tolerance(f),
                    latest: f.clone(),
                    peak: f.clone(),
                    no_data: None,
                    retired: false,
                    forensics: f.forensics.clone(),
                };
                self.state.changed.push(inc.clone());
                self.state.incidents.insert(id.clone(), inc);
                self.join_group(&ik, f.severity, f.dimension, &id);
            }
        }
    }

    /// Applies a clear: the objective was judged on this key, segment and window with no
    /// ticket or page breach.
    pub fn on_clear(&mut self, c: &Clear) {
        let end = c.window_end;
        self.tick(end - 1);
        self.state.stats.clears += 1;
        self.apply_clean(&IncidentKey::of_clear(c), end);
    }

    /// Notes a key's newest session (reported as its windows close). Moves no time: an
    /// incident whose key has had no session for `noDataTimeout` resolves when event time
    /// passes that point, so feed these before the findings of the same windows.
    pub fn on_last_session(&mut self, s: &LastSession) {
        match self.state.last_sessions.get_mut(&seen_id(&s.spec, &s.key)) {
            Some(e) => e.at = e.at.max(s.at),
            None => {
                self.state
                    .last_sessions
                    .insert(seen_id(&s.spec, &s.key), s.clone());
            }
        }
    }

    /// How long a key of `spec` may go without sessions before its incidents resolve.
    fn no_data_timeout(&self, spec: &str) -> Option<i64> {
        let s = self.specs.get(spec)?;
        Some(self.policy.timing.no_data_timeout_for(s.window.0))
    }

    /// The live key of the same spec and agent that has had sessions after `gone`'s newest
    /// one and differs from it only in version fields (prompt version, model, provider): the
    /// fields that differ. The newest such key wins (ties: the first in key order).
    fn successor(
        &self,
        gone: &LastSession,
        now: EpochMs,
        timeout: i64,
    ) -> Option<Vec<(String, String)>> {
        let is_version = |k: &str| VERSION_FIELDS.contains(&k);
        let same_except_versions = |other: &[(String, String)]| {
            let rest = |key: &[(String, String)]| -> Vec<(String, String)> {
                key.iter()
                    .filter(|(k, _)| !is_version(k))
                    .cloned()
                    .collect()
            };
            rest(other) == rest(&gone.key)
        };
        let best = self
            .state
            .last_sessions
            .values()
            .filter(|o| {
                o.spec == gone.spec
                    && o.key != gone.key
                    && o.at > gone.at
                    && o.at + timeout > now
                    && same_except_versions(&o.key)
            })
            .fold(None::<&LastSession>, |best, o| match best {
                Some(b) if b.at >= o.at => Some(b),
                _ => Some(o),
            })?;
        Some(
            best.key
                .iter()
                .filter(|(k, v)| {
                    is_version(k)
                        && gone.key.iter().find(|(gk, _)| gk == k).map(|(_, gv)| gv) != Some(v)
                })
                .cloned()
                .collect(),
        )
    }

    /// Resolves every active incident whose key has had no session for `noDataTimeout` at
    /// `now`, saying since when and what replaced it; forgets keys nobody needs any more.
    fn resolve_gone_keys(&mut self, now: EpochMs) {
        let mut gone: Vec<(String, EpochMs, NoData)> = Vec::new();
        for inc in self.state.incidents.values().filter(|i| i.is_active()) {
            let Some(seen) = self
                .state
                .last_sessions
                .get(&seen_id(&inc.key.spec, &inc.key.key))
            else {
                continue;
            };
            let Some(timeout) = self.no_data_timeout(&inc.key.spec) else {
                continue;
            };
            let at = seen.at + timeout;
            if now >= at {
                let nd = NoData {
                    last_session: seen.at,
                    superseded_by: self.successor(seen, now, timeout),
                };
                gone.push((inc.id.clone(), at, nd));
            }
        }
        for (id, at, nd) in gone {
            let inc = self.state.incidents.get_mut(&id).expect("present");
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(at.max(inc.last_breach));
            // Verdicts of windows before the resolution are stale: only sessions after it
            // (the key coming back) can open the incident again.
            inc.last_event = inc.last_event.max(at);
            inc.no_data = Some(nd);
            self.state.changed.push(inc.clone());
        }
        // A key is remembered while an incident is about it, or while it could still be the
        // live successor of another key (it had sessions within its timeout).
        let wanted: BTreeSet<String> = self
            .state
            .incidents
            .values()
            .map(|i| seen_id(&i.key.spec, &i.key.key))
            .collect();
        let timeouts: BTreeMap<String, i64> = self
            .specs
            .keys()
            .filter_map(|s| Some((s.clone(), self.no_data_timeout(s)?)))
            .collect();
        self.state.last_sessions.retain(|id, s| {
            wanted.contains(id) || timeouts.get(&s.spec).is_some_and(|t| s.at + t > now)
        });
    }

    /// Moves event time to `now` and returns every notification due by then, in order.
    pub fn advance(&mut self, now: EpochMs) -> Vec<Notification> {
        self.tick(now);
        std::mem::take(&mut self.state.outbox)
    }

    fn note_first_seen(&mut self, spec: &str, start: EpochMs) {
        let e = self
            .state
            .first_seen
            .entry(spec.to_owned())
            .or_insert(start);
        *e = (*e).min(start);
    }

    fn join_group(&mut self, ik: &IncidentKey, severity: Severity, dimension: Dimension, id: &str) {
        let key = GroupKey {
            spec: ik.spec.clone(),
            objective: ik.objective.clone(),
            severity,
        };
        let g = self.state.groups.entry(key.id()).or_insert_with(|| Group {
            key,
            dimension,
            members: BTreeSet::new(),
            escalated: BTreeMap::new(),
            thread: None,
        });
        g.escalated.remove(id);
        g.members.insert(id.to_owned());
    }

    fn apply_clean(&mut self, ik: &IncidentKey, end: EpochMs) {
        let keep = self.policy.timing.keep_firing_for_ms;
        let Some(inc) = self.state.incidents.get_mut(&ik.id()) else {
            return;
        };
        if end < inc.last_event || end <= inc.last_breach {
            self.state.stats.stale += 1;
            return;
        }
        inc.last_event = end;
        if inc.status == IncidentStatus::Resolved {
            return;
        }
        let clean = *inc.clean_since.get_or_insert(end);
        if end - inc.last_breach >= keep {
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(clean.max(inc.last_breach + keep));
            self.state.changed.push(inc.clone());
        }
    }

    fn labels(&self, inc: &Incident) -> Labels {
        let mut l = Labels::default();
        l.set("spec", &inc.key.spec);
        l.set("objective", &inc.key.objective);
        l.set("dimension", inc.dimension.as_str());
        l.set("severity", inc.severity.as_str());
        l.set("check", inc.latest.check.as_str());
        l.set("key", inc.key.key_label());
        l.set("segment", inc.key.segment.clone().unwrap_or_default());
        for (k, v) in &inc.key.key {
            l.set(k, v);
        }
        if let Some(s) = self.specs.get(&inc.key.spec) {
            for (k, v) in &s.labels {
                l.set(k, v);
            }
        }
        l
    }

    fn group_labels(&self, g: &Group) -> Labels {
        let mut l = Labels::default();
        l.set("spec", &g.key.spec);
        l.set("objective", &g.key.objective);
        l.set("dimension", g.dimension.as_str());
        l.set("severity", g.key.severity.as_str());
        if let Some(s) = self.specs.get(&g.key.spec) {
            for (k, v) in &s.labels {
                l.set(k, v);
            }
        }
        l
    }

    fn silenced(&self, inc: &Incident, t: EpochMs) -> bool {
        if self.state.silences.is_empty() {
            return false;
        }
        let labels = self.labels(inc);
        self.state.silences.iter().any(|s| s.covers(&labels, t))
    }

    fn inhibited(&self, inc: &Incident) -> bool {
        if self.policy.inhibit_rules.is_empty() {
            return false;
        }
        let labels = self.labels(inc);
        for rule in &self.policy.inhibit_rules {
            if !rule.target.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            for src in self.state.incidents.values() {
                if src.id == inc.id || !src.is_active() {
                    continue;
                }
                let sl = self.labels(src);
                if rule.source.iter().all(|m| m.matches(&sl))
                    && rule.equal.iter().all(|e| sl.get(e) == labels.get(e))
                {
                    return true;
                }
            }
        }
        false
    }

    /// Since when an incident that is mailable at `now` has been mailable: it became active,
    /// and no silence or inhibiting incident held it back after that.
    fn notifiable_since(&self, inc: &Incident, now: EpochMs) -> EpochMs {
        let mut since = inc.active_since;
        if !self.state.silences.is_empty() {
            let labels = self.labels(inc);
            for s in &self.state.silences {
                if s.ends_at <= now
                    && s.ends_at > since
                    && s.starts_at < s.ends_at
                    && s.matchers.iter().all(|m| m.matches(&labels))
                {
                    since = s.ends_at;
                }
            }
        }
        if !self.policy.inhibit_rules.is_empty() {
            let labels = self.labels(inc);
            for rule in &self.policy.inhibit_rules {
                if !rule.target.iter().all(|m| m.matches(&labels)) {
                    continue;
                }
                for src in self.state.incidents.values() {
                    let Some(r) = src.resolved_at else { continue };
                    if src.id == inc.id || r > now || r <= since {
                        continue;
                    }
                    let sl = self.labels(src);
                    if rule.source.iter().all(|m| m.matches(&sl))
                        && rule.equal.iter().all(|e| sl.get(e) == labels.get(e))
                    {
                        since = r;
                    }
                }
            }
        }
        since
    }

    fn tick(&mut self, t: EpochMs) {
        let now = match self.state.now {
            Some(n) if n >= t => n,
            _ => t,
        };
        self.state.now = Some(now);
        // keepFiringFor elapsed without a breach.
        let keep = self.policy.timing.keep_firing_for_ms;
        for inc in self.state.incidents.values_mut() {
            if inc.is_active()
                && let Some(clean) = inc.clean_since
                && now - inc.last_breach >= keep
            {
                inc.status = IncidentStatus::Resolved;
                inc.resolved_at = Some(clean.max(inc.last_breach + keep));
                self.state.changed.push(inc.clone());
            }
        }
        // No sessions on a key for noDataTimeout: its incidents end instead of reminding
        // forever about a prompt version or model nobody runs any more.
        self.resolve_gone_keys(now);
        let ids: Vec<String> = self.state.groups.keys().cloned().collect();
        for gid in ids {
            // Bounded: each step emits a mail or changes the thread; a handful per tick.
            for _ in 0..64 {
                if !self.step_group(&gid, now) {
                    break;
                }
            }
        }
        self.collect_garbage();
    }

    /// Removes resolved incidents outside any open thread, and empty groups.
    fn collect_garbage(&mut self) {
        let mut drop_ids = Vec::new();
        for g in self.state.groups.values_mut() {
            if g.thread.is_some() {
                continue;
            }
            let resolved: Vec<String> = g
                .members
                .iter()
                .filter(|id| self.state.incidents.get(*id).is_none_or(|i| !i.is_active()))
                .cloned()
                .collect();
            for id in resolved {
                g.members.remove(&id);
                drop_ids.push(id);
            }
            g.escalated.clear();
        }
        self.state
            .groups
            .retain(|_, g| g.thread.is_some() || !g.members.is_empty());
        let live: BTreeSet<&String> = self
            .state
            .groups
            .values()
            .flat_map(|g| g.members.iter().chain(g.escalated.keys()))
            .collect();
        let orphans: Vec<String> = self
            .state
            .incidents
            .keys()
            .filter(|id| !live.contains(id))
            .cloned()
            .collect();
        for id in drop_ids.into_iter().chain(orphans) {
            if !live.contains(&id) {
                self.state.incidents.remove(&id);
            }
        }
    }

    /// One step of a group's thread at `now`; returns whether something changed.
    fn step_group(&mut self, gid: &str, now: EpochMs) -> bool {
        let Some(g) = self.state.groups.get(gid) else {
            return false;
        };
        let severity = g.key.severity;
        let active: Vec<&Incident> = g
            .members
            .iter()
            .filter_map(|id| self.state.incidents.get(id))
            .filter(|i| i.is_active() && i.severity == severity)
            .collect();
        let notifiable: Vec<&Incident> = active
            .iter()
            .copied()
            .filter(|i| !self.silenced(i, now) && !self.inhibited(i))
            .collect();
        let earliest = notifiable
            .iter()
            .map(|i| self.notifiable_since(i, now))
            .min();
        let any_zt = notifiable.iter().any(|i| i.zero_tolerance);
        let notifiable_ids: Vec<String> = notifiable.iter().map(|i| i.id.clone()).collect();
        let active_empty = active.is_empty();
        let timing = self.policy.timing;

        let Some(thread) = &g.thread else {
            let Some(opened_at) = earliest else {
                return false;
            };
            let key = g.key.clone();
            let due = if any_zt {
                opened_at
            } else {
                opened_at + timing.group_wait_ms
            };
            let g = self.state.groups.get_mut(gid).expect("present");
            g.thread = Some(Thread {
                id: thread_id(&key, opened_at, self.scope),
                opened_at,
                due,
                root_sent: false,
                root_at: None,
                seq: 0,
                announced: BTreeSet::new(),
                last_mail_at: None,
                last_firing_at: None,
                stakeholder_level: None,
                stakeholder_seq: 0,
            });
            return true;
        };

        if !thread.root_sent {
            if now < thread.due {
                return false;
            }
            let Some(first) = earliest else {
                if active_empty {
                    // Everything resolved (or was held back) before anyone was told.
                    self.state.groups.get_mut(gid).expect("present").thread = None;
                    return true;
                }
                return false;
            };
            let at = thread.due.max(first);
            self.announce(gid, &notifiable_ids, at);
            self.emit(
                gid,
                NotificationKind::Firing,
                Audience::Oncall,
                at,
                &notifiable_ids,
            );
            return true;
        }

        // Root sent.
        if active_empty {
            let stakeholders_told = thread.stakeholder_level.is_some();
            let members_resolved: Vec<EpochMs> = g
                .members
                .iter()
                .filter_map(|id| self.state.incidents.get(id))
                .filter_map(|i| i.resolved_at)
                .collect();
            if members_resolved.is_empty() {
                // Every incident escalated to a more severe group: say so once that group's
                // thread has announced them, so the notice never precedes the page.
                let mut at = g.escalated.values().copied().max().unwrap_or(now);
                for id in g.escalated.keys() {
                    let Some(inc) = self.state.incidents.get(id) else {
                        continue;
                    };
                    let severe = GroupKey {
                        spec: g.key.spec.clone(),
                        objective: g.key.objective.clone(),
                        severity: inc.severity,
                    };
                    match self
                        .state
                        .groups
                        .get(&severe.id())
                        .and_then(|x| x.thread.as_ref())
                    {
                        Some(t) if t.root_sent => at = at.max(t.root_at.unwrap_or(at)),
                        Some(_) => return false,
                        None => {}
                    }
                }
                if !g.escalated.is_empty() {
                    self.emit(gid, NotificationKind::Escalated, Audience::Oncall, at, &[]);
                }
                self.close_thread(gid);
                return true;
            }
            let quiet_since = members_resolved.into_iter().max().unwrap_or(now);
            let at = quiet_since + timing.cooldown_ms;
            if now < at {
                return false;
            }
            if self.policy.resolved_notices {
                self.emit(gid, NotificationKind::Resolved, Audience::Oncall, at, &[]);
                if stakeholders_told {
                    self.emit(
                        gid,
                        NotificationKind::Recovered,
                        Audience::Stakeholder,
                        at,
                        &[],
                    );
                }
            }
            self.close_thread(gid);
            return true;
        }

        let last_mail = thread.last_mail_at.unwrap_or(thread.due);
        let last_firing = thread.last_firing_at.unwrap_or(thread.due);
        let new: Vec<&Incident> = notifiable
            .iter()
            .copied()
            .filter(|i| !thread.announced.contains(&i.id))
            .collect();
        if let Some(first_new) = new.iter().map(|i| self.notifiable_since(i, now)).min() {
            let at = first_new.max(last_mail + timing.group_interval_ms);
            if now >= at {
                let ids: Vec<String> = new.iter().map(|i| i.id.clone()).collect();
                self.announce(gid, &ids, at);
                self.emit(gid, NotificationKind::Update, Audience::Oncall, at, &ids);
                return true;
            }
        }
        if let Some(first) = earliest {
            let at = (last_firing + timing.repeat_interval_ms).max(first);
            if now >= at {
                self.announce(gid, &notifiable_ids, at);
                self.emit(gid, NotificationKind::Repeat, Audience::Oncall, at, &[]);
                return true;
            }
        }
        // Stakeholders hear after on-call, at most once per level and thread.
        if let Some((level, learned_at)) = self.sla_level(gid, &notifiable_ids)
            && thread.stakeholder_level.is_none_or(|l| l < level)
        {
            let kind = match level {
                SlaLevel::Breached => NotificationKind::Breach,
                SlaLevel::Projected => NotificationKind::ProjectedBreach,
            };
            let at = learned_at.max(last_mail);
            let g = self.state.groups.get_mut(gid).expect("present");
            g.thread.as_mut().expect("open").stakeholder_level = Some(level);
            let has_receivers = !self.stakeholder_recipients(gid).is_empty();
            if has_receivers {
                self.emit(gid, kind, Audience::Stakeholder, at, &[]);
            }
            return true;
        }
        false
    }

    fn announce(&mut self, gid: &str, ids: &[String], at: EpochMs) {
        let g = self.state.groups.get_mut(gid).expect("present");
        let t = g.thread.as_mut().expect("open");
        if !t.root_sent {
            t.root_at = Some(at);
        }
        t.root_sent = true;
        t.last_mail_at = Some(at);
        t.last_firing_at = Some(at);
        for id in ids {
            t.announced.insert(id.clone());
            if let Some(inc) = self.state.incidents.get_mut(id)
                && inc.status == IncidentStatus::Pending
            {
                inc.status = IncidentStatus::Firing;
            }
        }
    }

    fn close_thread(&mut self, gid: &str) {
        let g = self.state.groups.get_mut(gid).expect("present");
        g.thread = None;
        g.escalated.clear();
    }

    /// The SLA level stakeholders should know about (if notices of that level are on), and
    /// the event time it was learned: the window end of the finding that showed it.
    fn sla_level(&self, gid: &str, notifiable: &[String]) -> Option<(SlaLevel, EpochMs)> {
        let g = self.state.groups.get(gid)?;
        let sn = self.policy.stakeholder_notices;
        let mut best: Option<(SlaLevel, EpochMs)> = None;
        for id in notifiable {
            let Some(inc) = self.state.incidents.get(id) else {
                continue;
            };
            let learned = inc.latest.window_end;
            let level = match self.budget_view(inc, learned) {
                Some(v) if v.consumed >= 1.0 => Some(SlaLevel::Breached),
                Some(v) => v
                    .projected
                    .filter(|p| *p >= 1.0)
                    .map(|_| SlaLevel::Projected),
                None if g.key.severity == Severity::Page => Some(SlaLevel::Breached),
                None => None,
            };
            let Some(level) = level.filter(|l| match l {
                SlaLevel::Breached => sn.on_breach,
                SlaLevel::Projected => sn.on_projected_breach,
            }) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((l, t)) => level > l || (level == l && learned < t),
            };
            if better {
                best = Some((level, learned));
            }
        }
        best
    }

    /// The budget view of an incident's latest finding, if it has an error budget.
    pub fn budget_view(&self, inc: &Incident, now: EpochMs) -> Option<BudgetView> {
        let f = &inc.latest;
        let rate = f.budget_consumed?;
        let spec = self.specs.get(&inc.key.spec);
        let period = spec.map_or(28 * 86_400_000, |s| s.period_ms).max(1);
        let first = self
            .state
            .first_seen
            .get(&inc.key.spec)
            .copied()
            .unwrap_or(inc.since);
        let elapsed = (now - first).clamp(0, period);
        let consumed = rate * elapsed as f64 / period as f64;
        let projected = (elapsed > 0).then(|| consumed * period as f64 / elapsed as f64);
        // The most recent view of the burn: the tier with the shortest long window.
        let burn = f
            .burn_rates
            .iter()
            .min_by_key(|b| b.long_window_ms)
            .map(|b| b.long_rate);
        let exhaustion_at = match burn {
            Some(r) if r > 1.0 && consumed < 1.0 => {
                Some(now + ((1.0 - consumed) * period as f64 / r) as i64)
            }
            _ => None,
        };
        Some(BudgetView {
            consumed,
            consumed_so_far_rate: rate,
            projected,
            exhaustion_at,
            burn_rate: burn,
            period_ms: period,
            elapsed_ms: elapsed,
        })
    }

    fn oncall_recipients(&self, gid: &str) -> (Vec<String>, Vec<String>) {
        let Some(g) = self.state.groups.get(gid) else {
            return (Vec::new(), Vec::new());
        };
        let spec_receivers = self
            .specs
            .get(&g.key.spec)
            .map(|s| s.notify.clone())
            .unwrap_or_default();
        let receivers = self
            .policy
            .route(&self.group_labels(g), Audience::Oncall, &spec_receivers);
        let recipients = self.policy.recipients(&receivers);
        (receivers, recipients)
    }

    fn stakeholder_recipients(&self, gid: &str) -> Vec<String> {
        let Some(g) = self.state.groups.get(gid) else {
            return Vec::new();
        };
        let spec_receivers = self
            .specs
            .get(&g.key.spec)
            .map(|s| s.stakeholders.clone())
            .unwrap_or_default();
        let receivers = self.policy.route(
            &self.group_labels(g),
            Audience::Stakeholder,
            &spec_receivers,
        );
        self.policy.recipients(&receivers)
    }

    fn view(&self, g: &Group, new: &[String], now: EpochMs) -> Vec<IncidentView> {
        let mut out: Vec<IncidentView> = Vec::new();
        let ids = g.members.iter().chain(g.escalated.keys());
        for id in ids {
            let Some(inc) = self.state.incidents.get(id) else {
                continue;
            };
            let status = if g.escalated.contains_key(id) {
                ViewStatus::Escalated
            } else if !inc.is_active() {
                ViewStatus::Resolved
            } else if self.silenced(inc, now) {
                ViewStatus::Silenced
            } else if self.inhibited(inc) {
                ViewStatus::Inhibited
            } else {
                ViewStatus::Firing
            };
            out.push(IncidentView {
                id: id.clone(),
                key: inc.key.key.clone(),
                segment: inc.key.segment.clone(),
                status,
                new: new.contains(id),
                since: inc.since,
                detected: inc.detected,
                last_breach: inc.last_breach,
                resolved_at: inc.resolved_at,
                breaches: inc.breaches,
                reopened: inc.reopened,
                latest: inc.latest.clone(),
                peak: inc.peak.clone(),
                no_data: inc.no_data.clone(),
                retired: inc.retired,
                forensics: inc.forensics.clone(),
            });
        }
        out.sort_by(|a, b| {
            a.status
                .cmp(&b.status)
                .then(a.segment.is_some().cmp(&b.segment.is_some()))
                .then(
                    distance(&b.latest)
                        .partial_cmp(&distance(&a.latest))
                        .unwrap_or(std::cmp::Ordering::Equal),
                )
                .then(a.key.cmp(&b.key))
                .then(a.segment.cmp(&b.segment))
        });
        out
    }

    fn emit(
        &mut self,
        gid: &str,
        kind: NotificationKind,
        audience: Audience,
        at: EpochMs,
        new: &[String],
    ) {
        let (receivers, recipients) = match audience {
            Audience::Oncall => self.oncall_recipients(gid),
            Audience::Stakeholder => {
                let g = self.state.groups.get(gid).expect("present");
                let spec_receivers = self
                    .specs
                    .get(&g.key.spec)
                    .map(|s| s.stakeholders.clone())
                    .unwrap_or_default();
                let r = self.policy.route(
                    &self.group_labels(g),
                    Audience::Stakeholder,
                    &spec_receivers,
                );
                let a = self.policy.recipients(&r);
                (r, a)
            }
        };
        let g = self.state.groups.get(gid).expect("present");
        let thread = g.thread.as_ref().expect("open");
        let seq = match audience {
            Audience::Oncall => thread.seq,
            Audience::Stakeholder => thread.stakeholder_seq,
        };
        let root = match audience {
            Audience::Oncall => format!("<{}@slawatch>", thread.id),
            Audience::Stakeholder => format!("<{}.stakeholder@slawatch>", thread.id),
        };
        let message_id = if seq == 0 {
            root.clone()
        } else {
            match audience {
                Audience::Oncall => format!("<{}.{seq}@slawatch>", thread.id),
                Audience::Stakeholder => format!("<{}.stakeholder.{seq}@slawatch>", thread.id),
            }
        };
        let incidents = self.view(g, new, at);
        let headline = incidents
            .iter()
            .filter(|v| v.status == ViewStatus::Firing)
            .chain(incidents.iter())
            .next()
            .and_then(|v| self.state.incidents.get(&v.id));
        let budget = headline.and_then(|i| self.budget_view(i, at));
        let spec = self.specs.get(&g.key.spec);
        let n = Notification {
            id: notification_id(&thread.id, audience, seq, kind),
            kind,
            audience,
            at,
            group: g.key.clone(),
            dimension: g.dimension,
            thread_id: thread.id.clone(),
            in_reply_to: (seq > 0).then(|| root.clone()),
            references: if seq > 0 { vec![root] } else { Vec::new() },
            message_id,
            seq,
            receivers,
            recipients,
            opened_at: thread.opened_at,
            incidents,
            objective: spec.and_then(|s| s.objective(&g.key.objective)).cloned(),
            spec_labels: spec.map(|s| s.labels.clone()).unwrap_or_default(),
            agents: spec.map(|s| s.agents.clone()).unwrap_or_default(),
            budget,
            sla_level: thread.stakeholder_level,
        };
        let g = self.state.groups.get_mut(gid).expect("present");
        let t = g.thread.as_mut().expect("open");
        match audience {
            Audience::Oncall => t.seq += 1,
            Audience::Stakeholder => t.stakeholder_seq += 1,
        }
        self.state.stats.notifications += 1;
        self.state.outbox.push(n);
    }
}

/// What [`ClearSynthesizer::export`] keeps: breaching coordinates with the window end of their
/// latest breach, and the newest window end per spec.
pub type SynthesizerState = (Vec<(IncidentKey, EpochMs)>, Vec<(String, EpochMs)>);

/// Derives [`Clear`]s from findings and window closes while the pipeline has no clear stream
/// of its own: an incident coordinate that breached (ticket or page) in a window is clear at a
/// later window of its spec that closed without a breach finding for it.
///
/// Two ways to learn that windows closed: [`ClearSynthesizer::tick`] with the newest event
/// time (exact: the spec's windows up to the watermark have been evaluated), or, without
/// ticks, a finding of the same spec with a later window end. Pure; never reads the clock.
#[derive(Debug, Clone, Default)]
pub struct ClearSynthesizer {
    /// Spec → (size, step, lateness).
    windows: BTreeMap<String, (i64, i64, i64)>,
    /// Breaching coordinates → window end of their latest ticket/page breach.
    open: BTreeMap<IncidentKey, EpochMs>,
    /// Spec → newest window end seen in a finding.
    current: BTreeMap<String, EpochMs>,
}

impl ClearSynthesizer {
    /// Follows a configuration reload: the new window geometries; what it learned is kept.
    pub fn reload(&mut self, specs: &[Spec]) {
        self.windows = ClearSynthesizer::new(specs).windows;
    }

    /// A synthesizer for these specs' window geometries.
    pub fn new(specs: &[Spec]) -> ClearSynthesizer {
        ClearSynthesizer {
            windows: specs
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        (
                            s.window.size_ms,
                            s.window.step_ms,
                            s.window.allowed_lateness_ms,
                        ),
                    )
                })
                .collect(),
            ..ClearSynthesizer::default()
        }
    }

    fn clears_before(&mut self, spec: &str, end: EpochMs) -> Vec<Clear> {
        let due: Vec<IncidentKey> = self
            .open
            .iter()
            .filter(|(k, last)| k.spec == spec && **last < end)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .map(|k| {
                self.open.remove(&k);
                Clear {
                    spec: k.spec,
                    objective: k.objective,
                    key: k.key,
                    segment: k.segment,
                    window_end: end,
                    // A synthesized clear only says the window closed clean; it knows no values.
                    ..Clear::default()
                }
            })
            .collect()
    }

    /// Notes a finding; returns clears for windows of its spec that are now known to have
    /// closed clean (those before the finding's window end).
    pub fn observe(&mut self, f: &Finding) -> Vec<Clear> {
        let end = f.window_end;
        let mut out = Vec::new();
        let prev = self.current.get(&f.spec).copied();
        if let Some(p) = prev
            && end > p
        {
            out = self.clears_before(&f.spec, p);
        }
        if prev.is_none_or(|p| end > p) {
            self.current.insert(f.spec.clone(), end);
        }
        if f.verdict == Verdict::Breach && f.severity >= Severity::Ticket {
            let e = self.open.entry(IncidentKey::of_finding(f)).or_insert(end);
            *e = (*e).max(end);
        }
        out
    }

    /// The pipeline has seen records up to `max_event_time`: every window whose end the
    /// watermark passed has been evaluated. Returns clears for coordinates that did not breach
    /// in the newest such window.
    pub fn tick(&mut self, max_event_time: EpochMs) -> Vec<Clear> {
        let mut out = Vec::new();
        let specs: Vec<(String, (i64, i64, i64))> =
            self.windows.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (spec, (size, step, lateness)) in specs {
            let wm = max_event_time - lateness;
            if wm < size {
                continue;
            }
            let closed_end = (wm - size).div_euclid(step) * step + size;
            out.extend(self.clears_before(&spec, closed_end));
        }
        out
    }

    /// Coordinates currently believed to be breaching.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The state worth keeping across a restart: breaching coordinates and the newest window
    /// end per spec.
    pub fn export(&self) -> SynthesizerState {
        (
            self.open.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            self.current.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )
    }

    /// Restores what [`ClearSynthesizer::export`] returned.
    pub fn restore(&mut self, open: Vec<(IncidentKey, EpochMs)>, current: Vec<(String, EpochMs)>) {
        self.open = open.into_iter().collect();
        self.current = current.into_iter().collect();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Issue 10, item 11 ("Incidents end"): a key without sessions stops reminding.
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    /// 2026-11-01T00:00:00Z
    const T0: i64 = 1_793_491_200_000;

    /// One-hour tumbling windows: without `noDataTimeout`, a key is gone after 3 h.
    fn spec() -> Spec {
        let yaml = "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: bot-prod}\n\
                    spec:\n  selector: {agent: bot}\n  window: {size: 1h}\n  \
                    alerting: {notify: [oncall]}\n  objectives:\n    \
                    - {name: success, ratio: {good: {status: [success]}}, target: 99%}\n";
        let (mut specs, diags) = crate::spec::parse_str(yaml, "test.yaml");
        assert!(
            !crate::spec::has_errors(&diags),
            "{}",
            crate::spec::render_all(&diags)
        );
        specs.remove(0)
    }

    fn key(prompt: &str) -> Vec<(String, String)> {
        vec![
            ("agent".into(), "bot".into()),
            ("prompt_version".into(), prompt.into()),
            ("model".into(), "m-2026-09".into()),
        ]
    }

    /// A ticket breach of `success` on `prompt` for the hour ending at `end` (on-call mail
    /// only: a ticket without a budget tells stakeholders nothing).
    fn breach(prompt: &str, end: EpochMs) -> Finding {
        window_finding(key(prompt), end, Verdict::Breach)
    }

    /// A `Window` finding of `success` (spec `bot-prod`) on `key` for the hour ending at `end`.
    pub(crate) fn window_finding(
        key: Vec<(String, String)>,
        end: EpochMs,
        verdict: Verdict,
    ) -> Finding {
        let check = Check::Window;
        Finding {
            id: Finding::make_id("bot-prod", "success", check, &key, None, end - HOUR, end),
            spec: "bot-prod".into(),
            objective: "success".into(),
            check,
            dimension: Dimension::Availability,
            verdict,
            severity: Severity::Ticket,
            key,
            segment: None,
            window_start: end - HOUR,
            window_end: end,
            sessions: 200,
            observed: 0.8,
            comparator: crate::finding::Comparator::AtLeast,
            target: 0.99,
            unit: crate::finding::Unit::Ratio,
            budget_consumed: None,
            burn_rates: Vec::new(),
            exemplars: Vec::new(),
            details: Vec::new(),
            subject: None,
            message: String::new(),
            runbook: None,
            chart: None,
            drift: None,
            bound: None,
            forensics: None,
        }
    }

    fn seen(prompt: &str, at: EpochMs) -> LastSession {
        LastSession {
            spec: "bot-prod".into(),
            key: key(prompt),
            at,
        }
    }

    fn engine() -> AlertEngine {
        AlertEngine::new(Arc::new(Policy::embedded()), &[spec()])
    }

    /// sp-v1 breaches in the first hour (last session at 00:50) and is announced.
    fn failing_v1(e: &mut AlertEngine) -> Vec<Notification> {
        e.on_last_session(&seen("sp-v1", T0 + 50 * MIN));
        e.on_finding(&breach("sp-v1", T0 + HOUR));
        e.advance(T0 + HOUR + MIN)
    }

    fn v1(e: &AlertEngine) -> &Incident {
        e.incidents()
            .find(|i| i.key.key == key("sp-v1"))
            .expect("the sp-v1 incident")
    }

    #[test]
    fn a_key_without_sessions_resolves_with_the_plain_reason() {
        let mut e = engine();
        let first = failing_v1(&mut e);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, NotificationKind::Firing);
        let last = T0 + 50 * MIN;
        // Just before the default timeout (3 × the 1 h window): still firing.
        assert!(e.advance(last + 3 * HOUR - 1).is_empty());
        assert_eq!(v1(&e).status, IncidentStatus::Firing);
        assert!(e.advance(last + 3 * HOUR).is_empty());
        let inc = v1(&e);
        assert_eq!(inc.status, IncidentStatus::Resolved);
        assert_eq!(inc.resolved_at, Some(last + 3 * HOUR));
        assert_eq!(
            inc.no_data,
            Some(NoData {
                last_session: last,
                superseded_by: None
            })
        );
        // The resolved notice follows the cooldown, in the incident's thread, and says why;
        // after it, a whole day brings nothing (before: a reminder every 4 h).
        let mut later = Vec::new();
        for h in 4..=28 {
            later.extend(e.advance(last + h * HOUR));
        }
        assert_eq!(
            later.len(),
            1,
            "{:#?}",
            later.iter().map(|n| (n.kind, n.at)).collect::<Vec<_>>()
        );
        let n = &later[0];
        assert_eq!(n.kind, NotificationKind::Resolved);
        assert_eq!(n.thread_id, first[0].thread_id);
        assert_eq!(n.in_reply_to.as_deref(), Some(first[0].message_id.as_str()));
        assert_eq!(n.at, last + 3 * HOUR + e.policy().timing.cooldown_ms);
        assert_eq!(
            n.incidents[0].no_data,
            Some(NoData {
                last_session: last,
                superseded_by: None
            })
        );
        let text = crate::alerts::render::render(n, &e.policy().timing).text;
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("no sessions since 2026-11-01 00:50 UTC."),
            "{text}"
        );
        assert!(!text.contains("superseded"), "{text}");
        assert!(e.incidents().next().is_none(), "the thread closed");
    }

    #[test]
    fn a_key_with_sessions_again_before_the_timeout_is_not_resolved() {
        let mut e = engine();
        failing_v1(&mut e);
        // Sessions again at 02:30 (windows of the quiet hours had none): the clock restarts.
        e.on_last_session(&seen("sp-v1", T0 + 150 * MIN));
        assert!(e.advance(T0 + 50 * MIN + 3 * HOUR).is_empty());
        assert_eq!(v1(&e).status, IncidentStatus::Firing);
        assert_eq!(v1(&e).no_data, None);
        // Still firing, so it is reminded of (4 h after the first mail).
        let reminders = e.advance(T0 + 150 * MIN + 3 * HOUR - 1);
        assert_eq!(v1(&e).status, IncidentStatus::Firing);
        assert!(reminders.iter().all(|n| n.kind == NotificationKind::Repeat));
        e.advance(T0 + 150 * MIN + 3 * HOUR);
        assert_eq!(v1(&e).status, IncidentStatus::Resolved);
        assert_eq!(
            v1(&e).no_data.as_ref().map(|n| n.last_session),
            Some(T0 + 150 * MIN)
        );
    }

    #[test]
    fn a_newer_live_version_of_the_agent_supersedes_the_gone_key() {
        let mut e = engine();
        failing_v1(&mut e);
        // sp-v3 ran before sp-v1 stopped (not newer); sp-v2 took over and still runs.
        e.on_last_session(&seen("sp-v3", T0 + 40 * MIN));
        for h in 1..=4 {
            e.on_last_session(&seen("sp-v2", T0 + h * HOUR));
            e.advance(T0 + h * HOUR);
        }
        let nd = v1(&e).no_data.clone().expect("resolved for lack of data");
        assert_eq!(
            nd.superseded_by,
            Some(vec![("prompt_version".to_owned(), "sp-v2".to_owned())])
        );
        let n = e.advance(T0 + 5 * HOUR);
        let text = crate::alerts::render::render(&n[0], &e.policy().timing).text;
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("no sessions since 2026-11-01 00:50 UTC; superseded by prompt sp-v2."),
            "{text}"
        );
        // Another agent's or a gone key's sessions supersede nothing.
        let other = LastSession {
            spec: "bot-prod".into(),
            key: vec![
                ("agent".into(), "other-bot".into()),
                ("prompt_version".into(), "sp-v9".into()),
                ("model".into(), "m-2026-09".into()),
            ],
            at: T0 + 5 * HOUR,
        };
        e.on_last_session(&other);
        assert_eq!(
            e.successor(&seen("sp-v1", T0 + 50 * MIN), T0 + 20 * HOUR, 3 * HOUR),
            None
        );
    }

    #[test]
    fn newest_sessions_survive_a_snapshot_and_restore() {
        let mut e = engine();
        failing_v1(&mut e);
        e.on_last_session(&seen("sp-v2", T0 + 2 * HOUR));
        e.advance(T0 + 2 * HOUR);
        // What `AlertService` saves (JSON) and loads after a restart.
        let saved = serde_json::to_vec(e.state()).unwrap();
        let restored: EngineState = serde_json::from_slice(&saved).unwrap();
        assert_eq!(&restored, e.state());
        assert_eq!(restored.last_sessions.len(), 2);
        let mut r = AlertEngine::with_state(Arc::new(Policy::embedded()), &[spec()], restored);
        // Both run on the same way: the restored one resolves sp-v1 at the same instant, for
        // the same reason, and mails the same notice.
        r.on_last_session(&seen("sp-v2", T0 + 3 * HOUR));
        e.on_last_session(&seen("sp-v2", T0 + 3 * HOUR));
        let (a, b) = (e.advance(T0 + 5 * HOUR), r.advance(T0 + 5 * HOUR));
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, NotificationKind::Resolved);
        assert_eq!(
            a[0].incidents[0]
                .no_data
                .as_ref()
                .and_then(|n| n.superseded_by.clone()),
            Some(vec![("prompt_version".to_owned(), "sp-v2".to_owned())])
        );
        // A snapshot from before the field existed still loads (no newest sessions known).
        let mut old: serde_json::Value = serde_json::from_slice(&saved).unwrap();
        old.as_object_mut().unwrap().remove("last_sessions");
        let old: EngineState = serde_json::from_value(old).unwrap();
        assert!(old.last_sessions.is_empty());
        assert_eq!(old.incidents.len(), 1);
    }
}
