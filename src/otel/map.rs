//! One trace's spans → one [`Session`], following the OpenTelemetry GenAI semantic conventions
//! (`invoke_agent`, `chat`/`text_completion`/`generate_content`, `execute_tool`, `gen_ai.*`)
//! and the configurable [`Mapping`] for what they leave open. `docs/otel.md` tables every field.
//!
//! Attributes a newer convention version adds are ignored; only the fields that matter are read,
//! so a span claiming a newer `schema_url` is accepted when those are present.

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::session::{
    AttrValue, Fallback, Pii, PiiHandling, Quality, Session, Status, ToolCall, ToolStatus,
};

use super::config::{GroupBy, Mapping, OtelConfig};
use super::decode::trace_label;
use super::{Span, SpanReject, SpanStatus, Value, attribute};

/// `gen_ai.operation.name` of an agent invocation: the root of a session.
pub const INVOKE_AGENT: &str = "invoke_agent";
/// Operation names of model calls.
pub const MODEL_CALLS: [&str; 3] = ["chat", "text_completion", "generate_content"];
/// Operation name of a tool call.
pub const EXECUTE_TOOL: &str = "execute_tool";
/// The attribute of a conversation (`groupBy: conversation`).
pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// The span event of an evaluation result.
pub const EVALUATION_RESULT: &str = "gen_ai.evaluation.result";

/// Cache and reasoning token counts of a model call: the current convention's attribute first,
/// then the names older conventions and common instrumentations used (OpenLLMetry, Sentry,
/// OpenInference). The first present on a span is its count; names are never added together.
pub const CACHE_READ_INPUT_TOKENS: [&str; 4] = [
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
    "llm.token_count.prompt_details.cache_read",
];
/// See [`CACHE_READ_INPUT_TOKENS`].
pub const CACHE_CREATION_INPUT_TOKENS: [&str; 4] = [
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
    "llm.token_count.prompt_details.cache_write",
];
/// See [`CACHE_READ_INPUT_TOKENS`].
pub const REASONING_OUTPUT_TOKENS: [&str; 4] = [
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.output_tokens.reasoning",
    "llm.token_count.completion_details.reasoning",
];

/// Whether the span is an agent invocation.
pub fn is_root(span: &Span) -> bool {
    span.operation() == INVOKE_AGENT
}

/// The outermost `invoke_agent` span of each trace among `spans` (earliest start, then
/// longest), in trace order: one per agent invocation, a conversation's turns.
fn turn_roots(spans: &[Span]) -> Vec<&Span> {
    let mut roots: BTreeMap<[u8; 16], &Span> = BTreeMap::new();
    for s in spans.iter().filter(|s| is_root(s)) {
        let outer = |x: &Span| (x.start_unix_nano, u64::MAX - x.end_unix_nano);
        roots
            .entry(s.trace_id)
            .and_modify(|r| {
                if outer(s) < outer(r) {
                    *r = s;
                }
            })
            .or_insert(s);
    }
    roots.into_values().collect()
}

/// The conversation of one trace's spans: `gen_ai.conversation.id` of its outermost root,
/// else of its first span (in start order) that has one.
pub fn conversation_id(spans: &[Span]) -> Result<Option<String>, SpanReject> {
    let roots = turn_roots(spans);
    let mut ordered: Vec<&Span> = spans.iter().collect();
    ordered.sort_by_key(|s| (s.start_unix_nano, s.span_id));
    let lookup: Vec<&Span> = roots.iter().copied().chain(ordered).collect();
    let trace = trace_label(&spans[0].trace_id);
    let read = Reader {
        trace: &trace,
        spans: &lookup,
    };
    read.string(CONVERSATION_ID)
}

