//! The decisions of the Kafka loops that depend on wall-clock time, as pure types shared by
//! the `single` and `partitioned` loops: which partitions are idle ([`Liveness`]), when to
//! checkpoint ([`CheckpointSchedule`]), when to ask the broker whether the input has ended
//! ([`EndOfInput`]). None of them reads the clock or does I/O: every method that needs the
//! time takes `now`, so the tests below drive them through any sequence of events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A (topic, partition) of a consumer.
pub type TopicPartition = (String, i32);

/// Which partitions hold the watermark back.
///
/// A partition is **idle** — stops holding the watermark back — once it has delivered no
/// record for `idle_after` (as Flink's `withIdleness`): assigned and quiet since its last
/// record or its assignment, or unassigned for that long (its records come back with a later
/// assignment, after a crashed member's session expires). Reaching its end does not make a
/// partition idle by itself: the broker may release a burst on another partition while this
/// one's next records are still in flight, and the watermark must not pass them. Only with
/// `exit_at_eof` (a finite input: nothing more will come) is a partition at its end idle at
/// once.
#[derive(Debug, Clone)]
pub struct Liveness {
    idle_after: Duration,
    exit_at_eof: bool,
    parts: BTreeMap<TopicPartition, Part>,
}

#[derive(Debug, Clone)]
struct Part {
    assigned: bool,
    /// The last record, or the last assignment change.
    since: Instant,
    at_end: bool,
}

impl Liveness {
    pub fn new(idle_after: Duration, exit_at_eof: bool) -> Liveness {
        Liveness {
            idle_after,
            exit_at_eof,
            parts: BTreeMap::new(),
        }
    }

    /// A partition this loop must hear from before it can be idle, unassigned since `now`.
    pub fn expect(&mut self, p: TopicPartition, now: Instant) {
        self.parts.entry(p).or_insert(Part {
            assigned: false,
            since: now,
            at_end: false,
        });
    }

    pub fn assigned(&mut self, p: TopicPartition, now: Instant) {
        self.parts.insert(
            p,
            Part {
                assigned: true,
                since: now,
                at_end: false,
            },
        );
    }

    pub fn revoked(&mut self, p: TopicPartition, now: Instant) {
        self.parts.insert(
            p,
            Part {
                assigned: false,
                since: now,
                at_end: false,
            },
        );
    }

    /// A record of (`topic`, `partition`) arrived. Called per record: it finds the partition
    /// without building an owned key.
    pub fn record(&mut self, topic: &str, partition: i32, now: Instant) {
        let found = self
            .parts
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic);
        if let Some((_, part)) = found {
            part.since = now;
            part.at_end = false;
        }
    }

    /// `p` reached its end (the consumer's end-of-partition event).
    pub fn at_end(&mut self, p: &TopicPartition) {
        if let Some(part) = self.parts.get_mut(p).filter(|part| part.assigned) {
            part.at_end = true;
        }
    }

    pub fn is_assigned(&self, p: &TopicPartition) -> bool {
        self.parts.get(p).is_some_and(|part| part.assigned)
    }

    /// Whether `p` stops holding the watermark back at `now`.
    pub fn is_idle(&self, p: &TopicPartition, now: Instant) -> bool {
        self.parts.get(p).is_some_and(|part| {
            (part.assigned && part.at_end && self.exit_at_eof)
                || now.saturating_duration_since(part.since) >= self.idle_after
        })
    }

    /// The assigned partitions, in order.
    pub fn assigned_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.parts
            .iter()
            .filter(|(_, part)| part.assigned)
            .map(|(p, _)| p)
    }

    pub fn any_assigned(&self) -> bool {
        self.assigned_partitions().next().is_some()
    }

    /// Every assigned partition has reached its end (true when none is assigned).
    pub fn all_assigned_at_end(&self) -> bool {
        self.parts
            .values()
            .filter(|part| part.assigned)
            .all(|part| part.at_end)
    }
}

/// When a checkpoint is due: after `records` changes, or `interval` after the last checkpoint
/// once anything changed — at once when the loop is draining a finite input.
#[derive(Debug, Clone)]
pub struct CheckpointSchedule {
    interval: Duration,
    records: u64,
    changes: u64,
    last: Instant,
}

impl CheckpointSchedule {
    pub fn new(interval: Duration, records: u64, now: Instant) -> CheckpointSchedule {
        CheckpointSchedule {
            interval,
            records,
            changes: 0,
            last: now,
        }
    }

    /// Something the next checkpoint must carry (a record, a mark, a reload) happened.
    pub fn changed(&mut self) {
        self.changes += 1;
    }

    /// Whether anything happened since the last checkpoint.
    pub fn pending(&self) -> bool {
        self.changes > 0
    }

    pub fn due(&self, now: Instant, draining: bool) -> bool {
        self.changes >= self.records
            || (self.changes > 0
                && (draining || now.saturating_duration_since(self.last) >= self.interval))
    }

    /// A checkpoint was taken at `now`.
    pub fn done(&mut self, now: Instant) {
        self.changes = 0;
        self.last = now;
    }
}

/// When to ask the broker whether a finite input (`--exit-at-eof`) has ended everywhere — its
/// questions take round trips, so only once every assigned partition is at its end, nothing
/// waits for a checkpoint, and at most every `every`.
#[derive(Debug, Clone)]
pub struct EndOfInput {
    every: Duration,
    last: Option<Instant>,
}

