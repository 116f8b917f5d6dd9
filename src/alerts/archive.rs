//! The incident record: every incident episode the alert engine opened — open or resolved —
//! kept in the store with what an incident review asks: when it began (onset), which layer it
//! is in (attribution, with the spec's runbook for that layer), who was affected (the sessions
//! that count against the objective, with counts by segment and reason), and its timeline —
//! first breaching window, notifications sent, acknowledgements (silences that matched it) and
//! resolution with its reason.
//!
//! An *episode* is one life of an [`Incident`] in the engine: from the breach that created it
//! to the moment the engine forgets it (a re-breach inside the same mail thread continues the
//! episode, as the engine's `reopened` does). Its id is derived from the incident id and the
//! end of its first breaching window, so it is stable across restarts and replays.
//!
//! **Bounds** (documented in the README): resolved records are kept for [`RETENTION_MS`] of
//! event time after their resolution and at most [`MAX_RECORDS`] records in all (the oldest
//! resolved go first); an incident keeps at most [`AFFECTED_IDS_PER_INCIDENT`] affected
//! session ids — beyond that sessions are counted (total, by segment, by reason), not listed.
//! Affected batches whose incident is not open yet wait in a buffer of at most
//! [`BUFFERED_BATCHES`] batches until event time passes their window.
//!
//! Times are event times (window ends), except a mail's `sent_at`, which is when the SMTP
//! server or outbox accepted it (wall clock). Records carry ids, keys, segments, counts and
//! reasons — never a session's content.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::AlertError;
use super::incident::{Incident, IncidentKey, IncidentStatus, NoData, Notification, Silence};
use super::policy::Audience;
use crate::finding::{Finding, rfc3339_ms};
use crate::forensics::{AffectedBatch, AffectedReason, AffectedSession, Forensics, Layer};
use crate::session::EpochMs;
use crate::spec::model::{Dimension, Severity};
use crate::store::Store;
use crate::store::incidents::{Filed, IncidentArchive};
use crate::store::notify_log::{MailStatus, NotifyLog};

/// Affected session ids kept per incident; beyond, sessions are only counted.
pub const AFFECTED_IDS_PER_INCIDENT: u64 = 100_000;
/// How long (event time) a resolved incident's record is kept after its resolution: 90 days.
pub const RETENTION_MS: i64 = 90 * 86_400_000;
/// Records kept at most (the oldest resolved are deleted first).
pub const MAX_RECORDS: usize = 10_000;
/// Affected batches waiting for their incident to open.
pub const BUFFERED_BATCHES: usize = 4_096;

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Pending or firing.
    Open,
    /// Resolved.
    Resolved,
}

impl RecordStatus {
    /// `open` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Open => "open",
            RecordStatus::Resolved => "resolved",
        }
    }
}

/// Why an incident resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ResolutionReason {
    /// Clean windows for `keepFiringFor`, the first of them ending at `clean_since`.
    CleanWindows {
        #[serde(with = "rfc3339_ms")]
        clean_since: EpochMs,
    },
    /// The key had no session for `noDataTimeout`; what replaced it, if anything.
    NoData {
        #[serde(with = "rfc3339_ms")]
        last_session: EpochMs,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        superseded_by: Option<Vec<(String, String)>>,
    },
    /// A configuration reload removed its objective (or spec).
    Retired,
}

/// When and why an incident resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    #[serde(with = "rfc3339_ms")]
    pub at: EpochMs,
    #[serde(flatten)]
    pub reason: ResolutionReason,
}

/// A notification that announced the incident (the mail itself is in the notification log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationEntry {
    /// Notification id: the notification log's key.
    pub id: String,
    pub kind: super::incident::NotificationKind,
    pub audience: Audience,
    /// Event time it was due.
    #[serde(with = "rfc3339_ms")]
    pub at: EpochMs,
}

/// A silence that matched the incident while it lived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub silence_id: String,
    #[serde(with = "rfc3339_ms")]
    pub starts_at: EpochMs,
    #[serde(with = "rfc3339_ms")]
    pub ends_at: EpochMs,
    pub comment: String,
    pub created_by: String,
}

