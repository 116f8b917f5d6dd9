//! Bytes → [`Session`], or a [`RejectReason`] that says exactly what was wrong.
//!
//! The fast path ([`scan`]) reads the record straight into a borrowed wire struct; anything it
//! does not expect (an escape, a wrong type, a duplicate field, …) goes to serde_json, which
//! deserializes into the same wire struct, and only when serde itself fails (a wrong JSON type
//! somewhere) does the slow path parse a `serde_json::Value` to find which field it was. Values
//! are checked on the wire struct, whichever path read it. Unknown fields are ignored (contract: forward compatible).
//! A `null` for an optional field counts as absent. Never does I/O.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::Value;

use crate::catalog::Catalog;
use crate::session::{
    AttrValue, Fallback, Pii, PiiHandling, Quality, Session, Status, ToolCall, ToolStatus,
};
use crate::time::{MAX_EPOCH_MS, parse_rfc3339_ms};

mod scan;

/// Default size limit of one record: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// The contract version this decoder implements.
pub const SCHEMA_V1: &str = "agent-session/v1";

/// Why a record was rejected. `code()` is the low-cardinality label it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The record is larger than the size limit.
    TooLarge { bytes: usize, limit: usize },
    /// Not parseable as JSON (includes truncated records and invalid UTF-8).
    NotJson { detail: String },
    /// Valid JSON, but not an object.
    NotObject { found: &'static str },
    /// `schema` names a major version this build does not understand.
    UnknownSchemaVersion { found: String },
    /// A required field is absent.
    MissingField { field: String },
    /// A field has the wrong JSON type.
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    /// A field has the right type but a value outside the contract.
    InvalidValue {
        field: String,
        found: String,
        expected: String,
    },
    /// A timestamp is not RFC 3339.
    BadTimestamp { field: String, found: String },
    /// A count or duration is negative.
    NegativeValue { field: String, found: String },
    /// Every window the record belongs to had already closed (see the spec's `latePolicy`).
    Late {
        event_time: String,
        closed_before: String,
    },
    /// The event time is further ahead of the wall clock than the allowed skew (`run
    /// --max-future-skew`): a producer's broken clock would otherwise move the watermark and
    /// make every honest record late.
    Future { event_time: String, limit: String },
    /// Spans that did not become a session (OpenTelemetry input): the
    /// [`crate::otel::SpanReject`]'s code and what it says.
    Span { code: &'static str, detail: String },
}

impl RejectReason {
    /// Every reason code, for counters that list zeros too.
    pub const CODES: [&'static str; 11] = [
        "too_large",
        "not_json",
        "not_object",
        "unknown_schema_version",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "bad_timestamp",
        "negative_value",
        "late",
        "future",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::NotJson { .. } => "not_json",
            RejectReason::NotObject { .. } => "not_object",
            RejectReason::UnknownSchemaVersion { .. } => "unknown_schema_version",
            RejectReason::MissingField { .. } => "missing_field",
            RejectReason::WrongType { .. } => "wrong_type",
            RejectReason::InvalidValue { .. } => "invalid_value",
            RejectReason::BadTimestamp { .. } => "bad_timestamp",
            RejectReason::NegativeValue { .. } => "negative_value",
            RejectReason::Late { .. } => "late",
            RejectReason::Future { .. } => "future",
            RejectReason::Span { code, .. } => code,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Span { detail, .. } => f.write_str(detail),
            RejectReason::TooLarge { bytes, limit } => {
                write!(f, "record is {bytes} bytes, over the {limit}-byte limit")
            }
            RejectReason::NotJson { detail } => write!(f, "not JSON: {detail}"),
            RejectReason::NotObject { found } => {
                write!(f, "expected a JSON object, found {found}")
            }
            RejectReason::UnknownSchemaVersion { found } => write!(
                f,
                "unknown schema version `{found}`: this build reads `{SCHEMA_V1}` (and v1.x)"
            ),
            RejectReason::MissingField { field } => write!(f, "missing required field `{field}`"),
            RejectReason::WrongType {
                field,
                expected,
                found,
            } => write!(f, "`{field}`: expected {expected}, found {found}"),
            RejectReason::InvalidValue {
                field,
                found,
                expected,
            } => write!(f, "`{field}`: invalid value {found}; expected {expected}"),
            RejectReason::BadTimestamp { field, found } => {
                write!(f, "`{field}`: {found} is not an RFC 3339 timestamp")
            }
            RejectReason::NegativeValue { field, found } => {
                write!(f, "`{field}`: must be >= 0, found {found}")
            }
            RejectReason::Late {
                event_time,
                closed_before,
            } => write!(
                f,
                "late: event time {event_time} is before {closed_before}, where windows have closed"
            ),
            RejectReason::Future { event_time, limit } => write!(
                f,
                "future: event time {event_time} is after {limit}, the wall clock plus the allowed skew"
            ),
        }
    }
}

