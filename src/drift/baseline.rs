//! Baselines: what "normal" looks like for one (agent, prompt version, model) of one drift
//! objective, and how a baseline learns, freezes, re-learns, and is pinned or reset.
//!
//! A baseline is a [`FeatureSample`] (bottom-k rows, exact binary and categorical counts) plus
//! what is fitted on it when it freezes: the multivariate model and the reference mean and
//! standard deviation the sequential detectors standardise by, with their running state.
//! Baselines are plain data — the pipeline decides where they are stored (sled in `run`). The
//! stored form is versioned ([`encode`], [`decode`]). No I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::drift::features::{FeatureSample, FeatureSet};
use crate::drift::multivariate::MultivariateModel;
use crate::drift::sequential::{Cusum, PageHinkley};
use crate::drift::stats::{mean, std};
use crate::session::EpochMs;

/// Rows a baseline keeps: a 10,000-session reference.
pub const BASELINE_ROWS: usize = 10_000;
/// The stored value format written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Which baseline: a drift objective of a spec, and an agent's prompt version and model
/// (optionally one segment of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BaselineKey {
    pub spec: String,
    pub objective: String,
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    pub segment: Option<String>,
}

impl BaselineKey {
    /// `support-bot-prod/drift/support-bot/sp-v1/m-2026-09[/channel=web]`: the name used by
    /// `slawatch baseline` and in findings; also the sled key.
    pub fn label(&self) -> String {
        let mut s = format!(
            "{}/{}/{}/{}/{}",
            self.spec, self.objective, self.agent, self.prompt_version, self.model
        );
        if let Some(seg) = &self.segment {
            s.push('/');
            s.push_str(seg);
        }
        s
    }

    /// Whether `other` is a different version (prompt or model) of the same agent, objective
    /// and segment: a baseline this one may be compared against before it has its own.
    pub fn is_predecessor_candidate(&self, other: &BaselineKey) -> bool {
        self.spec == other.spec
            && self.objective == other.objective
            && self.agent == other.agent
            && self.segment == other.segment
            && (self.prompt_version != other.prompt_version || self.model != other.model)
    }
}

/// Where a baseline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStatus {
    /// Accumulating sessions until `minSamples` and `minDuration`.
    Learning,
    /// The reference for comparisons.
    Frozen,
    /// Frozen by hand: never re-learned until reset.
    Pinned,
}

/// Reference statistics and running state of the sequential detectors for one numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    pub column: usize,
    pub mean: f64,
    pub std: f64,
    pub cusum: Cusum,
    pub page_hinkley: PageHinkley,
}

/// One baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub key: BaselineKey,
    pub status: BaselineStatus,
    /// Event time of the first and latest window learned.
    pub first_event: EpochMs,
    pub last_event: EpochMs,
    pub frozen_at: Option<EpochMs>,
    /// The reference (or, while learning, what has been learned so far).
    pub sample: FeatureSample,
    /// While frozen with `relearnEvery`: the next reference, learning from recent traffic.
    pub next: Option<(EpochMs, FeatureSample)>,
    /// Fitted at freeze when the objective asks for multivariate drift and rows suffice.
    pub multivariate: Option<MultivariateModel>,
    pub sequential: Vec<SequentialState>,
}

/// How a baseline learns: `minSamples`, `minDuration`, `relearnEvery`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    pub min_samples: u64,
    pub min_duration_ms: i64,
    pub relearn_every_ms: Option<i64>,
    pub multivariate: bool,
    pub sequential: bool,
}

impl Baseline {
    pub fn new(key: BaselineKey, set: &FeatureSet, at: EpochMs) -> Baseline {
        Baseline {
            key,
            status: BaselineStatus::Learning,
            first_event: at,
            last_event: at,
            frozen_at: None,
            sample: FeatureSample::new(set, BASELINE_ROWS),
            next: None,
            multivariate: None,
            sequential: Vec::new(),
        }
    }

    /// Whether comparisons may use this baseline as the reference.
    pub fn is_reference(&self) -> bool {
        self.status != BaselineStatus::Learning
    }

