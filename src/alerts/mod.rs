//! Turns findings into incidents and incidents into alert mail that on-call engineers and
//! non-technical stakeholders trust. The only module that imports lettre.
//!
//! - [`policy`]: the `kind: NotificationPolicy` file (receivers, routes, timings, inhibition),
//!   validated with positioned diagnostics like SLA specs.
//! - [`incident`]: the pure [`AlertEngine`] — findings and clears in, [`Notification`]s out;
//!   incidents grouped by `(spec, objective, severity)` into threads, with group wait,
//!   interval, repeat, cooldown, silences and inhibition, all in event time.
//! - [`render`] and [`chart`]: subjects, 80-column text, HTML with an inline PNG chart, for
//!   two audiences (on-call and stakeholders).
//! - [`deliver`] and [`smtp`]: the I/O shell — the durable notification log in sled
//!   (`store::notify_log`), retries with backoff, SMTP (STARTTLS by default) or `.eml` files
//!   in an outbox directory when no SMTP server is configured.
//!
//! Mails carry ids, PII types, counts and labels only — never personal data.

pub mod chart;
pub mod deliver;
pub mod incident;
pub mod policy;
pub mod render;
pub mod smtp;

pub use deliver::{
    AlertService, Backoff, Clock, Deliverer, DeliveryReport, MailSettings, MailTransport,
    OutboxDir, SendError, SystemClock,
};
pub use incident::{
    AlertEngine, ClearSynthesizer, EngineState, Incident, IncidentKey, IncidentStatus,
    Notification, NotificationKind, Silence,
};
pub use policy::{Audience, Matcher, Policy, PolicyError, load_policy, parse_policy};
pub use smtp::{SmtpConfig, SmtpMailer, TlsMode};

/// Errors of the alerting shell.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("bad address `{address}`: {source}")]
    Address {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("building mail: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("SMTP configuration: {0}")]
    SmtpConfig(String),
    #[error("the notification log is corrupt: {0}")]
    Corrupt(String),
}

// ------------------------------------------------------------------ legacy --
// The lead's first placeholder API, kept because `cli/service.rs` still uses it: one plain
// `.eml` per finding, no grouping, no threads. New code uses [`AlertService`].

use std::path::{Path, PathBuf};

use lettre::message::{Mailbox, header::ContentType};
use lettre::{FileTransport, Message, Transport};

use crate::finding::Finding;

/// Sends findings somewhere people read them (legacy: use [`AlertService`]).
pub trait Notifier {
    /// Notifies about one finding worth a mail (page or ticket).
    fn notify(&mut self, finding: &Finding) -> Result<(), AlertError>;
}

/// Writes one `.eml` file per finding (legacy: use [`AlertService`]).
pub struct Outbox {
    dir: PathBuf,
    transport: FileTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Mails written so far.
    pub sent: u64,
}

impl Outbox {
    /// An outbox in `dir` sending from `from` to `to`.
    pub fn new(dir: &Path, from: &str, to: &[String]) -> Result<Outbox, AlertError> {
        std::fs::create_dir_all(dir).map_err(|source| AlertError::Io {
            what: format!("creating the outbox {}", dir.display()),
            source,
        })?;
        let parse = |a: &str| {
            a.parse::<Mailbox>().map_err(|source| AlertError::Address {
                address: a.to_owned(),
                source,
            })
        };
        Ok(Outbox {
            dir: dir.to_path_buf(),
            transport: FileTransport::new(dir),
            from: parse(from)?,
            to: to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
            sent: 0,
        })
    }
}

impl Notifier for Outbox {
    fn notify(&mut self, f: &Finding) -> Result<(), AlertError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(format!(
                "[{}] {}/{} — {}",
                policy::severity_name(f.severity).to_uppercase(),
                f.spec,
                f.objective,
                f.message
            ))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder.body(format!(
            "{}\n\nKey {}, segment {}, window {} .. {}\nFinding {}\n",
            f.message,
            f.key_label(),
            f.segment.as_deref().unwrap_or("(all)"),
            f.window_start,
            f.window_end,
            f.id
        ))?;
        self.transport.send(&mail).map_err(|e| AlertError::Io {
            what: format!("writing to the outbox {}", self.dir.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.sent += 1;
        Ok(())
    }
}
