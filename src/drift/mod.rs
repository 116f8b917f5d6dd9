//! Behavioural drift: did the agent's behaviour change after a prompt update or a silent model
//! swap? Statistics ([`stats`]), sequential detectors ([`sequential`]), multivariate detectors
//! ([`multivariate`]), features and samples ([`features`]), baselines ([`baseline`]) and the
//! per-window evaluation ([`engine`]); [`DriftRuntime`] ties them to a spec's drift objectives.
//! No I/O, no wall clock: baselines are handed in and out as data.

pub mod baseline;
pub mod engine;
pub mod features;
pub mod multivariate;
pub mod sequential;
pub mod stats;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ndarray::Array2;

use crate::finding::{Chart, DriftReport, FeatureResult, FeatureVerdict};
use crate::session::EpochMs;
use baseline::{Baseline, BaselineKey};
use engine::{
    Baselines, DriftConfig, Pending, ReferenceColumn, compare_prepared, decide, reference_for,
    step_z,
};
use features::{FeatureSample, FeatureSet};
use multivariate::{MultivariateModel, MultivariateParams};

/// Rows a window keeps per key for drift tests (a bottom-k sample by session id hash).
pub const WINDOW_ROWS: usize = 5_000;

/// Fits the multivariate model on a baseline sample. Reference chunks are at most the size of
/// the smallest window that is compared (`min_samples`) — NannyML sizes reference and analysis
/// chunks alike — and at least NannyML's ten, so a small reference gives a wider, conservative
/// band rather than a noisy one.
pub fn multivariate_fit(
    sample: &FeatureSample,
    set: &FeatureSet,
    min_samples: u64,
) -> Option<MultivariateModel> {
    let rows = to_matrix(sample)?;
    let chunks = (rows.nrows() / (min_samples.max(2) as usize)).clamp(10, 200);
    // Windows vary in size (night and day traffic), so the band is scaled to each window's
    // row count instead of assuming windows as large as a reference chunk.
    let params = MultivariateParams {
        chunks,
        window_adjusted_band: true,
        ..MultivariateParams::default()
    };
    multivariate::fit(&rows, &set.column_names(), &params).ok()
}

/// The sample's rows as a matrix for the multivariate detectors. Token counts, durations and
/// costs are heavy-tailed; `ln(1 + x)` keeps one runaway session from dominating a window's
/// mean reconstruction error (every feature here is ≥ 0; 0/1 columns map to 0/ln 2).
pub fn to_matrix(sample: &FeatureSample) -> Option<Array2<f64>> {
    let cols = sample.rows.first()?.values.len();
    if cols == 0 {
        return None;
    }
    let flat: Vec<f64> = sample
        .rows
        .iter()
        .flat_map(|r| {
            r.values
                .iter()
                .map(|v| if *v >= 0.0 { v.ln_1p() } else { *v })
        })
        .collect();
    Array2::from_shape_vec((sample.rows.len(), cols), flat).ok()
}

/// One drift objective's evaluation of one window for one key (and segment).
#[derive(Debug, Clone)]
pub struct WindowDrift {
    /// Index of the closed window in the batch handed to [`DriftRuntime::evaluate`].
    pub window: usize,
    /// `None` when there is no baseline to compare against yet.
    pub report: Option<DriftReport>,
    /// Sessions learned so far by the key's own baseline (for "learning" messages).
    pub learning: Option<(u64, u64)>,
    pub chart: Option<Chart>,
}

/// A closed window as the drift runtime needs it.
pub struct DriftInput<'a> {
    pub key: BaselineKey,
    pub end: EpochMs,
    pub step_ms: i64,
    /// All sessions of the window.
    pub window: &'a FeatureSample,
    /// Only the newest step (what no earlier window saw): what baselines learn.
    pub newest_step: &'a FeatureSample,
}

/// A spec's drift objective with the baselines it owns.
pub struct DriftRuntime {
    pub config: DriftConfig,
    baselines: Baselines,
    dirty: BTreeSet<BaselineKey>,
    /// The numeric columns of each baseline used as a reference, prepared once
    /// ([`ReferenceColumn`]). Derived, never stored: an entry is dropped whenever its baseline's
    /// sample may change (it learns a new reference, is edited by hand, or is restored), and is
    /// checked against the sample's [`SampleStamp`] before use.
    prepared: HashMap<BaselineKey, (SampleStamp, Arc<[ReferenceColumn]>)>,
}

/// What identifies a reference sample's contents cheaply: a frozen sample only changes when the
/// baseline freezes again (a new `frozen_at`) or is replaced by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SampleStamp {
    frozen_at: Option<EpochMs>,
    sessions: u64,
    rows: usize,
}

impl SampleStamp {
    fn of(b: &Baseline) -> SampleStamp {
        SampleStamp {
            frozen_at: b.frozen_at,
            sessions: b.sample.sessions,
            rows: b.sample.rows.len(),
        }
    }
}

