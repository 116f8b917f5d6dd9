//! Error budgets and multiwindow burn rates over a bounded timeline of good/total counts.
//!
//! A [`SliTimeline`] keeps counts in fixed buckets (the gcd of every burn window and the spec's
//! step, at least one minute) for as long as the longest lookback needs — the error-budget
//! period or the longest burn window — and no longer, so memory is bounded per key. Burn rate
//! over a lookback = (bad / total) / (1 − target). No I/O, no clock: "now" is a window end.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::confidence::{self, Side};
use crate::session::EpochMs;
use crate::spec::model::BurnRateTier;

/// Counts of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Eligible events that were good.
    pub good: u64,
    /// Eligible events (the SLI's denominator).
    pub total: u64,
    /// Sessions of the key, eligible or not: what `minSessions` counts. (A fallback SLO is
    /// eligible only on failed sessions; its tiers need `minSessions` sessions of traffic, not
    /// `minSessions` failures.) Absent in checkpoints written before it existed.
    #[serde(default)]
    pub sessions: u64,
}

impl Counts {
    pub fn bad(&self) -> u64 {
        self.total - self.good
    }

    /// Burn rate against a target, or `None` with no events.
    pub fn burn_rate(&self, target: f64) -> Option<f64> {
        (self.total > 0).then(|| (self.bad() as f64 / self.total as f64) / (1.0 - target))
    }

    /// The one-sided 95% lower confidence bound of the burn rate (Wilson score interval of
    /// the bad ratio): the burn we are confident is at least this high. One bad event out of
    /// one is a 100% bad ratio but only a 27% lower bound, so a tier cannot fire on a single
    /// unlucky session; 40 bad out of 40 bounds at 94%.
    pub fn burn_rate_lower_bound(&self, target: f64) -> Option<f64> {
        (self.total > 0).then(|| wilson_lower(self.bad(), self.total) / (1.0 - target))
    }
}

/// z of a one-sided 95% bound.
const Z_95: f64 = 1.644_853_626_951_472_2;

/// Lower bound of the Wilson score interval for `k` successes out of `n`, one-sided 95%.
pub fn wilson_lower(k: u64, n: u64) -> f64 {
    confidence::wilson(k, n, Z_95, Side::Lower)
}

/// The bucket of the SLI timelines: the gcd of the window step and every tier's long and short
/// window, so that every window end is a bucket boundary and every burn window `[end − w, end)`
/// is a whole number of buckets. (A 12-minute step with 5-minute buckets would end windows
/// mid-bucket, and the "5-minute" short window would sum the wrong five minutes.) Steps or
/// windows that are not whole minutes give sub-minute buckets: more memory, never a wrong sum;
/// `slawatch validate` warns about them.
pub fn timeline_bucket_ms(step_ms: i64, tiers: &[BurnRateTier]) -> i64 {
    let bucket = tiers
        .iter()
        .fold(step_ms, |b, t| gcd(gcd(b, t.long_ms), t.short_ms));
    // A 5-minute cap (a 1-hour step would otherwise give 5-minute buckets anyway through the
    // SRE tiers) keeps custom tiers from coarsening the budget's time resolution; 5 minutes
    // divided by the gcd still divides everything.
    gcd(bucket, 60_000 * 5).max(1)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// Buckets per checkpoint chunk of a timeline: a checkpoint rewrites the chunk sessions landed
/// in (at most this many buckets), never the whole error-budget period.
pub const CHUNK_BUCKETS: i64 = 64;

/// A timeline's checkpoint head: everything but its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelineHead {
    bucket_ms: i64,
    first: i64,
    len: u64,
    capacity: u64,
    first_seen: Option<EpochMs>,
}

/// The buckets a timeline holds of one chunk, from bucket number `first` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineChunk {
    first: i64,
    counts: Vec<Counts>,
}

/// Good/total counts of one SLI in time buckets.
///
/// Beside the buckets it keeps their running totals, so that the sum over any range — a burn
/// window, the whole error-budget period — is one subtraction, not a walk over up to a period
/// of buckets at every window close. The running totals are derived: checkpoints hold the
/// buckets only (the same encoding as before them), equality ignores them, and they are rebuilt
/// on restore.
#[derive(Debug, Clone)]
pub struct SliTimeline {
    data: Timeline,
    /// `running[i]`: the counts of every bucket before `buckets[i]` since the timeline began
    /// (including buckets already forgotten); one more entry than `buckets`, so the sum of
    /// `buckets[lo..hi]` is `running[hi] − running[lo]`.
    running: VecDeque<Counts>,
}

