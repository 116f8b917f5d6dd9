//! The HTTP API of `slawatch run`: the operational questions under `/v1` (JSON), the status
//! page at `/`, the service's own telemetry at `/metrics` (Prometheus), `/healthz` (the process
//! answers) and `/readyz` (state restored and input flowing; otherwise 503 saying why). The
//! only module that imports axum.
//!
//! - [`questions`]: parameters → typed request → answer from the data directory (shared with
//!   `slawatch query`, so both give the same numbers).
//! - [`page`]: the server-rendered status page (maud, inline SVG, no external fetches).
//! - [`openapi`]: the OpenAPI document served at `/v1/openapi.json`.
//! - [`incidents`]: `/v1/incidents`, `/v1/incidents/{id}` and its affected sessions.
//! - [`otlp`]: `POST /v1/traces`, the OTLP/HTTP span receiver of `run --otlp-http`.
//!
//! - [`tls`]: HTTPS on the listener (rustls), the certificate re-read on `SIGHUP`.
//!
//! Errors are RFC 7807 `application/problem+json`. The listener binds 127.0.0.1 by default and
//! refuses any other address unless a bearer token is configured (from a file or the
//! environment, never a flag); with a token, every route but the health checks requires it.

pub mod incidents;
pub mod limit;
pub mod openapi;
pub mod otlp;
pub mod page;
pub mod questions;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use serde::Serialize;

use crate::health::Readiness;
use crate::history::HistoryConfig;
use crate::metrics::Metrics;
use crate::service::reload::{ReloadReply, Reloader, SharedSpecs};
use crate::spec::model::Spec;
use crate::store::Store;
use questions::{Context, InvalidParam, Question};
use tls::{Tls, TlsListener};

/// What the handlers share.
pub struct ApiState {
    pub store: Arc<Store>,
    /// The specs in force: a configuration reload replaces them.
    pub specs: SharedSpecs,
    pub history: HistoryConfig,
    /// Ready once the state is restored and input is flowing; else why not.
    pub readiness: Arc<Readiness>,
    /// What `/metrics` exposes.
    pub metrics: Arc<Metrics>,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// `POST /-/reload`, when the API serves a run that can reload.
    pub reload: Option<Arc<Reloader>>,
    /// Requests per second per client address (health checks are not limited).
    pub rate_limit: limit::RateLimit,
    /// `POST /v1/traces` (OTLP/HTTP), when the run takes spans (`--otlp-http`).
    pub spans: Option<Arc<crate::service::spans::SpanIntake>>,
}

