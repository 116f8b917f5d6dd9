//! Findings in words: the one place that turns typed findings and their numbers into text for
//! people — the one-line `message`, values in their unit, percentages, drift feature lines.
//!
//! Everything that shows a finding (mail, the CLI summary, JSON that carries `message`, the
//! status API) calls these functions; the core (windowing, evaluate, drift) never builds a
//! sentence and never imports this module. Pure functions: no I/O, no clock.

use crate::finding::{
    Check, ConfidenceBound, FeatureResult, Finding, Side, Sli, Subject, Unit, Verdict,
};
use crate::spec::model::{BoolSignal, NumericField};

/// The finding's one sentence for people, e.g. `p95 duration_ms is 3.2 s, above the 2 s limit
/// (120 sessions)`. Findings written before they carried a [`Subject`] keep the sentence they
/// were stored with.
pub fn message(f: &Finding) -> String {
    let mut s = headline(f);
    if f.subject.is_some() {
        s.push_str(&budget_note(f));
    }
    s
}

/// [`message`] without the error-budget clause: for views that show the budget on their own
/// (alert mail has a budget row computed over the elapsed period).
pub fn headline(f: &Finding) -> String {
    let Some(subject) = &f.subject else {
        return f.message.clone();
    };
    let n = f.observed as u64;
    match (f.check, f.verdict) {
        (Check::Window, Verdict::InsufficientData) => format!(
            "only {} sessions in this window; {} are needed for a verdict (minSessions)",
            f.sessions, f.target as u64
        ),
        (Check::Drift, Verdict::InsufficientData) if f.unit == Unit::Sessions => format!(
            "no baseline to compare with yet: this key's baseline is learning ({n} of {} sessions) and no other version of the agent has a frozen one",
            f.target as u64
        ),
        (Check::Drift, Verdict::InsufficientData) => format!(
            "fewer than {} sessions on one side for every feature: no verdict (never \"no drift\")",
            f.target as u64
        ),
        (Check::Drift | Check::DriftSignal, _) => {
            let Some(d) = &f.drift else {
                return "behaviour changed compared with its baseline".into();
            };
            let moved = d
                .features
                .iter()
                .filter(|x| x.verdict == crate::finding::FeatureVerdict::Drift)
                .map(describe_feature)
                .collect::<Vec<_>>()
                .join("; ");
            let against = if d.predecessor {
                format!("the baseline of the version it replaced ({})", d.baseline)
            } else {
                format!("its baseline ({})", d.baseline)
            };
            format!("behaviour changed compared with {against}: {moved}")
        }
        (Check::BurnRate, _) => {
            let tier = match subject {
                Subject::Slo { tier: Some(t), .. } => f.burn_rates.iter().find(|b| &b.tier == t),
                _ => None,
            };
            let Some(b) = tier else {
                return format!(
                    "{} {} (target {}): an error-budget burn-rate tier fires",
                    measure(f),
                    pct(f.observed),
                    pct(f.target)
                );
            };
            format!(
                "{} {} over the last {} (target {}): error budget burning {:.1}× over {} and {:.1}× over {} — the `{}` tier fires at {}×",
                measure(f),
                pct(f.observed),
                period_name(b.long_window_ms),
                pct(f.target),
                b.long_rate,
                period_name(b.long_window_ms),
                b.short_rate,
                period_name(b.short_window_ms),
                b.tier,
                b.factor,
            )
        }
        (Check::Window, _) => format!(
            "{} {} in this window is below the {} target; no burn-rate tier fires",
            measure(f),
            pct(f.observed),
            pct(f.target)
        ),
        (Check::MaxRate, _) => format!(
            "{} of sessions fell back, above the {} bound",
            pct(f.observed),
            pct(f.target)
        ),
        (Check::HardCap | Check::SoftCap, _) => {
            let cap = match subject {
                Subject::CostCap { cap_usd } => *cap_usd,
                _ => f.target,
            };
            let which = if f.check == Check::HardCap {
                "hard"
            } else {
                "soft"
            };
            format!("{n} session(s) cost more than the ${cap} {which} cap")
        }
        (Check::Violation, _) if *subject == Subject::Pii => {
            format!("{n} session(s) sent personal data where the policy forbids it")
        }
        (Check::Violation, _) => format!("{n} session(s) broke the tool-use policy"),
        (Check::Percentile | Check::Mean | Check::Rate | Check::WindowBudget, _) => {
            let word = match f.comparator {
                crate::finding::Comparator::AtMost => "above",
                crate::finding::Comparator::AtLeast => "below",
            };
            format!(
                "{} is {}, {word} the {} limit ({} sessions{})",
                measure(f),
                fmt_value(f.observed, f.unit),
                fmt_value(f.target, f.unit),
                f.sessions,
                bound_note(f)
            )
        }
    }
}

