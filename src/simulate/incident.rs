//! Incidents the simulator injects into an otherwise steady stream, and the compact spec syntax
//! the CLI reads them from (`latency-tail@26h+2h:factor=10,share=0.3`).
//!
//! Only describes and parses incidents; how each one changes a session is in the generator
//! (`session.rs`). Never reads the clock: offsets are relative to the stream's start.

use crate::duration::parse_duration_ms;

/// The default tool mix of the `sp-v2` prompt that [`IncidentKind::PromptChange`] rolls out:
/// far more escalations and address updates than `sp-v1`.
pub const PROMPT_V2_TOOL_MIX: [(&str, f64); 4] = [
    ("search_kb", 0.35),
    ("get_order", 0.25),
    ("escalate", 0.25),
    ("update_address", 0.15),
];

/// What goes wrong (or changes) during an incident. Share-based kinds pick each session in the
/// interval independently with probability `share`.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentKind {
    /// A `share` of sessions get model latency × `factor` (availability: p99 above 20 s).
    LatencyTail {
        /// Multiplier of the model's share of the session duration.
        factor: f64,
        /// Fraction of sessions affected.
        share: f64,
    },
    /// Sessions fail with probability `error_rate` (mostly `provider_5xx`, some
    /// `tool_timeout`); failed sessions get a fallback only with probability `fallback_rate`.
    ErrorBurst {
        /// Probability that a session in the burst fails.
        error_rate: f64,
        /// Probability that a failed session in the burst is handed to a fallback.
        fallback_rate: f64,
    },
    /// A `share` of sessions pass a card number through, unredacted, to `tool:<tool>`
    /// (and call that tool).
    PiiLeak {
        /// Tool that receives the personal data.
        tool: String,
        /// Fraction of sessions affected.
        share: f64,
    },
    /// A `share` of sessions use `factor` × the tokens (and so the cost); a quarter of those
    /// are runaways whose `cost_usd` is above a $0.50 per-session hard cap ($0.55–$2.50).
    CostSpike {
        /// Token (and cost) multiplier of the affected, non-runaway sessions.
        factor: f64,
        /// Fraction of sessions affected.
        share: f64,
    },
    /// A new prompt version: sessions report `prompt_version`, produce `output_scale` × the
    /// output tokens and characters, and call tools from `tool_mix`. Usually permanent.
    PromptChange {
        /// The new `prompt_version` key.
        prompt_version: String,
        /// Output tokens / characters multiplier.
        output_scale: f64,
        /// Tool names and relative weights; empty keeps the agent's mix.
        tool_mix: Vec<(String, f64)>,
    },
    /// A new model id (priced from the built-in copy of the model catalog) whose refusal rate
    /// is `refusal_rate`. Usually permanent.
    ModelSwap {
        /// The new `model` key.
        model: String,
        /// Probability that a successful session is a refusal.
        refusal_rate: f64,
    },
    /// A `share` of sessions try a forbidden tool and get `"status":"denied"`.
    DeniedTool {
        /// Forbidden tool, e.g. `delete_account`.
        tool: String,
        /// Fraction of sessions affected.
        share: f64,
    },
    /// A `share` of sessions call `tool` `calls` times back to back.
    ToolLoop {
        /// Tool called in a loop.
        tool: String,
        /// Length of the run of consecutive calls.
        calls: u32,
        /// Fraction of sessions affected.
        share: f64,
    },
    /// Calls of `tool` fail with probability `error_rate`; a session with a failed call of it
    /// fails (`status: error`, `error_type: tool_error`). Forensics: layer `tool`.
    ToolFailure {
        /// The failing tool.
        tool: String,
        /// Probability that one call of it fails.
        error_rate: f64,
    },
    /// Sessions served by `provider` fail with probability `error_rate`, with
    /// `error_type: provider_5xx`; other providers are untouched. Forensics: layer `provider`.
    ProviderOutage {
        /// The failing provider (an agent profile's `provider`).
        provider: String,
        /// Probability that a session on it fails.
        error_rate: f64,
    },
    /// A new prompt version whose successful sessions are resolved with probability
    /// `resolved_rate` (everything else unchanged). Forensics: layer `prompt`.
    PromptRollout {
        /// The new `prompt_version` key.
        prompt_version: String,
        /// Probability that a successful, non-refused session is resolved.
        resolved_rate: f64,
    },
    /// A `share` of the sessions come from `channel` (the rest keep their mix); with an agent
    /// profile whose [`super::AgentProfile::channel_failure`] names that channel, traffic moves
    /// to a segment that always fails more. Forensics: layer `input`.
    MixShift {
        /// The `attributes.channel` value traffic moves to.
        channel: String,
        /// Share of the sessions on it during the incident.
        share: f64,
    },
}

