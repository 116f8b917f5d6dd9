//! The operational questions, answered from history buckets: which buckets cover a range
//! ([`plan`]), and what the merged buckets say ([`latency`], [`slowest`], [`outcomes`],
//! [`cost`], [`pii`]). Pure: the shell fetches the planned buckets from the store and passes
//! them in; every answer is a typed value that the API serialises and the CLI prints.
//!
//! Times are event time. "Now" is the newest session's event time the history has seen, so
//! answers about a recorded stream are the same whenever they are asked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::summary::{Entry, OpsSummary};
use super::{BucketKey, DAY_MS, HOUR_MS, Resolution};
use crate::session::{EpochMs, PiiHandling, Status};
use crate::sketch::QUANTILE_RELATIVE_ACCURACY;

/// Which buckets a question is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub agent: Option<String>,
    pub prompt_version: Option<String>,
    pub model: Option<String>,
    /// `channel=web`: only that segment; `None`: whole keys (every session once).
    pub segment: Option<String>,
}

/// How answers are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One group: every matching session.
    #[default]
    None,
    Agent,
    /// Agent, prompt version and model.
    Key,
    /// Every segment of every configured attribute (a session counts once per attribute).
    Segment,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "none" => Some(GroupBy::None),
            "agent" => Some(GroupBy::Agent),
            "key" => Some(GroupBy::Key),
            "segment" => Some(GroupBy::Segment),
            _ => None,
        }
    }
}

impl Filter {
    /// Whether a bucket is about sessions this filter asks for, grouped this way.
    pub fn matches(&self, k: &BucketKey, group_by: GroupBy) -> bool {
        let part = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let segment_ok = match (&self.segment, group_by) {
            (Some(s), _) => k.segment.as_deref() == Some(s.as_str()),
            (None, GroupBy::Segment) => k.segment.is_some(),
            (None, _) => k.segment.is_none(),
        };
        segment_ok
            && part(&self.agent, &k.agent)
            && part(&self.prompt_version, &k.prompt_version)
            && part(&self.model, &k.model)
    }
}

/// A half-open event-time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    #[serde(with = "crate::time::rfc3339")]
    pub from: EpochMs,
    #[serde(with = "crate::time::rfc3339")]
    pub to: EpochMs,
}

/// Which bulky parts of the buckets a question reads besides the counts and sketches every
/// question reads (see [`OpsSummary::split`]): the store keeps them apart so that counting
/// never decodes a ranked list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub slowest: bool,
    pub costliest: bool,
    pub pii_ids: bool,
}

impl Parts {
    /// Counts, sketches and sums only.
    pub const COUNTS: Parts = Parts {
        slowest: false,
        costliest: false,
        pii_ids: false,
    };
}

/// One stretch of buckets of one resolution: starts in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub resolution: Resolution,
    pub from: EpochMs,
    pub to: EpochMs,
}

/// The buckets that cover `range`, coarsest first where they fit: whole UTC days, then whole
/// hours, then panes. A bucket that reaches past `range.to` is used when no session is newer
/// than `range.to` (`newest`), so "today" is answered from the day bucket. Where panes are no
/// longer kept (`panes_from`), hour buckets cover the rest.
pub fn plan(range: Range, pane_ms: i64, newest: EpochMs, panes_from: EpochMs) -> Vec<Span> {
    let open_ended = range.to > newest;
    let fits = |t: EpochMs, len: i64| t % len == 0 && (t + len <= range.to || open_ended);
    let mut t = range.from.div_euclid(pane_ms) * pane_ms;
    let mut spans: Vec<Span> = Vec::new();
    while t < range.to {
        let (resolution, len) = if fits(t, DAY_MS) && t >= range.from {
            (Resolution::Day, DAY_MS)
        } else if fits(t, HOUR_MS) && t >= range.from {
            (Resolution::Hour, HOUR_MS)
        } else if t < panes_from {
            // Panes expired: the hour that holds `t`, once.
            let h = t.div_euclid(HOUR_MS) * HOUR_MS;
            if spans
                .last()
                .is_some_and(|s| s.resolution == Resolution::Hour && s.to > h)
            {
                t = h + HOUR_MS;
                continue;
            }
            t = h;
            (Resolution::Hour, HOUR_MS)
        } else {
            (Resolution::Pane, pane_ms)
        };
        match spans.last_mut() {
            Some(s) if s.resolution == resolution && s.to == t => s.to = t + len,
            _ => spans.push(Span {
                resolution,
                from: t,
                to: t + len,
            }),
        }
        t += len;
    }
    spans
}

