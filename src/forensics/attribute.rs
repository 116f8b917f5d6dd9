//! Which layer is it in: the rise in sessions counting against an objective, split across the
//! values of every layer by comparing the panes before the onset with those after it. Pure and
//! deterministic; every number is a ratio of counts.
//!
//! Let `N₀, B₀` be the sessions and bad sessions before the onset, `N₁, B₁` after, `r₀ = B₀/N₀`.
//! The **excess** `E = B₁ − N₁·r₀` is how many more sessions counted against the objective
//! after the onset than the old rate predicts. A candidate explains the share of `E` that is in
//! its sessions beyond what the rest of its layer shows:
//!
//! - **a value new at the onset** (prompt version, model, provider, segment with < 2 % of the
//!   traffic before and ≥ 5 % after — a rollout): its bad sessions beyond the old rate of the
//!   key, `(b₁ − n₁·r₀) / E` (metric: traffic share before → after);
//! - **an existing value** of a partition layer (prompt, model, provider, segment): the rise of
//!   its bad rate beyond the rise in the rest of the layer, on its sessions after the onset,
//!   plus the traffic that moved into it times how much worse than the key it was before —
//!   `[n₁·((r₁ᵥ − r₀ᵥ) − (r₁ᵣₑₛₜ − r₀ᵣₑₛₜ)) + (n₁ − N₁·s₀ᵥ)·(r₀ᵥ − r₀)] / E`. A layer with a
//!   single value explains nothing (it is the key itself);
//! - **a tool**: the same for the sessions calling it against those that do not (a session
//!   calls several tools, so tools are not a partition); metric: the tool's call error rate,
//!   call share or mean latency, whichever got worse most. A tool none of whose measures got
//!   worse by a fifth is not a candidate: its sessions merely share the cause;
//! - **provider errors**: per provider, the failed sessions with a `provider…` `error_type`
//!   beyond their old share of the traffic, `(b₁ₑ − N₁·b₀ₑ/N₀) / E` (metric: share of sessions
//!   failing so);
//! - **config**: a reload at the onset takes what the layers above leave unexplained.
//!
//! Shares are clipped to `[0, 1]`; candidates below [`MIN_EXPLAINED`] are dropped, the rest
//! ranked by share explained (ties by layer, then name), at most [`MAX_CANDIDATES`].

use std::collections::BTreeMap;

use super::retain::{Cell, ForensicPane, ToolCell};
use super::{Candidate, CandidateMetric, Layer};

/// Candidates explaining less than this share of the change are not listed.
pub const MIN_EXPLAINED: f64 = 0.10;
/// The most candidates listed.
pub const MAX_CANDIDATES: usize = 5;
/// A value with less than this share of the traffic before the onset and at least
/// [`NEW_AFTER`] after it is a rollout.
const NEW_BEFORE: f64 = 0.02;
/// A tool is a candidate only when its error rate, call share or mean latency rose by at least
/// this factor: sessions that fail more while calling a tool that works as before point at
/// another cause they share.
const TOOL_WORSE_BY: f64 = 1.2;
const NEW_AFTER: f64 = 0.05;

fn rate(bad: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { bad as f64 / n as f64 }
}

/// Totals of one side of the onset.
#[derive(Clone, Copy)]
struct Side {
    n: f64,
    bad: f64,
}

impl Side {
    fn rate(self) -> f64 {
        if self.n > 0.0 { self.bad / self.n } else { 0.0 }
    }
}

