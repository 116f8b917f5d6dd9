//! `slawatch query`: the API's questions from the command line, as tables for people or JSON
//! for scripts. While `slawatch run` holds the data directory (sled allows one process), the
//! question goes to its API (address in `<data-dir>/api.json`); otherwise it is answered from
//! the data directory directly. Both paths run the same code ([`crate::api::questions`]), so
//! the numbers are the same.
//!
//! An instance that serves HTTPS says so in `api.json`, with its certificate file; its
//! certificate is verified against `--tls-ca-file`, or else against the certificates of that file
//! (enough when it carries the CA that issued the server's). A certificate that does not verify
//! is an error saying what to pass — never a silent fall back to plain HTTP or to an unverified
//! connection (and the data directory is locked while the instance runs).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use super::serve::{HistoryArgs, api_file, api_token};
use crate::api::questions::{self, Question};

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question.
    pub question: Question,
    /// State directory of `slawatch run` (or `replay --data-dir`).
    #[arg(long, default_value = "slawatch-data")]
    pub data_dir: PathBuf,
    /// Ask this API instead (e.g. `http://127.0.0.1:8632`, `https://slawatch.example:8632`).
    #[arg(long)]
    pub api: Option<String>,
    /// PEM file of the CA certificates that verify an HTTPS API (default for `--api`: the
    /// public web roots; for the instance in --data-dir: its own certificate file).
    #[arg(long, env = "SLAWATCH_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// File holding the API's bearer token (or set SLAWATCH_API_TOKEN).
    #[arg(long, env = "SLAWATCH_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Print the answer as JSON (what the API returns).
    #[arg(long)]
    pub json: bool,
    /// Spec directory (for `status` and `changes` answered from the data directory).
    #[arg(long, default_value = "sla-specs")]
    pub specs: Vec<PathBuf>,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub prompt_version: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// A segment, e.g. `channel=web`.
    #[arg(long)]
    pub segment: Option<String>,
    /// Range start, RFC 3339.
    #[arg(long)]
    pub from: Option<String>,
    /// Range end, RFC 3339.
    #[arg(long)]
    pub to: Option<String>,
    /// The last duration up to now, e.g. `24h`.
    #[arg(long)]
    pub last: Option<String>,
    /// A UTC day: `today` or `YYYY-MM-DD`.
    #[arg(long)]
    pub day: Option<String>,
    /// `none`, `agent`, `key` or `segment` (latency, outcomes).
    #[arg(long)]
    pub group_by: Option<String>,
    /// How many sessions to list (slowest, pii).
    #[arg(long)]
    pub limit: Option<String>,
    /// How far back the cost comparison lies (default 7d).
    #[arg(long)]
    pub compare: Option<String>,
    /// Share of costliest sessions to list (default 1).
    #[arg(long)]
    pub top_percent: Option<String>,
}

