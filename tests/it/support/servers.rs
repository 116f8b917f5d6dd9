//! Real servers for integration tests: a [`Tansu`] Kafka-protocol broker and a
//! [`MailDev`] SMTP server with an HTTP API.
//!
//! Each fixture runs its server as a child process bound to 127.0.0.1 only, on
//! free ports picked for it, with its working directory, temp files and log in
//! a private temp dir, and kills and reaps the child when dropped. `start()`
//! returns only once the server answers its own protocol (a Kafka ApiVersions
//! request, an HTTP `GET /api/email` plus an SMTP greeting), never after a
//! fixed sleep, and panics with the tail of the server's log if it does not
//! within the deadline.
//!
//! The binaries come from `scripts/install-deps.sh`, which puts them in
//! `<CARGO_MANIFEST_DIR>/.tools/bin`. `SLAWATCH_TANSU_BIN` and
//! `SLAWATCH_MAILDEV_BIN` name a binary explicitly; `SLAWATCH_TOOLS_DIR`
//! replaces the `.tools` directory.
//!
//! Ports are picked at random below the kernel's ephemeral range (read from
//! `/proc/sys/net/ipv4/ip_local_port_range`), so an outgoing connection can
//! never take a port while its server is stopped for a restart, and they are
//! reserved process-wide, so fixtures started in parallel threads never share
//! one. A server that loses a port race with another process is restarted on
//! fresh ports.
//!
//! ```ignore
//! let kafka = Tansu::start();
//! kafka.create_topic("sessions", 3);
//! let mail = MailDev::start();
//! // ... run slawatch against kafka.bootstrap() and mail.smtp_port ...
//! let msgs = mail.wait_for_messages(1, Duration::from_secs(30));
//! ```
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long `Tansu::start` waits for the broker to answer ApiVersions.
pub const TANSU_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `MailDev::start` waits for the HTTP API and the SMTP greeting.
pub const MAILDEV_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `start_again` keeps retrying while the old ports are still busy.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh-port attempts when a server loses its port to another process.
const START_ATTEMPTS: usize = 5;
/// Interval between readiness probes and between inbox polls.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Timeout of one probe connection / request.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of server log shown in panic messages.
const LOG_TAIL_LINES: usize = 40;
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ------------------------------------------------------------------ Tansu --

/// A tansu Kafka-protocol broker with in-memory storage on `127.0.0.1:port`.
///
/// Topics are not created automatically: use [`Tansu::create_topic`].
/// Everything stored is lost when the broker stops, including across
/// [`Tansu::stop`] / [`Tansu::start_again`].
pub struct Tansu {
    /// The broker's port on 127.0.0.1 (listener and advertised address).
    pub port: u16,
    server: Server,
}

impl Tansu {
    /// Starts a broker on a free port and waits (up to
    /// [`TANSU_READY_TIMEOUT`]) until it answers a Kafka ApiVersions request.
    pub fn start() -> Tansu {
        let bin = tool_path("tansu", "SLAWATCH_TANSU_BIN");
        let (server, ports) = Server::start_fresh("tansu", bin, 1, TANSU_READY_TIMEOUT);
        Tansu {
            port: ports[0],
            server,
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `tansu topic create`; panics if that fails.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.server.assert_running("create_topic");
        let out = Command::new(&self.server.bin)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg(name)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running `tansu topic create {name}`: {e}"));
        assert!(
            out.status.success(),
            "`tansu topic create {name} --partitions {partitions}` failed ({}):\n{}{}\n\
             --- broker log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            strip_ansi(&String::from_utf8_lossy(&out.stderr)),
            self.log_tail()
        );
    }

    /// Kills the broker (SIGKILL) and waits until it is gone. All data is lost.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the broker again on the same port after [`Tansu::stop`].
    pub fn start_again(&mut self) {
        self.server.start_again(TANSU_READY_TIMEOUT);
    }

    /// Whether the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// The last lines of the broker's log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// The broker's log file (kept after a failed test).
    pub fn log_path(&self) -> &Path {
        &self.server.log
    }
}

// ---------------------------------------------------------------- MailDev --

/// A maildev SMTP server (`127.0.0.1:smtp_port`, no auth, no TLS) with its
/// HTTP API on `127.0.0.1:web_port`.
///
/// The inbox survives [`MailDev::stop`] / [`MailDev::start_again`]: maildev
/// keeps each accepted message on disk (in the fixture's temp dir) before it
/// answers `250`, and reloads them on start, like a real mail spool. Use
/// [`MailDev::clear`] to empty it.
pub struct MailDev {
    /// SMTP port on 127.0.0.1.
    pub smtp_port: u16,
    /// HTTP API / web UI port on 127.0.0.1.
    pub web_port: u16,
    server: Server,
}

impl MailDev {
    /// Starts maildev on two free ports and waits (up to
    /// [`MAILDEV_READY_TIMEOUT`]) until `GET /api/email` answers 200 and the
    /// SMTP port sends its `220` greeting.
    pub fn start() -> MailDev {
        let bin = tool_path("maildev", "SLAWATCH_MAILDEV_BIN");
        let (server, ports) = Server::start_fresh("maildev", bin, 2, MAILDEV_READY_TIMEOUT);
        MailDev {
            smtp_port: ports[0],
            web_port: ports[1],
            server,
        }
    }