/// The session of one trace, or of the traces of one conversation. `spans` holds at least one
/// [`is_root`] span. Each trace's outermost root (earliest start, then longest) is one turn;
/// the session's root is the turn that ended last (of a trace, its only one), and the session
/// runs from the first turn's start to the last turn's end.
pub fn session_from_trace(
    spans: &[Span],
    config: &OtelConfig,
    catalog: Option<&Catalog>,
) -> Result<Session, SpanReject> {
    let m = &config.mapping;
    let turns_of = turn_roots(spans);
    let root = *turns_of
        .iter()
        .max_by_key(|s| (s.end_unix_nano, s.start_unix_nano, s.trace_id))
        .ok_or_else(|| SpanReject::OrphanSpan {
            trace: trace_label(&spans[0].trace_id),
            spans: spans.len(),
        })?;
    let first = *turns_of
        .iter()
        .min_by_key(|s| (s.start_unix_nano, s.trace_id))
        .expect("a root");
    let trace = trace_label(&root.trace_id);
    let mut ordered: Vec<&Span> = spans.iter().collect();
    ordered.sort_by_key(|s| (s.start_unix_nano, s.span_id));
    // Root first, then the others in start order: where a mapped attribute is looked up.
    let lookup: Vec<&Span> = std::iter::once(root)
        .chain(ordered.iter().copied().filter(|s| !std::ptr::eq(*s, root)))
        .collect();
    let read = Reader {
        trace: &trace,
        spans: &lookup,
    };

    let session_id = match config.group_by {
        GroupBy::Trace => trace.clone(),
        GroupBy::Conversation => read
            .string(CONVERSATION_ID)?
            .unwrap_or_else(|| trace.clone()),
    };
    let agent = match read.string_on(root, "gen_ai.agent.name")? {
        Some(a) => a,
        None => match read.string_on(root, "gen_ai.agent.id")? {
            Some(a) => a,
            None => root
                .service_name
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SpanReject::MissingAttribute {
                    trace: trace.clone(),
                    what: "gen_ai.agent.name (or gen_ai.agent.id, or resource service.name)".into(),
                })?,
        },
    };

    let model_calls: Vec<&Span> = ordered
        .iter()
        .copied()
        .filter(|s| MODEL_CALLS.contains(&s.operation()))
        .collect();
    // The model that answered: the last model call's response model, else its request model,
    // else the root's.
    let mut model = None;
    for s in model_calls.iter().rev().chain(std::iter::once(&root)) {
        model = match read.string_on(s, "gen_ai.response.model")? {
            Some(v) => Some(v),
            None => read.string_on(s, "gen_ai.request.model")?,
        };
        if model.is_some() {
            break;
        }
    }
    let model = model.ok_or_else(|| SpanReject::MissingAttribute {
        trace: trace.clone(),
        what: "gen_ai.response.model (or gen_ai.request.model) on a model call or the root".into(),
    })?;
    let mut provider = None;
    for s in std::iter::once(&root).chain(model_calls.iter().rev()) {
        provider = match read.string_on(s, "gen_ai.provider.name")? {
            Some(v) => Some(v),
            None => read.string_on(s, "gen_ai.system")?,
        };
        if provider.is_some() {
            break;
        }
    }

    let prompt_version = match read.string(&m.prompt_version)? {
        Some(v) => v,
        None if !m.prompt_version_default.is_empty() => m.prompt_version_default.clone(),
        None => {
            return Err(SpanReject::MissingAttribute {
                trace,
                what: format!("the prompt version attribute `{}`", m.prompt_version),
            });
        }
    };

    let error_type = read.string_on(root, "error.type")?;
    let status = match read.string_on(root, &m.status)? {
        Some(s) => Status::parse(&s).ok_or_else(|| SpanReject::WrongType {
            trace: trace.clone(),
            key: m.status.clone(),
            expected: "one of success, error, timeout, abandoned",
            found: format!("\"{s}\""),
        })?,
        None if root.status == SpanStatus::Error || error_type.is_some() => Status::Error,
        None => Status::Success,
    };

    // Tokens summed over model calls; a sum exists when any call reported the count.
    let mut input_tokens: Option<u64> = None;
    let mut output_tokens: Option<u64> = None;
    let mut cache_read_input_tokens: Option<u64> = None;
    let mut cache_creation_input_tokens: Option<u64> = None;
    let mut reasoning_output_tokens: Option<u64> = None;
    let mut context_from_calls: Option<u64> = None;
    for s in &model_calls {
        for (sum, names) in [
            (&mut cache_read_input_tokens, &CACHE_READ_INPUT_TOKENS),
            (
                &mut cache_creation_input_tokens,
                &CACHE_CREATION_INPUT_TOKENS,
            ),
            (&mut reasoning_output_tokens, &REASONING_OUTPUT_TOKENS),
        ] {
            if let Some(n) = read.first_count_on(s, names)? {
                *sum.get_or_insert(0) += n;
            }
        }
        if let Some(n) = read.count_on(s, "gen_ai.usage.input_tokens")? {
            *input_tokens.get_or_insert(0) += n;
            context_from_calls = Some(context_from_calls.map_or(n, |c| c.max(n)));
        }
        if let Some(n) = read.count_on(s, "gen_ai.usage.output_tokens")? {
            *output_tokens.get_or_insert(0) += n;
        }
    }
    let turns = match read.count_on(root, &m.turns)? {
        Some(t) => Some(t),
        None => Some(model_calls.len() as u64),
    };

    let reported_cost = read.non_negative(&m.cost_usd)?;
    let entry = catalog.and_then(|c| c.lookup(&model));
    let (cost_usd, cost_derived) = match (reported_cost, entry) {
        (Some(c), _) => (Some(c), false),
        (None, Some(e)) if input_tokens.is_some() || output_tokens.is_some() => (
            Some(e.cost_usd(input_tokens.unwrap_or(0), output_tokens.unwrap_or(0))),
            true,
        ),
        _ => (None, false),
    };
    let context_tokens_max = match read.count(&m.context_tokens_max)? {
        Some(c) => Some(c),
        None => context_from_calls,
    };
    let context_utilisation = match (context_tokens_max, entry) {
        (Some(c), Some(e)) if e.context_window > 0 => Some(c as f64 / e.context_window as f64),
        _ => None,
    };

    let mut tool_calls = Vec::new();
    for s in ordered.iter().filter(|s| s.operation() == EXECUTE_TOOL) {
        let name =
            read.string_on(s, "gen_ai.tool.name")?
                .ok_or_else(|| SpanReject::MissingAttribute {
                    trace: trace.clone(),
                    what: format!("gen_ai.tool.name on execute_tool span `{}`", s.name),
                })?;
        let status = match read.string_on(s, &m.tool_status)? {
            Some(t) => ToolStatus::parse(&t).ok_or_else(|| SpanReject::WrongType {
                trace: trace.clone(),
                key: m.tool_status.clone(),
                expected: "one of ok, error, denied",
                found: format!("\"{t}\""),
            })?,
            None if s.status == SpanStatus::Error
                || attribute(&s.attributes, "error.type").is_some() =>
            {
                ToolStatus::Error
            }
            // An instrumentation leaves a successful span's status unset.
            None => ToolStatus::Ok,
        };
        tool_calls.push(ToolCall {
            name,
            status: Some(status),
            duration_ms: Some(duration_ms(s)),
        });
    }

    let fallback = match read.bool(&format!("{}triggered", m.fallback_prefix))? {
        Some(triggered) => Some(Fallback {
            triggered,
            kind: read.string(&format!("{}kind", m.fallback_prefix))?,
            reason: read.string(&format!("{}reason", m.fallback_prefix))?,
        }),
        None => None,
    };

    let mut pii = Vec::new();
    for s in &lookup {
        for e in s.events.iter().filter(|e| e.name == m.pii_event) {
            let field = |key: &str| -> Result<Option<String>, SpanReject> {
                match attribute(&e.attributes, key) {
                    None => Ok(None),
                    Some(Value::Str(v)) => Ok(Some(v.clone())),
                    Some(other) => Err(wrong(
                        &trace,
                        &format!("{}.{key}", m.pii_event),
                        "a string",
                        other,
                    )),
                }
            };
            let kind = field("type")?.ok_or_else(|| SpanReject::MissingAttribute {
                trace: trace.clone(),
                what: format!("`type` on a `{}` event", m.pii_event),
            })?;
            let handling_text = field("handling")?.ok_or_else(|| SpanReject::MissingAttribute {
                trace: trace.clone(),
                what: format!("`handling` on a `{}` event", m.pii_event),
            })?;
            let handling =
                PiiHandling::parse(&handling_text).ok_or_else(|| SpanReject::WrongType {
                    trace: trace.clone(),
                    key: format!("{}.handling", m.pii_event),
                    expected: "one of redacted, masked, blocked, passed_through",
                    found: format!("\"{handling_text}\""),
                })?;
            pii.push(Pii {
                kind,
                handling,
                destination: field("destination")?,
            });
        }
    }

    let mut score = None;
    'events: for s in &lookup {
        for e in s.events.iter().filter(|e| e.name == EVALUATION_RESULT) {
            if !m.quality_evaluation.is_empty() {
                match attribute(&e.attributes, "gen_ai.evaluation.name") {
                    Some(Value::Str(n)) if *n == m.quality_evaluation => {}
                    _ => continue,
                }
            }
            match attribute(&e.attributes, "gen_ai.evaluation.score.value") {
                Some(Value::Double(v)) => score = Some(*v),
                Some(Value::Int(v)) => score = Some(*v as f64),
                Some(other) => {
                    return Err(wrong(
                        &trace,
                        "gen_ai.evaluation.score.value",
                        "a number",
                        other,
                    ));
                }
                None => continue,
            }
            break 'events;
        }
    }
    if score.is_none() {
        score = read.number(&m.quality_score)?;
    }
    let quality = Quality {
        score,
        resolved: read.bool(&m.quality_resolved)?,
        refusal: read.bool(&m.quality_refusal)?,
    };

    let mut attributes = Vec::new();
    if !m.attributes_prefix.is_empty() {
        for (k, v) in &root.attributes {
            let Some(name) = k.strip_prefix(m.attributes_prefix.as_str()) else {
                continue;
            };
            let value = match v {
                Value::Str(s) => AttrValue::Str(s.clone()),
                Value::Int(i) => AttrValue::Num(*i as f64),
                Value::Double(d) => AttrValue::Num(*d),
                Value::Bool(b) => AttrValue::Bool(*b),
                Value::Other(_) => return Err(wrong(&trace, k, "a string, number or bool", v)),
            };
            attributes.push((name.to_owned(), value));
        }
    }

    Ok(Session {
        session_id,
        agent,
        prompt_version,
        model,
        provider,
        started_at: Some((first.start_unix_nano / 1_000_000) as i64),
        event_time: root.end_ms(),
        duration_ms: Some(root.end_unix_nano.saturating_sub(first.start_unix_nano) as f64 / 1e6),
        duration_derived: false,
        status,
        error_type,
        turns,
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
        output_chars: read.count(&m.output_chars)?,
        context_tokens_max,
        context_utilisation,
        attributes,
    })
}