/// What a [`SliTimeline`] keeps, and its checkpoint encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Timeline {
    bucket_ms: i64,
    /// Bucket number (`t / bucket_ms`) of `buckets[0]`.
    first: i64,
    buckets: VecDeque<Counts>,
    capacity: usize,
    /// Earliest event time ever counted: how much history the rates can stand on.
    first_seen: Option<EpochMs>,
}

impl PartialEq for SliTimeline {
    fn eq(&self, other: &SliTimeline) -> bool {
        self.data == other.data
    }
}

impl Serialize for SliTimeline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SliTimeline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SliTimeline, D::Error> {
        Timeline::deserialize(d).map(SliTimeline::from_data)
    }
}

impl Counts {
    fn plus(self, o: Counts) -> Counts {
        Counts {
            good: self.good + o.good,
            total: self.total + o.total,
            sessions: self.sessions + o.sessions,
        }
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            good: self.good - o.good,
            total: self.total - o.total,
            sessions: self.sessions - o.sessions,
        }
    }
}

impl SliTimeline {
    /// A timeline keeping `span_ms` of history in buckets of `bucket_ms`.
    pub fn new(bucket_ms: i64, span_ms: i64) -> SliTimeline {
        let capacity = (span_ms / bucket_ms + 1).max(1) as usize;
        SliTimeline::from_data(Timeline {
            bucket_ms,
            first: 0,
            buckets: VecDeque::new(),
            capacity,
            first_seen: None,
        })
    }

    fn from_data(data: Timeline) -> SliTimeline {
        let mut running = VecDeque::with_capacity(data.buckets.len() + 1);
        let mut acc = Counts::default();
        running.push_back(acc);
        for &c in &data.buckets {
            acc = acc.plus(c);
            running.push_back(acc);
        }
        SliTimeline { data, running }
    }

    /// Counts one session at `t` that is eligible for the SLI, good or bad.
    pub fn add(&mut self, t: EpochMs, good: bool) {
        self.count(t, Some(good));
    }

    /// Counts one session at `t` that the SLI does not judge (it still counts as traffic).
    pub fn add_ineligible(&mut self, t: EpochMs) {
        self.count(t, None);
    }

    fn count(&mut self, t: EpochMs, outcome: Option<bool>) {
        let d = &mut self.data;
        let b = t.div_euclid(d.bucket_ms);
        if d.buckets.is_empty() {
            d.first = b;
        }
        if b < d.first {
            // Older than the history we keep, or before the first bucket: grow backwards
            // while there is room, otherwise it is beyond every lookback.
            let missing = (d.first - b) as usize;
            if d.buckets.len() + missing > d.capacity {
                // Dropped: it must not extend the history either.
                return;
            }
            // Empty buckets in front: the running total before each of them is the one
            // before the old first bucket.
            let before = self.running[0];
            for _ in 0..missing {
                d.buckets.push_front(Counts::default());
                self.running.push_front(before);
            }
            d.first = b;
        }
        let idx = (b - d.first) as usize;
        if idx >= d.buckets.len() {
            d.buckets.resize(idx + 1, Counts::default());
            let last = *self
                .running
                .back()
                .expect("one more running total than buckets");
            self.running.resize(idx + 2, last);
        }
        let delta = Counts {
            good: u64::from(outcome == Some(true)),
            total: u64::from(outcome.is_some()),
            sessions: 1,
        };
        let c = &mut d.buckets[idx];
        *c = c.plus(delta);
        // Sessions land in the newest buckets, so this touches one or two totals.
        for r in self.running.range_mut(idx + 1..) {
            *r = r.plus(delta);
        }
        // Only a counted event extends the history (an event dropped above as older than every
        // lookback once made a brand-new key look days old).
        d.first_seen = Some(d.first_seen.map_or(t, |f| f.min(t)));
        while d.buckets.len() > d.capacity {
            d.buckets.pop_front();
            self.running.pop_front();
            d.first += 1;
        }
    }

