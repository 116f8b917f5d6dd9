//! The drift evaluation of one window batch: which baseline each key is compared against, the
//! test per feature, Benjamini–Hochberg across every feature × segment of the batch, effect-size
//! floors, sequential detectors, and the resulting findings.
//!
//! Rules (`drift.test`):
//! - `auto` (slawatch's default): numeric features by two-sample KS, rates by a two-proportion
//!   z-test — or Fisher's exact test when an expected count of the 2×2 table is below 5
//!   (Cochran's rule: there the normal approximation makes rare-rate p-values far too small) —
//!   categories by χ² per session (divided by the design effect of labels clustered in
//!   sessions, see `categorical`); p-values are BH-corrected across the window's whole family of
//!   tests. A feature drifts when its corrected p-value is below `pValue` **and** its effect
//!   size reaches the floor of its family ([`effect_floor`], at every n: normalised
//!   Wasserstein ≥ `effectSize`; Cohen's h ≥ 2·`effectSize`, Cohen's "small"; Jensen–Shannon
//!   ≥ `effectSize`) — at large n every trivial shift is
//!   "significant", the top complaint about drift tools, and across the hundreds of windows of
//!   a day a significance level alone alarms on noise.
//! - `evidently`: Evidently's default rule (`get_default_stattest`), for comparison, checked
//!   against Evidently itself by `benches/peers/evidently_compare.py`: distinct values counted
//!   over both samples; reference ≤ 1000 values → KS for numeric with > 5 distinct values,
//!   goodness-of-fit χ² (`scipy.stats.chisquare` against reference shares) for > 2, z for two,
//!   at p < 0.05 uncorrected; larger → Wasserstein / max(σ, 0.001) ≥ 0.1 for numeric with > 5
//!   distinct values, Jensen–Shannon ≥ 0.1 on value or label shares otherwise.
//! - a fixed test (`ks`, `chisquare`, `z`, `psi`, `wasserstein`, `jensenshannon`,
//!   `hellinger`) for the features it applies to; the others use `auto`.
//!
//! Below `minSamples` on either side a feature is `insufficient_data`, never "no drift".
//! No I/O, no clock.

use std::collections::BTreeMap;

use crate::drift::baseline::{Baseline, BaselineKey, Lifecycle};
use crate::drift::features::{FeatureSample, FeatureSet};
use crate::drift::stats::{
    GofResult, KsPolicy, SortedSample, bh_adjust, chi2_contingency, chi2_sf, chisquare_gof,
    fisher_exact, hellinger, js_distance, js_distance_binned, ks_2samp_policy, pool_sparse,
    psi_sorted, small_expected_counts, two_proportion_ztest, wasserstein_sorted,
};
use crate::finding::{FeatureResult, FeatureVerdict};
use crate::spec::model::DriftSpec;

/// Reference sizes up to this use the small-sample branch of each rule (Evidently's cut-off).
pub const SMALL_REFERENCE: usize = 1000;
/// Bins of the shared histogram behind Jensen–Shannon/Hellinger on numeric features.
const NUMERIC_BINS: usize = 20;

/// How one drift objective compares.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    pub set: FeatureSet,
    pub spec: DriftSpec,
    pub life: Lifecycle,
}

impl DriftConfig {
    pub fn new(spec: &DriftSpec) -> DriftConfig {
        DriftConfig {
            set: FeatureSet::from_names(&spec.features),
            life: Lifecycle {
                min_samples: spec.min_samples,
                min_duration_ms: spec.baseline_min_duration_ms,
                relearn_every_ms: spec.relearn_every_ms,
                multivariate: spec.multivariate,
                sequential: spec.sequential,
            },
            spec: spec.clone(),
        }
    }
}

/// All baselines of a process, by key.
pub type Baselines = BTreeMap<BaselineKey, Baseline>;