/// A span's duration in milliseconds (nanosecond resolution).
fn duration_ms(s: &Span) -> f64 {
    (s.end_unix_nano - s.start_unix_nano) as f64 / 1e6
}

fn wrong(trace: &str, key: &str, expected: &'static str, found: &Value) -> SpanReject {
    SpanReject::WrongType {
        trace: trace.to_owned(),
        key: key.to_owned(),
        expected,
        found: match found {
            Value::Str(s) => format!("string \"{s}\""),
            Value::Int(i) => format!("int {i}"),
            Value::Double(d) => format!("double {d}"),
            Value::Bool(b) => format!("bool {b}"),
            Value::Other(t) => t.clone(),
        },
    }
}

/// Typed attribute reads: absent is `None`, a wrong type is a `wrong_type` reject.
struct Reader<'a> {
    trace: &'a str,
    /// Where a session-level attribute is looked up: the root, then the rest in start order.
    spans: &'a [&'a Span],
}

impl Reader<'_> {
    fn first(&self, key: &str) -> Option<&Value> {
        self.spans
            .iter()
            .find_map(|s| attribute(&s.attributes, key))
    }

    fn string_on(&self, span: &Span, key: &str) -> Result<Option<String>, SpanReject> {
        self.as_string(key, attribute(&span.attributes, key))
    }

    fn string(&self, key: &str) -> Result<Option<String>, SpanReject> {
        self.as_string(key, self.first(key))
    }

    fn as_string(&self, key: &str, v: Option<&Value>) -> Result<Option<String>, SpanReject> {
        match v {
            None => Ok(None),
            Some(Value::Str(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(wrong(self.trace, key, "a non-empty string", other)),
        }
    }

    fn count_on(&self, span: &Span, key: &str) -> Result<Option<u64>, SpanReject> {
        self.as_count(key, attribute(&span.attributes, key))
    }

    /// The count of the first of `keys` the span has.
    fn first_count_on(&self, span: &Span, keys: &[&str]) -> Result<Option<u64>, SpanReject> {
        match keys
            .iter()
            .find_map(|k| attribute(&span.attributes, k).map(|v| (k, v)))
        {
            Some((k, v)) => self.as_count(k, Some(v)),
            None => Ok(None),
        }
    }

    fn count(&self, key: &str) -> Result<Option<u64>, SpanReject> {
        self.as_count(key, self.first(key))
    }

    fn as_count(&self, key: &str, v: Option<&Value>) -> Result<Option<u64>, SpanReject> {
        match v {
            None => Ok(None),
            Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(other) => Err(wrong(self.trace, key, "a non-negative int", other)),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, SpanReject> {
        match self.first(key) {
            None => Ok(None),
            Some(Value::Double(d)) if d.is_finite() => Ok(Some(*d)),
            Some(Value::Int(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(wrong(self.trace, key, "a number", other)),
        }
    }

    fn non_negative(&self, key: &str) -> Result<Option<f64>, SpanReject> {
        match self.number(key)? {
            Some(v) if v < 0.0 => Err(wrong(
                self.trace,
                key,
                "a non-negative number",
                &Value::Double(v),
            )),
            v => Ok(v),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, SpanReject> {
        match self.first(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong(self.trace, key, "a bool", other)),
        }
    }
}

/// The mapping's names, for the encoder.
pub(super) fn fallback_key(m: &Mapping, field: &str) -> String {
    format!("{}{field}", m.fallback_prefix)
}
