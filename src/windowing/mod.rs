//! Assigns records to event-time windows and closes them as the watermark passes.
//!
//! Windows are tumbling (`step == size`) or hopping (`step < size`), aligned to the Unix epoch.
//! State is kept per *pane* — the `gcd(size, step)` slices every window is made of — so a record
//! updates exactly one summary however many windows contain it, and closing a window merges its
//! panes. That is why summaries must be mergeable ([`Summary`]).
//!
//! The watermark is `max event time seen − allowedLateness`. A window `[start, end)` closes when
//! the watermark reaches `end`. A record whose event time lies before the end of the last closed
//! window is *late*: it is reported to the caller (and never silently dropped), and it does not
//! touch any window, so a record is either fully counted or counted as late.
//!
//! Never reads the wall clock, never does I/O.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::session::EpochMs;

/// A summary of the sessions of one pane or window. `merge` must be associative and
/// commutative in effect: merging pane summaries gives the summary of their union.
pub trait Summary: Clone {
    fn merge(&mut self, other: &Self);
    /// An empty summary of the same shape (for a window whose newest step had no sessions of
    /// a key).
    fn empty_like(&self) -> Self;
    /// Called on a closed window's summaries before they are handed out, and on the panes of a
    /// window about to close before they are merged: the moment to put lazily maintained parts
    /// in their final form. Must not change what the summary represents.
    fn seal(&mut self) {}
}

/// Window geometry and lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub step_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl WindowConfig {
    /// The pane length: the largest slice every window is a whole number of.
    pub fn pane_ms(&self) -> i64 {
        gcd(self.size_ms, self.step_ms)
    }

    /// Start times of every window containing `t`, oldest first.
    pub fn windows_containing(&self, t: EpochMs) -> Vec<(EpochMs, EpochMs)> {
        let mut out = Vec::new();
        // The latest window containing t starts at the step boundary at or before t.
        let mut start = t.div_euclid(self.step_ms) * self.step_ms;
        while start + self.size_ms > t {
            out.push((start, start + self.size_ms));
            start -= self.step_ms;
        }
        out.reverse();
        out
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// A window that closed, with the merged summary of its sessions for one key.
#[derive(Debug, Clone)]
pub struct ClosedWindow<K, S> {
    pub key: K,
    pub start: EpochMs,
    pub end: EpochMs,
    /// All sessions of `[start, end)`.
    pub summary: S,
    /// Only the sessions of the newest step `[end − step, end)`: what no earlier window of this
    /// key has seen. Used to report each violating session exactly once.
    pub newest_step: S,
}

/// A record whose event time lies before the end of the last closed window. With hopping
/// windows it may still belong to windows that are open (a record at 11:50 when the window
/// ending 12:00 has closed also belongs to those ending 12:15 … 12:45); it is counted in none
/// of them, so that every record is either in all its windows or reported late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub event_time: EpochMs,
    /// End of the last closed window.
    pub closed_before: EpochMs,
}

/// Open windows of one spec, per key `K`, as pane summaries `S`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash, S: Serialize",
    deserialize = "K: Deserialize<'de> + Eq + Hash, S: Deserialize<'de>"
))]
pub struct Windows<K, S> {
    config: WindowConfig,
    pane_ms: i64,
    /// Every record looks up its key here: FxHash, as keys are the pipeline's own strings.
    #[serde(with = "crate::snapshot::nested_pairs")]
    panes: BTreeMap<EpochMs, HashMap<K, S, rustc_hash::FxBuildHasher>>,
    /// End of the last closed window; records before it are late.
    closed_until: Option<EpochMs>,
    max_event_time: Option<EpochMs>,
}

