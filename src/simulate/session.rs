//! One session: its steady behaviour, the effects of the incidents active when it starts, and
//! its JSON line.
//!
//! Each session is drawn from its own ChaCha8 stream (stream number = sequence number + 1), so a
//! session's content depends only on the seed, its sequence number, its start time and the
//! incidents active then: sessions outside an incident are byte-identical to those of the same
//! stream without it. Never reads the clock, never allocates in the steady path (buffers are
//! reused).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::json::{push_fixed, push_padded, push_rfc3339_ms, push_u64, quoted};
use super::{AgentProfile, IncidentKind, SimConfig, SimConfigError};

/// Turns per session, 1..=6.
const TURN_WEIGHTS: [f64; 6] = [0.25, 0.30, 0.20, 0.13, 0.08, 0.04];
/// Tool calls per session, 0..=6.
const CALL_COUNT_WEIGHTS: [f64; 7] = [0.15, 0.30, 0.25, 0.15, 0.08, 0.05, 0.02];
/// Probability that a tool call repeats the previous tool (search twice, ...).
const REPEAT_PREVIOUS_TOOL: f64 = 0.3;
/// Probability that an ordinary tool call fails.
const TOOL_ERROR_RATE: f64 = 0.015;
/// Share of cost-spike sessions that are runaways above the $0.50 hard cap.
const RUNAWAY_SHARE: f64 = 0.25;
/// Largest `context_tokens_max` written (just under the 128k window of `m-2026-09`).
const CONTEXT_CAP: u64 = 126_000;

/// A tool call outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallStatus {
    Ok,
    Error,
    Denied,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    tool: u16,
    status: CallStatus,
    tenths: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Success,
    Error,
    Timeout,
    Abandoned,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dest {
    Model,
    Log,
    Tool(u16),
}

#[derive(Debug, Clone, Copy)]
struct PiiEntry {
    kind: &'static str,
    handling: &'static str,
    dest: Dest,
}

/// Cumulative weights over interned tool indices.
#[derive(Debug, Clone, Default)]
struct Mix {
    cum: Vec<f64>,
    tools: Vec<u16>,
}

impl Mix {
    fn pick(&self, u: f64) -> Option<u16> {
        let total = *self.cum.last()?;
        let x = u * total;
        let i = self
            .cum
            .iter()
            .position(|&c| x < c)
            .unwrap_or(self.cum.len() - 1);
        Some(self.tools[i])
    }
}

struct CAgent {
    name: u32,
    prompt: u32,
    model: u32,
    provider: Option<u32>,
    price: (f64, f64),
    mix: Mix,
    channel_failure: Option<(&'static str, f64)>,
    p: AgentProfile,
}

enum CKind {
    LatencyTail {
        factor: f64,
        share: f64,
    },
    ErrorBurst {
        error_rate: f64,
        fallback_rate: f64,
    },
    PiiLeak {
        tool: u16,
        share: f64,
    },
    CostSpike {
        factor: f64,
        share: f64,
    },
    PromptChange {
        prompt: u32,
        scale: f64,
        mix: Option<Mix>,
    },
    ModelSwap {
        model: u32,
        refusal_rate: f64,
        price: (f64, f64),
    },
    DeniedTool {
        tool: u16,
        share: f64,
    },
    ToolLoop {
        tool: u16,
        calls: u32,
        share: f64,
    },
    ToolFailure {
        tool: u16,
        error_rate: f64,
    },
    ProviderOutage {
        provider: u32,
        error_rate: f64,
    },
    PromptRollout {
        prompt: u32,
        resolved_rate: f64,
    },
    MixShift {
        channel: &'static str,
        share: f64,
    },
}

/// The channels the generator draws, with their steady weights.
const CHANNELS: [(&str, f64); 3] = [("web", 0.5), ("email", 0.3), ("mobile", 0.2)];

/// A channel name as one of the generator's static strings (others are leaked once per
/// compiled configuration — a handful of bytes — so drafts stay `&'static str`).
fn static_channel(name: &str) -> &'static str {
    CHANNELS.iter().find(|(c, _)| *c == name).map_or_else(
        || &*Box::leak(name.to_owned().into_boxed_str()),
        |(c, _)| *c,
    )
}