/// What a group of an answer is: the parts of the key it was grouped by.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

fn group_of(k: &BucketKey, by: GroupBy) -> Group {
    match by {
        GroupBy::None => Group::default(),
        GroupBy::Agent => Group {
            agent: Some(k.agent.clone()),
            ..Group::default()
        },
        GroupBy::Key => Group {
            agent: Some(k.agent.clone()),
            prompt_version: Some(k.prompt_version.clone()),
            model: Some(k.model.clone()),
            segment: None,
        },
        GroupBy::Segment => Group {
            segment: k.segment.clone(),
            ..Group::default()
        },
    }
}

/// Merges buckets into one summary per group (ranked lists unbounded).
pub fn merge_groups<'a>(
    buckets: impl IntoIterator<Item = &'a (EpochMs, BucketKey, OpsSummary)>,
    by: GroupBy,
) -> BTreeMap<Group, OpsSummary> {
    let mut out: BTreeMap<Group, OpsSummary> = BTreeMap::new();
    for (_, k, s) in buckets {
        out.entry(group_of(k, by))
            .or_insert_with(OpsSummary::unbounded)
            .merge(s);
    }
    out
}

/// Merges buckets into one summary (ranked lists unbounded).
pub fn merge_all<'a>(
    buckets: impl IntoIterator<Item = &'a (EpochMs, BucketKey, OpsSummary)>,
) -> OpsSummary {
    merge_groups(buckets, GroupBy::None)
        .into_values()
        .next()
        .unwrap_or_else(OpsSummary::unbounded)
}

/// Latency percentiles of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    #[serde(flatten)]
    pub group: Group,
    pub sessions: u64,
    /// Sessions with a known duration (the percentiles are over these).
    pub with_duration: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Question 1: p50 / p95 / p99 session latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyAnswer {
    pub range: Range,
    /// Every percentile is within this relative error of the exact one (DDSketch).
    pub relative_error: f64,
    pub groups: Vec<LatencyRow>,
}

pub fn latency(range: Range, groups: &BTreeMap<Group, OpsSummary>) -> LatencyAnswer {
    LatencyAnswer {
        range,
        relative_error: QUANTILE_RELATIVE_ACCURACY,
        groups: groups
            .iter()
            .map(|(g, s)| LatencyRow {
                group: g.clone(),
                sessions: s.sessions,
                with_duration: s.latency.count(),
                p50_ms: s.latency.quantile(0.50),
                p95_ms: s.latency.quantile(0.95),
                p99_ms: s.latency.quantile(0.99),
                max_ms: s.latency.max(),
            })
            .collect(),
    }
}

/// A listed session and the value it is ranked by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedSession {
    pub rank: usize,
    pub value: f64,
    #[serde(flatten)]
    pub why: super::SessionWhy,
}

fn ranked(entries: &[Entry]) -> Vec<RankedSession> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| RankedSession {
            rank: i + 1,
            value: e.value,
            why: (*e.why).clone(),
        })
        .collect()
}

/// Question 2: the slowest sessions and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowestAnswer {
    pub range: Range,
    /// Whether the list is provably the exact slowest `limit` of the range.
    pub exact: bool,
    /// Ranked by `value` = duration in ms.
    pub sessions: Vec<RankedSession>,
}

pub fn slowest(range: Range, merged: &OpsSummary, limit: usize) -> SlowestAnswer {
    let (top, exact) = merged.slowest.top(limit);
    SlowestAnswer {
        range,
        exact,
        sessions: ranked(top),
    }
}

