//! Generates seeded, realistic session streams with injected incidents. Never reads the wall
//! clock; same seed → same bytes.
//!
//! The stream is contract `agent-session/v1` as JSON Lines, one finished agent session per line.
//! Sessions arrive as a Poisson process (optionally with a gentle day/night rate modulation) and
//! are emitted in `ended_at` order, except for a configurable fraction of late records,
//! duplicates (at-least-once redelivery) and malformed lines. Each session is drawn from its own
//! ChaCha8 stream, so adding an incident changes only the sessions that start inside it: every
//! other line stays byte-identical.
//!
//! Presets:
//! - [`SimConfig::steady`]: one `support-bot` agent (`sp-v1`, `m-2026-09`, `acme-llm`) at 200
//!   sessions/hour with no incident — success ≈ 99.7 %, fallback for ≈ 98 % of failures,
//!   duration median ≈ 2.6 s and p99 ≈ 9 s, cost ≈ $0.001 per session.
//! - [`demo_incidents`] / [`SimConfig::demo`]: one incident per dimension across 48 h.
//!
//! Entry points: [`Simulator`] (pull lines one at a time), [`write_jsonl`] (a whole stream to a
//! writer) and, for the command line, [`SimulateArgs`] with [`run`].

mod cli;
mod dirty;
mod incident;
mod json;
mod session;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};
use std::sync::mpsc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Exp1;
use serde::Serialize;

pub use cli::{OtelFormat, SimulateArgs, run, span_batches, span_requests, write_spans};
pub use dirty::{DirtyKind, OVERSIZED_MIN_BYTES};
pub use incident::{Incident, IncidentKind, IncidentSpec, IncidentSpecError, PROMPT_V2_TOOL_MIX};
pub use json::rfc3339_ms;

const HOUR_MS: i64 = 3_600_000;

/// 2026-11-01T00:00:00Z, the default start of simulated streams.
pub const DEFAULT_START_MS: i64 = 1_793_491_200_000;

/// Last millisecond the simulator can write (9999-12-31T23:59:59.999Z).
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Amplitude of the day/night modulation: the rate swings ±30 % around its mean, peaking at
/// 15:00 UTC and bottoming out at 03:00 UTC.
pub const DIURNAL_AMPLITUDE: f64 = 0.3;

/// The steady tool mix of `sp-v1`.
pub const DEFAULT_TOOL_MIX: [(&str, f64); 4] = [
    ("search_kb", 0.55),
    ("get_order", 0.30),
    ("escalate", 0.10),
    ("update_address", 0.05),
];

/// USD per million (input, output) tokens of a model id, from the embedded model catalog
/// (`models/catalog.yaml`, the one slawatch prices records with); a model the catalog does not
/// know is priced like `m-2026-09`.
pub fn catalog_price(model: &str) -> (f64, f64) {
    crate::catalog::Catalog::embedded()
        .lookup(model)
        .map_or((0.25, 2.00), |m| {
            (m.input_usd_per_m_tok, m.output_usd_per_m_tok)
        })
}

/// One agent (with its prompt version and model) and its steady behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentProfile {
    /// `agent` field.
    pub name: String,
    /// `prompt_version` field.
    pub prompt_version: String,
    /// `model` field.
    pub model: String,
    /// `provider` field, omitted when `None`.
    pub provider: Option<String>,
    /// Relative share of the sessions.
    pub weight: f64,
    /// Probability that a session succeeds (0.997).
    pub success_rate: f64,
    /// Probability that a failed session gets a fallback (0.98).
    pub fallback_rate: f64,
    /// Probability that a successful session is a refusal (0.01).
    pub refusal_rate: f64,
    /// Probability that a successful, non-refused session is resolved (0.81, ≈ 80 % overall).
    pub resolved_rate: f64,
    /// Probability that a session carries personal data (0.15).
    pub pii_rate: f64,
    /// Median model time of a session in ms (2300; tool time comes on top, ≈ 2.6 s in all).
    pub model_latency_median_ms: f64,
    /// Mean input tokens (1500, ±20 % standard deviation).
    pub input_tokens_mean: f64,
    /// Median output tokens (300, lognormal).
    pub output_tokens_median: f64,
    /// Tool names and relative weights; empty = no tool calls.
    pub tool_mix: Vec<(String, f64)>,
    /// USD per million (input, output) tokens; [`catalog_price`] of the model by default.
    pub price_per_mtok: (f64, f64),
    /// A channel (`attributes.channel`) whose sessions fail with at least this probability
    /// (`status: error`, `error_type: channel_unsupported`), all stream long: the segment an
    /// [`IncidentKind::MixShift`] moves traffic to. `None` by default.
    pub channel_failure: Option<(String, f64)>,
}