    /// Learns one window step of sessions (never overlapping steps, so nothing counts twice)
    /// that ended at `at`. Returns true when the baseline changed status (froze or re-learned).
    pub fn learn(
        &mut self,
        step: &FeatureSample,
        set: &FeatureSet,
        at: EpochMs,
        life: &Lifecycle,
    ) -> bool {
        match self.status {
            BaselineStatus::Pinned => false,
            BaselineStatus::Learning => {
                self.sample.merge(step);
                self.last_event = at;
                if self.sample.sessions >= life.min_samples
                    && at - self.first_event >= life.min_duration_ms
                {
                    self.freeze(set, at, life);
                    return true;
                }
                false
            }
            BaselineStatus::Frozen => {
                let Some(every) = life.relearn_every_ms else {
                    return false;
                };
                let next = self
                    .next
                    .get_or_insert_with(|| (at, FeatureSample::new(set, BASELINE_ROWS)));
                next.1.merge(step);
                let due = self.frozen_at.is_some_and(|f| at - f >= every);
                if due && next.1.sessions >= life.min_samples && at - next.0 >= life.min_duration_ms
                {
                    let (first, sample) = self.next.take().expect("just inserted");
                    self.sample = sample;
                    self.first_event = first;
                    self.freeze(set, at, life);
                    return true;
                }
                false
            }
        }
    }

    /// Freezes now: fits the multivariate model and the sequential references.
    pub fn freeze(&mut self, set: &FeatureSet, at: EpochMs, life: &Lifecycle) {
        self.status = BaselineStatus::Frozen;
        self.frozen_at = Some(at);
        self.last_event = at;
        self.multivariate = None;
        if life.multivariate {
            self.multivariate = crate::drift::multivariate_fit(&self.sample, set, life.min_samples);
        }
        self.sequential.clear();
        if life.sequential {
            for col in 0..set.numeric.len() {
                let values = self.sample.column(col);
                if let (Some(m), Some(sd)) = (mean(&values), std(&values))
                    && sd > 0.0
                    && let (Some(cusum), Some(ph)) =
                        (Cusum::new(0.0, 1.0), PageHinkley::new(0.005, 50.0))
                {
                    self.sequential.push(SequentialState {
                        column: col,
                        mean: m,
                        std: sd,
                        cusum,
                        page_hinkley: ph,
                    });
                }
            }
        }
    }

    /// Pins the baseline: it stays the reference until reset.
    pub fn pin(&mut self, set: &FeatureSet, at: EpochMs, life: &Lifecycle) {
        if self.status == BaselineStatus::Learning {
            self.freeze(set, at, life);
        }
        self.status = BaselineStatus::Pinned;
        self.next = None;
    }
}

/// The stored form: a format version and the baseline.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    baseline: serde_json::Value,
}

/// Errors reading a stored baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineFormatError {
    #[error("stored baseline has format {found}; this build reads up to {FORMAT_VERSION}")]
    TooNew { found: u32 },
    #[error("stored baseline is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// [`Stored`] as written: the baseline serialized in place (the same JSON, in field order,
/// without first building a [`serde_json::Value`] of its samples and dropping it again).
#[derive(Serialize)]
struct StoredRef<'a> {
    format: u32,
    baseline: &'a Baseline,
}

/// Encodes a baseline in the current format.
pub fn encode(b: &Baseline) -> Vec<u8> {
    serde_json::to_vec(&StoredRef {
        format: FORMAT_VERSION,
        baseline: b,
    })
    .expect("baselines serialize")
}

/// Decodes a stored baseline of any known format, migrating older formats forward.
pub fn decode(bytes: &[u8]) -> Result<Baseline, BaselineFormatError> {
    let stored: Stored = serde_json::from_slice(bytes)?;
    match stored.format {
        // Format 1 is the current one. A future format 2 adds a `migrate_v1` step here that
        // rewrites the v1 JSON value before deserializing, so old data directories keep working.
        1 => Ok(serde_json::from_value(stored.baseline)?),
        found => Err(BaselineFormatError::TooNew { found }),
    }
}
