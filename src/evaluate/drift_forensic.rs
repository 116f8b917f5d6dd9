//! The evaluation side of drift forensics ([`crate::forensics::drift`]): the feature panes
//! every session of a spec with drift objectives updates, and, as windows close, the onset and
//! layer attribution of a drift streak's first finding and the affected sessions of every
//! drifting window.
//!
//! Decisions (the same streak rules as [`super::forensic`] for the other objectives):
//!
//! - A streak of a drift objective on one key (and segment) opens with a `drift` breach of
//!   severity `ticket` or `page` and ends with a window of the objective judged without one.
//!   Its first finding carries [`Forensics`] with `feature` set.
//! - Which feature: every drifted numeric or yes/no feature of the first finding's report
//!   (all of them when only multivariate or categorical tests drifted) is searched for a
//!   change point in both directions — a Gaussian mean shift for numeric features, a binomial
//!   rate change for yes/no ones — and the most significant (largest statistic over its
//!   critical value) is the onset. The candidates split that feature's shift.
//! - As for the other objectives, a key with no change in its own series is judged together
//!   with its agent's other keys, pane by pane; so is a key younger than one window (a rollout
//!   under the default `keyBy` makes a new key whose drift is against the version it replaced,
//!   and its few panes of its own cannot show where it came from).
//! - **What counts against a drift objective:** every session of the drifting key (and
//!   segment) from the onset (or the window's start without one) to the end of each drifting
//!   window of the streak, handed out once; the reason names the drifted feature and carries
//!   the session's value of it. At most `MAX_BAD_IDS` ids per pane, the rest counted.
//! - The onset is searched over at most [`DRIFT_LOOKBACK_MS`] (a day) of panes.
//! - Window budgets (`spend.windowBudgetUsd`) judge a window's total, which no session is
//!   "against" on its own; they keep `forensics: None`.

use std::collections::BTreeMap;

use super::forensic::{Coordinates, breaches_and_clears};
use super::measure::{Measure, SpecSummary};
use super::{GroupKey, SpecRuntime};
use crate::drift::features::FeatureSet;
use crate::finding::{Check, FeatureVerdict, Finding};
use crate::forensics::attribute::{self, ShiftSide};
use crate::forensics::drift::FeaturePane;
use crate::forensics::onset::{self, ChangePoint};
use crate::forensics::{AffectedBatch, AffectedReason, AffectedSession, Forensics, Onset};
use crate::session::{EpochMs, Session};
use crate::windowing::ClosedWindow;

/// How far back drift forensics keeps feature panes (within the spec's retention): a drift is
/// judged window by window against a frozen baseline, so a change shows within a few windows of
/// its start, and a day of panes keeps every session id of a key (two to four times the
/// memory of the other objectives' panes per pane, which keep only bad sessions).
pub const DRIFT_LOOKBACK_MS: i64 = 86_400_000;

/// The best change point of one feature column over a series of panes: `(column, rise, cp)`.
type Change = (usize, bool, ChangePoint);

impl SpecRuntime {
    /// The feature set of drift objective `d` (index into `self.drift`).
    fn drift_features(&self, d: usize) -> Option<&FeatureSet> {
        let m = self.measures.objectives[self.drift[d].0].drift?;
        match &self.measures.measures[m] {
            Measure::Drift(set) => Some(set),
            _ => None,
        }
    }

    /// Adds a session to the feature panes of its key and segment, for every drift objective.
    pub(super) fn retain_drift_forensics(
        &mut self,
        key: &std::sync::Arc<str>,
        segment: Option<&std::sync::Arc<str>>,
        s: &Session,
    ) {
        if self.drift.is_empty() {
            return;
        }
        let pane_ms = self.windows.config().pane_ms();
        let pane = s.event_time.div_euclid(pane_ms) * pane_ms;
        for d in 0..self.drift.len() {
            let Some(set) = self.drift_features(d) else {
                continue;
            };
            let row: Vec<Option<f64>> = set
                .row(s)
                .iter()
                .map(|v| (!v.is_nan()).then_some(*v))
                .collect();
            let retained = &mut self.drift_retained[d];
            let whole = GroupKey {
                key: key.clone(),
                segment: None,
            };
            retained.observe(&whole, pane, s, segment, &row);
            if let Some(seg) = segment {
                let group = GroupKey {
                    key: key.clone(),
                    segment: Some(seg.clone()),
                };
                retained.observe(&group, pane, s, segment, &row);
            }
        }
    }

