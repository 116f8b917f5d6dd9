//! The status page at `/` in a real browser: headless Chromium (Debian's `chromium`, installed
//! by `scripts/install-deps.sh`) loads the page of a `slawatch run --serve` fed a generated
//! two-day stream with the shipped `sla-specs/`, and the test checks that
//!
//! - every objective of every spec file is a row of the rendered DOM (`data-objective=
//!   "spec/objective"`), the same set `/v1/status` lists;
//! - the page made no request outside the server: Chromium's NetLog (`--log-net-log`) lists
//!   every URL request, and each one made for the page (its network isolation key's top frame
//!   is the server's site, or the server's origin initiated it) is on `http://127.0.0.1:PORT/`.
//!
//! Requests of the browser itself (component updates, sign-in, time queries: NetLog sources
//! with no page as their top frame) are not the page's and are left out; the flags below
//! switch most of them off, and `--host-resolver-rules` resolves every name but 127.0.0.1 to
//! NOTFOUND, so no connection leaves the machine whatever a page asks for. A second test
//! serves a page that does fetch from outside and checks the NetLog check catches it.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SERVE_READY_TIMEOUT: Duration = Duration::from_secs(300);
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);
const TAIL_LINES: usize = 40;

// ------------------------------------------------------------------ tests --

#[test]
fn status_page_in_headless_chromium_shows_every_objective_and_fetches_nothing_outside() {
    let chromium = chromium_bin();
    let dir = Scratch::new("page");
    let stream = dir.path().join("sessions.jsonl");
    let specs = repo().join("sla-specs");

    // Two days, both shipped agents, the demo incidents (findings, changes, PII on the page);
    // ~2,900 sessions, so the run is ready quickly even on a busy machine.
    let out = Command::new(slawatch_bin())
        .args([
            "simulate",
            "--seed",
            "20261206",
            "--duration",
            "48h",
            "--demo",
        ])
        .args(["--rate", "60"])
        .args(["--agent", "support-bot", "--agent", "refund-agent"])
        .arg("--out")
        .arg(&stream)
        .output()
        .expect("spawn slawatch simulate");
    assert!(
        out.status.success(),
        "slawatch simulate failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let serve = Serve::start(&dir, &stream, &specs);
    let base = format!("http://{}", serve.addr);

    // Every objective, from the spec files themselves (not from slawatch).
    let expected = objectives_from_spec_files(&specs);
    let spec_names: BTreeSet<&str> = expected.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        spec_names.len() >= 2 && expected.len() >= 10,
        "expected several specs and objectives in {}: {expected:?}",
        specs.display()
    );
    // ... and /v1/status lists the same set.
    let status: Value = serde_json::from_str(&serve.get("/v1/status"))
        .unwrap_or_else(|e| serve.fail(&format!("/v1/status is not JSON: {e}")));
    let listed: BTreeSet<(String, String)> = status["objectives"]
        .as_array()
        .unwrap_or_else(|| serve.fail(&format!("/v1/status has no objectives array: {status}")))
        .iter()
        .map(|o| {
            (
                o["spec"].as_str().unwrap_or_default().to_owned(),
                o["objective"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed, expected,
        "/v1/status lists other objectives than the spec files"
    );

    let page = load_in_chromium(&chromium, &format!("{base}/"), &dir.path().join("browser"));
    let dom = &page.dom;
    assert!(
        dom.contains("slawatch status") && dom.contains("id=\"objectives\""),
        "the DOM is not the status page:\n{}",
        head(dom)
    );
    let rows = dom.matches("data-objective=\"").count();
    let mut missing = Vec::new();
    for (spec, objective) in &expected {
        if !dom.contains(&format!("data-objective=\"{spec}/{objective}\"")) {
            missing.push(format!("{spec}/{objective}"));
        }
    }
    assert!(
        missing.is_empty(),
        "objectives missing from the rendered page: {missing:?}\n{}",
        head(dom)
    );
    assert_eq!(rows, expected.len(), "one row per objective, no more");
    // The charts and findings sections rendered (the demo stream has findings).
    for id in ["charts", "changes", "findings"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} section");
    }
    assert!(dom.contains("<svg"), "no inline SVG chart in the page");

    // No request outside the server.
    let origin = format!("{base}/");
    let requests = page.page_requests(&serve.addr);
    assert!(
        requests.iter().any(|u| u == &origin),
        "the NetLog does not show the page's own request {origin}: {requests:?}\n(log: {})",
        page.netlog.display()
    );
    let outside: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with(&origin))
        .collect();
    assert!(
        outside.is_empty(),
        "the status page made requests outside {origin}: {outside:?}"
    );
    drop(serve);
}

/// The NetLog check is not vacuous: a page that loads an image and a stylesheet from another
/// host is caught (the host is `outside.invalid`, resolved to NOTFOUND, so nothing is sent).
#[test]
fn netlog_check_catches_a_page_fetching_from_outside() {
    let chromium = chromium_bin();
    let dir = Scratch::new("page-outside");
    let html = "<!DOCTYPE html><html><head><title>t</title>\
                <link rel=\"stylesheet\" href=\"http://outside.invalid/s.css\"></head>\
                <body><p data-objective=\"a/b\">x</p><img src=\"http://outside.invalid/x.png\">\
                <img src=\"/local.png\"></body></html>";
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let body = if req.starts_with("GET / ") { html } else { "" };
                    let code = if body.is_empty() {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.0 {code}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(POLL),
                Err(_) => thread::sleep(POLL),
            }
        }
    });
    let page = load_in_chromium(
        &chromium,
        &format!("http://{addr}/"),
        &dir.path().join("browser"),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().expect("test server thread");

    assert!(
        page.dom.contains("data-objective=\"a/b\""),
        "DOM: {}",
        head(&page.dom)
    );
    let requests = page.page_requests(&addr.to_string());
    let origin = format!("http://{addr}/");
    let outside: BTreeSet<&str> = requests
        .iter()
        .filter(|u| !u.starts_with(&origin))
        .map(String::as_str)
        .collect();
    assert_eq!(
        outside,
        BTreeSet::from([
            "http://outside.invalid/s.css",
            "http://outside.invalid/x.png"
        ]),
        "all page requests: {requests:?}"
    );
    assert!(
        requests.contains(&format!("{origin}local.png")),
        "{requests:?}"
    );
}

