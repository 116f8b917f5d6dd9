//! Sessions → spans (the inverse of [`super::map`]), for `simulate --otel` and the tests; and a
//! session as a contract-v1 record, for `--emit-sessions`.
//!
//! A session becomes one trace: an `invoke_agent` root ending at the session's event time,
//! one `chat` span per turn (tokens split over them), one `execute_tool` span per tool call,
//! in order, and the mapped attributes and events on the root. Ids are derived from the session
//! id, so the same sessions always give the same bytes.

use xxhash_rust::xxh3::xxh3_128;

use crate::session::{AttrValue, Session, Status, ToolStatus};

use super::config::{GroupBy, Mapping};
use super::decode::encode_spans;
use super::map::{
    CACHE_CREATION_INPUT_TOKENS, CACHE_READ_INPUT_TOKENS, EVALUATION_RESULT, EXECUTE_TOOL,
    INVOKE_AGENT, REASONING_OUTPUT_TOKENS, fallback_key,
};
use super::{Encoding, Span, SpanEvent, SpanStatus, Value};

/// How sessions are written as spans.
#[derive(Debug, Clone, Default)]
pub struct EncodeOptions {
    /// The attribute names to write (those the reading side maps).
    pub mapping: Mapping,
    /// `conversation` writes `gen_ai.conversation.id` = the session id on the root, so a reader
    /// grouping by conversation gets the session ids back; `trace` writes it too (it is
    /// harmless) — the session id is then the trace id.
    pub group_by: GroupBy,
}

/// `SpanKind` values of the OTLP protobuf.
const KIND_INTERNAL: i32 = 1;
const KIND_CLIENT: i32 = 3;

/// The spans of `sessions` as one `ExportTraceServiceRequest`.
pub fn encode_request(
    sessions: &[Session],
    encoding: Encoding,
    options: &EncodeOptions,
) -> Vec<u8> {
    let spans: Vec<Span> = sessions
        .iter()
        .flat_map(|s| session_spans(s, options))
        .collect();
    encode_spans(&spans, encoding)
}

