//! Incident forensics: when did a change begin, which layer is it in, who was affected.
//!
//! Pure, like the rest of the core: everything here is computed from what the spec runtimes
//! retain of a key's recent panes, on event time. Evaluation attaches a [`Forensics`] to the
//! first breach finding of a key's objective, and hands out the sessions that count against an
//! objective as [`AffectedBatch`]es (`Pipeline::drain_affected`), which the shell files under
//! the incident the finding joined.

pub mod attribute;
pub mod drift;
pub mod onset;
pub mod retain;

use serde::{Deserialize, Serialize};

use crate::finding::{Detail, rfc3339_ms};
use crate::session::{EpochMs, Status};

/// The answers of an incident review, as far as the retained history can give them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Forensics {
    /// When the change most likely began; `None` when the history holds no change point
    /// (e.g. the key is too new, or the series is flat before the breach).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub onset: Option<Onset>,
    /// Candidate explanations, the one that explains most of the change first. Only
    /// candidates that explain a meaningful share are listed (at most five).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub candidates: Vec<Candidate>,
    /// Drift objectives: the feature whose series gave the onset and whose shift the
    /// candidates split (absent for other objectives).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feature: Option<String>,
}

/// A change-point estimate on the objective's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    /// The most likely start of the change (a pane boundary).
    #[serde(with = "rfc3339_ms")]
    pub at: EpochMs,
    /// The uncertainty interval around `at` (pane boundaries, `low <= at <= high`).
    #[serde(with = "rfc3339_ms")]
    pub low: EpochMs,
    #[serde(with = "rfc3339_ms")]
    pub high: EpochMs,
    /// Panes of history the estimate looked at.
    pub panes: u32,
}

/// The layers an agent's behaviour lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// A prompt version rolled out (a new version appearing, traffic moving between versions).
    Prompt,
    /// A model rolled out or swapped.
    Model,
    /// A provider: rollout, or its errors (`error_type`).
    Provider,
    /// One tool: its error rate, latency or share of calls changed.
    Tool,
    /// The input mix: traffic moved between segments or attribute values.
    Input,
    /// slawatch's own configuration changed (a reload).
    Config,
}

impl Layer {
    /// Every layer, in the order runbooks and reports list them.
    pub const ALL: [Layer; 6] = [
        Layer::Prompt,
        Layer::Model,
        Layer::Provider,
        Layer::Tool,
        Layer::Input,
        Layer::Config,
    ];

    /// The wire name, also the key of a spec's `runbooks` map.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Prompt => "prompt",
            Layer::Model => "model",
            Layer::Provider => "provider",
            Layer::Tool => "tool",
            Layer::Input => "input",
            Layer::Config => "config",
        }
    }
}

/// What a candidate's `before` and `after` measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateMetric {
    /// Share of the candidate's sessions (or calls, for a tool) that failed.
    ErrorRate,
    /// Share of the candidate's sessions that count against the objective.
    BadRate,
    /// Share of the key's traffic the candidate carries.
    TrafficShare,
    /// Share of the key's tool calls that go to the tool.
    CallShare,
    /// Mean latency of the candidate, ms.
    LatencyMs,
    /// Mean of the drifted numeric feature ([`Forensics::feature`]) in the candidate's sessions.
    FeatureMean,
    /// Share of the candidate's sessions where the drifted yes/no feature holds.
    FeatureRate,
}

/// One explanation of a change, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub layer: Layer,
    /// What in the layer: a prompt version, model, provider, tool name, `error_type`, or
    /// segment (`channel=web`).
    pub name: String,
    /// Share of the change in the objective's series this candidate explains, in `[0, 1]`.
    pub explained: f64,
    /// The measure the evidence is in, before and after the onset.
    pub metric: CandidateMetric,
    pub before: f64,
    pub after: f64,
    /// Share of the sessions counting against the objective since the onset that involve
    /// the candidate, in `[0, 1]`.
    pub in_bad_share: f64,
}

/// Why a session counts against an objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AffectedReason {
    /// Its status is a bad outcome for the objective (availability).
    Status { status: Status },
    /// A boolean signal was the bad side (e.g. not `resolved`, fell back).
    Signal { signal: String },
    /// A numeric value was past the objective's per-session threshold.
    Value {
        field: String,
        value: f64,
        threshold: f64,
    },
    /// A governance violation or cost cap.
    Violation { detail: Detail },
    /// A session of a key/segment whose distribution drifted (drift objectives): every
    /// session of it since the onset, with its value of the drifted feature.
    Drifted {
        feature: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        value: Option<f64>,
    },
}

/// One session counting against an objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedSession {
    pub session_id: String,
    /// Event time of the session.
    #[serde(with = "rfc3339_ms")]
    pub event_time: EpochMs,
    /// The window key: agent plus `keyBy` fields.
    pub key: Vec<(String, String)>,
    /// The session's segment (`channel=web`), if the spec segments.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segment: Option<String>,
    pub reason: AffectedReason,
}

/// Sessions counting against one objective of one key (and segment), handed out as windows
/// close. Each session is handed out at most once per (spec, objective, key, segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedBatch {
    pub spec: String,
    pub objective: String,
    pub key: Vec<(String, String)>,
    /// The segment of the objective's verdict, or `None` for the whole key — the same
    /// coordinates as the finding's (`alerts::IncidentKey`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segment: Option<String>,
    /// The window whose close handed these out.
    #[serde(with = "rfc3339_ms")]
    pub window_end: EpochMs,
    pub sessions: Vec<AffectedSession>,
    /// Sessions beyond the per-pane cap: counted, ids not kept.
    pub dropped: u64,
}
