//! `otel:` of `slawatch.yaml`: how spans are grouped into sessions and which attributes fill
//! the session fields the GenAI conventions do not define. Every field has a named default.

use serde::{Deserialize, Serialize};

/// `otel:` of `slawatch.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtelConfig {
    /// What one session is: the spans of one `trace` (default; session id = the trace id in
    /// hex), or of one `conversation` (session id = the root's `gen_ai.conversation.id`).
    #[serde(default)]
    pub group_by: GroupBy,
    /// How long after a root span's end late children are still waited for, in event time
    /// (the newest span end seen). Default `30s`.
    #[serde(
        default = "default_grace",
        with = "crate::duration::serde_ms",
        rename = "grace"
    )]
    pub grace_ms: i64,
    /// Traces held open at most; beyond, the oldest is dead-lettered (`evicted_open_trace`).
    #[serde(default = "default_max_open_traces")]
    pub max_open_traces: usize,
    /// Spans kept per open trace at most; further spans of the trace are dead-lettered
    /// (`evicted_open_trace`), so one runaway trace cannot take the memory of the others.
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: usize,
    /// Which attributes and events fill the session fields without a GenAI convention.
    #[serde(default)]
    pub mapping: Mapping,
}

/// What one session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Trace,
    Conversation,
}

/// Attribute and event names of the session fields the GenAI conventions leave open. Each is
/// read from the root `invoke_agent` span first, then from the other spans in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mapping {
    /// String attribute with the prompt version. Default `slawatch.prompt_version`.
    #[serde(default = "default_prompt_version")]
    pub prompt_version: String,
    /// Prompt version of a session without that attribute; empty = reject it
    /// (`missing_attribute`). Default `unversioned`.
    #[serde(default = "default_prompt_version_missing")]
    pub prompt_version_default: String,
    /// String attribute overriding the status (`success|error|timeout|abandoned`); without it
    /// the status is `error` when the root span's status is ERROR or it has `error.type`.
    /// Default `slawatch.status`.
    #[serde(default = "default_status")]
    pub status: String,
    /// Int attribute with the number of turns; without it, the number of model calls.
    /// Default `slawatch.turns`.
    #[serde(default = "default_turns")]
    pub turns: String,
    /// Double attribute with the session's cost in USD; without it the cost is derived from
    /// the model catalog. Default `slawatch.usage.cost_usd`.
    #[serde(default = "default_cost")]
    pub cost_usd: String,
    /// Int attribute with the length of the answer shown. Default `slawatch.output_chars`.
    #[serde(default = "default_output_chars")]
    pub output_chars: String,
    /// Int attribute with the largest context sent; without it, the largest
    /// `gen_ai.usage.input_tokens` of one model call. Default `slawatch.context_tokens_max`.
    #[serde(default = "default_context_tokens_max")]
    pub context_tokens_max: String,
    /// Name of the evaluation (`gen_ai.evaluation.name` of a `gen_ai.evaluation.result` event)
    /// whose `gen_ai.evaluation.score.value` is the quality score; empty = the first
    /// evaluation with a score. Default empty.
    #[serde(default)]
    pub quality_evaluation: String,
    /// Double attribute with the quality score when no evaluation event gives one.
    /// Default `slawatch.quality.score`.
    #[serde(default = "default_quality_score")]
    pub quality_score: String,
    /// Bool attribute: the user's issue was resolved. Default `slawatch.quality.resolved`.
    #[serde(default = "default_quality_resolved")]
    pub quality_resolved: String,
    /// Bool attribute: the agent refused. Default `slawatch.quality.refusal`.
    #[serde(default = "default_quality_refusal")]
    pub quality_refusal: String,
    /// Prefix of the fallback attributes `<prefix>triggered` (bool), `<prefix>kind`,
    /// `<prefix>reason` (strings). Default `slawatch.fallback.`.
    #[serde(default = "default_fallback_prefix")]
    pub fallback_prefix: String,
    /// Span events reporting personal data, with string attributes `type`, `handling`
    /// (`redacted|masked|blocked|passed_through`) and `destination`. Default `slawatch.pii`.
    #[serde(default = "default_pii_event")]
    pub pii_event: String,
    /// String attribute of an `execute_tool` span overriding its status (`ok|error|denied`).
    /// Default `slawatch.tool.status`.
    #[serde(default = "default_tool_status")]
    pub tool_status: String,
    /// Root attributes with this prefix become the session's segmentation `attributes` (the
    /// prefix removed). Default `slawatch.attributes.`.
    #[serde(default = "default_attributes_prefix")]
    pub attributes_prefix: String,
}

fn default_grace() -> i64 {
    30_000
}
fn default_max_open_traces() -> usize {
    100_000
}
fn default_max_spans_per_trace() -> usize {
    10_000
}
fn default_prompt_version() -> String {
    "slawatch.prompt_version".into()
}
fn default_prompt_version_missing() -> String {
    "unversioned".into()
}
fn default_status() -> String {
    "slawatch.status".into()
}
fn default_turns() -> String {
    "slawatch.turns".into()
}
fn default_cost() -> String {
    "slawatch.usage.cost_usd".into()
}
fn default_output_chars() -> String {
    "slawatch.output_chars".into()
}
fn default_context_tokens_max() -> String {
    "slawatch.context_tokens_max".into()
}
fn default_quality_score() -> String {
    "slawatch.quality.score".into()
}
fn default_quality_resolved() -> String {
    "slawatch.quality.resolved".into()
}
fn default_quality_refusal() -> String {
    "slawatch.quality.refusal".into()
}
fn default_fallback_prefix() -> String {
    "slawatch.fallback.".into()
}
fn default_pii_event() -> String {
    "slawatch.pii".into()
}
fn default_tool_status() -> String {
    "slawatch.tool.status".into()
}
fn default_attributes_prefix() -> String {
    "slawatch.attributes.".into()
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            group_by: GroupBy::default(),
            grace_ms: default_grace(),
            max_open_traces: default_max_open_traces(),
            max_spans_per_trace: default_max_spans_per_trace(),
            mapping: Mapping::default(),
        }
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            prompt_version: default_prompt_version(),
            prompt_version_default: default_prompt_version_missing(),
            status: default_status(),
            turns: default_turns(),
            cost_usd: default_cost(),
            output_chars: default_output_chars(),
            context_tokens_max: default_context_tokens_max(),
            quality_evaluation: String::new(),
            quality_score: default_quality_score(),
            quality_resolved: default_quality_resolved(),
            quality_refusal: default_quality_refusal(),
            fallback_prefix: default_fallback_prefix(),
            pii_event: default_pii_event(),
            tool_status: default_tool_status(),
            attributes_prefix: default_attributes_prefix(),
        }
    }
}
