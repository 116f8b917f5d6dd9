//! A `slawatch run` with its API on a free port ([`Run`]), the tests' reader of its
//! `/metrics` (the reference parser, [`parse`]), and the input around it: [`simulate`]d lines
//! and [`produce_all`] to a real broker.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::servers::Tansu;

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

/// One sample of a parsed exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Families (name → type) and samples, as the reference parser reads them; panics with the
/// parser's error when the text is not valid.
pub struct Parsed {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Parsed {
    /// The value of the one sample named `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let hits: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(hits.len(), 1, "one sample {name}{labels:?}, got {hits:?}");
        hits[0].value
    }

    /// Every sample named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        p.display()
    );
    p
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
types, samples = {}, []
for fam in text_string_to_metric_families(sys.stdin.read()):
    types[fam.name] = fam.type
    for s in fam.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump({"types": types, "samples": samples}, sys.stdout)
"#;

pub fn parse(text: &str) -> Parsed {
    let mut child = Command::new(python())
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference parser rejects /metrics: {}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let types = v["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_owned(),
            labels: s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect();
    Parsed { types, samples }
}

/// A GET with the test's own client: status and body.
pub fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    crate::support::http::request("GET", addr, path, token)
}

/// A `slawatch run` with its API on a free port; killed on drop.
pub struct Run {
    pub child: Child,
    pub log: PathBuf,
    pub addr: String,
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = collapse_repeats(&self.log_text());
            let start = (log.len().saturating_sub(20_000)..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(0);
            let tail = &log[start..];
            eprintln!(
                "--- end of the log of slawatch run ({}) ---\n{tail}",
                self.log.display()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log with each run of lines that repeat the line before but for its timestamp (a stalled
/// run's progress lines) cut to one line and a count, so the tail shows what led up to it.
fn collapse_repeats(log: &str) -> String {
    // Log lines start with an RFC 3339 timestamp and a space (ANSI colour codes around it).
    let body = |line: &str| {
        line.split_once('Z')
            .map_or(line, |(_, rest)| rest)
            .to_owned()
    };
    let (mut out, mut last, mut repeats) = (String::new(), None::<String>, 0);
    for line in log.lines() {
        let b = body(line);
        if last.as_ref() == Some(&b) {
            repeats += 1;
            continue;
        }
        if repeats > 0 {
            out.push_str(&format!("    … the line above {repeats} more time(s)\n"));
            repeats = 0;
        }
        out.push_str(line);
        out.push('\n');
        last = Some(b);
    }
    if repeats > 0 {
        out.push_str(&format!("    … the line above {repeats} more time(s)\n"));
    }
    out
}

impl Run {
    pub fn spawn(args: &[String], data: &Path, log: PathBuf) -> Run {
        Run::spawn_with_env(args, data, log, &[])
    }

    /// [`Run::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        args: &[String],
        data: &Path,
        log: PathBuf,
        env: &[(&str, &OsStr)],
    ) -> Run {
        // A previous run's address file would name a dead listener.
        let _ = std::fs::remove_file(data.join("api.json"));
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut run = Run {
            child,
            log,
            addr: String::new(),
        };
        run.wait_for("the API address", Duration::from_secs(120), |r| {
            let text = std::fs::read_to_string(data.join("api.json")).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            r.addr = v["address"].as_str()?.to_owned();
            Some(())
        });
        run
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `ready` until it gives a value, failing after `within` or when the run exits.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut ready: impl FnMut(&mut Run) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = ready(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "slawatch run exited ({status}) waiting for {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self, token: Option<&str>) -> Parsed {
        let (status, body) = get(&self.addr, "/metrics", token);
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the run.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// Waits for a run with `--exit-at-eof` to stop by itself (exit 0), and returns its report.
    pub fn wait_exit(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "run failed ({status}):\n{}",
                    self.log_text()
                );
                return report(&self.log);
            }
            assert!(
                Instant::now() < deadline,
                "the run did not stop at the end of its input within 300 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and waits for the exit.
    pub fn sigterm(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The JSON report a run prints on stdout when it exits (its log's only JSON line).
pub fn report(log: &Path) -> Value {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"restored\""))
        .unwrap_or_else(|| panic!("no report in {text}"));
    serde_json::from_str(line).unwrap()
}

/// The lines `slawatch simulate ARGS` writes.
pub fn simulate(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.jsonl");
    let status = Command::new(BIN)
        .arg("simulate")
        .args(args)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Produces every line as one message keyed by its position, and waits until all are acked.
pub fn produce_all(broker: &Tansu, topic: &str, lines: &[String]) {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let key = i.to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(line);
        loop {
            match p.send(record) {
                Ok(()) => break,
                // The local queue is full: let it drain.
                Err((_, r)) => {
                    p.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Waits until `/metrics` says every produced record was consumed and accepted (never more),
/// a checkpoint wrote state, and no assigned partition of `topics` lags.
pub fn consumed_exactly(run: &mut Run, produced: usize, topics: &[&str]) {
    let m = run.wait_for(
        "all records consumed and accepted, with no lag",
        Duration::from_secs(180),
        |r| {
            let m = r.metrics(None);
            let consumed = m.value("slawatch_records_consumed_total", &[]);
            let accepted = m.value("slawatch_records_accepted_total", &[]);
            assert!(
                consumed <= produced as f64,
                "consumed {consumed} of {produced}"
            );
            assert!(
                accepted <= produced as f64,
                "accepted {accepted} of {produced}"
            );
            let lags = m.all("slawatch_consumer_lag_records");
            let covered = topics
                .iter()
                .all(|t| lags.iter().any(|s| s.labels["topic"] == *t));
            let lag: f64 = lags.iter().map(|s| s.value).sum();
            // A checkpoint that wrote state (one of offsets alone writes none).
            let checkpointed = m.value("slawatch_checkpoint_size_bytes", &[]) > 0.0;
            (consumed == produced as f64
                && accepted == produced as f64
                && covered
                && lag == 0.0
                && checkpointed)
                .then_some(m)
        },
    );
    assert_eq!(
        m.all("slawatch_records_rejected_total")
            .iter()
            .map(|s| s.value)
            .sum::<f64>(),
        0.0
    );
    assert!(m.value("slawatch_checkpoint_duration_seconds_count", &[]) > 0.0);
}