impl Acknowledgement {
    fn of(s: &Silence) -> Acknowledgement {
        Acknowledgement {
            silence_id: s.id.clone(),
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: s.comment.clone(),
            created_by: s.created_by.clone(),
        }
    }
}

/// How many sessions count against the incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AffectedCounts {
    /// Every session filed (listed or not).
    pub total: u64,
    /// Sessions whose ids are kept (at most [`AFFECTED_IDS_PER_INCIDENT`]).
    pub listed: u64,
    /// Sessions counted without their id: beyond the per-incident bound, or beyond the
    /// evaluation's per-pane cap.
    pub unlisted: u64,
    /// By the session's segment (`(none)` when the spec does not segment).
    pub by_segment: BTreeMap<String, u64>,
    /// By reason: `status:error`, `signal:resolved`, `value:duration_ms`, `violation`, `drifted:output_tokens`.
    pub by_reason: BTreeMap<String, u64>,
}

/// The short code of a reason, for counts and CSV.
pub fn reason_code(r: &AffectedReason) -> String {
    match r {
        AffectedReason::Status { status } => format!("status:{}", status.as_str()),
        AffectedReason::Signal { signal } => format!("signal:{signal}"),
        AffectedReason::Value { field, .. } => format!("value:{field}"),
        AffectedReason::Violation { .. } => "violation".to_owned(),
        AffectedReason::Drifted { feature, .. } => format!("drifted:{feature}"),
    }
}

const NO_SEGMENT: &str = "(none)";

/// One incident episode, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Episode id, `inc-` and 16 hex digits.
    pub id: String,
    /// The engine's incident id ([`IncidentKey::id`]): the same for every episode of a key.
    pub incident_id: String,
    pub spec: String,
    pub objective: String,
    pub key: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub dimension: Dimension,
    /// The highest severity it reached.
    pub severity: Severity,
    pub status: RecordStatus,
    /// Start of the first breaching window.
    #[serde(with = "rfc3339_ms")]
    pub since: EpochMs,
    /// End of the first breaching window: when it was detected.
    #[serde(with = "rfc3339_ms")]
    pub detected: EpochMs,
    /// End of the latest breaching window.
    #[serde(with = "rfc3339_ms")]
    pub last_breach: EpochMs,
    /// Windows that breached.
    pub breaches: u32,
    /// Times it came back after resolving, within its mail thread.
    pub reopened: u32,
    /// The breach finding that opened it.
    pub first_finding: Finding,
    /// The worst breach finding.
    pub peak: Finding,
    /// Onset and layer attribution, when evaluation found them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forensics: Option<Forensics>,
    /// The objective's runbook links per layer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runbooks: BTreeMap<Layer, String>,
    /// Notifications that announced it, in order.
    #[serde(default)]
    pub notifications: Vec<NotificationEntry>,
    /// Silences that matched it.
    #[serde(default)]
    pub acknowledgements: Vec<Acknowledgement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub affected: AffectedCounts,
}

/// The record id of an incident episode.
pub fn episode_id(incident_id: &str, detected: EpochMs) -> String {
    format!(
        "inc-{:016x}",
        xxh3_64(format!("{incident_id}\u{1f}{detected}").as_bytes())
    )
}

impl IncidentRecord {
    /// A record for a new episode.
    pub fn open(inc: &Incident, runbooks: BTreeMap<Layer, String>) -> IncidentRecord {
        let mut r = IncidentRecord {
            id: episode_id(&inc.id, inc.detected),
            incident_id: inc.id.clone(),
            spec: inc.key.spec.clone(),
            objective: inc.key.objective.clone(),
            key: inc.key.key.clone(),
            segment: inc.key.segment.clone(),
            dimension: inc.dimension,
            severity: inc.severity,
            status: RecordStatus::Open,
            since: inc.since,
            detected: inc.detected,
            last_breach: inc.last_breach,
            breaches: inc.breaches,
            reopened: inc.reopened,
            first_finding: inc.latest.clone(),
            peak: inc.peak.clone(),
            forensics: None,
            runbooks,
            notifications: Vec::new(),
            acknowledgements: Vec::new(),
            resolution: None,
            affected: AffectedCounts::default(),
        };
        // The first finding is kept without its forensics: the record has them once.
        r.first_finding.forensics = None;
        r.update(inc, &[]);
        r
    }

