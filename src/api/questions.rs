//! The questions slawatch answers on demand, parsed from request parameters into typed values
//! and answered from the data directory. The HTTP API and `slawatch query` both call
//! [`answer`], so the same question gives the same numbers through either.
//!
//! Never imports axum: this is the part of the API that does not depend on HTTP.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alerts::{Incident, IncidentStatus};
use crate::finding::{Finding, Verdict};
use crate::history::query::{self, Filter, GroupBy, Parts, Range};
use crate::history::{DAY_MS, HistoryConfig, Resolution};
use crate::session::EpochMs;
use crate::spec::model::Spec;
use crate::store::Store;
use crate::store::history::KeyInfo;

/// The question families, one endpoint each (and `slawatch query`'s first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// p50 / p95 / p99 session latency.
    Latency,
    /// The slowest sessions and why.
    Slowest,
    /// How sessions ended (success, error, timeout, abandoned).
    Outcomes,
    /// New prompt versions / models and the drift verdict against what they replaced.
    Changes,
    /// Cost per session vs a week earlier, and the costliest 1 %.
    Cost,
    /// Personal data that entered agent context (types, handling, destinations, session ids).
    Pii,
    /// Where every SLA objective stands.
    Status,
}

impl Question {
    pub const ALL: [Question; 7] = [
        Question::Latency,
        Question::Slowest,
        Question::Outcomes,
        Question::Changes,
        Question::Cost,
        Question::Pii,
        Question::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Question::Latency => "latency",
            Question::Slowest => "slowest",
            Question::Outcomes => "outcomes",
            Question::Changes => "changes",
            Question::Cost => "cost",
            Question::Pii => "pii",
            Question::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<Question> {
        Question::ALL.into_iter().find(|q| q.name() == s)
    }

    /// The time range asked about when the request names none.
    fn default_range(self) -> RangeSpec {
        match self {
            Question::Latency => RangeSpec::Last(3_600_000),
            Question::Slowest | Question::Cost => RangeSpec::Day(DaySpec::Today),
            Question::Outcomes | Question::Status => RangeSpec::Last(DAY_MS),
            Question::Changes | Question::Pii => RangeSpec::Last(7 * DAY_MS),
        }
    }

    /// The parameters this question takes (besides the range and key filters).
    pub fn extra_params(self) -> &'static [&'static str] {
        match self {
            Question::Latency | Question::Outcomes => &["group_by"],
            Question::Slowest => &["limit"],
            Question::Cost => &["compare", "top_percent"],
            Question::Pii => &["limit"],
            Question::Changes | Question::Status => &[],
        }
    }
}

