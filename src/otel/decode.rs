//! OTLP `ExportTraceServiceRequest` bytes ⇄ [`Span`]s, through the official protobuf messages
//! (`opentelemetry-proto`; their serde form is the OTLP JSON encoding).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use prost::Message;

use super::{Encoding, Span, SpanEvent, SpanReject, SpanStatus, Value, hex};

/// Decodes one `ExportTraceServiceRequest` into its spans, in the order they appear.
pub fn decode_request(bytes: &[u8], encoding: Encoding) -> Result<Vec<Span>, SpanReject> {
    let request = match encoding {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(bytes).map_err(|e| SpanReject::BadProtobuf {
                detail: e.to_string(),
            })?
        }
        Encoding::Json => {
            serde_json::from_slice::<ExportTraceServiceRequest>(bytes).map_err(|e| {
                SpanReject::BadJson {
                    detail: e.to_string(),
                }
            })?
        }
    };
    let mut spans = Vec::new();
    for rs in request.resource_spans {
        let service_name = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
        });
        for ss in rs.scope_spans {
            let schema_url = if ss.schema_url.is_empty() {
                rs.schema_url.clone()
            } else {
                ss.schema_url
            };
            for s in ss.spans {
                spans.push(Span {
                    trace_id: id(&s.trace_id, "traceId", &s.name)?,
                    span_id: id(&s.span_id, "spanId", &s.name)?,
                    parent_span_id: if s.parent_span_id.is_empty() {
                        None
                    } else {
                        Some(id(&s.parent_span_id, "parentSpanId", &s.name)?)
                    },
                    kind: s.kind,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano.max(s.start_time_unix_nano),
                    status: match s.status.as_ref().map(|st| st.code) {
                        Some(c) if c == status::StatusCode::Ok as i32 => SpanStatus::Ok,
                        Some(c) if c == status::StatusCode::Error as i32 => SpanStatus::Error,
                        _ => SpanStatus::Unset,
                    },
                    status_message: s.status.map(|st| st.message).unwrap_or_default(),
                    attributes: attributes(s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| SpanEvent {
                            name: e.name,
                            time_unix_nano: e.time_unix_nano,
                            attributes: attributes(e.attributes),
                        })
                        .collect(),
                    service_name: service_name.clone(),
                    schema_url: schema_url.clone(),
                    name: s.name,
                });
            }
        }
    }
    Ok(spans)
}

/// A trace or span id: `N` bytes, not all zero.
fn id<const N: usize>(
    bytes: &[u8],
    field: &'static str,
    span: &str,
) -> Result<[u8; N], SpanReject> {
    match <[u8; N]>::try_from(bytes) {
        Ok(a) if a.iter().any(|&b| b != 0) => Ok(a),
        _ => Err(SpanReject::BadId {
            span: span.to_owned(),
            field,
            expected: N,
            found: bytes.len(),
        }),
    }
}

fn attributes(kvs: Vec<KeyValue>) -> Vec<(String, Value)> {
    kvs.into_iter()
        .map(|kv| {
            let v = match kv.value.and_then(|v| v.value) {
                Some(any_value::Value::StringValue(s)) => Value::Str(s),
                Some(any_value::Value::IntValue(i)) => Value::Int(i),
                Some(any_value::Value::DoubleValue(d)) => Value::Double(d),
                Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
                Some(any_value::Value::ArrayValue(_)) => Value::Other("array".into()),
                Some(any_value::Value::KvlistValue(_)) => Value::Other("kvlist".into()),
                Some(any_value::Value::BytesValue(_)) => Value::Other("bytes".into()),
                Some(_) => Value::Other("string_index".into()),
                None => Value::Other("empty".into()),
            };
            (kv.key, v)
        })
        .collect()
}

fn key_value(key: &str, value: &Value) -> Option<KeyValue> {
    let v = match value {
        Value::Str(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Double(d) => any_value::Value::DoubleValue(*d),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        // What was not kept cannot be written back.
        Value::Other(_) => return None,
    };
    Some(KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    })
}

fn key_values(attributes: &[(String, Value)]) -> Vec<KeyValue> {
    attributes
        .iter()
        .filter_map(|(k, v)| key_value(k, v))
        .collect()
}