/// The candidates for tracked objective `j`, given the panes before and after the onset merged
/// into one each; `reload_at_onset` when a configuration reload happened at the onset.
pub fn attribute(
    before: &ForensicPane,
    after: &ForensicPane,
    j: usize,
    reload_at_onset: bool,
) -> Vec<Candidate> {
    let k0 = Side {
        n: before.sessions as f64,
        bad: before.bad(j) as f64,
    };
    let k1 = Side {
        n: after.sessions as f64,
        bad: after.bad(j) as f64,
    };
    let excess = k1.bad - k1.n * k0.rate();
    let mut out: BTreeMap<(Layer, String), Candidate> = BTreeMap::new();
    let mut offer = |c: Candidate| {
        let slot = out.entry((c.layer, c.name.clone()));
        match slot {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if c.explained > o.get().explained {
                    o.insert(c);
                }
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(c);
            }
        }
    };
    if k0.n > 0.0 && k1.n > 0.0 && excess > 0.0 {
        let layers = [
            (Layer::Prompt, &before.prompt, &after.prompt),
            (Layer::Model, &before.model, &after.model),
            (Layer::Provider, &before.provider, &after.provider),
            (Layer::Input, &before.segment, &after.segment),
        ];
        for (layer, b, a) in layers {
            for c in partition(layer, b, a, j, k0, k1, excess) {
                offer(c);
            }
        }
        for c in tools(before, after, j, k0, k1, excess) {
            offer(c);
        }
        for c in provider_errors(before, after, j, k0, k1, excess) {
            offer(c);
        }
    }
    let reload = reload_at_onset.then_some((CandidateMetric::BadRate, k0.rate(), k1.rate()));
    rank(out.into_values().collect(), reload)
}

/// The candidates worth listing, best first: a reload at the onset (its metric and values
/// given) takes what the others leave unexplained; those under [`MIN_EXPLAINED`] are dropped,
/// ties ranked by layer, then name; at most [`MAX_CANDIDATES`].
fn rank(mut ranked: Vec<Candidate>, reload: Option<(CandidateMetric, f64, f64)>) -> Vec<Candidate> {
    if let Some((metric, before, after)) = reload {
        let taken: f64 = ranked
            .iter()
            .filter(|c| c.explained >= MIN_EXPLAINED)
            .map(|c| c.explained)
            .sum();
        ranked.push(Candidate {
            layer: Layer::Config,
            name: "reload".into(),
            explained: (1.0 - taken).clamp(0.0, 1.0),
            metric,
            before,
            after,
            in_bad_share: 1.0,
        });
    }
    ranked.retain(|c| c.explained >= MIN_EXPLAINED);
    ranked.sort_by(|a, b| {
        b.explained
            .total_cmp(&a.explained)
            .then(a.layer.cmp(&b.layer))
            .then(a.name.cmp(&b.name))
    });
    ranked.truncate(MAX_CANDIDATES);
    ranked
}

fn side(c: Option<&Cell>, j: usize) -> Side {
    c.map_or(Side { n: 0.0, bad: 0.0 }, |c| Side {
        n: c.sessions as f64,
        bad: c.bad(j) as f64,
    })
}

fn rest(total: Side, part: Side) -> Side {
    Side {
        n: (total.n - part.n).max(0.0),
        bad: (total.bad - part.bad).max(0.0),
    }
}

/// The share of `E` of a subset of sessions (`v₀`, `v₁`) against the rest of the key.
fn share_of(v0: Side, v1: Side, k0: Side, k1: Side, excess: f64) -> (f64, f64, f64, bool) {
    share_of_with(v0, v1, k0, k1, excess, rest)
}

/// [`share_of`] with the rest of the key taken by `rest` (counts clip at zero; signed sums of
/// a feature do not).
fn share_of_with(
    v0: Side,
    v1: Side,
    k0: Side,
    k1: Side,
    excess: f64,
    rest: fn(Side, Side) -> Side,
) -> (f64, f64, f64, bool) {
    let (s0, s1) = (v0.n / k0.n, v1.n / k1.n);
    if s0 < NEW_BEFORE && s1 >= NEW_AFTER {
        let c = v1.bad - v1.n * k0.rate();
        return (c / excess, 0.0, c, true);
    }
    let (r0, r1) = (rest(k0, v0), rest(k1, v1));
    let rate_effect = if v0.n > 0.0 && r0.n > 0.0 && r1.n > 0.0 {
        v1.n * ((v1.rate() - v0.rate()) - (r1.rate() - r0.rate()))
    } else {
        0.0
    };
    let mix_effect = if v0.n > 0.0 {
        (v1.n - k1.n * s0) * (v0.rate() - k0.rate())
    } else {
        0.0
    };
    (
        (rate_effect + mix_effect) / excess,
        rate_effect,
        mix_effect,
        false,
    )
}