    /// Follows the engine's incident: status, severity, breaches, forensics, resolution and
    /// the silences that matched it.
    pub fn update(&mut self, inc: &Incident, silences: &[&Silence]) {
        self.severity = self.severity.max(inc.severity);
        self.last_breach = self.last_breach.max(inc.last_breach);
        self.breaches = self.breaches.max(inc.breaches);
        self.reopened = self.reopened.max(inc.reopened);
        if inc.peak.id != self.peak.id {
            self.peak = inc.peak.clone();
            self.peak.forensics = None;
        }
        if let Some(f) = &inc.forensics {
            self.forensics = Some((**f).clone());
        }
        for s in silences {
            if !self.acknowledgements.iter().any(|a| a.silence_id == s.id) {
                self.acknowledgements.push(Acknowledgement::of(s));
            }
        }
        if inc.status == IncidentStatus::Resolved {
            self.status = RecordStatus::Resolved;
            self.resolution = inc.resolved_at.map(|at| Resolution {
                at,
                reason: resolution_reason(inc),
            });
        } else {
            self.status = RecordStatus::Open;
            self.resolution = None;
        }
    }

    /// The runbook of the layer the top candidate names.
    pub fn top_runbook(&self) -> Option<(&crate::forensics::Candidate, Option<&str>)> {
        let top = self.forensics.as_ref()?.candidates.first()?;
        Some((top, self.runbooks.get(&top.layer).map(String::as_str)))
    }

    fn count(&mut self, segment: Option<&str>, reason: &str, n: u64) {
        self.affected.total += n;
        *self
            .affected
            .by_segment
            .entry(segment.unwrap_or(NO_SEGMENT).to_owned())
            .or_default() += n;
        *self
            .affected
            .by_reason
            .entry(reason.to_owned())
            .or_default() += n;
    }
}

fn resolution_reason(inc: &Incident) -> ResolutionReason {
    if inc.retired {
        return ResolutionReason::Retired;
    }
    if let Some(NoData {
        last_session,
        superseded_by,
    }) = &inc.no_data
    {
        return ResolutionReason::NoData {
            last_session: *last_session,
            superseded_by: superseded_by.clone(),
        };
    }
    ResolutionReason::CleanWindows {
        clean_since: inc.clean_since.unwrap_or(inc.last_breach),
    }
}

/// The incident records of a running alert service: kept in step with the engine, written to
/// the store, and the affected sessions filed under them.
pub struct Archive {
    store: IncidentArchive,
    /// Records of incidents the engine still holds, by record id.
    live: BTreeMap<String, IncidentRecord>,
    /// Record ids changed since the last save.
    dirty: std::collections::BTreeSet<String>,
    /// Batches whose incident is not open (yet).
    waiting: VecDeque<AffectedBatch>,
}

impl Archive {
    /// Opens the archive of a store (records of open incidents are loaded as they are needed).
    pub fn open(store: &Store) -> Result<Archive, AlertError> {
        Ok(Archive {
            store: store.incident_archive()?,
            live: BTreeMap::new(),
            dirty: Default::default(),
            waiting: VecDeque::new(),
        })
    }

    /// An archive over the same store with nothing loaded (the archive of another alert
    /// engine: a stage-2 partition's).
    pub fn sibling(&self) -> Archive {
        Archive {
            store: self.store.clone(),
            live: BTreeMap::new(),
            dirty: Default::default(),
            waiting: VecDeque::new(),
        }
    }

    /// Takes over the records of the incidents an engine restored from a stage-2 partition's
    /// snapshot holds, writing them to this store (so this instance's API shows them).
    pub fn adopt(&mut self, records: Vec<IncidentRecord>) -> Result<(), AlertError> {
        for r in records {
            self.store.put(&r.id, &r)?;
            self.live.insert(r.id.clone(), r);
        }
        Ok(())
    }