impl ApiState {
    /// The specs in force now.
    pub fn specs(&self) -> Arc<Vec<Spec>> {
        self.specs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An RFC 7807 problem.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://slawatch.dev/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            invalid_params: Vec::new(),
        }
    }

    /// 400: the request's parameters listed in `bad`, each with why.
    pub fn invalid_params(bad: Vec<InvalidParam>, detail: &str) -> Problem {
        Problem {
            invalid_params: bad,
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-params",
                "Invalid parameters",
                detail,
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problems serialize");
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// The routes, on shared state.
pub fn router(state: Arc<ApiState>) -> Router {
    let max_span_body = state.spans.as_ref().map_or(0, |s| s.max_body);
    Router::new()
        .route("/", get(status_page))
        .route(
            "/v1/traces",
            post(otlp::traces).layer(axum::extract::DefaultBodyLimit::max(max_span_body)),
        )
        .route("/v1/openapi.json", get(openapi_doc))
        .route("/v1/findings", get(findings))
        .route("/v1/incidents", get(incidents::list))
        .route("/v1/incidents/{id}", get(incidents::show))
        .route("/v1/incidents/{id}/affected", get(incidents::affected))
        .route("/v1/{question}", get(question))
        .route("/-/reload", post(reload))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// 429 with `Retry-After` once a client address has used its burst (see [`limit`]).
async fn rate_limit(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip());
    if let Some(ip) = client
        && let Err(wait) = st.rate_limit.check(ip, std::time::Instant::now())
    {
        let mut r = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too Many Requests",
            format!(
                "more requests from {ip} than the API's limit (--api-rate-limit); retry in {} ms",
                wait.as_millis().max(1)
            ),
        )
        .into_response();
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    next.run(req).await
}

/// The client's address, as the rate limit keys it: what both listeners, plain and TLS, report
/// for a connection (the TLS one after its handshake).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

async fn authorize(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut r = Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "this API requires `Authorization: Bearer <token>`",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(st): State<Arc<ApiState>>) -> Response {
    match st.readiness.status() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// `POST /-/reload` (as in Prometheus and Alertmanager): re-reads the specs and the
/// notification policy. 200 with what happened to each spec once applied; 202 when valid and
/// still queued (a file input applies it at its next record); 422 with every diagnostic when a
/// file is not valid — the running configuration stays.
async fn reload(State(st): State<Arc<ApiState>>) -> Response {
    let Some(reloader) = st.reload.clone() else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            "this process does not evaluate specs, so it has nothing to reload",
        )
        .into_response();
    };
    let reply = tokio::task::spawn_blocking(move || reloader.request(RELOAD_WAIT)).await;
    match reply {
        Ok(ReloadReply::Applied(a)) => json(&serde_json::json!({
            "status": "applied",
            "records": a.records,
            "specs": a.specs,
        })),
        Ok(ReloadReply::Queued) => (
            StatusCode::ACCEPTED,
            json(&serde_json::json!({
                "status": "queued",
                "detail": "the configuration is valid and is applied before the next record",
            })),
        )
            .into_response(),
        Ok(ReloadReply::Refused(diagnostics)) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-config",
            "The configuration is not valid; the running one stays",
            diagnostics,
        )
        .into_response(),
        Ok(ReloadReply::Finished) => Problem::new(
            StatusCode::CONFLICT,
            "finished",
            "Nothing to reload",
            "the input has ended; nothing is evaluated any more",
        )
        .into_response(),
        Err(e) => internal(format!("the reload failed: {e}")).into_response(),
    }
}

/// How long `POST /-/reload` waits for the evaluating loop to apply a valid configuration.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn metrics(State(st): State<Arc<ApiState>>) -> Result<Response, Problem> {
    let text = blocking(move || {
        // The state's size is measured per scrape: it walks the store, which no record should.
        let (bytes, keys) = st.store.size().map_err(internal)?;
        st.metrics.set_state_size(bytes, keys);
        Ok(st.metrics.encode())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not Found",
        format!(
            "no route {}; questions are /v1/{{{}}}, see /v1/openapi.json",
            req.uri().path(),
            Question::ALL.map(Question::name).join(",")
        ),
    )
}

/// Query parameters as pairs, in order (duplicates kept, so they can be reported).
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(p: Params) -> Result<Vec<(String, String)>, Problem> {
    p.map(|Query(v)| v).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            e.body_text(),
        )
    })
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(internal(format!("the handler failed: {e}"))))
}

fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal Server Error",
        e.to_string(),
    )
}

fn json(value: &impl Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).expect("answers serialize"),
    )
        .into_response()
}

/// Decodes a raw query string (`agent=a&last=1h`, without the `?`) into pairs, in order, exactly
/// as the handlers' `Query` extractor does. The fuzz targets feed untrusted bytes through it.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Problem> {
    let uri: axum::http::Uri = format!("/?{query}").parse().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            format!("{e}"),
        )
    })?;
    params(Query::try_from_uri(&uri))
}

/// Parses a question's parameters into a request, or the problem that lists every bad one.
pub fn parse_request(
    q: Question,
    pairs: &[(String, String)],
) -> Result<questions::Request, Problem> {
    questions::Request::parse(q, pairs).map_err(|bad| {
        Problem::invalid_params(
            bad,
            "one or more query parameters are not valid (see invalid_params)",
        )
    })
}

async fn question(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    query: Params,
) -> Result<Response, Problem> {
    let Some(q) = Question::parse(&name) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            format!(
                "no question `{name}`; expected one of: {}",
                Question::ALL.map(Question::name).join(", ")
            ),
        ));
    };
    let req = parse_request(q, &params(query)?)?;
    let value = blocking(move || {
        let specs = st.specs();
        let ctx = Context {
            store: &st.store,
            history: &st.history,
            specs: &specs,
        };
        questions::answer(&ctx, &req).map_err(internal)
    })
    .await?;
    Ok(json(&value))
}

