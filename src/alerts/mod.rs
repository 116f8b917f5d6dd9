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
//! - [`archive`]: the incident record — every incident episode with its timeline, onset,
//!   layer attribution, runbooks and affected sessions, kept in the store (bounded).
//! - [`deliver`] and [`smtp`]: the I/O shell — the durable notification log in sled
//!   (`store::notify_log`), retries with backoff, SMTP (STARTTLS by default) or `.eml` files
//!   in an outbox directory when no SMTP server is configured.
//!
//! Mails carry ids, PII types, counts and labels only — never personal data.

pub mod archive;
pub mod chart;
pub mod deliver;
pub mod incident;
pub mod policy;
pub mod render;
pub mod smtp;

pub use deliver::{
    AlertService, Backoff, Clock, Deliverer, DeliveryReport, MailSettings, MailTransport,
    OutboxDir, PartAlerts, SendError, SystemClock,
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
    /// An address (sender, recipient, fallback) does not parse.
    Address {
        /// The address as given.
        address: String,
        /// Why it does not parse.
        source: lettre::address::AddressError,
    },
    #[error("building mail: {0}")]
    /// lettre could not assemble the message.
    Build(#[from] lettre::error::Error),
    #[error("{what}: {source}")]
    /// A file-system operation failed.
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    #[error(transparent)]
    /// The store (notification log, snapshots, silences) failed.
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    /// The notification policy is unreadable or invalid.
    Policy(#[from] PolicyError),
    #[error("SMTP configuration: {0}")]
    /// The SMTP options are unusable (bad URL, plaintext to a remote host, …).
    SmtpConfig(String),
    #[error("the notification log is corrupt: {0}")]
    /// A stored mail or snapshot does not decode.
    Corrupt(String),
}
