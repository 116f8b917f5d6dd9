//! A [`Session`] as a contract-v1 record: the inverse of [`super::decode`]. Pure.
//!
//! Derived values (cost from the catalog, duration from the timestamps) are left out, as a
//! producer would have: decoding the line derives them again, so `decode(encode(s)) == s`.
//! Attributes keep their order and repeated names (a JSON map would sort and merge them), so
//! they are written key by key, each key and value through serde_json.

use serde_json::{Map, Value, json};

use crate::session::Session;
use crate::time::format_rfc3339_ms;

/// Which fields a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStyle {
    /// Only the fields that have a value: what a person reads (`--emit-sessions`, the dead
    /// letter of an assembled session).
    Sparse,
    /// Every optional object and list, empty or `null` when unset: the shape the fuzz target
    /// round-trips, so the decoder's handling of explicit empties is exercised too.
    Full,
}

/// The session as one contract-v1 record (one JSON line, no newline).
pub fn encode_record(s: &Session, style: RecordStyle) -> String {
    let full = style == RecordStyle::Full;
    let mut o = Map::new();
    for (k, v) in [
        ("session_id", &s.session_id),
        ("agent", &s.agent),
        ("prompt_version", &s.prompt_version),
        ("model", &s.model),
    ] {
        o.insert(k.into(), v.as_str().into());
    }
    if let Some(p) = &s.provider {
        o.insert("provider".into(), p.as_str().into());
    }
    if let Some(start) = s.started_at {
        o.insert("started_at".into(), format_rfc3339_ms(start).into());
    }
    o.insert("ended_at".into(), format_rfc3339_ms(s.event_time).into());
    if let (Some(d), false) = (s.duration_ms, s.duration_derived) {
        o.insert("duration_ms".into(), d.into());
    }
    o.insert("status".into(), s.status.as_str().into());
    if let Some(e) = &s.error_type {
        o.insert("error_type".into(), e.as_str().into());
    }
    let mut usage = Map::new();
    for (k, v) in [
        ("input_tokens", s.input_tokens),
        ("output_tokens", s.output_tokens),
        ("cache_read_input_tokens", s.cache_read_input_tokens),
        ("cache_creation_input_tokens", s.cache_creation_input_tokens),
        ("reasoning_output_tokens", s.reasoning_output_tokens),
    ] {
        if let Some(n) = v {
            usage.insert(k.into(), n.into());
        }
    }
    if let (Some(c), false) = (s.cost_usd, s.cost_derived) {
        usage.insert("cost_usd".into(), c.into());
    }
    if full || !usage.is_empty() {
        o.insert("usage".into(), Value::Object(usage));
    }
    for (k, v) in [
        ("turns", s.turns),
        ("output_chars", s.output_chars),
        ("context_tokens_max", s.context_tokens_max),
    ] {
        if let Some(n) = v {
            o.insert(k.into(), n.into());
        }
    }
    if full || !s.tool_calls.is_empty() {
        let tools: Vec<Value> = s
            .tool_calls
            .iter()
            .map(|t| json!({"name": t.name, "status": t.status, "duration_ms": t.duration_ms}))
            .collect();
        o.insert("tool_calls".into(), tools.into());
    }
    if let Some(f) = &s.fallback {
        o.insert(
            "fallback".into(),
            json!({"triggered": f.triggered, "kind": f.kind, "reason": f.reason}),
        );
    }
    if full || !s.pii.is_empty() {
        let pii: Vec<Value> = s
            .pii
            .iter()
            .map(|p| match (full, &p.destination) {
                (false, None) => json!({"type": p.kind, "handling": p.handling}),
                (_, d) => json!({"type": p.kind, "handling": p.handling, "destination": d}),
            })
            .collect();
        o.insert("pii".into(), pii.into());
    }
    let q = &s.quality;
    if full {
        o.insert(
            "quality".into(),
            json!({"score": q.score, "resolved": q.resolved, "refusal": q.refusal}),
        );
    } else if q.score.is_some() || q.resolved.is_some() || q.refusal.is_some() {
        let mut quality = Map::new();
        for (k, v) in [
            ("score", q.score.map(Value::from)),
            ("resolved", q.resolved.map(Value::from)),
            ("refusal", q.refusal.map(Value::from)),
        ] {
            if let Some(v) = v {
                quality.insert(k.into(), v);
            }
        }
        o.insert("quality".into(), Value::Object(quality));
    }
    let mut text = Value::Object(o).to_string();
    if !full && s.attributes.is_empty() {
        return text;
    }
    text.pop();
    text.push_str(",\"attributes\":{");
    for (i, (k, v)) in s.attributes.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::from(k.as_str()).to_string());
        text.push(':');
        text.push_str(&serde_json::to_string(v).expect("attribute values serialize"));
    }
    text.push_str("}}");
    text
}