/// The baseline a key is compared against: its own once frozen; before that, the most recently
/// frozen baseline of another version (prompt or model) of the same agent — the version it
/// replaced — so the first windows after a prompt update already answer "did behaviour change".
pub fn reference_for<'a>(
    baselines: &'a Baselines,
    key: &BaselineKey,
) -> Option<(&'a Baseline, bool)> {
    if let Some(own) = baselines.get(key).filter(|b| b.is_reference()) {
        return Some((own, false));
    }
    baselines
        .values()
        .filter(|b| b.is_reference() && key.is_predecessor_candidate(&b.key))
        .max_by_key(|b| (b.frozen_at, b.last_event))
        .map(|b| (b, true))
}

/// A test result before multiple-testing correction.
#[derive(Debug, Clone)]
pub struct Pending {
    pub result: FeatureResult,
    /// Decide after BH: `(alpha, needs effect floor, floor)`; `None` = decided already.
    pub rule: Option<PendingRule>,
}

#[derive(Debug, Clone, Copy)]
pub struct PendingRule {
    pub alpha: f64,
    /// The effect floor that must also be reached, at every n (see [`effect_floor`]).
    pub floor: Option<f64>,
    /// Whether the p-value joins the BH family (not under the `evidently` rule).
    pub corrected: bool,
}

/// A numeric column of a reference sample, prepared once for every window compared with it:
/// the reference side of a KS test is the same at each window close while the reference is
/// frozen, and extracting, summing and sorting its 10,000 values again each time was most of a
/// numeric test's cost outside the p-value.
#[derive(Debug, Clone)]
pub struct ReferenceColumn {
    /// Values in the column.
    len: u64,
    /// `np.std` of the values in sample order (0 when undefined).
    sd: f64,
    /// The values sorted; `None` when one is NaN (the feature is then insufficient).
    sorted: Option<SortedSample>,
}

impl ReferenceColumn {
    /// The numeric columns of `reference`, in the feature set's order.
    pub fn all(cfg: &DriftConfig, reference: &FeatureSample) -> Vec<ReferenceColumn> {
        (0..cfg.set.numeric.len())
            .map(|col| {
                let values = reference.column(col);
                ReferenceColumn {
                    len: values.len() as u64,
                    sd: crate::drift::stats::std(&values).unwrap_or(0.0),
                    sorted: SortedSample::from_vec(values),
                }
            })
            .collect()
    }
}

/// Compares a window's sample against a reference, feature by feature (before correction).
pub fn compare(
    cfg: &DriftConfig,
    reference: &FeatureSample,
    current: &FeatureSample,
) -> Vec<Pending> {
    compare_prepared(
        cfg,
        reference,
        &ReferenceColumn::all(cfg, reference),
        current,
    )
}

/// [`compare`] with the reference's numeric columns prepared by [`ReferenceColumn::all`]
/// (kept by the caller while the reference does not change).
pub fn compare_prepared(
    cfg: &DriftConfig,
    reference: &FeatureSample,
    columns: &[ReferenceColumn],
    current: &FeatureSample,
) -> Vec<Pending> {
    let mut out = Vec::new();
    let rule = cfg.spec.test.as_str();
    let min = cfg.spec.min_samples;
    let alpha = cfg.spec.p_value;
    let floor = cfg.spec.effect_size;
    for (col, f) in cfg.set.numeric.iter().enumerate() {
        let name = f.name().to_owned();
        let ks = if cfg.spec.ks_exact {
            KsPolicy::Scipy
        } else {
            KsPolicy::Budget
        };
        out.push(numeric(
            name,
            (&columns[col], || reference.column(col)),
            current.column(col),
            rule,
            ks,
            min,
            alpha,
            floor,
        ));
    }
    for (i, f) in cfg.set.binary.iter().enumerate() {
        let (rt, rn) = reference.binary[i];
        let (ct, cn) = current.binary[i];
        out.push(binary(
            f.name().to_owned(),
            (rt, rn),
            (ct, cn),
            rule,
            min,
            alpha,
            floor,
        ));
    }
    for (i, f) in cfg.set.categorical.iter().enumerate() {
        out.push(categorical(
            f.name(),
            reference.aligned_categorical(current, i),
            reference.sessions,
            current.sessions,
            rule,
            min,
            alpha,
            floor,
        ));
    }
    out
}