impl QueryArgs {
    /// The query parameters, named as the API names them.
    fn params(&self) -> Vec<(String, String)> {
        [
            ("agent", &self.agent),
            ("prompt_version", &self.prompt_version),
            ("model", &self.model),
            ("segment", &self.segment),
            ("from", &self.from),
            ("to", &self.to),
            ("last", &self.last),
            ("day", &self.day),
            ("group_by", &self.group_by),
            ("limit", &self.limit),
            ("compare", &self.compare),
            ("top_percent", &self.top_percent),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
        .collect()
    }
}

pub fn query(args: &QueryArgs) -> Result<ExitCode> {
    let q = args.question;
    let params = args.params();
    // Validate here too, so a bad flag says what would be valid without a round trip.
    let request = match questions::Request::parse(q, &params) {
        Ok(r) => r,
        Err(bad) => {
            for b in &bad {
                eprintln!("error: --{}: {}", b.name.replace('_', "-"), b.reason);
            }
            return Ok(ExitCode::from(2));
        }
    };
    let answer = match api_base(
        args.api.as_deref(),
        args.tls_ca_file.as_deref(),
        &args.data_dir,
    )? {
        Some(api) => ask_api(&api, q, &params, args)?,
        None => {
            let store = crate::store::Store::open(&args.data_dir)
                .with_context(|| format!("opening the state in {}", args.data_dir.display()))?;
            let specs = super::load_specs(&args.specs).unwrap_or_default();
            let history = args.history.config()?;
            let ctx = questions::Context {
                store: &store,
                history: &history,
                specs: &specs,
            };
            questions::answer(&ctx, &request)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(q, &answer));
    }
    Ok(ExitCode::SUCCESS)
}

/// A running API and the client that trusts its certificate.
pub(super) struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// `GET base + path` with query parameters and the bearer token: the status and the body.
    pub(super) fn get(
        &self,
        path: &str,
        params: &[(String, String)],
        token_file: Option<&Path>,
    ) -> Result<(u16, String)> {
        let base = &self.base;
        let mut req = self.agent.get(&format!("{base}{path}"));
        for (k, v) in params {
            req = req.query(k, v);
        }
        if let Some(t) = api_token(token_file)? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| format!("asking {base}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .context("reading the answer")?;
        Ok((status, body))
    }

    /// The API's address.
    pub(super) fn base(&self) -> &str {
        &self.base
    }
}

/// The API to ask: `api` (`--api`), or the running instance named in the data directory.
pub(super) fn api_base(
    api: Option<&str>,
    tls_ca_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Option<Api>> {
    if let Some(a) = api {
        return Ok(Some(Api {
            base: a.trim_end_matches('/').to_owned(),
            agent: agent(tls_ca_file)?,
        }));
    }
    let file = api_file(data_dir);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(&text).context("reading api.json")?;
    let addr = v["address"].as_str().unwrap_or_default();
    // An instance listening on every address is asked on loopback.
    let addr = match addr.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip = match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, a.port()).to_string()
        }
        _ => addr.to_owned(),
    };
    let https = v["scheme"].as_str() == Some("https");
    let (base, agent) = if https {
        let ca = match (tls_ca_file, v["tls_cert_file"].as_str()) {
            (Some(ca), _) => ca.to_path_buf(),
            (None, Some(cert)) => PathBuf::from(cert),
            (None, None) => bail!(
                "{} says the API serves HTTPS but names no certificate file: pass --tls-ca-file",
                file.display()
            ),
        };
        (format!("https://{addr}"), agent(Some(&ca))?)
    } else {
        (format!("http://{addr}"), agent(None)?)
    };
    // A file left by an instance that died: only use it if something answers there.
    match agent.get(&format!("{base}/healthz")).call() {
        Ok(_) => Ok(Some(Api { base, agent })),
        Err(e) if https && !nobody_listens(&e) => bail!(
            "the running instance at {base} (named in {}) serves HTTPS, and the connection \
             failed: {e}; if its certificate is not verified, pass --tls-ca-file with the CA \
             that issued it (the certificate must name {})",
            file.display(),
            addr.rsplit_once(':')
                .map_or(addr.as_str(), |(host, _)| host)
        ),
        Err(_) => Ok(None),
    }
}

/// Nothing answers at the address: the instance that wrote `api.json` is gone.
fn nobody_listens(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        _ => false,
    }
}

/// A client that verifies HTTPS with the certificates of `ca_file` (default: the public web
/// roots).
fn agent(ca_file: Option<&Path>) -> Result<ureq::Agent> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("reading the TLS CA file {}", ca.display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(c) =
                item.with_context(|| format!("the TLS CA file {} is not valid PEM", ca.display()))?
            {
                certs.push(c);
            }
        }
        anyhow::ensure!(
            !certs.is_empty(),
            "the TLS CA file {} holds no certificate",
            ca.display()
        );
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(ureq::Agent::config_builder()
        .tls_config(tls.build())
        .build()
        .into())
}

