//! Every objective type: breached when it should be, silent when it should be, gated by
//! `minSessions` where it must be.

use std::sync::Arc;

use serde_json::{Value, json};
use slawatch::catalog::Catalog;
use slawatch::evaluate::SpecRuntime;
use slawatch::finding::{BoundMethod, Check, Comparator, Detail, Finding, Side, Unit, Verdict};
use slawatch::ingest::decode::Decoder;
use slawatch::session::{PiiHandling, Session};
use slawatch::spec::model::{Dimension, Severity};

/// 2026-11-01T00:00:00Z
const T0: i64 = 1_793_491_200_000;

fn spec(objectives: &str) -> Arc<slawatch::spec::Spec> {
    let yaml = format!(
        "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {{name: t}}\nspec:\n  selector: {{agent: bot}}\n  window: {{size: 1h, step: 1h, allowedLateness: 0s}}\n  minSessions: 10\n  period: {{rolling: 28d}}\n  objectives:\n{objectives}"
    );
    let (mut specs, diags) = slawatch::spec::parse_str(&yaml, "test.yaml");
    assert!(
        !slawatch::spec::has_errors(&diags),
        "{}",
        slawatch::spec::render_all(&diags)
    );
    Arc::new(specs.remove(0))
}

/// A valid session `i` ending at `T0 + i * 30 s`, with `extra` fields merged over the defaults.
fn session(i: usize, extra: Value) -> Session {
    let mut v = json!({
        "session_id": format!("s-{i:04}"),
        "agent": "bot",
        "prompt_version": "p1",
        "model": "m-2026-09",
        "ended_at": slawatch::time::format_rfc3339_ms(T0 + i as i64 * 30_000),
        "duration_ms": 2000.0,
        "status": "success",
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.001},
        "quality": {"score": 0.9, "resolved": true, "refusal": false},
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    Decoder::new(Arc::new(Catalog::embedded()))
        .decode(&serde_json::to_vec(&v).unwrap())
        .unwrap()
}

/// 100 sessions over 50 minutes; `bad(i)` gives the fields of session i.
fn run(spec: Arc<slawatch::spec::Spec>, n: usize, fields: impl Fn(usize) -> Value) -> Vec<Finding> {
    let mut rt = SpecRuntime::new(spec);
    let mut out = Vec::new();
    for i in 0..n {
        let s = session(i, fields(i));
        rt.observe(&s).unwrap();
        out.extend(rt.advance(s.event_time));
    }
    out.extend(rt.flush());
    out
}

fn breaches<'a>(fs: &'a [Finding], objective: &str) -> Vec<&'a Finding> {
    fs.iter()
        .filter(|f| f.objective == objective && f.verdict == Verdict::Breach)
        .collect()
}

#[test]
fn success_ratio_pages_on_a_fast_burn_and_stays_silent_when_healthy() {
    let s = spec("    - {name: success, ratio: {good: {status: [success]}}, target: 99%}\n");
    let healthy = run(s.clone(), 100, |_| json!({}));
    assert!(breaches(&healthy, "success").is_empty(), "{healthy:?}");
    let bad = run(s, 100, |i| {
        if i % 5 == 0 {
            json!({"status": "error"})
        } else {
            json!({})
        }
    });
    let b = breaches(&bad, "success");
    assert_eq!(b.len(), 1, "{b:?}");
    let f = b[0];
    assert_eq!(
        (f.severity, f.check.as_str(), f.dimension),
        (Severity::Page, "burn_rate", Dimension::Availability)
    );
    assert!((f.observed - 0.8).abs() < 1e-9);
    let fast = &f.burn_rates[0];
    assert_eq!(fast.tier, "fast");
    assert!((fast.long_rate - 20.0).abs() < 1e-6, "{fast:?}");
    assert_eq!(
        f.exemplars,
        ["s-0000", "s-0005", "s-0010", "s-0015", "s-0020"]
    );
    assert!((f.budget_consumed.unwrap() - 20.0).abs() < 1e-6);
}

#[test]
fn latency_threshold_is_an_slo_on_the_share_under_t() {
    let s = spec("    - {name: fast, latency: {field: duration_ms, threshold: 8s}, target: 99%}\n");
    let f = run(
        s,
        100,
        |i| json!({"duration_ms": if i % 3 == 0 { 9000.0 } else { 1000.0 }}),
    );
    let b = breaches(&f, "fast");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].severity, Severity::Page);
    assert!(
        (b[0].observed - 66.0 / 100.0).abs() < 1e-9,
        "{}",
        b[0].observed
    );
}

