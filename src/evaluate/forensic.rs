//! The evaluation side of incident forensics ([`crate::forensics`]): which objectives have a
//! per-session definition of "counts against it", the retained panes every session updates,
//! and, as windows close, the onset and layer attribution of a breach streak's first finding
//! and the affected sessions of every breaching window.
//!
//! Decisions documented here, since the alert engine and the incident store rely on them:
//!
//! - A *streak* of an objective on one key (and segment) opens with a breach finding of
//!   severity `ticket` or `page` (what opens an incident) and ends with a window of the
//!   objective judged without one (a [`Clear`](crate::finding::Clear)). Only the **first**
//!   finding of a streak carries [`Forensics`]; later ones carry none (the incident keeps the
//!   first estimate; a later one would look at a series already dominated by the incident).
//! - The onset looks back over the retained panes of the key up to the breaching window's end,
//!   but not before the end of the key's previous streak of the objective.
//! - Affected sessions: each breaching window hands out the retained bad sessions of its panes
//!   not handed out before for the (objective, key, segment); the first window of a streak
//!   starts at the onset (or at the window's start without one). So a session is handed out at
//!   most once, and at most [`MAX_BAD_IDS`](crate::forensics::retain::MAX_BAD_IDS) per pane are
//!   kept; the rest are counted in `dropped`.
//! - Drift objectives have no per-session definition: they are not tracked here but by
//!   [`super::drift_forensic`], which follows the drifted feature instead. Window budgets
//!   likewise, see there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::{GroupKey, SpecRuntime};
use crate::finding::{Clear, Finding, Verdict};
use crate::forensics::onset::{self, RatePane, ValuePane};
use crate::forensics::retain::{
    FIXED, ForensicPane, MAX_RETENTION_MS, Outcome, Reason, RetainedPane,
};
use crate::forensics::{AffectedBatch, AffectedSession, Forensics, Onset, attribute};
use crate::session::{EpochMs, Session};
use crate::spec::model::{BoolSignal, Bound, NumericField, ObjectiveKind, Severity, Spec};
use crate::windowing::ClosedWindow;

use super::measure::{CompiledMeasures, Measure, RatioDef, SpecSummary, numeric};

/// How a tracked objective decides that a session counts against it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum BadDef {
    /// An SLO ratio: eligible and not good. With `signal_bad`, a `rate` objective: eligible
    /// and the signal equal to it.
    Ratio {
        measure: usize,
        signal_bad: Option<bool>,
    },
    /// A value past the objective's bound (percentile, mean, spend percentile).
    Value { field: NumericField, bound: Bound },
    /// Any violation under these measures (cost caps, PII, tools).
    Violations(Vec<usize>),
}

/// An objective forensics follows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tracked {
    pub objective: usize,
    pub def: BadDef,
    /// Mean objectives: the onset is a shift of the mean, not of the bad rate.
    pub gaussian: bool,
    /// The names its reasons carry, made once: a bad session shares them.
    labels: Labels,
}

/// The names in a tracked objective's reasons.
#[derive(Debug, Clone, PartialEq)]
struct Labels {
    /// The field of a value reason.
    field: Arc<str>,
    /// The signal reason when the signal is `false` and when it is `true` (`resolved=false`,
    /// `resolved=true`; a fallback objective's `fallback=false` in both).
    signal: [Arc<str>; 2],
}

impl Labels {
    fn of(def: &BadDef, measures: &CompiledMeasures) -> Labels {
        let mut labels = Labels {
            field: Arc::from(""),
            signal: [Arc::from(""), Arc::from("")],
        };
        match def {
            BadDef::Ratio { measure, .. } => match &measures.measures[*measure] {
                Measure::Ratio(RatioDef::Good(_)) => labels.field = Arc::from("duration_ms"),
                Measure::Ratio(RatioDef::AtMost(field, _)) => {
                    labels.field = Arc::from(field.record_name())
                }
                Measure::Ratio(RatioDef::Signal(signal)) => {
                    let name = signal_name(signal);
                    labels.signal = [
                        Arc::from(format!("{name}=false")),
                        Arc::from(format!("{name}=true")),
                    ];
                }
                _ => {
                    let fallback: Arc<str> = Arc::from("fallback=false");
                    labels.signal = [fallback.clone(), fallback];
                }
            },
            BadDef::Value { field, .. } => labels.field = Arc::from(field.record_name()),
            BadDef::Violations(_) => {}
        }
        labels
    }
}