    /// The records of the incidents the engine holds, as last saved (what a stage-2
    /// partition's snapshot carries).
    pub fn live_records(&self) -> Vec<IncidentRecord> {
        self.live.values().cloned().collect()
    }

    /// Hands the live records over: they leave this store (their partition's next owner has
    /// them from its snapshot); affected sessions filed here stay.
    pub fn release(self) -> Result<(), AlertError> {
        for id in self.live.keys() {
            self.store.remove_record(id)?;
        }
        Ok(())
    }

    /// Drops the records of open incidents from this store (affected sessions stay): at the
    /// start of a `partitioned` member, whose open incidents an earlier life of it held live in
    /// their partitions' snapshots now, and come back with a partition it is assigned. Returns
    /// how many.
    pub fn drop_open(&mut self) -> Result<usize, AlertError> {
        let all: Vec<IncidentRecord> = self.store.all()?;
        let mut n = 0;
        for r in all.iter().filter(|r| r.status == RecordStatus::Open) {
            self.store.remove_record(&r.id)?;
            self.live.remove(&r.id);
            n += 1;
        }
        Ok(n)
    }

    /// The record of an engine incident, loaded or created.
    fn record_mut(
        &mut self,
        inc: &Incident,
        runbooks: impl FnOnce() -> BTreeMap<Layer, String>,
    ) -> Result<&mut IncidentRecord, AlertError> {
        let id = episode_id(&inc.id, inc.detected);
        if !self.live.contains_key(&id) {
            let r = match self.store.get::<IncidentRecord>(&id)? {
                Some(r) => r,
                None => {
                    self.dirty.insert(id.clone());
                    IncidentRecord::open(inc, runbooks())
                }
            };
            self.live.insert(id.clone(), r);
        }
        Ok(self.live.get_mut(&id).expect("present"))
    }

    /// Follows one engine incident (see [`IncidentRecord::update`]).
    pub fn follow(
        &mut self,
        inc: &Incident,
        silences: &[&Silence],
        runbooks: impl FnOnce() -> BTreeMap<Layer, String>,
    ) -> Result<(), AlertError> {
        let r = self.record_mut(inc, runbooks)?;
        let before = r.clone();
        r.update(inc, silences);
        if *r != before {
            let id = r.id.clone();
            self.dirty.insert(id);
        }
        Ok(())
    }

    /// Notes a notification under every incident it shows.
    pub fn notified(&mut self, n: &Notification) -> Result<(), AlertError> {
        for v in &n.incidents {
            let id = episode_id(&v.id, v.detected);
            if !self.live.contains_key(&id) {
                match self.store.get::<IncidentRecord>(&id)? {
                    Some(r) => {
                        self.live.insert(id.clone(), r);
                    }
                    None => continue,
                }
            }
            let r = self.live.get_mut(&id).expect("present");
            if !r.notifications.iter().any(|e| e.id == n.id) {
                r.notifications.push(NotificationEntry {
                    id: n.id.clone(),
                    kind: n.kind,
                    audience: n.audience,
                    at: n.at,
                });
                self.dirty.insert(id);
            }
        }
        Ok(())
    }

    /// Files a batch under its open incident (`open` finds the engine's incident with the
    /// batch's coordinates), or keeps it until one opens or event time passes its window.
    pub fn on_batch(
        &mut self,
        batch: AffectedBatch,
        open: impl Fn(&IncidentKey) -> Option<Incident>,
    ) -> Result<(), AlertError> {
        let key = batch_key(&batch);
        match open(&key) {
            Some(inc) if inc.detected <= batch.window_end => self.file(&inc, &batch),
            _ => {
                if self.waiting.len() >= BUFFERED_BATCHES {
                    self.waiting.pop_front();
                }
                self.waiting.push_back(batch);
                Ok(())
            }
        }
    }

