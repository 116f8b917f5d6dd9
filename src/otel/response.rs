//! What the OTLP/HTTP receiver answers, in the encoding of the request (OTLP/HTTP spec,
//! "OTLP/HTTP Response"): an `ExportTraceServiceResponse` on success — with `partial_success`
//! when some spans were dead-lettered — and a `google.rpc.Status` for a 4xx/5xx.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::Encoding;

/// The `ExportTraceServiceResponse` of an accepted request: empty when every span was
/// accepted, else `partial_success` with the number of spans rejected and why.
pub fn export_response(rejected_spans: i64, message: &str, encoding: Encoding) -> Vec<u8> {
    let partial = (rejected_spans > 0 || !message.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans,
        error_message: message.to_owned(),
    });
    match encoding {
        Encoding::Protobuf => ExportTraceServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        // The protobuf JSON mapping: lowerCamelCase names, int64 as a string.
        Encoding::Json => {
            let body = match partial {
                Some(p) => serde_json::json!({ "partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            serde_json::to_vec(&body).expect("a response serializes")
        }
    }
}

/// `google.rpc.Status` (the body of an OTLP/HTTP error response): only `code` and `message`.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC status codes the receiver's errors map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// 400: the body cannot be decoded.
    InvalidArgument = 3,
    /// 429/503: retry later.
    Unavailable = 14,
    /// 413 and 415.
    FailedPrecondition = 9,
    /// 401.
    Unauthenticated = 16,
}

/// The body of an error response.
pub fn status_body(code: StatusCode, message: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => Status {
            code: code as i32,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&serde_json::json!({
            "code": code as i32,
            "message": message,
        }))
        .expect("a status serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written by hand from the proto definitions (field 1, length-delimited, holding
    /// field 1 varint 3 and field 2 string "x").
    #[test]
    fn a_partial_success_encodes_as_the_proto_says() {
        assert_eq!(
            export_response(3, "x", Encoding::Protobuf),
            vec![0x0a, 0x05, 0x08, 0x03, 0x12, 0x01, b'x']
        );
        assert!(export_response(0, "", Encoding::Protobuf).is_empty());
        assert_eq!(export_response(0, "", Encoding::Json), b"{}");
        let v: serde_json::Value =
            serde_json::from_slice(&export_response(2, "two", Encoding::Json)).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
        assert_eq!(
            status_body(StatusCode::InvalidArgument, "ab", Encoding::Protobuf),
            vec![0x08, 0x03, 0x12, 0x02, b'a', b'b']
        );
    }
}