/// The objectives of a spec that have a per-session definition, in objective order.
pub(super) fn tracked(spec: &Spec, measures: &CompiledMeasures) -> Vec<Tracked> {
    let mut out = Vec::new();
    for (i, (o, om)) in spec.objectives.iter().zip(&measures.objectives).enumerate() {
        let def = match &o.kind {
            ObjectiveKind::Ratio { .. }
            | ObjectiveKind::Threshold { .. }
            | ObjectiveKind::Fallback(_) => om.ratio.map(|m| BadDef::Ratio {
                measure: m,
                signal_bad: None,
            }),
            ObjectiveKind::Rate { bound, .. } => om.ratio.map(|m| BadDef::Ratio {
                measure: m,
                signal_bad: Some(matches!(bound, Bound::Max(_))),
            }),
            ObjectiveKind::Percentile { field, bound, .. }
            | ObjectiveKind::Mean { field, bound, .. } => Some(BadDef::Value {
                field: field.clone(),
                bound: *bound,
            }),
            ObjectiveKind::Spend(sp) => {
                let caps: Vec<usize> = [om.violations, om.soft_violations]
                    .into_iter()
                    .flatten()
                    .collect();
                if !caps.is_empty() {
                    Some(BadDef::Violations(caps))
                } else {
                    sp.percentile.map(|(_, max)| BadDef::Value {
                        field: NumericField::CostUsd,
                        bound: Bound::Max(max),
                    })
                }
            }
            ObjectiveKind::Pii(_) | ObjectiveKind::Tools(_) => {
                om.violations.map(|m| BadDef::Violations(vec![m]))
            }
            ObjectiveKind::Drift(_) => None,
        };
        if let Some(def) = def {
            out.push(Tracked {
                objective: i,
                gaussian: matches!(o.kind, ObjectiveKind::Mean { .. }),
                labels: Labels::of(&def, measures),
                def,
            });
        }
    }
    out
}

fn signal_name(s: &BoolSignal) -> String {
    match s {
        BoolSignal::Resolved => "resolved".into(),
        BoolSignal::Refusal => "refusal".into(),
        BoolSignal::FallbackTriggered => "fallback".into(),
        BoolSignal::Status(st) => format!("status:{}", st.as_str()),
    }
}

/// How one session stands against one tracked objective. Reasons share the objective's
/// labels: no string is made per session.
pub(super) fn outcome(
    t: &Tracked,
    measures: &CompiledMeasures,
    s: &Session,
    judged: &[(bool, bool)],
) -> Outcome {
    match &t.def {
        BadDef::Ratio {
            measure,
            signal_bad,
        } => {
            let (eligible, good) = judged[*measure];
            let bad = match signal_bad {
                None => eligible && !good,
                Some(side) => eligible && good == *side,
            };
            let reason = bad.then(|| match &measures.measures[*measure] {
                Measure::Ratio(RatioDef::Good(filter)) => {
                    if !filter.status.is_empty() && !filter.status.contains(&s.status) {
                        Reason::Status(s.status)
                    } else {
                        Reason::Value {
                            field: t.labels.field.clone(),
                            value: s.duration_ms.unwrap_or(f64::NAN),
                            threshold: filter.max_duration_ms.unwrap_or(f64::NAN),
                        }
                    }
                }
                Measure::Ratio(RatioDef::AtMost(field, threshold)) => Reason::Value {
                    field: t.labels.field.clone(),
                    value: numeric(field, s).unwrap_or(f64::NAN),
                    threshold: *threshold,
                },
                // A rate objective's "bad" side is the signal holding or not, as its bound
                // says; any other ratio's is the signal not holding.
                Measure::Ratio(RatioDef::Signal(_)) => {
                    let value = if signal_bad.is_some() { good } else { !good };
                    Reason::Signal(t.labels.signal[usize::from(value)].clone())
                }
                _ => Reason::Signal(t.labels.signal[0].clone()),
            });
            Outcome {
                bad: reason,
                value: None,
            }
        }
        BadDef::Value { field, bound } => {
            let value = numeric(field, s);
            let bad = value.filter(|v| !bound.holds(*v)).map(|v| Reason::Value {
                field: t.labels.field.clone(),
                value: v,
                threshold: bound.value(),
            });
            Outcome { bad, value }
        }
        BadDef::Violations(ms) => {
            let detail = ms
                .iter()
                .find_map(|m| measures.violations_of(*m, s).into_iter().next());
            Outcome {
                bad: detail.map(|detail| Reason::Violation(Box::new(detail))),
                value: None,
            }
        }
    }
}

