//! Spec validation: golden diagnostics for broken specs, and the shipped `sla-specs/`.
//!
//! Every `tests/data/specs/bad/NAME.yaml` is parsed with the file name
//! `tests/data/specs/bad/NAME.yaml` and its rendered diagnostics are compared exactly with
//! `NAME.expected`. After an intended change of wording, rewrite the golden files with
//! `UPDATE_GOLDEN=1 cargo test spec_validate` and review the diff.

use slawatch::spec::{self, Level, ObjectiveKind, Spec};
use std::path::{Path, PathBuf};

/// The repository root: from `file!()` when it is absolute (the file is included by path from
/// another crate), else the manifest directory.
fn repo_root() -> PathBuf {
    let here = Path::new(file!());
    if here.is_absolute() {
        here.ancestors()
            .nth(3)
            .expect("tests/it/spec_validate.rs has a repository root")
            .to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

const BAD_DIR: &str = "tests/data/specs/bad";

/// The cases the golden set must cover (more files may exist).
const REQUIRED_CASES: &[&str] = &[
    "ambiguous-target",
    "misspelled-field",
    "wrong-type",
    "missing-key",
    "bad-enum",
    "bad-duration",
    "duplicate-objective",
    "never-firing-tier",
    "step-larger-than-size",
    "unknown-drift-feature",
    "yaml-syntax",
    "unknown-kind",
    "three-errors",
];

fn render(src: &str, file: &str) -> String {
    let (_, diags) = spec::parse_str(src, file);
    format!("{}{}\n", spec::render_all(&diags), spec::summary(&diags))
}

#[test]
fn golden_diagnostics_of_bad_specs() {
    let root = repo_root();
    let dir = root.join(BAD_DIR);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    for required in REQUIRED_CASES {
        assert!(
            cases
                .iter()
                .any(|p| p.file_stem().is_some_and(|s| s == *required)),
            "missing golden case {BAD_DIR}/{required}.yaml"
        );
    }
    let mut failures = Vec::new();
    for case in &cases {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let shown = format!("{BAD_DIR}/{stem}.yaml");
        let src = std::fs::read_to_string(case).expect("readable case");
        let got = render(&src, &shown);
        let expected_path = case.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "=== {shown}: rendered diagnostics differ from {stem}.expected\n--- expected\n{expected}\n+++ got\n{got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(rerun with UPDATE_GOLDEN=1 to accept)",
        failures.join("\n")
    );
}

#[test]
fn every_bad_spec_reports_something_at_a_position() {
    let dir = repo_root().join(BAD_DIR);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let (_, diags) = spec::parse_str(&src, "x.yaml");
        assert!(!diags.is_empty(), "{} yields no diagnostic", path.display());
        for d in &diags {
            assert!(
                d.line > 0 && d.col > 0,
                "{}: no position in {d}",
                path.display()
            );
            assert!(
                d.source_line.is_some(),
                "{}: no source line in {d}",
                path.display()
            );
        }
    }
}

#[test]
fn three_errors_yield_exactly_three_positioned_errors() {
    let file = "tests/data/specs/bad/three-errors.yaml";
    let src = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let (specs, diags) = spec::parse_str(&src, file);
    assert!(specs.is_empty());
    assert_eq!(diags.len(), 3, "{}", spec::render_all(&diags));
    assert!(diags.iter().all(|d| d.severity == Level::Error));
    let heads: Vec<String> = diags
        .iter()
        .map(|d| d.to_string().lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        heads,
        [
            format!("{file}:11:5: error: spec.window.allowedLatness: unknown key `allowedLatness`"),
            format!(
                "{file}:12:16: error: spec.minSessions: expected a whole number, found string `\"50\"`"
            ),
            format!(
                "{file}:18:15: error: spec.objectives[0].target: `99.5` is ambiguous as a fraction"
            ),
        ]
    );
    assert_eq!(
        diags[0].hint.as_deref(),
        Some("did you mean `allowedLateness`?")
    );
    assert_eq!(diags[2].hint.as_deref(), Some("write `99.5%` or `0.995`"));
}

#[test]
fn a_diagnostic_shows_the_line_and_a_caret() {
    let src = "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: x}\nspec:\n  selector: {agent: a}\n  objectives:\n    - {name: s, ratio: {good: {status: [success]}}, target: 99.5}\n";
    let (_, diags) = spec::parse_str(src, "x.yaml");
    assert_eq!(diags.len(), 1);
    let shown = diags[0].to_string();
    let expected =
        "x.yaml:7:61: error: spec.objectives[0].target: `99.5` is ambiguous as a fraction
  |
7 |     - {name: s, ratio: {good: {status: [success]}}, target: 99.5}
  |                                                             ^^^^
  = hint: write `99.5%` or `0.995`";
    assert_eq!(shown, expected);
}

fn shipped() -> (Vec<Spec>, Vec<spec::Diagnostic>) {
    spec::load_paths(&[repo_root().join("sla-specs")])
}

#[test]
fn shipped_specs_are_clean() {
    let (specs, diags) = shipped();
    assert!(diags.is_empty(), "{}", spec::render_all(&diags));
    assert!(!specs.is_empty());
    // And under --strict too.
    let mut strict = diags.clone();
    spec::make_strict(&mut strict);
    assert!(!spec::has_errors(&strict));
}

#[test]
fn shipped_support_bot_spec_values() {
    let (specs, _) = shipped();
    let s = specs
        .iter()
        .find(|s| s.name == "support-bot-prod")
        .expect("support-bot-prod is shipped");
    assert_eq!(s.selector.agents, ["support-bot"]);
    assert_eq!(
        s.key_by,
        [spec::KeyField::PromptVersion, spec::KeyField::Model]
    );
    assert_eq!(s.segment_by, [spec::KeyField::Attribute("channel".into())]);
    assert_eq!(s.window.size_ms, 3_600_000);
    assert_eq!(s.window.step_ms, 900_000);
    assert_eq!(s.window.allowed_lateness_ms, 600_000);
    assert_eq!(s.period_ms, 28 * 86_400_000);
    assert_eq!(s.alerting.burn_rates, spec::BurnRateTier::sre_workbook());
    let kinds: Vec<&str> = s.objectives.iter().map(|o| o.kind.yaml_key()).collect();
    for k in [
        "ratio",
        "latency",
        "percentile",
        "mean",
        "rate",
        "spend",
        "pii",
        "tools",
        "fallback",
        "drift",
    ] {
        assert!(
            kinds.contains(&k),
            "the shipped spec has no `{k}` objective"
        );
    }
    let by_name = |n: &str| &s.objectives.iter().find(|o| o.name == n).unwrap().kind;
    assert_eq!(by_name("success").slo_target(), Some(0.99));
    match by_name("latency-p99") {
        ObjectiveKind::Percentile { p, bound, .. } => {
            assert_eq!(*p, 99.0);
            assert_eq!(*bound, spec::Bound::Max(20_000.0));
        }
        other => panic!("latency-p99 is {other:?}"),
    }
    match by_name("fast-enough") {
        ObjectiveKind::Threshold {
            field,
            threshold,
            target,
        } => {
            assert_eq!(*field, spec::NumericField::DurationMs);
            assert_eq!(*threshold, 8_000.0);
            assert_eq!(*target, 0.95);
        }
        other => panic!("fast-enough is {other:?}"),
    }
    match by_name("refusals") {
        ObjectiveKind::Rate {
            of,
            bound,
            confidence,
        } => {
            assert_eq!(*of, spec::BoolSignal::Refusal);
            assert_eq!(*bound, spec::Bound::Max(0.05));
            assert_eq!(*confidence, spec::Confidence::DEFAULT);
        }
        other => panic!("refusals is {other:?}"),
    }
    match by_name("spend") {
        ObjectiveKind::Spend(sp) => {
            assert_eq!(sp.per_session_max_usd, Some(0.5));
            assert_eq!(sp.percentile, Some((99.0, 0.05)));
        }
        other => panic!("spend is {other:?}"),
    }
}

const MINIMAL: &str = "apiVersion: slawatch/v1
kind: AgentSLA
metadata: {name: minimal}
spec:
  selector: {agent: support-bot}
  objectives:
    - {name: success, ratio: {good: {status: [success]}}, target: 99%}
";

#[test]
fn defaults_of_a_minimal_spec() {
    let (specs, diags) = spec::parse_str(MINIMAL, "minimal.yaml");
    assert!(diags.is_empty(), "{}", spec::render_all(&diags));
    let s = &specs[0];
    assert_eq!(s.source, "minimal.yaml");
    assert_eq!(
        s.key_by,
        [spec::KeyField::PromptVersion, spec::KeyField::Model]
    );
    assert!(s.segment_by.is_empty());
    assert_eq!(s.max_segments, 20);
    assert_eq!(s.window.size_ms, 3_600_000);
    assert_eq!(s.window.step_ms, 3_600_000);
    assert_eq!(s.window.late_policy, spec::LatePolicy::DeadLetter);
    assert_eq!(s.min_sessions, 30);
    assert_eq!(s.period_ms, 28 * 86_400_000);
    assert_eq!(s.alerting.burn_rates, spec::BurnRateTier::sre_workbook());
    assert_eq!(s.objectives[0].dimension, spec::Dimension::Availability);
    assert_eq!(s.objectives[0].severity, spec::Severity::Ticket);
}

/// The drift level comes from the false-alarm budget and the window step: one false ticket per
/// key per 30 days with a window every 15 minutes is 15 / (30 × 24 × 60) per window; an
/// explicit `pValue` wins; a different budget scales it.
#[test]
fn drift_level_follows_the_false_alarm_budget() {
    let spec_with = |drift: &str| {
        format!(
            "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {{name: d}}\nspec:\n  selector: {{agent: a}}\n  window: {{size: 1h, step: 15m}}\n  objectives:\n    - name: drift\n      drift: {drift}\n"
        )
    };
    let level = |drift: &str| {
        let (specs, diags) = spec::parse_str(&spec_with(drift), "d.yaml");
        assert!(diags.is_empty(), "{}", spec::render_all(&diags));
        match &specs[0].objectives[0].kind {
            spec::ObjectiveKind::Drift(d) => (d.p_value, d.p_value_explicit),
            k => panic!("not drift: {k:?}"),
        }
    };
    let (p, explicit) = level("{features: [output_tokens]}");
    assert!(!explicit);
    assert!((p - 15.0 / (30.0 * 24.0 * 60.0)).abs() < 1e-15, "{p}");
    let (p, _) = level("{features: [output_tokens], falseAlarms: 2 per 7d}");
    assert!((p - 2.0 * 15.0 / (7.0 * 24.0 * 60.0)).abs() < 1e-15, "{p}");
    assert_eq!(
        level("{features: [output_tokens], pValue: 0.01}"),
        (0.01, true)
    );
}

#[test]
fn fractions_and_durations() {
    let with = |target: &str, max: &str| {
        MINIMAL.replace("target: 99%", &format!("target: {target}"))
            + &format!("    - {{name: p99, percentile: {{p: 99, max: {max}}}}}\n")
    };
    for (target, max, want_target, want_max) in [
        ("99%", "20s", 0.99, 20_000.0),
        ("0.995", "20000", 0.995, 20_000.0),
        ("99.95%", "1m30s", 0.9995, 90_000.0),
        ("'99 %'", "250ms", 0.99, 250.0),
    ] {
        let src = with(target, max);
        let (specs, diags) = spec::parse_str(&src, "t.yaml");
        assert!(
            diags.is_empty(),
            "{target}/{max}: {}",
            spec::render_all(&diags)
        );
        let o = &specs[0].objectives;
        assert_eq!(o[0].kind.slo_target(), Some(want_target), "{target}");
        assert_eq!(
            o[1].kind,
            ObjectiveKind::Percentile {
                field: spec::NumericField::DurationMs,
                p: 99.0,
                bound: spec::Bound::Max(want_max),
                confidence: spec::Confidence::Level(0.95),
            }
        );
    }
    for bad in ["99.5", "99", "1", "'0.99'", "150%", "-1%", "high"] {
        let src = MINIMAL.replace("target: 99%", &format!("target: {bad}"));
        let (specs, diags) = spec::parse_str(&src, "t.yaml");
        assert!(specs.is_empty(), "target {bad} was accepted");
        assert_eq!(diags.len(), 1, "{}", spec::render_all(&diags));
    }
}

/// Issue 10 item 9: a per-window threshold is judged with a confidence bound, 95% unless the
/// objective says otherwise; `none` is the point estimate of before.
#[test]
fn confidence_of_per_window_thresholds() {
    let with = |extra: &str| {
        MINIMAL.to_owned()
            + &format!("    - {{name: p99, percentile: {{p: 99, max: 20s}}{extra}}}\n")
            + &format!("    - {{name: refusals, rate: {{of: quality.refusal, max: 3%}}{extra}}}\n")
            + &format!("    - {{name: quality, mean: {{field: quality.score, min: 0.7}}{extra}}}\n")
    };
    let confidences = |s: &Spec| -> Vec<spec::Confidence> {
        s.objectives[1..]
            .iter()
            .map(|o| match &o.kind {
                ObjectiveKind::Percentile { confidence, .. }
                | ObjectiveKind::Rate { confidence, .. }
                | ObjectiveKind::Mean { confidence, .. } => *confidence,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    for (extra, want) in [
        ("", spec::Confidence::Level(0.95)),
        (", confidence: 95%", spec::Confidence::Level(0.95)),
        (", confidence: 0.95", spec::Confidence::Level(0.95)),
        // As every percentage: 99.9 / 100 (which is 0.9990000000000001 in f64).
        (", confidence: 99.9%", spec::Confidence::Level(99.9 / 100.0)),
        (", confidence: 50%", spec::Confidence::Level(0.5)),
        (", confidence: none", spec::Confidence::PointEstimate),
    ] {
        let (specs, diags) = spec::parse_str(&with(extra), "t.yaml");
        assert!(diags.is_empty(), "{extra}: {}", spec::render_all(&diags));
        assert_eq!(confidences(&specs[0]), [want; 3], "{extra}");
    }
    // Every bad form is an error at the value, saying what would be valid.
    for bad in [
        "95", "1", "100%", "40%", "'0.95'", "high", "None", "true", "[95%]", "null",
    ] {
        let src = MINIMAL.to_owned()
            + &format!("    - {{name: p99, percentile: {{p: 99, max: 20s}}, confidence: {bad}}}\n");
        let (specs, diags) = spec::parse_str(&src, "t.yaml");
        assert!(specs.is_empty(), "confidence {bad} was accepted");
        assert_eq!(diags.len(), 1, "{bad}: {}", spec::render_all(&diags));
        let d = &diags[0];
        assert_eq!(d.path, "spec.objectives[1].confidence", "{bad}");
        assert_eq!((d.line, d.col), (8, 62), "{bad}");
        let text = spec::render_all(&diags);
        assert!(
            text.contains("`95%`") || text.contains("`0.95`") || text.contains("`none`"),
            "{bad}: no valid form in {text}"
        );
    }
    // Only per-window thresholds have one.
    let src = MINIMAL.replace("target: 99%}", "target: 99%, confidence: 95%}");
    let (specs, diags) = spec::parse_str(&src, "t.yaml");
    assert!(specs.is_empty());
    assert!(
        spec::render_all(&diags).contains("`confidence` does not apply to a `ratio` objective"),
        "{}",
        spec::render_all(&diags)
    );
}

#[test]
fn explicit_burn_rate_tiers() {
    let src = MINIMAL.to_owned()
        + "  alerting:
    burnRates:
      - {name: fast, factor: 14.4, long: 1h, short: 5m}
      - {name: slow, factor: 3, long: 6h, severity: ticket}
";
    let (specs, diags) = spec::parse_str(&src, "t.yaml");
    assert!(diags.is_empty(), "{}", spec::render_all(&diags));
    let tiers = &specs[0].alerting.burn_rates;
    assert_eq!(tiers.len(), 2);
    assert_eq!(tiers[0].severity, spec::Severity::Page);
    assert_eq!(tiers[1].short_ms, 30 * 60_000, "short defaults to long/12");
    assert_eq!(tiers[1].severity, spec::Severity::Ticket);
}

#[test]
fn warnings_keep_the_spec_and_strict_makes_them_errors() {
    let src = MINIMAL.replace("target: 99%", "target: 90%");
    let (specs, mut diags) = spec::parse_str(&src, "t.yaml");
    assert_eq!(specs.len(), 1);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].severity, Level::Warning);
    assert!(!spec::has_errors(&diags));
    spec::make_strict(&mut diags);
    assert!(spec::has_errors(&diags));
}

#[test]
fn duplicate_spec_names_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), MINIMAL).unwrap();
    std::fs::write(dir.path().join("b.yml"), MINIMAL).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a spec").unwrap();
    let (specs, diags) = spec::load_paths(&[dir.path().to_path_buf()]);
    assert_eq!(specs.len(), 1);
    assert_eq!(diags.len(), 1, "{}", spec::render_all(&diags));
    let d = &diags[0];
    assert!(d.file.ends_with("b.yml"), "{d}");
    assert_eq!((d.line, d.col), (3, 18));
    assert!(d.message.contains("duplicate spec name `minimal`"), "{d}");
    assert!(d.hint.as_deref().unwrap().contains("a.yaml:3:18"), "{d}");
}

