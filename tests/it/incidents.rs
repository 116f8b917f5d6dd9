//! The incident record end to end: `slawatch run --serve` over a generated stream with an
//! error burst, then `/v1/incidents`, `/v1/incidents/{id}`, `/v1/incidents/{id}/affected` and
//! `slawatch incident` (through the API, then from the data directory once the run stopped).
//!
//! The timeline's notifications must be exactly the mails in the outbox (named by notification
//! id), and the burst's incidents resolve on clean windows. The affected export is checked for
//! its shape and against the record's counts there, and for exact equality with the list the
//! test computes from the input file in `the_affected_export_equals_the_list_computed_from_the_input_file`.

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

/// Must-show of issue 14: the affected-session export of every incident, over a real socket
/// from `slawatch run --serve`, equals exactly the list this test computes from the input file
/// — its own JSON parsing, its own windows, the objective's own definition — as JSON Lines
/// and as CSV, with the counts by segment equal too.
///
/// The objective: `rate: {of: status:success, min: 90%}`, `confidence: none`, 30-minute windows
/// sliding by 5 minutes, at least 50 sessions a window, per key and per channel segment. The
/// test computes every window's verdict, the streaks (a breach opens one, a judged window
/// without a breach ends it), and for each incident the sessions that count against the
/// objective: not `success`, of the incident's key (and segment), with an event time from the
/// incident's onset (the record's estimate, or its first window's start without one) to the end
/// of the streak's last breaching window.
#[test]
fn the_affected_export_equals_the_list_computed_from_the_input_file() {
    use slawatch::simulate::{
        AgentProfile, DEFAULT_START_MS, Incident, IncidentKind, SimConfig, write_jsonl,
    };
    const HOUR: i64 = 3_600_000;
    const MIN: i64 = 60_000;
    const SIZE: i64 = 30 * MIN;
    const STEP: i64 = 5 * MIN;
    const MIN_SESSIONS: u64 = 50;
    let cfg = SimConfig {
        seed: 23,
        duration_ms: 7 * HOUR,
        sessions_per_hour: 1_200.0,
        agents: vec![AgentProfile::default()],
        diurnal: false,
        late_fraction: 0.0,
        incidents: vec![Incident::new(
            IncidentKind::ToolFailure {
                tool: "get_order".into(),
                error_rate: 0.6,
            },
            DEFAULT_START_MS + 4 * HOUR,
            Some(HOUR),
        )],
        ..SimConfig::default()
    };
    let mut bytes = Vec::new();
    write_jsonl(&cfg, &mut bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    std::fs::create_dir(&specs).unwrap();
    std::fs::write(
        specs.join("exact.yaml"),
        "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: exact}\nspec:\n  \
         selector: {agent: support-bot}\n  segmentBy: [attributes.channel]\n  \
         window: {size: 30m, step: 5m, allowedLateness: 5m}\n  minSessions: 50\n  \
         period: {rolling: 28d}\n  objectives:\n    \
         - {name: success, rate: {of: status:success, min: 90%}, confidence: none, \
         severity: ticket}\n",
    )
    .unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, &bytes).unwrap();

    // The test's own reading of the file.
    struct Row {
        id: String,
        t: i64,
        key: Vec<(String, String)>,
        segment: String,
        bad: bool,
    }
    let rows: Vec<Row> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            Row {
                id: s("session_id"),
                t: slawatch::time::parse_rfc3339_ms(v["ended_at"].as_str().unwrap()).unwrap(),
                key: vec![
                    ("agent".into(), s("agent")),
                    ("prompt_version".into(), s("prompt_version")),
                    ("model".into(), s("model")),
                ],
                segment: format!("channel={}", v["attributes"]["channel"].as_str().unwrap()),
                bad: v["status"] != "success",
            }
        })
        .collect();
    assert!(rows.iter().all(|r| r.key[0].1 == "support-bot"));
    // Per (key, segment or whole key): every window's verdict, then its streaks as
    // (first breaching window's end, last breaching window's end, first window's start).
    type Group = (Vec<(String, String)>, Option<String>);
    // Session id, event time, key, segment.
    type Listed = (String, i64, Vec<(String, String)>, String);
    let mut groups: std::collections::BTreeMap<Group, Vec<&Row>> = Default::default();
    for r in &rows {
        groups.entry((r.key.clone(), None)).or_default().push(r);
        groups
            .entry((r.key.clone(), Some(r.segment.clone())))
            .or_default()
            .push(r);
    }
    let mut streaks: std::collections::BTreeMap<Group, Vec<(i64, i64, i64)>> = Default::default();
    for (g, rs) in &groups {
        let lo = rs.iter().map(|r| r.t).min().unwrap();
        let hi = rs.iter().map(|r| r.t).max().unwrap();
        let mut open: Option<(i64, i64, i64)> = None;
        let mut end = lo.div_euclid(STEP) * STEP + STEP;
        while end - SIZE <= hi {
            let inside: Vec<&&Row> = rs
                .iter()
                .filter(|r| end - SIZE <= r.t && r.t < end)
                .collect();
            let n = inside.len() as u64;
            let bad = inside.iter().filter(|r| r.bad).count() as u64;
            if n >= MIN_SESSIONS {
                if (n - bad) as f64 / (n as f64) < 0.9 {
                    let o = open.get_or_insert((end, end, end - SIZE));
                    o.1 = end;
                } else if let Some(o) = open.take() {
                    streaks.entry(g.clone()).or_default().push(o);
                }
            }
            end += STEP;
        }
        if let Some(o) = open {
            streaks.entry(g.clone()).or_default().push(o);
        }
    }
    assert!(!streaks.is_empty(), "the tool failure breached nowhere");

    let data = dir.path().join("data");
    let args: Vec<String> = [
        "run",
        "--input",
        &file.display().to_string(),
        "--specs",
        &specs.display().to_string(),
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
    // One incident per streak: the tool failure is one hour, clean before and after.
    let streak_count: usize = streaks.values().map(Vec::len).sum();
    assert_eq!(list.len(), streak_count, "{body}\n{streaks:?}");
    let mut table = Vec::new();
    for item in &list {
        let id = item["id"].as_str().unwrap();
        let (status, body) = get(&run.addr, &format!("/v1/incidents/{id}"), None);
        assert_eq!(status, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        let key: Vec<(String, String)> = serde_json::from_value(r["key"].clone()).unwrap();
        let segment = r["segment"].as_str().map(str::to_owned);
        let group = (key.clone(), segment.clone());
        let [(first_end, last_end, first_start)] = streaks[&group][..] else {
            panic!("{group:?}: streaks {:?}", streaks[&group]);
        };
        let first_breach = r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "first_breach_window")
            .unwrap();
        let at = |v: &Value| slawatch::time::parse_rfc3339_ms(v.as_str().unwrap()).unwrap();
        assert_eq!(at(&first_breach["window_end"]), first_end, "{body}");
        let from = r["forensics"]["onset"]["at"]
            .as_str()
            .map_or(first_start, |s| {
                slawatch::time::parse_rfc3339_ms(s).unwrap()
            });
        let expected: Vec<&&Row> = groups[&group]
            .iter()
            .filter(|r| r.bad && from <= r.t && r.t < last_end)
            .collect();
        // JSON Lines.
        let (status, jsonl) = get(&run.addr, &format!("/v1/incidents/{id}/affected"), None);
        assert_eq!(status, 200, "{jsonl}");
        let got: Vec<Listed> = jsonl
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["reason"]["kind"], "signal", "{l}");
                assert_eq!(v["reason"]["signal"], "status:success=false", "{l}");
                (
                    v["session_id"].as_str().unwrap().to_owned(),
                    at(&v["event_time"]),
                    serde_json::from_value(v["key"].clone()).unwrap(),
                    v["segment"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: BTreeSet<Listed> = expected
            .iter()
            .map(|r| (r.id.clone(), r.t, r.key.clone(), r.segment.clone()))
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{id}: {} listed, {} expected",
            got.len(),
            want.len()
        );
        let got_set: BTreeSet<_> = got.iter().cloned().collect();
        assert_eq!(got_set.len(), got.len(), "{id}: a session listed twice");
        assert!(
            got_set == want,
            "{id}: missing {:?}, extra {:?}",
            want.difference(&got_set).take(5).collect::<Vec<_>>(),
            got_set.difference(&want).take(5).collect::<Vec<_>>()
        );
        // CSV: the same rows, written by the test from its own list.
        let (status, csv) = get(
            &run.addr,
            &format!("/v1/incidents/{id}/affected?format=csv"),
            None,
        );
        assert_eq!(status, 200, "{csv}");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("session_id,event_time,key,segment,reason")
        );
        let got_csv: BTreeSet<String> = lines.map(str::to_owned).collect();
        let want_csv: BTreeSet<String> = expected
            .iter()
            .map(|r| {
                format!(
                    "{},{},\"{}\",{},signal:status:success=false",
                    r.id,
                    slawatch::time::format_rfc3339_ms(r.t),
                    r.key
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    r.segment
                )
            })
            .collect();
        assert_eq!(got_csv, want_csv, "{id}: CSV");
        // Counts by segment, and the totals.
        let mut by_segment: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &expected {
            *by_segment.entry(r.segment.clone()).or_default() += 1;
        }
        let counts: std::collections::BTreeMap<String, u64> =
            serde_json::from_value(r["affected"]["by_segment"].clone()).unwrap();
        assert_eq!(counts, by_segment, "{id}");
        assert_eq!(
            r["affected"]["listed"].as_u64(),
            Some(expected.len() as u64)
        );
        assert_eq!(r["affected"]["total"].as_u64(), Some(expected.len() as u64));
        table.push(format!(
            "{id} {:<16} onset {} first breach {} last {}: {} affected {by_segment:?}",
            segment.as_deref().unwrap_or("(whole key)"),
            r["forensics"]["onset"]["at"].as_str().unwrap_or("none"),
            slawatch::time::format_rfc3339_ms(first_end),
            slawatch::time::format_rfc3339_ms(last_end),
            expected.len()
        ));
    }
    println!("{}", table.join("\n"));
    assert!(run.sigterm().success());
}