/// Coordinates of a finding or clear on one window.
/// An objective, key, segment and window end: where a finding or clear stands.
pub(super) type Coordinates = (String, Vec<(String, String)>, Option<String>, EpochMs);

/// The findings that open or continue an incident (breaches of ticket severity or above) among
/// those `counts`, by coordinates, and the coordinates of `clears`.
pub(super) fn breaches_and_clears(
    out: &[Finding],
    clears: &[Clear],
    counts: impl Fn(&Finding) -> bool,
) -> (HashMap<Coordinates, Vec<usize>>, HashSet<Coordinates>) {
    let mut breaches: HashMap<Coordinates, Vec<usize>> = HashMap::new();
    for (i, f) in out.iter().enumerate() {
        if f.verdict == Verdict::Breach && f.severity >= Severity::Ticket && counts(f) {
            let at = (
                f.objective.clone(),
                f.key.clone(),
                f.segment.clone(),
                f.window_end,
            );
            breaches.entry(at).or_default().push(i);
        }
    }
    let cleared = clears
        .iter()
        .map(|c| {
            (
                c.objective.clone(),
                c.key.clone(),
                c.segment.clone(),
                c.window_end,
            )
        })
        .collect();
    (breaches, cleared)
}

impl SpecRuntime {
    /// How long retained panes are kept: the SLO period, at least the window, at most 7 days.
    pub(super) fn forensic_retention_ms(&self) -> i64 {
        self.spec
            .period_ms
            .min(MAX_RETENTION_MS)
            .max(self.spec.window.size_ms)
    }

    /// Adds a session to the retained panes of its key and segment.
    pub(super) fn retain_forensics(
        &mut self,
        key: &Arc<str>,
        segment: Option<&Arc<str>>,
        s: &Session,
        judged: &[(bool, bool)],
    ) {
        if self.tracked.is_empty() {
            return;
        }
        // One buffer for every session's outcomes: no allocation per session.
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        outcomes.extend(
            self.tracked
                .iter()
                .map(|t| outcome(t, &self.measures, s, judged)),
        );
        let pane_ms = self.windows.config().pane_ms();
        let pane = s.event_time.div_euclid(pane_ms) * pane_ms;
        let whole = GroupKey {
            key: key.clone(),
            segment: None,
        };
        self.retained.observe(&whole, pane, s, segment, &outcomes);
        if let Some(seg) = segment {
            let group = GroupKey {
                key: key.clone(),
                segment: Some(seg.clone()),
            };
            self.retained.observe(&group, pane, s, segment, &outcomes);
        }
        self.outcomes = outcomes;
    }