/// `; 95% sure it is at least 21.3 s` for findings judged on a confidence bound.
fn bound_note(f: &Finding) -> String {
    match &f.bound {
        Some(ConfidenceBound {
            confidence,
            side,
            value: Some(v),
            ..
        }) => {
            let word = match side {
                Side::Lower => "at least",
                Side::Upper => "at most",
            };
            format!(
                "; {} sure it is {word} {}",
                pct(*confidence),
                fmt_value(*v, f.unit)
            )
        }
        _ => String::new(),
    }
}

/// What the finding measured, in the words of its message: `p95 duration_ms`, `success
/// ratio`, `refusal rate`, `spend in the window`. Findings without a subject name their
/// objective.
pub fn measure(f: &Finding) -> String {
    match &f.subject {
        None => f.objective.clone(),
        Some(Subject::Slo { sli, .. }) => match sli {
            Sli::Success => "success ratio".into(),
            Sli::Threshold { field, threshold } => format!(
                "share of sessions with {} ≤ {}",
                field_name(field),
                fmt_value(*threshold, unit_of(field))
            ),
            Sli::Fallback => "share of failed sessions with an allowed fallback".into(),
        },
        Some(Subject::Percentile { field, p }) => {
            format!("p{} {}", trim_float(*p), field_name(field))
        }
        Some(Subject::Mean { field }) => format!("mean {}", field_name(field)),
        Some(Subject::Rate { signal }) => format!("{} rate", signal_name(signal)),
        Some(Subject::CostPercentile { p }) => format!("p{} session cost", trim_float(*p)),
        Some(Subject::WindowSpend) => "spend in the window".into(),
        Some(Subject::CostCap { .. }) => "sessions over the cost cap".into(),
        Some(Subject::Pii) => "sessions sending personal data".into(),
        Some(Subject::ToolRules) => "sessions breaking the tool rules".into(),
        Some(Subject::FallbackRate) => "fallback rate".into(),
        Some(Subject::Drift) => "behaviour drift".into(),
    }
}

/// `; 40% of the 28d error budget left` for SLO findings with a budget; empty otherwise.
/// Budget is always spoken of as what is *left* (as the SRE workbook does), in findings, mail
/// and `explain` alike.
fn budget_note(f: &Finding) -> String {
    match (&f.subject, f.budget_consumed) {
        (Some(Subject::Slo { period_ms, .. }), Some(c)) => {
            format!("; {}", budget_left(c, *period_ms))
        }
        _ => String::new(),
    }
}

/// `40% of the 28d error budget left`, or `none of the 28d error budget left` once it is spent.
pub fn budget_left(consumed: f64, period_ms: i64) -> String {
    let period = period_name(period_ms);
    if consumed >= 1.0 {
        format!("none of the {period} error budget left")
    } else {
        format!("{} of the {period} error budget left", pct(1.0 - consumed))
    }
}

/// `output_tokens median 300 → 405 (ks, p=1e-9 corrected, wasserstein/σ 0.52)`
pub fn describe_feature(f: &FeatureResult) -> String {
    let mut stats = vec![f.test.clone()];
    if let Some(p) = f.p_adjusted.or(f.p_value) {
        stats.push(format!(
            "p={p:.1e}{}",
            if f.p_adjusted.is_some() {
                " corrected"
            } else {
                ""
            }
        ));
    }
    if let Some(e) = f.effect_size
        && !f.effect.is_empty()
    {
        stats.push(format!("{} {e:.2}", f.effect));
    } else if !f.effect.is_empty() {
        stats.push(f.effect.clone());
    }
    format!(
        "{} {} → {} ({})",
        f.feature,
        f.reference,
        f.current,
        stats.join(", ")
    )
}

/// A value in its unit, for people: `3.2 s`, `$0.12`, `99.9%`.
pub fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ms if v >= 1000.0 => format!("{:.1} s", v / 1000.0),
        Unit::Ms => format!("{v:.0} ms"),
        Unit::Usd => format!("${}", trim_float(round_sig(v, 3))),
        Unit::Ratio => pct(v),
        Unit::Score => format!("{v:.3}"),
        _ => trim_float(round_sig(v, 4)),
    }
}

/// A ratio as a percentage: one decimal, more near 100% where they matter (99.95%).
pub fn pct(v: f64) -> String {
    let p = v * 100.0;
    let decimals = if (99.0..100.0).contains(&p) { 3 } else { 1 };
    let s = format!("{p:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}%")
}

/// A number for summaries: integers plainly, others with 3 significant digits.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = (3 - v.abs().log10().ceil() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

