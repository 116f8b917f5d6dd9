//! Issue 11, item 3: a configuration reload without a restart. What a reload keeps is checked
//! against runs that never reloaded: an unchanged spec goes on exactly as if nothing happened,
//! a spec whose targets changed judges its open windows by the new targets as a run under the
//! new spec from the start does, and a spec whose measures changed starts again exactly like a
//! fresh run over the sessions after the reload.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slawatch::catalog::Catalog;
use slawatch::evaluate::Carried;
use slawatch::finding::Finding;
use slawatch::pipeline::{Pipeline, PipelineConfig, SpecChange};
use slawatch::simulate::{SimConfig, write_jsonl};
use slawatch::spec::model::Spec;

fn shipped_spec_text(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sla-specs")
            .join(file),
    )
    .unwrap()
}

/// Specs decoded from (file name, YAML text) pairs, as `validate` would.
fn specs_of(files: &[(&str, String)]) -> Vec<Spec> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    slawatch::cli::load_specs(&[dir.path().to_path_buf()]).unwrap()
}

fn pipeline(specs: Vec<Spec>) -> Pipeline {
    Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    )
}

/// The demo stream without late, duplicate or dirty records, so that a run over its second
/// half alone sees those sessions exactly as a longer run does.
fn lines() -> Vec<Vec<u8>> {
    let cfg = SimConfig {
        late_fraction: 0.0,
        duplicate_fraction: 0.0,
        dirty_fraction: 0.0,
        ..SimConfig::demo(11)
    };
    let mut bytes = Vec::new();
    write_jsonl(&cfg, &mut bytes).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn feed(p: &mut Pipeline, lines: &[Vec<u8>], out: &mut Vec<Finding>) {
    for l in lines {
        p.process_bytes(l, 0, out);
    }
}

fn event_time(line: &[u8]) -> i64 {
    let v: Value = serde_json::from_slice(line).unwrap();
    slawatch::time::parse_rfc3339_ms(v["ended_at"].as_str().unwrap()).unwrap()
}

/// The findings of a spec after a time, without their forensics: which finding opens a
/// streak, and whether a reload coincides with an onset, depend on what was judged before the
/// reload (under the old targets), so only verdicts are compared.
fn of_spec(fs: &[Finding], spec: &str, after: i64) -> Vec<Finding> {
    fs.iter()
        .filter(|f| f.spec == spec && f.window_end > after)
        .map(|f| Finding {
            forensics: None,
            ..f.clone()
        })
        .collect()
}

#[test]
fn a_reload_keeps_what_is_still_valid_and_judges_by_the_new_specs() {
    let lines = lines();
    let half = lines.len() / 2;
    let reload_at = event_time(&lines[half - 1]);
    let support = shipped_spec_text("support-bot.yaml");
    // A second spec of the same agent (the demo stream has one agent).
    let strict = support.replace("name: support-bot-prod", "name: support-bot-strict");
    let before = specs_of(&[
        ("support-bot.yaml", support.clone()),
        ("strict.yaml", strict.clone()),
    ]);

    // The same files again: nothing changes, findings equal a run that never reloaded.
    let mut never = pipeline(before.clone());
    let mut want = Vec::new();
    feed(&mut never, &lines, &mut want);
    never.finish(&mut want);
    let mut same = pipeline(before.clone());
    let mut got = Vec::new();
    feed(&mut same, &lines[..half], &mut got);
    let changes = same.reload(before.clone());
    assert!(
        changes
            .iter()
            .all(|c| c.change == SpecChange::Kept(Carried::Everything)),
        "{changes:?}"
    );
    feed(&mut same, &lines[half..], &mut got);
    same.finish(&mut got);
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // support-bot-prod: only the p99 target changes (20 s → 3 s, so it now breaches);
    // support-bot-strict: a measure changes (fast enough is 4 s instead of 8 s).
    let support_2 = support.replace("        max: 20s\n", "        max: 3s\n");
    let strict_2 = strict.replace("threshold: 8s", "threshold: 4s");
    assert!(support_2 != support && strict_2 != strict);
    let after = specs_of(&[("support-bot.yaml", support_2), ("strict.yaml", strict_2)]);
    let mut reloaded = pipeline(before);
    let mut got = Vec::new();
    feed(&mut reloaded, &lines[..half], &mut got);
    let baselines: Vec<_> = reloaded
        .runtimes()
        .iter()
        .filter(|rt| rt.spec().name == "support-bot-strict")
        .flat_map(|rt| rt.drift_runtimes())
        .flat_map(|d| d.baselines().values().cloned())
        .collect();
    assert!(
        !baselines.is_empty(),
        "the drift objective has a baseline by the reload"
    );
    let mut changes = reloaded.reload(after.clone());
    changes.sort_by(|a, b| a.spec.cmp(&b.spec));
    let kinds: Vec<(&str, SpecChange)> = changes.iter().map(|c| (&*c.spec, c.change)).collect();
    assert_eq!(
        kinds,
        [
            ("support-bot-prod", SpecChange::Kept(Carried::Windows)),
            ("support-bot-strict", SpecChange::Kept(Carried::Baselines)),
        ]
    );
    feed(&mut reloaded, &lines[half..], &mut got);
    reloaded.finish(&mut got);

    // support-bot's windows were kept: every window closing after the reload is judged as a run
    // under the new spec from the start judges it.
    let mut new_from_start = pipeline(after.clone());
    let mut want_new = Vec::new();
    feed(&mut new_from_start, &lines, &mut want_new);
    new_from_start.finish(&mut want_new);
    let got_support = of_spec(&got, "support-bot-prod", reload_at);
    let want_support = of_spec(&want_new, "support-bot-prod", reload_at);
    assert!(
        want_support.iter().any(|f| f.objective == "latency-p99"),
        "the tightened target breaches after the reload"
    );
    assert_eq!(got_support, want_support);

    // support-bot-strict's windows started again, with the drift baselines it had: what it
    // finds equals a fresh run under the new spec, with those baselines, over the sessions
    // after the reload.
    let mut fresh_after = pipeline(after);
    fresh_after.restore_baselines(&baselines);
    let mut want_fresh = Vec::new();
    feed(&mut fresh_after, &lines[half..], &mut want_fresh);
    fresh_after.finish(&mut want_fresh);
    let got_strict = of_spec(&got, "support-bot-strict", reload_at);
    let want_strict = of_spec(&want_fresh, "support-bot-strict", reload_at);
    assert!(want_strict.iter().any(|f| f.objective == "fast-enough"));
    assert_eq!(got_strict, want_strict);
}

#[test]
fn removed_and_added_specs_are_reported_and_the_added_one_starts_at_the_watermark() {
    let lines = lines();
    let half = lines.len() / 2;
    let reload_at = event_time(&lines[half - 1]);
    let support = shipped_spec_text("support-bot.yaml");
    let other = support.replace("name: support-bot-prod", "name: support-bot-other");
    let mut p = pipeline(specs_of(&[("other.yaml", other)]));
    let mut got = Vec::new();
    feed(&mut p, &lines[..half], &mut got);
    assert!(got.iter().any(|f| f.spec == "support-bot-other"));
    let mut changes = p.reload(specs_of(&[("support-bot.yaml", support)]));
    changes.sort_by(|a, b| a.spec.cmp(&b.spec));
    let kinds: Vec<(&str, SpecChange)> = changes.iter().map(|c| (&*c.spec, c.change)).collect();
    assert_eq!(
        kinds,
        [
            ("support-bot-other", SpecChange::Removed),
            ("support-bot-prod", SpecChange::Added),
        ]
    );
    let at_reload = got.len();
    feed(&mut p, &lines[half..], &mut got);
    p.finish(&mut got);
    let added: Vec<&Finding> = got
        .iter()
        .filter(|f| f.spec == "support-bot-prod")
        .collect();
    assert!(!added.is_empty());
    assert!(
        added.iter().all(|f| f.window_end > reload_at),
        "the added spec judges no window that closed before it existed"
    );
    assert!(
        got[at_reload..]
            .iter()
            .all(|f| f.spec == "support-bot-prod"),
        "the removed spec stops"
    );
}

fn http(method: &str, addr: &str, path: &str) -> (u16, String) {
    crate::support::http::request(method, addr, path, None)
}

fn append(path: &Path) -> std::fs::File {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `slawatch run` reading stdin: a bad spec is refused (by `POST /-/reload` with the positioned
/// diagnostics, by SIGHUP in the log) and the old configuration goes on exactly as if nothing
/// had been asked; a valid change then takes effect for the windows that close after it.
#[test]
fn run_reloads_on_sighup_and_post_refusing_a_bad_spec_and_keeping_the_old_one() {
    let lines = lines();
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    std::fs::create_dir(&specs).unwrap();
    let support = shipped_spec_text("support-bot.yaml");
    let spec_file = specs.join("support-bot.yaml");
    std::fs::write(&spec_file, &support).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args([
            "run",
            "--input",
            "-",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--specs")
        .arg(&specs)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        // Both in append mode: stdout's summary must not overwrite the log lines.
        .stdout(append(&log))
        .stderr(append(&log))
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let guard = Kill(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("api.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            break v["address"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no API:\n{}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut sent = 0;
    let mut send = |n: usize, stdin: &mut std::process::ChildStdin| {
        use std::io::Write;
        for l in &lines[sent..(sent + n).min(lines.len())] {
            stdin.write_all(l).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
        stdin.flush().unwrap();
        sent = (sent + n).min(lines.len());
        sent
    };
    let mut upto = send(lines.len() / 3, &mut stdin);

    // A bad file, by POST: refused at once with every diagnostic, positioned.
    let bad = support.replace("        p: 99\n", "        p: 199\n");
    let line = bad.lines().position(|l| l == "        p: 199").unwrap() + 1;
    std::fs::write(&spec_file, &bad).unwrap();
    let (code, body) = http("POST", &addr, "/-/reload");
    assert_eq!(code, 422, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    let at = format!("{}:{line}:12", spec_file.display());
    assert!(
        problem["detail"].as_str().unwrap().contains(&at),
        "{at} in {body}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("between 0 and 100")
    );
    // The same file by SIGHUP: refused in the log, once the loop looks (at its next record).
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("reload refused")
    {
        assert!(
            upto < lines.len() && Instant::now() < deadline,
            "{}",
            log_tail(&log)
        );
        upto = send(20, &mut stdin);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains(&at));
    send(lines.len() / 3 - 20, &mut stdin);

    // A valid change: the p99 target drops from 20 s to 3 s. It applies before the loop's
    // next record: 200 when that comes while the request waits, else 202 (queued).
    let good = support.replace("        max: 20s\n", "        max: 3s\n");
    std::fs::write(&spec_file, &good).unwrap();
    let (code, body) = http("POST", &addr, "/-/reload");
    assert!(code == 200 || code == 202, "{code} {body}");
    let (_, metrics) = http("GET", &addr, "/metrics");
    assert!(metrics.contains("\nslawatch_config_last_reload_successful 1\n") || code == 202);
    send(lines.len(), &mut stdin);
    drop(stdin);
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{}", log_tail(&log));
    drop(guard);
    // Where it applied: the log (JSON lines) says after how many records.
    let applied: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "configuration reloaded")
        .collect();
    let reload_lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("reload"))
        .map(str::to_owned)
        .collect();
    assert_eq!(applied.len(), 1, "{code} {body}\n{reload_lines:#?}");
    assert_eq!(applied[0]["spec"], "support-bot-prod");
    let records = applied[0]["records"].as_u64().unwrap() as usize;
    // Not necessarily `upto`: the loop may still be working through what was sent.
    assert!(records > lines.len() / 3 && records < lines.len());
    // Windows closed by then were judged under the old spec: the watermark is the newest
    // event time less the allowed lateness (10 min).
    let valid_at = event_time(&lines[records - 1]) - 600_000;

    let out = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["findings", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<Finding> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = |fs: &mut dyn Iterator<Item = &Finding>| -> Vec<String> {
        let mut v: Vec<String> = fs.map(|f| f.id.clone()).collect();
        v.sort();
        v
    };
    // Until the valid reload, exactly what a run that was never asked to reload finds.
    let mut never = pipeline(specs_of(&[("support-bot.yaml", support)]));
    let mut want = Vec::new();
    feed(&mut never, &lines, &mut want);
    never.finish(&mut want);
    let before = |f: &&Finding| f.window_end <= valid_at;
    assert!(want.iter().filter(before).count() > 0);
    assert_eq!(
        ids(&mut got.iter().filter(before)),
        ids(&mut want.iter().filter(before))
    );
    // After it, the new target: as a run under the new spec from the start judges.
    let mut new_from_start = pipeline(specs_of(&[("support-bot.yaml", good)]));
    let mut want_new = Vec::new();
    feed(&mut new_from_start, &lines, &mut want_new);
    new_from_start.finish(&mut want_new);
    let after = |f: &&Finding| f.window_end > valid_at;
    assert!(
        want_new
            .iter()
            .filter(after)
            .any(|f| f.objective == "latency-p99")
    );
    assert_eq!(
        ids(&mut got.iter().filter(after)),
        ids(&mut want_new.iter().filter(after))
    );
}