    /// After the windows of `closed` were judged: forensics on the first breach of each
    /// streak, affected sessions of every breaching window, streaks ended by clears (those
    /// pushed from `clears_from` on), and the retention trimmed.
    pub(super) fn investigate(
        &mut self,
        closed: &[ClosedWindow<GroupKey, SpecSummary>],
        out: &mut [Finding],
        clears_from: usize,
    ) {
        if self.tracked.is_empty() {
            return;
        }
        let (breaches, cleared) = breaches_and_clears(out, &self.clears[clears_from..], |_| true);
        let mut newest = None;
        for w in closed {
            newest = newest.max(Some(w.end));
            let parts = self.key_parts.get(&w.key.key).cloned().unwrap_or_default();
            let segment = w.key.segment.as_deref().map(str::to_owned);
            for j in 0..self.tracked.len() {
                let oi = self.tracked[j].objective;
                let coords: Coordinates = (
                    self.spec.objectives[oi].name.clone(),
                    parts.clone(),
                    segment.clone(),
                    w.end,
                );
                let track_key = (j, w.key.clone());
                if let Some(found) = breaches.get(&coords) {
                    let track = self
                        .retained
                        .tracks
                        .get(&track_key)
                        .copied()
                        .unwrap_or_default();
                    let mut from = w.start;
                    if !track.open {
                        let forensics = self.forensics_for(j, &w.key, track.closed_at, w.end);
                        if let Some(o) = &forensics.onset {
                            from = o.at;
                        }
                        for &i in found {
                            out[i].forensics = Some(Box::new(forensics.clone()));
                        }
                    } else if let Some(h) = track.handed_until {
                        from = h;
                    }
                    if let Some(h) = track.handed_until {
                        from = from.max(h);
                    }
                    self.hand_out(j, w, &parts, from);
                    let t = self.retained.tracks.entry(track_key).or_default();
                    t.open = true;
                    t.handed_until = Some(t.handed_until.map_or(w.end, |h| h.max(w.end)));
                } else if cleared.contains(&coords)
                    && let Some(t) = self.retained.tracks.get_mut(&track_key)
                    && t.open
                {
                    t.open = false;
                    t.closed_at = Some(w.end);
                }
            }
        }
        if let Some(end) = newest {
            self.retained.trim(end - self.forensic_retention_ms());
        }
    }

    /// Onset and candidates of tracked objective `j` on `group`, looking at panes from
    /// `since` up to `end`. When the key's own series shows no change and other keys of the
    /// same agent exist (a prompt or model rollout makes a new key under the default `keyBy`),
    /// the agent's keys are merged pane by pane and judged together: the new key is then a new
    /// value of its layer.
    fn forensics_for(
        &self,
        j: usize,
        group: &GroupKey,
        since: Option<EpochMs>,
        end: EpochMs,
    ) -> Forensics {
        let Some(all) = self.retained.panes_of(group) else {
            return Forensics::default();
        };
        let from = since.unwrap_or(EpochMs::MIN);
        let own: Vec<(EpochMs, ForensicPane)> = all
            .range(from..end)
            .map(|(t, p)| (*t, p.to_pane(false)))
            .collect();
        let own = self.forensics_of(j, own.iter().map(|(t, p)| (*t, p)).collect());
        if own.onset.is_some() {
            return own;
        }
        let agent = |k: &GroupKey| {
            self.key_parts
                .get(&k.key)
                .and_then(|p| p.first())
                .map(|(_, a)| a.clone())
        };
        let mine = agent(group);
        let siblings: Vec<&BTreeMap<EpochMs, RetainedPane>> = self
            .retained
            .panes
            .iter()
            .filter(|(k, _)| k.segment == group.segment && k.key != group.key && agent(k) == mine)
            .map(|(_, p)| p)
            .collect();
        if siblings.is_empty() {
            return own;
        }
        let mut merged: BTreeMap<EpochMs, ForensicPane> = BTreeMap::new();
        for panes in siblings.into_iter().chain([all]) {
            for (t, p) in panes.range(from..end) {
                p.add_counts_to(merged.entry(*t).or_default());
            }
        }
        self.forensics_of(j, merged.iter().map(|(t, p)| (*t, p)).collect())
    }

