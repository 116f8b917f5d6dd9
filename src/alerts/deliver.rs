//! The I/O shell around the alert engine: renders notifications, records them in the durable
//! notification log before sending, delivers with retries, and snapshots the engine.
//!
//! Delivery is at-least-once toward the transport and exactly-once per notification id in the
//! log: a mail is recorded as pending (keyed by its deterministic id) before any attempt and
//! marked sent as soon as the transport accepts it; a failed attempt is retried with
//! exponential backoff and full jitter; a restart re-sends only mails never marked sent. If the
//! engine re-emits a notification after a crash (its snapshot was older than the log), the log
//! already knows the id and nothing is sent twice. The one unavoidable gap — the server
//! accepted a mail but the process died before marking it — is covered by the stable
//! `Message-ID`, which mail clients deduplicate.
//!
//! Mails are delivered in the order they were recorded (a failed head blocks the queue until
//! its retry), so a thread's replies never overtake its first mail. Wall-clock time is used
//! only for retries and the `Date` header, through [`Clock`], so tests can drive it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use lettre::message::Mailbox;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::AlertError;
use super::archive::Archive;
use super::incident::{
    AlertEngine, ClearSynthesizer, EngineState, IncidentKey, Notification, Silence,
};
use super::policy::{Audience, Policy};
use super::render;
use crate::finding::{Clear, Finding, LastSession};
use crate::forensics::AffectedBatch;
use crate::metrics::Metrics;
use crate::session::EpochMs;
use crate::spec::model::Spec;
use crate::store::Store;
use crate::store::notify_log::{MailRecord, MailStatus, NotifyLog};

/// Wall-clock time for retries and `Date` headers.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits (a test clock may just move on).
    fn sleep(&self, d: Duration);
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Why a transport did not take a mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Retrying will not help (e.g. 5xx: every recipient rejected).
    pub permanent: bool,
    /// What the transport said.
    pub message: String,
}

/// Somewhere a complete RFC 5322 message can be handed to.
pub trait MailTransport: Send {
    /// Delivers `raw` from `from` to `to`.
    fn send(&mut self, from: &str, to: &[String], raw: &[u8]) -> Result<(), SendError>;
    /// What this transport is, for logs (`smtp://host:587 (starttls)`).
    fn describe(&self) -> String;
}

/// The embedded default when no SMTP server is configured: one `.eml` file per mail, named
/// after its notification id (written to a temporary name, then renamed, so a file is either
/// complete or absent, and re-delivering the same notification rewrites the same file).
#[derive(Debug, Clone)]
pub struct OutboxDir {
    dir: PathBuf,
}

impl OutboxDir {
    /// An outbox in `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<OutboxDir, AlertError> {
        std::fs::create_dir_all(dir).map_err(|source| AlertError::Io {
            what: format!("creating the outbox {}", dir.display()),
            source,
        })?;
        Ok(OutboxDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl MailTransport for OutboxDir {
    fn send(&mut self, _from: &str, _to: &[String], raw: &[u8]) -> Result<(), SendError> {
        // Used directly (not through a `Deliverer`, which names files by notification id):
        // name the file after its content.
        let name = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(raw));
        self.write(&name, raw)
    }

    fn describe(&self) -> String {
        format!("outbox {}", self.dir.display())
    }
}

impl OutboxDir {
    fn write(&self, name: &str, raw: &[u8]) -> Result<(), SendError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.eml"));
        std::fs::write(&tmp, raw)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| SendError {
                permanent: false,
                message: format!("writing {}: {e}", path.display()),
            })
    }
}