#[test]
fn percentile_bound_breaches_with_the_slowest_sessions_as_exemplars() {
    let s = spec("    - {name: p99, percentile: {field: duration_ms, p: 99, max: 20s}}\n");
    let ok = run(s.clone(), 100, |_| json!({}));
    assert!(breaches(&ok, "p99").is_empty());
    // At 95% confidence, 100 sessions breach a p99 ≤ 20 s only when the 97th smallest (the
    // 4th slowest) is above 20 s: 3 slow sessions are not evidence enough, 4 are.
    let slow = |from: usize| move |i: usize| json!({"duration_ms": if i >= from { 60_000.0 } else { 2000.0 }});
    assert!(breaches(&run(s.clone(), 100, slow(97)), "p99").is_empty());
    let f = run(s, 100, slow(96));
    let b = breaches(&f, "p99");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].severity, Severity::Ticket);
    // ±1% sketch accuracy.
    assert!(
        (b[0].observed - 60_000.0).abs() / 60_000.0 < 0.011,
        "{}",
        b[0].observed
    );
    assert_eq!(
        b[0].exemplars[..4],
        ["s-0096", "s-0097", "s-0098", "s-0099"]
    );
    let bound = b[0].bound.as_ref().expect("judged on a confidence bound");
    assert_eq!(
        (bound.confidence, bound.side, bound.n, &bound.method),
        (
            0.95,
            Side::Lower,
            100,
            &BoundMethod::OrderStatistic { rank: Some(97) }
        )
    );
    assert!((bound.value.unwrap() - 60_000.0).abs() / 60_000.0 < 0.011);
    let message = slawatch::present::message(b[0]);
    assert!(
        message.ends_with("(100 sessions; 95% sure it is at least 60.5 s)"),
        "{message}"
    );
}

/// `confidence: none` is the point estimate of before: 3 slow sessions of 100 put the p99
/// above 20 s, and the finding carries no bound.
#[test]
fn percentile_on_the_point_estimate_with_confidence_none() {
    let s = spec(
        "    - {name: p99, percentile: {field: duration_ms, p: 99, max: 20s}, confidence: none}\n",
    );
    let f = run(
        s,
        100,
        |i| json!({"duration_ms": if i >= 97 { 60_000.0 } else { 2000.0 }}),
    );
    let b = breaches(&f, "p99");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].exemplars[..3], ["s-0097", "s-0098", "s-0099"]);
    assert!(b[0].bound.is_none());
    let wire = serde_json::to_value(b[0]).unwrap();
    assert!(wire.get("bound").is_none(), "{wire}");
}

#[test]
fn mean_bound_on_quality_score() {
    let s = spec("    - {name: quality, mean: {field: quality.score, min: 0.7}}\n");
    let f = run(
        s,
        40,
        |i| json!({"quality": {"score": if i % 2 == 0 { 0.4 } else { 0.8 }}}),
    );
    let b = breaches(&f, "quality");
    assert_eq!(b.len(), 1);
    assert!((b[0].observed - 0.6).abs() < 1e-9);
}

#[test]
fn rate_bounds_and_the_min_sessions_gate() {
    let s = spec(
        "    - {name: refusals, rate: {of: quality.refusal, max: 3%}}\n    - {name: resolved, dimension: behavior, rate: {of: quality.resolved, min: 70%}}\n",
    );
    let f = run(
        s.clone(),
        50,
        |i| json!({"quality": {"refusal": i % 10 == 0, "resolved": i % 2 == 0}}),
    );
    let r = breaches(&f, "refusals");
    assert_eq!(r.len(), 1);
    assert!((r[0].observed - 0.1).abs() < 1e-9);
    assert_eq!(r[0].dimension, Dimension::Behavior);
    assert_eq!(breaches(&f, "resolved").len(), 1);
    // Five sessions are below minSessions (10): no verdict, an insufficient_data finding.
    let thin = run(s, 5, |_| json!({"quality": {"refusal": true}}));
    assert!(breaches(&thin, "refusals").is_empty());
    assert!(thin.iter().any(|f| f.objective == "refusals"
        && f.verdict == Verdict::InsufficientData
        && f.severity == Severity::Info));
}

