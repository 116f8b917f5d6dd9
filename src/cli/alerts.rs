//! Command-line pieces of alerting: the SMTP options shared by `run` and `smtp-test`,
//! `slawatch smtp-test --to ADDR` (a delivery walked through stage by stage), and
//! `slawatch silence add|list|expire` (silences kept in the data directory's store).
//!
//! Only argument handling, printing and exit codes live here; mail itself is built and sent by
//! `crate::alerts` (the only module that imports lettre). The SMTP password is never a flag:
//! it is read from `--smtp-password-file` or the `SLAWATCH_SMTP_PASSWORD` variable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};

use crate::alerts::incident::Silence;
use crate::alerts::policy::Matcher;
use crate::alerts::smtp::{self, SmtpConfig, Stage, TlsMode};
use crate::duration::{format_duration_ms, parse_duration_ms};
use crate::store::Store;
use crate::time::{format_minute, format_rfc3339_ms, parse_rfc3339_ms};

/// Environment variable holding the SMTP password (when no password file is given).
pub const PASSWORD_ENV: &str = "SLAWATCH_SMTP_PASSWORD";

fn parse_tls(s: &str) -> Result<TlsMode, String> {
    TlsMode::parse(s).ok_or_else(|| format!("`{s}`: expected `starttls`, `implicit` or `none`"))
}

/// Where alert mail goes. Every option can also come from the environment.
#[derive(Debug, Clone, Args)]
pub struct SmtpArgs {
    /// SMTP server, e.g. `smtp://mail.example.com:587` (`smtps://host` for implicit TLS on
    /// 465). Without it, mail is written as `.eml` files to the outbox in the data directory.
    #[arg(long, env = "SLAWATCH_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// `starttls` (required, the default), `implicit` (TLS from the first byte, port 465) or
    /// `none` (plaintext: only to localhost, 127.0.0.1 or ::1).
    #[arg(long, env = "SLAWATCH_SMTP_TLS", default_value = "starttls", value_parser = parse_tls)]
    pub smtp_tls: TlsMode,
    /// User to authenticate as (PLAIN or LOGIN, only over TLS unless the server is local).
    #[arg(long, env = "SLAWATCH_SMTP_USER")]
    pub smtp_user: Option<String>,
    /// File whose first line is the SMTP password (else `SLAWATCH_SMTP_PASSWORD`).
    #[arg(long, env = "SLAWATCH_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    /// Sender of alert mail.
    #[arg(long, env = "SLAWATCH_MAIL_FROM", default_value = "slawatch@localhost")]
    pub mail_from: String,
    /// Network timeout per SMTP operation, e.g. `15s`.
    #[arg(long, default_value = "15s", value_parser = parse_timeout)]
    pub smtp_timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(format!("`{s}`: expected a duration like `15s`")),
    }
}

impl SmtpArgs {
    /// The password, from the file or the environment (never from a flag).
    pub fn password(&self) -> Result<Option<String>> {
        if let Some(p) = &self.smtp_password_file {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the SMTP password file {}", p.display()))?;
            let pw = text.lines().next().unwrap_or("").trim_end().to_owned();
            if pw.is_empty() {
                bail!("the SMTP password file {} is empty", p.display());
            }
            return Ok(Some(pw));
        }
        Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
    }

    /// The SMTP configuration, or `None` when no server is configured (outbox).
    pub fn config(&self) -> Result<Option<SmtpConfig>> {
        let Some(url) = &self.smtp_url else {
            if self.smtp_user.is_some() {
                bail!("--smtp-user was given without --smtp-url");
            }
            return Ok(None);
        };
        let mut cfg = SmtpConfig::from_url(url, self.smtp_tls)?;
        cfg.user = self.smtp_user.clone();
        cfg.password = self.password()?;
        if cfg.user.is_some() && cfg.password.is_none() {
            bail!(
                "--smtp-user needs a password: --smtp-password-file FILE or the {PASSWORD_ENV} \
                 environment variable"
            );
        }
        cfg.timeout = self.smtp_timeout;
        cfg.validate()?;
        Ok(Some(cfg))
    }
}