impl DriftRuntime {
    pub fn new(config: DriftConfig) -> DriftRuntime {
        DriftRuntime {
            config,
            baselines: Baselines::new(),
            dirty: BTreeSet::new(),
            prepared: HashMap::new(),
        }
    }

    /// An empty window sample for this objective's features.
    pub fn empty_sample(&self) -> FeatureSample {
        FeatureSample::new(&self.config.set, WINDOW_ROWS)
    }

    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// Installs baselines restored from storage.
    pub fn restore(&mut self, baselines: impl IntoIterator<Item = Baseline>) {
        self.prepared.clear();
        for b in baselines {
            self.baselines.insert(b.key.clone(), b);
        }
    }

    /// Baselines changed since the last call (to persist).
    pub fn take_dirty(&mut self) -> Vec<Baseline> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|k| self.baselines.get(&k).cloned())
            .collect()
    }

    /// Evaluates a batch of windows that closed together: compares each against its reference,
    /// corrects across the batch, runs the sequential detectors, then lets every key's
    /// baseline learn the batch's newest steps.
    pub fn evaluate(&mut self, batch: &[DriftInput<'_>]) -> Vec<WindowDrift> {
        let cfg = &self.config;
        let mut pending: Vec<Vec<Pending>> = Vec::with_capacity(batch.len());
        let mut refs: Vec<Option<(String, bool)>> = Vec::with_capacity(batch.len());
        for w in batch {
            match reference_for(&self.baselines, &w.key) {
                Some((reference, predecessor)) => {
                    let stamp = SampleStamp::of(reference);
                    let columns = match self.prepared.get(&reference.key) {
                        Some((at, columns)) if *at == stamp => columns.clone(),
                        _ => {
                            let columns: Arc<[ReferenceColumn]> =
                                ReferenceColumn::all(cfg, &reference.sample).into();
                            self.prepared
                                .insert(reference.key.clone(), (stamp, columns.clone()));
                            columns
                        }
                    };
                    let mut tests = compare_prepared(cfg, &reference.sample, &columns, w.window);
                    if let Some(model) = &reference.multivariate {
                        tests.extend(multivariate_tests(cfg, model, w.window));
                    }
                    pending.push(tests);
                    refs.push(Some((reference.key.label(), predecessor)));
                }
                None => {
                    pending.push(Vec::new());
                    refs.push(None);
                }
            }
        }
        decide(&mut pending);

        let mut out = Vec::with_capacity(batch.len());
        for (i, (w, (tests, reference))) in
            batch.iter().zip(pending.into_iter().zip(refs)).enumerate()
        {
            let mut features: Vec<FeatureResult> = tests.into_iter().map(|p| p.result).collect();
            // Sequential detectors follow the key's own frozen baseline, one observation per
            // step (steps never overlap).
            if let Some(own) = self.baselines.get_mut(&w.key)
                && own.is_reference()
            {
                for st in &mut own.sequential {
                    let values = w.newest_step.column(st.column);
                    if values.is_empty() {
                        continue;
                    }
                    let Some(z) = step_z(&values, st.mean, st.std) else {
                        continue;
                    };
                    let name = cfg.set.column_names()[st.column].clone();
                    for (test, alarm) in [
                        ("cusum", st.cusum.update(z)),
                        ("page_hinkley", st.page_hinkley.update(z)),
                    ] {
                        if let Some(a) = alarm {
                            features.push(FeatureResult {
                                feature: name.clone(),
                                test: test.to_owned(),
                                statistic: a.statistic,
                                p_value: None,
                                p_adjusted: None,
                                effect_size: None,
                                effect: format!(
                                    "{:?} shift after {} steps",
                                    a.direction, a.run_length
                                ),
                                reference: format!("mean {}", crate::present::fmt_num(st.mean)),
                                current: format!(
                                    "mean {}",
                                    crate::present::fmt_num(
                                        stats::mean(&values).unwrap_or(f64::NAN)
                                    )
                                ),
                                n_reference: own.sample.sessions,
                                n_current: values.len() as u64,
                                verdict: FeatureVerdict::Drift,
                            });
                        }
                    }
                }
                self.dirty.insert(w.key.clone());
            }
            let chart = reference.as_ref().and_then(|_| {
                let r = reference_for(&self.baselines, &w.key)?.0;
                chart_for(cfg, &features, &r.sample, w.window)
            });
            out.push(WindowDrift {
                window: i,
                report: reference.map(|(baseline, predecessor)| DriftReport {
                    baseline,
                    predecessor,
                    rule: cfg.spec.test.clone(),
                    features,
                }),
                learning: None,
                chart,
            });
        }

        for (w, o) in batch.iter().zip(&mut out) {
            let set = &self.config.set;
            let life = &self.config.life;
            let b = self
                .baselines
                .entry(w.key.clone())
                .or_insert_with(|| Baseline::new(w.key.clone(), set, w.end - w.step_ms));
            if b.learn(w.newest_step, set, w.end, life) || !b.is_reference() {
                self.prepared.remove(&w.key);
            }
            if !b.is_reference() {
                o.learning = Some((b.sample.sessions, life.min_samples));
            }
            self.dirty.insert(w.key.clone());
        }
        out
    }

    /// Pins, resets or replaces a baseline by hand (`slawatch baseline`).
    pub fn baseline_mut(&mut self, key: &BaselineKey) -> Option<&mut Baseline> {
        self.dirty.insert(key.clone());
        self.prepared.remove(key);
        self.baselines.get_mut(key)
    }
}