struct CIncident {
    start: i64,
    end: i64,
    agent: Option<usize>,
    kind: CKind,
    name: &'static str,
}

/// The configuration compiled into index tables and pre-escaped JSON strings.
pub(crate) struct Compiled {
    strings: Vec<Vec<u8>>,
    agents: Vec<CAgent>,
    agent_cum: Vec<f64>,
    tool_names: Vec<Vec<u8>>,
    tool_dests: Vec<Vec<u8>>,
    incidents: Vec<CIncident>,
    late_fraction: f64,
    duplicate_fraction: f64,
    dirty_fraction: f64,
    omit_cost_fraction: f64,
}

fn intern(table: &mut Vec<Vec<u8>>, s: &str) -> u32 {
    let q = quoted(s);
    match table.iter().position(|t| *t == q) {
        Some(i) => i as u32,
        None => {
            table.push(q);
            (table.len() - 1) as u32
        }
    }
}

fn tool_index(tools: &mut Vec<Vec<u8>>, name: &str) -> Result<u16, SimConfigError> {
    u16::try_from(intern(tools, name)).map_err(|_| SimConfigError("too many distinct tools".into()))
}

fn compile_mix(tools: &mut Vec<Vec<u8>>, pairs: &[(String, f64)]) -> Result<Mix, SimConfigError> {
    let mut m = Mix::default();
    let mut acc = 0.0;
    for (name, w) in pairs {
        acc += w;
        m.cum.push(acc);
        m.tools.push(tool_index(tools, name)?);
    }
    Ok(m)
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

impl Compiled {
    pub(crate) fn new(cfg: &SimConfig) -> Result<Compiled, SimConfigError> {
        let mut strings = Vec::new();
        let mut tool_names: Vec<Vec<u8>> = Vec::new();
        let mut agents = Vec::new();
        for a in &cfg.agents {
            agents.push(CAgent {
                name: intern(&mut strings, &a.name),
                prompt: intern(&mut strings, &a.prompt_version),
                model: intern(&mut strings, &a.model),
                provider: a.provider.as_deref().map(|p| intern(&mut strings, p)),
                price: a.price_per_mtok,
                mix: compile_mix(&mut tool_names, &a.tool_mix)?,
                channel_failure: a
                    .channel_failure
                    .as_ref()
                    .map(|(c, r)| (static_channel(c), *r)),
                p: a.clone(),
            });
        }
        let mut incidents = Vec::new();
        for inc in &cfg.incidents {
            let agent = match &inc.agent {
                None => None,
                Some(name) => Some(cfg.agents.iter().position(|a| a.name == *name).ok_or_else(
                    || {
                        SimConfigError(format!(
                            "incident {} names unknown agent {name:?}",
                            inc.kind.name()
                        ))
                    },
                )?),
            };
            let kind = match &inc.kind {
                IncidentKind::LatencyTail { factor, share } => CKind::LatencyTail {
                    factor: *factor,
                    share: *share,
                },
                IncidentKind::ErrorBurst {
                    error_rate,
                    fallback_rate,
                } => CKind::ErrorBurst {
                    error_rate: *error_rate,
                    fallback_rate: *fallback_rate,
                },
                IncidentKind::PiiLeak { tool: t, share } => CKind::PiiLeak {
                    tool: tool_index(&mut tool_names, t)?,
                    share: *share,
                },
                IncidentKind::CostSpike { factor, share } => CKind::CostSpike {
                    factor: *factor,
                    share: *share,
                },
                IncidentKind::PromptChange {
                    prompt_version,
                    output_scale,
                    tool_mix,
                } => CKind::PromptChange {
                    prompt: intern(&mut strings, prompt_version),
                    scale: *output_scale,
                    mix: if tool_mix.is_empty() {
                        None
                    } else {
                        Some(compile_mix(&mut tool_names, tool_mix)?)
                    },
                },
                IncidentKind::ModelSwap {
                    model,
                    refusal_rate,
                } => CKind::ModelSwap {
                    model: intern(&mut strings, model),
                    refusal_rate: *refusal_rate,
                    price: super::catalog_price(model),
                },
                IncidentKind::DeniedTool { tool: t, share } => CKind::DeniedTool {
                    tool: tool_index(&mut tool_names, t)?,
                    share: *share,
                },
                IncidentKind::ToolLoop {
                    tool: t,
                    calls,
                    share,
                } => CKind::ToolLoop {
                    tool: tool_index(&mut tool_names, t)?,
                    calls: *calls,
                    share: *share,
                },
                IncidentKind::ToolFailure {
                    tool: t,
                    error_rate,
                } => CKind::ToolFailure {
                    tool: tool_index(&mut tool_names, t)?,
                    error_rate: *error_rate,
                },
                IncidentKind::ProviderOutage {
                    provider,
                    error_rate,
                } => CKind::ProviderOutage {
                    provider: intern(&mut strings, provider),
                    error_rate: *error_rate,
                },
                IncidentKind::PromptRollout {
                    prompt_version,
                    resolved_rate,
                } => CKind::PromptRollout {
                    prompt: intern(&mut strings, prompt_version),
                    resolved_rate: *resolved_rate,
                },
                IncidentKind::MixShift { channel, share } => CKind::MixShift {
                    channel: static_channel(channel),
                    share: *share,
                },
            };
            incidents.push(CIncident {
                start: inc.start_ms,
                end: inc.end_ms(),
                agent,
                kind,
                name: inc.kind.name(),
            });
        }
        let tool_dests = tool_names
            .iter()
            .map(|q| {
                let name: String = serde_json::from_slice(q).expect("interned names are JSON");
                quoted(&format!("tool:{name}"))
            })
            .collect();
        Ok(Compiled {
            strings,
            agent_cum: cumulative(cfg.agents.iter().map(|a| a.weight)),
            agents,
            tool_names,
            tool_dests,
            incidents,
            late_fraction: cfg.late_fraction,
            duplicate_fraction: cfg.duplicate_fraction,
            dirty_fraction: cfg.dirty_fraction,
            omit_cost_fraction: cfg.omit_cost_fraction,
        })
    }

    /// Kind names of the incidents, in config order.
    pub(crate) fn incident_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.incidents.iter().map(|i| i.name)
    }
}

