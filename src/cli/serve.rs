//! What `run` (and `replay --data-dir`) add around the pipeline for the query side: the
//! operational history moved from the pipeline into the store, and the HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::health::Readiness;
use crate::metrics::Metrics;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::api::tls::{Tls, TlsFiles};
use crate::api::{ApiServer, ApiState};
use crate::history::{History, HistoryConfig};
use crate::pipeline::Pipeline;
use crate::service::reload::{ConfigFiles, Reloader};
use crate::spec::model::Spec;
use crate::store::Store;

/// Where the API listens, and who may ask it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address of the HTTP API and status page (`/v1`, `/`, `/metrics`, `/healthz`, `/readyz`); default
    /// 127.0.0.1:8632 (when that port is taken, the run goes on without an API and says so).
    /// Any address but loopback needs a token.
    #[arg(long, env = "SLAWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Do not serve the API.
    #[arg(long)]
    pub no_api: bool,
    /// File holding the API's bearer token (or set SLAWATCH_API_TOKEN).
    #[arg(long, env = "SLAWATCH_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// After a finite input ends, keep serving the API until SIGTERM/SIGINT.
    #[arg(long)]
    pub serve: bool,
    /// Requests per second each client address may make (bursts of twice that; health checks
    /// are never limited); beyond it, 429 with `Retry-After`. 0: no limit.
    #[arg(long, default_value_t = 200, env = "SLAWATCH_API_RATE_LIMIT")]
    pub api_rate_limit: u32,
    /// Serve the API over HTTPS with this PEM certificate chain (server certificate first);
    /// needs --tls-key-file. Both are read again on SIGHUP (certificate rotation).
    #[arg(long, env = "SLAWATCH_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SLAWATCH_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl ApiArgs {
    /// The certificate and key to serve HTTPS with, if configured.
    fn tls_files(&self) -> Option<TlsFiles> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            // clap's `requires` makes them come in pairs.
            _ => None,
        }
    }
}

/// How the operational history is kept.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Keep separate history per value of this session attribute (repeatable), e.g.
    /// `attributes.channel`.
    #[arg(long = "history-segment-by")]
    pub segment_by: Vec<String>,
    /// History pane size: the finest time resolution of answers.
    #[arg(long = "history-pane", default_value = "5m")]
    pub pane: String,
}

impl HistoryArgs {
    pub fn config(&self) -> Result<HistoryConfig> {
        let config = HistoryConfig {
            pane: crate::duration::parse_duration_ms(&self.pane)
                .map_err(|e| anyhow::anyhow!("--history-pane: {e}"))?,
            segment_by: self.segment_by.clone(),
            ..HistoryConfig::default()
        };
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

/// The API's token: `SLAWATCH_API_TOKEN`, or the first line of the token file.
pub fn api_token(file: Option<&Path>) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("SLAWATCH_API_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_owned()));
    }
    match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the API token file {}", p.display()))?;
            let t = text.lines().next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(!t.is_empty(), "the API token file {} is empty", p.display());
            Ok(Some(t))
        }
        None => Ok(None),
    }
}

/// Reloads of `run`'s specs and policy (SIGHUP, `POST /-/reload`); `specs` are in force now.
pub fn reloader(
    args: &super::RunArgs,
    specs: &[Spec],
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<Reloader>> {
    let files = ConfigFiles {
        specs: args.pipeline.specs.clone(),
        policy: args.policy.clone(),
    };
    Reloader::new(files, specs, metrics).context("installing the SIGHUP handler")
}

/// Where the API listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8632";

/// The file in the data directory that tells `slawatch query` where the running API is.
pub fn api_file(data_dir: &Path) -> PathBuf {
    data_dir.join("api.json")
}

/// What `<data-dir>/api.json` says about the API besides its address: `slawatch query` needs
/// the scheme, and with HTTPS the certificate it may trust by default.
struct AnnouncedApi {
    scheme: &'static str,
    tls_cert_file: Option<PathBuf>,
}

/// A started API: stops and removes its address file when dropped.
pub struct RunningApi {
    server: Option<ApiServer>,
    file: PathBuf,
}

impl RunningApi {
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr)
    }
}

