//! Sessions assembled from OpenTelemetry GenAI spans: the pure core of the span path.
//!
//! ```text
//! ExportTraceServiceRequest bytes ──decode──► [Span] ──Assembler──► Session ──► Pipeline::accept
//!   (OTLP protobuf or OTLP JSON)      │        (by trace, event time,  │
//!                                     └─ SpanReject (bad_protobuf, …)   └─ SpanReject (orphan_span,
//!                                                                          evicted_open_trace, …)
//! ```
//!
//! * [`decode_request`] reads one `ExportTraceServiceRequest` (the official protobuf messages of
//!   the `opentelemetry-proto` crate; their serde form is the OTLP JSON encoding — hex ids,
//!   lowerCamelCase, enums as integers, 64-bit integers as strings or numbers) into slawatch's
//!   own [`Span`]s.
//! * [`Assembler`] groups spans by trace (and traces by conversation, when configured) and
//!   completes a session once its root `invoke_agent` span has arrived and the event-time
//!   watermark (newest span end − grace) has passed the root's end; open traces are capped,
//!   the oldest evicted to the dead letters; spans of a released trace are dead-lettered late.
//! * [`map`] turns one trace's spans into a [`Session`] following the GenAI semantic
//!   conventions and the configurable [`Mapping`] (`docs/otel.md` tables every field).
//! * [`encode_request`] is the inverse, for `simulate --otel` and the tests (a session as a
//!   contract-v1 record is `ingest::encode::encode_record`).
//!
//! Never does I/O and never reads the wall clock. Only this module imports `opentelemetry-proto`
//! and `prost`.

mod assemble;
mod config;
mod decode;
mod encode;
pub mod map;
pub mod response;

pub use assemble::{Assembled, Assembler, AssemblerState, RECEIVER_SOURCE};
pub use config::{GroupBy, Mapping, OtelConfig};
pub use decode::{decode_request, spans_to_otlp_json};
pub use encode::{EncodeOptions, encode_request, session_spans};

use serde::{Deserialize, Serialize};

/// The two encodings of an OTLP `ExportTraceServiceRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The protobuf wire format (`application/x-protobuf`, the Collector's `otlp_proto`).
    Protobuf,
    /// The OTLP JSON encoding (`application/json`, the Collector's `otlp_json`).
    Json,
}

/// A span's kind (`SpanKind` of the OTLP protobuf, kept as its integer).
pub type SpanKind = i32;

/// A span's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}

/// An attribute value as OTLP carries it, typed. Arrays, maps and bytes are kept only as
/// [`Value::Other`] (no mapped field reads them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// An array, key-value list, bytes or empty value; its OTLP type name.
    Other(String),
}

impl Value {
    /// The OTLP type name, for `wrong_type` rejects.
    pub fn type_name(&self) -> &str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Double(_) => "double",
            Value::Bool(_) => "bool",
            Value::Other(t) => t,
        }
    }
}

/// Attributes in the order they arrived.
pub type Attributes = Vec<(String, Value)>;

/// The value of attribute `key`, if present.
pub fn attribute<'a>(attributes: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A span event (e.g. `gen_ai.evaluation.result`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: Attributes,
}

/// One span, decoded: slawatch's own type, not the protobuf message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a span without parent.
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: SpanStatus,
    pub status_message: String,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    /// The resource's `service.name`, the agent's name of last resort.
    pub service_name: Option<String>,
    /// The scope's `schema_url` (or the resource's), e.g. a semantic-convention version.
    pub schema_url: String,
}

impl Span {
    /// End of the span in epoch milliseconds (floor).
    pub fn end_ms(&self) -> i64 {
        (self.end_unix_nano / 1_000_000) as i64
    }

    /// `gen_ai.operation.name`, else the span name's first word (`chat gpt-4o` → `chat`).
    pub fn operation(&self) -> &str {
        match attribute(&self.attributes, "gen_ai.operation.name") {
            Some(Value::Str(s)) => s,
            _ => self.name.split(' ').next().unwrap_or(""),
        }
    }