/// `slawatch smtp-test`.
#[derive(Debug, Clone, Args)]
pub struct SmtpTestArgs {
    #[command(flatten)]
    pub smtp: SmtpArgs,
    /// Where to send the test mail.
    #[arg(long)]
    pub to: String,
}

fn hint(stage: Stage, cfg: &SmtpConfig) -> String {
    match stage {
        Stage::DnsResolution => format!("check the host name in --smtp-url (`{}`)", cfg.host),
        Stage::TcpConnect => format!(
            "is the server up and listening on port {}? 587 is STARTTLS, 465 implicit TLS; a \
             firewall may block outgoing SMTP",
            cfg.port
        ),
        Stage::Greeting => "the server did not answer like an SMTP server: for implicit TLS \
                            use --smtp-tls implicit (port 465)"
            .into(),
        Stage::TlsHandshake => "without STARTTLS, try --smtp-tls implicit (port 465); with a \
                                certificate error, the server's certificate must be valid for \
                                the host name in --smtp-url"
            .into(),
        Stage::Authentication => {
            format!("check --smtp-user and the password (--smtp-password-file or {PASSWORD_ENV})")
        }
        Stage::SenderAccepted => {
            "the server refuses the sender: use a --mail-from it lets you send as".into()
        }
        Stage::RecipientAccepted => {
            "the server refuses the recipient: check the address, or whether the server relays \
             for you"
                .into()
        }
        Stage::MessageAccepted => {
            "the server refused the message itself (size, content policy or spam filter)".into()
        }
    }
}

/// `slawatch smtp-test --to ADDR`: sends one test mail stage by stage and says which stage
/// failed (DNS, TCP, greeting, TLS, auth, sender, recipient, message).
pub fn smtp_test(args: &SmtpTestArgs) -> Result<ExitCode> {
    let cfg = args.smtp.config()?.ok_or_else(|| {
        anyhow!("no SMTP server to test: give --smtp-url (or set SLAWATCH_SMTP_URL)")
    })?;
    let raw = smtp::test_message(&args.smtp.mail_from, &args.to, SystemTime::now())?;
    println!(
        "smtp-test: {} · from {} to {}",
        cfg.describe(),
        args.smtp.mail_from,
        args.to
    );
    let results = smtp::smtp_test(&cfg, &args.smtp.mail_from, &args.to, &raw);
    for r in &results {
        println!(
            "  {} {:<30} {:>6} ms  {}",
            if r.ok { "ok  " } else { "FAIL" },
            r.stage.describe(),
            r.elapsed.as_millis(),
            r.detail
        );
    }
    match results.last() {
        Some(last) if last.ok && last.stage == Stage::MessageAccepted => {
            println!("ok: the server accepted the test mail for {}", args.to);
            Ok(ExitCode::SUCCESS)
        }
        Some(last) => {
            eprintln!(
                "error: {} failed: {}\n  hint: {}",
                last.stage.describe(),
                last.detail,
                hint(last.stage, &cfg)
            );
            Ok(ExitCode::FAILURE)
        }
        None => bail!("smtp-test did nothing"),
    }
}

/// `slawatch silence`.
#[derive(Debug, Clone, Args)]
pub struct SilenceArgs {
    /// State directory of the slawatch instance (its sled store keeps the silences).
    #[arg(long, default_value = "slawatch-data", env = "SLAWATCH_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: SilenceCommand,
}

/// What to do with silences.
#[derive(Debug, Clone, Subcommand)]
pub enum SilenceCommand {
    /// Hold back mail for incidents whose labels match, for a while.
    Add {
        /// Label matchers, comma-separated: `name=value`, `name!=value`, `name~=glob*`.
        /// Labels: spec, objective, dimension, severity, check, key, segment, the key fields
        /// (agent, prompt_version, model, …) and the spec's metadata labels.
        #[arg(long)]
        matcher: String,
        /// How long, e.g. `2h`.
        #[arg(long = "for", value_parser = parse_for)]
        duration_ms: i64,
        /// Why (shown in listings).
        #[arg(long)]
        comment: String,
        /// Start, RFC 3339 (default: now). Silences are in event time: to silence a replay of
        /// past data, start them at the data's time.
        #[arg(long)]
        start: Option<String>,
        /// Who adds it.
        #[arg(long, env = "USER", default_value = "unknown")]
        created_by: String,
    },
    /// List silences (active and pending; `--all` adds expired ones).
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence id (from `silence list`).
        id: String,
    },
}