    /// After the windows of `closed` were judged: forensics on the first drift breach of each
    /// streak, affected sessions of every drifting window, streaks ended by clears (those
    /// pushed from `clears_from` on), and the retention trimmed.
    pub(super) fn investigate_drift(
        &mut self,
        closed: &[ClosedWindow<GroupKey, SpecSummary>],
        out: &mut [Finding],
        clears_from: usize,
    ) {
        if self.drift.is_empty() {
            return;
        }
        let (breaches, cleared) = breaches_and_clears(out, &self.clears[clears_from..], |f| {
            f.check == Check::Drift
        });
        let mut newest = None;
        for w in closed {
            newest = newest.max(Some(w.end));
            let parts = self.key_parts.get(&w.key.key).cloned().unwrap_or_default();
            let segment = w.key.segment.as_deref().map(str::to_owned);
            for d in 0..self.drift.len() {
                let name = self.spec.objectives[self.drift[d].0].name.clone();
                let coords: Coordinates = (name, parts.clone(), segment.clone(), w.end);
                let track = self.drift_retained[d]
                    .tracks
                    .get(&w.key)
                    .copied()
                    .unwrap_or_default();
                if let Some(found) = breaches.get(&coords) {
                    let mut from = w.start;
                    let mut column = track.column;
                    if !track.open {
                        let drifted = out[found[0]]
                            .drift
                            .as_ref()
                            .map(|r| {
                                r.features
                                    .iter()
                                    .filter(|f| f.verdict == FeatureVerdict::Drift)
                                    .map(|f| f.feature.clone())
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default();
                        let (forensics, col) =
                            self.drift_forensics_for(d, &w.key, &drifted, track.closed_at, w.end);
                        column = col;
                        if let Some(o) = &forensics.onset {
                            from = o.at;
                        }
                        for &i in found {
                            out[i].forensics = Some(Box::new(forensics.clone()));
                        }
                    }
                    if let Some(h) = track.handed_until {
                        from = from.max(h);
                    }
                    self.hand_out_drift(d, w, &parts, from, column);
                    let t = self.drift_retained[d]
                        .tracks
                        .entry(w.key.clone())
                        .or_default();
                    t.open = true;
                    t.column = column;
                    t.handed_until = Some(t.handed_until.map_or(w.end, |h| h.max(w.end)));
                } else if cleared.contains(&coords)
                    && let Some(t) = self.drift_retained[d].tracks.get_mut(&w.key)
                    && t.open
                {
                    t.open = false;
                    t.closed_at = Some(w.end);
                }
            }
        }
        if let Some(end) = newest {
            let oldest = end - self.forensic_retention_ms().min(DRIFT_LOOKBACK_MS);
            for r in &mut self.drift_retained {
                r.trim(oldest);
            }
        }
    }

    /// Onset and candidates of drift objective `d` on `group` from `since` up to `end`, and the
    /// feature column they follow. Falls back to the agent's keys merged pane by pane when the
    /// key's own series shows no change (see the module doc).
    fn drift_forensics_for(
        &self,
        d: usize,
        group: &GroupKey,
        drifted: &[String],
        since: Option<EpochMs>,
        end: EpochMs,
    ) -> (Forensics, Option<usize>) {
        let Some(set) = self.drift_features(d) else {
            return (Forensics::default(), None);
        };
        let names = set.column_names();
        let mut columns: Vec<usize> = (0..names.len())
            .filter(|c| drifted.contains(&names[*c]))
            .collect();
        if columns.is_empty() {
            columns = (0..names.len()).collect();
        }
        let numeric = set.numeric.len();
        let retained = &self.drift_retained[d];
        let Some(all) = retained.panes.get(group) else {
            return (Forensics::default(), columns.first().copied());
        };
        let from = since.unwrap_or(EpochMs::MIN);
        let own: Vec<(EpochMs, &FeaturePane)> =
            all.range(from..end).map(|(t, p)| (*t, p)).collect();
        let mut merged: BTreeMap<EpochMs, FeaturePane> = BTreeMap::new();
        // A key younger than one window is new (a rollout): a few panes of its own cannot show
        // where it came from, so it is judged with its agent's other keys straight away.
        let young = own
            .first()
            .is_none_or(|(t, _)| *t >= end - self.spec.window.size_ms);
        let own_change = if young {
            None
        } else {
            best_change(&own, &columns, numeric)
        };
        let series = match own_change {
            Some(change) => Some((own, change)),
            None => {
                let agent = |k: &GroupKey| {
                    self.key_parts
                        .get(&k.key)
                        .and_then(|p| p.first())
                        .map(|(_, a)| a.clone())
                };
                let mine = agent(group);
                for (k, panes) in &retained.panes {
                    if k.segment == group.segment && agent(k) == mine {
                        for (t, p) in panes.range(from..end) {
                            merged.entry(*t).or_default().merge_counts(p);
                        }
                    }
                }
                let panes: Vec<(EpochMs, &FeaturePane)> =
                    merged.iter().map(|(t, p)| (*t, p)).collect();
                best_change(&panes, &columns, numeric).map(|change| (panes, change))
            }
        };
        let Some((panes, (column, rise, cp))) = series else {
            return (
                Forensics {
                    feature: columns.first().map(|c| names[*c].clone()),
                    ..Forensics::default()
                },
                columns.first().copied(),
            );
        };
        let onset = Onset {
            at: panes[cp.at].0,
            low: panes[cp.low].0,
            high: panes[cp.high].0,
            panes: panes.len() as u32,
        };
        let (mut before, mut after) = (ShiftSide::default(), ShiftSide::default());
        for (i, (_, p)) in panes.iter().enumerate() {
            let side = if i < cp.at { &mut before } else { &mut after };
            let m = p.feature(column);
            side.count += m.count as f64;
            side.sum += m.total();
            for (layer, values) in &p.layers {
                let map = side.layers.entry(*layer).or_default();
                for (v, cell) in values {
                    let m = cell.features.get(column).copied().unwrap_or_default();
                    let e = map.entry(v.clone()).or_default();
                    e.0 += m.count as f64;
                    e.1 += m.total();
                }
            }
        }
        let step = self.spec.window.step_ms;
        let reload = self
            .retained
            .reloads
            .iter()
            .any(|r| *r >= onset.low - step && *r <= onset.high + step);
        let forensics = Forensics {
            candidates: attribute::attribute_shift(
                &before,
                &after,
                rise,
                column >= numeric,
                reload,
            ),
            onset: Some(onset),
            feature: Some(names[column].clone()),
        };
        (forensics, Some(column))
    }

    /// Queues every retained session of `w`'s key (and segment) from `from` to the window's
    /// end as affected by drift objective `d`, naming feature `column`.
    fn hand_out_drift(
        &mut self,
        d: usize,
        w: &ClosedWindow<GroupKey, SpecSummary>,
        parts: &[(String, String)],
        from: EpochMs,
        column: Option<usize>,
    ) {
        let feature = match (self.drift_features(d), column) {
            (Some(set), Some(c)) => set.column_names().get(c).cloned(),
            _ => None,
        }
        .unwrap_or_else(|| "distribution".to_owned());
        let Some(panes) = self.drift_retained[d].panes.get(&w.key) else {
            return;
        };
        let mut sessions = Vec::new();
        let mut dropped = 0;
        for (_, p) in panes.range(from..w.end) {
            dropped += p.dropped;
            sessions.extend(p.kept.iter().map(|k| AffectedSession {
                session_id: k.session_id.clone(),
                event_time: k.event_time,
                key: parts.to_vec(),
                segment: k.segment.as_deref().map(str::to_owned),
                reason: AffectedReason::Drifted {
                    feature: feature.clone(),
                    value: column.and_then(|c| k.values.get(c).copied().flatten()),
                },
            }));
        }
        if sessions.is_empty() && dropped == 0 {
            return;
        }
        self.affected_out.push(AffectedBatch {
            spec: self.spec.name.clone(),
            objective: self.spec.objectives[self.drift[d].0].name.clone(),
            key: parts.to_vec(),
            segment: w.key.segment.as_deref().map(str::to_owned),
            window_end: w.end,
            sessions,
            dropped,
        });
    }
}

/// The most significant change point over `columns` of a series of panes, in either
/// direction: a Gaussian mean shift for numeric columns (below `numeric`), a binomial rate
/// change for yes/no ones. Ranked by statistic over critical value; ties by column, rise first.
fn best_change(
    panes: &[(EpochMs, &FeaturePane)],
    columns: &[usize],
    numeric: usize,
) -> Option<Change> {
    let mut best: Option<Change> = None;
    for &c in columns {
        for rise in [true, false] {
            let cp = if c < numeric {
                let series: Vec<_> = panes
                    .iter()
                    .map(|(_, p)| p.feature(c).value_pane())
                    .collect();
                onset::gaussian(&series, rise)
            } else {
                let series: Vec<_> = panes
                    .iter()
                    .map(|(_, p)| p.feature(c).rate_pane(rise))
                    .collect();
                onset::binomial(&series)
            };
            if let Some(cp) = cp
                && best
                    .is_none_or(|(_, _, b)| cp.statistic / cp.critical > b.statistic / b.critical)
            {
                best = Some((c, rise, cp));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Catalog;
    use crate::ingest::decode::Decoder;
    use crate::simulate::{SimConfig, Simulator};

    /// The figure behind the drift lookback: bytes of snapshot (JSON) per key and pane of the
    /// steady stream (200 sessions an hour, three channel segments) for a drift objective on
    /// four retained features, and what a day of panes costs a key.
    #[test]
    fn drift_panes_of_a_steady_day_are_bounded_by_the_lookback() {
        let yaml = "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: t}\nspec:\n  \
             selector: {agent: support-bot}\n  segmentBy: [attributes.channel]\n  \
             window: {size: 1h, step: 5m, allowedLateness: 5m}\n  minSessions: 100\n  \
             period: {rolling: 28d}\n  objectives:\n    - name: drift\n      drift:\n        \
             features: [output_tokens, tool_calls, tool_mix, quality.refusal, quality.resolved]\n";
        let (mut specs, diags) = crate::spec::parse_str(yaml, "t.yaml");
        assert!(
            !crate::spec::has_errors(&diags),
            "{}",
            crate::spec::render_all(&diags)
        );
        let mut rt = SpecRuntime::new(Arc::new(specs.remove(0)));
        let decoder = Decoder::new(Arc::new(Catalog::embedded()));
        let mut cfg = SimConfig::steady(3, 30);
        cfg.late_fraction = 0.0;
        let mut sessions = 0;
        for line in Simulator::new(cfg).unwrap() {
            let s = decoder.decode(&line).unwrap();
            if rt.observe(&s).is_ok() {
                sessions += 1;
                rt.advance(s.event_time);
            }
        }
        let state = &rt.snapshot().drift_forensics[0];
        let whole = state
            .panes
            .iter()
            .find(|(k, _)| k.segment.is_none())
            .map(|(_, p)| p)
            .unwrap();
        // 30 h of traffic, a day kept behind the newest closed window (plus the open panes).
        assert!((288..=288 + 13).contains(&whole.len()), "{}", whole.len());
        let ids: usize = whole.values().map(|p| p.kept.len()).sum();
        let dropped: u64 = whole.values().map(|p| p.dropped).sum();
        assert_eq!(dropped, 0);
        assert!(ids < sessions, "{ids} of {sessions}");
        let panes: usize = state.panes.values().map(|p| p.len()).sum();
        let bytes = serde_json::to_vec(state).unwrap().len();
        let per_pane = bytes as f64 / panes as f64;
        println!(
            "drift retained: {bytes} B for {panes} panes of {} groups ({per_pane:.0} B a pane, \
             {ids} ids in the whole key's day)",
            state.panes.len()
        );
        assert!(per_pane < 8_000.0, "{per_pane} B a pane");
    }
}