impl AgentProfile {
    /// An agent with the steady behaviour described on each field, priced by
    /// [`catalog_price`], with no provider.
    pub fn new(
        name: impl Into<String>,
        prompt_version: impl Into<String>,
        model: impl Into<String>,
    ) -> AgentProfile {
        let model = model.into();
        AgentProfile {
            name: name.into(),
            prompt_version: prompt_version.into(),
            price_per_mtok: catalog_price(&model),
            model,
            provider: None,
            weight: 1.0,
            success_rate: 0.997,
            fallback_rate: 0.98,
            refusal_rate: 0.01,
            resolved_rate: 0.81,
            pii_rate: 0.15,
            model_latency_median_ms: 2_300.0,
            input_tokens_mean: 1_500.0,
            output_tokens_median: 300.0,
            tool_mix: DEFAULT_TOOL_MIX
                .iter()
                .map(|(t, w)| (t.to_string(), *w))
                .collect(),
            channel_failure: None,
        }
    }

    /// Sets the provider.
    pub fn with_provider(mut self, provider: impl Into<String>) -> AgentProfile {
        self.provider = Some(provider.into());
        self
    }

    /// Makes sessions on `channel` fail with at least probability `rate`.
    pub fn with_channel_failure(mut self, channel: impl Into<String>, rate: f64) -> AgentProfile {
        self.channel_failure = Some((channel.into(), rate));
        self
    }

    /// Sets the relative share of sessions.
    pub fn with_weight(mut self, weight: f64) -> AgentProfile {
        self.weight = weight;
        self
    }
}

impl Default for AgentProfile {
    /// `support-bot`, prompt `sp-v1`, model `m-2026-09`, provider `acme-llm`.
    fn default() -> AgentProfile {
        AgentProfile::new("support-bot", "sp-v1", "m-2026-09").with_provider("acme-llm")
    }
}

/// Everything that determines a stream. The same config gives the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of every random stream.
    pub seed: u64,
    /// Unix epoch ms at which the stream begins; sessions start in
    /// `[start_ms, start_ms + duration_ms)`.
    pub start_ms: i64,
    /// Length of the stream in ms.
    pub duration_ms: i64,
    /// Stop after this many sessions (duplicates and dirty lines not counted), if set.
    pub max_sessions: Option<u64>,
    /// Mean arrival rate (200 ≈ 4800 sessions a day).
    pub sessions_per_hour: f64,
    /// The agents; sessions are split by [`AgentProfile::weight`].
    pub agents: Vec<AgentProfile>,
    /// Incidents to inject.
    pub incidents: Vec<Incident>,
    /// Gentle day/night modulation of the rate ([`DIURNAL_AMPLITUDE`]); the daily mean stays
    /// `sessions_per_hour`.
    pub diurnal: bool,
    /// Fraction of records delivered late: 15 s – 5 min after their `ended_at`, so behind
    /// records that ended after them (0.01).
    pub late_fraction: f64,
    /// Fraction of records delivered twice, byte-identical, 0.5 s – 2 min apart (0).
    pub duplicate_fraction: f64,
    /// Fraction of sessions followed by a malformed line of a random [`DirtyKind`] (0).
    pub dirty_fraction: f64,
    /// At most this many [`DirtyKind::Oversized`] lines per stream (2); further picks of that
    /// kind become another kind.
    pub max_oversized: u32,
    /// Fraction of records without `usage.cost_usd`, left for the model catalog to derive
    /// (0.1).
    pub omit_cost_fraction: f64,
}

impl Default for SimConfig {
    /// 24 h of the default agent from [`DEFAULT_START_MS`], seed 0, 200 sessions/hour, diurnal,
    /// 1 % late, no duplicate, no dirty line, 10 % without cost.
    fn default() -> SimConfig {
        SimConfig {
            seed: 0,
            start_ms: DEFAULT_START_MS,
            duration_ms: 24 * HOUR_MS,
            max_sessions: None,
            sessions_per_hour: 200.0,
            agents: vec![AgentProfile::default()],
            incidents: Vec::new(),
            diurnal: true,
            late_fraction: 0.01,
            duplicate_fraction: 0.0,
            dirty_fraction: 0.0,
            max_oversized: 2,
            omit_cost_fraction: 0.1,
        }
    }
}