/// An error-budget period or window length: `28d`, `1h`.
pub fn period_name(ms: i64) -> String {
    crate::duration::format_duration_ms(ms)
}

/// The record field name of a numeric field (`duration_ms`, `attributes.tier`).
pub fn field_name(field: &NumericField) -> String {
    field.record_name()
}

fn unit_of(field: &NumericField) -> Unit {
    crate::finding::unit_of(field)
}

fn signal_name(s: &BoolSignal) -> String {
    match s {
        BoolSignal::Resolved => "resolved".into(),
        BoolSignal::Refusal => "refusal".into(),
        BoolSignal::FallbackTriggered => "fallback".into(),
        BoolSignal::Status(st) => format!("{} status", st.as_str()),
    }
}

fn round_sig(v: f64, sig: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(sig - v.abs().log10().ceil() as i32);
    (v * scale).round() / scale
}

fn trim_float(v: f64) -> String {
    format!("{v}")
}

// ------------------------------------------------------------------ forensics --

/// Weekday of an epoch-ms time (UTC), `Mon`…`Sun`.
fn weekday(ms: i64) -> &'static str {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    DAYS[ms.div_euclid(86_400_000).rem_euclid(7) as usize]
}

/// A span of time in rounded words: `15 min`, `3 h`, `2 days`.
fn span_words(ms: i64) -> String {
    let m = (ms.max(0) + 30_000) / 60_000;
    match m {
        m if m < 120 => format!("{m} min"),
        m if m < 36 * 60 => format!("{} h", (m + 30) / 60),
        m => format!("{} days", (m + 720) / 1440),
    }
}

/// The widest symmetric interval still written as `± N min`; wider or lopsided ones are
/// written as a range.
const PLUS_MINUS_MAX_MS: i64 = 30 * 60_000;

/// When a change began, relative to the first alert. `detected` is the end of the first
/// breaching window. The interval decides the words:
///
/// - a single pane: `started at Tue 14:05 UTC (to the pane), 2 days before the first alert`;
/// - narrow and symmetric: `started around Tue 14:05 UTC (± 15 min), …`;
/// - wide or lopsided: `started around Tue 14:05 UTC (between 13:50 and 14:40), …` (with the
///   weekday of an end on another day).
pub fn onset_words(onset: &crate::forensics::Onset, detected: i64) -> String {
    let clock = |ms: i64| crate::time::format_rfc3339_ms(ms)[11..16].to_owned();
    let day = |ms: i64| ms.div_euclid(86_400_000);
    let end = |ms: i64| {
        if day(ms) == day(onset.at) {
            clock(ms)
        } else {
            format!("{} {}", weekday(ms), clock(ms))
        }
    };
    let before = detected - onset.at;
    let lead = if before > 0 {
        format!(", {} before the first alert", span_words(before))
    } else {
        String::new()
    };
    let (below, above) = (onset.at - onset.low, onset.high - onset.at);
    let when = format!("{} {} UTC", weekday(onset.at), clock(onset.at));
    if below <= 0 && above <= 0 {
        return format!("started at {when} (to the pane){lead}");
    }
    if below == above && onset.high - onset.low <= PLUS_MINUS_MAX_MS {
        return format!("started around {when} (± {}){lead}", span_words(below));
    }
    format!(
        "started around {when} (between {} and {}){lead}",
        end(onset.low),
        end(onset.high)
    )
}

/// A candidate's measure as a value: `38%` for rates and shares, `1.2 s` for latency, the
/// feature's own number for a drifted feature's mean.
fn candidate_value(metric: crate::forensics::CandidateMetric, v: f64) -> String {
    use crate::forensics::CandidateMetric as M;
    match metric {
        M::LatencyMs => fmt_value(v, Unit::Ms),
        M::FeatureMean => fmt_num(v),
        M::ErrorRate | M::BadRate | M::TrafficShare | M::CallShare | M::FeatureRate => pct(v),
    }
}

/// What a candidate's measure is called; `feature` names a drifted feature.
fn metric_words(metric: crate::forensics::CandidateMetric, feature: Option<&str>) -> String {
    use crate::forensics::CandidateMetric as M;
    let feature = feature.unwrap_or("feature");
    match metric {
        M::ErrorRate => "error rate".into(),
        M::BadRate => "bad rate".into(),
        M::TrafficShare => "traffic share".into(),
        M::CallShare => "share of tool calls".into(),
        M::LatencyMs => "mean latency".into(),
        M::FeatureMean => format!("mean {feature}"),
        M::FeatureRate => format!("{feature} rate"),
    }
}