#[test]
fn spend_caps_percentile_and_window_budget() {
    let s = spec(
        "    - {name: spend, spend: {perSessionSoftUsd: 0.10, perSessionMaxUsd: 0.50, p99Usd: 0.05, windowBudgetUsd: 1}}\n",
    );
    let f = run(s, 100, |i| {
        let cost = match i {
            10 => 0.9,
            20 | 21 => 0.2,
            _ => 0.001,
        };
        json!({"usage": {"input_tokens": 10, "output_tokens": 10, "cost_usd": cost}})
    });
    let b = breaches(&f, "spend");
    let by_check = |c: &str| {
        b.iter()
            .find(|f| f.check.as_str() == c)
            .unwrap_or_else(|| panic!("no {c}: {b:?}"))
    };
    let hard = by_check("hard_cap");
    assert_eq!((hard.severity, hard.observed), (Severity::Page, 1.0));
    assert_eq!(hard.exemplars, ["s-0010"]);
    let soft = by_check("soft_cap");
    assert_eq!((soft.severity, soft.observed), (Severity::Ticket, 3.0));
    assert!(by_check("percentile").observed > 0.05);
    let budget = by_check("window_budget");
    assert!((budget.observed - (0.9 + 0.4 + 97.0 * 0.001)).abs() < 1e-9);
    assert!(b.iter().all(|f| f.dimension == Dimension::Governance));
}

#[test]
fn pii_handling_per_destination_is_zero_tolerance() {
    let s = spec(
        "    - name: pii\n      zeroTolerance: true\n      pii:\n        allowPassThroughTo: [model]\n        rules: [{destination: log, allow: [redacted, masked]}]\n",
    );
    let allowed = run(s.clone(), 20, |_| {
        json!({"pii": [
            {"type": "email", "handling": "passed_through", "destination": "model"},
            {"type": "phone", "handling": "redacted", "destination": "log"},
            {"type": "card_number", "handling": "masked", "destination": "tool:update_address"}
        ]})
    });
    assert!(breaches(&allowed, "pii").is_empty(), "{allowed:?}");
    let leak = run(s, 20, |i| {
        if i == 7 {
            json!({"pii": [{"type": "card_number", "handling": "passed_through", "destination": "tool:update_address"},
                           {"type": "email", "handling": "blocked", "destination": "log"}]})
        } else {
            json!({})
        }
    });
    let b = breaches(&leak, "pii");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].severity, Severity::Page);
    assert_eq!(b[0].exemplars, ["s-0007"]);
    assert_eq!(
        b[0].details,
        [
            (
                Detail::Pii {
                    kind: "card_number".into(),
                    handling: PiiHandling::PassedThrough,
                    destination: Some("tool:update_address".into()),
                },
                1
            ),
            (
                Detail::Pii {
                    kind: "email".into(),
                    handling: PiiHandling::Blocked,
                    destination: Some("log".into()),
                },
                1
            )
        ]
    );
}

#[test]
fn tool_deny_list_call_limit_and_loops() {
    let s = spec(
        "    - {name: tools, zeroTolerance: true, tools: {deny: [delete_*], maxCallsPerSession: 4, maxConsecutiveCalls: 2}}\n",
    );
    let call = |n: &str| json!({"name": n, "status": "ok", "duration_ms": 10.0});
    let f = run(s, 20, |i| match i {
        1 => json!({"tool_calls": [call("search_kb"), call("delete_account")]}),
        2 => json!({"tool_calls": [call("a"), call("b"), call("a"), call("b"), call("a")]}),
        3 => json!({"tool_calls": [call("a"), call("a"), call("a")]}),
        _ => json!({"tool_calls": [call("a"), call("a"), call("b")]}),
    });
    let b = breaches(&f, "tools");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].exemplars, ["s-0001", "s-0002", "s-0003"]);
    let labels: Vec<_> = b[0].details.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(
        labels,
        [
            "a called more than 2 times in a row",
            "denied tool delete_account",
            "more than 4 tool calls"
        ]
    );
}