    /// Files waiting batches whose incident has opened; drops those whose window ended before
    /// `now` without one (findings and batches of a window arrive together, so none will).
    pub fn file_waiting(
        &mut self,
        now: EpochMs,
        open: impl Fn(&IncidentKey) -> Option<Incident>,
    ) -> Result<(), AlertError> {
        let waiting = std::mem::take(&mut self.waiting);
        for b in waiting {
            match open(&batch_key(&b)) {
                Some(inc) if inc.detected <= b.window_end => self.file(&inc, &b)?,
                _ if b.window_end >= now => self.waiting.push_back(b),
                _ => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, inc: &Incident, batch: &AffectedBatch) -> Result<(), AlertError> {
        let id = episode_id(&inc.id, inc.detected);
        let Some(r) = self.live.get_mut(&id) else {
            // The record is created when the engine's incident is followed; a batch that
            // arrives first waits for it.
            self.waiting.push_back(batch.clone());
            return Ok(());
        };
        // The batch is one value in the store; sessions filed before are left out, and
        // those beyond the bound are counted, not listed.
        let room = AFFECTED_IDS_PER_INCIDENT.saturating_sub(r.affected.listed);
        let filed = self.store.add_affected(&id, &batch.sessions, room)?;
        for (s, filed) in batch.sessions.iter().zip(filed) {
            match filed {
                Filed::New => r.affected.listed += 1,
                Filed::NoRoom => r.affected.unlisted += 1,
                Filed::Already => continue,
            }
            r.count(s.segment.as_deref(), &reason_code(&s.reason), 1);
        }
        if batch.dropped > 0 {
            r.affected.unlisted += batch.dropped;
            r.count(batch.segment.as_deref(), "unlisted", batch.dropped);
        }
        self.dirty.insert(id);
        Ok(())
    }

    /// Writes changed records; forgets records of incidents the engine no longer holds
    /// (`held` says which incident ids it holds); applies the retention when something
    /// resolved.
    pub fn save(
        &mut self,
        now: Option<EpochMs>,
        held: impl Fn(&str) -> bool,
    ) -> Result<(), AlertError> {
        let mut resolved = false;
        for id in std::mem::take(&mut self.dirty) {
            if let Some(r) = self.live.get(&id) {
                resolved |= r.status == RecordStatus::Resolved;
                self.store.put(&id, r)?;
            }
        }
        let store = &self.store;
        self.live.retain(|id, r| {
            let keep = r.status == RecordStatus::Open || held(&r.incident_id);
            if !keep {
                store.forget_filed(id);
            }
            keep
        });
        if resolved && let Some(now) = now {
            self.retain(now)?;
        }
        Ok(())
    }

    /// Deletes resolved records older than the retention, and the oldest resolved beyond
    /// [`MAX_RECORDS`].
    fn retain(&mut self, now: EpochMs) -> Result<(), AlertError> {
        let all: Vec<IncidentRecord> = self.store.all()?;
        let mut resolved: Vec<(EpochMs, String)> = all
            .iter()
            .filter_map(|r| Some((r.resolution.as_ref()?.at, r.id.clone())))
            .collect();
        resolved.sort();
        let excess = all.len().saturating_sub(MAX_RECORDS);
        for (i, (at, id)) in resolved.iter().enumerate() {
            if (i < excess || *at + RETENTION_MS < now) && !self.live.contains_key(id) {
                self.store.remove(id)?;
            }
        }
        Ok(())
    }
}

fn batch_key(b: &AffectedBatch) -> IncidentKey {
    IncidentKey {
        spec: b.spec.clone(),
        objective: b.objective.clone(),
        key: b.key.clone(),
        segment: b.segment.clone(),
    }
}

// ------------------------------------------------------------------ reading --

/// A mail as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailFacts {
    pub recipients: Vec<String>,
    pub subject: String,
    /// `pending`, `sent` or `failed`.
    pub delivery: String,
    /// When the server or outbox accepted it (wall clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

/// One event of an incident's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// The estimated start of the change.
    Onset {
        #[serde(with = "rfc3339_ms")]
        low: EpochMs,
        #[serde(with = "rfc3339_ms")]
        high: EpochMs,
    },
    /// The first breaching window began (`at` is its start).
    FirstBreachWindow {
        #[serde(with = "rfc3339_ms")]
        window_end: EpochMs,
        finding_id: String,
    },
    /// A notification was due (`at`, event time) and mailed.
    Notified {
        notification_id: String,
        kind: super::incident::NotificationKind,
        audience: Audience,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mail: Option<MailFacts>,
    },
    /// A silence that matched it began.
    Acknowledged {
        silence_id: String,
        #[serde(with = "rfc3339_ms")]
        until: EpochMs,
        comment: String,
        created_by: String,
    },
    /// It resolved.
    Resolved {
        #[serde(flatten)]
        reason: ResolutionReason,
    },
}

/// A timeline entry: event time, and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    #[serde(with = "rfc3339_ms")]
    pub at: EpochMs,
    #[serde(flatten)]
    pub event: TimelineEvent,
}