fn ask_api(api: &Api, q: Question, params: &[(String, String)], args: &QueryArgs) -> Result<Value> {
    let path = format!("/v1/{}", q.name());
    let (status, body) = api.get(&path, params, args.api_token_file.as_deref())?;
    let body: Value = serde_json::from_str(&body).context("the answer is not JSON")?;
    if !(200..300).contains(&status) {
        let status = ureq::http::StatusCode::from_u16(status).context("the answer's status")?;
        bail!(
            "{} answered {status}: {}",
            api.base(),
            body["detail"].as_str().unwrap_or_default()
        );
    }
    Ok(body)
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "—".to_owned(), |x| format!("{x:.digits$}"))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "—".to_owned(), str::to_owned)
}

fn group_label(row: &Value) -> String {
    let parts: Vec<String> = ["agent", "prompt_version", "model", "segment"]
        .iter()
        .filter_map(|k| row[k].as_str().map(str::to_owned))
        .collect();
    if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn range_line(r: &Value) -> String {
    format!("{} … {}", text(&r["from"]), text(&r["to"]))
}

/// A table for people from an answer.
fn render(q: Question, a: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "now (newest session): {}", text(&a["now"]));
    match q {
        Question::Latency => {
            let _ = writeln!(
                s,
                "range: {}  (±{}% relative error)",
                range_line(&a["range"]),
                num(
                    &(a["relative_error"].as_f64().unwrap_or(0.0) * 100.0).into(),
                    0
                )
            );
            let _ = writeln!(
                s,
                "{:<48} {:>9} {:>10} {:>10} {:>10} {:>10}",
                "group", "sessions", "p50 ms", "p95 ms", "p99 ms", "max ms"
            );
            for g in a["groups"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "{:<48} {:>9} {:>10} {:>10} {:>10} {:>10}",
                    group_label(g),
                    g["sessions"].to_string(),
                    num(&g["p50_ms"], 0),
                    num(&g["p95_ms"], 0),
                    num(&g["p99_ms"], 0),
                    num(&g["max_ms"], 0)
                );
            }
        }
        Question::Outcomes => {
            let _ = writeln!(s, "range: {}", range_line(&a["range"]));
            let _ = writeln!(
                s,
                "{:<48} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "group", "sessions", "success", "error", "timeout", "abandoned"
            );
            for g in a["groups"].as_array().into_iter().flatten() {
                let f =
                    |k: &str| format!("{:.2}%", g["fractions"][k].as_f64().unwrap_or(0.0) * 100.0);
                let _ = writeln!(
                    s,
                    "{:<48} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    group_label(g),
                    g["sessions"].to_string(),
                    f("success"),
                    f("error"),
                    f("timeout"),
                    f("abandoned")
                );
            }
        }
        Question::Slowest => {
            let _ = writeln!(
                s,
                "range: {}  exact: {}",
                range_line(&a["range"]),
                a["exact"]
            );
            render_sessions(&mut s, &a["sessions"], "duration ms", 0);
        }
        Question::Cost => {
            for (name, c) in [("current", &a["current"]), ("previous", &a["previous"])] {
                let _ = writeln!(
                    s,
                    "{name:<9} {}  sessions {}  with cost {}  total ${}  avg ${}/session",
                    range_line(&c["range"]),
                    c["sessions"],
                    c["sessions_with_cost"],
                    num(&c["total_usd"], 4),
                    num(&c["avg_usd_per_session"], 6)
                );
            }
            let _ = writeln!(s, "change: ×{}", num(&a["change_ratio"], 3));
            let _ = writeln!(
                s,
                "top {}% by cost: {} session(s), exact: {}",
                a["top_percent"], a["top_n"], a["exact"]
            );
            render_sessions(&mut s, &a["top"], "cost usd", 6);
        }
        Question::Pii => {
            let _ = writeln!(
                s,
                "range: {}  sessions {}  with personal data {}",
                range_line(&a["range"]),
                a["sessions"],
                a["sessions_with_pii"]
            );
            let _ = writeln!(
                s,
                "{:<16} {:<15} {:<24} {:>9}  session ids",
                "type", "handling", "destination", "sessions"
            );
            for r in a["rows"].as_array().into_iter().flatten() {
                let ids: Vec<String> = r["session_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(5)
                    .map(text)
                    .collect();
                let _ = writeln!(
                    s,
                    "{:<16} {:<15} {:<24} {:>9}  {}{}",
                    text(&r["type"]),
                    text(&r["handling"]),
                    text(&r["destination"]),
                    r["sessions"],
                    ids.join(" "),
                    if r["session_ids"].as_array().is_some_and(|v| v.len() > 5)
                        || r["ids_truncated"] == true
                    {
                        " …"
                    } else {
                        ""
                    }
                );
            }
        }
        Question::Changes => {
            let _ = writeln!(s, "range: {}", range_line(&a["range"]));
            for c in a["changes"].as_array().into_iter().flatten() {
                let replaced = &c["replaced"];
                let _ = writeln!(
                    s,
                    "{}  {} {} · {}  replaced {}  sessions {}  verdict: {}",
                    text(&c["first_seen"]),
                    text(&c["agent"]),
                    text(&c["prompt_version"]),
                    text(&c["model"]),
                    if replaced.is_null() {
                        "—".to_owned()
                    } else {
                        format!(
                            "{} · {}",
                            text(&replaced["prompt_version"]),
                            text(&replaced["model"])
                        )
                    },
                    c["sessions"],
                    text(&c["verdict"])
                );
                if let Some(f) = c["drift"].as_array().and_then(|d| d.first()) {
                    for fe in f["drift"]["features"].as_array().into_iter().flatten() {
                        let _ = writeln!(
                            s,
                            "    {:<24} {:<8} p_adj {:>10}  {}",
                            text(&fe["feature"]),
                            text(&fe["verdict"]),
                            num(&fe["p_adjusted"], 6),
                            text(&fe["effect"])
                        );
                    }
                }
            }
        }
        Question::Status => {
            let _ = writeln!(
                s,
                "{:<24} {:<20} {:<12} {:<10} {:>9} {:>9} {:>6}",
                "spec", "objective", "dimension", "state", "target", "budget", "open"
            );
            for o in a["objectives"].as_array().into_iter().flatten() {
                let pctv = |v: &Value| {
                    v.as_f64()
                        .map_or_else(|| "—".to_owned(), |x| format!("{:.2}%", x * 100.0))
                };
                let _ = writeln!(
                    s,
                    "{:<24} {:<20} {:<12} {:<10} {:>9} {:>9} {:>6}",
                    text(&o["spec"]),
                    text(&o["objective"]),
                    text(&o["dimension"]),
                    text(&o["state"]),
                    pctv(&o["target"]),
                    pctv(&o["budget_left"]),
                    o["open_incidents"].as_array().map_or(0, Vec::len)
                );
            }
        }
    }
    s
}

fn render_sessions(s: &mut String, list: &Value, what: &str, digits: usize) {
    let _ = writeln!(
        s,
        "{:>4} {:>12} {:<24} {:<10} {:<18} {:>5} {:>8} {:>8} {:>5} {:>7}  fallback / tools",
        "rank",
        what,
        "session",
        "status",
        "error",
        "turns",
        "in tok",
        "out tok",
        "tools",
        "retries"
    );
    for e in list.as_array().into_iter().flatten() {
        let tools: Vec<String> = e["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .take(6)
            .map(|t| format!("{}:{}", text(&t["name"]), text(&t["status"])))
            .collect();
        let _ = writeln!(
            s,
            "{:>4} {:>12} {:<24} {:<10} {:<18} {:>5} {:>8} {:>8} {:>5} {:>7}  {} {}",
            e["rank"].to_string(),
            num(&e["value"], digits),
            text(&e["session_id"]),
            text(&e["status"]),
            text(&e["error_type"]),
            e["turns"].to_string(),
            e["input_tokens"].to_string(),
            e["output_tokens"].to_string(),
            e["tool_call_count"].to_string(),
            e["retries"].to_string(),
            text(&e["fallback"]),
            tools.join(" ")
        );
    }
}