/// The trace id of a session's spans: a hash of its id (never all zero).
pub fn trace_id_of(session_id: &str) -> [u8; 16] {
    let mut id = xxh3_128(session_id.as_bytes()).to_be_bytes();
    id[15] |= 1;
    id
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn dur_ns(ms: f64) -> u64 {
    (ms * 1e6).round().max(0.0) as u64
}

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

/// The spans of one session (root first).
pub fn session_spans(session: &Session, options: &EncodeOptions) -> Vec<Span> {
    let m = &options.mapping;
    let trace_id = trace_id_of(&session.session_id);
    let span_id = |i: u64| -> [u8; 8] {
        let mut id = (u64::from_be_bytes(trace_id[..8].try_into().expect("8 bytes")) ^ i)
            .wrapping_add(i)
            .to_be_bytes();
        id[7] |= 1;
        id
    };
    let end = ms_to_ns(session.event_time);
    let start = match (session.duration_ms, session.started_at) {
        (Some(d), _) => end.saturating_sub(dur_ns(d)),
        (None, Some(st)) => ms_to_ns(st).min(end),
        (None, None) => end,
    };
    let root_id = span_id(0);

    let mut attrs: Vec<(String, Value)> = vec![
        ("gen_ai.operation.name".into(), s(INVOKE_AGENT)),
        ("gen_ai.agent.name".into(), s(&session.agent)),
        ("gen_ai.conversation.id".into(), s(&session.session_id)),
        (m.prompt_version.clone(), s(&session.prompt_version)),
    ];
    if let Some(p) = &session.provider {
        attrs.push(("gen_ai.provider.name".into(), s(p)));
    }
    if let Some(e) = &session.error_type {
        attrs.push(("error.type".into(), s(e)));
    }
    if matches!(session.status, Status::Timeout | Status::Abandoned)
        || (session.status == Status::Success && session.error_type.is_some())
    {
        attrs.push((m.status.clone(), s(session.status.as_str())));
    }
    if let Some(t) = session.turns {
        attrs.push((m.turns.clone(), Value::Int(t as i64)));
    }
    if let (Some(c), false) = (session.cost_usd, session.cost_derived) {
        attrs.push((m.cost_usd.clone(), Value::Double(c)));
    }
    if let Some(c) = session.output_chars {
        attrs.push((m.output_chars.clone(), Value::Int(c as i64)));
    }
    if let Some(c) = session.context_tokens_max {
        attrs.push((m.context_tokens_max.clone(), Value::Int(c as i64)));
    }
    if let Some(r) = session.quality.resolved {
        attrs.push((m.quality_resolved.clone(), Value::Bool(r)));
    }
    if let Some(r) = session.quality.refusal {
        attrs.push((m.quality_refusal.clone(), Value::Bool(r)));
    }
    if let Some(f) = &session.fallback {
        attrs.push((fallback_key(m, "triggered"), Value::Bool(f.triggered)));
        if let Some(k) = &f.kind {
            attrs.push((fallback_key(m, "kind"), s(k)));
        }
        if let Some(r) = &f.reason {
            attrs.push((fallback_key(m, "reason"), s(r)));
        }
    }
    for (k, v) in &session.attributes {
        let v = match v {
            AttrValue::Str(x) => s(x),
            AttrValue::Num(n) => Value::Double(*n),
            AttrValue::Bool(b) => Value::Bool(*b),
        };
        attrs.push((format!("{}{k}", m.attributes_prefix), v));
    }
    let mut events = Vec::new();
    if let Some(score) = session.quality.score {
        let name = if m.quality_evaluation.is_empty() {
            "quality"
        } else {
            &m.quality_evaluation
        };
        events.push(SpanEvent {
            name: EVALUATION_RESULT.into(),
            time_unix_nano: end,
            attributes: vec![
                ("gen_ai.evaluation.name".into(), s(name)),
                ("gen_ai.evaluation.score.value".into(), Value::Double(score)),
            ],
        });
    }
    for p in &session.pii {
        let mut a = vec![
            ("type".into(), s(&p.kind)),
            ("handling".into(), s(p.handling.as_str())),
        ];
        if let Some(d) = &p.destination {
            a.push(("destination".into(), s(d)));
        }
        events.push(SpanEvent {
            name: m.pii_event.clone(),
            time_unix_nano: start,
            attributes: a,
        });
    }
    let base = |name: String, id: u64, parent: Option<[u8; 8]>, kind, st: u64, en: u64| Span {
        trace_id,
        span_id: span_id(id),
        parent_span_id: parent,
        name,
        kind,
        start_unix_nano: st,
        end_unix_nano: en,
        status: SpanStatus::Unset,
        status_message: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        service_name: Some(session.agent.clone()),
        schema_url: "https://opentelemetry.io/schemas/1.37.0".into(),
    };
    let mut root = base(
        format!("{INVOKE_AGENT} {}", session.agent),
        0,
        None,
        KIND_INTERNAL,
        start,
        end,
    );
    root.attributes = attrs;
    root.events = events;
    if session.status == Status::Error {
        root.status = SpanStatus::Error;
    }
    let mut spans = vec![root];

    // Model calls share the session's time evenly; tool calls follow them in order.
    let calls = session.turns.unwrap_or(1).max(1);
    let slot = (end - start) / (calls + 1).max(1);
    let split = |total: Option<u64>, i: u64| total.map(|t| t / calls + u64::from(i < t % calls));
    for i in 0..calls {
        let st = start + slot * i;
        let mut call = base(
            format!("chat {}", session.model),
            1 + i,
            Some(root_id),
            KIND_CLIENT,
            st,
            st + slot,
        );
        call.attributes = vec![
            ("gen_ai.operation.name".into(), s("chat")),
            ("gen_ai.request.model".into(), s(&session.model)),
            ("gen_ai.response.model".into(), s(&session.model)),
        ];
        if let Some(p) = &session.provider {
            call.attributes.push(("gen_ai.provider.name".into(), s(p)));
        }
        if let Some(n) = split(session.input_tokens, i) {
            call.attributes
                .push(("gen_ai.usage.input_tokens".into(), Value::Int(n as i64)));
        }
        if let Some(n) = split(session.output_tokens, i) {
            call.attributes
                .push(("gen_ai.usage.output_tokens".into(), Value::Int(n as i64)));
        }
        for (total, key) in [
            (session.cache_read_input_tokens, CACHE_READ_INPUT_TOKENS[0]),
            (
                session.cache_creation_input_tokens,
                CACHE_CREATION_INPUT_TOKENS[0],
            ),
            (session.reasoning_output_tokens, REASONING_OUTPUT_TOKENS[0]),
        ] {
            if let Some(n) = split(total, i) {
                call.attributes.push((key.into(), Value::Int(n as i64)));
            }
        }
        spans.push(call);
    }
    let mut at = start;
    for (i, t) in session.tool_calls.iter().enumerate() {
        let d = t.duration_ms.map_or(0, dur_ns);
        let mut call = base(
            format!("{EXECUTE_TOOL} {}", t.name),
            1 + calls + i as u64,
            Some(root_id),
            KIND_INTERNAL,
            at,
            at + d,
        );
        // Start order is call order: ties broken by a nanosecond.
        at += d.max(1);
        call.attributes = vec![
            ("gen_ai.operation.name".into(), s(EXECUTE_TOOL)),
            ("gen_ai.tool.name".into(), s(&t.name)),
        ];
        match t.status {
            Some(ToolStatus::Ok) | None => call.status = SpanStatus::Ok,
            Some(ToolStatus::Error) => {
                call.status = SpanStatus::Error;
                call.attributes.push(("error.type".into(), s("tool_error")));
            }
            Some(ToolStatus::Denied) => {
                call.attributes.push((m.tool_status.clone(), s("denied")));
            }
        }
        spans.push(call);
    }
    let _ = options.group_by;
    spans
}