// -------------------------------------------------------------- chromium --

fn chromium_bin() -> PathBuf {
    let path = match std::env::var_os("SLAWATCH_CHROMIUM_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/chromium"),
    };
    assert!(
        path.is_file(),
        "Chromium not found at {}: run `scripts/install-deps.sh` (installs Debian's chromium) \
         or set SLAWATCH_CHROMIUM_BIN",
        path.display()
    );
    path
}

struct LoadedPage {
    dom: String,
    netlog: PathBuf,
    events: Vec<Value>,
    constants: Value,
}

/// Loads `url` in a fresh headless Chromium profile under `dir`: the DOM after the load event
/// (`--dump-dom`) and the NetLog of everything the browser requested.
fn load_in_chromium(chromium: &Path, url: &str, dir: &Path) -> LoadedPage {
    let profile = dir.join("profile");
    fs::create_dir_all(&profile).expect("create browser profile dir");
    let netlog = dir.join("netlog.json");
    let stderr_path = dir.join("chromium.log");
    let dom_path = dir.join("dom.html");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--net-log-capture-mode=Default")
        .arg("--dump-dom")
        .arg(url)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&dom_path).expect("create dom file"))
        .stderr(fs::File::create(&stderr_path).expect("create chromium log"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", chromium.display()));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for chromium") {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish loading {url} in {CHROMIUM_TIMEOUT:?}\n{}",
                    tail(&stderr_path)
                );
            }
            None => thread::sleep(POLL),
        }
    };
    let dom = fs::read_to_string(&dom_path).unwrap_or_default();
    assert!(
        status.success() && !dom.is_empty(),
        "chromium --dump-dom {url} failed ({status}), DOM {} bytes\n{}",
        dom.len(),
        tail(&stderr_path)
    );
    let text = fs::read_to_string(&netlog)
        .unwrap_or_else(|e| panic!("chromium wrote no NetLog at {}: {e}", netlog.display()));
    let log = parse_netlog(&text)
        .unwrap_or_else(|e| panic!("the NetLog {} is not JSON: {e}", netlog.display()));
    LoadedPage {
        dom,
        netlog,
        events: log["events"].as_array().cloned().unwrap_or_default(),
        constants: log["constants"].clone(),
    }
}

/// A NetLog is one JSON object, complete when Chromium exits normally; tolerate a missing tail.
fn parse_netlog(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|e| {
        let t = text.trim_end().trim_end_matches(',');
        serde_json::from_str(&format!("{t}]}}")).map_err(|_| e)
    })
}