    /// `127.0.0.1:SMTP_PORT`.
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.smtp_port)
    }

    /// `http://127.0.0.1:WEB_PORT`.
    pub fn web_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    /// All messages in the inbox, in arrival order: the JSON array that
    /// `GET /api/email` returns (each has `subject`, `from`, `to`, `text`,
    /// `html`, `headers`, `envelope`, ...).
    pub fn messages(&self) -> Value {
        self.server.assert_running("messages");
        self.try_messages().unwrap_or_else(|e| {
            panic!(
                "GET /api/email: {e}\n--- maildev log ---\n{}",
                self.log_tail()
            )
        })
    }

    /// Polls the inbox until it holds at least `n` messages and returns them
    /// all (possibly more than `n`); panics after `timeout` with what arrived.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.server.assert_running("wait_for_messages");
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_messages() {
                Ok(Value::Array(msgs)) if msgs.len() >= n => return msgs,
                Ok(Value::Array(msgs)) => {
                    let subjects: Vec<&str> = msgs
                        .iter()
                        .map(|m| m["subject"].as_str().unwrap_or("?"))
                        .collect();
                    format!("{} message(s), subjects {subjects:?}", msgs.len())
                }
                Ok(other) => format!("unexpected /api/email body: {other}"),
                Err(e) => format!("GET /api/email failed: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {n} message(s) in maildev (smtp 127.0.0.1:{}); \
                     have {last}\n--- maildev log ---\n{}",
                    self.smtp_port,
                    self.log_tail()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Deletes every message (`DELETE /api/email/all`).
    pub fn clear(&self) {
        self.server.assert_running("clear");
        match http_request(self.web_port, "DELETE", "/api/email/all") {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!(
                "DELETE /api/email/all answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => panic!("DELETE /api/email/all: {e}"),
        }
    }

    /// Kills maildev (SIGKILL) and waits until it is gone: SMTP connections to
    /// `smtp_port` are refused until [`MailDev::start_again`].
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts maildev again on the same two ports after [`MailDev::stop`],
    /// with the inbox as it was, and waits until it is ready.
    pub fn start_again(&mut self) {
        self.server.start_again(MAILDEV_READY_TIMEOUT);
    }

    /// [`MailDev::stop`] then [`MailDev::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Whether the maildev process is alive.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// The last lines of maildev's log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// maildev's log file (kept after a failed test).
    pub fn log_path(&self) -> &Path {
        &self.server.log
    }

    fn try_messages(&self) -> Result<Value, String> {
        let (status, body) = http_request(self.web_port, "GET", "/api/email")?;
        if status != 200 {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("bad JSON ({e})"))
    }
}

// ------------------------------------------------------- generic server --

/// One server process, its ports, private dir and log; the kind decides the
/// command line and the readiness probe.
struct Server {
    kind: &'static str,
    bin: PathBuf,
    ports: PortReservation,
    dir: ScratchDir,
    log: PathBuf,
    child: Option<Child>,
}

enum LaunchError {
    /// The process exited before it was ready.
    Exited(ExitStatus),
    /// Not ready by the deadline; the last probe error.
    Timeout(String),
    /// The process could not be spawned at all.
    Spawn(String),
}

impl Server {
    /// Picks `n_ports` free ports and starts the server, retrying on fresh
    /// ports if it loses one to another process.
    fn start_fresh(
        kind: &'static str,
        bin: PathBuf,
        n_ports: usize,
        timeout: Duration,
    ) -> (Server, Vec<u16>) {
        let dir = ScratchDir::new(kind);
        let log = dir.path().join(format!("{kind}.log"));
        let mut server = Server {
            kind,
            bin,
            ports: PortReservation::default(),
            dir,
            log,
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.ports = PortReservation::pick(n_ports);
            match server.launch(timeout) {
                Ok(()) => {
                    let ports = server.ports.0.clone();
                    return (server, ports);
                }
                Err(LaunchError::Exited(_))
                    if server.lost_port_race() && attempt < START_ATTEMPTS =>
                {
                    continue;
                }
                Err(e) => server.fail(&e, "start"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Starts the server again on the ports it had.
    fn start_again(&mut self, timeout: Duration) {
        assert!(
            self.child.is_none(),
            "{}: start_again() while it is running: call stop() first",
            self.kind
        );
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match self.launch(timeout) {
                Ok(()) => return,
                Err(LaunchError::Exited(_))
                    if self.lost_port_race() && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => self.fail(&e, "restart on the same ports"),
            }
        }
    }

    fn command(&self) -> Command {
        let p = &self.ports.0;
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            "tansu" => {
                let url = format!("tcp://127.0.0.1:{}", p[0]);
                cmd.arg("broker")
                    .args(["--listener-url", &url, "--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .env("NO_COLOR", "1");
                for var in [
                    "CLUSTER_ID",
                    "SCHEMA_REGISTRY",
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ] {
                    cmd.env_remove(var);
                }
            }
            "maildev" => {
                cmd.args(["--smtp", &p[0].to_string(), "--ip", "127.0.0.1"])
                    .args(["--web", &p[1].to_string(), "--web-ip", "127.0.0.1"])
                    .arg("--mail-directory")
                    .arg(self.dir.path().join("mail"));
                // Its MAILDEV_* variables would add auth, relays, limits...
                for (var, _) in std::env::vars_os() {
                    if var.to_string_lossy().starts_with("MAILDEV_") {
                        cmd.env_remove(var);
                    }
                }
            }
            other => unreachable!("unknown server kind {other}"),
        }
        // cwd: maildev reads config files from its cwd and the parents.
        cmd.current_dir(self.dir.path())
            .env("TMPDIR", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    fn probe(&self) -> Result<(), String> {
        let p = &self.ports.0;
        match self.kind {
            "tansu" => kafka_api_versions(p[0]),
            "maildev" => {
                match http_request(p[1], "GET", "/api/email")? {
                    (200, body) => {
                        let v: Value = serde_json::from_slice(&body)
                            .map_err(|e| format!("/api/email is not JSON: {e}"))?;
                        if !v.is_array() {
                            return Err(format!("/api/email is not an array: {v}"));
                        }
                    }
                    (status, _) => return Err(format!("GET /api/email answered {status}")),
                }
                smtp_greeting(p[0])
            }
            other => unreachable!("unknown server kind {other}"),
        }
    }

    fn launch(&mut self, timeout: Duration) -> Result<(), LaunchError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| LaunchError::Spawn(format!("open {}: {e}", self.log.display())))?;
        let mut cmd = self.command();
        // Best effort: the marker only helps a human reading the log.
        let _ = writeln!(log, "\n=== fixture: starting {cmd:?} ===");
        let err_log = log
            .try_clone()
            .map_err(|e| LaunchError::Spawn(format!("dup log handle: {e}")))?;
        cmd.stdout(log).stderr(err_log);
        let child = cmd
            .spawn()
            .map_err(|e| LaunchError::Spawn(format!("spawn {}: {e}", self.bin.display())))?;
        self.child = Some(child);

        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.reap_if_exited() {
                return Err(LaunchError::Exited(status));
            }
            let last_err = match self.probe() {
                // The answer must come from our child, not from someone else
                // who holds the port while our child fails to bind it.
                Ok(()) => match self.reap_if_exited() {
                    None => return Ok(()),
                    Some(status) => return Err(LaunchError::Exited(status)),
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.kill();
                return Err(LaunchError::Timeout(last_err));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// If the child has exited, reaps it and returns its status.
    fn reap_if_exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("{}: waiting for pid {}: {e}", self.kind, child.id()),
        }
    }

    /// Whether the last start failed because a port was taken.
    fn lost_port_race(&self) -> bool {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let last_run = log.rsplit("=== fixture: starting").next().unwrap_or("");
        [
            "EADDRINUSE",
            "AddrInUse",
            "Address in use",
            "address already in use",
        ]
        .iter()
        .any(|needle| last_run.contains(needle))
    }

    fn fail(&mut self, err: &LaunchError, what: &str) -> ! {
        self.kill();
        let why = match err {
            LaunchError::Exited(status) => format!("it exited during startup ({status})"),
            LaunchError::Timeout(last) => format!("not ready in time; last probe: {last}"),
            LaunchError::Spawn(e) => e.clone(),
        };
        panic!(
            "{kind} failed to {what} on 127.0.0.1 ports {ports:?}: {why}\n\
             binary: {bin}\nlog: {log}\n--- last {LOG_TAIL_LINES} log lines ---\n{tail}",
            kind = self.kind,
            ports = self.ports.0,
            bin = self.bin.display(),
            log = self.log.display(),
            tail = self.log_tail(),
        );
    }

    fn assert_running(&self, what: &str) {
        assert!(
            self.child.is_some(),
            "{}::{what}() while the server is stopped: call start_again() first",
            self.kind
        );
    }

    fn is_running(&mut self) -> bool {
        self.reap_if_exited();
        self.child.is_some()
    }

    fn stop(&mut self) {
        assert!(
            self.child.is_some(),
            "{}: stop() while it is not running",
            self.kind
        );
        self.kill();
    }

    /// SIGKILL and reap; the ports are free once this returns.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if it already exited; wait() reaps it either way.
            let _ = child.kill();
            if let Err(e) = child.wait() {
                eprintln!("{}: reaping pid {}: {e}", self.kind, child.id());
            }
        }
    }

    fn log_tail(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let text = strip_ansi(&String::from_utf8_lossy(&bytes));
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            self.dir.keep();
            eprintln!("{} log kept at {}", self.kind, self.log.display());
        }
    }
}

// ------------------------------------------------------------- binaries --

/// The directory `scripts/install-deps.sh` installs into: `$SLAWATCH_TOOLS_DIR`, else `.tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("SLAWATCH_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"),
    }
}

/// A test tool: `$env_var` when set, else `<tools_dir>/bin/<name>`; panics saying how to
/// install it when missing.
pub fn tool_path(name: &str, env_var: &str) -> PathBuf {
    let (path, source) = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), format!("${env_var}")),
        _ => (
            tools_dir().join("bin").join(name),
            String::from("the default location"),
        ),
    };
    if !path.is_file() {
        panic!(
            "{name} not found at {} ({source}): run `scripts/install-deps.sh` in the \
             repository root to install it (or set {env_var} to a {name} binary)",
            path.display()
        );
    }
    path
}

