//! The incident record over HTTP: `/v1/incidents` (list, `?status=open|resolved`,
//! `?since=RFC 3339`), `/v1/incidents/{id}` (the record with its timeline; `?format=markdown` or
//! `Accept: text/markdown` for the postmortem draft) and `/v1/incidents/{id}/affected` (the
//! sessions that count against it, `?format=jsonl|csv` or by `Accept`). Unknown ids are
//! `404` problem+json. Reads the store only ([`crate::alerts::archive`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiState, Params, Problem, blocking, internal, json, params};
use crate::alerts::archive::{self, RecordStatus};
use crate::alerts::render;

/// Filters of `/v1/incidents` and `slawatch incident list`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub status: Option<RecordStatus>,
    /// Only incidents detected at or after this (epoch ms).
    pub since: Option<i64>,
}

impl ListFilter {
    /// Parses `status` and `since`; every bad parameter is reported.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListFilter, Vec<super::InvalidParam>> {
        let mut f = ListFilter::default();
        let mut bad = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "status" => match v.as_str() {
                    "open" => f.status = Some(RecordStatus::Open),
                    "resolved" => f.status = Some(RecordStatus::Resolved),
                    _ => bad.push(super::InvalidParam {
                        name: k.clone(),
                        reason: format!("expected `open` or `resolved`, found `{v}`"),
                    }),
                },
                "since" => match crate::time::parse_rfc3339_ms(v) {
                    Some(t) => f.since = Some(t),
                    None => bad.push(super::InvalidParam {
                        name: k.clone(),
                        reason: format!(
                            "expected an RFC 3339 time like 2026-11-01T00:00:00Z, found `{v}`"
                        ),
                    }),
                },
                _ => bad.push(super::InvalidParam {
                    name: k.clone(),
                    reason: "unknown parameter; expected one of: status, since".into(),
                }),
            }
        }
        if bad.is_empty() { Ok(f) } else { Err(bad) }
    }

    /// Whether a record passes.
    pub fn keeps(&self, r: &archive::IncidentRecord) -> bool {
        self.status.is_none_or(|s| s == r.status) && self.since.is_none_or(|t| r.detected >= t)
    }
}

fn invalid(bad: Vec<super::InvalidParam>) -> Problem {
    Problem::invalid_params(bad, "see invalid_params")
}

fn unknown(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown-incident",
        "Unknown incident",
        format!("no incident `{id}` (see /v1/incidents)"),
    )
}

pub(super) async fn list(
    State(st): State<Arc<ApiState>>,
    query: Params,
) -> Result<Response, Problem> {
    let filter = ListFilter::parse(&params(query)?).map_err(invalid)?;
    let all = blocking(move || archive::list(&st.store).map_err(internal)).await?;
    let out: Vec<_> = all.into_iter().filter(|r| filter.keeps(r)).collect();
    Ok(json(&out))
}

/// The format asked for by `?format=` (first) or `Accept`.
fn format_of(
    pairs: &[(String, String)],
    headers: &HeaderMap,
    known: &[&str],
) -> Result<Option<String>, Problem> {
    if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "format") {
        if known.contains(&v.as_str()) {
            return Ok(Some(v.clone()));
        }
        return Err(invalid(vec![super::InvalidParam {
            name: "format".into(),
            reason: format!("expected one of: {}; found `{v}`", known.join(", ")),
        }]));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "format") {
        return Err(invalid(vec![super::InvalidParam {
            name: k.clone(),
            reason: "unknown parameter; expected: format".into(),
        }]));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok([
        ("text/markdown", "markdown"),
        ("text/csv", "csv"),
        ("application/x-ndjson", "jsonl"),
        ("application/jsonl", "jsonl"),
    ]
    .iter()
    .find(|(mime, f)| accept.contains(mime) && known.contains(f))
    .map(|(_, f)| (*f).to_owned()))
}

pub(super) async fn show(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, Problem> {
    let format = format_of(&params(query)?, &headers, &["json", "markdown", "text"])?;
    let lookup = id.clone();
    let report = blocking(move || archive::report(&st.store, &lookup).map_err(internal))
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(match format.as_deref() {
        Some("markdown") => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            render::incident_markdown(&report),
        )
            .into_response(),
        Some("text") => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render::incident_text(&report),
        )
            .into_response(),
        _ => json(&report),
    })
}

pub(super) async fn affected(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, Problem> {
    let csv = format_of(&params(query)?, &headers, &["jsonl", "csv"])?.as_deref() == Some("csv");
    let lookup = id.clone();
    let store = st.store.clone();
    let known = blocking(move || {
        archive::report(&store, &lookup)
            .map(|r| r.is_some())
            .map_err(internal)
    })
    .await?;
    if !known {
        return Err(unknown(&id));
    }
    // Streamed: a blocking task reads the store in chunks of lines into a small channel, so
    // an export of 100,000 sessions never sits whole in memory and a client that stops
    // reading stops the reader.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::new();
        if csv {
            chunk.push_str(archive::AFFECTED_CSV_HEADER);
        }
        let rows = match archive::affected(&st.store, &id) {
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        for s in rows {
            match s {
                Ok(s) if csv => chunk.push_str(&archive::affected_csv_line(&s)),
                Ok(s) => chunk.push_str(&archive::affected_json_line(&s)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
            if chunk.len() >= CHUNK_BYTES
                && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    let ctype = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [(header::CONTENT_TYPE, ctype)],
        axum::body::Body::from_stream(Lines(rx)),
    )
        .into_response())
}

/// Bytes of lines sent at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// The chunks of an export as a `Stream` for the response body.
struct Lines(tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>);

impl futures_core::Stream for Lines {
    type Item = Result<String, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