    /// The trace id as 32 lowercase hex digits (the session id when grouping by trace).
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Why spans did not become a session. Counted by [`SpanReject::code`] like record rejects and
/// written to the dead letters with the span(s) as OTLP JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanReject {
    /// The bytes are not a protobuf `ExportTraceServiceRequest`.
    #[error("not an OTLP protobuf ExportTraceServiceRequest: {detail}")]
    BadProtobuf { detail: String },
    /// The bytes are not an OTLP JSON `ExportTraceServiceRequest`.
    #[error("not an OTLP JSON ExportTraceServiceRequest: {detail}")]
    BadJson { detail: String },
    /// A trace or span id of the wrong length (or all zero).
    #[error("span `{span}`: {field} must be {expected} bytes, not all zero; found {found} bytes")]
    BadId {
        span: String,
        field: &'static str,
        expected: usize,
        found: usize,
    },
    /// Spans of a trace whose root `invoke_agent` span never arrived before the watermark passed
    /// them by the grace.
    #[error("trace {trace}: no invoke_agent root span arrived for {spans} span(s)")]
    OrphanSpan { trace: String, spans: usize },
    /// The cap on open traces (`maxOpenTraces`) evicted this trace, the oldest open.
    #[error("trace {trace}: evicted with {spans} span(s): more than {cap} traces open")]
    EvictedOpenTrace {
        trace: String,
        spans: usize,
        cap: usize,
    },
    /// A field the session needs is absent.
    #[error("trace {trace}: missing {what}")]
    MissingAttribute { trace: String, what: String },
    /// An attribute has the wrong type or an impossible value.
    #[error("trace {trace}: attribute `{key}` must be {expected}, found {found}")]
    WrongType {
        trace: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    /// Spans of a trace, or of a conversation, that had already been released (completed as a
    /// session, or dead-lettered): late, like a record whose windows have closed.
    #[error(
        "trace {trace}: {spans} span(s) arrived after {released} had been released (completed \
         or dead-lettered): late"
    )]
    LateSpan {
        trace: String,
        spans: usize,
        /// `the trace`, or `its conversation `…``.
        released: String,
    },
    /// The cap on open conversations (`maxOpenTraces`) evicted this conversation, the oldest
    /// open.
    #[error(
        "conversation `{conversation}`: evicted with {spans} span(s): more than {cap} conversations open"
    )]
    EvictedOpenConversation {
        conversation: String,
        spans: usize,
        cap: usize,
    },
    /// A trace that would take its conversation over `maxSpansPerTrace` spans.
    #[error(
        "conversation `{conversation}`: {spans} span(s) of a further trace dead-lettered: a conversation keeps at most {cap} spans"
    )]
    ConversationOverCap {
        conversation: String,
        spans: usize,
        cap: usize,
    },
    /// The input ended before the trace's root span arrived.
    #[error(
        "trace {trace}: input ended before its invoke_agent root span arrived ({spans} span(s))"
    )]
    IncompleteTrace { trace: String, spans: usize },
}

impl SpanReject {
    /// Every reason code, for counters that list zeros too.
    pub const CODES: [&'static str; 10] = [
        "bad_protobuf",
        "bad_json",
        "bad_span_id",
        "orphan_span",
        "evicted_open_trace",
        "evicted_open_conversation",
        "late_span",
        "missing_attribute",
        "wrong_type",
        "incomplete_trace",
    ];

    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            SpanReject::BadProtobuf { .. } => "bad_protobuf",
            SpanReject::BadJson { .. } => "bad_json",
            SpanReject::BadId { .. } => "bad_span_id",
            SpanReject::OrphanSpan { .. } => "orphan_span",
            SpanReject::EvictedOpenTrace { .. } => "evicted_open_trace",
            SpanReject::EvictedOpenConversation { .. } | SpanReject::ConversationOverCap { .. } => {
                "evicted_open_conversation"
            }
            SpanReject::LateSpan { .. } => "late_span",
            SpanReject::MissingAttribute { .. } => "missing_attribute",
            SpanReject::WrongType { .. } => "wrong_type",
            SpanReject::IncompleteTrace { .. } => "incomplete_trace",
        }
    }
}
