//! The fuzz targets: one function per parser of untrusted bytes, each taking arbitrary bytes and
//! panicking only when an invariant of that parser breaks.
//!
//! | target | parser | invariants beyond "no panic, no hang" |
//! |---|---|---|
//! | `record` | [`ingest::decode::Decoder`] (contract v1) | the scanner (fast path) and the serde path give the same session or the same reject, to the bit; an accepted record re-encodes to JSON that decodes to the same session; a reject has a code in `RejectReason::CODES` and a message |
//! | `spec` | [`spec::parse_str`] (`slawatch validate`) | errors and specs exclude each other per document; every diagnostic points inside the input; diagnostics render; valid specs explain |
//! | `policy` | [`alerts::parse_policy`] | a policy only without errors; every diagnostic points inside the input; diagnostics render |
//! | `service_config` | [`cli::parse_config_file`] (`slawatch.yaml`) | an error's position is inside the input |
//! | `otlp` | [`otel::decode_request`] (first byte: even = protobuf, odd = OTLP JSON) then an [`otel::Assembler`] to the end of input | a reject has a code in `SpanReject::CODES` and a message; decoded spans re-encode (OTLP JSON) to the same spans; every trace ends as a session or a reject |
//! | `api_query` | [`api::query_pairs`] + [`api::parse_request`] (first byte picks the question) | a rejected request names only parameters it was given or depends on; an accepted one resolves to a range and a bucket plan, from any "now", that cover it in order |
//!
//! The same functions run under AFL++ (`fuzz/`, `scripts/fuzz.sh`) and in `cargo test`
//! (`tests/it/fuzz_targets.rs` replays the committed corpora and every crash, then runs bounded
//! property tests), so a crash fixed once stays fixed. Pure: no I/O, no wall clock.
//!
//! [`ingest::decode::Decoder`]: crate::ingest::decode::Decoder
//! [`spec::parse_str`]: crate::spec::parse_str
//! [`alerts::parse_policy`]: crate::alerts::policy::parse_policy
//! [`cli::parse_config_file`]: crate::cli::parse_config_file
//! [`otel::decode_request`]: crate::otel::decode_request
//! [`otel::Assembler`]: crate::otel::Assembler
//! [`api::query_pairs`]: crate::api::query_pairs
//! [`api::parse_request`]: crate::api::parse_request

use std::sync::{Arc, OnceLock};

use crate::api::questions::{COMMON_PARAMS, Question};
use crate::catalog::Catalog;
use crate::history::DAY_MS;
use crate::history::query::{Range, plan};
use crate::ingest::decode::{Decoder, RejectReason};
use crate::ingest::encode::{RecordStyle, encode_record};
use crate::spec::Diagnostic;
use crate::time::{MAX_EPOCH_MS, MIN_EPOCH_MS};

/// A fuzz target: a parser of untrusted bytes with its invariants asserted.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` builds them and the corpus replay runs them.
pub const TARGETS: [(&str, Target); 6] = [
    ("record", record),
    ("otlp", otlp),
    ("spec", spec),
    ("policy", policy),
    ("service_config", service_config),
    ("api_query", api_query),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| Decoder::new(Arc::new(Catalog::embedded())))
}

/// One OTLP `ExportTraceServiceRequest` (an OTLP/HTTP body, a span topic's message, a line or
/// frame of a span file); the first byte picks the encoding.
pub fn otlp(data: &[u8]) {
    use crate::otel::{Assembled, Assembler, Encoding, OtelConfig, SpanReject, Value};
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let encoding = if first % 2 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let spans = match crate::otel::decode_request(body, encoding) {
        Ok(spans) => spans,
        Err(reason) => {
            assert!(SpanReject::CODES.contains(&reason.code()));
            assert!(!reason.to_string().is_empty());
            return;
        }
    };
    // What is kept of a span survives the dead letters' OTLP JSON. Values not kept (arrays,
    // maps, bytes) and NaN (never equal to itself) are left out of the comparison.
    let comparable = spans.iter().all(|s| {
        s.attributes
            .iter()
            .chain(s.events.iter().flat_map(|e| &e.attributes))
            .all(|(_, v)| {
                !matches!(v, Value::Other(_)) && !matches!(v, Value::Double(d) if d.is_nan())
            })
    });
    if comparable {
        let json = crate::otel::spans_to_otlp_json(&spans);
        let back = crate::otel::decode_request(&json, Encoding::Json)
            .unwrap_or_else(|e| panic!("the spans' OTLP JSON is rejected ({e})"));
        assert!(back == spans, "the spans' OTLP JSON decodes to other spans");
    }
    let traces: std::collections::BTreeSet<[u8; 16]> = spans.iter().map(|s| s.trace_id).collect();
    let mut assembler = Assembler::new(&OtelConfig::default());
    let mut out = Vec::new();
    assembler.push(spans, &mut out);
    assembler.finish(&mut out);
    assert_eq!(assembler.open_traces(), 0);
    for a in &out {
        if let Assembled::Rejected { reason, .. } = a {
            assert!(SpanReject::CODES.contains(&reason.code()));
        }
    }
    // Late spans of a completed trace open it again, so a trace may end more than once.
    assert!(out.len() >= traces.len(), "a trace vanished");
}