/// The spans as one `ExportTraceServiceRequest`: one resource per `service.name`, one scope per
/// schema URL (slawatch's own scope name).
pub(super) fn spans_to_request(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut by_resource: BTreeMap<(Option<&str>, &str), Vec<_>> = BTreeMap::new();
    for s in spans {
        by_resource
            .entry((s.service_name.as_deref(), s.schema_url.as_str()))
            .or_default()
            .push(to_proto(s));
    }
    ExportTraceServiceRequest {
        resource_spans: by_resource
            .into_iter()
            .map(|((service, schema_url), spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: service
                        .map(|n| key_values(&[("service.name".to_owned(), Value::Str(n.into()))]))
                        .unwrap_or_default(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "slawatch".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: schema_url.to_owned(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn to_proto(s: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.clone(),
        kind: s.kind,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.end_unix_nano,
        attributes: key_values(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        status: match s.status {
            SpanStatus::Unset if s.status_message.is_empty() => None,
            st => Some(Status {
                message: s.status_message.clone(),
                code: match st {
                    SpanStatus::Unset => status::StatusCode::Unset,
                    SpanStatus::Ok => status::StatusCode::Ok,
                    SpanStatus::Error => status::StatusCode::Error,
                } as i32,
            }),
        },
        ..Default::default()
    }
}

/// Spans in either encoding of one `ExportTraceServiceRequest`.
pub(super) fn encode_spans(spans: &[Span], encoding: Encoding) -> Vec<u8> {
    let request = spans_to_request(spans);
    match encoding {
        Encoding::Protobuf => request.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&request).expect("a request serializes"),
    }
}

/// Spans as one OTLP JSON `ExportTraceServiceRequest`: what a dead letter keeps, readable.
pub fn spans_to_otlp_json(spans: &[Span]) -> Vec<u8> {
    encode_spans(spans, Encoding::Json)
}

/// Trace ids of spans, for messages.
pub(super) fn trace_label(trace_id: &[u8; 16]) -> String {
    hex(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the OTLP specification (`opentelemetry-proto/examples/trace.json`), as
    /// published: uppercase hex ids, 64-bit times as strings, the kind as an integer.
    const SPEC_EXAMPLE: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          {"key": "my.span.attr", "value": {"stringValue": "some value"}},
          {"key": "an.int", "value": {"intValue": "42"}},
          {"key": "a.number.int", "value": {"intValue": 7}},
          {"key": "a.double", "value": {"doubleValue": 0.5}},
          {"key": "a.bool", "value": {"boolValue": true}}
        ]
      }]
    }]
  }]
}"#;

    #[test]
    fn decodes_the_otlp_json_example_of_the_specification() {
        let spans = decode_request(SPEC_EXAMPLE.as_bytes(), Encoding::Json).unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(hex(&s.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex(&s.span_id), "eee19b7ec3c1b174");
        assert_eq!(
            s.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("eee19b7ec3c1b173")
        );
        assert_eq!(s.start_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(s.end_ms(), 1_544_712_661_000);
        assert_eq!(s.kind, 2);
        assert_eq!(s.service_name.as_deref(), Some("my.service"));
        assert_eq!(
            s.attributes,
            vec![
                ("my.span.attr".into(), Value::Str("some value".into())),
                ("an.int".into(), Value::Int(42)),
                ("a.number.int".into(), Value::Int(7)),
                ("a.double".into(), Value::Double(0.5)),
                ("a.bool".into(), Value::Bool(true)),
            ]
        );
    }

    #[test]
    fn json_and_protobuf_round_trip_through_the_official_messages() {
        let spans = decode_request(SPEC_EXAMPLE.as_bytes(), Encoding::Json).unwrap();
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let bytes = encode_spans(&spans, enc);
            assert_eq!(decode_request(&bytes, enc).unwrap(), spans, "{enc:?}");
        }
        // The JSON written is the OTLP JSON encoding: lowercase hex ids, camelCase, times and
        // ints as strings, the kind as a number.
        let json: serde_json::Value =
            serde_json::from_slice(&encode_spans(&spans, Encoding::Json)).unwrap();
        let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["attributes"][1]["value"]["intValue"], "42");
    }

    #[test]
    fn broken_bytes_and_bad_ids_are_rejected_with_reasons() {
        let err = decode_request(b"{\"resourceSpans\": [", Encoding::Json).unwrap_err();
        assert_eq!(err.code(), "bad_json");
        let err = decode_request(b"\xff\xff\xff\xff", Encoding::Protobuf).unwrap_err();
        assert_eq!(err.code(), "bad_protobuf");
        let short = SPEC_EXAMPLE.replace("5B8EFFF798038103D269B633813FC60C", "5B8E");
        let err = decode_request(short.as_bytes(), Encoding::Json).unwrap_err();
        assert_eq!(err.code(), "bad_span_id");
    }
}
