//! Plain-language explanation of a validated spec (`slawatch explain`).
//!
//! [`explain`] says in words what every objective measures, what its error budget is, and —
//! for SLO objectives — when each burn-rate tier fires, how much budget is gone by then and how
//! fast the budget would run out at that burn rate. Output is plain text wrapped to 100
//! columns. It only formats a [`Spec`]: it never validates (that is [`super::decode`]'s job)
//! and never does I/O.

use super::lint::{fmt_factor, max_burn_rate};
use super::model::{
    BoolSignal, Bound, Confidence, Dimension, KeyField, LatePolicy, NumericField, Objective,
    ObjectiveKind, Severity, Spec,
};
use crate::confidence::{self, Side};
use crate::duration::format_duration_ms;
use crate::schema::decoder::pct;
use std::fmt::Write;

const WIDTH: usize = 100;

/// Wraps `text` to [`WIDTH`] columns; the first line starts with `first`, the others with
/// `rest` (both count towards the width).
fn wrap(out: &mut String, first: &str, rest: &str, text: &str) {
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn key_field(k: &KeyField) -> String {
    match k {
        KeyField::PromptVersion => "prompt_version".into(),
        KeyField::Model => "model".into(),
        KeyField::Provider => "provider".into(),
        KeyField::Attribute(a) => format!("attributes.{a}"),
    }
}

fn field_name(f: &NumericField) -> String {
    match f {
        NumericField::DurationMs => "duration".into(),
        NumericField::CostUsd => "cost".into(),
        NumericField::InputTokens => "input tokens".into(),
        NumericField::OutputTokens => "output tokens".into(),
        NumericField::Turns => "number of turns".into(),
        NumericField::ToolCalls => "number of tool calls".into(),
        NumericField::QualityScore => "quality score".into(),
        NumericField::OutputChars => "output length (characters)".into(),
        NumericField::ContextTokensMax => "largest context (tokens)".into(),
        NumericField::ContextUtilisation => "context-window utilisation".into(),
        NumericField::Attribute(a) => format!("attributes.{a}"),
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn usd(v: f64) -> String {
    if (v * 100.0 - (v * 100.0).round()).abs() < 1e-9 {
        format!("${v:.2}")
    } else {
        format!("${}", num(v))
    }
}

fn field_value(f: &NumericField, v: f64) -> String {
    match f {
        NumericField::DurationMs => format_duration_ms(v.round() as i64),
        NumericField::CostUsd => usd(v),
        NumericField::ContextUtilisation => pct(v),
        _ => num(v),
    }
}

fn bound(b: Bound, show: impl Fn(f64) -> String) -> String {
    match b {
        Bound::Max(v) => format!("≤ {}", show(v)),
        Bound::Min(v) => format!("≥ {}", show(v)),
    }
}

fn signal(s: &BoolSignal) -> String {
    match s {
        BoolSignal::Resolved => "that were resolved (quality.resolved)".into(),
        BoolSignal::Refusal => "in which the agent refused (quality.refusal)".into(),
        BoolSignal::FallbackTriggered => "that fell back (fallback.triggered)".into(),
        BoolSignal::Status(st) => format!("that ended with status {}", st.as_str()),
    }
}

fn ordinal(p: f64) -> String {
    let n = num(p);
    let suffix = if n.contains('.') {
        "th"
    } else {
        match (p as i64 % 10, p as i64 % 100) {
            (1, x) if x != 11 => "st",
            (2, x) if x != 12 => "nd",
            (3, x) if x != 13 => "rd",
            _ => "th",
        }
    };
    format!("{n}{suffix}")
}

fn dimension(d: Dimension) -> &'static str {
    match d {
        Dimension::Availability => "availability",
        Dimension::Behavior => "behavior",
        Dimension::Governance => "governance",
        Dimension::Fallback => "fallback",
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Ticket => "ticket",
        Severity::Page => "page",
    }
}

fn list(items: &[String]) -> String {
    joined(items, "and")
}

/// `a, b and c` / `a, b or c`.
fn joined<S: AsRef<str>>(items: &[S], last: &str) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match items.len() {
        0 => String::new(),
        1 => items[0].to_owned(),
        n => format!("{} {last} {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn one_in(budget: f64) -> String {
    if budget <= 0.0 {
        return String::new();
    }
    let n = 1.0 / budget;
    if n >= 10_000.0 {
        format!(" (1 in {})", num((n / 1000.0).round() * 1000.0))
    } else {
        format!(" (1 in {})", num(n.round()))
    }
}

/// What an objective checks, as sentences.
fn describe(spec: &Spec, o: &Objective) -> Vec<String> {
    let period = format_duration_ms(spec.period_ms);
    let mut s = Vec::new();
    match &o.kind {
        ObjectiveKind::Ratio { good, target } => {
            let mut cond = Vec::new();
            if !good.status.is_empty() {
                let sts: Vec<String> = good.status.iter().map(|s| s.as_str().to_owned()).collect();
                cond.push(format!("with status {}", joined(&sts, "or")));
            }
            if let Some(ms) = good.max_duration_ms {
                cond.push(format!(
                    "that finished within {}",
                    format_duration_ms(ms as i64)
                ));
            }
            s.push(format!(
                "The share of sessions {} must be at least {} in every window and over a rolling {period}.",
                cond.join(" "),
                pct(*target)
            ));
            s.push(budget_sentence(*target, &period));
        }
        ObjectiveKind::Threshold {
            field,
            threshold,
            target,
        } => {
            s.push(format!(
                "The share of sessions whose {} is at most {} must be at least {} in every window and over a rolling {period}.",
                field_name(field),
                field_value(field, *threshold),
                pct(*target)
            ));
            s.push(budget_sentence(*target, &period));
        }
        ObjectiveKind::Percentile {
            field,
            p,
            bound: b,
            confidence,
        } => {
            s.push(format!(
                "In every window, the {} percentile of session {} must be {}.",
                ordinal(*p),
                field_name(field),
                bound(*b, |v| field_value(field, v))
            ));
            s.push(percentile_judgement(spec, field, *p, *b, *confidence));
        }
        ObjectiveKind::Mean {
            field,
            bound: b,
            confidence,
        } => {
            s.push(format!(
                "In every window, the mean {} per session must be {}.",
                field_name(field),
                bound(*b, |v| field_value(field, v))
            ));
            s.push(mean_judgement(spec, field, *b, *confidence));
        }
        ObjectiveKind::Rate {
            of,
            bound: b,
            confidence,
        } => {
            s.push(format!(
                "In every window, the share of sessions {} must be {}.",
                signal(of),
                bound(*b, pct)
            ));
            s.push(rate_judgement(spec, *b, *confidence));
        }
        ObjectiveKind::Spend(sp) => {
            if let Some(v) = sp.per_session_soft_usd {
                s.push(format!(
                    "A session costing more than {} opens a ticket, with example sessions.",
                    usd(v)
                ));
            }
            if let Some(v) = sp.per_session_max_usd {
                s.push(format!(
                    "A session costing more than {} pages (hard cap).",
                    usd(v)
                ));
            }
            if let Some((p, v)) = sp.percentile {
                s.push(format!(
                    "In every window, the {} percentile of session cost must be ≤ {}.",
                    ordinal(p),
                    usd(v)
                ));
            }
            if let Some(v) = sp.window_budget_usd {
                s.push(format!(
                    "The total spend of one window must stay within {}.",
                    usd(v)
                ));
            }
        }
        ObjectiveKind::Pii(pii) => {
            let scope = if pii.types.is_empty() {
                "Personal data".to_owned()
            } else {
                format!("Personal data of type {}", joined(&pii.types, "or"))
            };
            if pii.allow_pass_through_to.is_empty() {
                s.push(format!(
                    "{scope} must never be passed through unredacted, to any destination."
                ));
            } else {
                s.push(format!(
                    "{scope} may be passed through unredacted only to {}; everywhere else it must be redacted, masked or blocked.",
                    pii.allow_pass_through_to.join(", ")
                ));
            }
            for r in &pii.rules {
                let allow: Vec<&str> = r.allow.iter().map(|h| h.as_str()).collect();
                s.push(format!(
                    "Destination {} may only receive it {}.",
                    r.destination,
                    joined(&allow, "or").replace('_', " ")
                ));
            }
        }
        ObjectiveKind::Tools(t) => {
            if !t.deny.is_empty() {
                s.push(format!(
                    "These tools must never be called: {}.",
                    t.deny.join(", ")
                ));
            }
            if !t.allow.is_empty() {
                s.push(format!(
                    "Only these tools may be called: {}.",
                    t.allow.join(", ")
                ));
            }
            if let Some(n) = t.max_calls_per_session {
                s.push(format!("A session may make at most {n} tool calls."));
            }
            if let Some(n) = t.max_consecutive_calls {
                s.push(format!(
                    "No tool may be called more than {n} times in a row (loop guard)."
                ));
            }
        }
        ObjectiveKind::Fallback(f) => {
            let on: Vec<String> = f
                .required_on
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect();
            let kinds = if f.allowed_kinds.is_empty() {
                "a fallback of any kind".to_owned()
            } else {
                format!("a fallback of kind {}", joined(&f.allowed_kinds, "or"))
            };
            s.push(format!(
                "Sessions that end with status {} must get {kinds}: at least {} of them, in every window and over a rolling {period}.",
                joined(&on, "or"),
                pct(f.target)
            ));
            s.push(budget_sentence(f.target, &period).replace("of sessions", "of failed sessions"));
            if let Some(r) = f.max_rate {
                s.push(format!(
                    "In every window, at most {} of all sessions may fall back.",
                    pct(r)
                ));
            }
        }
        ObjectiveKind::Drift(d) => {
            s.push(format!(
                "Compares {} in every window with the baseline of the same key. A change counts as drift when it is significant at p < {} after Benjamini–Hochberg correction and its effect size is at least {} (test: {}).",
                d.features.join(", "),
                num(d.p_value),
                num(d.effect_size),
                d.test
            ));
            let step = spec.window.step_ms;
            let budget = d.false_alarms;
            let per = format_duration_ms(budget.per_ms);
            s.push(if d.p_value_explicit {
                format!(
                    "At this pValue, with a window every {}, a key whose behaviour does not change gets at most {} false drift tickets per {per} on average (falseAlarms allows {}).",
                    format_duration_ms(step),
                    num(budget.bound_at(d.p_value, step)),
                    num(budget.tickets),
                )
            } else {
                format!(
                    "The level is set by falseAlarms: a key whose behaviour does not change gets at most {} false drift tickets per {per} on average ({} windows per {per}, each tested at {}).",
                    num(budget.tickets),
                    num((budget.per_ms / step) as f64),
                    num(d.p_value),
                )
            });
            s.push(format!(
                "With fewer than {} sessions on either side the result is insufficient_data.",
                d.min_samples
            ));
        }
    }
    if o.zero_tolerance {
        s.push("Zero tolerance: the first violating session pages, whatever the window size or minSessions.".into());
    } else if o.kind.slo_target().is_some() {
        s.push(format!(
            "A window below target alone is an info finding; pages and tickets come from the burn-rate tiers below (each needs at least {} sessions in its long window).",
            spec.min_sessions
        ));
    } else if !matches!(o.kind, ObjectiveKind::Drift(_)) {
        s.push(format!("A breach is a {} finding.", severity(o.severity)));
    } else {
        s.push(format!("Drift is a {} finding.", severity(o.severity)));
    }
    s
}

const POINT_ESTIMATE: &str = "Judged on the window's point estimate (`confidence: none`): chance alone breaches now and then, more often the fewer sessions a window has.";

/// Window sizes to give examples at: `minSessions` and ten times that.
fn example_sizes(spec: &Spec) -> [u64; 2] {
    let n = spec.min_sessions.max(1);
    [n, 10 * n]
}

fn sessions(n: u64) -> String {
    if n == 1 {
        "1 session".into()
    } else {
        format!("{n} sessions")
    }
}

/// How a percentile objective is judged, with the counts it takes at two window sizes.
fn percentile_judgement(
    spec: &Spec,
    field: &NumericField,
    p: f64,
    b: Bound,
    confidence: Confidence,
) -> String {
    let Confidence::Level(c) = confidence else {
        return POINT_ESTIMATE.into();
    };
    let q = p / 100.0;
    let (side, word, limit) = match b {
        Bound::Max(v) => (Side::Lower, "above", v),
        Bound::Min(v) => (Side::Upper, "below", v),
    };
    let limit = field_value(field, limit);
    let [small, large] = example_sizes(spec);
    // Sessions that must lie beyond the limit: with the bound X(k), `n − k + 1` above it (a
    // max) or `k` below it (a min); the point estimate is the sketch's rank ⌊q(n − 1)⌋ + 1.
    let beyond = |n: u64, k: u64| match side {
        Side::Lower => n - k + 1,
        Side::Upper => k,
    };
    let needed = |n: u64| {
        let point = beyond(n, (q * (n - 1) as f64).floor() as u64 + 1);
        match confidence::order_statistic_rank(n, q, c, side) {
            Some(k) => format!(
                "with {} at least {} must have a {} {word} {limit} (the point estimate alone: {point})",
                sessions(n),
                beyond(n, k),
                field_name(field)
            ),
            None => format!("with {} no window can breach", sessions(n)),
        }
    };
    format!(
        "A window breaches only when we are {} sure its true {} percentile is {word} {limit} (a distribution-free bound from the binomial distribution): {}; {}. At the limit itself a window alarms by chance at most {} of the time.",
        pct(c),
        ordinal(p),
        needed(small),
        needed(large),
        pct(1.0 - c)
    )
}

/// How a rate objective is judged, with the counts it takes at two window sizes.
fn rate_judgement(spec: &Spec, b: Bound, confidence: Confidence) -> String {
    let Confidence::Level(c) = confidence else {
        return POINT_ESTIMATE.into();
    };
    let z = confidence::z(c);
    let needed = |n: u64| {
        // The fewest (max) or most (min) sessions with the signal that breach, by the Wilson
        // bound and by the point estimate.
        let (bound_k, point_k, word) = match b {
            Bound::Max(t) => (
                (0..=n).find(|&k| confidence::wilson(k, n, z, Side::Lower) > t),
                (0..=n).find(|&k| k as f64 / n as f64 > t),
                "at least",
            ),
            Bound::Min(t) => (
                (0..=n)
                    .rev()
                    .find(|&k| confidence::wilson(k, n, z, Side::Upper) < t),
                (0..=n).rev().find(|&k| (k as f64 / n as f64) < t),
                "at most",
            ),
        };
        match (bound_k, point_k) {
            (Some(k), Some(pk)) => format!(
                "with {} it takes {word} {k} such sessions (the point estimate alone: {pk})",
                sessions(n)
            ),
            _ => format!("with {} no window can breach", sessions(n)),
        }
    };
    let [small, large] = example_sizes(spec);
    let (word, t) = match b {
        Bound::Max(t) => ("above", t),
        Bound::Min(t) => ("below", t),
    };
    format!(
        "A window breaches only when we are {} sure the true share is {word} {} (Wilson score bound): {}; {}. At the limit itself a window alarms by chance at most about {} of the time.",
        pct(c),
        pct(t),
        needed(small),
        needed(large),
        pct(1.0 - c)
    )
}

/// How a mean objective is judged.
fn mean_judgement(spec: &Spec, field: &NumericField, b: Bound, confidence: Confidence) -> String {
    let Confidence::Level(c) = confidence else {
        return POINT_ESTIMATE.into();
    };
    let n = spec.min_sessions.max(2);
    let (word, t, formula) = match b {
        Bound::Max(t) => ("above", t, "mean − t·s/√n"),
        Bound::Min(t) => ("below", t, "mean + t·s/√n"),
    };
    format!(
        "A window breaches only when we are {} sure the true mean is {word} {}: the one-sided Student t bound {formula} (s the window's standard deviation, n its sessions; t = {} at {}) must be {word} it. At the limit itself a window alarms by chance at most about {} of the time.",
        pct(c),
        field_value(field, t),
        num(confidence::t_quantile(c, n - 1)),
        sessions(n),
        pct(1.0 - c)
    )
}

fn budget_sentence(target: f64, period: &str) -> String {
    let budget = 1.0 - target;
    format!(
        "Error budget: {} of sessions{} may be bad over a rolling {period}.",
        pct(budget),
        one_in(budget)
    )
}

fn burn_table(out: &mut String, spec: &Spec, target: f64) {
    let tiers = &spec.alerting.burn_rates;
    if tiers.is_empty() {
        out.push_str("     No burn-rate alerts (spec.alerting.burnRates is empty).\n");
        return;
    }
    let max = max_burn_rate(target);
    out.push_str(
        "     Burn-rate alerts (a tier fires when the burn rate over both its windows reaches the factor):\n",
    );
    let header = [
        "tier",
        "factor",
        "long",
        "short",
        "severity",
        "budget left when it fires",
        "budget gone in",
    ];
    let mut rows: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    let mut notes = Vec::new();
    for t in tiers {
        let never = t.factor > max + 1e-9;
        let spent = t.factor * t.long_ms as f64 / spec.period_ms as f64;
        let gone = (spec.period_ms as f64 / t.factor).round() as i64;
        rows.push([
            t.name.clone(),
            fmt_factor(t.factor),
            format_duration_ms(t.long_ms),
            format_duration_ms(t.short_ms),
            severity(t.severity).to_owned(),
            if never {
                "never fires*".to_owned()
            } else {
                // What is left of a full period's budget once the tier's long window has
                // burnt at its factor: the same "budget left" mail and findings speak of.
                pct(((1.0 - spent).max(0.0) * 10_000.0).round() / 10_000.0)
            },
            if never {
                "—".to_owned()
            } else {
                format_duration_ms(gone)
            },
        ]);
        if never {
            notes.push(t.name.clone());
        }
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = "       ".to_owned();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 1 {
                // factors are right-aligned
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !notes.is_empty() {
        let text = format!(
            "* at target {} the burn rate can be at most {} (every session bad), so {} can never fire.",
            pct(target),
            fmt_factor(max),
            list(&notes)
        );
        wrap(out, "       ", "         ", &text);
    }
}

/// Explains a spec in plain language: its scope and windows, then every objective in words,
/// with the error budget and the burn-rate table of SLO objectives.
pub fn explain(spec: &Spec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Spec {} ({})", spec.name, spec.source);
    let agents = if spec.selector.agents.is_empty() || spec.selector.agents.iter().any(|a| a == "*")
    {
        "every agent".to_owned()
    } else {
        format!("agent {}", spec.selector.agents.join(", "))
    };
    let mut scope = format!("Applies to sessions of {agents}");
    if !spec.selector.attributes.is_empty() {
        let attrs: Vec<String> = spec
            .selector
            .attributes
            .iter()
            .map(|(k, v)| format!("attributes.{k} = {v}"))
            .collect();
        let _ = write!(scope, " where {}", attrs.join(" and "));
    }
    scope.push('.');
    if !spec.labels.is_empty() {
        let labels: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(scope, " Labels: {}.", labels.join(", "));
    }
    if let Some(r) = &spec.runbook {
        let _ = write!(scope, " Runbook: {r}");
    }
    wrap(&mut out, "  ", "  ", &scope);

    let mut key = vec!["agent".to_owned()];
    key.extend(spec.key_by.iter().map(key_field));
    let mut keying = format!(
        "Every combination of {} is judged on its own, against its own baseline.",
        list(&key)
    );
    if !spec.segment_by.is_empty() {
        let seg: Vec<String> = spec.segment_by.iter().map(key_field).collect();
        let _ = write!(
            keying,
            " Each is split further by {} (at most {} segments per key and window; the rest is folded into `other`).",
            list(&seg),
            spec.max_segments
        );
    }
    wrap(&mut out, "  ", "  ", &keying);

    let w = spec.window;
    let mut windows = if w.step_ms == w.size_ms {
        format!(
            "Windows are {} long, back to back.",
            format_duration_ms(w.size_ms)
        )
    } else {
        format!(
            "Windows are {} long, a new one every {}.",
            format_duration_ms(w.size_ms),
            format_duration_ms(w.step_ms)
        )
    };
    let late = match w.late_policy {
        LatePolicy::DeadLetter => "written to the dead-letter file",
        LatePolicy::Drop => "counted and dropped",
    };
    if w.allowed_lateness_ms > 0 {
        let _ = write!(
            windows,
            " Sessions arriving up to {} late still count; later ones are {late}.",
            format_duration_ms(w.allowed_lateness_ms)
        );
    } else {
        let _ = write!(
            windows,
            " Sessions arriving after their window closed are {late}."
        );
    }
    let _ = write!(
        windows,
        " A window with fewer than {} sessions reports insufficient_data instead of a verdict, and never pages. Error budgets are measured over a rolling {}.",
        spec.min_sessions,
        format_duration_ms(spec.period_ms)
    );
    wrap(&mut out, "  ", "  ", &windows);
    if !spec.alerting.notify.is_empty() || !spec.alerting.stakeholders.is_empty() {
        let mut who = String::new();
        if !spec.alerting.notify.is_empty() {
            let _ = write!(
                who,
                "On-call notices go to {}.",
                spec.alerting.notify.join(", ")
            );
        }
        if !spec.alerting.stakeholders.is_empty() {
            let _ = write!(
                who,
                " Plain-language breach notices go to {}.",
                spec.alerting.stakeholders.join(", ")
            );
        }
        wrap(&mut out, "  ", "  ", who.trim());
    }

    let _ = writeln!(out, "\nObjectives ({})", spec.objectives.len());
    for (i, o) in spec.objectives.iter().enumerate() {
        let kind = if o.kind.slo_target().is_some() {
            format!("{} SLO", o.kind.yaml_key())
        } else {
            o.kind.yaml_key().to_owned()
        };
        let _ = writeln!(
            out,
            "\n{:>3}. {} — {}, {}",
            i + 1,
            o.name,
            dimension(o.dimension),
            kind
        );
        if let Some(d) = &o.description {
            wrap(&mut out, "     ", "     ", d);
        }
        for sentence in describe(spec, o) {
            wrap(&mut out, "     ", "     ", &sentence);
        }
        if let Some(r) = &o.runbook {
            wrap(&mut out, "     ", "       ", &format!("Runbook: {r}"));
        }
        if let Some(target) = o.kind.slo_target() {
            burn_table(&mut out, spec, target);
        }
    }
    out
}