/// A configuration the simulator cannot run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulation config: {0}")]
pub struct SimConfigError(pub String);

impl SimConfig {
    /// The steady preset: [`SimConfig::default`] with `seed`, lasting `hours`, no incident.
    pub fn steady(seed: u64, hours: u32) -> SimConfig {
        SimConfig {
            seed,
            duration_ms: i64::from(hours) * HOUR_MS,
            ..SimConfig::default()
        }
    }

    /// The demo preset: 48 h of [`SimConfig::steady`] with [`demo_incidents`].
    pub fn demo(seed: u64) -> SimConfig {
        let mut cfg = SimConfig::steady(seed, 48);
        cfg.incidents = demo_incidents(cfg.start_ms);
        cfg
    }

    /// Adds an incident.
    pub fn with_incident(mut self, incident: Incident) -> SimConfig {
        self.incidents.push(incident);
        self
    }

    /// Checks every parameter; the error names the offending one.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let err = |m: String| Err(SimConfigError(m));
        let unit = |name: &str, v: f64| -> Result<(), SimConfigError> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(SimConfigError(format!(
                    "{name} must be within 0..=1, got {v}"
                )))
            }
        };
        if !(self.sessions_per_hour.is_finite()
            && self.sessions_per_hour > 0.0
            && self.sessions_per_hour <= 1e10)
        {
            return err(format!(
                "sessions_per_hour must be > 0 (and at most 1e10), got {}",
                self.sessions_per_hour
            ));
        }
        if self.duration_ms < 0 {
            return err(format!(
                "duration_ms must be >= 0, got {}",
                self.duration_ms
            ));
        }
        if !(0..MAX_TIMESTAMP_MS).contains(&self.start_ms) {
            return err(format!(
                "start_ms must be within 1970..=9999 (0..{MAX_TIMESTAMP_MS}), got {}",
                self.start_ms
            ));
        }
        unit("late_fraction", self.late_fraction)?;
        unit("duplicate_fraction", self.duplicate_fraction)?;
        unit("dirty_fraction", self.dirty_fraction)?;
        unit("omit_cost_fraction", self.omit_cost_fraction)?;
        if self.agents.is_empty() {
            return err("at least one agent is required".into());
        }
        for a in &self.agents {
            let ctx = |m: String| SimConfigError(format!("agent {:?}: {m}", a.name));
            if a.name.is_empty() || a.prompt_version.is_empty() || a.model.is_empty() {
                return Err(ctx(
                    "name, prompt_version and model must not be empty".into()
                ));
            }
            if !(a.weight.is_finite() && a.weight > 0.0) {
                return Err(ctx(format!("weight must be > 0, got {}", a.weight)));
            }
            for (name, v) in [
                ("success_rate", a.success_rate),
                ("fallback_rate", a.fallback_rate),
                ("refusal_rate", a.refusal_rate),
                ("resolved_rate", a.resolved_rate),
                ("pii_rate", a.pii_rate),
            ] {
                unit(name, v).map_err(|e| ctx(e.0))?;
            }
            for (name, v) in [
                ("model_latency_median_ms", a.model_latency_median_ms),
                ("input_tokens_mean", a.input_tokens_mean),
                ("output_tokens_median", a.output_tokens_median),
            ] {
                if !(v.is_finite() && v > 0.0 && v < 1e9) {
                    return Err(ctx(format!("{name} must be > 0, got {v}")));
                }
            }
            let (pi, po) = a.price_per_mtok;
            if !(pi.is_finite() && po.is_finite() && pi >= 0.0 && po > 0.0) {
                return Err(ctx(format!(
                    "price_per_mtok must be >= 0 (input) and > 0 (output), got ({pi}, {po})"
                )));
            }
            for (t, w) in &a.tool_mix {
                if t.is_empty() || !(w.is_finite() && *w >= 0.0) {
                    return Err(ctx(format!("tool mix entry ({t:?}, {w}) is invalid")));
                }
            }
            if let Some((channel, rate)) = &a.channel_failure {
                if channel.is_empty() {
                    return Err(ctx("channel_failure: channel must not be empty".into()));
                }
                unit("channel_failure rate", *rate).map_err(|e| ctx(e.0))?;
            }
            if !a.tool_mix.is_empty() && a.tool_mix.iter().all(|(_, w)| *w == 0.0) {
                return Err(ctx("tool mix weights must not all be 0".into()));
            }
        }
        for inc in &self.incidents {
            inc.kind
                .validate()
                .map_err(|m| SimConfigError(format!("incident {}: {m}", inc.kind.name())))?;
            if inc.duration_ms.is_some_and(|d| d <= 0) {
                return err(format!(
                    "incident {}: duration_ms must be > 0 (None = permanent)",
                    inc.kind.name()
                ));
            }
        }
        Ok(())
    }
}