#[test]
fn unreadable_paths_are_reported() {
    let (specs, diags) = spec::load_paths(&[PathBuf::from("no/such/dir/spec.yaml")]);
    assert!(specs.is_empty());
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0]
            .to_string()
            .starts_with("no/such/dir/spec.yaml: error: cannot read file")
    );
    let empty = tempfile::tempdir().unwrap();
    let (_, diags) = spec::load_paths(&[empty.path().to_path_buf()]);
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.contains("no `*.yaml`"));
}

#[test]
fn explain_reads_well_in_100_columns() {
    let (specs, _) = shipped();
    for s in &specs {
        for line in spec::explain(s).lines() {
            assert!(line.chars().count() <= 100, "too wide: {line}");
        }
    }
    let s = specs.iter().find(|s| s.name == "support-bot-prod").unwrap();
    let text = spec::explain(s);
    assert!(text.contains("The share of sessions with status success must be at least 99%"));
    assert!(text.contains("Error budget: 1% of sessions (1 in 100)"));
    assert!(text.contains("budget left when it fires"), "{text}");
    assert!(!text.contains("budget spent"), "{text}");
    // fast tier: 14.4 × 1h / 28d = 2.14% of the budget burnt, so 97.86% left —
    // spoken of as what is left, like mail; exhausted after 28d / 14.4.
    let fast = text
        .lines()
        .find(|l| l.trim_start().starts_with("fast "))
        .expect("burn-rate table");
    assert!(
        fast.contains("14.4×") && fast.contains("97.86%") && fast.contains("1d22h40m"),
        "{fast}"
    );
}

#[test]
fn explain_notes_tiers_that_never_fire() {
    let src = MINIMAL.replace("target: 99%", "target: 90%");
    let (specs, _) = spec::parse_str(&src, "t.yaml");
    let text = spec::explain(&specs[0]);
    assert!(text.contains("never fires"), "{text}");
    assert!(text.contains("at most 10×"), "{text}");
}

#[test]
fn readme_complete_example_is_valid() {
    let readme = std::fs::read_to_string(repo_root().join("sla-specs/README.md")).unwrap();
    let start = readme
        .find("```yaml\napiVersion")
        .expect("README has a complete example")
        + 8;
    let len = readme[start..].find("```").unwrap();
    let (specs, diags) = spec::parse_str(&readme[start..start + len], "README.md");
    assert!(diags.is_empty(), "{}", spec::render_all(&diags));
    assert_eq!(specs[0].objectives.len(), 11);
}