fn partition(
    layer: Layer,
    before: &BTreeMap<String, Cell>,
    after: &BTreeMap<String, Cell>,
    j: usize,
    k0: Side,
    k1: Side,
    excess: f64,
) -> Vec<Candidate> {
    let mut values: Vec<&String> = before.keys().chain(after.keys()).collect();
    values.sort();
    values.dedup();
    if values.len() < 2 {
        return Vec::new();
    }
    values
        .into_iter()
        .map(|v| {
            let (v0, v1) = (side(before.get(v), j), side(after.get(v), j));
            let (explained, rate_effect, mix_effect, new) = share_of(v0, v1, k0, k1, excess);
            let (metric, b, a) = if new || mix_effect.abs() > rate_effect.abs() {
                (CandidateMetric::TrafficShare, v0.n / k0.n, v1.n / k1.n)
            } else {
                (CandidateMetric::BadRate, v0.rate(), v1.rate())
            };
            Candidate {
                layer,
                name: v.clone(),
                explained: explained.clamp(0.0, 1.0),
                metric,
                before: b,
                after: a,
                in_bad_share: if k1.bad > 0.0 { v1.bad / k1.bad } else { 0.0 },
            }
        })
        .collect()
}

fn tools(
    before: &ForensicPane,
    after: &ForensicPane,
    j: usize,
    k0: Side,
    k1: Side,
    excess: f64,
) -> Vec<Candidate> {
    let calls = |p: &ForensicPane| p.tools.values().map(|t| t.calls).sum::<u64>();
    let (calls0, calls1) = (calls(before), calls(after));
    let mut names: Vec<&String> = before.tools.keys().chain(after.tools.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let t0 = before.tools.get(name).cloned().unwrap_or_default();
            let t1 = after.tools.get(name).cloned().unwrap_or_default();
            let (v0, v1) = (side(Some(&t0.sessions), j), side(Some(&t1.sessions), j));
            let (explained, ..) = share_of(v0, v1, k0, k1, excess);
            let mean_ms = |t: &ToolCell| {
                if t.calls > 0 {
                    t.latency_us as f64 / 1e3 / t.calls as f64
                } else {
                    0.0
                }
            };
            let options = [
                (
                    CandidateMetric::ErrorRate,
                    (rate(t0.errors, t0.calls), rate(t1.errors, t1.calls)),
                ),
                (
                    CandidateMetric::CallShare,
                    (rate(t0.calls, calls0), rate(t1.calls, calls1)),
                ),
                (CandidateMetric::LatencyMs, (mean_ms(&t0), mean_ms(&t1))),
            ];
            // The measure that got worse most, relative to where it was (latency in seconds,
            // so a millisecond's jitter does not count as a rise from nothing); the first of
            // equals wins, in the order above. A tool none of whose measures got worse by
            // [`TOOL_WORSE_BY`] only shares its sessions with the cause: not a candidate.
            let worse_by = |metric: CandidateMetric, (b, a): (f64, f64)| {
                let unit = if metric == CandidateMetric::LatencyMs {
                    1e3
                } else {
                    1.0
                };
                (a / unit + 1e-3) / (b / unit + 1e-3)
            };
            let (_, metric, (b, a)) = options
                .into_iter()
                .map(|(metric, ba)| (worse_by(metric, ba), metric, ba))
                .filter(|(by, ..)| *by >= TOOL_WORSE_BY)
                .reduce(|best, o| if best.0 >= o.0 { best } else { o })?;
            Some(Candidate {
                layer: Layer::Tool,
                name: name.clone(),
                explained: explained.clamp(0.0, 1.0),
                metric,
                before: b,
                after: a,
                in_bad_share: if k1.bad > 0.0 { v1.bad / k1.bad } else { 0.0 },
            })
        })
        .collect()
}