/// Decodes records against contract v1 and the model catalog.
#[derive(Debug, Clone)]
pub struct Decoder {
    catalog: Arc<Catalog>,
    max_bytes: usize,
}

impl Decoder {
    pub fn new(catalog: Arc<Catalog>) -> Decoder {
        Decoder {
            catalog,
            max_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Sets the size limit of one record.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Decoder {
        self.max_bytes = max_bytes;
        self
    }

    /// Decodes one record (one JSON Lines line without its newline, or one Kafka value).
    pub fn decode(&self, bytes: &[u8]) -> Result<Session, RejectReason> {
        if bytes.len() > self.max_bytes {
            return Err(RejectReason::TooLarge {
                bytes: bytes.len(),
                limit: self.max_bytes,
            });
        }
        // Validating UTF-8 once for the whole record is cheaper than serde_json's check of
        // every string; invalid UTF-8 takes the slice path, which reports it as before.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.decode_serde(bytes);
        };
        // The scanner reads what producers write; whatever it gives up on (including every
        // record that is rejected before `check`) takes the serde path, whose reasons and
        // messages are the contract.
        match scan::scan(text) {
            Some(wire) => self.check(wire),
            None => self.decode_serde(bytes),
        }
    }

    /// The decoder without its scanner: serde_json into the wire form, and on failure the
    /// diagnosis of which field was wrong. The reference the scanner is held to (the `record`
    /// fuzz target checks that both give the same session), and the path of every reject.
    pub fn decode_serde(&self, bytes: &[u8]) -> Result<Session, RejectReason> {
        if bytes.len() > self.max_bytes {
            return Err(RejectReason::TooLarge {
                bytes: bytes.len(),
                limit: self.max_bytes,
            });
        }
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str::<Wire<'_>>(text),
            Err(_) => serde_json::from_slice::<Wire<'_>>(bytes),
        };
        match parsed {
            Ok(wire) => self.check(wire),
            Err(e) => Err(diagnose(bytes, &e)),
        }
    }

