//! Issue 11, item 5: the API limits each client address to `--api-rate-limit` requests a second
//! (bursts of twice that) with 429 problem+json, and never limits the health checks.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::http::request;

#[test]
fn a_client_over_the_rate_limit_gets_429_and_health_checks_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args([
            "run",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--api-rate-limit",
            "5",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .arg("--specs")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sla-specs"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("api.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            break v["address"].as_str().unwrap().to_owned();
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "no API: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A burst of 10, refilled at 5 a second: of 30 quick requests, at most 10 plus what the
    // time they took refilled pass.
    let started = Instant::now();
    let codes: Vec<(u16, String)> = (0..30)
        .map(|_| request("GET", &addr, "/v1/openapi.json", None))
        .collect();
    let allowed = 10.0 + started.elapsed().as_secs_f64() * 5.0;
    let ok = codes.iter().filter(|(c, _)| *c == 200).count();
    let limited: Vec<&String> = codes
        .iter()
        .filter(|(c, _)| *c == 429)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok + limited.len(), 30);
    assert!(
        ok >= 10 && ok as f64 <= allowed.floor(),
        "{ok} passed, {allowed} allowed"
    );
    let problem: Value = serde_json::from_str(limited[0]).unwrap();
    assert_eq!(problem["status"], 429);
    assert!(problem["type"].as_str().unwrap().ends_with("/rate-limited"));
    assert_eq!(request("GET", &addr, "/healthz", None).0, 200);
    assert_eq!(request("GET", &addr, "/readyz", None).0, 200);
    let _ = child.kill();
    let _ = child.wait();
}