impl IncidentKind {
    /// Spec names of every kind, in declaration order.
    pub const NAMES: [&'static str; 12] = [
        "latency-tail",
        "error-burst",
        "pii-leak",
        "cost-spike",
        "prompt-change",
        "model-swap",
        "denied-tool",
        "tool-loop",
        "tool-failure",
        "provider-outage",
        "prompt-rollout",
        "mix-shift",
    ];

    /// The spec name of this kind (`"latency-tail"`, ...), also the key in
    /// [`super::Stats::incident_sessions`].
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Position of this kind in [`IncidentKind::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            IncidentKind::LatencyTail { .. } => 0,
            IncidentKind::ErrorBurst { .. } => 1,
            IncidentKind::PiiLeak { .. } => 2,
            IncidentKind::CostSpike { .. } => 3,
            IncidentKind::PromptChange { .. } => 4,
            IncidentKind::ModelSwap { .. } => 5,
            IncidentKind::DeniedTool { .. } => 6,
            IncidentKind::ToolLoop { .. } => 7,
            IncidentKind::ToolFailure { .. } => 8,
            IncidentKind::ProviderOutage { .. } => 9,
            IncidentKind::PromptRollout { .. } => 10,
            IncidentKind::MixShift { .. } => 11,
        }
    }

    /// The kind called `name` with its default parameters:
    /// - `latency-tail`: factor 12, share 0.2
    /// - `error-burst`: error_rate 0.2, fallback_rate 0
    /// - `pii-leak`: tool `update_address`, share 0.3
    /// - `cost-spike`: factor 30, share 0.2
    /// - `prompt-change`: prompt_version `sp-v2`, output_scale 1.3, tool mix
    ///   [`PROMPT_V2_TOOL_MIX`]
    /// - `model-swap`: model `m-2026-11`, refusal_rate 0.07
    /// - `denied-tool`: tool `delete_account`, share 0.05
    /// - `tool-loop`: tool `search_kb`, calls 15, share 0.1
    /// - `tool-failure`: tool `get_order`, error_rate 0.6
    /// - `provider-outage`: provider `acme-llm`, error_rate 0.3
    /// - `prompt-rollout`: prompt_version `sp-v3`, resolved_rate 0.55
    /// - `mix-shift`: channel `mobile`, share 0.7
    pub fn defaults(name: &str) -> Option<IncidentKind> {
        Some(match name {
            "latency-tail" => IncidentKind::LatencyTail {
                factor: 12.0,
                share: 0.2,
            },
            "error-burst" => IncidentKind::ErrorBurst {
                error_rate: 0.2,
                fallback_rate: 0.0,
            },
            "pii-leak" => IncidentKind::PiiLeak {
                tool: "update_address".into(),
                share: 0.3,
            },
            "cost-spike" => IncidentKind::CostSpike {
                factor: 30.0,
                share: 0.2,
            },
            "prompt-change" => IncidentKind::PromptChange {
                prompt_version: "sp-v2".into(),
                output_scale: 1.3,
                tool_mix: PROMPT_V2_TOOL_MIX
                    .iter()
                    .map(|(t, w)| (t.to_string(), *w))
                    .collect(),
            },
            "model-swap" => IncidentKind::ModelSwap {
                model: "m-2026-11".into(),
                refusal_rate: 0.07,
            },
            "denied-tool" => IncidentKind::DeniedTool {
                tool: "delete_account".into(),
                share: 0.05,
            },
            "tool-loop" => IncidentKind::ToolLoop {
                tool: "search_kb".into(),
                calls: 15,
                share: 0.1,
            },
            "tool-failure" => IncidentKind::ToolFailure {
                tool: "get_order".into(),
                error_rate: 0.6,
            },
            "provider-outage" => IncidentKind::ProviderOutage {
                provider: "acme-llm".into(),
                error_rate: 0.3,
            },
            "prompt-rollout" => IncidentKind::PromptRollout {
                prompt_version: "sp-v3".into(),
                resolved_rate: 0.55,
            },
            "mix-shift" => IncidentKind::MixShift {
                channel: "mobile".into(),
                share: 0.7,
            },
            _ => return None,
        })
    }

    /// Checks parameter ranges; the error says which parameter and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be within 0..=1, got {v}"))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1e6 {
                Ok(())
            } else {
                Err(format!("{name} must be > 0 (and at most 1e6), got {v}"))
            }
        };
        let tool = |t: &str| {
            if t.is_empty() {
                Err("tool must not be empty".to_string())
            } else {
                Ok(())
            }
        };
        match self {
            IncidentKind::LatencyTail { factor, share } => {
                positive("factor", *factor)?;
                unit("share", *share)
            }
            IncidentKind::ErrorBurst {
                error_rate,
                fallback_rate,
            } => {
                unit("error_rate", *error_rate)?;
                unit("fallback_rate", *fallback_rate)
            }
            IncidentKind::PiiLeak { tool: t, share } => {
                tool(t)?;
                unit("share", *share)
            }
            IncidentKind::CostSpike { factor, share } => {
                positive("factor", *factor)?;
                unit("share", *share)
            }
            IncidentKind::PromptChange {
                prompt_version,
                output_scale,
                tool_mix,
            } => {
                if prompt_version.is_empty() {
                    return Err("prompt_version must not be empty".into());
                }
                positive("output_scale", *output_scale)?;
                for (t, w) in tool_mix {
                    tool(t)?;
                    if !(w.is_finite() && *w >= 0.0) {
                        return Err(format!("tool weight of {t} must be >= 0, got {w}"));
                    }
                }
                if !tool_mix.is_empty() && tool_mix.iter().all(|(_, w)| *w == 0.0) {
                    return Err("tool mix weights must not all be 0".into());
                }
                Ok(())
            }
            IncidentKind::ModelSwap {
                model,
                refusal_rate,
            } => {
                if model.is_empty() {
                    return Err("model must not be empty".into());
                }
                unit("refusal_rate", *refusal_rate)
            }
            IncidentKind::DeniedTool { tool: t, share } => {
                tool(t)?;
                unit("share", *share)
            }
            IncidentKind::ToolLoop {
                tool: t,
                calls,
                share,
            } => {
                tool(t)?;
                if *calls == 0 || *calls > 1_000 {
                    return Err(format!("calls must be within 1..=1000, got {calls}"));
                }
                unit("share", *share)
            }
            IncidentKind::ToolFailure {
                tool: t,
                error_rate,
            } => {
                tool(t)?;
                unit("error_rate", *error_rate)
            }
            IncidentKind::ProviderOutage {
                provider,
                error_rate,
            } => {
                if provider.is_empty() {
                    return Err("provider must not be empty".into());
                }
                unit("error_rate", *error_rate)
            }
            IncidentKind::PromptRollout {
                prompt_version,
                resolved_rate,
            } => {
                if prompt_version.is_empty() {
                    return Err("prompt_version must not be empty".into());
                }
                unit("resolved_rate", *resolved_rate)
            }
            IncidentKind::MixShift { channel, share } => {
                if channel.is_empty() {
                    return Err("channel must not be empty".into());
                }
                unit("share", *share)
            }
        }
    }

    /// Overrides one parameter from a spec's `key=value`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let num = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{key}: expected a number, got {v:?}"))
        };
        let name = self.name();
        let bad_key = |valid: &str| format!("{name} has no parameter {key:?}; valid: {valid}");
        match self {
            IncidentKind::LatencyTail { factor, share }
            | IncidentKind::CostSpike { factor, share } => match key {
                "factor" => *factor = num(value)?,
                "share" => *share = num(value)?,
                _ => return Err(bad_key("factor, share, agent")),
            },
            IncidentKind::ErrorBurst {
                error_rate,
                fallback_rate,
            } => match key {
                "error_rate" | "rate" => *error_rate = num(value)?,
                "fallback_rate" | "fallback" => *fallback_rate = num(value)?,
                _ => return Err(bad_key("error_rate, fallback_rate, agent")),
            },
            IncidentKind::PiiLeak { tool, share } | IncidentKind::DeniedTool { tool, share } => {
                match key {
                    "tool" => *tool = value.to_string(),
                    "share" => *share = num(value)?,
                    _ => return Err(bad_key("tool, share, agent")),
                }
            }
            IncidentKind::PromptChange {
                prompt_version,
                output_scale,
                tool_mix,
            } => match key {
                "prompt_version" | "prompt" => *prompt_version = value.to_string(),
                "output_scale" | "scale" => *output_scale = num(value)?,
                "tools" | "tool_mix" => *tool_mix = parse_tool_mix(value)?,
                _ => return Err(bad_key("prompt_version, output_scale, tools, agent")),
            },
            IncidentKind::ModelSwap {
                model,
                refusal_rate,
            } => match key {
                "model" => *model = value.to_string(),
                "refusal_rate" | "refusal" => *refusal_rate = num(value)?,
                _ => return Err(bad_key("model, refusal_rate, agent")),
            },
            IncidentKind::ToolLoop { tool, calls, share } => match key {
                "tool" => *tool = value.to_string(),
                "calls" => {
                    *calls = value
                        .parse()
                        .map_err(|_| format!("calls: expected a whole number, got {value:?}"))?
                }
                "share" => *share = num(value)?,
                _ => return Err(bad_key("tool, calls, share, agent")),
            },
            IncidentKind::ToolFailure { tool, error_rate } => match key {
                "tool" => *tool = value.to_string(),
                "error_rate" | "rate" => *error_rate = num(value)?,
                _ => return Err(bad_key("tool, error_rate, agent")),
            },
            IncidentKind::ProviderOutage {
                provider,
                error_rate,
            } => match key {
                "provider" => *provider = value.to_string(),
                "error_rate" | "rate" => *error_rate = num(value)?,
                _ => return Err(bad_key("provider, error_rate, agent")),
            },
            IncidentKind::PromptRollout {
                prompt_version,
                resolved_rate,
            } => match key {
                "prompt_version" | "prompt" => *prompt_version = value.to_string(),
                "resolved_rate" | "resolved" => *resolved_rate = num(value)?,
                _ => return Err(bad_key("prompt_version, resolved_rate, agent")),
            },
            IncidentKind::MixShift { channel, share } => match key {
                "channel" => *channel = value.to_string(),
                "share" => *share = num(value)?,
                _ => return Err(bad_key("channel, share, agent")),
            },
        }
        Ok(())
    }
}

/// Parses `search_kb/0.4+escalate/0.3+get_order/0.3`.
fn parse_tool_mix(s: &str) -> Result<Vec<(String, f64)>, String> {
    s.split('+')
        .map(|part| {
            let (tool, w) = part.split_once('/').ok_or_else(|| {
                format!("tools: expected TOOL/WEIGHT+TOOL/WEIGHT..., got {part:?}")
            })?;
            let w: f64 = w
                .parse()
                .map_err(|_| format!("tools: weight of {tool:?} must be a number, got {w:?}"))?;
            Ok((tool.to_string(), w))
        })
        .collect()
}

/// One injected incident: a kind active for sessions that *start* in
/// `[start_ms, start_ms + duration_ms)`, or from `start_ms` on when `duration_ms` is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// What happens.
    pub kind: IncidentKind,
    /// Unix epoch milliseconds at which it begins.
    pub start_ms: i64,
    /// How long it lasts; `None` = permanent.
    pub duration_ms: Option<i64>,
    /// Restricts it to sessions of this agent; `None` = every agent.
    pub agent: Option<String>,
}

impl Incident {
    /// An incident of every agent, lasting `duration_ms` (`None` = permanent).
    pub fn new(kind: IncidentKind, start_ms: i64, duration_ms: Option<i64>) -> Incident {
        Incident {
            kind,
            start_ms,
            duration_ms,
            agent: None,
        }
    }

    /// Restricts the incident to one agent.
    pub fn for_agent(mut self, agent: impl Into<String>) -> Incident {
        self.agent = Some(agent.into());
        self
    }

    /// First millisecond after the incident (`i64::MAX` when permanent).
    pub fn end_ms(&self) -> i64 {
        match self.duration_ms {
            Some(d) => self.start_ms.saturating_add(d),
            None => i64::MAX,
        }
    }

    /// Whether a session starting at `t_ms` falls inside the incident.
    pub fn is_active(&self, t_ms: i64) -> bool {
        t_ms >= self.start_ms && t_ms < self.end_ms()
    }
}

/// An incident as written on the command line: offset from the stream start instead of an
/// absolute time. Parse with [`str::parse`]; resolve with [`IncidentSpec::at`].
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSpec {
    /// What happens.
    pub kind: IncidentKind,
    /// Milliseconds after the stream start.
    pub offset_ms: i64,
    /// How long it lasts; `None` = permanent.
    pub duration_ms: Option<i64>,
    /// Restricts it to one agent (`agent=NAME` parameter).
    pub agent: Option<String>,
}

impl IncidentSpec {
    /// The incident for a stream starting at `stream_start_ms`.
    pub fn at(&self, stream_start_ms: i64) -> Incident {
        Incident {
            kind: self.kind.clone(),
            start_ms: stream_start_ms.saturating_add(self.offset_ms),
            duration_ms: self.duration_ms,
            agent: self.agent.clone(),
        }
    }
}

/// Why an incident spec was rejected; the message names the expected syntax and valid names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid incident {spec:?}: {reason}. Expected NAME@OFFSET[+DURATION][:key=value,...] \
     (e.g. latency-tail@26h+2h:factor=10,share=0.3) with NAME one of: {}",
    IncidentKind::NAMES.join(", ")
)]
pub struct IncidentSpecError {
    /// The rejected spec.
    pub spec: String,
    /// What was wrong.
    pub reason: String,
}

impl std::str::FromStr for IncidentSpec {
    type Err = IncidentSpecError;

    /// Parses `NAME@OFFSET[+DURATION][:key=value,...]`, e.g. `error-burst@10h+1h`,
    /// `prompt-change@24h`, `latency-tail@26h+2h:factor=10,share=0.3`,
    /// `pii-leak@30h+10m:tool=update_address,agent=support-bot`.
    fn from_str(spec: &str) -> Result<IncidentSpec, IncidentSpecError> {
        let err = |reason: String| IncidentSpecError {
            spec: spec.to_string(),
            reason,
        };
        let (head, params) = match spec.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (spec, None),
        };
        let (name, when) = head
            .split_once('@')
            .ok_or_else(|| err("missing '@OFFSET'".into()))?;
        let name = name.trim();
        let mut kind = IncidentKind::defaults(name)
            .ok_or_else(|| err(format!("unknown incident name {name:?}")))?;
        let (offset, duration) = match when.split_once('+') {
            Some((o, d)) => (o, Some(d)),
            None => (when, None),
        };
        let offset_ms = parse_duration_ms(offset).map_err(|e| err(format!("offset: {e}")))?;
        let duration_ms = duration
            .map(|d| parse_duration_ms(d).map_err(|e| err(format!("duration: {e}"))))
            .transpose()?;
        if duration_ms == Some(0) {
            return Err(err(
                "duration must be > 0 (omit '+DURATION' for permanent)".into()
            ));
        }
        let mut agent = None;
        if let Some(params) = params {
            for kv in params.split(',').filter(|kv| !kv.trim().is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err(format!("parameter {kv:?} is not key=value")))?;
                let (k, v) = (k.trim(), v.trim());
                if k == "agent" {
                    agent = Some(v.to_string());
                } else {
                    kind.set(k, v).map_err(err)?;
                }
            }
        }
        kind.validate().map_err(err)?;
        Ok(IncidentSpec {
            kind,
            offset_ms,
            duration_ms,
            agent,
        })
    }
}
