//! Issue 11, item 5: HTTPS on the API listener. Certificates are made at test time by the
//! `openssl` command line (a test CA, a server certificate it issues for `localhost` and
//! `127.0.0.1`), and every HTTPS request comes from an independent client — `curl --cacert`,
//! `openssl s_client` — against a real `slawatch run` on a free port: the routes answer over
//! HTTPS with a certificate that verifies, plain HTTP gets no API answer, a client trusting
//! another CA fails verification, a handshake that never finishes stalls nobody, the rate limit
//! still sees the client's address, `slawatch query` finds the instance through `api.json`,
//! `SIGHUP` serves a rotated certificate (and keeps the old one when the new pair is bad), and
//! every bad configuration stops the start with a message naming the file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");
const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sla-specs");

fn run_tool(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test CA and the certificates it issues, all made by the `openssl` command line.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.make_ca("ca");
        pki.make_ca("other-ca");
        std::fs::write(
            pki.path("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        run_tool("openssl", args, self.dir.path());
    }

    fn make_ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN=slawatch test {name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
    }

    /// A server certificate for `localhost` and `127.0.0.1` with `serial`, issued by `ca`:
    /// `<name>.pem` and `<name>.key`.
    pub fn issue(&self, name: &str, serial: u32) -> (PathBuf, PathBuf) {
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            &format!("{name}.pem"),
        ]);
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }
}

/// The base64 body of the first PEM certificate in `text`, whitespace removed: equal for equal
/// certificates.
fn first_certificate(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in:\n{text}"));
    let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = rest.find("-----END CERTIFICATE-----").unwrap();
    rest[..end].split_whitespace().collect()
}

/// What `openssl s_client` is served at `addr`: the server's own certificate.
fn served_certificate(addr: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    first_certificate(&String::from_utf8_lossy(&out.stdout))
}

/// One `curl` run: its exit code, the HTTP status and body, and its complaints.
struct Curl {
    exit: i32,
    status: u16,
    body: String,
    stderr: String,
}