// ---------------------------------------------------------------- ports --

/// Ports handed out by this process and not yet released.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

#[derive(Default)]
struct PortReservation(Vec<u16>);

impl PortReservation {
    /// `n` distinct ports that 127.0.0.1 can bind right now.
    fn pick(n: usize) -> PortReservation {
        let range = candidate_range();
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        let mut ports = Vec::with_capacity(n);
        for _ in 0..1000 {
            if ports.len() == n {
                break;
            }
            let port = match range {
                Some((lo, hi)) => lo + (random_u64() % u64::from(hi - lo)) as u16,
                None => match TcpListener::bind((LOCALHOST, 0)).and_then(|l| l.local_addr()) {
                    Ok(addr) => addr.port(),
                    Err(_) => continue,
                },
            };
            if reserved.contains(&port) || ports.contains(&port) {
                continue;
            }
            // std sets SO_REUSEADDR, as the servers do, so a port in
            // TIME_WAIT counts as free; one being listened on does not.
            if TcpListener::bind((LOCALHOST, port)).is_ok() {
                ports.push(port);
            }
        }
        assert_eq!(
            ports.len(),
            n,
            "could not find {n} free port(s) on 127.0.0.1"
        );
        reserved.extend(ports.iter().copied());
        PortReservation(ports)
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.0 {
            reserved.remove(p);
        }
    }
}