fn parse_for(s: &str) -> Result<i64, String> {
    match parse_duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("`{s}`: expected a duration like `2h` or `30m`")),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn open_store(dir: &Path) -> Result<Store> {
    crate::store::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    Store::open(dir).with_context(|| {
        format!(
            "opening the store in {} (is `slawatch run` using it right now? sled allows one \
             process at a time)",
            dir.display()
        )
    })
}

/// `slawatch silence add|list|expire`.
pub fn silence(args: &SilenceArgs) -> Result<ExitCode> {
    let store = open_store(&args.data_dir)?;
    let log = store.notify_log()?;
    let now = now_ms();
    match &args.command {
        SilenceCommand::Add {
            matcher,
            duration_ms,
            comment,
            start,
            created_by,
        } => {
            let matchers = Matcher::parse_list(matcher).map_err(|e| anyhow!("--matcher: {e}"))?;
            let starts_at = match start {
                Some(s) => parse_rfc3339_ms(s)
                    .ok_or_else(|| anyhow!("--start `{s}` is not an RFC 3339 time"))?,
                None => now,
            };
            let key = format!("{matcher}\u{1f}{starts_at}\u{1f}{now}\u{1f}{comment}");
            let id = format!(
                "s-{:08x}",
                xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32
            );
            let s = Silence {
                id: id.clone(),
                matchers,
                starts_at,
                ends_at: starts_at + duration_ms,
                comment: comment.clone(),
                created_by: created_by.clone(),
            };
            log.put_silence(&id, &s)?;
            println!(
                "silence {id} holds back mail for `{}` from {} to {} ({})",
                s.matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                format_minute(s.starts_at),
                format_minute(s.ends_at),
                format_duration_ms(*duration_ms)
            );
            println!("  a running `slawatch run` picks it up when it next starts");
        }
        SilenceCommand::List { all } => {
            let mut list: Vec<Silence> = log.silences()?;
            list.sort_by_key(|s| (s.starts_at, s.id.clone()));
            let shown: Vec<&Silence> = list.iter().filter(|s| *all || s.ends_at > now).collect();
            if shown.is_empty() {
                println!(
                    "no silences{}",
                    if *all {
                        ""
                    } else {
                        " (--all shows expired ones)"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<11} {:<8} {:<18} {:<18} {:<40} COMMENT",
                "ID", "STATE", "STARTS", "ENDS", "MATCHERS"
            );
            for s in shown {
                let state = if s.ends_at <= now {
                    "expired"
                } else if s.starts_at > now {
                    "pending"
                } else {
                    "active"
                };
                let matchers = s
                    .matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{:<11} {:<8} {:<18} {:<18} {:<40} {} ({})",
                    s.id,
                    state,
                    format_minute(s.starts_at),
                    format_minute(s.ends_at),
                    matchers,
                    s.comment,
                    s.created_by
                );
            }
        }
        SilenceCommand::Expire { id } => {
            let Some(mut s) = log.silence::<Silence>(id)? else {
                bail!("no silence `{id}` (see `slawatch silence list --all`)");
            };
            if s.ends_at <= now {
                println!(
                    "silence {id} already ended at {}",
                    format_rfc3339_ms(s.ends_at)
                );
            } else {
                s.ends_at = now.max(s.starts_at);
                log.put_silence(id, &s)?;
                println!("silence {id} expired at {}", format_rfc3339_ms(s.ends_at));
            }
        }
    }
    log.flush()?;
    Ok(ExitCode::SUCCESS)
}