fn curl(url: &str, ca: Option<&Path>, token: Option<&str>, extra: &[&str]) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `slawatch run --serve` over an empty input with HTTPS on a free port; killed on drop.
struct Run {
    child: Child,
    log: PathBuf,
    addr: String,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn start(cert: &Path, key: &Path, ca: &Path, extra: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("empty.jsonl");
        std::fs::write(&input, "").unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("run.log");
        let child = Command::new(BIN)
            .args(["run", "--serve", "--listen", "127.0.0.1:0"])
            .arg("--input")
            .arg(&input)
            .arg("--data-dir")
            .arg(&data)
            .args(["--specs", SPECS])
            .arg("--api-token-file")
            .arg(dir.path().join("token"))
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .args(extra)
            .env("RUST_LOG", "slawatch=info")
            .env_remove("SLAWATCH_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut run = Run {
            child,
            log,
            addr: String::new(),
            data,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(run.data.join("api.json"))
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                run.addr = v["address"].as_str().unwrap().to_owned();
                if curl(&run.url("/healthz"), Some(ca), None, &[]).status == 200 {
                    return run;
                }
            }
            if let Ok(Some(status)) = run.child.try_wait() {
                panic!("slawatch run exited ({status}):\n{}", run.log_text());
            }
            assert!(Instant::now() < deadline, "no API:\n{}", run.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn port(&self) -> &str {
        self.addr.rsplit_once(':').unwrap().1
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits until the log holds `text` `times` times.
    fn wait_for_log(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log_text().matches(text).count() < times {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slawatch run exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no `{text}` in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_api_answers_over_https_with_a_certificate_that_verifies() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", 0x1001);
    let ca = pki.path("ca.pem");
    let run = Run::start(&cert, &key, &ca, &[]);

    // api.json tells `slawatch query` the scheme and the certificate file.
    let about: Value =
        serde_json::from_str(&std::fs::read_to_string(run.data.join("api.json")).unwrap()).unwrap();
    assert_eq!(about["scheme"], "https");
    assert_eq!(about["tls_cert_file"], cert.display().to_string());

    // A client that never finishes its handshake holds a connection open meanwhile: the
    // handshakes of everyone else go on.
    let mut stalled = std::net::TcpStream::connect(&run.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();

    // Well inside the server's 10 s handshake deadline, which a handshake run in the accept
    // loop would make this request wait for.
    let health = curl(&run.url("/healthz"), Some(&ca), None, &["--max-time", "5"]);
    assert_eq!((health.exit, health.status), (0, 200), "{}", health.stderr);
    assert_eq!(health.body, "ok\n");

    // The certificate verifies for the name `localhost` too (curl checks the name).
    let by_name = curl(
        &format!("https://localhost:{}/readyz", run.port()),
        Some(&ca),
        None,
        &["--resolve", &format!("localhost:{}:127.0.0.1", run.port())],
    );
    assert_eq!(
        (by_name.exit, by_name.status),
        (0, 200),
        "{}",
        by_name.stderr
    );

    let status = curl(&run.url("/v1/status"), Some(&ca), Some("s3cret"), &[]);
    assert_eq!((status.exit, status.status), (0, 200), "{}", status.stderr);
    let answer: Value = serde_json::from_str(&status.body).unwrap();
    assert!(
        !answer["objectives"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    // The token is still required over HTTPS.
    let anonymous = curl(&run.url("/v1/status"), Some(&ca), None, &[]);
    assert_eq!(anonymous.status, 401);

    let metrics = curl(&run.url("/metrics"), Some(&ca), Some("s3cret"), &[]);
    assert_eq!(
        (metrics.exit, metrics.status),
        (0, 200),
        "{}",
        metrics.stderr
    );
    assert!(
        metrics.body.contains("# TYPE slawatch_"),
        "{}",
        metrics.body
    );

    // A client that trusts another CA refuses the certificate (curl: 60, peer certificate
    // cannot be authenticated).
    let stranger = curl(
        &run.url("/healthz"),
        Some(&pki.path("other-ca.pem")),
        None,
        &[],
    );
    assert_eq!(stranger.exit, 60, "{}", stranger.stderr);
    assert_eq!(stranger.status, 0);

    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let mut plain = std::net::TcpStream::connect(&run.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // (The server may close the connection on the first bytes, before the write ends.)
    let _ = write!(
        plain,
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        run.addr
    );
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP got: {}",
        String::from_utf8_lossy(&reply)
    );
    let plain_curl = curl(&format!("http://{}/healthz", run.addr), None, None, &[]);
    assert_ne!(plain_curl.status, 200);

    // The served certificate is exactly the file's.
    assert_eq!(
        served_certificate(&run.addr),
        first_certificate(&std::fs::read_to_string(&cert).unwrap())
    );

    // `slawatch query` finds the instance in api.json and asks it over HTTPS: with the CA it
    // gets the API's answer; without it, the server certificate alone does not verify its
    // chain, and the error says what to pass.
    let query = |extra: &[&str]| {
        Command::new(BIN)
            .args(["query", "status", "--json", "--specs", SPECS])
            .arg("--data-dir")
            .arg(&run.data)
            .args(extra)
            .env("SLAWATCH_API_TOKEN", "s3cret")
            .env_remove("SLAWATCH_TLS_CA_FILE")
            .output()
            .unwrap()
    };
    let out = query(&["--tls-ca-file", ca.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_query: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_query["objectives"], answer["objectives"]);
    let out = query(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serves HTTPS") && err.contains("--tls-ca-file"),
        "{err}"
    );
    drop(stalled);
}

#[test]
fn the_rate_limit_sees_the_client_address_through_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", 7);
    let ca = pki.path("ca.pem");
    let run = Run::start(&cert, &key, &ca, &["--api-rate-limit", "1"]);
    // A burst of 2 at 1 a second: of 6 requests in one curl, some are refused, by address.
    let url = run.url("/v1/openapi.json");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&ca)
        .args(["-H", "Authorization: Bearer s3cret", "-w", "%{http_code}\n"]);
    for _ in 0..6 {
        cmd.args(["-o", "/dev/null", &url]);
    }
    let out = cmd.output().unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let limited = codes.lines().filter(|c| *c == "429").count();
    assert!(
        (3..=4).contains(&limited) && codes.lines().count() == 6,
        "{codes}"
    );
    let refused = curl(&url, Some(&ca), Some("s3cret"), &[]);
    assert_eq!(refused.status, 429);
    assert!(refused.body.contains("from 127.0.0.1"), "{}", refused.body);
}

#[test]
fn sighup_serves_a_rotated_certificate_and_keeps_it_when_the_next_is_bad() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", 0x1001);
    let ca = pki.path("ca.pem");
    // Served from paths of their own, replaced the way a mounted Secret is: by a rename.
    let live = tempfile::tempdir().unwrap();
    let (live_cert, live_key) = (live.path().join("tls.crt"), live.path().join("tls.key"));
    let install = |from: &Path, to: &Path| {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    install(&cert, &live_cert);
    install(&key, &live_key);
    let mut run = Run::start(&live_cert, &live_key, &ca, &[]);
    let original = first_certificate(&std::fs::read_to_string(&cert).unwrap());
    assert_eq!(served_certificate(&run.addr), original);

    let (rotated, rotated_key) = pki.issue("rotated", 0x2002);
    install(&rotated, &live_cert);
    install(&rotated_key, &live_key);
    run.sighup();
    run.wait_for_log("reloaded the TLS certificate", 1);
    let new = first_certificate(&std::fs::read_to_string(&rotated).unwrap());
    assert_ne!(new, original);
    assert_eq!(served_certificate(&run.addr), new);
    let health = curl(&run.url("/healthz"), Some(&ca), None, &[]);
    assert_eq!((health.exit, health.status), (0, 200), "{}", health.stderr);

    // A rotation whose key is not the certificate's is refused; the rotated one stays.
    install(&cert, &live_cert);
    run.sighup();
    run.wait_for_log("was not reloaded", 1);
    assert!(
        run.log_text()
            .contains("does not belong to the certificate"),
        "{}",
        run.log_text()
    );
    assert_eq!(served_certificate(&run.addr), new);
}

/// `slawatch run` with these TLS flags: it must stop before serving, with exit code 1 and the
/// error on stderr.
fn refused_start(args: &[&Path]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    let data = dir.path().join("data");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--serve", "--listen", "127.0.0.1:0"])
        .arg("--input")
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .args(["--specs", SPECS])
        .arg("--tls-cert-file")
        .arg(args[0])
        .arg("--tls-key-file")
        .arg(args[1])
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!data.join("api.json").exists());
    err
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_naming_the_file() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", 1);
    let (_, other_key) = pki.issue("other", 2);
    let missing = pki.path("missing.pem");

    let err = refused_start(&[&missing, &key]);
    assert!(
        err.contains(&format!(
            "reading the TLS certificate file {}",
            missing.display()
        )),
        "{err}"
    );
    let err = refused_start(&[&cert, &missing]);
    assert!(
        err.contains(&format!("reading the TLS key file {}", missing.display())),
        "{err}"
    );
    // The files swapped: a key where the certificate belongs, and the other way round.
    let err = refused_start(&[&key, &key]);
    assert!(
        err.contains(&format!(
            "the TLS certificate file {} holds no certificate",
            key.display()
        )),
        "{err}"
    );
    let err = refused_start(&[&cert, &cert]);
    assert!(
        err.contains(&format!(
            "the TLS key file {} holds no private key",
            cert.display()
        )),
        "{err}"
    );
    let err = refused_start(&[&cert, &other_key]);
    assert!(
        err.contains(&format!(
            "the TLS key file {} does not belong to the certificate in {}",
            other_key.display(),
            cert.display()
        )),
        "{err}"
    );
    // A certificate block whose content is not a certificate.
    let garbled = pki.path("garbled.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = refused_start(&[&garbled, &key]);
    assert!(err.contains(&garbled.display().to_string()), "{err}");
}

#[test]
fn the_certificate_and_key_flags_come_in_pairs() {
    let out = Command::new(BIN)
        .args([
            "run",
            "--tls-cert-file",
            "/tmp/x.pem",
            "--input",
            "/dev/null",
        ])
        .env_remove("SLAWATCH_TLS_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-key-file"), "{err}");
    // From the environment too.
    let out = Command::new(BIN)
        .args(["run", "--input", "/dev/null"])
        .env("SLAWATCH_TLS_KEY_FILE", "/tmp/x.key")
        .env_remove("SLAWATCH_TLS_CERT_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert-file"), "{err}");
}
