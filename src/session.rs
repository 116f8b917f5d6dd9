//! One finished agent session, as contract `agent-session/v1` defines it, after decoding.
//!
//! A [`Session`] is always valid: the decoder ([`crate::ingest::decode`]) is the only place that
//! builds one from bytes. Derived values (cost from the model catalog, duration from the
//! timestamps) are marked as derived, never passed off as reported.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Event time of a session is when it ended.
pub type EpochMs = i64;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Error,
    Timeout,
    Abandoned,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Success,
        Status::Error,
        Status::Timeout,
        Status::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Index into per-status counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Outcome of one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Ok,
    Error,
    Denied,
}

impl ToolStatus {
    pub fn parse(s: &str) -> Option<ToolStatus> {
        match s {
            "ok" => Some(ToolStatus::Ok),
            "error" => Some(ToolStatus::Error),
            "denied" => Some(ToolStatus::Denied),
            _ => None,
        }
    }
}

/// How personal data in the agent's context was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiHandling {
    Redacted,
    Masked,
    Blocked,
    PassedThrough,
}

impl PiiHandling {
    pub const ALL: [PiiHandling; 4] = [
        PiiHandling::Redacted,
        PiiHandling::Masked,
        PiiHandling::Blocked,
        PiiHandling::PassedThrough,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PiiHandling::Redacted => "redacted",
            PiiHandling::Masked => "masked",
            PiiHandling::Blocked => "blocked",
            PiiHandling::PassedThrough => "passed_through",
        }
    }

    pub fn parse(s: &str) -> Option<PiiHandling> {
        PiiHandling::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// One tool call, in the order the agent made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub status: Option<ToolStatus>,
    pub duration_ms: Option<f64>,
}

/// The degradation a session took, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    pub triggered: bool,
    pub kind: Option<String>,
    pub reason: Option<String>,
}

/// Personal data that entered the agent's context. Only its type, handling and destination
/// are known to slawatch — never the data itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pii {
    pub kind: String,
    pub handling: PiiHandling,
    pub destination: Option<String>,
}

/// Evaluator or user-feedback signals.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quality {
    pub score: Option<f64>,
    pub resolved: Option<bool>,
    pub refusal: Option<bool>,
}

/// A value of a free segmentation attribute: in JSON the plain value (`"web"`, `3`, `true`),
/// in binary forms (see [`crate::ingest::binary`]) a tagged variant, since a format that does
/// not describe itself cannot tell the three apart.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// [`AttrValue`] as text formats carry it.
#[derive(Deserialize)]
#[serde(untagged)]
enum PlainAttr {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// [`AttrValue`] as binary formats carry it (variant index, then the value).
#[derive(Deserialize)]
#[serde(rename = "AttrValue")]
enum TaggedAttr {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Serialize for AttrValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self, s.is_human_readable()) {
            (AttrValue::Str(x), true) => s.serialize_str(x),
            (AttrValue::Num(n), true) => s.serialize_f64(*n),
            (AttrValue::Bool(b), true) => s.serialize_bool(*b),
            (AttrValue::Str(x), false) => s.serialize_newtype_variant("AttrValue", 0, "Str", x),
            (AttrValue::Num(n), false) => s.serialize_newtype_variant("AttrValue", 1, "Num", n),
            (AttrValue::Bool(b), false) => s.serialize_newtype_variant("AttrValue", 2, "Bool", b),
        }
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AttrValue, D::Error> {
        Ok(if d.is_human_readable() {
            match PlainAttr::deserialize(d)? {
                PlainAttr::Str(x) => AttrValue::Str(x),
                PlainAttr::Num(n) => AttrValue::Num(n),
                PlainAttr::Bool(b) => AttrValue::Bool(b),
            }
        } else {
            match TaggedAttr::deserialize(d)? {
                TaggedAttr::Str(x) => AttrValue::Str(x),
                TaggedAttr::Num(n) => AttrValue::Num(n),
                TaggedAttr::Bool(b) => AttrValue::Bool(b),
            }
        })
    }
}

impl AttrValue {
    /// The value as a segment label.
    pub fn label(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Num(n) => format!("{n}"),
            AttrValue::Bool(b) => b.to_string(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// A decoded, valid session record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    pub provider: Option<String>,
    /// When the session started, if reported or derivable.
    pub started_at: Option<EpochMs>,
    /// Event time: `ended_at`, or `started_at + duration_ms`.
    pub event_time: EpochMs,
    /// Wall time of the session, reported or derived from the two timestamps; unknown when
    /// only `ended_at` was given.
    pub duration_ms: Option<f64>,
    /// True when `duration_ms` was computed from the two timestamps.
    pub duration_derived: bool,
    pub status: Status,
    pub error_type: Option<String>,
    pub turns: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Input tokens served from a provider-managed prompt cache, all calls summed; part of
    /// `input_tokens` (as in the GenAI conventions), never added to it.
    pub cache_read_input_tokens: Option<u64>,
    /// Input tokens written to a provider-managed prompt cache; part of `input_tokens`.
    pub cache_creation_input_tokens: Option<u64>,
    /// Output tokens the model spent reasoning; part of `output_tokens`.
    pub reasoning_output_tokens: Option<u64>,
    /// Reported cost, or the catalog's estimate (see `cost_derived`), or `None` when the model
    /// is not in the catalog and no cost was reported.
    pub cost_usd: Option<f64>,
    pub cost_derived: bool,
    pub tool_calls: Vec<ToolCall>,
    pub fallback: Option<Fallback>,
    pub pii: Vec<Pii>,
    pub quality: Quality,
    pub output_chars: Option<u64>,
    pub context_tokens_max: Option<u64>,
    /// `context_tokens_max / context_window` of the model, from the catalog.
    pub context_utilisation: Option<f64>,
    pub attributes: Vec<(String, AttrValue)>,
}

impl Session {
    /// The value of `attributes.<name>`.
    pub fn attribute(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether the session triggered a fallback.
    pub fn fell_back(&self) -> bool {
        self.fallback.as_ref().is_some_and(|f| f.triggered)
    }

    /// The longest run of one tool called back to back, with its name.
    pub fn longest_tool_run(&self) -> Option<(&str, u32)> {
        let mut best: Option<(&str, u32)> = None;
        let mut run = 0u32;
        for (i, call) in self.tool_calls.iter().enumerate() {
            if i > 0 && self.tool_calls[i - 1].name == call.name {
                run += 1;
            } else {
                run = 1;
            }
            if best.is_none_or(|(_, b)| run > b) {
                best = Some((&call.name, run));
            }
        }
        best
    }
}