/// A candidate with its evidence: ``tool `get_order` — error rate 2% → 38% since 14:05, in 91%
/// of the sessions that count against the objective (explains 84% of the change)``.
pub fn candidate_words(c: &crate::forensics::Candidate, f: &crate::forensics::Forensics) -> String {
    let since = f
        .onset
        .as_ref()
        .map(|o| format!(" since {}", &crate::time::format_rfc3339_ms(o.at)[11..16]))
        .unwrap_or_default();
    format!(
        "{} `{}` — {} {} → {}{since}, in {} of the sessions that count against the objective \
         (explains {} of the change)",
        c.layer.as_str(),
        c.name,
        metric_words(c.metric, f.feature.as_deref()),
        candidate_value(c.metric, c.before),
        candidate_value(c.metric, c.after),
        pct(c.in_bad_share),
        pct(c.explained)
    )
}

#[cfg(test)]
mod forensics_words {
    use super::*;
    use crate::forensics::{Candidate, CandidateMetric, Layer, Onset};

    #[test]
    fn onset_and_candidate_read_like_the_issue() {
        // 2026-11-03 is a Tuesday.
        let at = crate::time::parse_rfc3339_ms("2026-11-03T14:05:00Z").unwrap();
        let onset = Onset {
            at,
            low: at - 15 * 60_000,
            high: at + 15 * 60_000,
            panes: 96,
        };
        let detected = at + 2 * 86_400_000;
        assert_eq!(
            onset_words(&onset, detected),
            "started around Tue 14:05 UTC (± 15 min), 2 days before the first alert"
        );
        let c = Candidate {
            layer: Layer::Tool,
            name: "get_order".into(),
            explained: 0.84,
            metric: CandidateMetric::ErrorRate,
            before: 0.02,
            after: 0.38,
            in_bad_share: 0.91,
        };
        let f = crate::forensics::Forensics {
            onset: Some(onset.clone()),
            candidates: vec![c.clone()],
            feature: None,
        };
        assert_eq!(
            candidate_words(&c, &f),
            "tool `get_order` — error rate 2% → 38% since 14:05, in 91% of the sessions that \
             count against the objective (explains 84% of the change)"
        );
        let drift = crate::forensics::Forensics {
            feature: Some("output_tokens".into()),
            ..f
        };
        let c = Candidate {
            layer: Layer::Model,
            name: "m-2".into(),
            metric: CandidateMetric::FeatureMean,
            before: 312.4,
            after: 520.0,
            ..c
        };
        assert_eq!(
            candidate_words(&c, &drift),
            "model `m-2` — mean output_tokens 312 → 520 since 14:05, in 91% of the sessions \
             that count against the objective (explains 84% of the change)"
        );
    }

    #[test]
    fn an_exact_onset_is_to_the_pane_and_a_wide_one_a_range() {
        // 2026-11-01 is a Sunday.
        let at = crate::time::parse_rfc3339_ms("2026-11-01T10:00:00Z").unwrap();
        let min = 60_000;
        let onset = |low: i64, high: i64| Onset {
            at,
            low: at - low * min,
            high: at + high * min,
            panes: 96,
        };
        let detected = at + 15 * min;
        assert_eq!(
            onset_words(&onset(0, 0), detected),
            "started at Sun 10:00 UTC (to the pane), 15 min before the first alert"
        );
        assert_eq!(
            onset_words(&onset(5, 5), detected),
            "started around Sun 10:00 UTC (± 5 min), 15 min before the first alert"
        );
        assert_eq!(
            onset_words(&onset(10, 20), detected),
            "started around Sun 10:00 UTC (between 09:50 and 10:20), 15 min before the first alert"
        );
        assert_eq!(
            onset_words(&onset(630, 30), detected),
            "started around Sun 10:00 UTC (between Sat 23:30 and 10:30), 15 min before the \
             first alert"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_their_units() {
        assert_eq!(fmt_value(3200.0, Unit::Ms), "3.2 s");
        assert_eq!(fmt_value(850.0, Unit::Ms), "850 ms");
        assert_eq!(fmt_value(0.1234, Unit::Usd), "$0.123");
        assert_eq!(fmt_value(0.9995, Unit::Ratio), "99.95%");
        assert_eq!(fmt_value(0.5, Unit::Ratio), "50%");
        assert_eq!(fmt_value(12345.0, Unit::Tokens), "12350");
    }

    #[test]
    fn budget_is_spoken_of_as_what_is_left() {
        assert_eq!(
            budget_left(0.6, 28 * 86_400_000),
            "40% of the 28d error budget left"
        );
        assert_eq!(
            budget_left(2.321, 28 * 86_400_000),
            "none of the 28d error budget left"
        );
    }
}