/// PCA reconstruction error (threshold rule) and the behaviour-cluster mix (χ² in the BH
/// family) of a window against the reference model.
fn multivariate_tests(
    cfg: &DriftConfig,
    model: &MultivariateModel,
    window: &FeatureSample,
) -> Vec<Pending> {
    let Some(rows) = to_matrix(window) else {
        return Vec::new();
    };
    if (rows.nrows() as u64) < cfg.spec.min_samples {
        return Vec::new();
    }
    let Ok(r) = model.score(&rows) else {
        return Vec::new();
    };
    let n = (model_reference_rows(model), r.n_current as u64);
    let relative = (r.reconstruction_error - mid(r.lower_threshold, r.upper_threshold))
        / mid(r.lower_threshold, r.upper_threshold).max(1e-12);
    let pca = Pending {
        result: FeatureResult {
            feature: "behavior (all features)".into(),
            test: "pca_reconstruction".into(),
            statistic: r.reconstruction_error,
            p_value: None,
            p_adjusted: None,
            effect_size: Some(relative),
            effect: "relative error increase".into(),
            reference: format!("error ≤ {}", crate::present::fmt_num(r.upper_threshold)),
            current: format!("error {}", crate::present::fmt_num(r.reconstruction_error)),
            n_reference: n.0,
            n_current: n.1,
            // NannyML's rule (above mean + 3σ of reference chunks) and a relative increase of
            // at least twice the effect floor: the band alone is narrow at large n.
            verdict: if r.pca_drift && relative >= 2.0 * cfg.spec.effect_size {
                FeatureVerdict::Drift
            } else {
                FeatureVerdict::NoDrift
            },
        },
        rule: None,
    };
    let js = stats::js_distance(&r.reference_mix, &r.current_mix);
    let clusters = Pending {
        result: FeatureResult {
            feature: "behavior clusters".into(),
            test: "cluster_mix".into(),
            statistic: r.cluster_chi2,
            p_value: Some(r.cluster_p_value),
            p_adjusted: None,
            effect_size: js,
            effect: "js_distance".into(),
            reference: mix_summary(&r.reference_mix),
            current: mix_summary(&r.current_mix),
            n_reference: n.0,
            n_current: n.1,
            verdict: FeatureVerdict::NoDrift,
        },
        rule: Some(engine::PendingRule {
            alpha: cfg.spec.p_value,
            floor: Some(cfg.spec.effect_size),
            corrected: true,
        }),
    };
    vec![pca, clusters]
}

fn model_reference_rows(model: &MultivariateModel) -> u64 {
    model.n_reference as u64
}

/// Counts as shares of their total.
pub fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

fn mid(lo: f64, hi: f64) -> f64 {
    (lo + hi) / 2.0
}