fn provider_errors(
    before: &ForensicPane,
    after: &ForensicPane,
    j: usize,
    k0: Side,
    k1: Side,
    excess: f64,
) -> Vec<Candidate> {
    // Per provider: (sessions, bad) failing with a provider error, before and after.
    let mut by: BTreeMap<&str, (Side, Side)> = BTreeMap::new();
    let zero = Side { n: 0.0, bad: 0.0 };
    for (map, after_side) in [(&before.errors, false), (&after.errors, true)] {
        for (label, c) in map {
            let Some((provider, error)) = label.split_once('/') else {
                continue;
            };
            if !error.starts_with("provider") {
                continue;
            }
            let e = by.entry(provider).or_insert((zero, zero));
            let s = if after_side { &mut e.1 } else { &mut e.0 };
            s.n += c.sessions as f64;
            s.bad += c.bad(j) as f64;
        }
    }
    by.into_iter()
        .map(|(provider, (e0, e1))| {
            let c = e1.bad - k1.n * (e0.bad / k0.n);
            Candidate {
                layer: Layer::Provider,
                name: provider.to_owned(),
                explained: (c / excess).clamp(0.0, 1.0),
                metric: CandidateMetric::ErrorRate,
                before: e0.n / k0.n,
                after: e1.n / k1.n,
                in_bad_share: if k1.bad > 0.0 { e1.bad / k1.bad } else { 0.0 },
            }
        })
        .collect()
}

/// One side of the onset for [`attribute_shift`]: the drifted feature's count and sum of values
/// over the key, and per layer value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShiftSide {
    pub count: f64,
    pub sum: f64,
    /// Per layer and value: `(count, sum)`.
    pub layers: BTreeMap<Layer, BTreeMap<String, (f64, f64)>>,
}

/// Counts clip at zero, a signed sum does not.
fn rest_signed(total: Side, part: Side) -> Side {
    Side {
        n: (total.n - part.n).max(0.0),
        bad: total.bad - part.bad,
    }
}