async fn findings(State(st): State<Arc<ApiState>>, query: Params) -> Result<Response, Problem> {
    let pairs = params(query)?;
    let mut bad = Vec::new();
    for (k, _) in &pairs {
        if !["spec", "objective", "agent"].contains(&k.as_str()) {
            bad.push(InvalidParam {
                name: k.clone(),
                reason: "unknown parameter; expected one of: spec, objective, agent".into(),
            });
        }
    }
    if !bad.is_empty() {
        return Err(Problem::invalid_params(bad, "see invalid_params"));
    }
    let get = move |k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let (spec, objective, agent) = (get("spec"), get("objective"), get("agent"));
    let all = blocking(move || st.store.all_findings().map_err(internal)).await?;
    let mut out: Vec<_> = all
        .iter()
        .filter(|f| {
            spec.as_deref().is_none_or(|s| s == f.spec)
                && objective.as_deref().is_none_or(|o| o == f.objective)
                && agent
                    .as_deref()
                    .is_none_or(|a| f.key.iter().any(|(k, v)| k == "agent" && v == a))
        })
        .collect();
    out.sort_by(|a, b| (&a.window_end, &a.id).cmp(&(&b.window_end, &b.id)));
    Ok(json(&out))
}

async fn openapi_doc() -> Response {
    json(&openapi::document())
}

async fn status_page(State(st): State<Arc<ApiState>>) -> Result<Response, Problem> {
    let html = blocking(move || page::render(&st).map_err(internal)).await?;
    let mut r = Html(html).into_response();
    let h: &mut HeaderMap = r.headers_mut();
    // Nothing on the page comes from elsewhere, and nothing may.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    Ok(r)
}

/// A running API server.
pub struct ApiServer {
    pub local_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Stops accepting, finishes requests in flight, and waits for the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve the API on {0} without a token: set SLAWATCH_API_TOKEN or \
         --api-token-file, or listen on 127.0.0.1"
    )]
    NoToken(SocketAddr),
    #[error("binding the API to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the API's runtime: {0}")]
    Runtime(std::io::Error),
}

/// Binds `addr` and serves the API on a thread of its own until stopped: over HTTPS when `tls`
/// is given, whose certificate is then read again on every `SIGHUP`.
pub fn serve(
    addr: SocketAddr,
    state: Arc<ApiState>,
    tls: Option<Tls>,
) -> Result<ApiServer, ServeError> {
    if !addr.ip().is_loopback() && state.token.is_none() {
        return Err(ServeError::NoToken(addr));
    }
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("slawatch-api")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    // Listening for SIGHUP starts before this returns (and the caller announces the API), so a
    // rotation signalled right after startup is not missed.
    if let Some(tls) = &tls {
        let _in_runtime = rt.enter();
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(ServeError::Runtime)?;
        rt.spawn(reload_certificate_on_hup(hup, tls.clone()));
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("slawatch-api".into())
        .spawn(move || {
            rt.block_on(async move {
                let shutdown = async {
                    let _ = rx.await;
                };
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the API listener failed");
                        return;
                    }
                };
                let app = router(state).into_make_service_with_connect_info::<ClientAddr>();
                let served = match tls {
                    None => {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                    Some(tls) => match TlsListener::new(listener, &tls) {
                        Ok(listener) => {
                            axum::serve(listener, app)
                                .with_graceful_shutdown(shutdown)
                                .await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "the API server failed");
                }
            });
        })
        .expect("the API thread starts");
    Ok(ApiServer {
        local_addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Re-reads the certificate and key on every `SIGHUP` (the configuration reload signal), so a
/// rotated certificate is served from the next handshake; a bad pair is refused and logged.
async fn reload_certificate_on_hup(mut hup: tokio::signal::unix::Signal, tls: Tls) {
    while hup.recv().await.is_some() {
        let files = tls.files().clone();
        let t = tls.clone();
        match tokio::task::spawn_blocking(move || t.reload()).await {
            Ok(Ok(())) => tracing::info!(
                cert = %files.cert.display(),
                "SIGHUP: reloaded the TLS certificate"
            ),
            Ok(Err(e)) => tracing::error!(
                error = %e,
                "SIGHUP: the TLS certificate was not reloaded; the one in force stays"
            ),
            Err(e) => tracing::error!(error = %e, "SIGHUP: the TLS reload failed"),
        }
    }
}