/// An incident record with its timeline: what `/v1/incidents/{id}` and `slawatch incident
/// show` give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentReport {
    #[serde(flatten)]
    pub record: IncidentRecord,
    pub timeline: Vec<TimelineEntry>,
}

/// The timeline of a record: onset, first breach, notifications (with the notification log's
/// facts), acknowledgements and resolution, in event-time order.
pub fn timeline(
    r: &IncidentRecord,
    log: Option<&NotifyLog>,
) -> Result<Vec<TimelineEntry>, AlertError> {
    let mut out = Vec::new();
    if let Some(o) = r.forensics.as_ref().and_then(|f| f.onset.as_ref()) {
        out.push(TimelineEntry {
            at: o.at,
            event: TimelineEvent::Onset {
                low: o.low,
                high: o.high,
            },
        });
    }
    out.push(TimelineEntry {
        at: r.since,
        event: TimelineEvent::FirstBreachWindow {
            window_end: r.detected,
            finding_id: r.first_finding.id.clone(),
        },
    });
    for n in &r.notifications {
        let mail = match log {
            Some(log) => log.get(&n.id)?.map(|m| {
                let (delivery, sent_at) = match m.status {
                    MailStatus::Pending => ("pending", None),
                    MailStatus::Sent { at } => ("sent", Some(crate::time::format_rfc3339_ms(at))),
                    MailStatus::Failed { at, .. } => {
                        ("failed", Some(crate::time::format_rfc3339_ms(at)))
                    }
                };
                MailFacts {
                    recipients: m.to,
                    subject: m.subject,
                    delivery: delivery.to_owned(),
                    sent_at: if delivery == "sent" { sent_at } else { None },
                }
            }),
            None => None,
        };
        out.push(TimelineEntry {
            at: n.at,
            event: TimelineEvent::Notified {
                notification_id: n.id.clone(),
                kind: n.kind,
                audience: n.audience,
                mail,
            },
        });
    }
    for a in &r.acknowledgements {
        out.push(TimelineEntry {
            at: a.starts_at,
            event: TimelineEvent::Acknowledged {
                silence_id: a.silence_id.clone(),
                until: a.ends_at,
                comment: a.comment.clone(),
                created_by: a.created_by.clone(),
            },
        });
    }
    if let Some(res) = &r.resolution {
        out.push(TimelineEntry {
            at: res.at,
            event: TimelineEvent::Resolved {
                reason: res.reason.clone(),
            },
        });
    }
    // Stable: entries of the same time keep the order above.
    out.sort_by_key(|e| e.at);
    Ok(out)
}

/// Every stored record, newest detection first.
pub fn list(store: &Store) -> Result<Vec<IncidentRecord>, AlertError> {
    let mut all: Vec<IncidentRecord> = store.incident_archive()?.all()?;
    all.sort_by(|a, b| (b.detected, &b.id).cmp(&(a.detected, &a.id)));
    Ok(all)
}

/// One record with its timeline.
pub fn report(store: &Store, id: &str) -> Result<Option<IncidentReport>, AlertError> {
    let Some(record) = store.incident_archive()?.get::<IncidentRecord>(id)? else {
        return Ok(None);
    };
    let log = store.notify_log()?;
    let timeline = timeline(&record, Some(&log))?;
    Ok(Some(IncidentReport { record, timeline }))
}