/// The candidates of a feature's shift (drift objectives): the same split as [`attribute`],
/// with a value's mean in place of its bad rate. The excess is `E = S₁ − N₁·m₀` (`S₁` the sum
/// after the onset, `m₀` the mean before), taken on the side of the change: for a fall
/// (`rise == false`) every value is negated first. `rate_feature` when the feature is yes/no
/// (its mean is a rate). A candidate's `in_bad_share` is its share of the key's sessions after
/// the onset — every one of them counts against a drift objective.
pub fn attribute_shift(
    before: &ShiftSide,
    after: &ShiftSide,
    rise: bool,
    rate_feature: bool,
    reload_at_onset: bool,
) -> Vec<Candidate> {
    let sign = if rise { 1.0 } else { -1.0 };
    let side = |(n, sum): (f64, f64)| Side { n, bad: sign * sum };
    let mean = |(n, sum): (f64, f64)| if n > 0.0 { sum / n } else { 0.0 };
    let (t0, t1) = ((before.count, before.sum), (after.count, after.sum));
    let (k0, k1) = (side(t0), side(t1));
    let excess = k1.bad - k1.n * k0.rate();
    let metric = if rate_feature {
        CandidateMetric::FeatureRate
    } else {
        CandidateMetric::FeatureMean
    };
    let mut out = Vec::new();
    if k0.n > 0.0 && k1.n > 0.0 && excess > 0.0 {
        let empty = BTreeMap::new();
        for layer in [Layer::Prompt, Layer::Model, Layer::Provider, Layer::Input] {
            let b = before.layers.get(&layer).unwrap_or(&empty);
            let a = after.layers.get(&layer).unwrap_or(&empty);
            let mut values: Vec<&String> = b.keys().chain(a.keys()).collect();
            values.sort();
            values.dedup();
            if values.len() < 2 {
                continue;
            }
            for v in values {
                let (c0, c1) = (
                    b.get(v).copied().unwrap_or_default(),
                    a.get(v).copied().unwrap_or_default(),
                );
                let (v0, v1) = (side(c0), side(c1));
                let (explained, rate_effect, mix_effect, new) =
                    share_of_with(v0, v1, k0, k1, excess, rest_signed);
                let (m, before, after) = if new || mix_effect.abs() > rate_effect.abs() {
                    (CandidateMetric::TrafficShare, v0.n / k0.n, v1.n / k1.n)
                } else {
                    (metric, mean(c0), mean(c1))
                };
                out.push(Candidate {
                    layer,
                    name: v.clone(),
                    explained: explained.clamp(0.0, 1.0),
                    metric: m,
                    before,
                    after,
                    in_bad_share: v1.n / k1.n,
                });
            }
        }
    }
    let reload = reload_at_onset.then_some((metric, mean(t0), mean(t1)));
    rank(out, reload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(sessions: u64, bad: u64) -> Cell {
        Cell {
            sessions,
            bad: vec![bad],
        }
    }

    fn pane(sessions: u64, bad: u64) -> ForensicPane {
        let mut p = ForensicPane {
            sessions,
            ..ForensicPane::default()
        };
        p.objectives.push(super::super::retain::ObjectivePane {
            bad,
            ..Default::default()
        });
        p
    }

    #[test]
    fn a_new_prompt_version_explains_its_excess_and_a_single_model_nothing() {
        let mut b = pane(1000, 100);
        b.prompt.insert("v1".into(), cell(1000, 100));
        b.model.insert("m".into(), cell(1000, 100));
        let mut a = pane(1000, 400);
        a.prompt.insert("v2".into(), cell(1000, 400));
        a.model.insert("m".into(), cell(1000, 400));
        let c = attribute(&b, &a, 0, false);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].layer, c[0].name.as_str()), (Layer::Prompt, "v2"));
        // E = 400 − 1000 · 0.1 = 300, all in v2.
        assert!((c[0].explained - 1.0).abs() < 1e-12);
        assert_eq!(c[0].metric, CandidateMetric::TrafficShare);
        assert_eq!((c[0].before, c[0].after), (0.0, 1.0));
    }

    #[test]
    fn a_mix_shift_is_split_by_the_mix_effect() {
        // mobile fails 30 %, web 3 %; mobile goes from 20 % to 60 % of the traffic.
        let mut b = pane(1000, 60 + 24);
        b.segment.insert("channel=mobile".into(), cell(200, 60));
        b.segment.insert("channel=web".into(), cell(800, 24));
        let mut a = pane(1000, 180 + 12);
        a.segment.insert("channel=mobile".into(), cell(600, 180));
        a.segment.insert("channel=web".into(), cell(400, 12));
        let c = attribute(&b, &a, 0, false);
        // r₀ = 0.084, E = 192 − 84 = 108; mobile: (600 − 200)(0.3 − 0.084) = 86.4 → 0.8;
        // web: (400 − 800)(0.03 − 0.084) = 21.6 → 0.2. Rates within did not change.
        assert_eq!(c[0].name, "channel=mobile");
        assert!((c[0].explained - 0.8).abs() < 1e-9, "{c:?}");
        assert!((c[1].explained - 0.2).abs() < 1e-9, "{c:?}");
        assert_eq!(c[0].metric, CandidateMetric::TrafficShare);
    }

    #[test]
    fn a_failing_tool_beats_the_tools_it_shares_sessions_with() {
        let tool = |calls, errors, sessions, bad| ToolCell {
            calls,
            errors,
            latency_us: 150_000 * calls,
            sessions: cell(sessions, bad),
        };
        let mut b = pane(1000, 10);
        b.tools.insert("get_order".into(), tool(400, 6, 300, 3));
        b.tools.insert("search_kb".into(), tool(700, 10, 600, 6));
        let mut a = pane(1000, 310);
        // get_order fails in every session calling it; half of them also search.
        a.tools.insert("get_order".into(), tool(400, 300, 300, 300));
        a.tools.insert("search_kb".into(), tool(700, 160, 600, 156));
        let c = attribute(&b, &a, 0, false);
        assert_eq!((c[0].layer, c[0].name.as_str()), (Layer::Tool, "get_order"));
        assert_eq!(c[0].metric, CandidateMetric::ErrorRate);
        assert!(c[0].explained > 0.9, "{c:?}");
        assert!((c[0].in_bad_share - 300.0 / 310.0).abs() < 1e-12);
        assert!(c.iter().all(|x| x.name != "search_kb"), "{c:?}");
    }

    #[test]
    fn a_tool_that_works_as_before_is_not_a_candidate_even_when_its_sessions_fail_more() {
        // The provider fails; sessions calling `update_address` fail with it, but the tool's
        // error rate, call share and latency (165 ms → 144 ms) did not get worse.
        let tool = |calls, errors, latency_ms: u64, sessions, bad| ToolCell {
            calls,
            errors,
            latency_us: latency_ms * 1000 * calls,
            sessions: cell(sessions, bad),
        };
        let mut b = pane(1000, 10);
        b.tools
            .insert("update_address".into(), tool(300, 3, 165, 300, 3));
        let mut a = pane(1000, 210);
        a.tools
            .insert("update_address".into(), tool(300, 3, 144, 300, 120));
        assert!(attribute(&b, &a, 0, false).is_empty());
        // The same sessions with the tool's latency up by a half: a candidate, by latency.
        a.tools
            .insert("update_address".into(), tool(300, 3, 250, 300, 120));
        let c = attribute(&b, &a, 0, false);
        assert_eq!(
            (c[0].name.as_str(), c[0].metric),
            ("update_address", CandidateMetric::LatencyMs)
        );
        assert_eq!((c[0].before, c[0].after), (165.0, 250.0));
    }

    #[test]
    fn a_reload_at_the_onset_takes_what_is_left() {
        let b = pane(1000, 10);
        let a = pane(1000, 50);
        let c = attribute(&b, &a, 0, true);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].layer, c[0].explained), (Layer::Config, 1.0));
    }

    /// Builds both sides from individual sessions `(layer values, value)`, the way the retained
    /// panes would sum them.
    fn shift_side(sessions: &[(&str, &str, f64)]) -> ShiftSide {
        let mut s = ShiftSide::default();
        for (prompt, model, x) in sessions {
            s.count += 1.0;
            s.sum += x;
            for (layer, v) in [(Layer::Prompt, prompt), (Layer::Model, model)] {
                let e = s
                    .layers
                    .entry(layer)
                    .or_default()
                    .entry(v.to_string())
                    .or_default();
                e.0 += 1.0;
                e.1 += x;
            }
        }
        s
    }

    #[test]
    fn a_shift_is_split_by_the_values_whose_mean_moved() {
        // Before: m1 and m2 both at 300 tokens. After: m1 at 400 (+ a little spread), m2 same.
        let mut b = Vec::new();
        let mut a = Vec::new();
        for i in 0..500 {
            let wobble = f64::from(i % 3) - 1.0;
            b.push(("p", "m1", 300.0 + wobble));
            b.push(("p", "m2", 300.0 - wobble));
            a.push(("p", "m1", 400.0 + wobble));
            a.push(("p", "m2", 300.0 - wobble));
        }
        let (sb, sa) = (shift_side(&b), shift_side(&a));
        let c = attribute_shift(&sb, &sa, true, false, false);
        // E = Σ after − N₁·m₀ = 50 000; m1 carries all of it, m2 none; one prompt: nothing.
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].layer, c[0].name.as_str()), (Layer::Model, "m1"));
        assert!((c[0].explained - 1.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c[0].metric, CandidateMetric::FeatureMean);
        assert!((c[0].before - 300.0).abs() < 0.01 && (c[0].after - 400.0).abs() < 0.01);
        assert!((c[0].in_bad_share - 0.5).abs() < 1e-12);
        // Looked at as a fall, there is no excess: nothing to explain.
        assert!(attribute_shift(&sb, &sa, false, false, false).is_empty());
    }

    #[test]
    fn a_fall_with_a_new_prompt_is_the_rollout() {
        let b: Vec<_> = (0..800)
            .map(|i| ("v1", "m", 0.4 + f64::from(i % 2) * 0.2))
            .collect();
        let mut a: Vec<_> = (0..200)
            .map(|i| ("v1", "m", 0.4 + f64::from(i % 2) * 0.2))
            .collect();
        a.extend((0..800).map(|_| ("v2", "m", 0.1)));
        let c = attribute_shift(&shift_side(&b), &shift_side(&a), false, true, false);
        assert_eq!((c[0].layer, c[0].name.as_str()), (Layer::Prompt, "v2"));
        // Negated: m₀ = −0.5, S₁ = −(200·0.5 + 800·0.1) = −180, E = −180 + 500 = 320;
        // v2: −80 + 800·0.5 = 320 → all of it.
        assert!((c[0].explained - 1.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c[0].metric, CandidateMetric::TrafficShare);
        assert_eq!((c[0].before, c[0].after), (0.0, 0.8));
    }
}