/// One session being built; reused across sessions to keep the hot path allocation-free.
#[derive(Default)]
pub(crate) struct Draft {
    pub seq: u64,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub duration_tenths: i64,
    pub late_delay_ms: Option<i64>,
    pub dup_delay_ms: Option<i64>,
    pub dirty: bool,
    pub failed: bool,
    pub cost_omitted: bool,
    name: u32,
    prompt: u32,
    model: u32,
    provider: Option<u32>,
    status: Option<Status>,
    error_type: Option<&'static str>,
    turns: u32,
    input: u64,
    output: u64,
    cost_micros: Option<u64>,
    calls: Vec<Call>,
    fallback: Option<(&'static str, &'static str)>,
    score_e4: u64,
    resolved: bool,
    refusal: bool,
    output_chars: u64,
    context_max: u64,
    channel: &'static str,
    tier: &'static str,
    pii: Vec<PiiEntry>,
}

#[inline]
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

#[inline]
fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng)
}

#[inline]
fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

/// Kumaraswamy(a, b): a cheap Beta-like variable on [0, 1].
#[inline]
fn kumaraswamy(rng: &mut ChaCha8Rng, a: f64, b: f64) -> f64 {
    let u = unit(rng);
    (1.0 - (1.0 - u).powf(1.0 / b)).powf(1.0 / a)
}

