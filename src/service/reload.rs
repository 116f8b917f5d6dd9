//! Configuration reload without a restart, like Prometheus and Alertmanager: `SIGHUP` or
//! `POST /-/reload` re-reads the specs and the notification policy.
//!
//! A reload is all or nothing. The files are decoded and checked first — a bad file is refused
//! with the same positioned diagnostics as `slawatch validate` (`file:line:col`, path, what
//! would be valid) and the running configuration stays. A valid configuration is handed to the
//! loop that owns the pipeline, which applies it between two records: specs that did not change
//! keep all their state, changed ones keep what is still valid
//! ([`Pipeline::reload`](crate::pipeline::Pipeline::reload)), and the alert engine takes the
//! new policy (incidents of objectives that are gone resolve, saying why).
//!
//! The loop applies requests at its own pace: a Kafka loop polls every few hundred
//! milliseconds; a file or stdin loop at the next record. `POST /-/reload` waits a few seconds
//! for the loop and then says whether the configuration was applied or is still queued.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::alerts::policy::{Policy, PolicyError, load_policy};
use crate::metrics::Metrics;
use crate::pipeline::SpecReload;
use crate::spec::model::Spec;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    /// Spec files and directories (`--specs`).
    pub specs: Vec<PathBuf>,
    /// The notification policy (`--policy`), or the embedded one.
    pub policy: Option<PathBuf>,
}

/// A decoded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub specs: Vec<Spec>,
    pub policy: Arc<Policy>,
}

impl ConfigFiles {
    /// Reads and checks every file; on any error, every diagnostic of every file, rendered
    /// like `slawatch validate` renders them.
    pub fn load(&self) -> Result<Config, String> {
        let (specs, diags) = crate::spec::load_paths(&self.specs);
        let mut errors = String::new();
        if crate::spec::has_errors(&diags) {
            errors.push_str(&crate::spec::render_all(&diags));
            errors.push_str(&crate::spec::summary(&diags));
        } else if specs.is_empty() {
            errors.push_str(&format!("no spec found in {:?}", self.specs));
        }
        let policy = match &self.policy {
            Some(p) => match load_policy(p) {
                Ok(p) => Some(p),
                Err(PolicyError::Invalid { rendered, .. }) => {
                    push_line(&mut errors, &rendered);
                    None
                }
                Err(e) => {
                    push_line(&mut errors, &e.to_string());
                    None
                }
            },
            None => Some(Policy::embedded()),
        };
        match policy {
            Some(policy) if errors.is_empty() => Ok(Config {
                specs,
                policy: Arc::new(policy),
            }),
            _ => Err(errors),
        }
    }
}

fn push_line(errors: &mut String, text: &str) {
    if !errors.is_empty() && !errors.ends_with('\n') {
        errors.push('\n');
    }
    errors.push_str(text);
}

/// The specs in force, shared with the API (which names objectives and lists specs).
pub type SharedSpecs = Arc<RwLock<Arc<Vec<Spec>>>>;

/// What `POST /-/reload` gets back.
#[derive(Debug)]
pub enum ReloadReply {
    /// The files are not valid; the running configuration stays.
    Refused(String),
    /// Applied: what happened to each spec.
    Applied(Applied),
    /// Valid and queued; the loop applies it at the next record.
    Queued,
    /// Nothing consumes any more (a finite input has ended), so nothing is reloaded.
    Finished,
}

/// Where and how a configuration was applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Input records the loop had taken before the new configuration (it judges every later
    /// one).
    pub records: u64,
    /// What happened to each spec.
    pub specs: Vec<SpecReload>,
}

type Reply = mpsc::Sender<Applied>;

