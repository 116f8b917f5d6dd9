//! SMTP: the configuration (URL, TLS mode, credentials), the transport that delivers recorded
//! alert mails, and `smtp-test`, which walks through a delivery one stage at a time so a
//! failure says exactly where it happened (DNS, TCP, greeting, TLS, auth, sender, recipient,
//! message).
//!
//! Security defaults: STARTTLS is required (port 587); `implicit` TLS is for port 465; a
//! plaintext connection is refused unless the server is this machine (`localhost`,
//! `127.0.0.1`, `::1`). Certificates are checked against the Mozilla roots (webpki-roots).
//! This module never decides what to send and never retries: [`super::deliver`] does.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{SmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, SmtpTransport, Transport};

use super::AlertError;
use super::deliver::{MailTransport, SendError};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only to a server on this machine.
    None,
}

impl TlsMode {
    /// `starttls`, `implicit` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        }
    }

    /// Parses `starttls`, `implicit` (or `tls`, `smtps`) or `none`.
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s.to_ascii_lowercase().as_str() {
            "starttls" => Some(TlsMode::Starttls),
            "implicit" | "tls" | "smtps" => Some(TlsMode::Implicit),
            "none" | "plaintext" => Some(TlsMode::None),
            _ => None,
        }
    }
}

/// Where and how to send mail.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server host name or IP address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: TlsMode,
    /// User for AUTH PLAIN/LOGIN, if any.
    pub user: Option<String>,
    /// Never printed (see the `Debug` impl).
    pub password: Option<String>,
    /// Per-operation network timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Whether `host` names this machine.
pub fn is_local(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    matches!(h, "localhost" | "127.0.0.1" | "::1") || h.starts_with("127.")
}

