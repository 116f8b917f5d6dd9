//! The JSON wire form of findings and clears (sled values, the findings topic, `replay --out`,
//! `slawatch findings`) survives the typed domain values: lines written before the types
//! existed decode and encode back byte for byte.

use slawatch::finding::{Check, Clear, Finding, Unit};

/// One finding of every shape `replay --out` wrote over the demo stream (`slawatch simulate
/// --demo`) before window bounds, checks, units and details were typed: window, burn-rate,
/// rate, percentile, cost caps, PII violation, drift and drift-signal findings with reports and
/// charts, insufficient data.
const BEFORE: &str = include_str!("../data/findings/before-typed.jsonl");

#[test]
fn findings_written_before_typing_round_trip_byte_for_byte() {
    let mut checks = std::collections::BTreeSet::new();
    for (i, line) in BEFORE.lines().enumerate() {
        let f: Finding = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: does not decode: {e}", i + 1));
        checks.insert(f.check);
        let again = serde_json::to_string(&f).unwrap();
        assert_eq!(again, line, "line {} changed on the wire", i + 1);
    }
    // The file covers what it claims to.
    for c in [
        Check::Window,
        Check::BurnRate,
        Check::Rate,
        Check::Percentile,
        Check::HardCap,
        Check::SoftCap,
        Check::Violation,
        Check::Drift,
        Check::DriftSignal,
    ] {
        assert!(checks.contains(&c), "no {c} finding in the file");
    }
}

#[test]
fn window_bounds_decode_to_epoch_ms() {
    let mut v: serde_json::Value = serde_json::from_str(BEFORE.lines().next().unwrap()).unwrap();
    v["window_start"] = "2026-11-01T00:00:00.000Z".into();
    v["window_end"] = "2026-11-01T01:00:00.000Z".into();
    let f: Finding = serde_json::from_value(v).unwrap();
    // 2026-11-01T00:00:00Z is 1_793_491_200 s after the epoch (`date -u -d … +%s`).
    assert_eq!(f.window_start, 1_793_491_200_000);
    assert_eq!(f.window_end, 1_793_491_200_000 + 3_600_000);
}

#[test]
fn units_keep_their_wire_names() {
    for (unit, wire) in [
        (Unit::Ratio, "\"ratio\""),
        (Unit::Ms, "\"ms\""),
        (Unit::Usd, "\"usd\""),
        (Unit::Count, "\"count\""),
        (Unit::Score, "\"score\""),
        (Unit::Tokens, "\"tokens\""),
        (Unit::Chars, "\"chars\""),
        (Unit::Sessions, "\"sessions\""),
        (Unit::Features, "\"features\""),
        (Unit::Number, "\"\""),
    ] {
        assert_eq!(serde_json::to_string(&unit).unwrap(), wire);
        assert_eq!(serde_json::from_str::<Unit>(wire).unwrap(), unit);
    }
}

#[test]
fn a_clear_written_before_typing_still_decodes() {
    let line = r#"{"spec":"support-bot-prod","objective":"success","key":[["agent","support-bot"]],"segment":null,"window_end":"2026-11-01T01:00:00.000Z"}"#;
    let c: Clear = serde_json::from_str(line).unwrap();
    assert_eq!(c.window_end, 1_793_491_200_000 + 3_600_000);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["window_end"], "2026-11-01T01:00:00.000Z");
}

#[test]
fn detail_labels_decode_to_typed_details_and_back() {
    use slawatch::finding::Detail;
    use slawatch::session::PiiHandling;
    let cases = [
        (
            "card_number passed_through→tool:update_address",
            Detail::Pii {
                kind: "card_number".into(),
                handling: PiiHandling::PassedThrough,
                destination: Some("tool:update_address".into()),
            },
        ),
        (
            "email masked→(unknown)",
            Detail::Pii {
                kind: "email".into(),
                handling: PiiHandling::Masked,
                destination: None,
            },
        ),
        (
            "denied tool shell",
            Detail::DeniedTool {
                tool: "shell".into(),
            },
        ),
        (
            "tool not allowed refund",
            Detail::ToolNotAllowed {
                tool: "refund".into(),
            },
        ),
        (
            "more than 8 tool calls",
            Detail::TooManyToolCalls { max: 8 },
        ),
        (
            "search called more than 3 times in a row",
            Detail::ToolRun {
                tool: "search".into(),
                max: 3,
            },
        ),
        ("cost above $0.5", Detail::cost_above(0.5)),
        ("other", Detail::Other),
        // Not a label this version writes: kept as it is.
        (
            "card_number sideways→x",
            Detail::Unrecognized("card_number sideways→x".into()),
        ),
    ];
    for (label, detail) in cases {
        let wire = serde_json::to_string(&(label, 3)).unwrap();
        let (d, n): (Detail, u64) = serde_json::from_str(&wire).unwrap();
        assert_eq!((&d, n), (&detail, 3), "{label}");
        assert_eq!(serde_json::to_string(&(d, n)).unwrap(), wire);
    }
}