/// Retry delays: `random(0, min(cap, base × 2^attempts))` (full jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay bound of the first retry, ms.
    pub base_ms: u64,
    /// Upper bound of any delay, ms.
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 2_000,
            cap_ms: 10 * 60_000,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempts + 1`.
    pub fn delay_ms(&self, attempts: u32, rng: &mut impl Rng) -> u64 {
        let exp = self
            .base_ms
            .saturating_mul(1u64 << attempts.min(32))
            .min(self.cap_ms);
        rng.random_range(0..=exp.max(1))
    }
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Mails the transport accepted.
    pub sent: u64,
    /// Mails that failed and wait for a retry.
    pub retried: u64,
    /// Mails given up after a permanent error.
    pub failed: u64,
    /// Still pending after the round.
    pub pending: u64,
}

impl DeliveryReport {
    fn add(&mut self, o: DeliveryReport) {
        self.sent += o.sent;
        self.retried += o.retried;
        self.failed += o.failed;
        self.pending = o.pending;
    }
}

/// Sends what the log holds as pending, in order, with backoff.
pub struct Deliverer {
    metrics: Option<Arc<Metrics>>,
    log: NotifyLog,
    transport: Box<dyn MailTransport>,
    outbox: Option<OutboxDir>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    rng: StdRng,
}

impl Deliverer {
    /// A deliverer over a log and a transport.
    pub fn new(log: NotifyLog, transport: Box<dyn MailTransport>, clock: Arc<dyn Clock>) -> Self {
        let seed = clock.now_ms() as u64;
        Deliverer {
            metrics: None,
            log,
            transport,
            outbox: None,
            clock,
            backoff: Backoff::default(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A deliverer writing `.eml` files named by notification id.
    pub fn to_outbox(log: NotifyLog, outbox: OutboxDir, clock: Arc<dyn Clock>) -> Self {
        let mut d = Deliverer::new(log, Box::new(outbox.clone()), clock);
        d.outbox = Some(outbox);
        d
    }

    /// Replaces the retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The log.
    pub fn log(&self) -> &NotifyLog {
        &self.log
    }

    /// What mails go to.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// One round: tries every pending mail that is due, oldest first, and stops at the first
    /// one that must wait (to keep threads in order).
    pub fn deliver_due(&mut self) -> Result<DeliveryReport, AlertError> {
        let mut r = DeliveryReport::default();
        let pending = self.log.pending()?;
        let mut blocked = false;
        // When the oldest mail still pending after this round was recorded.
        let mut oldest: Option<i64> = None;
        for m in &pending {
            if blocked || m.next_attempt_at > self.clock.now_ms() {
                blocked = true;
                r.pending += 1;
                oldest.get_or_insert(m.recorded_at);
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&m.raw_b64)
                .map_err(|e| AlertError::Corrupt(format!("mail {}: {e}", m.id)))?;
            let result = match &self.outbox {
                Some(o) => o.write(&m.id, &raw),
                None => self.transport.send(&m.from, &m.to, &raw),
            };
            let now = self.clock.now_ms();
            match result {
                Ok(()) => {
                    self.log.mark_sent(&m.id, now)?;
                    r.sent += 1;
                }
                Err(e) if e.permanent => {
                    self.log.mark_failed(&m.id, &e.message, now)?;
                    r.failed += 1;
                }
                Err(e) => {
                    let delay = self.backoff.delay_ms(m.attempts, &mut self.rng);
                    self.log.mark_retry(&m.id, &e.message, now + delay as i64)?;
                    r.retried += 1;
                    r.pending += 1;
                    oldest.get_or_insert(m.recorded_at);
                    blocked = true;
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            let age = oldest
                .filter(|t| *t > 0)
                .map_or(0, |t| (self.clock.now_ms() - t).max(0));
            metrics.record_delivery(
                r.sent,
                r.failed,
                r.pending,
                Duration::from_millis(age as u64),
            );
        }
        Ok(r)
    }

    /// Delivers until nothing is pending or `timeout` passed, sleeping until the next retry.
    pub fn drain(&mut self, timeout: Duration) -> Result<DeliveryReport, AlertError> {
        let deadline = self.clock.now_ms() + timeout.as_millis() as i64;
        let mut total = DeliveryReport::default();
        loop {
            let r = self.deliver_due()?;
            total.add(r);
            if r.pending == 0 {
                return Ok(total);
            }
            let now = self.clock.now_ms();
            if now >= deadline {
                return Ok(total);
            }
            let next = self
                .log
                .pending()?
                .first()
                .map_or(now, |m| m.next_attempt_at);
            let wait = (next - now).clamp(10, deadline - now).max(1);
            self.clock.sleep(Duration::from_millis(wait as u64));
        }
    }
}

/// Sender and fallback recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `From:` and envelope sender.
    pub from: String,
    /// On-call recipients when routing found none.
    pub fallback_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Snapshot {
    engine: EngineState,
    /// Breaching coordinates of the clear synthesizer, by incident id.
    synth_open: Vec<(IncidentKey, EpochMs)>,
    synth_current: Vec<(String, EpochMs)>,
    /// The service checkpoint this state was saved for (`single`; 0: none).
    #[serde(default)]
    checkpoint: u64,
}

/// The incidents in the alert engine's last saved state (for the API and `slawatch query`).
pub fn stored_incidents(store: &Store) -> Result<Vec<super::Incident>, AlertError> {
    let snapshot: Snapshot = store.notify_log()?.load_state()?.unwrap_or_default();
    Ok(snapshot.engine.incidents.into_values().collect())
}

/// The engine's open incident with these coordinates.
fn open_incident(engine: &AlertEngine, k: &IncidentKey) -> Option<super::Incident> {
    engine
        .state()
        .incidents
        .get(&k.id())
        .filter(|i| i.is_open())
        .cloned()
}

/// One alert engine's state: the whole instance's (`single`, replay) or one stage-2
/// partition's (`partitioned`).
struct Slot {
    engine: AlertEngine,
    synth: ClearSynthesizer,
    dirty: bool,
    batch_end: Option<EpochMs>,
    archive: Archive,
    /// `partitioned`: the ids of the partition's mails in the log, oldest first — every pending
    /// one and the newest [`SENT_KEPT`] sent or failed ones.
    mails: Vec<String>,
}

/// Sent (or failed) mails a stage-2 partition's snapshot keeps besides the pending ones: the
/// recent history its next owner shows in incident timelines. Dedupe does not need them — a
/// restored engine is never behind the mails its snapshot marks sent.
const SENT_KEPT: usize = 32;

/// What a stage-2 partition's snapshot carries of alerting (`partitioned` topology): its
/// engine (incidents, groups, threads, timers), the records of the incidents that engine holds,
/// and its pending and recent mails with their delivery state. The member that owns the
/// partition next resumes from it, so it neither mails a decision again nor misses one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartAlerts {
    engine: Snapshot,
    records: Vec<super::archive::IncidentRecord>,
    mails: Vec<MailRecord>,
}

impl PartAlerts {
    /// Incidents of the engine.
    pub fn incidents(&self) -> impl Iterator<Item = &super::Incident> {
        self.engine.engine.incidents.values()
    }

    /// The mails it carries.
    pub fn mails(&self) -> &[MailRecord] {
        &self.mails
    }
}

/// Engine + notification log + delivery: what `slawatch run` drives.
///
/// In the `partitioned` topology ([`AlertService::set_partitioned`]) there is one engine per
/// owned stage-2 partition, and the caller says which partition the input that follows belongs
/// to ([`AlertService::focus`]); mails are recorded as decided but sent only by
/// [`AlertService::deliver_covered`], once the snapshot holding the decision is durable.
pub struct AlertService {
    metrics: Option<Arc<Metrics>>,
    /// The engine the input goes to (in `partitioned`, the focused partition's).
    slot: Slot,
    /// `partitioned`: the engines of the other owned partitions.
    parked: BTreeMap<i32, Slot>,
    /// `partitioned`: the partition of `slot`.
    focus: Option<i32>,
    partitioned: bool,
    /// A fresh engine and synthesizer with the policy and specs in force.
    blank: (AlertEngine, ClearSynthesizer),
    synthesize_clears: bool,
    deliverer: Deliverer,
    settings: MailSettings,
    from: Mailbox,
    clock: Arc<dyn Clock>,
    recorded: u64,
    /// The service checkpoint of the saved state (see [`AlertService::checkpoint_for`]).
    saved_for: u64,
}

impl AlertService {
    /// Opens the service on a store: resumes the engine snapshot and silences saved there.
    pub fn open(
        store: &Store,
        policy: Arc<Policy>,
        specs: &[Spec],
        deliverer_for: impl FnOnce(NotifyLog) -> Deliverer,
        clock: Arc<dyn Clock>,
        settings: MailSettings,
    ) -> Result<AlertService, AlertError> {
        let log = store.notify_log()?;
        let snapshot: Snapshot = log.load_state()?.unwrap_or_default();
        let blank = (
            AlertEngine::new(policy.clone(), specs),
            ClearSynthesizer::new(specs),
        );
        let mut engine = AlertEngine::with_state(policy, specs, snapshot.engine);
        let silences: Vec<Silence> = log.silences()?;
        engine.set_silences(silences);
        let mut synth = ClearSynthesizer::new(specs);
        synth.restore(snapshot.synth_open, snapshot.synth_current);
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|source| AlertError::Address {
                address: settings.from.clone(),
                source,
            })?;
        for a in &settings.fallback_to {
            a.parse::<Mailbox>().map_err(|source| AlertError::Address {
                address: a.clone(),
                source,
            })?;
        }
        Ok(AlertService {
            metrics: None,
            slot: Slot {
                engine,
                synth,
                dirty: false,
                batch_end: None,
                archive: Archive::open(store)?,
                mails: Vec::new(),
            },
            parked: BTreeMap::new(),
            focus: None,
            partitioned: false,
            blank,
            synthesize_clears: false,
            deliverer: deliverer_for(log),
            settings,
            from,
            clock,
            recorded: 0,
            saved_for: snapshot.checkpoint,
        })
    }

    /// Opens the service with the usual transports: SMTP when `smtp` is given, else `.eml`
    /// files in `outbox` (the embedded default), with the system clock.
    pub fn open_default(
        store: &Store,
        policy: Arc<Policy>,
        specs: &[Spec],
        smtp: Option<&super::smtp::SmtpConfig>,
        outbox: &Path,
        settings: MailSettings,
    ) -> Result<AlertService, AlertError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        match smtp {
            Some(cfg) => {
                let mailer = super::smtp::SmtpMailer::new(cfg)?;
                let c = clock.clone();
                AlertService::open(
                    store,
                    policy,
                    specs,
                    move |log| Deliverer::new(log, Box::new(mailer), c),
                    clock,
                    settings,
                )
            }
            None => {
                let dir = OutboxDir::new(outbox)?;
                let c = clock.clone();
                AlertService::open(
                    store,
                    policy,
                    specs,
                    move |log| Deliverer::to_outbox(log, dir, c),
                    clock,
                    settings,
                )
            }
        }
    }

    /// Derives clears from findings and window closes ([`ClearSynthesizer`]) for a source of
    /// findings without a clear stream. Off by default: the pipeline emits real clears.
    pub fn set_synthesize_clears(&mut self, on: bool) {
        self.synthesize_clears = on;
    }

    /// The engine.
    pub fn engine(&self) -> &AlertEngine {
        &self.slot.engine
    }

    /// The notification log.
    pub fn log(&self) -> &NotifyLog {
        self.deliverer.log()
    }

    /// Counts open incidents and deliveries into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        metrics.set_incidents(self.all_incidents());
        self.deliverer.metrics = Some(metrics.clone());
        self.metrics = Some(metrics);
    }

    /// Where mails go.
    pub fn describe_transport(&self) -> String {
        self.deliverer.describe()
    }

    /// Notifications recorded by this service since it was opened.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// Feeds a finding (and, when synthesizing, the clears it implies; see
    /// [`ClearSynthesizer::observe`]).
    pub fn on_finding(&mut self, f: &Finding) {
        if self.synthesize_clears {
            for c in self.slot.synth.observe(f) {
                self.slot.engine.on_clear(&c);
            }
        }
        self.slot.engine.on_finding(f);
        self.slot.dirty = true;
    }

    /// Feeds a finding from a stream without ticks (`slawatch run` today): findings arrive
    /// window close by window close, so when one with a later window end arrives, event time
    /// advances to the end of the previous batch first. Call [`AlertService::finish_batch`] at
    /// the end of the stream.
    pub fn observe(&mut self, f: &Finding) -> Result<usize, AlertError> {
        let e = f.window_end;
        let mut recorded = 0;
        if let Some(b) = self.slot.batch_end
            && e > b
        {
            recorded = self.advance(b)?;
        }
        self.on_finding(f);
        self.slot.batch_end = Some(self.slot.batch_end.map_or(e, |b| b.max(e)));
        Ok(recorded)
    }

    /// Advances to the end of the last batch [`AlertService::observe`] saw, and checkpoints.
    pub fn finish_batch(&mut self) -> Result<usize, AlertError> {
        let recorded = match self.slot.batch_end {
            Some(b) => self.advance(b)?,
            None => 0,
        };
        self.checkpoint()?;
        Ok(recorded)
    }

    /// A configuration reload ([`AlertEngine::reload`]); the clear synthesizer follows the
    /// new windows. Resolutions it causes are mailed at the next advance.
    pub fn reload(&mut self, policy: Arc<Policy>, specs: &[Spec]) {
        self.blank.0.reload(policy.clone(), specs);
        self.blank.1.reload(specs);
        for slot in std::iter::once(&mut self.slot).chain(self.parked.values_mut()) {
            slot.engine.reload(policy.clone(), specs);
            slot.synth.reload(specs);
            slot.dirty = true;
        }
    }

    /// Feeds a clear from the pipeline.
    pub fn on_clear(&mut self, c: &Clear) {
        self.slot.engine.on_clear(c);
        self.slot.dirty = true;
    }

    /// Feeds a key's newest session from the pipeline (see [`AlertEngine::on_last_session`]).
    pub fn on_last_session(&mut self, s: &LastSession) {
        self.slot.engine.on_last_session(s);
        self.slot.dirty = true;
    }

    /// The pipeline has seen records up to `max_event_time`: (when synthesizing) derives the
    /// clears of every closed window, then advances to `watermark`.
    pub fn tick(
        &mut self,
        max_event_time: EpochMs,
        watermark: EpochMs,
    ) -> Result<usize, AlertError> {
        if self.synthesize_clears {
            let clears = self.slot.synth.tick(max_event_time);
            if !clears.is_empty() {
                self.slot.dirty = true;
            }
            for c in clears {
                self.slot.engine.on_clear(&c);
            }
        }
        self.advance(watermark)
    }

    /// Files a batch of affected sessions under the open incident with the same coordinates
    /// (or keeps it until that incident opens; see [`Archive::on_batch`]).
    pub fn on_affected(&mut self, batch: AffectedBatch) -> Result<(), AlertError> {
        self.sync_archive()?;
        let engine = &self.slot.engine;
        self.slot
            .archive
            .on_batch(batch, |k| open_incident(engine, k))
    }

    /// Brings the incident archive in step with the engine: incidents that opened, came back or
    /// resolved (even those the engine then forgot), and every live one.
    fn sync_archive(&mut self) -> Result<(), AlertError> {
        let changed = self.slot.engine.take_changed();
        let engine = &self.slot.engine;
        for inc in changed.iter().chain(engine.incidents()) {
            let silences = engine.silences_of(inc);
            let runbooks = || {
                engine
                    .spec_info(&inc.key.spec)
                    .and_then(|s| s.objective(&inc.key.objective))
                    .map(|o| o.runbooks.clone())
                    .unwrap_or_default()
            };
            self.slot.archive.follow(inc, &silences, runbooks)?;
        }
        Ok(())
    }

    /// Reloads silences from the store (after `slawatch silence` changed them).
    pub fn reload_silences(&mut self) -> Result<(), AlertError> {
        let s: Vec<Silence> = self.log().silences()?;
        for slot in std::iter::once(&mut self.slot).chain(self.parked.values_mut()) {
            slot.engine.set_silences(s.clone());
        }
        Ok(())
    }

    /// Advances event time: renders and records every due notification, snapshots the engine,
    /// then delivers what is due. Returns how many notifications were recorded.
    pub fn advance(&mut self, now: EpochMs) -> Result<usize, AlertError> {
        let ns = self.slot.engine.advance(now);
        if let Some(m) = &self.metrics {
            m.set_incidents(self.all_incidents());
        }
        self.sync_archive()?;
        let mut recorded = 0;
        for n in &ns {
            if self.record(n)? {
                recorded += 1;
                self.slot.archive.notified(n)?;
            }
        }
        let engine = &self.slot.engine;
        self.slot
            .archive
            .file_waiting(now, |k| open_incident(engine, k))?;
        let held = |id: &str| engine.incidents().any(|i| i.id == id);
        self.slot.archive.save(engine.now(), held)?;
        // A partitioned member's engines are saved in their partitions' snapshots (and, for
        // readers of the store, at its checkpoints).
        if (!ns.is_empty() || self.slot.dirty) && !self.partitioned {
            self.save()?;
        }
        if !ns.is_empty() {
            self.log().flush()?;
            // Partitioned: a mail waits for the snapshot that holds its decision.
            if !self.partitioned {
                self.deliverer.deliver_due()?;
            }
        }
        self.recorded += recorded as u64;
        Ok(recorded)
    }

    /// Renders one notification and records it as pending (a no-op if its id is known).
    fn record(&mut self, n: &Notification) -> Result<bool, AlertError> {
        if self.log().get(&n.id)?.is_some() {
            return Ok(false);
        }
        let to: Vec<String> = if n.recipients.is_empty() && n.audience == Audience::Oncall {
            self.settings.fallback_to.clone()
        } else {
            n.recipients.clone()
        };
        if to.is_empty() {
            return Ok(false);
        }
        let mailboxes: Vec<Mailbox> = to
            .iter()
            .map(|a| {
                a.parse().map_err(|source| AlertError::Address {
                    address: a.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let mail = render::render(n, &self.slot.engine.policy().timing);
        let date = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms().max(0) as u64);
        let message = render::build_message(n, &mail, &self.from, &mailboxes, date)?;
        let raw = message.formatted();
        let rec = MailRecord {
            id: n.id.clone(),
            seq: 0,
            due_at: n.at,
            from: self.settings.from.clone(),
            to,
            subject: mail.subject,
            message_id: n.message_id.clone(),
            raw_b64: base64::engine::general_purpose::STANDARD.encode(raw),
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            recorded_at: self.clock.now_ms(),
            partition: self.focus,
        };
        let new = self.log().record(&rec)?;
        if new && self.focus.is_some() {
            self.slot.mails.push(rec.id);
        }
        Ok(new)
    }

    fn save(&mut self) -> Result<(), AlertError> {
        let snap = if self.partitioned {
            // For readers of the store (`/v1/status`) only: the incidents of every partition
            // owned here. A partitioned member never resumes from it.
            let mut state = self.blank.0.state().clone();
            state.incidents = self
                .all_incidents()
                .map(|i| (i.id.clone(), i.clone()))
                .collect();
            Snapshot {
                engine: state,
                ..Snapshot::default()
            }
        } else {
            let (synth_open, synth_current) = self.slot.synth.export();
            Snapshot {
                engine: self.slot.engine.state().clone(),
                synth_open,
                synth_current,
                checkpoint: self.saved_for,
            }
        };
        self.log().save_state(&snap)?;
        self.slot.dirty = false;
        Ok(())
    }

    /// Brings the focused engine's incident records up to date in the store.
    fn save_archive(&mut self) -> Result<(), AlertError> {
        self.sync_archive()?;
        let engine = &self.slot.engine;
        let held = |id: &str| engine.incidents().any(|i| i.id == id);
        self.slot.archive.save(engine.now(), held)
    }

    /// The service checkpoint the saved state is of (0: none).
    pub fn saved_for(&self) -> u64 {
        self.saved_for
    }

    /// [`AlertService::checkpoint`] for service checkpoint `serial`, named in the saved state.
    pub fn checkpoint_for(&mut self, serial: u64) -> Result<(), AlertError> {
        self.saved_for = serial;
        self.checkpoint()
    }

    /// Saves the engine snapshot and makes the log durable.
    pub fn checkpoint(&mut self) -> Result<(), AlertError> {
        self.save()?;
        let owned: Vec<i32> = self
            .focus
            .into_iter()
            .chain(self.parked.keys().copied())
            .collect();
        if owned.is_empty() {
            self.save_archive()?;
        }
        for p in owned {
            self.focus(p)?;
            self.save_archive()?;
        }
        self.log().flush()?;
        Ok(())
    }

    /// Every incident of every engine.
    fn all_incidents(&self) -> impl Iterator<Item = &super::Incident> {
        std::iter::once(&self.slot)
            .chain(self.parked.values())
            .flat_map(|s| s.engine.incidents())
    }

    /// Whether this is a `partitioned` member's alerting.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Makes this the alerting of a `partitioned` member: from now on there is one engine per
    /// owned stage-2 partition ([`AlertService::adopt`], [`AlertService::release`]), mails are
    /// sent only by [`AlertService::deliver_covered`], and the instance's own engine snapshot
    /// is not resumed. Pending mails of partitions that an earlier life of this instance
    /// recorded are forgotten: whoever owns their partition now sends them (its snapshot has
    /// every decision a checkpoint covered; the rest are decided again). So are the records of
    /// open incidents (`/v1/incidents` would show them open forever): they come back with
    /// their partition's snapshot, here or at its owner.
    pub fn set_partitioned(&mut self) -> Result<(), AlertError> {
        let forgotten = self.log().forget_pending_of_partitions()?;
        let dropped = self.slot.archive.drop_open()?;
        if forgotten > 0 || dropped > 0 {
            tracing::info!(
                mails = forgotten,
                incidents = dropped,
                "pending mails and open incidents of stage-2 partitions left to their owners"
            );
        }
        self.slot = self.fresh_slot(None)?;
        self.parked.clear();
        self.focus = None;
        self.partitioned = true;
        Ok(())
    }

    /// A fresh engine for partition `p` (or none), with this instance's silences.
    fn fresh_slot(&self, p: Option<i32>) -> Result<Slot, AlertError> {
        let mut engine = self.blank.0.clone();
        if let Some(p) = p {
            engine = engine.with_scope(p);
        }
        engine.set_silences(self.log().silences()?);
        Ok(Slot {
            engine,
            synth: self.blank.1.clone(),
            dirty: false,
            batch_end: None,
            archive: self.slot.archive.sibling(),
            mails: Vec::new(),
        })
    }

    /// `partitioned`: the input that follows (findings, clears, sessions, affected batches,
    /// advances) is of stage-2 partition `p`.
    pub fn focus(&mut self, p: i32) -> Result<(), AlertError> {
        if self.focus == Some(p) {
            return Ok(());
        }
        let next = match self.parked.remove(&p) {
            Some(slot) => slot,
            None => self.fresh_slot(Some(p))?,
        };
        let previous = std::mem::replace(&mut self.slot, next);
        if let Some(q) = self.focus {
            self.parked.insert(q, previous);
        }
        self.focus = Some(p);
        Ok(())
    }

    /// `partitioned`: stage-2 partition `p` is owned here from now on, with the alert state of
    /// its snapshot (`None`: a partition without one starts fresh). Its incident records join
    /// this store and its mails this log (pending ones to be sent here).
    pub fn adopt(&mut self, p: i32, state: Option<PartAlerts>) -> Result<(), AlertError> {
        let mut slot = self.fresh_slot(Some(p))?;
        if let Some(state) = state {
            // Silences are this instance's (`slawatch silence` writes them to its store).
            let silences = slot.engine.state().silences.clone();
            slot.engine = slot.engine.resumed(state.engine.engine);
            slot.engine.set_silences(silences);
            slot.synth
                .restore(state.engine.synth_open, state.engine.synth_current);
            slot.archive.adopt(state.records)?;
            for m in &state.mails {
                self.log().adopt(m)?;
            }
            self.log().flush()?;
            slot.mails = state.mails.into_iter().map(|m| m.id).collect();
        }
        if self.focus == Some(p) {
            self.slot = slot;
        } else {
            self.parked.insert(p, slot);
        }
        if let Some(m) = &self.metrics {
            m.set_incidents(self.all_incidents());
        }
        Ok(())
    }

    /// `partitioned`: stage-2 partition `p` went to another member, which resumes from its
    /// snapshot: its engine is dropped, its live incident records leave this store and its
    /// pending mails this log.
    pub fn release(&mut self, p: i32) -> Result<(), AlertError> {
        let slot = if self.focus == Some(p) {
            self.focus = None;
            let placeholder = self.fresh_slot(None)?;
            std::mem::replace(&mut self.slot, placeholder)
        } else {
            match self.parked.remove(&p) {
                Some(slot) => slot,
                None => return Ok(()),
            }
        };
        for id in &slot.mails {
            self.log().forget_pending(id)?;
        }
        slot.archive.release()?;
        self.log().flush()?;
        if let Some(m) = &self.metrics {
            m.set_incidents(self.all_incidents());
        }
        Ok(())
    }

    /// `partitioned`: the alert state of stage-2 partition `p`, for its snapshot.
    pub fn export(&mut self, p: i32) -> Result<PartAlerts, AlertError> {
        self.focus(p)?;
        self.save_archive()?;
        let mut mails = Vec::new();
        for id in &self.slot.mails {
            if let Some(m) = self.log().get(id)? {
                mails.push(m);
            }
        }
        // Every pending mail, and the newest sent ones.
        let done = mails
            .iter()
            .filter(|m| m.status != MailStatus::Pending)
            .count();
        let mut skip = done.saturating_sub(SENT_KEPT);
        mails.retain(|m| {
            if m.status != MailStatus::Pending && skip > 0 {
                skip -= 1;
                return false;
            }
            true
        });
        self.slot.mails = mails.iter().map(|m| m.id.clone()).collect();
        let (synth_open, synth_current) = self.slot.synth.export();
        Ok(PartAlerts {
            engine: Snapshot {
                engine: self.slot.engine.state().clone(),
                synth_open,
                synth_current,
                checkpoint: 0,
            },
            records: self.slot.archive.live_records(),
            mails,
        })
    }

    /// `partitioned`: one delivery round over what the log holds as pending — every mail
    /// there was decided before the snapshots the caller just made durable. Returns the
    /// partitions whose mails changed state (sent or given up): their marks belong in a
    /// snapshot too, before anyone else can own them.
    pub fn deliver_covered(&mut self) -> Result<BTreeSet<i32>, AlertError> {
        let before = self.log().pending()?;
        if before.is_empty() {
            return Ok(BTreeSet::new());
        }
        self.deliverer.deliver_due()?;
        let mut changed = BTreeSet::new();
        for m in before {
            let now = self.log().get(&m.id)?;
            if let Some(p) = m.partition
                && now.is_none_or(|n| n.status != MailStatus::Pending)
            {
                changed.insert(p);
            }
        }
        Ok(changed)
    }

    /// One delivery round.
    pub fn deliver(&mut self) -> Result<DeliveryReport, AlertError> {
        self.deliverer.deliver_due()
    }

    /// Delivers until nothing is pending or `timeout` passed.
    pub fn drain(&mut self, timeout: Duration) -> Result<DeliveryReport, AlertError> {
        self.deliverer.drain(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock that moves only when told to (or when asked to sleep).
    struct FakeClock(Mutex<i64>);

    impl Clock for FakeClock {
        fn now_ms(&self) -> i64 {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, d: Duration) {
            *self.0.lock().unwrap() += d.as_millis() as i64;
        }
    }

    struct Flaky {
        fail_first: u32,
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl MailTransport for Flaky {
        fn send(&mut self, _f: &str, to: &[String], _raw: &[u8]) -> Result<(), SendError> {
            let mut c = self.calls.lock().unwrap();
            c.push(to.join(","));
            if (c.len() as u32) <= self.fail_first {
                return Err(SendError {
                    permanent: false,
                    message: "connection refused".into(),
                });
            }
            if to.iter().any(|t| t.starts_with("reject")) {
                return Err(SendError {
                    permanent: true,
                    message: "550 no such user".into(),
                });
            }
            Ok(())
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn rec(id: &str, to: &str) -> MailRecord {
        MailRecord {
            id: id.into(),
            seq: 0,
            due_at: 0,
            from: "a@b.c".into(),
            to: vec![to.into()],
            subject: id.into(),
            message_id: format!("<{id}@slawatch>"),
            raw_b64: base64::engine::general_purpose::STANDARD.encode(b"x"),
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            recorded_at: 0,
            partition: None,
        }
    }

    #[test]
    fn retries_with_backoff_in_order_and_gives_up_on_permanent_errors() {
        let store = Store::temporary().unwrap();
        let log = store.notify_log().unwrap();
        for (id, to) in [("1", "x@y.z"), ("2", "reject@y.z"), ("3", "x@y.z")] {
            log.record(&rec(id, to)).unwrap();
        }
        let calls = Arc::new(Mutex::new(Vec::new()));
        let clock = Arc::new(FakeClock(Mutex::new(1_000_000)));
        let mut d = Deliverer::new(
            log,
            Box::new(Flaky {
                fail_first: 3,
                calls: calls.clone(),
            }),
            clock.clone(),
        )
        .with_backoff(Backoff {
            base_ms: 100,
            cap_ms: 1_000,
        });
        let r = d.deliver_due().unwrap();
        assert_eq!((r.sent, r.retried, r.pending), (0, 1, 3));
        let r = d.drain(Duration::from_secs(60)).unwrap();
        assert_eq!((r.sent, r.failed, r.pending), (2, 1, 0));
        // Three failed attempts at the head, then 1, 2, 3 in order.
        let c = calls.lock().unwrap().clone();
        assert_eq!(c.len(), 6, "{c:?}");
        assert_eq!(&c[3..], ["x@y.z", "reject@y.z", "x@y.z"]);
        let head = d.log().get("1").unwrap().unwrap();
        assert_eq!(head.attempts, 3);
        assert!(matches!(head.status, MailStatus::Sent { .. }));
        assert!(matches!(
            d.log().get("2").unwrap().unwrap().status,
            MailStatus::Failed { .. }
        ));
        // Waited at most the capped backoff per attempt.
        assert!(clock.now_ms() - 1_000_000 <= 100 + 200 + 400 + 50);
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let b = Backoff {
            base_ms: 100,
            cap_ms: 1_000,
        };
        let mut rng = StdRng::seed_from_u64(7);
        for attempts in 0..40 {
            let d = b.delay_ms(attempts, &mut rng);
            assert!(d <= (100u64 << attempts.min(10)).min(1_000));
        }
    }
}
