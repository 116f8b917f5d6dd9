//! Decoder: every reject reason, data-driven from `tests/data/decode/cases.jsonl`.

use std::sync::Arc;

use serde_json::Value;
use slawatch::catalog::Catalog;
use slawatch::ingest::decode::{Decoder, RejectReason};

fn decoder() -> Decoder {
    Decoder::new(Arc::new(Catalog::embedded()))
}

#[test]
fn every_case_decodes_or_rejects_with_its_reason() {
    let cases = include_str!("../data/decode/cases.jsonl");
    let mut seen_codes = std::collections::BTreeSet::new();
    for line in cases.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let name = case["case"].as_str().unwrap();
        let bytes = match case.get("raw") {
            Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&case["line"]).unwrap(),
        };
        let expect = case["expect"].as_str().unwrap();
        match decoder().decode(&bytes) {
            Ok(_) => assert_eq!(
                expect, "ok",
                "case `{name}` decoded but should be `{expect}`"
            ),
            Err(reason) => {
                assert_eq!(reason.code(), expect, "case `{name}`: {reason}");
                if let Some(field) = case["field"].as_str() {
                    assert!(
                        reason.to_string().contains(field),
                        "case `{name}`: message `{reason}` should name `{field}`"
                    );
                }
                seen_codes.insert(reason.code());
            }
        }
    }
    // Every decoder reason has at least one case (too_large and late are tested below and in
    // the windowing tests, future in replay_e2e: it depends on the wall clock, not the record).
    for code in RejectReason::CODES {
        if code != "too_large" && code != "late" && code != "future" {
            assert!(seen_codes.contains(code), "no case covers `{code}`");
        }
    }
}

#[test]
fn records_over_the_size_limit_are_rejected_before_parsing() {
    let line = br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"m","ended_at":"2026-11-01T00:00:02Z","status":"success"}"#;
    let small = decoder().with_max_bytes(64);
    let err = small.decode(line).unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert!(err.to_string().contains("64-byte limit"), "{err}");
    assert!(decoder().decode(line).is_ok());
}

#[test]
fn derived_values_are_marked_derived() {
    let d = decoder();
    let s = d
        .decode(br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"m-2026-09","started_at":"2026-11-01T00:00:00.000Z","ended_at":"2026-11-01T00:00:02.500Z","status":"success","usage":{"input_tokens":1000000,"output_tokens":500000},"context_tokens_max":64000}"#)
        .unwrap();
    assert_eq!(s.duration_ms, Some(2500.0));
    assert!(s.duration_derived);
    // $0.25/M input + $2.00/M output from the catalog.
    assert!((s.cost_usd.unwrap() - 1.25).abs() < 1e-12);
    assert!(s.cost_derived);
    assert_eq!(s.context_utilisation, Some(0.5));

    let reported = d
        .decode(br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"m-2026-09","ended_at":"2026-11-01T00:00:02Z","duration_ms":2286.4,"status":"success","usage":{"input_tokens":10,"output_tokens":10,"cost_usd":0.5}}"#)
        .unwrap();
    assert_eq!(reported.cost_usd, Some(0.5));
    assert!(!reported.cost_derived && !reported.duration_derived);

    let unknown_model = d
        .decode(br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"nobody-knows","ended_at":"2026-11-01T00:00:02Z","status":"success","usage":{"input_tokens":10}}"#)
        .unwrap();
    assert_eq!(unknown_model.cost_usd, None);
}

#[test]
fn event_time_is_ended_at_or_start_plus_duration() {
    let d = decoder();
    let a = d
        .decode(br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"m","started_at":"2026-11-01T00:00:00Z","duration_ms":1500,"status":"success"}"#)
        .unwrap();
    let b = d
        .decode(br#"{"session_id":"s1","agent":"a","prompt_version":"p","model":"m","ended_at":"2026-11-01T00:00:01.500Z","status":"success"}"#)
        .unwrap();
    assert_eq!(a.event_time, b.event_time);
}

#[test]
fn the_contract_sample_decodes_without_a_reject() {
    let sample = include_str!("../data/sample-sessions.jsonl");
    let d = decoder();
    let mut n = 0;
    for l in sample.lines() {
        d.decode(l.as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {l}"));
        n += 1;
    }
    assert_eq!(n, 4800);
}