    /// Sum over `[from, to)`.
    pub fn sum(&self, from: EpochMs, to: EpochMs) -> Counts {
        let d = &self.data;
        let (fb, tb) = (from.div_euclid(d.bucket_ms), to.div_euclid(d.bucket_ms));
        let lo = (fb - d.first).max(0) as usize;
        let hi = ((tb - d.first).max(0) as usize).min(d.buckets.len());
        self.running[hi].minus(self.running[lo.min(hi)])
    }

    /// What the timeline holds besides its buckets: with [`SliTimeline::chunk`] of every chunk
    /// it overlaps, what [`SliTimeline::from_chunks`] rebuilds it from.
    pub fn head(&self) -> TimelineHead {
        let d = &self.data;
        TimelineHead {
            bucket_ms: d.bucket_ms,
            first: d.first,
            len: d.buckets.len() as u64,
            capacity: d.capacity as u64,
            first_seen: d.first_seen,
        }
    }

    /// The chunks (bucket numbers `chunk * CHUNK_BUCKETS ..`) the held buckets overlap.
    pub fn chunks(&self) -> std::ops::Range<i64> {
        let d = &self.data;
        if d.buckets.is_empty() {
            return 0..0;
        }
        let last = d.first + d.buckets.len() as i64 - 1;
        d.first.div_euclid(CHUNK_BUCKETS)..last.div_euclid(CHUNK_BUCKETS) + 1
    }

    /// The buckets held of chunk `chunk`: the number of the first, and their counts.
    pub fn chunk(&self, chunk: i64) -> TimelineChunk {
        let d = &self.data;
        let from = (chunk * CHUNK_BUCKETS).max(d.first);
        let to = ((chunk + 1) * CHUNK_BUCKETS).min(d.first + d.buckets.len() as i64);
        let range = (from - d.first).max(0) as usize..(to - d.first).max(0) as usize;
        TimelineChunk {
            first: from,
            counts: d.buckets.range(range).copied().collect(),
        }
    }

    /// Whether chunk `chunk` is held whole and lies before `closed_until`: its counts can no
    /// longer change (a session that could change them is late), and it stays whole until the
    /// timeline forgets its first bucket.
    pub fn chunk_sealed(&self, chunk: i64, closed_until: Option<EpochMs>) -> bool {
        let d = &self.data;
        let (from, to) = (chunk * CHUNK_BUCKETS, (chunk + 1) * CHUNK_BUCKETS);
        from >= d.first
            && to <= d.first + d.buckets.len() as i64
            && closed_until.is_some_and(|c| to * d.bucket_ms <= c)
    }

    /// A timeline from its head and chunks: the inverse of [`SliTimeline::head`] and
    /// [`SliTimeline::chunk`]. (A stored chunk holds what the timeline held of it: one that is
    /// not sealed is compared at every checkpoint, a sealed one stays whole. A bucket of no
    /// chunk given is empty.)
    pub fn from_chunks<'a>(
        head: TimelineHead,
        chunks: impl IntoIterator<Item = &'a TimelineChunk>,
    ) -> SliTimeline {
        let mut buckets = VecDeque::from(vec![Counts::default(); head.len as usize]);
        for c in chunks {
            for (i, counts) in c.counts.iter().enumerate() {
                let idx = c.first + i as i64 - head.first;
                if let Some(b) = usize::try_from(idx).ok().and_then(|i| buckets.get_mut(i)) {
                    *b = *counts;
                }
            }
        }
        SliTimeline::from_data(Timeline {
            bucket_ms: head.bucket_ms,
            first: head.first,
            buckets,
            capacity: head.capacity as usize,
            first_seen: head.first_seen,
        })
    }

    /// Earliest event time counted.
    pub fn first_seen(&self) -> Option<EpochMs> {
        self.data.first_seen
    }

    /// End of the newest bucket holding data.
    pub fn newest_end(&self) -> Option<EpochMs> {
        let d = &self.data;
        (!d.buckets.is_empty()).then(|| (d.first + d.buckets.len() as i64) * d.bucket_ms)
    }
}

/// The outcome of one tier at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct TierOutcome {
    pub tier: BurnRateTier,
    pub long: Counts,
    pub short: Counts,
    pub long_rate: Option<f64>,
    pub short_rate: Option<f64>,
    /// The 95% lower confidence bound of the long window's burn rate.
    pub long_rate_lower: Option<f64>,
    /// The long window holds at least `minSessions` sessions, its burn is confidently (95%
    /// lower bound) at least `factor`, the short window still burns at least `factor`, and the
    /// history spans at least the short window.
    pub fires: bool,
}