#[test]
fn failures_without_an_allowed_fallback_and_the_fallback_rate_bound() {
    let s = spec(
        "    - name: fallback\n      fallback: {requiredOn: [error, timeout], allowedKinds: [handoff_human], maxRate: 10%}\n      target: 95%\n",
    );
    // 20 failures, all handed to a human: covered, but 20% fell back (> 10%).
    let covered = run(s.clone(), 100, |i| {
        if i % 5 == 0 {
            json!({"status": "error", "fallback": {"triggered": true, "kind": "handoff_human"}})
        } else {
            json!({})
        }
    });
    let c = breaches(&covered, "fallback");
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].check, Check::MaxRate);
    // The same failures with a kind that is not allowed: coverage burns (page).
    let uncovered = run(s, 100, |i| {
        if i % 5 == 0 {
            json!({"status": "timeout", "fallback": {"triggered": true, "kind": "retry_smaller_model"}})
        } else {
            json!({})
        }
    });
    let u = breaches(&uncovered, "fallback");
    let burn = u
        .iter()
        .find(|f| f.check == Check::BurnRate)
        .expect("coverage burn");
    assert_eq!(
        (burn.severity, burn.dimension),
        (Severity::Page, Dimension::Fallback)
    );
    assert_eq!(burn.observed, 0.0);
}

/// Issue 9: a window judged without a ticket or page yields a clear that says where the
/// objective stands — value, target, budget and every burn-rate tier.
#[test]
fn a_healthy_slo_window_yields_a_clear_with_its_standing() {
    let s = spec("    - {name: success, ratio: {good: {status: [success]}}, target: 99%}\n");
    let mut rt = SpecRuntime::new(s);
    let mut findings = Vec::new();
    // 100 sessions, one error: SLI 99/100 = 0.99, exactly the target.
    for i in 0..100 {
        let st = if i == 50 { "error" } else { "success" };
        let x = session(i, json!({"status": st}));
        rt.observe(&x).unwrap();
        findings.extend(rt.advance(x.event_time));
    }
    findings.extend(rt.flush());
    assert!(breaches(&findings, "success").is_empty(), "{findings:?}");
    let clears = rt.drain_clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let c = &clears[0];
    assert_eq!(c.window_end, T0 + 3_600_000);
    assert_eq!(c.sessions, 100);
    assert_eq!(c.observed, Some(0.99));
    assert_eq!(
        (c.target, c.comparator, c.unit),
        (0.99, Comparator::AtLeast, Unit::Ratio)
    );
    // 1 bad of 100 against a budget of 1% of 100 sessions: all of it used.
    assert!((c.budget_consumed.unwrap() - 1.0).abs() < 1e-9, "{c:?}");
    // Every tier of the default alerting is reported: the error rate is exactly the budget
    // rate (1×) over the fast tier's long window.
    assert!(!c.burn_rates.is_empty());
    let fast = c
        .burn_rates
        .iter()
        .find(|b| b.tier == "fast")
        .expect("fast tier");
    assert!((fast.long_rate - 1.0).abs() < 1e-9, "{fast:?}");
    // The 5 min before the window's end hold no session (the last ends at 49.5 min).
    assert_eq!(fast.short_rate, 0.0, "{fast:?}");
}

#[test]
fn a_healthy_percentile_window_yields_a_clear_with_its_value() {
    let s = spec("    - {name: p99, percentile: {field: duration_ms, p: 99, max: 20s}}\n");
    let mut rt = SpecRuntime::new(s);
    for i in 0..100 {
        let x = session(i, json!({}));
        rt.observe(&x).unwrap();
        assert!(rt.advance(x.event_time).is_empty());
    }
    assert!(rt.flush().is_empty());
    let clears = rt.drain_clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let c = &clears[0];
    // Every session lasted 2000 ms; the sketch's relative error is 1%.
    let v = c.observed.unwrap();
    assert!((v - 2000.0).abs() <= 20.0, "{v}");
    assert_eq!(
        (c.target, c.comparator, c.unit),
        (20_000.0, Comparator::AtMost, Unit::Ms)
    );
    assert!(c.burn_rates.is_empty() && c.budget_consumed.is_none() && c.drift.is_none());
}

/// Issue 10, item 9: per-window thresholds fire on evidence, not chance. Many simulated
/// one-hour windows (seeded, so deterministic) are judged twice, by the default 95% bound and
/// by `confidence: none`, and the share of windows that breach is compared with what the
/// bound promises: at most 1 − confidence of the windows at the threshold itself, less below
/// it. Run with `--nocapture` to see the measured rates.
mod evidence {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeMap;

    const HOUR: i64 = 3_600_000;

    /// Share of judged windows that breached, per objective.
    struct Rates {
        windows: u64,
        breached: BTreeMap<String, u64>,
    }

    impl Rates {
        fn of(&self, objective: &str) -> f64 {
            *self.breached.get(objective).unwrap_or(&0) as f64 / self.windows as f64
        }
    }