/// Sessions per status, and their shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRow {
    #[serde(flatten)]
    pub group: Group,
    pub sessions: u64,
    pub counts: BTreeMap<Status, u64>,
    pub fractions: BTreeMap<Status, f64>,
    /// Sessions per reported error type, most frequent first.
    pub error_types: Vec<(String, u64)>,
    pub fallbacks: u64,
}

/// Question 3: how sessions ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomesAnswer {
    pub range: Range,
    pub groups: Vec<OutcomeRow>,
}

pub fn outcomes(range: Range, groups: &BTreeMap<Group, OpsSummary>) -> OutcomesAnswer {
    OutcomesAnswer {
        range,
        groups: groups
            .iter()
            .map(|(g, s)| {
                let mut error_types: Vec<(String, u64)> =
                    s.error_types.iter().map(|(k, v)| (k.clone(), *v)).collect();
                error_types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                OutcomeRow {
                    group: g.clone(),
                    sessions: s.sessions,
                    counts: Status::ALL
                        .iter()
                        .map(|st| (*st, s.status[st.index()]))
                        .collect(),
                    fractions: Status::ALL
                        .iter()
                        .map(|st| {
                            (
                                *st,
                                if s.sessions == 0 {
                                    0.0
                                } else {
                                    s.status[st.index()] as f64 / s.sessions as f64
                                },
                            )
                        })
                        .collect(),
                    error_types,
                    fallbacks: s.fallbacks,
                }
            })
            .collect(),
    }
}

/// Cost of the sessions of one range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostStats {
    pub range: Range,
    pub sessions: u64,
    /// Sessions with a reported or catalog-derived cost; the averages are over these.
    pub sessions_with_cost: u64,
    pub total_usd: f64,
    pub avg_usd_per_session: Option<f64>,
    pub p50_usd: Option<f64>,
    pub p99_usd: Option<f64>,
    /// Averages per session with a cost: what an expensive session is compared with.
    pub avg_input_tokens: Option<f64>,
    pub avg_output_tokens: Option<f64>,
    /// Of the input tokens, those read from and written to prompt caches; of the output
    /// tokens, those spent reasoning (0 when no session reports them).
    pub avg_cache_read_input_tokens: Option<f64>,
    pub avg_cache_creation_input_tokens: Option<f64>,
    pub avg_reasoning_output_tokens: Option<f64>,
    pub avg_turns: Option<f64>,
    pub avg_tool_calls: Option<f64>,
}

fn cost_stats(range: Range, s: &OpsSummary) -> CostStats {
    let per = |x: u64| (s.sessions > 0).then(|| x as f64 / s.sessions as f64);
    CostStats {
        range,
        sessions: s.sessions,
        sessions_with_cost: s.cost_sessions,
        total_usd: s.cost_usd(),
        avg_usd_per_session: (s.cost_sessions > 0).then(|| s.cost_usd() / s.cost_sessions as f64),
        p50_usd: s.cost.quantile(0.5),
        p99_usd: s.cost.quantile(0.99),
        avg_input_tokens: per(s.input_tokens),
        avg_output_tokens: per(s.output_tokens),
        avg_cache_read_input_tokens: per(s.cache_read_input_tokens),
        avg_cache_creation_input_tokens: per(s.cache_creation_input_tokens),
        avg_reasoning_output_tokens: per(s.reasoning_output_tokens),
        avg_turns: per(s.turns),
        avg_tool_calls: per(s.tool_calls),
    }
}

/// Question 5: cost now vs a week earlier, and the costliest sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostAnswer {
    pub current: CostStats,
    /// The same span of time one `compare` earlier (default: a week).
    pub previous: CostStats,
    /// `current.avg / previous.avg`.
    pub change_ratio: Option<f64>,
    /// The share of sessions listed (1 % by default).
    pub top_percent: f64,
    /// `ceil(top_percent × sessions_with_cost)`.
    pub top_n: usize,
    /// Whether `top` is provably the exact costliest `top_n` of the range.
    pub exact: bool,
    /// Ranked by `value` = cost in USD, each with its tokens, turns, tool calls and retries.
    pub top: Vec<RankedSession>,
}