#[inline]
fn pick<const N: usize>(rng: &mut ChaCha8Rng, weights: &[f64; N]) -> usize {
    let mut x = unit(rng);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    N - 1
}

#[inline]
fn pick_str<const N: usize>(
    rng: &mut ChaCha8Rng,
    table: &[(&'static str, f64); N],
) -> &'static str {
    let mut x = unit(rng);
    for (s, w) in table {
        if x < *w {
            return s;
        }
        x -= w;
    }
    table[N - 1].0
}

#[inline]
fn tenths(ms: f64) -> i64 {
    (ms * 10.0).round().max(0.0) as i64
}

/// Per-incident effects gathered for one session.
struct Effects<'c> {
    prompt: u32,
    model: u32,
    price: (f64, f64),
    refusal_rate: f64,
    output_scale: f64,
    mix: &'c Mix,
    latency_factor: f64,
    burst: Option<(f64, f64)>,
    leak: Option<u16>,
    spike: Option<f64>,
    denied: Option<u16>,
    tool_loop: Option<(u16, u32)>,
    tool_failure: Option<(u16, f64)>,
    outage: Option<f64>,
    resolved_rate: f64,
    channel: Option<&'static str>,
}

/// Draws session `seq` starting at `start_ms` (fractional) into `d`, counting the sessions each
/// incident touched in `touched` (indexed like the config's incidents).
pub(crate) fn draw(
    c: &Compiled,
    rng: &mut ChaCha8Rng,
    seq: u64,
    start_ms: f64,
    d: &mut Draft,
    touched: &mut [u64],
) {
    // Delivery decisions first, always the same number of draws, so they never depend on the
    // content (and the content never depends on them).
    let late = unit(rng) < c.late_fraction;
    let late_delay = 15_000 + (unit(rng) * 285_000.0) as i64;
    let dup = unit(rng) < c.duplicate_fraction;
    let dup_delay = 500 + (unit(rng) * 119_500.0) as i64;
    d.dirty = unit(rng) < c.dirty_fraction;
    d.cost_omitted = unit(rng) < c.omit_cost_fraction;
    d.late_delay_ms = late.then_some(late_delay);
    d.dup_delay_ms = dup.then_some(dup_delay);

    let ai = if c.agents.len() == 1 {
        0
    } else {
        let x = unit(rng) * c.agent_cum.last().copied().unwrap_or(1.0);
        c.agent_cum
            .iter()
            .position(|&cw| x < cw)
            .unwrap_or(c.agents.len() - 1)
    };
    let a = &c.agents[ai];
    let p = &a.p;
    d.seq = seq;
    d.name = a.name;
    d.provider = a.provider;
    let t = start_ms.floor() as i64;

    let mut fx = Effects {
        prompt: a.prompt,
        model: a.model,
        price: a.price,
        refusal_rate: p.refusal_rate,
        output_scale: 1.0,
        mix: &a.mix,
        latency_factor: 1.0,
        burst: None,
        leak: None,
        spike: None,
        denied: None,
        tool_loop: None,
        tool_failure: None,
        outage: None,
        resolved_rate: p.resolved_rate,
        channel: None,
    };
    for (i, inc) in c.incidents.iter().enumerate() {
        if t < inc.start || t >= inc.end || inc.agent.is_some_and(|x| x != ai) {
            continue;
        }
        let hit = match &inc.kind {
            CKind::LatencyTail { factor, share } => {
                let hit = unit(rng) < *share;
                if hit {
                    fx.latency_factor *= factor;
                }
                hit
            }
            CKind::ErrorBurst {
                error_rate,
                fallback_rate,
            } => {
                fx.burst = Some((*error_rate, *fallback_rate));
                true
            }
            CKind::PiiLeak { tool, share } => {
                let hit = unit(rng) < *share;
                if hit {
                    fx.leak = Some(*tool);
                }
                hit
            }
            CKind::CostSpike { factor, share } => {
                let hit = unit(rng) < *share;
                if hit {
                    fx.spike = Some(*factor);
                }
                hit
            }
            CKind::PromptChange { prompt, scale, mix } => {
                fx.prompt = *prompt;
                fx.output_scale *= scale;
                if let Some(m) = mix {
                    fx.mix = m;
                }
                true
            }
            CKind::ModelSwap {
                model,
                refusal_rate,
                price,
            } => {
                fx.model = *model;
                fx.refusal_rate = *refusal_rate;
                fx.price = *price;
                true
            }
            CKind::DeniedTool { tool, share } => {
                let hit = unit(rng) < *share;
                if hit {
                    fx.denied = Some(*tool);
                }
                hit
            }
            CKind::ToolLoop { tool, calls, share } => {
                let hit = unit(rng) < *share;
                if hit {
                    fx.tool_loop = Some((*tool, *calls));
                }
                hit
            }
            CKind::ToolFailure { tool, error_rate } => {
                fx.tool_failure = Some((*tool, *error_rate));
                true
            }
            CKind::ProviderOutage {
                provider,
                error_rate,
            } => {
                let hit = a.provider == Some(*provider);
                if hit {
                    fx.outage = Some(*error_rate);
                }
                hit
            }
            CKind::PromptRollout {
                prompt,
                resolved_rate,
            } => {
                fx.prompt = *prompt;
                fx.resolved_rate = *resolved_rate;
                true
            }
            CKind::MixShift { channel, share } => {
                let hit = unit(rng) < *share;
                fx.channel = Some(if hit {
                    channel
                } else {
                    pick_str(rng, &CHANNELS)
                });
                hit
            }
        };
        if hit {
            touched[i] += 1;
        }
    }
    d.prompt = fx.prompt;
    d.model = fx.model;
    // A channel that fails more is known before the outcome (an extra draw only for a profile
    // or incident that needs it, so other streams stay byte-identical).
    if fx.channel.is_none() && a.channel_failure.is_some() {
        fx.channel = Some(pick_str(rng, &CHANNELS));
    }
    let channel_fails = match (a.channel_failure, fx.channel) {
        (Some((c, rate)), Some(ch)) if c == ch => Some(rate),
        _ => None,
    };

    // Outcome.
    let mut fallback_rate = p.fallback_rate;
    let mut p_fail = 1.0 - p.success_rate;
    if let Some((rate, fb)) = fx.burst {
        p_fail = p_fail.max(rate);
        fallback_rate = fb;
    }
    if let Some(rate) = fx.outage.or(channel_fails) {
        p_fail = p_fail.max(rate);
    }
    let (status, error_type) = if unit(rng) >= p_fail {
        (Status::Success, None)
    } else if fx.outage.is_some() {
        (Status::Error, Some("provider_5xx"))
    } else if channel_fails.is_some() {
        (Status::Error, Some("channel_unsupported"))
    } else if fx.burst.is_some() {
        if unit(rng) < 0.85 {
            (Status::Error, Some("provider_5xx"))
        } else {
            (Status::Error, Some("tool_timeout"))
        }
    } else {
        match pick(rng, &[0.40, 0.25, 0.20, 0.15]) {
            0 => (Status::Error, Some("provider_5xx")),
            1 => (Status::Error, Some("tool_timeout")),
            2 => (Status::Timeout, Some("deadline_exceeded")),
            _ => (Status::Abandoned, None),
        }
    };
    let mut status = status;
    let mut error_type = error_type;
    d.refusal = status == Status::Success && unit(rng) < fx.refusal_rate;
    d.turns = pick(rng, &TURN_WEIGHTS) as u32 + 1;

    // Tool calls.
    d.calls.clear();
    let mut n_calls = pick(rng, &CALL_COUNT_WEIGHTS);
    if d.refusal {
        n_calls = n_calls.min(1);
    }
    for i in 0..n_calls {
        let repeat = unit(rng) < REPEAT_PREVIOUS_TOOL;
        let tool = if i > 0 && repeat {
            Some(d.calls[i - 1].tool)
        } else {
            fx.mix.pick(unit(rng))
        };
        let Some(tool) = tool else { break };
        let status = if unit(rng) < TOOL_ERROR_RATE {
            CallStatus::Error
        } else {
            CallStatus::Ok
        };
        let ms = lognormal(rng, 150.0, 0.45);
        d.calls.push(Call {
            tool,
            status,
            tenths: tenths(ms),
        });
    }
    if let Some((tool, rate)) = fx.tool_failure {
        let mut failed = false;
        for call in d.calls.iter_mut().filter(|c| c.tool == tool) {
            if unit(rng) < rate {
                call.status = CallStatus::Error;
                failed = true;
            }
        }
        if failed && status == Status::Success {
            status = Status::Error;
            error_type = Some("tool_error");
            d.refusal = false;
        }
    }
    d.status = Some(status);
    d.error_type = error_type;
    d.failed = status != Status::Success;
    if error_type == Some("tool_timeout") {
        let ms = 8_000.0 + unit(rng) * 150.0;
        let timed_out = Call {
            tool: d
                .calls
                .last()
                .map_or_else(|| fx.mix.pick(0.0).unwrap_or(0), |c| c.tool),
            status: CallStatus::Error,
            tenths: tenths(ms),
        };
        match d.calls.last_mut() {
            Some(last) => *last = timed_out,
            None if !c.tool_names.is_empty() => d.calls.push(timed_out),
            None => {}
        }
    }
    if let Some(tool) = fx.denied {
        let at = rng.random_range(0..=d.calls.len());
        let ms = lognormal(rng, 4.0, 0.3);
        d.calls.insert(
            at,
            Call {
                tool,
                status: CallStatus::Denied,
                tenths: tenths(ms),
            },
        );
    }
    if let Some((tool, calls)) = fx.tool_loop {
        let at = rng.random_range(0..=d.calls.len());
        for _ in 0..calls {
            let ms = lognormal(rng, 150.0, 0.3);
            d.calls.insert(
                at,
                Call {
                    tool,
                    status: CallStatus::Ok,
                    tenths: tenths(ms),
                },
            );
        }
    }
    let leak_call = fx.leak.filter(|t| !d.calls.iter().any(|c| c.tool == *t));
    if let Some(tool) = leak_call {
        let ms = lognormal(rng, 200.0, 0.3);
        d.calls.push(Call {
            tool,
            status: CallStatus::Ok,
            tenths: tenths(ms),
        });
    }

    // Duration: model time plus tool time.
    let mut llm = lognormal(rng, p.model_latency_median_ms, 0.55);
    match status {
        Status::Error if error_type == Some("provider_5xx") => llm *= uniform(rng, 0.15, 0.6),
        Status::Abandoned => llm *= uniform(rng, 0.8, 2.5),
        _ => {}
    }
    llm *= fx.latency_factor;
    let runaway = fx.spike.is_some() && unit(rng) < RUNAWAY_SHARE;
    if fx.spike.is_some() {
        llm *= if runaway { 3.0 } else { 1.5 };
    }
    let tool_tenths: i64 = d.calls.iter().map(|c| c.tenths).sum();
    d.duration_tenths = if status == Status::Timeout {
        tenths(30_000.0 + unit(rng) * 800.0).max(tool_tenths + 1_000)
    } else {
        tenths(llm) + tool_tenths
    };
    let started = start_ms;
    d.started_ms = started.floor() as i64;
    d.ended_ms = (started + d.duration_tenths as f64 / 10.0).floor() as i64;

    // Tokens and cost.
    let z: f64 = rng.sample(StandardNormal);
    let mut input = (p.input_tokens_mean + 0.2 * p.input_tokens_mean * z).max(200.0);
    let mut output = if d.refusal {
        lognormal(rng, 60.0, 0.3)
    } else {
        lognormal(rng, p.output_tokens_median, 0.3) * fx.output_scale
    };
    match status {
        Status::Success => {}
        Status::Timeout => output *= uniform(rng, 0.2, 0.8),
        _ => output *= uniform(rng, 0.0, 0.4),
    }
    let mut context_extra = 0.0;
    for _ in 0..d.calls.len().min(8) {
        context_extra += unit(rng) * 80.0;
    }
    let mut context = None;
    if let Some(factor) = fx.spike {
        if runaway {
            let target_usd = uniform(rng, 0.55, 2.5);
            input = uniform(rng, 300_000.0, 900_000.0);
            output = ((target_usd * 1e6 - input * fx.price.0) / fx.price.1).max(20_000.0);
            d.turns += 20 + rng.random_range(0..40);
            context = Some(uniform(rng, 90_000.0, 125_000.0) as u64);
        } else {
            input *= factor * uniform(rng, 0.7, 1.3);
            output *= factor * uniform(rng, 0.7, 1.3);
        }
    }
    d.input = input.round() as u64;
    d.output = output.round().max(1.0) as u64;
    let cost = (d.input as f64 * fx.price.0 + d.output as f64 * fx.price.1) / 1e6
        * uniform(rng, 0.98, 1.02);
    d.cost_micros = (!d.cost_omitted).then_some((cost * 1e6).round() as u64);
    d.output_chars = (d.output as f64 * uniform(rng, 3.6, 4.4)).round() as u64;
    d.context_max = context
        .unwrap_or_else(|| d.input + d.output + context_extra as u64)
        .min(CONTEXT_CAP);

    // Quality.
    let score = if d.failed {
        d.resolved = false;
        kumaraswamy(rng, 1.5, 4.0)
    } else if d.refusal {
        d.resolved = false;
        kumaraswamy(rng, 2.0, 4.0)
    } else {
        d.resolved = unit(rng) < fx.resolved_rate;
        if d.resolved {
            kumaraswamy(rng, 14.0, 2.0)
        } else {
            kumaraswamy(rng, 4.0, 2.5)
        }
    };
    d.score_e4 = (score.clamp(0.0, 1.0) * 1e4).round() as u64;

    // Personal data: always protected in steady state.
    d.pii.clear();
    if unit(rng) < p.pii_rate {
        let n = if unit(rng) < 0.8 { 1 } else { 2 };
        for _ in 0..n {
            let kind = pick_str(
                rng,
                &[
                    ("email", 0.45),
                    ("phone", 0.30),
                    ("address", 0.15),
                    ("card_number", 0.10),
                ],
            );
            let handling = pick_str(rng, &[("redacted", 0.6), ("masked", 0.3), ("blocked", 0.1)]);
            let dest = if unit(rng) < 0.75 {
                Dest::Model
            } else {
                Dest::Log
            };
            d.pii.push(PiiEntry {
                kind,
                handling,
                dest,
            });
        }
    }
    if let Some(tool) = fx.leak {
        d.pii.push(PiiEntry {
            kind: "card_number",
            handling: "passed_through",
            dest: Dest::Tool(tool),
        });
    }

    let drawn = pick_str(rng, &CHANNELS);
    d.channel = fx.channel.unwrap_or(drawn);
    d.tier = pick_str(rng, &[("free", 0.7), ("pro", 0.3)]);

    d.fallback = None;
    if d.failed && unit(rng) < fallback_rate {
        let kind = pick_str(
            rng,
            &[
                ("handoff_human", 0.60),
                ("canned_response", 0.35),
                ("retry_smaller_model", 0.05),
            ],
        );
        d.fallback = Some((kind, error_type.unwrap_or(status.as_str())));
    }
}