/// One incident per dimension across a 48 h stream starting at `start_ms`, in time order:
///
/// | offset | incident | parameters | dimension |
/// |---|---|---|---|
/// | 10 h, 1 h | [`IncidentKind::ErrorBurst`] | error_rate 0.2, fallback_rate 0 | fallback (and availability) |
/// | 20 h, 30 min | [`IncidentKind::CostSpike`] | factor 30, share 0.2 (¼ of those above $0.50) | governance: cost |
/// | 24 h, permanent | [`IncidentKind::PromptChange`] | `sp-v2`, output ×1.3, [`PROMPT_V2_TOOL_MIX`] | behavior drift |
/// | 26 h, 2 h | [`IncidentKind::LatencyTail`] | factor 12, share 0.2 | availability: latency |
/// | 30 h, 10 min | [`IncidentKind::PiiLeak`] | card_number → `tool:update_address`, share 0.3 | governance: PII |
/// | 36 h, permanent | [`IncidentKind::ModelSwap`] | `m-2026-11`, refusal_rate 0.07 | behavior: refusals |
///
/// The parameters are [`IncidentKind::defaults`].
pub fn demo_incidents(start_ms: i64) -> Vec<Incident> {
    let kind = |name: &str| IncidentKind::defaults(name).expect("a known incident name");
    let at = |h: i64, m: i64| start_ms + h * HOUR_MS + m * 60_000;
    vec![
        Incident::new(kind("error-burst"), at(10, 0), Some(HOUR_MS)),
        Incident::new(kind("cost-spike"), at(20, 0), Some(30 * 60_000)),
        Incident::new(kind("prompt-change"), at(24, 0), None),
        Incident::new(kind("latency-tail"), at(26, 0), Some(2 * HOUR_MS)),
        Incident::new(kind("pii-leak"), at(30, 0), Some(10 * 60_000)),
        Incident::new(kind("model-swap"), at(36, 0), None),
    ]
}

/// What a stream contained. Counts are final once the simulator is exhausted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Distinct sessions generated (one clean line each).
    pub sessions: u64,
    /// Lines emitted so far: sessions, duplicates and dirty lines.
    pub lines: u64,
    /// Bytes emitted so far, one newline per line included.
    pub bytes: u64,
    /// Sessions whose status is not `success`.
    pub failed: u64,
    /// Records delivered late (out of `ended_at` order).
    pub late: u64,
    /// Extra, byte-identical copies of records.
    pub duplicates: u64,
    /// Records without `usage.cost_usd`.
    pub cost_omitted: u64,
    /// Sessions each incident kind touched, by [`IncidentKind::name`] (share-based kinds count
    /// the sessions picked; rate-based kinds every session in the interval).
    pub incident_sessions: BTreeMap<&'static str, u64>,
    /// Malformed lines by [`DirtyKind::name`].
    pub dirty: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Total malformed lines.
    pub fn dirty_lines(&self) -> u64 {
        self.dirty.values().sum()
    }
}

/// A line waiting for its delivery time.
struct Pending {
    key: i64,
    order: u64,
    line: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.order) == (other.key, other.order)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so the max-heap pops the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.key, other.order).cmp(&(self.key, self.order))
    }
}

/// Pulls a stream one line at a time: [`Simulator::write_next`] (fast, appends to a reused
/// buffer) or the [`Iterator`] impl (one `Vec<u8>` per line). Lines carry no newline.
pub struct Simulator {
    cfg: SimConfig,
    compiled: session::Compiled,
    key: [u8; 32],
    arrivals: ChaCha8Rng,
    /// Start of the next session to generate (fractional ms).
    clock: f64,
    end: f64,
    rate_max_per_ms: f64,
    seq: u64,
    done: bool,
    heap: BinaryHeap<Pending>,
    order: u64,
    pool: Vec<Vec<u8>>,
    draft: session::Draft,
    touched: Vec<u64>,
    dirty_seq: u64,
    oversized: u32,
    published: bool,
    stats: Stats,
}