    /// Turns a type-correct wire record into a session, checking values.
    fn check(&self, w: Wire<'_>) -> Result<Session, RejectReason> {
        if let Some(schema) = &w.schema
            && !is_v1(schema)
        {
            return Err(RejectReason::UnknownSchemaVersion {
                found: schema.to_string(),
            });
        }
        let session_id = required_id("session_id", w.session_id)?;
        let agent = required_id("agent", w.agent)?;
        let prompt_version = required_id("prompt_version", w.prompt_version)?;
        let model = required_id("model", w.model)?;
        let status_text = w.status.ok_or_else(|| missing("status"))?;
        let status = Status::parse(&status_text).ok_or_else(|| RejectReason::InvalidValue {
            field: "status".into(),
            found: format!("\"{status_text}\""),
            expected: "one of success, error, timeout, abandoned".into(),
        })?;

        let started_at = timestamp("started_at", w.started_at.as_deref())?;
        let ended_at = timestamp("ended_at", w.ended_at.as_deref())?;
        let reported_duration = non_negative("duration_ms", w.duration_ms)?;
        let (event_time, duration_ms, duration_derived) =
            match (started_at, ended_at, reported_duration) {
                (_, Some(end), Some(d)) => (end, Some(d), false),
                (Some(start), Some(end), None) => {
                    if end < start {
                        return Err(RejectReason::NegativeValue {
                            field: "duration_ms (ended_at - started_at)".into(),
                            found: format!("{} ms", end - start),
                        });
                    }
                    (end, Some((end - start) as f64), true)
                }
                (None, Some(end), None) => (end, None, false),
                (Some(start), None, Some(d)) => {
                    // Checked in f64: a huge duration would overflow i64 (or land past the
                    // last instant a timestamp can name, which nothing could read back).
                    let end = start as f64 + d.round();
                    if end > MAX_EPOCH_MS as f64 {
                        return Err(RejectReason::InvalidValue {
                            field: "duration_ms".into(),
                            found: d.to_string(),
                            expected: "a duration that ends (started_at + duration_ms) \
                                       before year 10000"
                                .into(),
                        });
                    }
                    (end as i64, Some(d), false)
                }
                (_, None, _) => {
                    return Err(missing("ended_at (or started_at and duration_ms)"));
                }
            };

        let usage = w.usage.unwrap_or_default();
        let input_tokens = count("usage.input_tokens", usage.input_tokens)?;
        let output_tokens = count("usage.output_tokens", usage.output_tokens)?;
        let cache_read_input_tokens = count(
            "usage.cache_read_input_tokens",
            usage.cache_read_input_tokens,
        )?;
        let cache_creation_input_tokens = count(
            "usage.cache_creation_input_tokens",
            usage.cache_creation_input_tokens,
        )?;
        let reasoning_output_tokens = count(
            "usage.reasoning_output_tokens",
            usage.reasoning_output_tokens,
        )?;
        let reported_cost = non_negative("usage.cost_usd", usage.cost_usd)?;
        let entry = self.catalog.lookup(&model);
        let (cost_usd, cost_derived) = match (reported_cost, entry) {
            (Some(c), _) => (Some(c), false),
            (None, Some(m)) if input_tokens.is_some() || output_tokens.is_some() => (
                Some(m.cost_usd(input_tokens.unwrap_or(0), output_tokens.unwrap_or(0))),
                true,
            ),
            _ => (None, false),
        };
        let context_tokens_max = count("context_tokens_max", w.context_tokens_max)?;
        let context_utilisation = match (context_tokens_max, entry) {
            (Some(c), Some(m)) if m.context_window > 0 => Some(c as f64 / m.context_window as f64),
            _ => None,
        };

        let mut tool_calls = Vec::with_capacity(w.tool_calls.as_ref().map_or(0, Vec::len));
        for (i, t) in w.tool_calls.into_iter().flatten().enumerate() {
            let name = t
                .name
                .ok_or_else(|| missing(&format!("tool_calls[{i}].name")))?;
            if name.is_empty() {
                return Err(RejectReason::InvalidValue {
                    field: format!("tool_calls[{i}].name"),
                    found: "\"\"".into(),
                    expected: "a non-empty string".into(),
                });
            }
            let status = match t.status {
                None => None,
                Some(s) => {
                    Some(
                        ToolStatus::parse(&s).ok_or_else(|| RejectReason::InvalidValue {
                            field: format!("tool_calls[{i}].status"),
                            found: format!("\"{s}\""),
                            expected: "one of ok, error, denied".into(),
                        })?,
                    )
                }
            };
            let duration_ms = non_negative(&format!("tool_calls[{i}].duration_ms"), t.duration_ms)?;
            tool_calls.push(ToolCall {
                name: name.into_owned(),
                status,
                duration_ms,
            });
        }

        let fallback = match w.fallback {
            None => None,
            Some(f) => Some(Fallback {
                triggered: f.triggered.ok_or_else(|| missing("fallback.triggered"))?,
                kind: f.kind.map(Cow::into_owned),
                reason: f.reason.map(Cow::into_owned),
            }),
        };

        let mut pii = Vec::with_capacity(w.pii.as_ref().map_or(0, Vec::len));
        for (i, p) in w.pii.into_iter().flatten().enumerate() {
            let kind = p.kind.ok_or_else(|| missing(&format!("pii[{i}].type")))?;
            let handling_text = p
                .handling
                .ok_or_else(|| missing(&format!("pii[{i}].handling")))?;
            let handling =
                PiiHandling::parse(&handling_text).ok_or_else(|| RejectReason::InvalidValue {
                    field: format!("pii[{i}].handling"),
                    found: format!("\"{handling_text}\""),
                    expected: "one of redacted, masked, blocked, passed_through".into(),
                })?;
            pii.push(Pii {
                kind: kind.into_owned(),
                handling,
                destination: p.destination.map(Cow::into_owned),
            });
        }

        let quality = match w.quality {
            None => Quality::default(),
            Some(q) => {
                if let Some(s) = q.score
                    && !(0.0..=1.0).contains(&s)
                {
                    return Err(RejectReason::InvalidValue {
                        field: "quality.score".into(),
                        found: s.to_string(),
                        expected: "a number from 0 to 1".into(),
                    });
                }
                Quality {
                    score: q.score,
                    resolved: q.resolved,
                    refusal: q.refusal,
                }
            }
        };

        Ok(Session {
            session_id,
            agent,
            prompt_version,
            model,
            provider: w.provider.map(Cow::into_owned),
            started_at,
            event_time,
            duration_ms,
            duration_derived,
            status,
            error_type: w.error_type.map(Cow::into_owned),
            turns: count("turns", w.turns)?,
            input_tokens,
            output_tokens,
            cache_read_input_tokens,
            cache_creation_input_tokens,
            reasoning_output_tokens,
            cost_usd,
            cost_derived,
            tool_calls,
            fallback,
            pii,
            quality,
            output_chars: count("output_chars", w.output_chars)?,
            context_tokens_max,
            context_utilisation,
            attributes: w.attributes.map(|a| a.0).unwrap_or_default(),
        })
    }
}