/// Appends the session's JSON line (no newline).
pub(crate) fn write(c: &Compiled, d: &Draft, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"session_id\":\"s-");
    push_padded(out, d.seq, 9);
    out.extend_from_slice(b"\",\"agent\":");
    out.extend_from_slice(&c.strings[d.name as usize]);
    out.extend_from_slice(b",\"prompt_version\":");
    out.extend_from_slice(&c.strings[d.prompt as usize]);
    out.extend_from_slice(b",\"model\":");
    out.extend_from_slice(&c.strings[d.model as usize]);
    if let Some(p) = d.provider {
        out.extend_from_slice(b",\"provider\":");
        out.extend_from_slice(&c.strings[p as usize]);
    }
    out.extend_from_slice(b",\"started_at\":\"");
    push_rfc3339_ms(out, d.started_ms);
    out.extend_from_slice(b"\",\"ended_at\":\"");
    push_rfc3339_ms(out, d.ended_ms);
    out.extend_from_slice(b"\",\"duration_ms\":");
    push_fixed(out, d.duration_tenths, 1);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(d.status.unwrap_or(Status::Success).as_str().as_bytes());
    out.push(b'"');
    if let Some(e) = d.error_type {
        out.extend_from_slice(b",\"error_type\":\"");
        out.extend_from_slice(e.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"turns\":");
    push_u64(out, u64::from(d.turns));
    out.extend_from_slice(b",\"usage\":{\"input_tokens\":");
    push_u64(out, d.input);
    out.extend_from_slice(b",\"output_tokens\":");
    push_u64(out, d.output);
    if let Some(micros) = d.cost_micros {
        out.extend_from_slice(b",\"cost_usd\":");
        push_fixed(out, micros as i64, 6);
    }
    out.extend_from_slice(b"},\"tool_calls\":[");
    for (i, call) in d.calls.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        out.extend_from_slice(&c.tool_names[call.tool as usize]);
        out.extend_from_slice(match call.status {
            CallStatus::Ok => b",\"status\":\"ok\",\"duration_ms\":".as_slice(),
            CallStatus::Error => b",\"status\":\"error\",\"duration_ms\":",
            CallStatus::Denied => b",\"status\":\"denied\",\"duration_ms\":",
        });
        push_fixed(out, call.tenths, 1);
        out.push(b'}');
    }
    out.push(b']');
    if let Some((kind, reason)) = d.fallback {
        out.extend_from_slice(b",\"fallback\":{\"triggered\":true,\"kind\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"reason\":\"");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b",\"quality\":{\"score\":");
    push_fixed(out, d.score_e4 as i64, 4);
    out.extend_from_slice(if d.resolved {
        b",\"resolved\":true".as_slice()
    } else {
        b",\"resolved\":false"
    });
    out.extend_from_slice(if d.refusal {
        b",\"refusal\":true}".as_slice()
    } else {
        b",\"refusal\":false}"
    });
    out.extend_from_slice(b",\"output_chars\":");
    push_u64(out, d.output_chars);
    out.extend_from_slice(b",\"context_tokens_max\":");
    push_u64(out, d.context_max);
    out.extend_from_slice(b",\"attributes\":{\"channel\":\"");
    out.extend_from_slice(d.channel.as_bytes());
    out.extend_from_slice(b"\",\"tier\":\"");
    out.extend_from_slice(d.tier.as_bytes());
    out.extend_from_slice(b"\"}");
    if !d.pii.is_empty() {
        out.extend_from_slice(b",\"pii\":[");
        for (i, e) in d.pii.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(e.kind.as_bytes());
            out.extend_from_slice(b"\",\"handling\":\"");
            out.extend_from_slice(e.handling.as_bytes());
            out.extend_from_slice(b"\",\"destination\":");
            match e.dest {
                Dest::Model => out.extend_from_slice(b"\"model\""),
                Dest::Log => out.extend_from_slice(b"\"log\""),
                Dest::Tool(t) => out.extend_from_slice(&c.tool_dests[t as usize]),
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}
