//! The incident record end to end: `slawatch run --serve` over a generated stream with an
//! error burst, then `/v1/incidents`, `/v1/incidents/{id}`, `/v1/incidents/{id}/affected` and
//! `slawatch incident` (through the API, then from the data directory once the run stopped).
//!
//! The timeline's notifications must be exactly the mails in the outbox (named by notification
//! id), and the burst's incidents resolve on clean windows. The affected export is checked for
//! its shape and against the record's counts; equality with the list computed from the input
//! needs the evaluation's `Pipeline::drain_affected` (issue 14, *onset*).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::run::{Run, get, simulate};

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn specs() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sla-specs")
        .display()
        .to_string()
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn incident_records_tell_the_timeline_the_outbox_received_and_resolve_on_clean_windows() {
    let input = simulate(&[
        "--seed",
        "11",
        "--sessions",
        "4000",
        "--late-fraction",
        "0",
        "--incident",
        "error-burst@4h+2h",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, input.join("\n") + "\n").unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "run",
        "--input",
        &file.display().to_string(),
        "--specs",
        &specs(),
        "--serve",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut run = Run::spawn(&args, &data, dir.path().join("run.log"));
    run.wait_for("the end of the input", Duration::from_secs(240), |r| {
        r.log_text()
            .contains("input done; serving until SIGTERM")
            .then_some(())
    });

    let (status, body) = get(&run.addr, "/v1/incidents", None);
    assert_eq!(status, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(!list.is_empty(), "the error burst opened no incident");
    let ids: Vec<String> = list
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "ids are unique"
    );

    // Every mail in the outbox appears in the timeline of an incident it announced, and every
    // notification of a timeline is a mail in the outbox.
    let outbox: BTreeSet<String> = std::fs::read_dir(data.join("outbox"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".eml").map(str::to_owned)
        })
        .collect();
    assert!(!outbox.is_empty());
    let mut in_timelines = BTreeSet::new();
    let mut reports = Vec::new();
    for id in &ids {
        let (status, body) = get(&run.addr, &format!("/v1/incidents/{id}"), None);
        assert_eq!(status, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        let timeline = r["timeline"].as_array().unwrap();
        // The timeline holds the onset when forensics found one, never after the end of the
        // first breaching window (it may fall inside it), and opens with one of the two.
        let first_breach = timeline
            .iter()
            .find(|e| e["event"] == "first_breach_window")
            .unwrap_or_else(|| panic!("no first breach in {body}"));
        match r["forensics"]["onset"]["at"].as_str() {
            Some(onset) => {
                let first = timeline[0]["event"].as_str().unwrap();
                assert!(first == "onset" || first == "first_breach_window", "{body}");
                assert!(
                    timeline
                        .iter()
                        .any(|e| e["event"] == "onset" && e["at"] == onset),
                    "{body}"
                );
                assert!(
                    onset <= first_breach["window_end"].as_str().unwrap(),
                    "{body}"
                );
            }
            None => assert_eq!(timeline[0]["event"], "first_breach_window", "{body}"),
        }
        let mut last = String::new();
        for e in timeline {
            let at = e["at"].as_str().unwrap().to_owned();
            assert!(at >= last, "timeline out of order: {body}");
            last = at;
            if e["event"] == "notified" {
                let nid = e["notification_id"].as_str().unwrap().to_owned();
                let mail = &e["mail"];
                assert_eq!(mail["delivery"], "sent", "{body}");
                assert!(mail["sent_at"].is_string(), "{body}");
                in_timelines.insert(nid);
            }
        }
        reports.push(r);
    }
    assert_eq!(in_timelines, outbox, "timelines vs outbox");

    // The burst ended two hours in: its incidents resolved on clean windows.
    let resolved: Vec<&Value> = reports
        .iter()
        .filter(|r| r["status"] == "resolved")
        .collect();
    assert!(!resolved.is_empty(), "no incident resolved");
    for r in &resolved {
        assert_eq!(r["resolution"]["reason"], "clean_windows", "{r}");
        // Once in the timeline, at the resolution's time (the resolved mail follows after
        // the group's cooldown).
        let ends: Vec<&Value> = r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "resolved")
            .collect();
        assert_eq!(ends.len(), 1, "{r}");
        assert_eq!(ends[0]["reason"], "clean_windows");
        assert_eq!(ends[0]["at"], r["resolution"]["at"]);
    }
    let (status, body) = get(&run.addr, "/v1/incidents?status=open", None);
    assert_eq!(status, 200);
    let open: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(open.len(), reports.len() - resolved.len());
    assert_eq!(get(&run.addr, "/v1/incidents?status=closed", None).0, 400);

    // The affected export: CSV with its header, as many rows as the record lists.
    let id = &ids[0];
    let (status, csv) = get(
        &run.addr,
        &format!("/v1/incidents/{id}/affected?format=csv"),
        None,
    );
    assert_eq!(status, 200, "{csv}");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("session_id,event_time,key,segment,reason")
    );
    let listed = reports[0]["affected"]["listed"].as_u64().unwrap();
    assert_eq!(rows.count() as u64, listed);
    let input_ids: BTreeSet<String> = input
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["session_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for line in csv.lines().skip(1) {
        assert!(
            input_ids.contains(line.split(',').next().unwrap()),
            "{line}"
        );
    }

    // Unknown ids are problems.
    let (status, body) = get(&run.addr, "/v1/incidents/inc-0000000000000000", None);
    assert_eq!(status, 404);
    assert!(body.contains("unknown-incident"), "{body}");
    let openapi = get(&run.addr, "/v1/openapi.json", None).1;
    assert!(openapi.contains("/v1/incidents/{id}/affected"));

    // The CLI through the running API.
    let d = data.display().to_string();
    let (code, out, err) = cli(&["incident", "list", "--data-dir", &d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(id.as_str()), "{out}");
    let (code, md, err) = cli(&[
        "incident",
        "show",
        id,
        "--format",
        "markdown",
        "--data-dir",
        &d,
    ]);
    assert_eq!(code, 0, "{err}");
    for section in [
        "## Summary",
        "## Impact",
        "## Timeline",
        "## Onset",
        "## Layer attribution",
    ] {
        assert!(md.contains(section), "{md}");
    }
    let (code, via_api, err) = cli(&["incident", "show", id, "--format", "json", "--data-dir", &d]);
    assert_eq!(code, 0, "{err}");
    assert!(run.sigterm().success());

    // From the data directory once the run is gone: the same record.
    let (code, from_dir, err) =
        cli(&["incident", "show", id, "--format", "json", "--data-dir", &d]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&from_dir).unwrap(),
        serde_json::from_str::<Value>(&via_api).unwrap()
    );
    let (code, _, err) = cli(&["incident", "show", "inc-nope", "--data-dir", &d]);
    assert_eq!(code, 1);
    assert!(err.contains("no incident `inc-nope`"), "{err}");
    let (code, csv_dir, err) = cli(&[
        "incident",
        "affected",
        id,
        "--format",
        "csv",
        "--data-dir",
        &d,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(csv_dir, csv);
}