/// A session record (one JSON Lines line or one Kafka value).
pub fn record(data: &[u8]) {
    let decoded = decoder().decode(data);
    // The scanner (the decoder's fast path) must give what the serde path gives, to the bit.
    assert_eq!(
        format!("{decoded:?}"),
        format!("{:?}", decoder().decode_serde(data)),
        "the scanner and the serde path disagree"
    );
    match decoded {
        Ok(session) => {
            let again = encode_record(&session, RecordStyle::Full);
            match decoder().decode(again.as_bytes()) {
                Ok(back) => assert_eq!(
                    back, session,
                    "the re-encoded record decodes to another session: {again}"
                ),
                Err(e) => panic!("the re-encoded record is rejected ({e}): {again}"),
            }
        }
        Err(reason) => {
            assert!(RejectReason::CODES.contains(&reason.code()));
            assert!(!reason.to_string().is_empty());
        }
    }
}

/// Checks what every diagnostic of a YAML file must satisfy: it points inside `src` and renders.
fn check_diagnostics(src: &str, diags: &[Diagnostic]) {
    let lines = yaml_lines(src);
    for d in diags {
        assert!(
            !d.message.is_empty(),
            "a diagnostic without a message: {d:?}"
        );
        let line = d.line as usize;
        assert!(
            line <= lines.len(),
            "line {line} of a {}-line input: {d:?}",
            lines.len()
        );
        if line > 0 && d.col > 0 {
            let chars = lines[line - 1].chars().count();
            assert!(
                d.col as usize <= chars + 1,
                "column {} of a {chars}-character line: {d:?}",
                d.col
            );
        }
        let _ = d.to_string();
    }
    let _ = crate::spec::render_all(diags);
    let _ = crate::spec::summary(diags);
}

/// The lines of a YAML text as YAML counts them: `\r\n`, `\r` and `\n` each end one.
fn yaml_lines(src: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    lines.push(rest);
    lines
}

/// A spec file's text (`slawatch validate`).
pub fn spec(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (specs, diags) = crate::spec::parse_str(src, "fuzz.yaml");
    check_diagnostics(src, &diags);
    if crate::spec::has_errors(&diags) {
        // One document's error keeps that document's spec out, not the others'.
        assert!(specs.len() <= src.matches("---").count() + 1);
    }
    for s in &specs {
        let _ = crate::spec::explain(s);
    }
}

/// A notification policy file's text.
pub fn policy(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (policy, diags) = crate::alerts::policy::parse_policy(src, "fuzz.yaml");
    check_diagnostics(src, &diags);
    assert_eq!(
        policy.is_some(),
        !crate::spec::has_errors(&diags),
        "a policy exactly when there is no error: {diags:?}"
    );
    if let Some(p) = policy {
        let _ = p.check_specs(&[]);
    }
}

/// A service configuration file (`slawatch.yaml`).
pub fn service_config(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::cli::parse_config_file(src) {
        let message = e.to_string();
        assert!(!message.is_empty());
        if let Some(loc) = e.location() {
            let lines = yaml_lines(src).len() as u64;
            assert!(
                loc.line() <= lines + 1,
                "line {} of a {lines}-line input: {message}",
                loc.line()
            );
        }
    }
}

/// The "now"s (newest event time of the history) a request is resolved against: none yet,
/// a recent day, the first and last instants a record's timestamp can name.
const NOWS: [i64; 4] = [0, 20_400 * DAY_MS + 5, MIN_EPOCH_MS, MAX_EPOCH_MS];

/// An API request: the first byte picks the question, the rest is the raw query string.
pub fn api_query(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let question = Question::ALL[usize::from(pick) % Question::ALL.len()];
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(pairs) = crate::api::query_pairs(query) else {
        return;
    };
    match crate::api::parse_request(question, &pairs) {
        Err(problem) => {
            assert!(!problem.invalid_params.is_empty(), "{problem:?}");
            for bad in &problem.invalid_params {
                assert!(
                    pairs.iter().any(|(k, _)| *k == bad.name)
                        || COMMON_PARAMS.contains(&bad.name.as_str()),
                    "`{}` is neither given nor a parameter: {problem:?}",
                    bad.name
                );
                assert!(!bad.reason.is_empty());
            }
        }
        Ok(req) => {
            for now in NOWS {
                let range = req.resolve(now);
                check_plan(range, now);
                if question == Question::Cost {
                    check_plan(req.compared_range(range), now);
                }
            }
        }
    }
}

/// The buckets that answer `range` follow each other and cover it.
fn check_plan(range: Range, now: i64) {
    const PANE_MS: i64 = 5 * 60_000;
    let spans = plan(range, PANE_MS, now, now - 8 * DAY_MS);
    for s in &spans {
        assert!(s.from < s.to, "an empty span {s:?} for {range:?}");
    }
    for w in spans.windows(2) {
        assert!(
            w[0].to <= w[1].from,
            "spans out of order: {w:?} for {range:?}"
        );
    }
    if range.from < range.to {
        let first = spans.first().expect("a non-empty range has a span");
        let last = spans.last().expect("a non-empty range has a span");
        assert!(
            first.from <= range.from && last.to >= range.to,
            "{spans:?} for {range:?}"
        );
    }
}
