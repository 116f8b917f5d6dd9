//! `slawatch incident list|show|affected`: the incident records of `run` (or `replay
//! --data-dir`). Like `slawatch query`, it asks the running instance's API while one holds the
//! data directory (address in `<data-dir>/api.json`), else reads the data directory; both
//! paths give the same records ([`crate::alerts::archive`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::query::api_base;
use crate::alerts::archive::{self, IncidentRecord, IncidentReport};
use crate::alerts::render;
use crate::api::incidents::ListFilter;

#[derive(Debug, Args)]
pub struct IncidentArgs {
    #[command(subcommand)]
    pub command: IncidentCommand,
    /// State directory of `slawatch run` (or `replay --data-dir`).
    #[arg(long, default_value = "slawatch-data", global = true)]
    pub data_dir: PathBuf,
    /// Ask this API instead (e.g. `http://127.0.0.1:8632`).
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// PEM file of the CA certificates that verify an HTTPS API.
    #[arg(long, env = "SLAWATCH_TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// File holding the API's bearer token (or set SLAWATCH_API_TOKEN).
    #[arg(long, env = "SLAWATCH_API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Incidents, newest first.
    List {
        /// `open` or `resolved`.
        #[arg(long)]
        status: Option<String>,
        /// Only incidents detected at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Print JSON (what the API returns).
        #[arg(long)]
        json: bool,
    },
    /// One incident: timeline, onset, layer attribution, runbooks, affected counts.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: ShowFormat,
    },
    /// The sessions that count against the incident's objective (ids, time, key, segment,
    /// reason — no content).
    Affected {
        id: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: AffectedFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
    /// The postmortem's facts section.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AffectedFormat {
    Jsonl,
    Csv,
}

pub fn incident(args: &IncidentArgs) -> Result<ExitCode> {
    let api = api_base(
        args.api.as_deref(),
        args.tls_ca_file.as_deref(),
        &args.data_dir,
    )?;
    let token = args.api_token_file.as_deref();
    let open_store = || {
        crate::store::Store::open(&args.data_dir)
            .with_context(|| format!("opening the state in {}", args.data_dir.display()))
    };
    let mut out = std::io::stdout().lock();
    match &args.command {
        IncidentCommand::List {
            status,
            since,
            json,
        } => {
            let params: Vec<(String, String)> = [("status", status), ("since", since)]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
                .collect();
            let filter = match ListFilter::parse(&params) {
                Ok(f) => f,
                Err(bad) => {
                    for b in bad {
                        eprintln!("error: --{}: {}", b.name, b.reason);
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            let records: Vec<IncidentRecord> = match &api {
                Some(api) => {
                    let body = ok_body(api.get("/v1/incidents", &params, token)?, api.base())?;
                    serde_json::from_str(&body).context("the answer is not a list of incidents")?
                }
                None => archive::list(&open_store()?)?
                    .into_iter()
                    .filter(|r| filter.keeps(r))
                    .collect(),
            };
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
            } else {
                write!(out, "{}", list_table(&records))?;
            }
        }
        IncidentCommand::Show { id, format } => {
            let report: IncidentReport = match &api {
                Some(api) => {
                    let (status, body) = api.get(&format!("/v1/incidents/{id}"), &[], token)?;
                    if status == 404 {
                        eprintln!("error: no incident `{id}` (see `slawatch incident list`)");
                        return Ok(ExitCode::from(1));
                    }
                    serde_json::from_str(&ok_body((status, body), api.base())?)
                        .context("the answer is not an incident")?
                }
                None => match archive::report(&open_store()?, id)? {
                    Some(r) => r,
                    None => {
                        eprintln!("error: no incident `{id}` (see `slawatch incident list`)");
                        return Ok(ExitCode::from(1));
                    }
                },
            };
            match format {
                ShowFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                ShowFormat::Markdown => write!(out, "{}", render::incident_markdown(&report))?,
                ShowFormat::Text => write!(out, "{}", render::incident_text(&report))?,
            }
        }
        IncidentCommand::Affected { id, format } => {
            let csv = *format == AffectedFormat::Csv;
            match &api {
                Some(api) => {
                    let params = [(
                        "format".to_owned(),
                        if csv { "csv" } else { "jsonl" }.to_owned(),
                    )];
                    let (status, body) =
                        api.get(&format!("/v1/incidents/{id}/affected"), &params, token)?;
                    if status == 404 {
                        eprintln!("error: no incident `{id}` (see `slawatch incident list`)");
                        return Ok(ExitCode::from(1));
                    }
                    write!(out, "{}", ok_body((status, body), api.base())?)?;
                }
                None => {
                    let store = open_store()?;
                    if archive::report(&store, id)?.is_none() {
                        eprintln!("error: no incident `{id}` (see `slawatch incident list`)");
                        return Ok(ExitCode::from(1));
                    }
                    if csv {
                        write!(out, "{}", archive::AFFECTED_CSV_HEADER)?;
                    }
                    for s in archive::affected(&store, id)? {
                        let s = s?;
                        let line = if csv {
                            archive::affected_csv_line(&s)
                        } else {
                            archive::affected_json_line(&s)
                        };
                        out.write_all(line.as_bytes())?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn ok_body((status, body): (u16, String), base: &str) -> Result<String> {
    if !(200..300).contains(&status) {
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("{base} answered {status}: {detail}");
    }
    Ok(body)
}

fn list_table(records: &[IncidentRecord]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<9} {:<8} {:<17} {:>9}  {:<28} KEY",
        "ID", "STATUS", "SEVERITY", "DETECTED (UTC)", "AFFECTED", "SPEC/OBJECTIVE"
    );
    for r in records {
        let detected = crate::time::format_rfc3339_ms(r.detected);
        let _ = writeln!(
            s,
            "{:<20} {:<9} {:<8} {:<17} {:>9}  {:<28} {}{}",
            r.id,
            r.status.as_str(),
            r.severity.as_str(),
            format!("{} {}", &detected[..10], &detected[11..16]),
            r.affected.total,
            format!("{}/{}", r.spec, r.objective),
            render::key_short(&r.key),
            r.segment
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default()
        );
    }
    if records.is_empty() {
        s.push_str("(no incidents)\n");
    }
    s
}