/// Evaluates every tier at `now` (a window end).
///
/// This is the SRE workbook's multiwindow, multi-burn-rate alert with one refinement against
/// false pages on thin traffic: the long window must hold at least `min_sessions` sessions
/// (`spec.minSessions`) and burn at least `factor` *with 95% confidence* (Wilson lower bound),
/// not just as a point estimate. The Wilson bound alone is not enough at high targets: one bad
/// session of two bounds at 12× at 99%, above the medium tier's 6×. A key with one failed
/// session out of one is not paged; forty failures out of forty are. A tier is only judged
/// once the timeline's history is at least as long as the tier's short window: a key that
/// appeared ten minutes ago cannot show a six-hour burn. Until the history covers the long
/// window, the long rate is the rate over the history there is, so a new prompt version that
/// fails every session still pages within the hour.
pub fn evaluate_tiers(
    timeline: &SliTimeline,
    tiers: &[BurnRateTier],
    target: f64,
    now: EpochMs,
    min_sessions: u64,
) -> Vec<TierOutcome> {
    tiers
        .iter()
        .map(|tier| {
            let long = timeline.sum(now - tier.long_ms, now);
            let short = timeline.sum(now - tier.short_ms, now);
            let (long_rate, short_rate) = (long.burn_rate(target), short.burn_rate(target));
            let long_rate_lower = long.burn_rate_lower_bound(target);
            let history_ok = timeline
                .first_seen()
                .is_some_and(|first| now - first >= tier.short_ms);
            let fires = history_ok
                && long.sessions >= min_sessions
                && long_rate_lower.is_some_and(|r| r >= tier.factor)
                && short_rate.is_some_and(|r| r >= tier.factor);
            TierOutcome {
                tier: tier.clone(),
                long,
                short,
                long_rate,
                short_rate,
                long_rate_lower,
                fires,
            }
        })
        .collect()
}

/// The most severe firing tier (the first in list order among equals).
pub fn worst_firing(outcomes: &[TierOutcome]) -> Option<&TierOutcome> {
    outcomes
        .iter()
        .filter(|o| o.fires)
        .fold(None, |best: Option<&TierOutcome>, o| match best {
            Some(b) if b.tier.severity >= o.tier.severity => Some(b),
            _ => Some(o),
        })
}

/// Share of the error budget consumed by `counts` at `target` (1.0 = all of it).
pub fn budget_consumed(counts: Counts, target: f64) -> Option<f64> {
    (counts.total > 0).then(|| counts.bad() as f64 / (counts.total as f64 * (1.0 - target)))
}