/// The affected sessions of a record, in event-time order.
pub fn affected(
    store: &Store,
    id: &str,
) -> Result<impl Iterator<Item = Result<AffectedSession, AlertError>> + use<>, AlertError> {
    Ok(store
        .incident_archive()?
        .affected(id)
        .map(|r| r.map_err(AlertError::from)))
}

/// The CSV header of an affected export.
pub const AFFECTED_CSV_HEADER: &str = "session_id,event_time,key,segment,reason\n";

/// One affected session as a CSV line (RFC 4180 quoting).
pub fn affected_csv_line(s: &AffectedSession) -> String {
    let key = s
        .key
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let cells = [
        s.session_id.clone(),
        crate::time::format_rfc3339_ms(s.event_time),
        key,
        s.segment.clone().unwrap_or_default(),
        reason_code(&s.reason),
    ];
    let mut line = cells.map(|c| csv_cell(&c)).join(",");
    line.push('\n');
    line
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_owned()
    }
}

/// One affected session as a JSON line.
pub fn affected_json_line(s: &AffectedSession) -> String {
    let mut line = serde_json::to_string(s).expect("affected sessions serialize");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alerts::incident::AlertEngine;
    use crate::alerts::policy::Policy;
    use crate::finding::Verdict;
    use crate::session::Status;

    const HOUR: i64 = 3_600_000;
    /// 2026-11-01T00:00:00Z
    const T0: i64 = 1_793_491_200_000;

    fn engine() -> AlertEngine {
        let yaml = "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata:\n  name: bot-prod\n  \
                    runbooks: {tool: 'https://wiki.example.com/tools'}\n\
                    spec:\n  selector: {agent: bot}\n  window: {size: 1h}\n  \
                    alerting: {notify: [oncall]}\n  objectives:\n    \
                    - {name: success, ratio: {good: {status: [success]}}, target: 99%}\n";
        let (specs, diags) = crate::spec::parse_str(yaml, "test.yaml");
        assert!(
            !crate::spec::has_errors(&diags),
            "{}",
            crate::spec::render_all(&diags)
        );
        AlertEngine::new(Arc::new(Policy::embedded()), &specs)
    }

    fn key() -> Vec<(String, String)> {
        vec![("agent".into(), "bot".into())]
    }

    fn finding(end: EpochMs, verdict: Verdict) -> Finding {
        crate::alerts::incident::tests::window_finding(key(), end, verdict)
    }

    fn batch(end: EpochMs, n: usize, tag: &str) -> AffectedBatch {
        AffectedBatch {
            spec: "bot-prod".into(),
            objective: "success".into(),
            key: key(),
            segment: None,
            window_end: end,
            sessions: (0..n)
                .map(|i| AffectedSession {
                    session_id: format!("{tag}-{i:06}"),
                    event_time: end - HOUR + i as i64,
                    key: key(),
                    segment: Some(
                        if i % 4 == 0 {
                            "channel=web"
                        } else {
                            "channel=app"
                        }
                        .into(),
                    ),
                    reason: AffectedReason::Status {
                        status: Status::Error,
                    },
                })
                .collect(),
            dropped: 0,
        }
    }

    fn sync(a: &mut Archive, e: &mut AlertEngine) {
        let changed = e.take_changed();
        let live: Vec<Incident> = e.incidents().cloned().collect();
        for inc in changed.iter().chain(&live) {
            let silences = e.silences_of(inc);
            let books = e
                .spec_info("bot-prod")
                .and_then(|s| s.objective("success"))
                .map(|o| o.runbooks.clone())
                .unwrap_or_default();
            a.follow(inc, &silences, || books).unwrap();
        }
    }

    fn open_of(e: &AlertEngine) -> impl Fn(&IncidentKey) -> Option<Incident> + '_ {
        |k| {
            e.incidents()
                .find(|i| i.id == k.id() && i.is_open())
                .cloned()
        }
    }

    #[test]
    fn a_batch_that_arrives_before_its_incident_is_filed_and_counted_once_and_resolution_is_kept() {
        let store = Store::temporary().unwrap();
        let mut a = Archive::open(&store).unwrap();
        let mut e = engine();
        let end = T0 + HOUR;
        // The batch of the opening window arrives first; an older one of the same key never
        // gets an incident.
        a.on_batch(batch(end - HOUR, 3, "old"), open_of(&e))
            .unwrap();
        a.on_batch(batch(end, 10, "s"), open_of(&e)).unwrap();
        e.on_finding(&finding(end, Verdict::Breach));
        e.advance(end);
        sync(&mut a, &mut e);
        a.file_waiting(end, open_of(&e)).unwrap();
        // The same batch again (a replay): nothing new.
        a.on_batch(batch(end, 10, "s"), open_of(&e)).unwrap();
        a.save(e.now(), |_| true).unwrap();
        let list = list(&store).unwrap();
        assert_eq!(list.len(), 1);
        let r = &list[0];
        assert_eq!(
            r.id,
            episode_id(
                &IncidentKey::of_finding(&finding(end, Verdict::Breach)).id(),
                end
            )
        );
        assert_eq!(r.affected.total, 10);
        assert_eq!(r.affected.listed, 10);
        assert_eq!(r.affected.by_segment["channel=web"], 3);
        assert_eq!(r.affected.by_segment["channel=app"], 7);
        assert_eq!(r.affected.by_reason["status:error"], 10);
        assert_eq!(
            r.runbooks.get(&Layer::Tool).map(String::as_str),
            Some("https://wiki.example.com/tools")
        );
        let ids: Vec<String> = affected(&store, &r.id)
            .unwrap()
            .map(|s| s.unwrap().session_id)
            .collect();
        assert_eq!(
            ids,
            (0..10).map(|i| format!("s-{i:06}")).collect::<Vec<_>>()
        );
        assert!(
            a.waiting.is_empty(),
            "the old batch is dropped once its window passed"
        );

        // Clean windows resolve it: the record says so, with the reason.
        e.on_clear(&crate::finding::Clear {
            spec: "bot-prod".into(),
            objective: "success".into(),
            key: key(),
            segment: None,
            window_end: end + HOUR,
            ..crate::finding::Clear::default()
        });
        e.advance(end + 2 * HOUR);
        sync(&mut a, &mut e);
        a.save(e.now(), |_| false).unwrap();
        let r = report(&store, &list[0].id).unwrap().unwrap();
        assert_eq!(r.record.status, RecordStatus::Resolved);
        let res = r.record.resolution.clone().unwrap();
        assert_eq!(
            res.reason,
            ResolutionReason::CleanWindows {
                clean_since: end + HOUR
            }
        );
        assert!(matches!(
            r.timeline.last().unwrap().event,
            TimelineEvent::Resolved { .. }
        ));
        // Past the retention, a later resolution deletes it with its sessions.
        a.live.clear();
        a.retain(res.at + RETENTION_MS + 1).unwrap();
        assert!(report(&store, &list[0].id).unwrap().is_none());
        assert_eq!(affected(&store, &list[0].id).unwrap().count(), 0);
    }

    #[test]
    fn beyond_the_bound_sessions_are_counted_not_listed() {
        let store = Store::temporary().unwrap();
        let mut a = Archive::open(&store).unwrap();
        let mut e = engine();
        let end = T0 + HOUR;
        e.on_finding(&finding(end, Verdict::Breach));
        sync(&mut a, &mut e);
        let n = AFFECTED_IDS_PER_INCIDENT as usize + 5;
        let mut b = batch(end, n, "s");
        b.dropped = 7;
        a.on_batch(b, open_of(&e)).unwrap();
        a.save(e.now(), |_| true).unwrap();
        let r = &list(&store).unwrap()[0];
        assert_eq!(r.affected.listed, AFFECTED_IDS_PER_INCIDENT);
        assert_eq!(r.affected.unlisted, 5 + 7);
        assert_eq!(r.affected.total, n as u64 + 7);
        assert_eq!(
            affected(&store, &r.id).unwrap().count() as u64,
            AFFECTED_IDS_PER_INCIDENT
        );
    }
}
