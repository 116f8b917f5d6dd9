//! Semantic lints on a decoded, valid spec: things that are allowed but almost certainly not
//! what the author meant (a burn-rate tier that can never fire, windows with gaps, ...).
//!
//! Lints only ever add [`Level::Warning`](super::Level::Warning) diagnostics (`slawatch
//! validate --strict` promotes them to errors); they never reject a spec and never do I/O.
//! Problems that make a spec meaningless are errors of [`super::decode`] instead.

use super::decode::Decoded;
use super::model::{KeyField, ObjectiveKind, Spec};
use crate::duration::format_duration_ms;
use crate::schema::decoder::{Ctx, Spot, pct};

/// The highest burn rate an SLO with `target` can reach (every session bad): `1 / (1 - target)`.
pub fn max_burn_rate(target: f64) -> f64 {
    1.0 / (1.0 - target)
}

/// Formats a burn-rate factor: `14.4×`, `6×`.
pub fn fmt_factor(f: f64) -> String {
    let s = format!("{f:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}×")
}

const NICE_STEPS_MS: &[i64] = &[
    60_000,
    2 * 60_000,
    5 * 60_000,
    10 * 60_000,
    15 * 60_000,
    20 * 60_000,
    30 * 60_000,
    3_600_000,
    2 * 3_600_000,
    3 * 3_600_000,
    4 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
];

/// Runs every lint on a decoded spec, adding warnings to `ctx`.
pub fn lint(ctx: &mut Ctx<'_>, decoded: &Decoded) {
    let spec = &decoded.spec;
    let spans = &decoded.spans;
    lint_window(ctx, spec, &decoded.spans.window_step);
    lint_segments(ctx, spec, &spans.segment_by);
    lint_tiers(ctx, decoded);
    lint_never_firing(ctx, decoded);
    for (o, os) in spec.objectives.iter().zip(&spans.objectives) {
        if let ObjectiveKind::Percentile { p, .. } = o.kind
            && p < 1.0
            && let Some(spot) = &os.p
        {
            ctx.warn(
                spot.loc,
                &spot.path,
                format!("`p: {p}` asks for the {p}th percentile, near the minimum"),
                Some(format!(
                    "`p` is in percent: did you mean `p: {}`?",
                    p * 100.0
                )),
            );
        }
    }
}

fn lint_window(ctx: &mut Ctx<'_>, spec: &Spec, step_spot: &Option<Spot>) {
    let w = spec.window;
    let Some(spot) = step_spot else { return };
    if w.step_ms > w.size_ms {
        ctx.warn(
            spot.loc,
            &spot.path,
            format!(
                "the step ({}) is longer than the window size ({}): sessions that end between two windows are never evaluated",
                format_duration_ms(w.step_ms),
                format_duration_ms(w.size_ms)
            ),
            Some("use a step no longer than the size; leave `step` out for back-to-back (tumbling) windows".into()),
        );
    } else if w.size_ms % w.step_ms != 0 {
        let suggestion = NICE_STEPS_MS
            .iter()
            .rev()
            .find(|&&s| s <= w.step_ms && w.size_ms % s == 0)
            .map(|&s| format!(", e.g. `step: {}`", format_duration_ms(s)))
            .unwrap_or_default();
        ctx.warn(
            spot.loc,
            &spot.path,
            format!(
                "the window size ({}) is not a multiple of the step ({}): sessions are counted in an uneven number of windows",
                format_duration_ms(w.size_ms),
                format_duration_ms(w.step_ms)
            ),
            Some(format!("pick a step that divides the size{suggestion}")),
        );
    }
    // Burn-rate buckets divide the step and every tier window (so windows end on bucket
    // boundaries); below a minute they multiply the memory of every key's error budget.
    let bucket = crate::evaluate::slo::timeline_bucket_ms(w.step_ms, &spec.alerting.burn_rates);
    if bucket < 60_000
        && spec
            .objectives
            .iter()
            .any(|o| o.kind.slo_target().is_some())
    {
        ctx.warn(
            spot.loc,
            &spot.path,
            format!(
                "the step ({}) and the burn-rate windows have no common whole minute: error budgets are kept in {} buckets, {}× the memory of one-minute buckets",
                format_duration_ms(w.step_ms),
                format_duration_ms(bucket),
                60_000 / bucket
            ),
            Some("use a step of whole minutes".into()),
        );
    }
}