/// Reload requests from the signal handler and the API, taken by the loop that owns the
/// pipeline.
pub struct Reloader {
    files: ConfigFiles,
    hup: Arc<AtomicBool>,
    queued: Mutex<Vec<(Config, Option<Reply>)>>,
    /// Set while `queued` is not empty: the loop's check per record is one atomic load.
    waiting: AtomicBool,
    specs: SharedSpecs,
    /// Set when the loop will take no more requests.
    finished: AtomicBool,
    /// Where the outcome of every reload is reported (`slawatch_config_last_reload_*`).
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// A reloader of `files`, whose initial configuration was `initial`; `SIGHUP` requests a
    /// reload from now on.
    pub fn new(
        files: ConfigFiles,
        initial: &[Spec],
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Reloader>> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
        Ok(Arc::new(Reloader {
            files,
            hup,
            queued: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            specs: Arc::new(RwLock::new(Arc::new(initial.to_vec()))),
            finished: AtomicBool::new(false),
            metrics,
        }))
    }

    /// The specs in force (the API reads them per request).
    pub fn specs(&self) -> SharedSpecs {
        self.specs.clone()
    }

    /// `POST /-/reload`: checks the files now; a valid configuration is queued for the loop,
    /// and the reply waits up to `wait` for it to be applied. Blocking: call off the async
    /// threads.
    pub fn request(&self, wait: Duration) -> ReloadReply {
        if self.finished.load(Ordering::Acquire) {
            return ReloadReply::Finished;
        }
        let config = match self.files.load() {
            Ok(c) => c,
            Err(e) => {
                self.refused(e.clone());
                return ReloadReply::Refused(e);
            }
        };
        let (tx, rx) = mpsc::channel();
        self.enqueue(config, Some(tx));
        match rx.recv_timeout(wait) {
            Ok(applied) => ReloadReply::Applied(applied),
            Err(_) => ReloadReply::Queued,
        }
    }

    /// For the loop, between two records: the configuration to apply now, if a reload was
    /// requested (a `SIGHUP`'s files are read here; a bad one is logged and refused).
    pub fn take(&self) -> Option<Pending> {
        if self.hup.load(Ordering::Relaxed) && self.hup.swap(false, Ordering::AcqRel) {
            tracing::info!("SIGHUP: reloading the configuration");
            match self.files.load() {
                Ok(config) => self.enqueue(config, None),
                Err(e) => self.refused(e),
            }
        }
        if !self.waiting.load(Ordering::Acquire) {
            return None;
        }
        let mut queued = self.queued.lock().expect("not poisoned");
        self.waiting.store(false, Ordering::Release);
        if queued.is_empty() {
            return None;
        }
        // Only the newest configuration matters; every waiting request hears its outcome.
        let (config, reply) = queued.pop().expect("not empty");
        let mut replies: Vec<Reply> = queued.drain(..).filter_map(|(_, r)| r).collect();
        replies.extend(reply);
        Some(Pending { config, replies })
    }

    /// For the loop: `pending` is applied after `records` input records.
    pub fn applied(&self, pending: Pending, records: u64, changes: Vec<SpecReload>) {
        for c in &changes {
            tracing::info!(spec = %c.spec, change = ?c.change, records, "configuration reloaded");
        }
        let applied = Applied {
            records,
            specs: changes,
        };
        *self.specs.write().expect("not poisoned") = Arc::new(pending.config.specs);
        self.metrics.record_reload(true);
        for r in pending.replies {
            let _ = r.send(applied.clone());
        }
    }

    /// For the loop: no more requests will be taken.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    fn enqueue(&self, config: Config, reply: Option<Reply>) {
        let mut queued = self.queued.lock().expect("not poisoned");
        queued.push((config, reply));
        self.waiting.store(true, Ordering::Release);
    }

    fn refused(&self, errors: String) {
        tracing::error!(
            "reload refused; the running configuration stays:\n{}",
            errors.trim_end()
        );
        self.metrics.record_reload(false);
    }
}

/// A valid configuration waiting to be applied, and who waits for the outcome.
pub struct Pending {
    pub config: Config,
    replies: Vec<Reply>,
}