impl<K: Clone + Eq + Hash + Ord, S: Summary> Windows<K, S> {
    pub fn new(config: WindowConfig) -> Windows<K, S> {
        assert!(
            config.size_ms > 0 && config.step_ms > 0 && config.step_ms <= config.size_ms,
            "window geometry is validated by the spec parser"
        );
        Windows {
            pane_ms: config.pane_ms(),
            config,
            panes: BTreeMap::new(),
            closed_until: None,
            max_event_time: None,
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The current watermark, if any record has been seen.
    pub fn watermark(&self) -> Option<EpochMs> {
        self.max_event_time
            .map(|t| t - self.config.allowed_lateness_ms)
    }

    /// End of the last closed window.
    pub fn closed_until(&self) -> Option<EpochMs> {
        self.closed_until
    }

    /// Checks whether a record at `t` would be late, without recording anything.
    pub fn check(&self, t: EpochMs) -> Result<(), Late> {
        match self.closed_until {
            Some(c) if t < c => Err(Late {
                event_time: t,
                closed_before: c,
            }),
            _ => Ok(()),
        }
    }

    /// Adds one record at event time `t` to key `key`'s pane summary (created by `init`), via
    /// `update`. Does not close windows: call [`Windows::advance`] for that.
    pub fn observe(
        &mut self,
        t: EpochMs,
        key: &K,
        init: impl FnOnce() -> S,
        update: impl FnOnce(&mut S),
    ) -> Result<(), Late> {
        self.check(t)?;
        self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        let pane = t.div_euclid(self.pane_ms) * self.pane_ms;
        let keys = self.panes.entry(pane).or_default();
        match keys.get_mut(key) {
            Some(s) => update(s),
            None => {
                let mut s = init();
                update(&mut s);
                keys.insert(key.clone(), s);
            }
        }
        Ok(())
    }

    /// Moves the watermark forward to `max_event_time − lateness` (it never moves back) and
    /// closes every window whose end it has reached, in order of end then key.
    pub fn advance(&mut self, max_event_time: EpochMs) -> Vec<ClosedWindow<K, S>> {
        self.max_event_time = Some(
            self.max_event_time
                .map_or(max_event_time, |m| m.max(max_event_time)),
        );
        let watermark = max_event_time - self.config.allowed_lateness_ms;
        self.close_through(watermark)
    }

    /// Closes every window that holds any data (end of a finite stream).
    pub fn flush(&mut self) -> Vec<ClosedWindow<K, S>> {
        match self.panes.keys().next_back() {
            Some(&last) => self.close_through(last + self.pane_ms + self.config.size_ms),
            None => Vec::new(),
        }
    }

    /// The open panes of every key, oldest first: a checkpoint writes each key's apart
    /// ([`crate::checkpoint`]).
    pub fn panes_by_key(&self) -> BTreeMap<&K, Vec<(EpochMs, &S)>> {
        let mut out: BTreeMap<&K, Vec<(EpochMs, &S)>> = BTreeMap::new();
        for (&pane, keys) in &self.panes {
            for (k, s) in keys {
                out.entry(k).or_default().push((pane, s));
            }
        }
        out
    }

    /// `(closed_until, max_event_time)`: with the config and [`Windows::panes_by_key`],
    /// everything [`Windows::from_parts`] needs.
    pub fn frontier(&self) -> (Option<EpochMs>, Option<EpochMs>) {
        (self.closed_until, self.max_event_time)
    }

    /// Windows from their parts: the inverse of [`Windows::panes_by_key`] and
    /// [`Windows::frontier`].
    pub fn from_parts(
        config: WindowConfig,
        keys: impl IntoIterator<Item = (K, Vec<(EpochMs, S)>)>,
        (closed_until, max_event_time): (Option<EpochMs>, Option<EpochMs>),
    ) -> Windows<K, S> {
        let mut w = Windows::new(config);
        for (k, panes) in keys {
            for (pane, s) in panes {
                w.panes.entry(pane).or_default().insert(k.clone(), s);
            }
        }
        w.closed_until = closed_until;
        w.max_event_time = max_event_time;
        w
    }

    /// Number of pane summaries held (for memory tests and telemetry).
    pub fn open_summaries(&self) -> usize {
        self.panes.values().map(HashMap::len).sum()
    }

    fn close_through(&mut self, watermark: EpochMs) -> Vec<ClosedWindow<K, S>> {
        let (size, step) = (self.config.size_ms, self.config.step_ms);
        let mut out = Vec::new();
        while let Some(&first_pane) = self.panes.keys().next() {
            // The first window end after what is already closed that contains any open pane.
            let first_end = (first_pane.div_euclid(step) + 1) * step;
            let end = match self.closed_until {
                Some(c) => (c + step).max(first_end),
                None => first_end,
            };
            if end > watermark {
                break;
            }
            let start = end - size;
            // These panes take no more records (they are before `end`, which becomes the
            // closed limit), and each is merged into up to `size / step` windows: seal it
            // once here rather than in every merge.
            for keys in self.panes.range_mut(start..end).map(|(_, keys)| keys) {
                keys.values_mut().for_each(S::seal);
            }
            let mut merged: BTreeMap<K, (S, Option<S>)> = BTreeMap::new();
            for (&pane, keys) in self.panes.range(start..end) {
                let newest = pane >= end - step;
                for (k, s) in keys {
                    match merged.get_mut(k) {
                        Some((all, new)) => {
                            all.merge(s);
                            if newest {
                                match new {
                                    Some(n) => n.merge(s),
                                    None => *new = Some(s.clone()),
                                }
                            }
                        }
                        None => {
                            merged.insert(k.clone(), (s.clone(), newest.then(|| s.clone())));
                        }
                    }
                }
            }
            for (key, (mut summary, newest_step)) in merged {
                let mut newest_step = newest_step.unwrap_or_else(|| summary.empty_like());
                summary.seal();
                newest_step.seal();
                out.push(ClosedWindow {
                    newest_step,
                    key,
                    start,
                    end,
                    summary,
                });
            }
            self.closed_until = Some(end);
            // Panes before the next window's start are needed by no later window.
            let keep_from = end + step - size;
            while self
                .panes
                .first_key_value()
                .is_some_and(|(&p, _)| p < keep_from)
            {
                self.panes.pop_first();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_membership() {
        let c = WindowConfig {
            size_ms: 60,
            step_ms: 15,
            allowed_lateness_ms: 0,
        };
        assert_eq!(c.pane_ms(), 15);
        assert_eq!(
            c.windows_containing(61),
            vec![(15, 75), (30, 90), (45, 105), (60, 120)]
        );
        let t = WindowConfig {
            size_ms: 60,
            step_ms: 60,
            allowed_lateness_ms: 0,
        };
        assert_eq!(t.windows_containing(59), vec![(0, 60)]);
        assert_eq!(t.windows_containing(-1), vec![(-60, 0)]);
        let odd = WindowConfig {
            size_ms: 50,
            step_ms: 20,
            allowed_lateness_ms: 0,
        };
        assert_eq!(odd.pane_ms(), 10);
        assert_eq!(
            odd.windows_containing(45),
            vec![(0, 50), (20, 70), (40, 90)]
        );
    }
}