fn mix_summary(mix: &[f64]) -> String {
    mix.iter()
        .map(|s| crate::present::pct(*s))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The chart of the most drifted feature: a numeric distribution on shared bins, or category
/// shares.
fn chart_for(
    cfg: &DriftConfig,
    features: &[FeatureResult],
    reference: &FeatureSample,
    current: &FeatureSample,
) -> Option<Chart> {
    let top = features
        .iter()
        .filter(|f| f.verdict == FeatureVerdict::Drift)
        .max_by(|a, b| {
            a.effect_size
                .unwrap_or(0.0)
                .total_cmp(&b.effect_size.unwrap_or(0.0))
        })?;
    if let Some(col) = cfg.set.numeric.iter().position(|f| f.name() == top.feature) {
        let h = stats::shared_histogram(&reference.column(col), &current.column(col), 20)?;
        return Some(Chart::Distribution {
            feature: top.feature.clone(),
            edges: h.edges,
            reference: shares(&h.reference),
            current: shares(&h.current),
        });
    }
    if let Some(i) = cfg.set.binary.iter().position(|f| f.name() == top.feature) {
        let share = |(t, n): (u64, u64)| if n == 0 { 0.0 } else { t as f64 / n as f64 };
        let (r, c) = (share(reference.binary[i]), share(current.binary[i]));
        return Some(Chart::Categories {
            feature: top.feature.clone(),
            labels: vec!["no".into(), "yes".into()],
            reference: vec![1.0 - r, r],
            current: vec![1.0 - c, c],
        });
    }
    let i = cfg
        .set
        .categorical
        .iter()
        .position(|f| f.name() == top.feature)?;
    let (labels, r, c, _) = reference.aligned_categorical(current, i);
    let norm = |v: &[f64]| {
        let total: f64 = v.iter().sum();
        v.iter().map(|x| x / total.max(1.0)).collect::<Vec<_>>()
    };
    Some(Chart::Categories {
        feature: top.feature.clone(),
        reference: norm(&r),
        current: norm(&c),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::features::{Row, RowValues};

    fn config() -> DriftConfig {
        DriftConfig::new(&crate::spec::model::DriftSpec {
            features: vec!["output_tokens".into()],
            p_value: 0.01,
            p_value_explicit: true,
            false_alarms: crate::spec::model::FalseAlarmBudget::DEFAULT,
            min_samples: 10,
            test: "auto".into(),
            effect_size: 0.1,
            baseline_min_duration_ms: 0,
            relearn_every_ms: None,
            multivariate: false,
            sequential: false,
            ks_exact: false,
        })
    }

    fn sample(cfg: &DriftConfig, values: impl Iterator<Item = f64>) -> FeatureSample {
        let mut s = FeatureSample::new(&cfg.set, 10_000);
        for (i, v) in values.enumerate() {
            s.rows.push(Row {
                hash: i as u64,
                values: RowValues::from_slice(&[v]),
            });
        }
        s.sessions = s.rows.len() as u64;
        s
    }

    fn key() -> BaselineKey {
        BaselineKey {
            spec: "s".into(),
            objective: "drift".into(),
            agent: "a".into(),
            prompt_version: "p1".into(),
            model: "m".into(),
            segment: None,
        }
    }

    fn report(rt: &mut DriftRuntime, window: &FeatureSample) -> String {
        let empty = rt.empty_sample();
        let out = rt.evaluate(&[DriftInput {
            key: key(),
            end: 3_600_000,
            step_ms: 900_000,
            window,
            newest_step: &empty,
        }]);
        format!("{:?}", out[0].report)
    }

    /// A stored baseline reads back equal, and one written by the earlier encoder (through a
    /// `serde_json::Value`, so with its keys sorted) reads back the same.
    #[test]
    fn a_stored_baseline_reads_back_whichever_encoder_wrote_it() {
        let mut cfg = config();
        cfg.life.sequential = true;
        let mut b = Baseline::new(key(), &cfg.set, 0);
        b.sample = sample(&cfg, (0..400).map(|i| f64::from(i % 97) * 0.1 + 1e-9));
        b.freeze(&cfg.set, 7, &cfg.life);
        assert!(!b.sequential.is_empty());
        let now = crate::drift::baseline::encode(&b);
        assert_eq!(crate::drift::baseline::decode(&now).unwrap(), b);
        let earlier = serde_json::to_vec(&serde_json::json!({
            "format": 1,
            "baseline": serde_json::to_value(&b).unwrap(),
        }))
        .unwrap();
        assert_ne!(earlier, now, "the earlier encoder sorted the keys");
        assert_eq!(crate::drift::baseline::decode(&earlier).unwrap(), b);
    }

    /// The prepared reference columns are reused while the reference stays, and never outlive
    /// it: a baseline replaced by hand with a sample of the same size and freeze time (which
    /// the stamp alone would not tell apart) is compared as a fresh runtime compares it.
    #[test]
    fn prepared_reference_columns_follow_a_baseline_edited_by_hand() {
        let cfg = config();
        let mut rt = DriftRuntime::new(cfg.clone());
        let mut b = Baseline::new(key(), &cfg.set, 0);
        b.sample = sample(&cfg, (0..400).map(|i| f64::from(i % 97)));
        b.freeze(&cfg.set, 1, &cfg.life);
        rt.restore([b.clone()]);
        let window = sample(&cfg, (0..150).map(|i| f64::from(i % 89) + 3.0));
        let first = report(&mut rt, &window);
        assert!(first.contains("p_value: Some("), "{first}");
        assert_eq!(first, report(&mut rt, &window));

        let shifted = sample(&cfg, (0..400).map(|i| f64::from(i % 97) + 40.0));
        rt.baseline_mut(&key()).unwrap().sample = shifted.clone();
        let after = report(&mut rt, &window);
        b.sample = shifted;
        let mut fresh = DriftRuntime::new(cfg.clone());
        fresh.restore([b]);
        assert_eq!(after, report(&mut fresh, &window));
        assert_ne!(after, first);
    }
}