/// Parameters every question takes.
pub const COMMON_PARAMS: [&str; 8] = [
    "agent",
    "prompt_version",
    "model",
    "segment",
    "from",
    "to",
    "last",
    "day",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaySpec {
    Today,
    Date(EpochMs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// The last `ms` up to now.
    Last(i64),
    /// A UTC day (up to now, for today).
    Day(DaySpec),
    Between(Option<EpochMs>, Option<EpochMs>),
}

/// The longest `last` or `compare`: the 10 000 years a timestamp can name. Longer ones planned
/// a bucket per day for billions of years (found by fuzzing: `last=15000000000w` hung a
/// request) or overflowed the comparison range.
const MAX_SPAN_MS: i64 = 10_000 * 366 * DAY_MS;

/// One parameter that is not valid, with what would be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}

/// A request's parameters, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub question: Question,
    filter: Filter,
    range: RangeSpec,
    group_by: GroupBy,
    limit: usize,
    compare_ms: i64,
    top_percent: f64,
}

impl Request {
    /// Validates parameters; every problem is reported at once.
    pub fn parse(
        question: Question,
        params: &[(String, String)],
    ) -> Result<Request, Vec<InvalidParam>> {
        let mut bad = Vec::new();
        let mut invalid = |name: &str, reason: String| {
            bad.push(InvalidParam {
                name: name.to_owned(),
                reason,
            })
        };
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in params {
            if !COMMON_PARAMS.contains(&k.as_str())
                && !question.extra_params().contains(&k.as_str())
            {
                let mut allowed: Vec<&str> = COMMON_PARAMS.to_vec();
                allowed.extend(question.extra_params());
                invalid(
                    k,
                    format!(
                        "unknown parameter for `{}`; expected one of: {}",
                        question.name(),
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            if seen.insert(k.as_str(), v.as_str()).is_some() {
                invalid(k, "given more than once".into());
            }
        }
        let get = |k: &str| seen.get(k).copied().filter(|v| !v.is_empty());
        let time = |name: &str, invalid: &mut dyn FnMut(&str, String)| {
            get(name).and_then(|v| {
                let t = crate::time::parse_rfc3339_ms(v);
                if t.is_none() {
                    invalid(
                        name,
                        format!("`{v}` is not an RFC 3339 time such as 2026-11-01T14:00:00Z"),
                    );
                }
                t
            })
        };
        let from = time("from", &mut invalid);
        let to = time("to", &mut invalid);
        let mut range = None;
        if let Some(v) = get("last") {
            match crate::duration::parse_duration_ms(v) {
                Ok(ms) if ms > 0 && ms <= MAX_SPAN_MS => range = Some(RangeSpec::Last(ms)),
                _ => invalid(
                    "last",
                    format!("`{v}` is not a duration such as 15m, 24h or 7d"),
                ),
            }
        }
        if let Some(v) = get("day") {
            let day = if v == "today" {
                Some(DaySpec::Today)
            } else {
                crate::time::parse_rfc3339_ms(&format!("{v}T00:00:00Z"))
                    .filter(|_| v.len() == 10)
                    .map(DaySpec::Date)
            };
            match day {
                Some(d) if range.is_none() => range = Some(RangeSpec::Day(d)),
                Some(_) => invalid("day", "give one of `last`, `day`, or `from`/`to`".into()),
                None => invalid(
                    "day",
                    format!("`{v}` is not `today` or a date such as 2026-11-01"),
                ),
            }
        }
        if get("from").is_some() || get("to").is_some() {
            if range.is_some() {
                invalid("from", "give one of `last`, `day`, or `from`/`to`".into());
            }
            if let (Some(f), Some(t)) = (from, to)
                && f >= t
            {
                invalid("to", "must be after `from`".into());
            }
            range = Some(RangeSpec::Between(from, to));
        }
        let group_by = match get("group_by") {
            None => GroupBy::None,
            Some(v) => GroupBy::parse(v).unwrap_or_else(|| {
                invalid(
                    "group_by",
                    format!("`{v}` is not one of: none, agent, key, segment"),
                );
                GroupBy::None
            }),
        };
        let limit = match get("limit") {
            None => match question {
                Question::Pii => 100,
                _ => 10,
            },
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    invalid(
                        "limit",
                        format!("`{v}` is not a whole number from 1 to 10000"),
                    );
                    10
                }
            },
        };
        let compare_ms = match get("compare") {
            None => 7 * DAY_MS,
            Some(v) => match crate::duration::parse_duration_ms(v) {
                Ok(ms) if ms > 0 && ms <= MAX_SPAN_MS => ms,
                _ => {
                    invalid(
                        "compare",
                        format!("`{v}` is not a duration such as 1d or 7d"),
                    );
                    7 * DAY_MS
                }
            },
        };
        let top_percent = match get("top_percent") {
            None => 1.0,
            Some(v) => match v.trim_end_matches('%').parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => p,
                _ => {
                    invalid(
                        "top_percent",
                        format!("`{v}` is not a percentage in (0, 100]"),
                    );
                    1.0
                }
            },
        };
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(Request {
            question,
            filter: Filter {
                agent: get("agent").map(str::to_owned),
                prompt_version: get("prompt_version").map(str::to_owned),
                model: get("model").map(str::to_owned),
                segment: get("segment").map(str::to_owned),
            },
            range: range.unwrap_or(question.default_range()),
            group_by,
            limit,
            compare_ms,
            top_percent,
        })
    }

    /// The range asked about, given the history's "now" (newest event time).
    pub fn resolve(&self, now: EpochMs) -> Range {
        let end = now + 1;
        match self.range {
            RangeSpec::Last(ms) => Range {
                from: end - ms,
                to: end,
            },
            RangeSpec::Day(DaySpec::Today) => {
                let d = Resolution::Day.floor(now, DAY_MS);
                Range { from: d, to: end }
            }
            RangeSpec::Day(DaySpec::Date(d)) => Range {
                from: d,
                to: (d + DAY_MS).min(end.max(d + 1)),
            },
            RangeSpec::Between(f, t) => {
                let to = t.unwrap_or(end);
                Range {
                    from: f.unwrap_or(to - DAY_MS),
                    to,
                }
            }
        }
    }
}

impl Request {
    /// The range `cost` compares `range` with: the same span `compare` earlier.
    pub fn compared_range(&self, range: Range) -> Range {
        Range {
            from: range.from - self.compare_ms,
            to: range.to - self.compare_ms,
        }
    }
}

/// What went wrong answering.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertError),
}