    /// `windows` tumbling one-hour windows of a uniformly drawn `sessions` count each; `draw`
    /// sets the measured fields of every session.
    fn simulate(
        objectives: &str,
        windows: usize,
        sessions: std::ops::RangeInclusive<usize>,
        seed: u64,
        mut draw: impl FnMut(&mut ChaCha8Rng, &mut Session),
    ) -> Rates {
        let s = spec(objectives);
        let names: Vec<String> = s.objectives.iter().map(|o| o.name.clone()).collect();
        let mut rt = SpecRuntime::new(s);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base = session(0, json!({}));
        let mut breached = BTreeMap::new();
        let mut count = |fs: Vec<Finding>| {
            for f in fs.iter().filter(|f| f.verdict == Verdict::Breach) {
                *breached.entry(f.objective.clone()).or_insert(0) += 1;
            }
        };
        for w in 0..windows {
            let n = rng.random_range(sessions.clone());
            for i in 0..n {
                let mut x = base.clone();
                x.session_id = format!("w{w}-{i}");
                x.event_time = T0 + w as i64 * HOUR + (i as i64 * HOUR) / n as i64;
                draw(&mut rng, &mut x);
                rt.observe(&x).unwrap();
            }
            count(rt.advance(T0 + (w + 1) as i64 * HOUR));
        }
        count(rt.flush());
        let judged: Vec<u64> = rt.stats().iter().map(|st| st.windows_evaluated).collect();
        assert!(
            judged.iter().all(|&j| j == windows as u64),
            "{names:?}: {judged:?}"
        );
        Rates {
            windows: windows as u64,
            breached,
        }
    }

    /// Three standard errors of a rate `p` measured over `n` windows.
    fn tolerance(p: f64, n: u64) -> f64 {
        3.0 * (p * (1.0 - p) / n as f64).sqrt()
    }

    const P99_TWICE: &str = "    - {name: p99, percentile: {p: 99, max: 20s}}\n    - {name: p99-point, percentile: {p: 99, max: 20s}, confidence: none}\n";

    /// `timeouts` of the sessions time out at 30 s; the rest take 1–8 s.
    fn durations(timeouts: f64) -> impl FnMut(&mut ChaCha8Rng, &mut Session) {
        move |rng, s| {
            if rng.random_bool(timeouts) {
                s.duration_ms = Some(30_000.0);
                s.status = slawatch::session::Status::Timeout;
            } else {
                s.duration_ms = Some(rng.random_range(1000.0..8000.0));
            }
        }
    }

    #[test]
    fn steady_timeouts_do_not_ticket_a_p99_issue_10_item_9() {
        // 0.3% timeouts: the true p99 is far below 20 s. The point estimate still puts a
        // window's p99 above 20 s whenever more than 1% of its sessions time out — six of
        // 500 — which chance does in about 0.6% of windows (scipy: the binomial tail averaged
        // over 100–600 sessions), every few days at 15-minute steps. The bound needs about
        // twice as many (4 of 100, 10 of 500): 0.008% of windows.
        let r = simulate(P99_TWICE, 4000, 100..=600, 9, durations(0.003));
        let (bound, point) = (r.of("p99"), r.of("p99-point"));
        println!("0.3% timeouts, p99 ≤ 20s, 4000 windows: default {bound:.4}, none {point:.4}");
        assert!(bound <= 0.05, "default confidence: {bound}");
        assert!(bound <= 0.0005, "expected about 0.00008, got {bound}");
        assert!(
            point >= 0.003,
            "the point estimate alarms by chance: {point}"
        );
    }

    #[test]
    fn at_the_p99_limit_the_bound_alarms_in_at_most_5_percent_of_windows() {
        // Exactly 1% beyond 20 s: the worst case a true p99 ≤ 20 s allows. scipy: the bound
        // alarms in 3.2% of windows of 100–600 sessions, the point estimate in 26.8%.
        let r = simulate(P99_TWICE, 2000, 100..=600, 10, durations(0.01));
        let (bound, point) = (r.of("p99"), r.of("p99-point"));
        println!("1% timeouts (the limit), 2000 windows: default {bound:.4}, none {point:.4}");
        assert!(bound <= 0.05 + tolerance(0.05, r.windows), "{bound}");
        assert!(point >= 0.2, "{point}");
    }

