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

/// Cache and reasoning tokens (issue 12) are kept as reported — part of the input and output
/// counts, never added to them, never part of the catalog's cost — and written back by the
/// encoder; a record without them decodes and encodes as before.
#[test]
fn cache_and_reasoning_tokens_are_kept_and_written_back() {
    use slawatch::ingest::encode::{RecordStyle, encode_record};
    let d = decoder();
    let base = r#""session_id":"s1","agent":"a","prompt_version":"p","model":"m-2026-09","ended_at":"2026-11-01T00:00:02Z","status":"success""#;
    let with = format!(
        r#"{{{base},"usage":{{"input_tokens":1000000,"output_tokens":500000,"cache_read_input_tokens":800000,"cache_creation_input_tokens":1000,"reasoning_output_tokens":200000}}}}"#
    );
    let s = d.decode(with.as_bytes()).unwrap();
    assert_eq!(
        (
            s.input_tokens,
            s.output_tokens,
            s.cache_read_input_tokens,
            s.cache_creation_input_tokens,
            s.reasoning_output_tokens
        ),
        (
            Some(1_000_000),
            Some(500_000),
            Some(800_000),
            Some(1_000),
            Some(200_000)
        )
    );
    // The catalog's $0.25/M input + $2.00/M output, as without them.
    assert!((s.cost_usd.unwrap() - 1.25).abs() < 1e-12);
    for style in [RecordStyle::Sparse, RecordStyle::Full] {
        let line = encode_record(&s, style);
        assert!(
            line.contains(r#""reasoning_output_tokens":200000"#),
            "{line}"
        );
        assert_eq!(d.decode(line.as_bytes()).unwrap(), s, "{line}");
    }

    let without = format!(r#"{{{base},"usage":{{"input_tokens":10}}}}"#);
    let s = d.decode(without.as_bytes()).unwrap();
    assert_eq!(
        (
            s.cache_read_input_tokens,
            s.cache_creation_input_tokens,
            s.reasoning_output_tokens
        ),
        (None, None, None)
    );
    let line = encode_record(&s, RecordStyle::Sparse);
    assert!(
        !line.contains("cache") && !line.contains("reasoning"),
        "{line}"
    );
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

/// The decoder's scanner (its fast path) against the serde path it falls back to: the same
/// session, to the bit (`{:?}` tells `-0.0` from `0.0`), or the same reject with the same
/// message, on every decode vector, the contract sample and records written to sit on the
/// scanner's edges — numbers serde reads through different routes (integers, `-0`, 2^53 + 1,
/// beyond u64, underflow, overflow, leading zeros), escapes, nulls, duplicates, whitespace,
/// types serde reads in unusual ways (a struct from an array) and trailing bytes.
#[test]
fn the_scanner_decodes_exactly_what_the_serde_path_decodes() {
    let d = decoder();
    let same = |bytes: &[u8]| {
        let fast = format!("{:?}", d.decode(bytes));
        let reference = format!("{:?}", d.decode_serde(bytes));
        assert_eq!(fast, reference, "{}", String::from_utf8_lossy(bytes));
        fast.starts_with("Ok(")
    };
    let mut accepted = 0;
    for line in include_str!("../data/decode/cases.jsonl").lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let bytes = match case.get("raw") {
            Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&case["line"]).unwrap(),
        };
        accepted += usize::from(same(&bytes));
    }
    for line in include_str!("../data/sample-sessions.jsonl").lines() {
        assert!(same(line.as_bytes()));
    }
    let base = r#""session_id":"s1","agent":"a","prompt_version":"p","model":"m-2026-09","ended_at":"2026-11-01T00:00:02Z","status":"success""#;
    let numbers = [
        "0",
        "-0",
        "1",
        "-1",
        "0.1",
        "-0.0",
        "1e3",
        "1E+3",
        "1e-3",
        "2286.4",
        "3138.1",
        "0.001016",
        "9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
        "1e308",
        "1e309",
        "4.9e-324",
        "1e-400",
        "0.30000000000000004",
        "1.0000000000000002",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "1.5e3.2",
        "NaN",
        "Infinity",
        "0.000000000000000000000000000000000000001",
    ];
    for n in numbers {
        for template in [
            format!(r#"{{{base},"duration_ms":{n}}}"#),
            format!(r#"{{{base},"usage":{{"input_tokens":{n},"cost_usd":{n}}}}}"#),
            format!(r#"{{{base},"quality":{{"score":{n}}}}}"#),
            format!(r#"{{{base},"attributes":{{"x":{n}}}}}"#),
            format!(r#"{{{base},"unknown":[{n},{{"a":{n}}}]}}"#),
        ] {
            accepted += usize::from(same(template.as_bytes()));
        }
    }
    let edges = [
        format!(r#"{{{base}}}"#),
        format!(" \t\r\n{{{base}}} \n"),
        format!(
            r#"{{ {} }}"#,
            base.replace(',', " ,\n\t").replace(':', " : ")
        ),
        format!(r#"{{{base}}}x"#),
        format!(r#"{{{base}}}{{}}"#),
        format!(r#"{{{base},}}"#),
        format!(r#"[{{{base}}}]"#),
        format!(r#"{{{base},"agent":"b"}}"#),
        format!(r#"{{{base},"agent":null}}"#),
        format!(r#"{{"session_id":null,{base}}}"#),
        format!(
            r#"{{{base},"provider":null,"error_type":null,"usage":null,"tool_calls":null,"fallback":null,"pii":null,"quality":null,"attributes":null,"turns":null}}"#
        ),
        format!(r#"{{{base},"provider":"a\"b"}}"#),
        format!(r#"{{{base},"provider":"caf\u00e9"}}"#),
        format!(r#"{{{base},"provider":"café ☕"}}"#),
        format!("{{{base},\"provider\":\"a\tb\"}}"),
        format!(r#"{{{base},"unknown":"a\"b\\"}}"#),
        format!(r#"{{{base},"unkn\u006fwn":1}}"#),
        format!(r#"{{{base},"st\u0061tus":"error"}}"#),
        format!(r#"{{{base},"usage":[1,2,3]}}"#),
        format!(r#"{{{base},"usage":{{"input_tokens":1,"input_tokens":2}}}}"#),
        format!(r#"{{{base},"usage":{{"input_tokens":"1"}}}}"#),
        format!(
            r#"{{{base},"usage":{{"cache_read_input_tokens":1,"cache_creation_input_tokens":null,"reasoning_output_tokens":3}}}}"#
        ),
        format!(
            r#"{{{base},"usage":{{"reasoning_output_tokens":1,"reasoning_output_tokens":2}}}}"#
        ),
        format!(r#"{{{base},"usage":{{"cache_read_input_tokens":true}}}}"#),
        format!(r#"{{{base},"usage":{{"other":{{"deep":[[[[[]]]]]}}}}}}"#),
        format!(
            r#"{{{base},"tool_calls":[{{"name":"t","status":"ok","duration_ms":1.5,"x":null}},{{"name":"u"}}]}}"#
        ),
        format!(r#"{{{base},"tool_calls":[null]}}"#),
        format!(r#"{{{base},"tool_calls":[["t","ok",1]]}}"#),
        format!(r#"{{{base},"tool_calls":[{{"name":"t"}},]}}"#),
        format!(r#"{{{base},"fallback":{{"triggered":true,"kind":"model","reason":null}}}}"#),
        format!(r#"{{{base},"fallback":{{"triggered":1}}}}"#),
        format!(r#"{{{base},"pii":[{{"type":"email","handling":"masked","destination":"crm"}}]}}"#),
        format!(r#"{{{base},"quality":{{"score":0.5,"resolved":false,"refusal":true}}}}"#),
        format!(r#"{{{base},"quality":{{"resolved":tru}}}}"#),
        format!(r#"{{{base},"attributes":{{"a":"x","a":2,"b":true,"c":false}}}}"#),
        format!(r#"{{{base},"attributes":{{"a":null}}}}"#),
        format!(r#"{{{base},"attributes":{{"a":[1]}}}}"#),
        format!(
            r#"{{{base},"unknown":{}}}"#,
            "[".repeat(200) + &"]".repeat(200)
        ),
        format!(
            r#"{{{base},"unknown":{}}}"#,
            "[".repeat(40) + &"]".repeat(40)
        ),
        format!(r#"{{{base},"unknown":nul}}"#),
        format!(r#"{{{base},"unknown":truex}}"#),
        r#"{"session_id":"s1"}"#.to_owned(),
        "{}".to_owned(),
        "".to_owned(),
        "null".to_owned(),
    ];
    for e in &edges {
        accepted += usize::from(same(e.as_bytes()));
    }
    // The edges are not all rejects: the comparison covers accepted records too.
    assert!(accepted > 100, "only {accepted} accepted");
}