fn is_v1(schema: &str) -> bool {
    match schema.strip_prefix(SCHEMA_V1) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

fn missing(field: &str) -> RejectReason {
    RejectReason::MissingField {
        field: field.to_owned(),
    }
}

fn required_id(field: &str, value: Option<Cow<'_, str>>) -> Result<String, RejectReason> {
    let value = value.ok_or_else(|| missing(field))?;
    let chars = value.chars().count();
    if chars == 0 || chars > 256 {
        return Err(RejectReason::InvalidValue {
            field: field.to_owned(),
            found: format!("a string of {chars} characters"),
            expected: "1 to 256 characters".into(),
        });
    }
    Ok(value.into_owned())
}

fn timestamp(field: &str, value: Option<&str>) -> Result<Option<i64>, RejectReason> {
    match value {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(s)
            .map(Some)
            .ok_or_else(|| RejectReason::BadTimestamp {
                field: field.to_owned(),
                found: format!("\"{}\"", truncate(s, 64)),
            }),
    }
}

fn non_negative(field: &str, value: Option<f64>) -> Result<Option<f64>, RejectReason> {
    match value {
        Some(v) if v < 0.0 => Err(RejectReason::NegativeValue {
            field: field.to_owned(),
            found: v.to_string(),
        }),
        v => Ok(v),
    }
}

fn count(field: &str, value: Option<f64>) -> Result<Option<u64>, RejectReason> {
    match non_negative(field, value)? {
        None => Ok(None),
        Some(v) if v.fract() != 0.0 => Err(RejectReason::WrongType {
            field: field.to_owned(),
            expected: "an integer",
            found: v.to_string(),
        }),
        Some(v) => Ok(Some(v as u64)),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The wire shape. Every field is optional here so that a missing one is reported by name.

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    prompt_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    started_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    ended_at: Option<Cow<'a, str>>,
    duration_ms: Option<f64>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    error_type: Option<Cow<'a, str>>,
    turns: Option<f64>,
    usage: Option<WireUsage>,
    #[serde(borrow)]
    tool_calls: Option<Vec<WireToolCall<'a>>>,
    #[serde(borrow)]
    fallback: Option<WireFallback<'a>>,
    #[serde(borrow)]
    pii: Option<Vec<WirePii<'a>>>,
    quality: Option<WireQuality>,
    output_chars: Option<f64>,
    context_tokens_max: Option<f64>,
    attributes: Option<Attributes>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
    cost_usd: Option<f64>,
    cache_read_input_tokens: Option<f64>,
    cache_creation_input_tokens: Option<f64>,
    reasoning_output_tokens: Option<f64>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    status: Option<Cow<'a, str>>,
    duration_ms: Option<f64>,
}

#[derive(Deserialize)]
struct WireFallback<'a> {
    triggered: Option<bool>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WirePii<'a> {
    #[serde(borrow, rename = "type", default, deserialize_with = "borrowed_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    handling: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    destination: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireQuality {
    score: Option<f64>,
    resolved: Option<bool>,
    refusal: Option<bool>,
}

/// An optional string that borrows from the input when it has no escapes.
///
/// `#[serde(borrow)]` alone does not borrow an `Option<Cow<str>>` (serde-rs/serde#2016): every
/// string field would be allocated, including those only parsed and dropped (`schema`, the
/// timestamps, `status`).
fn borrowed_str<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct StrVisitor;
    impl<'de> Visitor<'de> for StrVisitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: de::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(StrVisitor)
        }
    }
    d.deserialize_option(StrVisitor)
}