    #[test]
    fn a_true_p99_breach_is_still_flagged_in_most_windows() {
        // 3% timeouts: the true p99 is 30 s. scipy: the bound flags 78.9% of windows of
        // 100–600 sessions (35% at 100, 97% at 600), the point estimate 94%.
        let r = simulate(P99_TWICE, 1000, 100..=600, 11, durations(0.03));
        let (bound, point) = (r.of("p99"), r.of("p99-point"));
        println!("3% timeouts (a true breach), 1000 windows: default {bound:.4}, none {point:.4}");
        assert!(bound >= 0.7, "{bound}");
        assert!(point >= 0.9, "{point}");
    }

    #[test]
    fn rates_and_means_at_their_limits_alarm_in_at_most_5_percent_of_windows() {
        let objectives = "    - {name: refusals, rate: {of: quality.refusal, max: 10%}}\n    - {name: refusals-point, rate: {of: quality.refusal, max: 10%}, confidence: none}\n    - {name: quality, mean: {field: quality.score, min: 0.7}}\n    - {name: quality-point, mean: {field: quality.score, min: 0.7}, confidence: none}\n    - {name: cost, mean: {field: cost_usd, max: 0.01}}\n    - {name: cost-point, mean: {field: cost_usd, max: 0.01}, confidence: none}\n";
        // Every true value sits exactly at its limit: refusals 10%, scores uniform on
        // [0.5, 0.9] (mean 0.7), costs exponential with mean $0.01 (heavily skewed).
        let r = simulate(objectives, 2000, 100..=300, 12, |rng, s| {
            s.quality.refusal = Some(rng.random_bool(0.10));
            s.quality.score = Some(rng.random_range(0.5..0.9));
            s.cost_usd = Some(-0.01 * (1.0 - rng.random::<f64>()).ln());
        });
        let limit = 0.05 + tolerance(0.05, r.windows);
        for (o, point) in [
            ("refusals", "refusals-point"),
            ("quality", "quality-point"),
            ("cost", "cost-point"),
        ] {
            let (bound, p) = (r.of(o), r.of(point));
            println!("{o} at its limit, 2000 windows: default {bound:.4}, none {p:.4}");
            // Wilson and t are approximate: scipy puts the Wilson bound's exact rate for 10%
            // at 100–300 sessions at 5.5%; t on right-skewed costs errs on the safe side.
            assert!(bound <= limit, "{o}: {bound} > {limit}");
            assert!(p >= 0.3, "{point}: {p}");
        }
    }
}

/// Issue 10, item 11: each key's newest session is reported as its windows close, and a
/// restart (snapshot → JSON → restore) neither loses nor rewinds it.
#[test]
fn a_keys_newest_session_is_reported_at_window_close_and_survives_a_restore() {
    let s = spec("    - {name: success, ratio: {good: {status: [success]}}, target: 99%}\n");
    let mut rt = SpecRuntime::new(s.clone());
    // p1 for 40 minutes (80 sessions), then p2 takes over for the rest of the first hour.
    for i in 0..120 {
        let prompt = if i < 80 { "p1" } else { "p2" };
        let x = session(i, json!({"prompt_version": prompt}));
        rt.observe(&x).unwrap();
        rt.advance(x.event_time);
    }
    assert!(
        rt.drain_last_sessions().is_empty(),
        "no window closed yet: nothing to report"
    );
    let snap = serde_json::to_vec(&rt.snapshot()).unwrap();
    let mut back = SpecRuntime::new(s);
    assert!(back.restore(serde_json::from_slice(&snap).unwrap()));
    let key = |p: &str| format!("agent=bot,prompt_version={p},model=m-2026-09");
    assert_eq!(back.last_session(&key("p1")), Some(T0 + 79 * 30_000));
    assert_eq!(back.last_session(&key("p2")), Some(T0 + 119 * 30_000));
    // Only p2 goes on; the first hour closes: both keys are reported, p1 with its last session.
    let x = session(130, json!({"prompt_version": "p2"}));
    back.observe(&x).unwrap();
    back.advance(x.event_time);
    let mut seen: Vec<(String, i64)> = back
        .drain_last_sessions()
        .into_iter()
        .map(|l| {
            let prompt = l.key.iter().find(|(k, _)| k == "prompt_version").unwrap();
            (prompt.1.clone(), l.at)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("p1".to_owned(), T0 + 79 * 30_000),
            ("p2".to_owned(), T0 + 130 * 30_000)
        ]
    );
    // The second hour holds only p2: p1 is not reported again.
    let x = session(250, json!({"prompt_version": "p2"}));
    back.observe(&x).unwrap();
    back.advance(x.event_time);
    let again = back.drain_last_sessions();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].at, T0 + 250 * 30_000);
}