/// Ports from 20000 up to the start of the ephemeral range, or `None` (use
/// bind-to-0) if that range is unusual.
fn candidate_range() -> Option<(u16, u16)> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let lo: u16 = match text {
        Some(t) => t.split_whitespace().next()?.parse().ok()?,
        None => 32768,
    };
    (lo > 21_000).then_some((20_000, lo))
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

// ------------------------------------------------------------ temp dirs --

/// A private directory under the system temp dir, removed on drop unless
/// [`ScratchDir::keep`] was called.
struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    fn new(kind: &str) -> ScratchDir {
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let path = base.join(format!(
                "slawatch-it-{kind}-{}-{:08x}",
                std::process::id(),
                random_u64() as u32
            ));
            match fs::create_dir(&path) {
                Ok(()) => return ScratchDir { path, keep: false },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
        panic!("could not create a temp dir under {}", base.display());
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a leftover temp dir is harmless.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// --------------------------------------------------------------- probes --

fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    Ok(s)
}

/// Sends a Kafka ApiVersions v0 request and checks for a well-formed answer
/// with error_code 0 that lists ApiVersions (key 18) itself.
fn kafka_api_versions(port: u16) -> Result<(), String> {
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x5157_0001;
    let client_id = b"slawatch-it";
    let mut req = Vec::new();
    req.extend_from_slice(&API_VERSIONS.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes()); // api_version
    req.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    req.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    req.extend_from_slice(client_id);
    let mut frame = (req.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&req);

    let mut s = connect(port)?;
    s.write_all(&frame)
        .map_err(|e| format!("send ApiVersions: {e}"))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .map_err(|e| format!("read ApiVersions size: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(10..=1 << 20).contains(&size) {
        return Err(format!("ApiVersions response size {size} is implausible"));
    }
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body)
        .map_err(|e| format!("read ApiVersions body: {e}"))?;
    let i16_at = |i: usize| i16::from_be_bytes([body[i], body[i + 1]]);
    let correlation = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let error_code = i16_at(4);
    let count = i32::from_be_bytes([body[6], body[7], body[8], body[9]]);
    if correlation != CORRELATION_ID {
        return Err(format!("ApiVersions correlation id {correlation:#x}"));
    }
    if error_code != 0 {
        return Err(format!("ApiVersions error_code {error_code}"));
    }
    if count <= 0 || body.len() != 10 + 6 * count as usize {
        return Err(format!(
            "ApiVersions lists {count} keys in a {size}-byte response"
        ));
    }
    if !(0..count as usize).any(|k| i16_at(10 + 6 * k) == API_VERSIONS) {
        return Err("ApiVersions response does not list ApiVersions".into());
    }
    Ok(())
}

/// Reads the SMTP greeting, expects `220`, and says QUIT.
fn smtp_greeting(port: u16) -> Result<(), String> {
    let mut s = connect(port)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && line.len() < 1024 {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("read SMTP greeting: {e}")),
        }
    }
    if !line.starts_with(b"220") {
        return Err(format!(
            "SMTP greeting {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    // Best effort: the server may close first.
    let _ = s.write_all(b"QUIT\r\n");
    Ok(())
}

/// A minimal HTTP/1.1 request to 127.0.0.1: returns status and body
/// (`Content-Length` or chunked).
fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = connect(port)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send {method} {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read {method} {path}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "{method} {path}: no complete HTTP header in {} bytes",
                raw.len()
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name == "content-length" {
                length = value.parse::<usize>().ok();
            }
        }
    }
    if chunked {
        body = dechunk(&body).ok_or_else(|| format!("{method} {path}: bad chunked body"))?;
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(format!(
                "{method} {path}: body has {} of {n} bytes",
                body.len()
            ));
        }
        body.truncate(n);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Removes ANSI escape sequences (tansu colours its log).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_decodes() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }

    #[test]
    fn strip_ansi_removes_colours() {
        assert_eq!(strip_ansi("\u{1b}[2mhi\u{1b}[0m there"), "hi there");
    }
}