impl LoadedPage {
    /// Every URL requested for the page served at `addr` (`127.0.0.1:PORT`): the URL requests
    /// whose network isolation key has the server's site as top frame, or that the server's
    /// origin initiated, with every URL each of them touched (redirects included).
    fn page_requests(&self, addr: &str) -> Vec<String> {
        let ev_type = |name: &str| self.constants["logEventTypes"][name].as_u64();
        let src_type = self.constants["logSourceType"]["URL_REQUEST"].as_u64();
        let start_job = ev_type("URL_REQUEST_START_JOB");
        assert!(
            start_job.is_some() && src_type.is_some(),
            "the NetLog {} has no URL_REQUEST constants",
            self.netlog.display()
        );
        let site = format!("http://{}", addr.split(':').next().unwrap_or(addr));
        let origin = format!("http://{addr}");
        let mut page_sources = BTreeSet::new();
        for e in &self.events {
            if e["type"].as_u64() != start_job || e["source"]["type"].as_u64() != src_type {
                continue;
            }
            let p = &e["params"];
            let nik = p["network_isolation_key"].as_str().unwrap_or("");
            let top_frame = nik.split(' ').next().unwrap_or("");
            let initiator = p["initiator"].as_str().unwrap_or("");
            if top_frame == site || initiator == origin || initiator.starts_with(&site) {
                page_sources.insert(e["source"]["id"].as_u64());
            }
        }
        let mut urls = Vec::new();
        for e in &self.events {
            if !page_sources.contains(&e["source"]["id"].as_u64()) {
                continue;
            }
            for k in ["url", "location", "original_url"] {
                if let Some(u) = e["params"][k].as_str() {
                    if !urls.iter().any(|x| x == u) {
                        urls.push(u.to_owned());
                    }
                }
            }
        }
        urls
    }
}

// ------------------------------------------------------------ the server --

/// `slawatch run --serve` on a file, listening on 127.0.0.1:0; killed on drop.
struct Serve {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Scratch, input: &Path, specs: &Path) -> Serve {
        let data = dir.path().join("data");
        let log = dir.path().join("slawatch-run.log");
        let logf = fs::File::create(&log).expect("create run log");
        let child = Command::new(slawatch_bin())
            .arg("run")
            .arg("--input")
            .arg(input)
            .arg("--data-dir")
            .arg(&data)
            .arg("--specs")
            .arg(specs)
            .args(["--listen", "127.0.0.1:0", "--serve"])
            .args(["--history-segment-by", "attributes.channel"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .expect("spawn slawatch run");
        let mut serve = Serve {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let deadline = Instant::now() + SERVE_READY_TIMEOUT;
        let api_json = data.join("api.json");
        let mut last = String::from("no api.json yet");
        loop {
            if let Some(status) = serve
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                serve.child = None;
                serve.fail(&format!(
                    "slawatch run exited before it was ready ({status})"
                ));
            }
            if serve.addr.is_empty() {
                if let Ok(text) = fs::read_to_string(&api_json) {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        if let Some(a) = v["address"].as_str() {
                            serve.addr = a.to_owned();
                        }
                    }
                }
            }
            if !serve.addr.is_empty() {
                // Ready once reading began; `--serve` says when the input is done.
                let done = fs::read_to_string(&serve.log)
                    .is_ok_and(|l| l.contains("input done; serving until SIGTERM"));
                match http_get(&serve.addr, "/readyz") {
                    Ok((200, _)) if done => return serve,
                    Ok((200, _)) => last = "ready, input not done yet".into(),
                    Ok((code, body)) => last = format!("/readyz answered {code}: {body}"),
                    Err(e) => last = e,
                }
            }
            if Instant::now() >= deadline {
                serve.fail(&format!(
                    "not ready in {SERVE_READY_TIMEOUT:?}; last: {last}"
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn get(&self, path: &str) -> String {
        match http_get(&self.addr, path) {
            Ok((200, body)) => body,
            Ok((code, body)) => self.fail(&format!("GET {path} answered {code}: {body}")),
            Err(e) => self.fail(&format!("GET {path}: {e}")),
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nlog: {}\n--- last {TAIL_LINES} lines ---\n{}",
            self.log.display(),
            tail(&self.log)
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!(
                "slawatch run log: {}\n{}",
                self.log.display(),
                tail(&self.log)
            );
        }
    }
}

/// A GET over HTTP/1.0 (no chunking, the server closes): status and body.
fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {} bytes", buf.len()))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((code, body.to_owned()))
}

// --------------------------------------------------------------- helpers --

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn slawatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_slawatch"))
}

/// (metadata.name, objective name) of every `*.yaml` spec in `dir`, read as plain YAML.
fn objectives_from_spec_files(dir: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).expect("read sla-specs") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read spec");
        let doc: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no metadata.name", path.display()));
        for o in doc["spec"]["objectives"].as_array().into_iter().flatten() {
            let o = o["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: an objective without a name", path.display()));
            out.insert((name.to_owned(), o.to_owned()));
        }
    }
    out
}

fn tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn head(s: &str) -> &str {
    let mut end = s.len().min(2000);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A private temp dir, removed on drop unless the test is panicking (then kept for the logs).
struct Scratch(PathBuf);

impl Scratch {
    fn new(kind: &str) -> Scratch {
        let d = tempfile::Builder::new()
            .prefix(&format!("slawatch-it-{kind}-"))
            .tempdir()
            .expect("create temp dir");
        Scratch(d.keep())
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