impl SmtpConfig {
    /// Parses `smtp://host[:port]` (or `smtps://host[:port]`, implicit TLS) with a TLS mode;
    /// the port defaults to 587 (465 for implicit TLS, 25 for none). Refuses plaintext to a
    /// remote host.
    pub fn from_url(url: &str, tls: TlsMode) -> Result<SmtpConfig, AlertError> {
        let bad = |why: &str| AlertError::SmtpConfig(format!("`{url}`: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected `smtp://host:port`"))?;
        let tls = match scheme {
            "smtp" => tls,
            "smtps" => TlsMode::Implicit,
            _ => return Err(bad("the scheme must be `smtp` or `smtps`")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(bad(
                "credentials do not belong in the URL: use --smtp-user and \
                 --smtp-password-file (or SLAWATCH_SMTP_PASSWORD)",
            ));
        }
        let (host, port) = if let Some(h) = rest.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
                _ => (rest.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
            None => match tls {
                TlsMode::Starttls => 587,
                TlsMode::Implicit => 465,
                TlsMode::None => 25,
            },
        };
        let cfg = SmtpConfig {
            host,
            port,
            tls,
            user: None,
            password: None,
            timeout: Duration::from_secs(15),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses plaintext to anything but this machine.
    pub fn validate(&self) -> Result<(), AlertError> {
        if self.tls == TlsMode::None && !is_local(&self.host) {
            return Err(AlertError::SmtpConfig(format!(
                "refusing to send mail in plaintext to {}: use --smtp-tls starttls (port 587) \
                 or implicit (port 465); plaintext is only allowed to localhost, 127.0.0.1 or ::1",
                self.host
            )));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(AlertError::SmtpConfig(
                "a password was given without --smtp-user".into(),
            ));
        }
        Ok(())
    }

    /// `smtp://host:port (starttls)`.
    pub fn describe(&self) -> String {
        format!("smtp://{}:{} ({})", self.host, self.port, self.tls.as_str())
    }

    fn tls_parameters(&self) -> Result<TlsParameters, AlertError> {
        TlsParameters::new(self.host.clone()).map_err(|e| AlertError::SmtpConfig(e.to_string()))
    }
}

/// Delivers recorded mails over SMTP with lettre's blocking transport.
pub struct SmtpMailer {
    transport: SmtpTransport,
    describe: String,
}

impl SmtpMailer {
    /// A transport for `cfg` (validated again here).
    pub fn new(cfg: &SmtpConfig) -> Result<SmtpMailer, AlertError> {
        cfg.validate()?;
        let mut b = match cfg.tls {
            TlsMode::Starttls => SmtpTransport::builder_dangerous(&cfg.host)
                .tls(Tls::Required(cfg.tls_parameters()?)),
            TlsMode::Implicit => {
                SmtpTransport::builder_dangerous(&cfg.host).tls(Tls::Wrapper(cfg.tls_parameters()?))
            }
            TlsMode::None => SmtpTransport::builder_dangerous(&cfg.host).tls(Tls::None),
        }
        .port(cfg.port)
        .timeout(Some(cfg.timeout));
        if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(SmtpMailer {
            transport: b.build(),
            describe: cfg.describe(),
        })
    }
}

impl MailTransport for SmtpMailer {
    fn send(&mut self, from: &str, to: &[String], raw: &[u8]) -> Result<(), SendError> {
        let perm = |m: String| SendError {
            permanent: true,
            message: m,
        };
        let from: Address = from
            .parse()
            .map_err(|e| perm(format!("bad sender `{from}`: {e}")))?;
        let to: Vec<Address> = to
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| perm(format!("bad recipient `{a}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let envelope = Envelope::new(Some(from), to).map_err(|e| perm(e.to_string()))?;
        self.transport
            .send_raw(&envelope, raw)
            .map(|_| ())
            .map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: e.to_string(),
            })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// A short plain-text mail for `slawatch smtp-test`.
pub fn test_message(
    from: &str,
    to: &str,
    date: std::time::SystemTime,
) -> Result<Vec<u8>, AlertError> {
    let parse = |a: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|source| AlertError::Address {
                address: a.to_owned(),
                source,
            })
    };
    let m = lettre::Message::builder()
        .from(parse(from)?)
        .to(parse(to)?)
        .subject("slawatch smtp-test: alert mail can reach you")
        .date(date)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(
            "This is a test from `slawatch smtp-test`. If you can read it, slawatch's alert \
             mail reaches this address.\n"
                .to_owned(),
        )?;
    Ok(m.formatted())
}

/// The stages of one SMTP delivery, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The host name resolves.
    DnsResolution,
    /// A TCP connection opens.
    TcpConnect,
    /// The server greets (`220`) and answers EHLO.
    Greeting,
    /// TLS is negotiated (STARTTLS or implicit).
    TlsHandshake,
    /// The credentials are accepted.
    Authentication,
    /// `MAIL FROM` is accepted.
    SenderAccepted,
    /// `RCPT TO` is accepted.
    RecipientAccepted,
    /// The message itself is accepted after `DATA`.
    MessageAccepted,
}

impl Stage {
    /// What the stage is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::DnsResolution => "DNS resolution",
            Stage::TcpConnect => "TCP connect",
            Stage::Greeting => "SMTP greeting",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Authentication => "authentication",
            Stage::SenderAccepted => "sender accepted (MAIL FROM)",
            Stage::RecipientAccepted => "recipient accepted (RCPT TO)",
            Stage::MessageAccepted => "message accepted (DATA)",
        }
    }
}

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageResult {
    /// Which stage.
    pub stage: Stage,
    /// Whether it passed.
    pub ok: bool,
    /// What happened (the server's answer, the addresses, …).
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// Goes through a delivery of `raw` stage by stage and stops at the first failure. The last
/// result is the failing stage, if any.
pub fn smtp_test(cfg: &SmtpConfig, from: &str, to: &str, raw: &[u8]) -> Vec<StageResult> {
    let mut out = Vec::new();
    let mut step = |stage: Stage, started: Instant, r: Result<String, String>| {
        let ok = r.is_ok();
        out.push(StageResult {
            stage,
            ok,
            detail: r.unwrap_or_else(|e| e),
            elapsed: started.elapsed(),
        });
        ok
    };
    if let Err(e) = cfg.validate() {
        step(Stage::DnsResolution, Instant::now(), Err(e.to_string()));
        return out;
    }
    // DNS.
    let t = Instant::now();
    let addrs: Vec<std::net::SocketAddr> = match (cfg.host.as_str(), cfg.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            step(
                Stage::DnsResolution,
                t,
                Err(format!("cannot resolve {}: {e}", cfg.host)),
            );
            return out;
        }
    };
    if !step(
        Stage::DnsResolution,
        t,
        if addrs.is_empty() {
            Err(format!("{} has no address", cfg.host))
        } else {
            Ok(addrs
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", "))
        },
    ) {
        return out;
    }
    // TCP.
    let t = Instant::now();
    let mut reached = None;
    let mut errors = Vec::new();
    for a in &addrs {
        match TcpStream::connect_timeout(a, cfg.timeout) {
            Ok(_) => {
                reached = Some(*a);
                break;
            }
            Err(e) => errors.push(format!("{a}: {e}")),
        }
    }
    let Some(addr) = reached else {
        step(Stage::TcpConnect, t, Err(errors.join("; ")));
        return out;
    };
    step(Stage::TcpConnect, t, Ok(format!("connected to {addr}")));
    // Greeting (and, for implicit TLS, the handshake first).
    let hello = ClientId::default();
    let tls = match cfg.tls {
        TlsMode::None => None,
        _ => match cfg.tls_parameters() {
            Ok(p) => Some(p),
            Err(e) => {
                step(Stage::TlsHandshake, Instant::now(), Err(e.to_string()));
                return out;
            }
        },
    };
    let t = Instant::now();
    let implicit = if cfg.tls == TlsMode::Implicit {
        tls.as_ref()
    } else {
        None
    };
    let mut conn = match SmtpConnection::connect(addr, Some(cfg.timeout), &hello, implicit, None) {
        Ok(c) => c,
        Err(e) => {
            let stage = if cfg.tls == TlsMode::Implicit && !e.is_response() || e.is_tls() {
                Stage::TlsHandshake
            } else {
                Stage::Greeting
            };
            step(stage, t, Err(e.to_string()));
            return out;
        }
    };
    if cfg.tls == TlsMode::Implicit {
        step(Stage::TlsHandshake, t, Ok("TLS from the first byte".into()));
    }
    step(
        Stage::Greeting,
        t,
        Ok(format!("server {}", conn.server_info().name())),
    );
    if cfg.tls == TlsMode::Starttls {
        let t = Instant::now();
        if !conn.can_starttls() {
            step(
                Stage::TlsHandshake,
                t,
                Err("the server does not offer STARTTLS, which is required by default".into()),
            );
            conn.abort();
            return out;
        }
        let params = tls.as_ref().expect("set for starttls");
        if let Err(e) = conn.starttls(params, &hello) {
            step(Stage::TlsHandshake, t, Err(e.to_string()));
            return out;
        }
        step(
            Stage::TlsHandshake,
            t,
            Ok("STARTTLS upgraded the connection".into()),
        );
    }
    if let (Some(user), Some(pass)) = (&cfg.user, &cfg.password) {
        let t = Instant::now();
        let creds = Credentials::new(user.clone(), pass.clone());
        match conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds) {
            Ok(r) => step(
                Stage::Authentication,
                t,
                Ok(format!("as {user}: {}", r.code())),
            ),
            Err(e) => {
                step(Stage::Authentication, t, Err(format!("as {user}: {e}")));
                conn.abort();
                return out;
            }
        };
    }
    let t = Instant::now();
    let from_addr: Address = match from.parse() {
        Ok(a) => a,
        Err(e) => {
            step(
                Stage::SenderAccepted,
                t,
                Err(format!("bad sender `{from}`: {e}")),
            );
            return out;
        }
    };
    match conn.command(Mail::new(Some(from_addr), vec![])) {
        Ok(r) => step(
            Stage::SenderAccepted,
            t,
            Ok(format!("{from}: {}", r.code())),
        ),
        Err(e) => {
            step(Stage::SenderAccepted, t, Err(format!("{from}: {e}")));
            conn.abort();
            return out;
        }
    };
    let t = Instant::now();
    let to_addr: Address = match to.parse() {
        Ok(a) => a,
        Err(e) => {
            step(
                Stage::RecipientAccepted,
                t,
                Err(format!("bad recipient `{to}`: {e}")),
            );
            return out;
        }
    };
    match conn.command(Rcpt::new(to_addr, vec![])) {
        Ok(r) => step(
            Stage::RecipientAccepted,
            t,
            Ok(format!("{to}: {}", r.code())),
        ),
        Err(e) => {
            step(Stage::RecipientAccepted, t, Err(format!("{to}: {e}")));
            conn.abort();
            return out;
        }
    };
    let t = Instant::now();
    let sent = conn.command(Data).and_then(|_| conn.message(raw));
    match sent {
        Ok(r) => {
            let text = r.message().collect::<Vec<_>>().join(" ");
            step(
                Stage::MessageAccepted,
                t,
                Ok(format!("{} {text}", r.code())),
            );
            let _ = conn.command(Quit);
        }
        Err(e) => {
            step(Stage::MessageAccepted, t, Err(e.to_string()));
            conn.abort();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tls_policy() {
        let c = SmtpConfig::from_url("smtp://mail.example.com", TlsMode::Starttls).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("mail.example.com", 587));
        let c = SmtpConfig::from_url("smtps://mail.example.com", TlsMode::Starttls).unwrap();
        assert_eq!((c.port, c.tls), (465, TlsMode::Implicit));
        let c = SmtpConfig::from_url("smtp://127.0.0.1:2525", TlsMode::None).unwrap();
        assert_eq!(c.port, 2525);
        assert!(SmtpConfig::from_url("smtp://[::1]:25", TlsMode::None).is_ok());
        let e = SmtpConfig::from_url("smtp://mail.example.com:25", TlsMode::None).unwrap_err();
        assert!(e.to_string().contains("plaintext"), "{e}");
        assert!(SmtpConfig::from_url("smtp://u:p@h", TlsMode::Starttls).is_err());
        assert!(SmtpConfig::from_url("http://h", TlsMode::Starttls).is_err());
        let mut c = SmtpConfig::from_url("smtp://h", TlsMode::Starttls).unwrap();
        c.password = Some("secret".into());
        c.user = Some("u".into());
        assert!(!format!("{c:?}").contains("secret"));
    }
}