    /// Onset and candidates of tracked objective `j` on a series of panes.
    fn forensics_of(&self, j: usize, panes: Vec<(EpochMs, &ForensicPane)>) -> Forensics {
        let t = &self.tracked[j];
        let cp = if t.gaussian {
            let series: Vec<ValuePane> = panes
                .iter()
                .map(|(_, p)| {
                    p.objectives
                        .get(j)
                        .map_or_else(ValuePane::default, |o| ValuePane {
                            count: o.count,
                            sum: o.sum as f64 / FIXED,
                            sum_sq: o.sum_sq as f64 / FIXED,
                        })
                })
                .collect();
            let rise = matches!(
                t.def,
                BadDef::Value {
                    bound: Bound::Max(_),
                    ..
                }
            );
            onset::gaussian(&series, rise)
        } else {
            let series: Vec<RatePane> = panes
                .iter()
                .map(|(_, p)| RatePane {
                    bad: p.bad(j),
                    sessions: p.sessions,
                })
                .collect();
            onset::binomial(&series)
        };
        let Some(cp) = cp else {
            return Forensics::default();
        };
        let onset = Onset {
            at: panes[cp.at].0,
            low: panes[cp.low].0,
            high: panes[cp.high].0,
            panes: panes.len() as u32,
        };
        let mut before = ForensicPane::default();
        let mut after = ForensicPane::default();
        for (i, (_, p)) in panes.iter().enumerate() {
            if i < cp.at {
                before.merge_counts(p);
            } else {
                after.merge_counts(p);
            }
        }
        let step = self.spec.window.step_ms;
        let reload = self
            .retained
            .reloads
            .iter()
            .any(|r| *r >= onset.low - step && *r <= onset.high + step);
        Forensics {
            candidates: attribute::attribute(&before, &after, j, reload),
            onset: Some(onset),
            feature: None,
        }
    }

