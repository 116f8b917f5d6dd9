//! `POST /v1/traces`: the OTLP/HTTP trace receiver (OTLP spec, "OTLP/HTTP").
//!
//! - `Content-Type: application/x-protobuf` or `application/json` (anything else: 415);
//!   `Content-Encoding: gzip` or none (anything else: 415); bodies above the receiver's limit,
//!   compressed or once decompressed: 413.
//! - The body is decoded off the async threads; an undecodable one is dead-lettered with its
//!   reason (by the loop, which owns the dead letters) and answered 400 with a
//!   `google.rpc.Status` in the request's encoding.
//! - Decoded spans go to the loop that owns the pipeline over a bounded channel; when it is
//!   full the loop is behind and the answer is 503 with `Retry-After` (the exporter retries).
//! - 200 carries an `ExportTraceServiceResponse`, with `partial_success` (the number of spans
//!   dead-lettered and why) when the loop rejected some at once.
//!
//! The route sits behind the same token and request-rate limit as `/v1`.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::otel::response::{StatusCode as Grpc, export_response, status_body};
use crate::otel::{Encoding, SpanReject};
use crate::service::spans::{Batch, Refused, SpanIntake, await_reply};

/// How long a request waits for the loop to take its spans before it is answered without a
/// `partial_success` (the spans are queued and will be taken).
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// Seconds a client is told to wait when the loop is behind.
const RETRY_AFTER_S: u64 = 1;

/// The media type names of the two encodings.
fn media_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    }
}

fn answer(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, media_type(encoding))], body).into_response()
}

fn error(status: StatusCode, code: Grpc, encoding: Encoding, message: &str) -> Response {
    let mut r = answer(status, encoding, status_body(code, message, encoding));
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    r
}

/// The encoding a `Content-Type` names, parameters ignored.
pub fn encoding_of(content_type: Option<&str>) -> Option<Encoding> {
    let essence = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// A `Content-Encoding` the receiver does not speak.
    Unsupported(String),
    /// Larger than the limit once decompressed.
    TooLarge,
    /// Not valid gzip.
    BadGzip(String),
}

/// The request body, decompressed as `Content-Encoding` says, at most `max` bytes.
pub fn read_body(
    content_encoding: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::BadGzip(e.to_string()))?;
            if out.len() > max {
                return Err(BodyError::TooLarge);
            }
            Ok(out)
        }
        Some(other) => Err(BodyError::Unsupported(other.to_owned())),
    }
}

pub async fn traces(State(st): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(intake) = st.spans.clone() else {
        return super::Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            "this process does not receive spans: start `slawatch run` with --otlp-http",
        )
        .into_response();
    };
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let content_type = text(header::CONTENT_TYPE);
    let Some(encoding) = encoding_of(content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Grpc::FailedPrecondition,
            Encoding::Json,
            &format!(
                "unsupported Content-Type {:?}: send application/x-protobuf or application/json",
                content_type.unwrap_or("")
            ),
        );
    };
    let content_encoding = text(header::CONTENT_ENCODING).map(str::to_owned);
    tokio::task::spawn_blocking(move || receive(&intake, encoding, content_encoding, &body))
        .await
        .unwrap_or_else(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                Grpc::Unavailable,
                encoding,
                &format!("the receiver failed: {e}"),
            )
        })
}

/// Everything after the headers, on a blocking thread: decompress, decode, hand over, wait.
fn receive(
    intake: &SpanIntake,
    encoding: Encoding,
    content_encoding: Option<String>,
    body: &[u8],
) -> Response {
    let bytes = match read_body(content_encoding.as_deref(), body, intake.max_body) {
        Ok(b) => b,
        Err(BodyError::Unsupported(e)) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Grpc::FailedPrecondition,
                encoding,
                &format!("unsupported Content-Encoding `{e}`: send gzip or none"),
            );
        }
        Err(BodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Grpc::FailedPrecondition,
                encoding,
                &format!(
                    "the decompressed body is larger than the receiver's limit of {} bytes \
                     (--otlp-max-body)",
                    intake.max_body
                ),
            );
        }
        Err(BodyError::BadGzip(e)) => {
            // Not the client's spans at all: nothing to dead-letter but the bytes as sent.
            let reason = match encoding {
                Encoding::Protobuf => SpanReject::BadProtobuf {
                    detail: format!("not gzip: {e}"),
                },
                Encoding::Json => SpanReject::BadJson {
                    detail: format!("not gzip: {e}"),
                },
            };
            return rejected(intake, encoding, reason, body.to_vec());
        }
    };
    match crate::otel::decode_request(&bytes, encoding) {
        Err(reason) => rejected(intake, encoding, reason, bytes),
        Ok(spans) => match intake.offer(Batch::Spans(spans)) {
            Ok(reply) => match await_reply(&reply, REPLY_WAIT) {
                Ok(pushed) => answer(
                    StatusCode::OK,
                    encoding,
                    export_response(pushed.rejected_spans, &pushed.message, encoding),
                ),
                // Queued; the loop takes it in turn.
                Err(RecvTimeoutError::Timeout) => {
                    answer(StatusCode::OK, encoding, export_response(0, "", encoding))
                }
                Err(RecvTimeoutError::Disconnected) => unavailable(Refused::Closed, encoding),
            },
            Err(refused) => unavailable(refused, encoding),
        },
    }
}

/// An undecodable body: dead-lettered by the loop, 400 to the client.
fn rejected(intake: &SpanIntake, encoding: Encoding, reason: SpanReject, raw: Vec<u8>) -> Response {
    let message = format!("{} ({})", reason, reason.code());
    match intake.offer(Batch::Rejected { reason, raw }) {
        // Counted and dead-lettered by the loop; no need to wait for it.
        Ok(_) => error(
            StatusCode::BAD_REQUEST,
            Grpc::InvalidArgument,
            encoding,
            &message,
        ),
        Err(refused) => unavailable(refused, encoding),
    }
}

fn unavailable(refused: Refused, encoding: Encoding) -> Response {
    let message = match refused {
        Refused::Busy => "slawatch is behind; retry later",
        Refused::Closed => "slawatch no longer takes spans (its input has ended)",
    };
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        Grpc::Unavailable,
        encoding,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types_name_encodings() {
        assert_eq!(
            encoding_of(Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            encoding_of(Some("Application/JSON; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(encoding_of(Some("text/plain")), None);
        assert_eq!(encoding_of(None), None);
    }

    #[test]
    fn gzip_bodies_are_bounded_once_decompressed() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 1000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(read_body(Some("gzip"), &gz, 1000).unwrap(), vec![7u8; 1000]);
        assert_eq!(read_body(Some("gzip"), &gz, 999), Err(BodyError::TooLarge));
        assert!(matches!(
            read_body(Some("gzip"), b"not gzip", 1000),
            Err(BodyError::BadGzip(_))
        ));
        assert_eq!(
            read_body(Some("br"), b"x", 10),
            Err(BodyError::Unsupported("br".into()))
        );
        assert_eq!(read_body(None, b"abc", 10).unwrap(), b"abc");
    }
}