impl EndOfInput {
    pub fn new(every: Duration) -> EndOfInput {
        EndOfInput { every, last: None }
    }

    /// Whether to ask now; `locally_done` says this member has nothing left of its own.
    pub fn ask(&mut self, now: Instant, locally_done: bool) -> bool {
        if !locally_done
            || self
                .last
                .is_some_and(|l| now.saturating_duration_since(l) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    fn tp(p: i32) -> TopicPartition {
        ("sessions".to_owned(), p)
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    /// Issue 13 item 1 (the soak's late rejects): a partition at its end stays active until it
    /// has been quiet for the idle timeout, so a burst elsewhere cannot pass its next records.
    #[test]
    fn a_partition_at_its_end_is_idle_only_after_the_idle_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(IDLE, false);
        l.assigned(tp(0), t0);
        l.record("sessions", 0, secs(t0, 10));
        l.at_end(&tp(0));
        assert!(!l.is_idle(&tp(0), secs(t0, 10)));
        assert!(!l.is_idle(&tp(0), secs(t0, 39)));
        assert!(l.is_idle(&tp(0), secs(t0, 40)));
        // A record makes it active again, and at its end it waits again.
        l.record("sessions", 0, secs(t0, 41));
        l.at_end(&tp(0));
        assert!(!l.is_idle(&tp(0), secs(t0, 70)));
        assert!(l.is_idle(&tp(0), secs(t0, 71)));
    }

    #[test]
    fn with_exit_at_eof_a_partition_at_its_end_is_idle_at_once() {
        let t0 = Instant::now();
        let mut l = Liveness::new(IDLE, true);
        l.assigned(tp(0), t0);
        l.record("sessions", 0, secs(t0, 1));
        assert!(!l.is_idle(&tp(0), secs(t0, 1)));
        l.at_end(&tp(0));
        assert!(l.is_idle(&tp(0), secs(t0, 1)));
        assert!(l.all_assigned_at_end());
        l.record("sessions", 0, secs(t0, 2));
        assert!(!l.is_idle(&tp(0), secs(t0, 2)));
        assert!(!l.all_assigned_at_end());
    }

    #[test]
    fn a_quiet_partition_is_idle_after_the_timeout_counted_from_its_assignment() {
        let t0 = Instant::now();
        let mut l = Liveness::new(IDLE, false);
        l.assigned(tp(1), secs(t0, 5));
        assert!(!l.is_idle(&tp(1), secs(t0, 34)));
        assert!(l.is_idle(&tp(1), secs(t0, 35)));
    }

    #[test]
    fn an_unassigned_partition_holds_the_watermark_for_the_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(IDLE, true);
        l.expect(tp(2), t0);
        assert!(!l.is_assigned(&tp(2)));
        assert!(!l.is_idle(&tp(2), secs(t0, 29)));
        assert!(l.is_idle(&tp(2), secs(t0, 30)));
        // Assigned, at its end, then revoked: the end is forgotten (another member reads on),
        // and the timeout starts again from the revoke.
        l.assigned(tp(2), secs(t0, 31));
        l.at_end(&tp(2));
        assert!(l.is_idle(&tp(2), secs(t0, 31)));
        l.revoked(tp(2), secs(t0, 32));
        assert!(!l.is_idle(&tp(2), secs(t0, 32)));
        assert!(l.is_idle(&tp(2), secs(t0, 62)));
        // The end of a partition not assigned here says nothing.
        l.at_end(&tp(2));
        assert!(!l.all_assigned_at_end() || !l.any_assigned());
        assert!(!l.any_assigned());
    }

    #[test]
    fn partitions_of_different_topics_are_apart() {
        let t0 = Instant::now();
        let mut l = Liveness::new(IDLE, true);
        let spans = ("spans".to_owned(), 0);
        l.assigned(tp(0), t0);
        l.assigned(spans.clone(), t0);
        l.at_end(&spans);
        assert!(l.is_idle(&spans, t0));
        assert!(!l.is_idle(&tp(0), t0));
        assert!(!l.all_assigned_at_end());
        assert_eq!(
            l.assigned_partitions().cloned().collect::<Vec<_>>(),
            vec![tp(0), spans]
        );
    }

    #[test]
    fn a_checkpoint_is_due_by_records_by_interval_or_when_draining() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(Duration::from_secs(10), 3, t0);
        assert!(
            !s.due(secs(t0, 60), true),
            "nothing changed: nothing to write"
        );
        s.changed();
        assert!(s.pending());
        assert!(!s.due(secs(t0, 9), false));
        assert!(s.due(secs(t0, 9), true));
        assert!(s.due(secs(t0, 10), false));
        s.changed();
        s.changed();
        assert!(s.due(secs(t0, 1), false), "three changes");
        s.done(secs(t0, 12));
        assert!(!s.pending());
        s.changed();
        assert!(!s.due(secs(t0, 21), false));
        assert!(s.due(secs(t0, 22), false));
    }

    #[test]
    fn the_end_of_input_is_asked_only_when_locally_done_and_at_most_every_period() {
        let t0 = Instant::now();
        let mut e = EndOfInput::new(Duration::from_millis(500));
        assert!(!e.ask(t0, false));
        assert!(e.ask(t0, true));
        assert!(!e.ask(t0 + Duration::from_millis(499), true));
        assert!(!e.ask(t0 + Duration::from_millis(600), false));
        assert!(e.ask(t0 + Duration::from_millis(600), true));
    }
}