pub fn cost(
    current: (Range, &OpsSummary),
    previous: (Range, &OpsSummary),
    top_percent: f64,
) -> CostAnswer {
    let cur = cost_stats(current.0, current.1);
    let prev = cost_stats(previous.0, previous.1);
    let top_n = ((top_percent / 100.0) * current.1.cost_sessions as f64).ceil() as usize;
    let (top, exact) = current.1.costliest.top(top_n);
    CostAnswer {
        change_ratio: match (cur.avg_usd_per_session, prev.avg_usd_per_session) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        },
        current: cur,
        previous: prev,
        top_percent,
        top_n,
        exact,
        top: ranked(top),
    }
}

/// One (type, handling, destination) of personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiRow {
    #[serde(rename = "type")]
    pub kind: String,
    pub handling: PiiHandling,
    pub destination: String,
    pub sessions: u64,
    /// The earliest session ids (at most 100 per bucket merged); never the data itself.
    pub session_ids: Vec<String>,
    /// True when more sessions than `session_ids` lists.
    pub ids_truncated: bool,
}

/// Question 6: what personal data entered agent context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiAnswer {
    pub range: Range,
    pub sessions: u64,
    pub sessions_with_pii: u64,
    pub rows: Vec<PiiRow>,
}

pub fn pii(range: Range, s: &OpsSummary, max_ids: usize) -> PiiAnswer {
    PiiAnswer {
        range,
        sessions: s.sessions,
        sessions_with_pii: s.pii_sessions,
        rows: s
            .pii
            .iter()
            .map(|((kind, handling, destination), cell)| {
                let ids: Vec<String> = cell
                    .ids
                    .iter()
                    .take(max_ids)
                    .map(|(_, id)| id.clone())
                    .collect();
                PiiRow {
                    kind: kind.clone(),
                    handling: *handling,
                    destination: destination.clone(),
                    sessions: cell.sessions,
                    ids_truncated: (ids.len() as u64) < cell.sessions,
                    session_ids: ids,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANE: i64 = 300_000;

    fn r(from: EpochMs, to: EpochMs) -> Range {
        Range { from, to }
    }

    /// The planned spans tile the range exactly, with no bucket twice.
    #[test]
    fn plans_tile_the_range_with_the_coarsest_buckets_that_fit() {
        let d = 20_000 * DAY_MS;
        // Two whole days and a bit on both sides, all in the past.
        let spans = plan(
            r(d - 2 * PANE, d + 2 * DAY_MS + 3 * HOUR_MS + PANE),
            PANE,
            d + 10 * DAY_MS,
            0,
        );
        let kinds: Vec<(Resolution, i64, i64)> = spans
            .iter()
            .map(|s| (s.resolution, s.from - d, s.to - d))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Resolution::Pane, -2 * PANE, 0),
                (Resolution::Day, 0, 2 * DAY_MS),
                (Resolution::Hour, 2 * DAY_MS, 2 * DAY_MS + 3 * HOUR_MS),
                (
                    Resolution::Pane,
                    2 * DAY_MS + 3 * HOUR_MS,
                    2 * DAY_MS + 3 * HOUR_MS + PANE
                ),
            ]
        );
        // "Today" up to now: the day bucket, because nothing is newer than now.
        let now = d + 14 * HOUR_MS + 7 * 60_000;
        let today = plan(r(d, now + 1), PANE, now, 0);
        assert_eq!(today.len(), 1);
        assert_eq!(today[0].resolution, Resolution::Day);
        // Panes expired before d + 1h: hours cover that part.
        let old = plan(
            r(d + 10 * 60_000, d + 2 * HOUR_MS),
            PANE,
            d + 10 * DAY_MS,
            d + HOUR_MS,
        );
        assert_eq!(
            old.iter()
                .map(|s| (s.resolution, s.from - d, s.to - d))
                .collect::<Vec<_>>(),
            vec![(Resolution::Hour, 0, 2 * HOUR_MS)]
        );
    }
}