/// Time until the budget is exhausted when burning at `rate`, from the share already used.
pub fn time_to_exhaustion_ms(period_ms: i64, consumed: f64, rate: f64) -> Option<i64> {
    (rate > 0.0).then(|| (((1.0 - consumed).max(0.0)) * period_ms as f64 / rate) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// The running totals against a walk over the buckets, for every range, while sessions
    /// arrive out of order, the timeline grows backwards, drops what is too old and forgets its
    /// oldest buckets; and after a checkpoint round trip (which stores the buckets only).
    #[test]
    fn running_totals_sum_every_range_as_the_buckets_do() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut t = SliTimeline::new(5 * MIN, 4 * 60 * MIN);
        let walk = |t: &SliTimeline, from: i64, to: i64| {
            let d = &t.data;
            let (lo, hi) = (from.div_euclid(d.bucket_ms), to.div_euclid(d.bucket_ms));
            let mut out = Counts::default();
            for (i, c) in d.buckets.iter().enumerate() {
                let b = d.first + i as i64;
                if b >= lo && b < hi {
                    out = out.plus(*c);
                }
            }
            out
        };
        let mut newest = 10 * 60 * MIN;
        for step in 0..3_000 {
            newest += rng.random_range(0..3 * MIN);
            // Mostly recent, sometimes hours late (beyond the span: dropped).
            let t_ms = newest - rng.random_range(0..if step % 50 == 0 { 6 * 60 } else { 20 }) * MIN;
            match rng.random_range(0..3) {
                0 => t.add_ineligible(t_ms),
                1 => t.add(t_ms, true),
                _ => t.add(t_ms, false),
            }
            if step % 97 == 0 {
                for from in (newest - 6 * 60 * MIN..newest + 10 * MIN).step_by(7 * MIN as usize) {
                    for len in [MIN, 5 * MIN, 60 * MIN, 6 * 60 * MIN] {
                        assert_eq!(t.sum(from, from + len), walk(&t, from, from + len));
                    }
                }
                let json = serde_json::to_string(&t).unwrap();
                let back: SliTimeline = serde_json::from_str(&json).unwrap();
                assert_eq!(back, t);
                assert!(!json.contains("running"), "{json}");
                for len in [5 * MIN, 60 * MIN, 4 * 60 * MIN] {
                    assert_eq!(back.sum(newest - len, newest), t.sum(newest - len, newest));
                }
            }
        }
    }

    #[test]
    fn timeline_sums_ranges_and_forgets_beyond_span() {
        let mut t = SliTimeline::new(5 * MIN, 60 * MIN);
        for i in 0..120 {
            // one event per minute for two hours; minute 100..110 all bad
            t.add(i * MIN, !(100..110).contains(&i));
        }
        assert_eq!(
            t.sum(110 * MIN, 120 * MIN),
            Counts {
                good: 10,
                total: 10,
                sessions: 10
            }
        );
        assert_eq!(
            t.sum(100 * MIN, 110 * MIN),
            Counts {
                good: 0,
                total: 10,
                sessions: 10
            }
        );
        // The first hour is gone (span 60 min + one bucket).
        assert_eq!(t.sum(0, 50 * MIN).total, 0);
        assert_eq!(t.newest_end(), Some(120 * MIN));
    }

    #[test]
    fn sre_workbook_fast_tier_fires_on_both_windows_only() {
        let target = 0.99;
        let mut t = SliTimeline::new(5 * MIN, 72 * 60 * MIN);
        // 1000 events over the last hour, 20% bad in the last 5 minutes only: short burns,
        // long does not reach 14.4x.
        for i in 0..1000 {
            let at = i * 60 * MIN / 1000;
            t.add(at, !(at >= 55 * MIN && i % 5 == 0));
        }
        let tiers = BurnRateTier::sre_workbook();
        let out = evaluate_tiers(&t, &tiers, target, 60 * MIN, 30);
        assert!(out[0].short_rate.unwrap() >= 14.4);
        assert!(!out[0].fires);
        // Now make the whole hour 20% bad: burn = 0.2 / 0.01 = 20 ≥ 14.4 on both windows.
        let mut t2 = SliTimeline::new(5 * MIN, 72 * 60 * MIN);
        for i in 0..1000 {
            t2.add(i * 60 * MIN / 1000, i % 5 != 0);
        }
        let out2 = evaluate_tiers(&t2, &tiers, target, 60 * MIN, 30);
        assert!(out2[0].fires, "{out2:?}");
        assert!((out2[0].long_rate.unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(worst_firing(&out2).unwrap().tier.name, "fast");
    }

    #[test]
    fn one_bad_session_of_one_cannot_page_but_forty_of_forty_do() {
        let tiers = BurnRateTier::sre_workbook();
        let mut one = SliTimeline::new(5 * MIN, 72 * 60 * MIN);
        one.add(0, false);
        // Judged at every bucket boundary and in between, once the history covers the short
        // windows: the bad session is always inside the long windows (the bug this pins passed
        // only because `now` fell between buckets).
        for now in (5 * MIN..=60 * MIN).step_by(MIN as usize) {
            let out = evaluate_tiers(&one, &tiers, 0.99, now, 30);
            assert_eq!(out[0].long.total, 1, "{out:?}");
            assert!(out.iter().all(|o| !o.fires), "at {now}: {out:?}");
        }
        let mut forty = SliTimeline::new(5 * MIN, 60 * MIN);
        for i in 0..40 {
            forty.add(i * MIN / 4, false);
        }
        let out = evaluate_tiers(&forty, &tiers, 0.95, 11 * MIN, 30);
        assert!(out[0].fires, "{out:?}");
    }

    #[test]
    fn one_good_and_one_bad_session_do_not_page_through_the_medium_tier() {
        // Issue 10, item 2: at 99% the Wilson bound of 1 bad in 2 is 12.1× (above the medium
        // tier's 6×); `minSessions` (30) in the long window is what keeps this from paging.
        let tiers = BurnRateTier::sre_workbook();
        let mut t = SliTimeline::new(5 * MIN, 72 * 60 * MIN);
        t.add(0, true);
        t.add(MIN, false);
        let out = evaluate_tiers(&t, &tiers, 0.99, 30 * MIN, 30);
        assert_eq!(out[1].tier.name, "medium");
        assert!(out[1].long_rate_lower.unwrap() > 6.0, "{out:?}");
        assert!(out.iter().all(|o| !o.fires), "{out:?}");
        // The same burn over 30 sessions pages.
        for i in 0..28 {
            t.add(i * MIN, i % 2 == 0);
        }
        let out = evaluate_tiers(&t, &tiers, 0.99, 30 * MIN, 30);
        assert!(out[1].fires, "{out:?}");
    }

    #[test]
    fn min_sessions_counts_traffic_not_only_eligible_events() {
        // A fallback-style SLI: 40 failed sessions among 400, none handed over. 40 eligible
        // events are below `minSessions: 100`, but 400 sessions of traffic are not.
        let tiers = BurnRateTier::sre_workbook();
        let mut t = SliTimeline::new(5 * MIN, 72 * 60 * MIN);
        for i in 0..400 {
            let at = i * 60 * MIN / 400;
            if i % 10 == 0 {
                t.add(at, false);
            } else {
                t.add_ineligible(at);
            }
        }
        let out = evaluate_tiers(&t, &tiers, 0.95, 60 * MIN, 100);
        assert_eq!((out[0].long.total, out[0].long.sessions), (40, 400));
        assert!(out[0].fires, "{out:?}");
    }

    #[test]
    fn an_event_too_old_to_keep_does_not_extend_the_history() {
        // Issue 10, item 8: `first_seen` was set before the event was dropped.
        let mut t = SliTimeline::new(5 * MIN, 60 * MIN);
        t.add(600 * MIN, false);
        t.add(0, false);
        assert_eq!(t.sum(0, 700 * MIN).total, 1);
        assert_eq!(t.first_seen(), Some(600 * MIN));
    }

    #[test]
    fn buckets_divide_a_twelve_minute_step() {
        // Issue 10, item 3: every burn window ending at a window end (a multiple of the step)
        // must sum exactly the events inside it, counted here directly.
        let tiers = BurnRateTier::sre_workbook();
        let step = 12 * MIN;
        let bucket = timeline_bucket_ms(step, &tiers);
        assert_eq!(step % bucket, 0, "bucket {bucket} does not divide the step");
        let mut t = SliTimeline::new(bucket, 72 * 60 * MIN);
        let events: Vec<(i64, bool)> = (0..600).map(|i| (i * MIN / 2, i % 7 != 0)).collect();
        for &(at, good) in &events {
            t.add(at, good);
        }
        for end in (1..25).map(|k| k * step) {
            for tier in &tiers {
                for len in [tier.short_ms, tier.long_ms] {
                    let inside = events
                        .iter()
                        .filter(|(at, _)| (end - len..end).contains(at));
                    let total = inside.clone().count() as u64;
                    let want = Counts {
                        good: inside.filter(|(_, g)| *g).count() as u64,
                        total,
                        sessions: total,
                    };
                    assert_eq!(
                        t.sum(end - len, end),
                        want,
                        "window [{}, {end}) min",
                        end - len
                    );
                }
            }
        }
    }

    #[test]
    fn wilson_lower_bound_equals_statsmodels() {
        // Generated by scripts/wilson_reference.py (statsmodels' Wilson interval).
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/wilson_reference.json")).unwrap();
        for case in reference["cases"].as_array().unwrap() {
            let (k, n) = (case["k"].as_u64().unwrap(), case["n"].as_u64().unwrap());
            let want = case["lower"].as_f64().unwrap();
            let got = wilson_lower(k, n);
            assert!(
                (got - want).abs() <= 1e-12 + 1e-9 * want.abs(),
                "wilson_lower({k}, {n}) = {got}, statsmodels {want}"
            );
        }
    }

    #[test]
    fn budget_math() {
        let c = Counts {
            good: 990,
            total: 1000,
            sessions: 1000,
        };
        assert!((budget_consumed(c, 0.99).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(
            time_to_exhaustion_ms(28 * 86_400_000, 0.5, 14.4),
            Some((0.5 * 28.0 * 86_400_000.0 / 14.4) as i64)
        );
    }
}