fn insufficient(feature: String, test: &str, n_ref: u64, n_cur: u64) -> Pending {
    Pending {
        result: FeatureResult {
            feature,
            test: test.to_owned(),
            statistic: 0.0,
            p_value: None,
            p_adjusted: None,
            effect_size: None,
            effect: String::new(),
            reference: format!("{n_ref} values"),
            current: format!("{n_cur} values"),
            n_reference: n_ref,
            n_current: n_cur,
            verdict: FeatureVerdict::InsufficientData,
        },
        rule: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn decided_or_pending(
    feature: String,
    test: &str,
    statistic: f64,
    p_value: Option<f64>,
    effect: (&str, Option<f64>),
    summaries: (String, String),
    n: (u64, u64),
    verdict_now: Option<bool>,
    rule: Option<PendingRule>,
) -> Pending {
    Pending {
        result: FeatureResult {
            feature,
            test: test.to_owned(),
            statistic,
            p_value,
            p_adjusted: None,
            effect_size: effect.1,
            effect: effect.0.to_owned(),
            reference: summaries.0,
            current: summaries.1,
            n_reference: n.0,
            n_current: n.1,
            verdict: match verdict_now {
                Some(true) => FeatureVerdict::Drift,
                _ => FeatureVerdict::NoDrift,
            },
        },
        rule: if verdict_now.is_some() { None } else { rule },
    }
}

/// A test family of slawatch's own rule, with its effect measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// KS; effect = Wasserstein distance / reference σ.
    Numeric,
    /// z or Fisher; effect = Cohen's h.
    Rate,
    /// χ² per session; effect = Jensen–Shannon distance.
    Categorical,
}

/// The effect floor of a family for `effectSize` — one meaning per family, at every n
/// (documented in `sla-specs/README.md`, whose table a test compares with this).
pub fn effect_floor(family: Family, effect_size: f64) -> f64 {
    match family {
        // Cohen's h doubles as the rate's floor: 0.2 is Cohen's "small" effect.
        Family::Rate => 2.0 * effect_size,
        Family::Numeric | Family::Categorical => effect_size,
    }
}

/// `reference` is the prepared column with a way to extract its values in sample order (only
/// the binned distances read them); `c` is a freshly extracted column, sorted in place after
/// everything that reads it in sample order.
#[allow(clippy::too_many_arguments)]
fn numeric(
    name: String,
    (reference, r_values): (&ReferenceColumn, impl FnOnce() -> Vec<f64>),
    c: Vec<f64>,
    rule: &str,
    ks_policy: KsPolicy,
    min: u64,
    alpha: f64,
    floor: f64,
) -> Pending {
    let (nr, nc) = (reference.len, c.len() as u64);
    if nr < min || nc < min {
        return insufficient(name, "ks", nr, nc);
    }
    let Some(rs) = reference.sorted.as_ref() else {
        return insufficient(name, "ks", nr, nc);
    };
    if c.iter().any(|v| v.is_nan()) {
        return insufficient(name, "ks", nr, nc);
    }
    let small = nr as usize <= SMALL_REFERENCE;
    let sd = reference.sd;
    let binned = match rule {
        "hellinger" => Some(
            crate::drift::stats::shared_histogram(&r_values(), &c, NUMERIC_BINS).and_then(|h| {
                hellinger(
                    &crate::drift::shares(&h.reference),
                    &crate::drift::shares(&h.current),
                )
            }),
        ),
        "jensenshannon" => Some(js_distance_binned(&r_values(), &c, NUMERIC_BINS)),
        _ => None,
    };
    let Some(cs) = SortedSample::from_vec(c) else {
        return insufficient(name, "ks", nr, nc);
    };
    let w = wasserstein_sorted(rs, &cs).unwrap_or(0.0);
    let w_norm = if sd > 0.0 {
        w / sd
    } else if w == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let summaries = (
        format!(
            "median {}",
            crate::present::fmt_num(rs.median().unwrap_or(f64::NAN))
        ),
        format!(
            "median {}",
            crate::present::fmt_num(cs.median().unwrap_or(f64::NAN))
        ),
    );
    match rule {
        "evidently" => {
            // Evidently's default rule (`get_default_stattest`): distinct values are counted
            // over reference and current together.
            let distinct = distinct_union(rs.as_slice(), cs.as_slice());
            let decided = |test: &str, statistic: f64, p: Option<f64>, drift: bool| {
                decided_or_pending(
                    name.clone(),
                    test,
                    statistic,
                    p,
                    ("wasserstein/σ", Some(w_norm)),
                    summaries.clone(),
                    (nr, nc),
                    Some(drift),
                    None,
                )
            };
            if small && distinct > 5 {
                // scipy's `ks_2samp` default, whatever the cost, as Evidently calls it.
                let ks = ks_2samp_policy(rs, &cs, KsPolicy::Scipy);
                let p = ks.as_ref().map(|k| k.p_value);
                decided(
                    "ks",
                    ks.map_or(0.0, |k| k.statistic),
                    p,
                    p.is_some_and(|p| p < 0.05),
                )
            } else if small && distinct > 2 {
                let (labels_r, labels_c) =
                    (value_counts(rs.as_slice()), value_counts(cs.as_slice()));
                let (rv, cv) = on_one_axis(&labels_r, &labels_c);
                let gof = evidently_chisquare(&rv, &cv);
                let p = gof.map(|g| g.p_value);
                let stat = gof.map_or(0.0, |g| g.statistic);
                decided(
                    "chisquare",
                    if stat.is_finite() { stat } else { 0.0 },
                    p,
                    p.is_some_and(|p| p < 0.05),
                )
            } else if small {
                let low = rs
                    .as_slice()
                    .first()
                    .copied()
                    .unwrap_or(0.0)
                    .min(cs.as_slice().first().copied().unwrap_or(0.0));
                let count = |v: &[f64]| v.iter().filter(|x| **x == low).count() as f64;
                let z = if distinct <= 1 {
                    None
                } else {
                    two_proportion_ztest(
                        count(rs.as_slice()),
                        nr as f64,
                        count(cs.as_slice()),
                        nc as f64,
                    )
                };
                // One value, the same on both sides: Evidently's p = 1.
                let p = Some(z.map_or(1.0, |z| z.p_value));
                decided("z", z.map_or(0.0, |z| z.z), p, p.is_some_and(|p| p < 0.05))
            } else if distinct > 5 {
                // Evidently normalises by max(np.std(reference), 0.001).
                let w_ev = w / sd.max(0.001);
                decided("wasserstein", w_ev, None, w_ev >= 0.1)
            } else {
                // Few distinct values: Jensen–Shannon on the shares of each value.
                let (labels_r, labels_c) =
                    (value_counts(rs.as_slice()), value_counts(cs.as_slice()));
                let (rv, cv) = on_one_axis(&labels_r, &labels_c);
                let d = js_distance(&rv, &cv);
                decided(
                    "jensenshannon",
                    d.unwrap_or(0.0),
                    None,
                    d.is_some_and(|d| d >= 0.1),
                )
            }
        }
        "psi" => {
            let psi = psi_sorted(rs, &cs);
            let drift = psi.as_ref().is_some_and(|p| p.psi >= p.threshold);
            decided_or_pending(
                name,
                "psi",
                psi.as_ref().map_or(0.0, |p| p.psi),
                None,
                ("psi threshold", psi.map(|p| p.threshold)),
                summaries,
                (nr, nc),
                Some(drift),
                None,
            )
        }
        "wasserstein" => decided_or_pending(
            name,
            "wasserstein",
            w_norm,
            None,
            ("wasserstein/σ", Some(w_norm)),
            summaries,
            (nr, nc),
            Some(w_norm >= floor),
            None,
        ),
        "jensenshannon" | "hellinger" => {
            let d = binned.flatten();
            decided_or_pending(
                name,
                rule,
                d.unwrap_or(0.0),
                None,
                (rule, d),
                summaries,
                (nr, nc),
                Some(d.is_some_and(|d| d >= floor)),
                None,
            )
        }
        _ => {
            let ks = ks_2samp_policy(rs, &cs, ks_policy);
            decided_or_pending(
                name,
                "ks",
                ks.as_ref().map_or(0.0, |k| k.statistic),
                ks.as_ref().map(|k| k.p_value),
                ("wasserstein/σ", Some(w_norm)),
                summaries,
                (nr, nc),
                ks.is_none().then_some(false),
                Some(PendingRule {
                    alpha,
                    floor: Some(effect_floor(Family::Numeric, floor)),
                    corrected: true,
                }),
            )
        }
    }
}

fn binary(
    name: String,
    (rt, rn): (u64, u64),
    (ct, cn): (u64, u64),
    rule: &str,
    min: u64,
    alpha: f64,
    floor: f64,
) -> Pending {
    if rn < min || cn < min {
        return insufficient(name, "z", rn, cn);
    }
    let (pr, pc) = (rt as f64 / rn as f64, ct as f64 / cn as f64);
    let h = (2.0 * pc.sqrt().asin() - 2.0 * pr.sqrt().asin()).abs();
    let summaries = (crate::present::pct(pr), crate::present::pct(pc));
    let z = two_proportion_ztest(ct as f64, cn as f64, rt as f64, rn as f64);
    // Current window first, as the z-test: [[true, false] current, [true, false] reference].
    let table = [[ct, cn - ct], [rt, rn - rt]];
    let small = rn as usize <= SMALL_REFERENCE;
    match rule {
        "evidently" if small => {
            let p = z.map(|z| z.p_value);
            decided_or_pending(
                name,
                "z",
                z.map_or(0.0, |z| z.z),
                p,
                ("cohen_h", Some(h)),
                summaries,
                (rn, cn),
                Some(p.is_some_and(|p| p < 0.05)),
                None,
            )
        }
        "evidently" | "jensenshannon" | "hellinger" => {
            let (p, q) = ([1.0 - pr, pr], [1.0 - pc, pc]);
            let (test, d) = if rule == "hellinger" {
                ("hellinger", hellinger(&p, &q))
            } else {
                ("jensenshannon", js_distance(&p, &q))
            };
            let limit = if rule == "evidently" { 0.1 } else { floor };
            decided_or_pending(
                name,
                test,
                d.unwrap_or(0.0),
                None,
                (test, d),
                summaries,
                (rn, cn),
                Some(d.is_some_and(|d| d >= limit)),
                None,
            )
        }
        _ if rule != "z" && small_expected_counts(table) => {
            let fisher = fisher_exact(table);
            decided_or_pending(
                name,
                "fisher",
                // The odds ratio; 0 stands in for an infinite or undefined one (JSON has no ∞).
                fisher
                    .and_then(|f| f.odds_ratio)
                    .filter(|o| o.is_finite())
                    .unwrap_or(0.0),
                Some(fisher.map_or(1.0, |f| f.p_value)),
                ("cohen_h", Some(h)),
                summaries,
                (rn, cn),
                None,
                Some(PendingRule {
                    alpha,
                    floor: Some(effect_floor(Family::Rate, floor)),
                    corrected: true,
                }),
            )
        }
        _ => decided_or_pending(
            name,
            "z",
            z.map_or(0.0, |z| z.z),
            Some(z.map_or(1.0, |z| z.p_value)),
            ("cohen_h", Some(h)),
            summaries,
            (rn, cn),
            None,
            Some(PendingRule {
                alpha,
                floor: Some(effect_floor(Family::Rate, floor)),
                corrected: true,
            }),
        ),
    }
}

/// `aligned`: labels, reference and current counts on one axis, and the design effect of
/// labels clustered in sessions (see [`FeatureSample::aligned_categorical`]).
#[allow(clippy::too_many_arguments)]
fn categorical(
    name: String,
    (labels, rv, cv, deff): (Vec<String>, Vec<f64>, Vec<f64>, f64),
    r_sessions: u64,
    c_sessions: u64,
    rule: &str,
    min: u64,
    alpha: f64,
    floor: f64,
) -> Pending {
    if r_sessions < min || c_sessions < min {
        return insufficient(name, "chisquare", r_sessions, c_sessions);
    }
    let labels: Vec<&String> = labels.iter().collect();
    let (rs, cs): (f64, f64) = (rv.iter().sum(), cv.iter().sum());
    if rs == 0.0 || cs == 0.0 {
        return insufficient(name, "chisquare", rs as u64, cs as u64);
    }
    let p: Vec<f64> = rv.iter().map(|v| v / rs).collect();
    let q: Vec<f64> = cv.iter().map(|v| v / cs).collect();
    let js = js_distance(&p, &q);
    let summaries = (top_shares(&labels, &p), top_shares(&labels, &q));
    // Sparse categories pooled first (Cochran's rule, see `pool_sparse`).
    let (pr, pc) = pool_sparse(&rv, &cv);
    let chi = chi2_contingency(&[pr, pc], true);
    // slawatch's own rule tests sessions, not labels: the labels of one session (the calls of
    // `tool_mix`) are not independent draws, and counting each as one makes p-values far too
    // small. Dividing Pearson's statistic by the design effect Σm²/Σm (m = labels per session)
    // is the first-order Rao–Scott correction at the worst case of every label of a session
    // being alike — conservative, and exactly 1 for one-label-per-session features.
    let chi_sessions = chi.as_ref().map(|c| {
        let statistic = c.statistic / deff;
        (
            statistic,
            chi2_sf(statistic, c.dof as f64)
                .filter(|_| c.dof > 0)
                .unwrap_or(1.0),
        )
    });
    let small = r_sessions as usize <= SMALL_REFERENCE;
    let n = (rs as u64, cs as u64);
    match rule {
        "evidently" if small => {
            // Evidently: goodness-of-fit χ² of current counts against reference counts scaled to
            // the current total (no Yates, no per-session correction); z for two labels.
            let (test, stat, pv) = if labels.len() > 2 {
                let gof = evidently_chisquare(&rv, &cv);
                let stat = gof.map_or(0.0, |g| g.statistic);
                (
                    "chisquare",
                    if stat.is_finite() { stat } else { 0.0 },
                    gof.map(|g| g.p_value),
                )
            } else if labels.len() == 2 {
                let z = two_proportion_ztest(rv[0], rs, cv[0], cs);
                (
                    "z",
                    z.map_or(0.0, |z| z.z),
                    Some(z.map_or(1.0, |z| z.p_value)),
                )
            } else {
                ("z", 0.0, Some(1.0))
            };
            decided_or_pending(
                name,
                test,
                stat,
                pv,
                ("js_distance", js),
                summaries,
                n,
                Some(pv.is_some_and(|p| p < 0.05)),
                None,
            )
        }
        "evidently" => decided_or_pending(
            name,
            "jensenshannon",
            js.unwrap_or(0.0),
            None,
            ("js_distance", js),
            summaries,
            n,
            Some(js.is_some_and(|d| d >= 0.1)),
            None,
        ),
        "jensenshannon" => decided_or_pending(
            name,
            "jensenshannon",
            js.unwrap_or(0.0),
            None,
            ("js_distance", js),
            summaries,
            n,
            Some(js.is_some_and(|d| d >= floor)),
            None,
        ),
        "hellinger" => {
            let d = hellinger(&p, &q);
            decided_or_pending(
                name,
                "hellinger",
                d.unwrap_or(0.0),
                None,
                ("hellinger", d),
                summaries,
                n,
                Some(d.is_some_and(|d| d >= floor)),
                None,
            )
        }
        _ => decided_or_pending(
            name,
            "chisquare",
            chi_sessions.map_or(0.0, |c| c.0),
            Some(chi_sessions.map_or(1.0, |c| c.1)),
            ("js_distance", js),
            summaries,
            n,
            None,
            Some(PendingRule {
                alpha,
                floor: Some(effect_floor(Family::Categorical, floor)),
                corrected: true,
            }),
        ),
    }
}

/// Applies Benjamini–Hochberg across every pending corrected test of a window batch, then the
/// effect floors; returns the decided results in the same order.
pub fn decide(batch: &mut [Vec<Pending>]) {
    let mut ps = Vec::new();
    for p in batch.iter().flatten() {
        if let Some(r) = p.rule
            && r.corrected
        {
            ps.push(p.result.p_value.unwrap_or(1.0));
        }
    }
    let adjusted = bh_adjust(&ps).unwrap_or_else(|| vec![1.0; ps.len()]);
    let mut next = adjusted.into_iter();
    for p in batch.iter_mut().flatten() {
        let Some(rule) = p.rule.take() else { continue };
        let p_value = p.result.p_value.unwrap_or(1.0);
        let judged = if rule.corrected {
            let adj = next.next().unwrap_or(1.0);
            p.result.p_adjusted = Some(adj);
            adj
        } else {
            p_value
        };
        let effect_ok = match rule.floor {
            Some(f) => p.result.effect_size.is_some_and(|e| e >= f),
            None => true,
        };
        p.result.verdict = if judged < rule.alpha && effect_ok {
            FeatureVerdict::Drift
        } else {
            FeatureVerdict::NoDrift
        };
    }
}

/// The z-statistic of a window step's mean under the baseline: `(mean − μ) / (σ / √n)`.
pub fn step_z(values: &[f64], mean: f64, std: f64) -> Option<f64> {
    let m = crate::drift::stats::mean(values)?;
    (std > 0.0).then(|| (m - mean) / (std / (values.len() as f64).sqrt()))
}

fn distinct_count(sorted: &[f64]) -> usize {
    let mut n = 0;
    let mut prev = None;
    for &v in sorted {
        if prev != Some(v) {
            n += 1;
            prev = Some(v);
        }
    }
    n
}

fn value_counts(sorted: &[f64]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in sorted {
        *m.entry(crate::present::fmt_num(*v)).or_default() += 1;
    }
    m
}

/// Reference and current counts on the union of their labels.
fn on_one_axis(r: &BTreeMap<String, u64>, c: &BTreeMap<String, u64>) -> (Vec<f64>, Vec<f64>) {
    let labels: std::collections::BTreeSet<&String> = r.keys().chain(c.keys()).collect();
    let side = |m: &BTreeMap<String, u64>| {
        labels
            .iter()
            .map(|l| *m.get(*l).unwrap_or(&0) as f64)
            .collect()
    };
    (side(r), side(c))
}

/// Evidently's `chisquare` stattest: `scipy.stats.chisquare(current, reference · n_cur/n_ref)`.
fn evidently_chisquare(reference: &[f64], current: &[f64]) -> Option<GofResult> {
    let (nr, nc): (f64, f64) = (reference.iter().sum(), current.iter().sum());
    if nr == 0.0 {
        return None;
    }
    let k = nc / nr;
    let expected: Vec<f64> = reference.iter().map(|r| r * k).collect();
    chisquare_gof(current, &expected)
}

/// Distinct values of two sorted samples together (`pd.concat([r, c]).nunique()`).
fn distinct_union(a: &[f64], b: &[f64]) -> usize {
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_unstable_by(f64::total_cmp);
    distinct_count(&all)
}

fn top_shares(labels: &[&String], shares: &[f64]) -> String {
    let mut pairs: Vec<(&String, f64)> =
        labels.iter().copied().zip(shares.iter().copied()).collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    pairs
        .iter()
        .take(4)
        .map(|(l, s)| format!("{l} {}", crate::present::pct(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}