impl Simulator {
    /// A simulator for `cfg`, after [`SimConfig::validate`].
    pub fn new(cfg: SimConfig) -> Result<Simulator, SimConfigError> {
        cfg.validate()?;
        let compiled = session::Compiled::new(&cfg)?;
        let key = ChaCha8Rng::seed_from_u64(cfg.seed).get_seed();
        // Stream 0 drives arrivals; session n uses stream n + 1.
        let arrivals = ChaCha8Rng::from_seed(key);
        let end = cfg
            .start_ms
            .saturating_add(cfg.duration_ms)
            .min(MAX_TIMESTAMP_MS - 86_400_000) as f64;
        let amplitude = if cfg.diurnal { DIURNAL_AMPLITUDE } else { 0.0 };
        let rate_max_per_ms = cfg.sessions_per_hour * (1.0 + amplitude) / HOUR_MS as f64;
        let touched = vec![0; cfg.incidents.len()];
        let mut sim = Simulator {
            clock: cfg.start_ms as f64,
            end,
            rate_max_per_ms,
            compiled,
            key,
            arrivals,
            seq: 0,
            done: false,
            heap: BinaryHeap::new(),
            order: 0,
            pool: Vec::new(),
            draft: session::Draft::default(),
            touched,
            dirty_seq: 0,
            oversized: 0,
            published: false,
            stats: Stats::default(),
            cfg,
        };
        sim.advance_clock();
        Ok(sim)
    }

    /// The configuration being simulated.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Counts so far (final once [`Simulator::write_next`] returned `false`).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The final counts.
    pub fn into_stats(self) -> Stats {
        self.stats
    }

