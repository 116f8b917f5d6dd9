//! Turns findings into mail. The only module that imports lettre.
//!
//! With no SMTP server configured (the embedded default), mails are written as `.eml` files to
//! an outbox directory by lettre's file transport. Mails carry session ids, PII types and
//! counts only — never personal data.

use std::path::{Path, PathBuf};

use lettre::message::{Mailbox, header::ContentType};
use lettre::{FileTransport, Message, Transport};

use crate::evaluate::fmt_value;
use crate::finding::Finding;
use crate::spec::model::Severity;

/// Errors sending a notification.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("bad address `{address}`: {source}")]
    Address {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("building mail: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("writing to the outbox {dir}: {source}")]
    Outbox {
        dir: String,
        source: lettre::transport::file::Error,
    },
    #[error("creating the outbox {dir}: {source}")]
    CreateDir { dir: String, source: std::io::Error },
}

/// Sends findings somewhere people read them.
pub trait Notifier {
    /// Notifies about one finding worth a mail (page or ticket).
    fn notify(&mut self, finding: &Finding) -> Result<(), AlertError>;
}

/// Writes one `.eml` file per notification into a directory.
pub struct Outbox {
    dir: PathBuf,
    transport: FileTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
    pub sent: u64,
}

impl Outbox {
    pub fn new(dir: &Path, from: &str, to: &[String]) -> Result<Outbox, AlertError> {
        std::fs::create_dir_all(dir).map_err(|source| AlertError::CreateDir {
            dir: dir.display().to_string(),
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
            .subject(subject(f))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder.body(text_body(f))?;
        self.transport
            .send(&mail)
            .map_err(|source| AlertError::Outbox {
                dir: self.dir.display().to_string(),
                source,
            })?;
        self.sent += 1;
        Ok(())
    }
}

/// `[PAGE] support-bot-prod/latency-p99 breached on agent=…`
pub fn subject(f: &Finding) -> String {
    let sev = match f.severity {
        Severity::Page => "PAGE",
        Severity::Ticket => "TICKET",
        Severity::Info => "INFO",
    };
    let segment = f
        .segment
        .as_deref()
        .map(|s| format!(" [{s}]"))
        .unwrap_or_default();
    format!(
        "[{sev}] {}/{} breached for {}{segment}",
        f.spec,
        f.objective,
        f.key_label()
    )
}

/// A plain-text body that reads well in 80 columns.
pub fn text_body(f: &Finding) -> String {
    let mut out = String::new();
    out.push_str(&f.message);
    out.push_str("\n\n");
    let rows = [
        (
            "Objective",
            format!("{} / {} ({:?})", f.spec, f.objective, f.dimension),
        ),
        ("Key", f.key_label()),
        (
            "Segment",
            f.segment.clone().unwrap_or_else(|| "(all)".into()),
        ),
        ("Window", format!("{} .. {}", f.window_start, f.window_end)),
        (
            "Observed",
            format!(
                "{} (target {} {})",
                fmt_value(f.observed, &f.unit),
                match f.comparator {
                    crate::finding::Comparator::AtMost => "<=",
                    crate::finding::Comparator::AtLeast => ">=",
                },
                fmt_value(f.target, &f.unit)
            ),
        ),
        ("Sessions", f.sessions.to_string()),
    ];
    for (k, v) in rows {
        out.push_str(&format!("{k:<10} {v}\n"));
    }
    if let Some(b) = f.budget_consumed {
        out.push_str(&format!("{:<10} {}\n", "Budget", crate::evaluate::pct(b)));
    }
    if !f.exemplars.is_empty() {
        out.push_str(&format!("{:<10} {}\n", "Examples", f.exemplars.join(", ")));
    }
    for (label, n) in &f.details {
        out.push_str(&format!("{:<10} {label}: {n}\n", ""));
    }
    if let Some(r) = &f.runbook {
        out.push_str(&format!("{:<10} {r}\n", "Runbook"));
    }
    out.push_str(&format!("\nFinding id {}\n", f.id));
    out
}