/// What the answering needs besides the request.
pub struct Context<'a> {
    pub store: &'a Store,
    pub history: &'a HistoryConfig,
    pub specs: &'a [Spec],
}

/// Answers a request as a JSON value.
pub fn answer(ctx: &Context<'_>, req: &Request) -> Result<serde_json::Value, AnswerError> {
    let now = ctx.store.history_newest()?;
    let t = now.unwrap_or(0);
    let range = req.resolve(t);
    let panes_from = ctx
        .store
        .history_oldest(Resolution::Pane)?
        .unwrap_or(EpochMs::MIN);
    let fetch = |range: Range, group_by: GroupBy, parts: Parts| {
        let spans = query::plan(range, ctx.history.pane, t, panes_from);
        ctx.store
            .history_buckets(&spans, &req.filter, group_by, parts)
    };
    // Every answer names its question and the "now" (newest event time) it was computed at.
    let wrap = |body: serde_json::Value| {
        let mut o = serde_json::Map::new();
        o.insert("question".into(), req.question.name().into());
        o.insert("now".into(), now.map(crate::time::format_rfc3339_ms).into());
        if let serde_json::Value::Object(b) = body {
            o.extend(b);
        }
        serde_json::Value::Object(o)
    };
    let to_json = |x: &dyn erased::Json| x.json();
    let body = match req.question {
        Question::Latency => {
            let b = fetch(range, req.group_by, Parts::COUNTS)?;
            to_json(&query::latency(
                range,
                &query::merge_groups(&b, req.group_by),
            ))
        }
        Question::Outcomes => {
            let b = fetch(range, req.group_by, Parts::COUNTS)?;
            to_json(&query::outcomes(
                range,
                &query::merge_groups(&b, req.group_by),
            ))
        }
        Question::Slowest => {
            let parts = Parts {
                slowest: true,
                ..Parts::COUNTS
            };
            let b = fetch(range, GroupBy::None, parts)?;
            to_json(&query::slowest(range, &query::merge_all(&b), req.limit))
        }
        Question::Cost => {
            let parts = Parts {
                costliest: true,
                ..Parts::COUNTS
            };
            let cur = query::merge_all(&fetch(range, GroupBy::None, parts)?);
            let prev_range = req.compared_range(range);
            let prev = query::merge_all(&fetch(prev_range, GroupBy::None, Parts::COUNTS)?);
            to_json(&query::cost(
                (range, &cur),
                (prev_range, &prev),
                req.top_percent,
            ))
        }
        Question::Pii => {
            let parts = Parts {
                pii_ids: true,
                ..Parts::COUNTS
            };
            let b = fetch(range, GroupBy::None, parts)?;
            to_json(&query::pii(range, &query::merge_all(&b), req.limit))
        }
        Question::Changes => to_json(&changes(ctx, req, range)?),
        Question::Status => to_json(&status(ctx, req)?),
    };
    Ok(wrap(body))
}

/// Object-safe JSON conversion, so the match above can hand any answer type over.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("answers serialize")
        }
    }
}

