//! THROWAWAY STUB of the interface of issue 12 (branch `otel` owns this module); deleted
//! before `git merge otel`.
#![allow(dead_code, unused_variables)]

use serde::{Deserialize, Serialize};

use crate::session::Session;

pub mod response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanReject {
    #[error("bad protobuf: {detail}")]
    BadProtobuf { detail: String },
    #[error("bad json: {detail}")]
    BadJson { detail: String },
}

impl SpanReject {
    pub fn code(&self) -> &'static str {
        match self {
            SpanReject::BadProtobuf { .. } => "bad_protobuf",
            SpanReject::BadJson { .. } => "bad_json",
        }
    }
}

pub fn decode_request(bytes: &[u8], encoding: Encoding) -> Result<Vec<Span>, SpanReject> {
    Err(SpanReject::BadProtobuf { detail: "stub".into() })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtelConfig {
    pub grace_ms: i64,
}

pub enum Assembled {
    Session(Box<Session>),
    Rejected { reason: SpanReject, raw: Vec<u8> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssemblerState {}

pub struct Assembler {}

impl Assembler {
    pub fn new(config: &OtelConfig) -> Assembler {
        Assembler {}
    }
    pub fn with_catalog(self, catalog: std::sync::Arc<crate::catalog::Catalog>) -> Assembler {
        self
    }
    pub fn push(&mut self, spans: Vec<Span>, out: &mut Vec<Assembled>) {}
    pub fn advance(&mut self, watermark_ms: i64, out: &mut Vec<Assembled>) {}
    pub fn finish(&mut self, out: &mut Vec<Assembled>) {}
    pub fn open_traces(&self) -> usize {
        0
    }
    pub fn snapshot(&self) -> AssemblerState {
        AssemblerState {}
    }
    pub fn restore(&mut self, state: AssemblerState) {}
}

pub fn session_record_json(session: &Session) -> Vec<u8> {
    Vec::new()
}

pub fn encode_request(sessions: &[Session], encoding: Encoding) -> Vec<u8> {
    Vec::new()
}
