//! Issue 11, item 3: a configuration reload without a restart. What a reload keeps is checked
//! against runs that never reloaded: an unchanged spec goes on exactly as if nothing happened,
//! a spec whose targets changed judges its open windows by the new targets as a run under the
//! new spec from the start does, and a spec whose measures changed starts again exactly like a
//! fresh run over the sessions after the reload.

use std::path::Path;
use std::sync::Arc;

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

fn of_spec<'a>(fs: &'a [Finding], spec: &str, after: i64) -> Vec<&'a Finding> {
    fs.iter()
        .filter(|f| f.spec == spec && f.window_end > after)
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