/// A version of an agent (prompt version × model) that started in the range.
#[derive(Debug, Serialize)]
pub struct Change {
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    /// What changed compared with the version it replaced: `prompt_version`, `model`, or both.
    pub changed: Vec<&'static str>,
    #[serde(with = "crate::time::rfc3339")]
    pub first_seen: EpochMs,
    #[serde(with = "crate::time::rfc3339")]
    pub last_seen: EpochMs,
    pub sessions: u64,
    /// The version that was live just before (the one with the latest session before this
    /// version's first), if any.
    pub replaced: Option<KeyInfo>,
    /// Drift findings about this version (newest window first), each with its feature-by-feature
    /// verdicts and the baseline it was compared against.
    pub drift: Vec<Finding>,
    /// `drift` when a drift finding says behaviour changed; `no_drift_finding` when drift was
    /// evaluated for the version without a breach; `not_evaluated` when no drift objective covers it.
    pub verdict: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ChangesAnswer {
    pub range: Range,
    pub changes: Vec<Change>,
}

fn key_value<'a>(f: &'a Finding, name: &str) -> Option<&'a str> {
    f.key
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn changes(
    ctx: &Context<'_>,
    req: &Request,
    range: Range,
) -> Result<ChangesAnswer, AnswerError> {
    let keys = ctx.store.history_keys()?;
    let findings = ctx.store.all_findings()?;
    let has_drift_objective = ctx.specs.iter().any(|s| {
        s.objectives
            .iter()
            .any(|o| matches!(o.kind, crate::spec::model::ObjectiveKind::Drift(_)))
    });
    let mut out = Vec::new();
    for k in &keys {
        let f = &req.filter;
        if k.first_seen < range.from
            || k.first_seen >= range.to
            || f.agent.as_deref().is_some_and(|a| a != k.agent)
            || f.prompt_version
                .as_deref()
                .is_some_and(|p| p != k.prompt_version)
            || f.model.as_deref().is_some_and(|m| m != k.model)
        {
            continue;
        }
        let replaced = keys
            .iter()
            .filter(|o| o.agent == k.agent && o.first_seen < k.first_seen && *o != k)
            .max_by_key(|o| (o.last_seen.min(k.first_seen), o.first_seen))
            .cloned();
        let mut changed = Vec::new();
        if let Some(r) = &replaced {
            if r.prompt_version != k.prompt_version {
                changed.push("prompt_version");
            }
            if r.model != k.model {
                changed.push("model");
            }
        }
        let is_this = |fd: &Finding| {
            key_value(fd, "agent") == Some(k.agent.as_str())
                && key_value(fd, "prompt_version").is_none_or(|p| p == k.prompt_version)
                && key_value(fd, "model").is_none_or(|m| m == k.model)
                && fd.segment.is_none()
        };
        let mut drift: Vec<Finding> = findings
            .iter()
            .filter(|fd| fd.drift.is_some() && is_this(fd))
            .cloned()
            .collect();
        drift.sort_by_key(|fd| std::cmp::Reverse(fd.window_end));
        let drifted = drift.iter().any(|fd| fd.verdict == Verdict::Breach);
        out.push(Change {
            agent: k.agent.clone(),
            prompt_version: k.prompt_version.clone(),
            model: k.model.clone(),
            changed,
            first_seen: k.first_seen,
            last_seen: k.last_seen,
            sessions: k.sessions,
            replaced,
            verdict: if drifted {
                "drift"
            } else if has_drift_objective {
                "no_drift_finding"
            } else {
                "not_evaluated"
            },
            drift,
        });
    }
    out.sort_by(|a, b| b.first_seen.cmp(&a.first_seen).then(a.agent.cmp(&b.agent)));
    Ok(ChangesAnswer {
        range,
        changes: out,
    })
}