/// `attributes`: string → string | number | bool, kept in record order.
struct Attributes(Vec<(String, AttrValue)>);

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string, number or bool values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value = map.next_value::<AttrValueWire>()?;
                    out.push((key.into_owned(), value.0));
                }
                Ok(Attributes(out))
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

struct AttrValueWire(AttrValue);

impl<'de> Deserialize<'de> for AttrValueWire {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = AttrValueWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or bool")
            }
            fn visit_str<E>(self, v: &str) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Str(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Str(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Bool(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Num(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Num(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<AttrValueWire, E> {
                Ok(AttrValueWire(AttrValue::Num(v as f64)))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// The slow path: serde failed, so find out where.

fn diagnose(bytes: &[u8], err: &serde_json::Error) -> RejectReason {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let detail = if e.is_eof() {
                format!("truncated ({e})")
            } else {
                e.to_string()
            };
            return RejectReason::NotJson { detail };
        }
    };
    let Value::Object(obj) = &value else {
        return RejectReason::NotObject {
            found: json_kind(&value),
        };
    };
    let mut v = TypeCheck::default();
    v.record(obj);
    v.first.unwrap_or_else(|| RejectReason::WrongType {
        field: "?".into(),
        expected: "the contract's types",
        found: err.to_string(),
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    format!("{} {}", json_kind(v), truncate(&text, 40))
}

/// Walks a parsed record checking JSON types against the contract; keeps the first problem.
#[derive(Default)]
struct TypeCheck {
    first: Option<RejectReason>,
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Num,
    Bool,
}

impl TypeCheck {
    fn fail(&mut self, field: String, expected: &'static str, found: &Value) {
        if self.first.is_none() {
            self.first = Some(RejectReason::WrongType {
                field,
                expected,
                found: describe(found),
            });
        }
    }

    fn scalar(&mut self, field: String, ty: Ty, v: Option<&Value>) {
        let (ok, expected) = match (ty, v) {
            (_, None | Some(Value::Null)) => return,
            (Ty::Str, Some(v)) => (v.is_string(), "a string"),
            (Ty::Num, Some(v)) => (v.is_number(), "a number"),
            (Ty::Bool, Some(v)) => (v.is_boolean(), "a bool"),
        };
        if !ok && let Some(v) = v {
            self.fail(field, expected, v);
        }
    }

    fn object<'v>(
        &mut self,
        field: &str,
        v: Option<&'v Value>,
    ) -> Option<&'v serde_json::Map<String, Value>> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.fail(field.to_owned(), "an object", other);
                None
            }
        }
    }

    fn array<'v>(&mut self, field: &str, v: Option<&'v Value>) -> &'v [Value] {
        match v {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.fail(field.to_owned(), "an array", other);
                &[]
            }
        }
    }

    fn record(&mut self, o: &serde_json::Map<String, Value>) {
        for f in [
            "schema",
            "session_id",
            "agent",
            "prompt_version",
            "model",
            "provider",
            "started_at",
            "ended_at",
            "status",
            "error_type",
        ] {
            self.scalar(f.into(), Ty::Str, o.get(f));
        }
        for f in ["duration_ms", "turns", "output_chars", "context_tokens_max"] {
            self.scalar(f.into(), Ty::Num, o.get(f));
        }
        if let Some(u) = self.object("usage", o.get("usage")) {
            for f in [
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "reasoning_output_tokens",
            ] {
                self.scalar(format!("usage.{f}"), Ty::Num, u.get(f));
            }
        }
        for (i, t) in self
            .array("tool_calls", o.get("tool_calls"))
            .iter()
            .enumerate()
        {
            if let Some(t) = self.object(&format!("tool_calls[{i}]"), Some(t)) {
                self.scalar(format!("tool_calls[{i}].name"), Ty::Str, t.get("name"));
                self.scalar(format!("tool_calls[{i}].status"), Ty::Str, t.get("status"));
                self.scalar(
                    format!("tool_calls[{i}].duration_ms"),
                    Ty::Num,
                    t.get("duration_ms"),
                );
            }
        }
        if let Some(f) = self.object("fallback", o.get("fallback")) {
            self.scalar("fallback.triggered".into(), Ty::Bool, f.get("triggered"));
            self.scalar("fallback.kind".into(), Ty::Str, f.get("kind"));
            self.scalar("fallback.reason".into(), Ty::Str, f.get("reason"));
        }
        for (i, p) in self.array("pii", o.get("pii")).iter().enumerate() {
            if let Some(p) = self.object(&format!("pii[{i}]"), Some(p)) {
                for f in ["type", "handling", "destination"] {
                    self.scalar(format!("pii[{i}].{f}"), Ty::Str, p.get(f));
                }
            }
        }
        if let Some(q) = self.object("quality", o.get("quality")) {
            self.scalar("quality.score".into(), Ty::Num, q.get("score"));
            self.scalar("quality.resolved".into(), Ty::Bool, q.get("resolved"));
            self.scalar("quality.refusal".into(), Ty::Bool, q.get("refusal"));
        }
        if let Some(a) = self.object("attributes", o.get("attributes")) {
            for (k, v) in a {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    self.fail(format!("attributes.{k}"), "a string, number or bool", v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/regressions/record/`): a huge `duration_ms` after `started_at`
    /// overflowed the event time (a panic with overflow checks, a wrapped time without), and a
    /// merely large one made an event time past year 9999 that no timestamp can name.
    #[test]
    fn a_duration_that_ends_after_year_9999_is_rejected() {
        let decoder = Decoder::new(Arc::new(Catalog::embedded()));
        for d in ["1111111111111111111811111111500", "1e15", "253402300799999"] {
            let line = format!(
                r#"{{"session_id":"s","agent":"a","prompt_version":"p","model":"m","started_at":"2026-11-01T00:00:00Z","duration_ms":{d},"status":"success"}}"#
            );
            let e = decoder.decode(line.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "invalid_value", "{d}: {e}");
            assert!(e.to_string().contains("`duration_ms`"), "{e}");
        }
        let fits = r#"{"session_id":"s","agent":"a","prompt_version":"p","model":"m","started_at":"9999-12-31T23:59:59Z","duration_ms":999,"status":"success"}"#;
        assert_eq!(
            decoder.decode(fits.as_bytes()).unwrap().event_time,
            MAX_EPOCH_MS
        );
    }

    /// Found by fuzzing: `ended_at` a leap second after the end of 9999 (see `time`).
    #[test]
    fn an_ended_at_past_year_9999_is_a_bad_timestamp() {
        let decoder = Decoder::new(Arc::new(Catalog::embedded()));
        let line = br#"{"session_id": "s1", "agent": "a", "prompt_version": "p", "model": "m-2026-09", "ended_at": "9999-12-31T23:59:60.999Z", "status": "success"}"#;
        assert_eq!(decoder.decode(line).unwrap_err().code(), "bad_timestamp");
    }

    #[test]
    fn schema_versions() {
        assert!(is_v1("agent-session/v1"));
        assert!(is_v1("agent-session/v1.3"));
        assert!(!is_v1("agent-session/v1."));
        assert!(!is_v1("agent-session/v10"));
        assert!(!is_v1("agent-session/v2"));
    }
}