    /// Queues the retained bad sessions of tracked objective `j` in the panes of `w`'s key from
    /// `from` to the window's end.
    fn hand_out(
        &mut self,
        j: usize,
        w: &ClosedWindow<GroupKey, SpecSummary>,
        parts: &[(String, String)],
        from: EpochMs,
    ) {
        let Some(panes) = self.retained.panes_of(&w.key) else {
            return;
        };
        let segment = w.key.segment.as_deref().map(str::to_owned);
        let mut sessions = Vec::new();
        // Sessions of a whole-key window name their own segment.
        let mut dropped = 0;
        for (_, p) in panes.range(from..w.end) {
            let Some(o) = p.objective(j) else {
                continue;
            };
            dropped += o.dropped;
            sessions.extend(p.kept(j).map(|b| AffectedSession {
                session_id: b.session_id.to_owned(),
                event_time: b.event_time,
                key: parts.to_vec(),
                segment: b.segment.map(|s| s.to_string()),
                reason: b.reason.to_affected(),
            }));
        }
        if sessions.is_empty() && dropped == 0 {
            return;
        }
        self.affected_out.push(AffectedBatch {
            spec: self.spec.name.clone(),
            objective: self.spec.objectives[self.tracked[j].objective].name.clone(),
            key: parts.to_vec(),
            segment,
            window_end: w.end,
            sessions,
            dropped,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Catalog;
    use crate::forensics::retain::MAX_PANES;
    use crate::ingest::decode::Decoder;
    use crate::simulate::{SimConfig, Simulator};

    fn runtime(period: &str) -> SpecRuntime {
        let yaml = format!(
            "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {{name: t}}\nspec:\n  \
             selector: {{agent: support-bot}}\n  segmentBy: [attributes.channel]\n  \
             window: {{size: 1h, step: 5m, allowedLateness: 5m}}\n  minSessions: 100\n  \
             period: {{rolling: {period}}}\n  objectives:\n    \
             - {{name: success, ratio: {{good: {{status: [success]}}}}, target: 99%}}\n    \
             - {{name: resolved, rate: {{of: quality.resolved, min: 60%}}}}\n"
        );
        let (mut specs, diags) = crate::spec::parse_str(&yaml, "t.yaml");
        assert!(
            !crate::spec::has_errors(&diags),
            "{}",
            crate::spec::render_all(&diags)
        );
        SpecRuntime::new(Arc::new(specs.remove(0)))
    }

    fn feed(rt: &mut SpecRuntime, hours: u32) {
        let decoder = Decoder::new(Arc::new(Catalog::embedded()));
        let mut cfg = SimConfig::steady(3, hours);
        cfg.late_fraction = 0.0;
        for line in Simulator::new(cfg).unwrap() {
            let s = decoder.decode(&line).unwrap();
            if rt.observe(&s).is_ok() {
                rt.advance(s.event_time);
            }
        }
    }

    /// The figure behind the retention bound: bytes of snapshot (JSON, which CBOR undercuts)
    /// per key and pane of the steady stream (200 sessions an hour, two tracked objectives,
    /// three channel segments), and what 7 days of 5-minute panes cost a key.
    #[test]
    fn retained_bytes_per_key_of_a_steady_day() {
        let mut rt = runtime("28d");
        feed(&mut rt, 24);
        let state = rt.snapshot().forensics;
        let panes: usize = state.panes.values().map(|p| p.len()).sum();
        let groups = state.panes.len();
        let bytes = serde_json::to_vec(&state).unwrap().len();
        let per_pane = bytes as f64 / panes as f64;
        // One key: the whole key and its three channel segments.
        assert_eq!(groups, 4);
        // 24 h of 5-minute panes for the whole key (a segment may miss a pane or two).
        let whole = state
            .panes
            .iter()
            .find(|(k, _)| k.segment.is_none())
            .unwrap()
            .1;
        assert_eq!(whole.len(), 288);
        let per_key_week = per_pane * (MAX_PANES * groups) as f64;
        println!(
            "retained: {bytes} B for {panes} panes ({per_pane:.0} B a pane); \
             a key with 3 segments over 7 days ≈ {:.1} MB",
            per_key_week / 1e6
        );
        assert!(per_pane < 2_000.0, "{per_pane} B a pane");
        // In memory: the compact panes against the same panes in map form (how they were
        // held before), heap bytes about.
        let live = &rt.retained.panes;
        let compact: usize = live
            .values()
            .flat_map(|p| p.values())
            .map(|p| p.heap_bytes())
            .sum();
        let maps: usize = live
            .values()
            .flat_map(|p| p.values())
            .map(|p| p.to_pane(true).heap_bytes())
            .sum();
        println!(
            "in memory: {:.0} B a pane compact, {:.0} B a pane as maps; \
             a key with 3 segments over 7 days ≈ {:.1} MB compact, {:.1} MB as maps",
            compact as f64 / panes as f64,
            maps as f64 / panes as f64,
            compact as f64 / panes as f64 * (MAX_PANES * groups) as f64 / 1e6,
            maps as f64 / panes as f64 * (MAX_PANES * groups) as f64 / 1e6,
        );
        assert!(compact * 2 < maps, "{compact} B compact, {maps} B as maps");
    }

    /// Compact panes are written in the snapshot layout of the map form, so a checkpoint of
    /// either restores into the other: the restored state writes the same bytes, and keeps
    /// counting as if never restored.
    #[test]
    fn retained_panes_restore_from_their_snapshot_byte_for_byte() {
        let mut rt = runtime("28d");
        feed(&mut rt, 6);
        let json = serde_json::to_string(&rt.snapshot()).unwrap();
        let mut restored = runtime("28d");
        assert!(restored.restore(serde_json::from_str(&json).unwrap()));
        // Every key's panes, in key order (the snapshot's maps list keys in hash order).
        let panes = |rt: &SpecRuntime| -> BTreeMap<GroupKey, String> {
            rt.snapshot()
                .forensics
                .panes
                .iter()
                .map(|(k, p)| (k.clone(), serde_json::to_string(p).unwrap()))
                .collect()
        };
        assert_eq!(panes(&restored), panes(&rt));
        assert_eq!(
            restored.snapshot().forensics.tracks,
            rt.snapshot().forensics.tracks
        );
        // The snapshot form of a pane is the map form, which reads back field for field.
        let state = rt.snapshot().forensics;
        let (_, panes) = state.panes.iter().next().unwrap();
        let (_, pane) = panes.iter().next_back().unwrap();
        let maps = pane.to_pane(true);
        let reread: ForensicPane =
            serde_json::from_str(&serde_json::to_string(pane).unwrap()).unwrap();
        assert_eq!(reread, maps);
        assert!(maps.sessions > 0 && !maps.prompt.is_empty());
    }

    #[test]
    fn retention_drops_panes_older_than_the_period() {
        let mut rt = runtime("2h");
        feed(&mut rt, 6);
        let state = rt.snapshot().forensics;
        let whole = state
            .panes
            .iter()
            .find(|(k, _)| k.segment.is_none())
            .map(|(_, p)| p)
            .unwrap();
        // 2 h of 5-minute panes behind the newest closed window, plus the open ones.
        assert!(whole.len() <= 24 + 13, "{}", whole.len());
        assert!(whole.len() >= 24, "{}", whole.len());
    }
}