/// One objective of one spec: its target, the latest finding per key, and its incidents.
#[derive(Debug, Serialize)]
pub struct ObjectiveStatus {
    pub spec: String,
    pub objective: String,
    pub dimension: crate::spec::model::Dimension,
    /// The SLO target, when the objective has one.
    pub target: Option<f64>,
    /// `breaching` while an incident is pending or firing, else `ok`.
    pub state: &'static str,
    pub open_incidents: Vec<Incident>,
    /// The newest findings (newest window first, at most 5).
    pub latest_findings: Vec<Finding>,
    /// The lowest error budget left over any key, from the newest SLO finding (1 = untouched).
    pub budget_left: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StatusAnswer {
    pub objectives: Vec<ObjectiveStatus>,
    pub findings_total: usize,
}

pub fn status(ctx: &Context<'_>, req: &Request) -> Result<StatusAnswer, AnswerError> {
    let all = ctx.store.all_findings()?;
    let mut findings: Vec<&Finding> = all.iter().collect();
    findings.sort_by(|a, b| b.window_end.cmp(&a.window_end).then(a.id.cmp(&b.id)));
    let incidents = crate::alerts::deliver::stored_incidents(ctx.store)?;
    let agent_ok = |key: &[(String, String)]| {
        req.filter
            .agent
            .as_deref()
            .is_none_or(|a| key.iter().any(|(k, v)| k == "agent" && v == a))
    };
    let mut objectives = Vec::new();
    for spec in ctx.specs {
        for o in &spec.objectives {
            let mine = |s: &str, ob: &str| s == spec.name && ob == o.name;
            let open: Vec<Incident> = incidents
                .iter()
                .filter(|i| {
                    mine(&i.key.spec, &i.key.objective)
                        && i.status != IncidentStatus::Resolved
                        && agent_ok(&i.key.key)
                })
                .cloned()
                .collect();
            let latest: Vec<Finding> = findings
                .iter()
                .filter(|f| mine(&f.spec, &f.objective) && agent_ok(&f.key))
                .take(5)
                .map(|f| (*f).clone())
                .collect();
            let budget_left = latest
                .iter()
                .filter_map(|f| f.budget_consumed)
                .map(|c| 1.0 - c)
                .reduce(f64::min);
            objectives.push(ObjectiveStatus {
                spec: spec.name.clone(),
                objective: o.name.clone(),
                dimension: o.dimension,
                target: o.kind.slo_target(),
                state: if open.is_empty() { "ok" } else { "breaching" },
                open_incidents: open,
                latest_findings: latest,
                budget_left,
            });
        }
    }
    Ok(StatusAnswer {
        objectives,
        findings_total: findings.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_bad_parameter_is_reported_at_once() {
        let err = Request::parse(
            Question::Latency,
            &p(&[
                ("last", "yesterday"),
                ("group_by", "colour"),
                ("limit", "3"),
                ("from", "x"),
            ]),
        )
        .unwrap_err();
        let names: Vec<&str> = err.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["limit", "from", "last", "group_by"]);
        assert!(err[0].reason.contains("expected one of"), "{:?}", err[0]);
    }

    /// Found by fuzzing (`fuzz/regressions/api_query/`): a `last` of 15 billion weeks planned
    /// a bucket per day since long before the Big Bang and never answered; a `compare` as long
    /// overflowed the comparison range.
    #[test]
    fn last_and_compare_longer_than_the_timestamp_range_are_invalid() {
        for (k, v) in [("last", "15000000000w"), ("compare", "15000000000w")] {
            let err = Request::parse(Question::Cost, &p(&[(k, v)])).unwrap_err();
            assert_eq!(err.len(), 1, "{err:?}");
            assert_eq!(err[0].name, k);
        }
        let longest = Request::parse(Question::Cost, &p(&[("last", "3660000d")])).unwrap();
        let range = longest.resolve(crate::time::MIN_EPOCH_MS);
        assert_eq!(range.to - range.from, MAX_SPAN_MS);
    }

    #[test]
    fn ranges_resolve_against_the_history_clock() {
        let now = 20_000 * DAY_MS + 5 * 3_600_000;
        let today = Request::parse(Question::Cost, &[]).unwrap().resolve(now);
        assert_eq!(
            today,
            Range {
                from: 20_000 * DAY_MS,
                to: now + 1
            }
        );
        let last = Request::parse(Question::Outcomes, &p(&[("last", "24h")]))
            .unwrap()
            .resolve(now);
        assert_eq!(
            last,
            Range {
                from: now + 1 - DAY_MS,
                to: now + 1
            }
        );
    }
}