    /// Draws the next arrival (thinning for the diurnal modulation) and decides whether the
    /// stream is over.
    fn advance_clock(&mut self) {
        if self.cfg.max_sessions.is_some_and(|m| self.seq >= m) {
            self.done = true;
            return;
        }
        loop {
            let gap: f64 = self.arrivals.sample(Exp1);
            self.clock += gap / self.rate_max_per_ms;
            if self.clock >= self.end {
                self.done = true;
                return;
            }
            if !self.cfg.diurnal {
                return;
            }
            let hour_of_day = (self.clock / HOUR_MS as f64).rem_euclid(24.0);
            let rel = 1.0
                + DIURNAL_AMPLITUDE * (std::f64::consts::TAU * (hour_of_day - 9.0) / 24.0).sin();
            let accept = rel / (1.0 + DIURNAL_AMPLITUDE);
            if self.arrivals.random::<f64>() < accept {
                return;
            }
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1_024))
    }

    fn push(&mut self, key: i64, line: Vec<u8>) {
        self.order += 1;
        self.heap.push(Pending {
            key,
            order: self.order,
            line,
        });
    }

    /// Generates the session at `self.clock` and queues its line(s).
    fn generate_one(&mut self) {
        let seq = self.seq;
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(seq + 1);
        session::draw(
            &self.compiled,
            &mut rng,
            seq,
            self.clock,
            &mut self.draft,
            &mut self.touched,
        );
        let mut line = self.buffer();
        session::write(&self.compiled, &self.draft, &mut line);

        let d = &self.draft;
        let on_time = d.ended_ms;
        let key = on_time + d.late_delay_ms.unwrap_or(0);
        self.stats.sessions += 1;
        self.stats.failed += u64::from(d.failed);
        self.stats.late += u64::from(d.late_delay_ms.is_some());
        self.stats.cost_omitted += u64::from(d.cost_omitted);
        let dup_delay = d.dup_delay_ms;
        let dirty = d.dirty;
        let src_started = d.started_ms;
        let src_tenths = d.duration_tenths;

        let bad = dirty.then(|| {
            let kind = self.pick_dirty_kind(&mut rng);
            let mut bad = self.buffer();
            dirty::write(
                kind,
                &dirty::Source {
                    line: &line,
                    started_ms: src_started,
                    duration_tenths: src_tenths,
                },
                self.dirty_seq,
                &mut rng,
                &mut bad,
            );
            self.dirty_seq += 1;
            *self.stats.dirty.entry(kind.name()).or_insert(0) += 1;
            bad
        });
        let copy = dup_delay.map(|delay| {
            let mut copy = self.buffer();
            copy.extend_from_slice(&line);
            self.stats.duplicates += 1;
            (delay, copy)
        });
        self.push(key, line);
        if let Some(bad) = bad {
            // Right after the record it was derived from.
            self.push(key, bad);
        }
        if let Some((delay, copy)) = copy {
            self.push(key + delay, copy);
        }

        self.seq += 1;
        self.advance_clock();
    }

    fn pick_dirty_kind(&mut self, rng: &mut ChaCha8Rng) -> DirtyKind {
        let allow_oversized = self.oversized < self.cfg.max_oversized;
        let weight = |k: DirtyKind| {
            if k == DirtyKind::Oversized && !allow_oversized {
                0.0
            } else {
                k.weight()
            }
        };
        let total: f64 = DirtyKind::ALL.iter().map(|k| weight(*k)).sum();
        let mut x = rng.random::<f64>() * total;
        let mut kind = DirtyKind::JsonArray;
        for k in DirtyKind::ALL {
            let w = weight(k);
            if x < w {
                kind = k;
                break;
            }
            x -= w;
        }
        if kind == DirtyKind::Oversized {
            self.oversized += 1;
        }
        kind
    }

    /// Appends the next line (without newline) to `out` and returns `true`, or returns `false`
    /// once the stream is exhausted.
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> bool {
        loop {
            let ready = self
                .heap
                .peek()
                .is_some_and(|top| self.done || top.key as f64 <= self.clock);
            if ready {
                let p = self.heap.pop().expect("peeked");
                out.extend_from_slice(&p.line);
                self.stats.lines += 1;
                self.stats.bytes += p.line.len() as u64 + 1;
                self.recycle(p.line);
                return true;
            }
            if self.done {
                // Incident counters are final: publish them.
                if !self.published {
                    self.published = true;
                    for (name, n) in self.compiled.incident_names().zip(&self.touched) {
                        *self.stats.incident_sessions.entry(name).or_insert(0) += n;
                    }
                }
                return false;
            }
            self.generate_one();
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= 16 * 1_024 && self.pool.len() < 1_024 {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

impl Iterator for Simulator {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        self.write_next(&mut line).then_some(line)
    }
}

/// Writes the whole stream for `cfg` to `w` as JSON Lines (one `\n` after every line), then
/// flushes. Generation runs on a helper thread while the calling thread writes 1 MiB chunks, so
/// `w` need not be `Send`. An invalid config is an [`io::ErrorKind::InvalidInput`] error.
pub fn write_jsonl(cfg: &SimConfig, mut w: impl Write) -> io::Result<Stats> {
    let sim =
        Simulator::new(cfg.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    pump(sim, &mut w).map_err(|(e, _)| e)
}

/// Streams every line of `sim` to `w`: a scoped thread generates 1 MiB chunks, this thread
/// writes them. On a write error, returns it with the counts of what was generated so far.
pub(crate) fn pump(sim: Simulator, w: &mut impl Write) -> Result<Stats, (io::Error, Stats)> {
    const CHUNK: usize = 1 << 20;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut sim = sim;
            let mut buf = Vec::with_capacity(CHUNK + 4_096);
            while sim.write_next(&mut buf) {
                buf.push(b'\n');
                if buf.len() >= CHUNK {
                    let next = empty_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(CHUNK + 4_096));
                    if full_tx.send(std::mem::replace(&mut buf, next)).is_err() {
                        // The writer stopped on an error.
                        return sim;
                    }
                }
            }
            if !buf.is_empty() {
                let _ = full_tx.send(buf);
            }
            sim
        });
        let mut result = Ok(());
        for mut chunk in full_rx.iter() {
            if let Err(e) = w.write_all(&chunk) {
                result = Err(e);
                break;
            }
            chunk.clear();
            let _ = empty_tx.send(chunk);
        }
        drop(full_rx);
        let sim = match producer.join() {
            Ok(sim) => sim,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match result.and_then(|()| w.flush()) {
            Ok(()) => Ok(sim.into_stats()),
            Err(e) => Err((e, sim.into_stats())),
        }
    })
}