impl Drop for RunningApi {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// Starts the API unless disabled; writes its address to `<data-dir>/api.json`.
#[allow(clippy::too_many_arguments)] // each is one shared handle of the run; a struct would only rename them
pub fn start_api(
    args: &ApiArgs,
    data_dir: &Path,
    store: Arc<Store>,
    reload: Arc<Reloader>,
    history: HistoryConfig,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    spans: Option<Arc<crate::service::spans::SpanIntake>>,
) -> Result<RunningApi> {
    let file = api_file(data_dir);
    if args.no_api {
        anyhow::ensure!(
            spans.is_none(),
            "--otlp-http serves on the API listener: drop --no-api"
        );
        return Ok(RunningApi { server: None, file });
    }
    // A bad certificate or key stops the run, even where a taken default port would not.
    let tls = args.tls_files().map(Tls::load).transpose()?;
    let announce = AnnouncedApi {
        scheme: if tls.is_some() { "https" } else { "http" },
        tls_cert_file: tls
            .as_ref()
            .map(|t| std::path::absolute(&t.files().cert))
            .transpose()
            .context("resolving the TLS certificate file's path")?,
    };
    let takes_spans = spans.is_some();
    let state = Arc::new(ApiState {
        store,
        specs: reload.specs(),
        reload: Some(reload),
        rate_limit: crate::api::limit::RateLimit::new(args.api_rate_limit),
        history,
        readiness,
        metrics,
        token: api_token(args.api_token_file.as_deref())?,
        spans,
    });
    let server = match args.listen {
        Some(addr) => crate::api::serve(addr, state, tls)?,
        None => {
            match crate::api::serve(DEFAULT_LISTEN.parse().expect("a valid address"), state, tls) {
                Ok(s) => s,
                Err(e) if takes_spans => {
                    return Err(e)
                        .context("--otlp-http needs the API listener (choose one with --listen)");
                }
                Err(e) => {
                    eprintln!(
                        "warning: {e}; running without the API (choose another with --listen)"
                    );
                    return Ok(RunningApi { server: None, file });
                }
            }
        }
    };
    let addr = server.local_addr;
    let mut about = serde_json::json!({
        "address": addr.to_string(),
        "pid": std::process::id(),
        "scheme": announce.scheme,
    });
    if let Some(cert) = &announce.tls_cert_file {
        about["tls_cert_file"] = cert.display().to_string().into();
    }
    std::fs::write(&file, serde_json::to_vec(&about)?)
        .with_context(|| format!("writing {}", file.display()))?;
    tracing::info!(%addr, scheme = announce.scheme, "serving the API");
    eprintln!("API and status page at {}://{addr}/", announce.scheme);
    Ok(RunningApi {
        server: Some(server),
        file,
    })
}

/// Moves the pipeline's history into the store: now, or when `every` has passed since the last
/// move.
pub struct HistoryWriter {
    store: Arc<Store>,
    config: HistoryConfig,
    every: Duration,
    last: Instant,
}

impl HistoryWriter {
    pub fn new(store: Arc<Store>, config: HistoryConfig, every: Duration) -> HistoryWriter {
        HistoryWriter {
            store,
            config,
            every,
            last: Instant::now(),
        }
    }

    /// A history for a pipeline whose deltas this writer applies; `origin` names the pipeline.
    pub fn history(&self, origin: String) -> History {
        History::new(self.config.clone(), origin)
    }

    pub fn maybe_flush(&mut self, pipeline: &mut Pipeline) -> Result<()> {
        if self.last.elapsed() >= self.every {
            self.flush(pipeline)?;
        }
        Ok(())
    }

    /// Seals the pipeline's pending history, applies it, acknowledges it, and drops buckets
    /// past retention.
    pub fn flush(&mut self, pipeline: &mut Pipeline) -> Result<()> {
        self.last = Instant::now();
        self.store
            .persist_history(pipeline)
            .context("writing the operational history")
    }
}

/// A name for a pipeline that runs over a file once: unique per run, so that two runs over the
/// same data directory never mistake each other's history deltas for their own.
pub fn run_origin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("run-{nanos:x}-{}", std::process::id())
}

/// After a finite input: keeps the process (and its API) up until `stop` is set by
/// SIGTERM/SIGINT.
pub fn serve_until(stop: &AtomicBool) {
    eprintln!("input done; serving until SIGTERM");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}