fn lint_segments(ctx: &mut Ctx<'_>, spec: &Spec, spots: &[Spot]) {
    for (field, spot) in spec.segment_by.iter().zip(spots) {
        let name = match field {
            KeyField::PromptVersion => "prompt_version",
            KeyField::Model => "model",
            KeyField::Provider => "provider",
            KeyField::Attribute(_) => {
                if spec.key_by.contains(field) {
                    ctx.warn(
                        spot.loc,
                        &spot.path,
                        "this field is already in `keyBy`, so it cannot split a key any further",
                        Some("remove it from `segmentBy`".into()),
                    );
                }
                continue;
            }
        };
        ctx.warn(
            spot.loc,
            &spot.path,
            format!("`segmentBy` on `{name}`, which is not an attribute"),
            Some(format!(
                "`{name}` is a key field: put it in `keyBy` (it then gets its own baseline); `segmentBy` is for `attributes.<name>`"
            )),
        );
    }
}

fn lint_tiers(ctx: &mut Ctx<'_>, decoded: &Decoded) {
    let spec = &decoded.spec;
    for (tier, ts) in spec.alerting.burn_rates.iter().zip(&decoded.spans.tiers) {
        if tier.long_ms > spec.period_ms {
            ctx.warn(
                ts.long.loc,
                &ts.long.path,
                format!(
                    "burn-rate tier `{}` looks back {}, longer than the {} error-budget period",
                    tier.name,
                    format_duration_ms(tier.long_ms),
                    format_duration_ms(spec.period_ms)
                ),
                Some("shorten the tier's `long` window or lengthen `spec.period.rolling`".into()),
            );
        }
        if let Some(short) = &ts.short
            && decoded.spans.explicit_tiers
            && tier.short_ms * 12 != tier.long_ms
        {
            ctx.warn(
                short.loc,
                &short.path,
                format!(
                    "the short window of tier `{}` ({}) is not long/12 ({})",
                    tier.name,
                    format_duration_ms(tier.short_ms),
                    format_duration_ms(tier.long_ms / 12)
                ),
                Some(format!(
                    "the SRE workbook uses short = long/12 so the alert resets soon after the burn stops: write `short: {}` or leave it out",
                    format_duration_ms(tier.long_ms / 12)
                )),
            );
        }
    }
}

fn lint_never_firing(ctx: &mut Ctx<'_>, decoded: &Decoded) {
    let spec = &decoded.spec;
    for (o, os) in spec.objectives.iter().zip(&decoded.spans.objectives) {
        let (Some(target), Some(spot)) = (o.kind.slo_target(), &os.target) else {
            continue;
        };
        let max = max_burn_rate(target);
        let dead: Vec<String> = spec
            .alerting
            .burn_rates
            .iter()
            .filter(|t| t.factor > max + 1e-9)
            .map(|t| format!("`{}` ({})", t.name, fmt_factor(t.factor)))
            .collect();
        if dead.is_empty() {
            continue;
        }
        let tiers = if dead.len() == 1 {
            format!("burn-rate tier {}", dead[0])
        } else {
            format!("burn-rate tiers {}", dead.join(" and "))
        };
        let needed = 1.0 - 1.0 / dead_max_factor(spec, max);
        let needed = (needed * 10_000.0).ceil() / 10_000.0;
        ctx.warn(
            spot.loc,
            &spot.path,
            format!(
                "{tiers} can never fire at target {}: the highest possible burn rate is {} (every session bad)",
                pct(target),
                fmt_factor(max)
            ),
            Some(format!(
                "raise the target to at least {} or list `spec.alerting.burnRates` with factors of at most {}",
                pct(needed),
                fmt_factor(max)
            )),
        );
    }
}

/// The largest factor among the tiers that cannot fire (to say which target lets all fire).
fn dead_max_factor(spec: &Spec, max: f64) -> f64 {
    spec.alerting
        .burn_rates
        .iter()
        .map(|t| t.factor)
        .filter(|f| *f > max + 1e-9)
        .fold(0.0, f64::max)
}
