//! The group consumers of the service loops, and what they hand the loops instead of rdkafka's
//! types: [`Record`]s, [`RebalanceEvent`]s, positions, committed offsets, commits through a
//! [`Committer`], and a close within a bound.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Error, KafkaConfig, log_client_error};
use crate::ingest::{Position, RawRecord};

impl KafkaConfig {
    /// The consumer: offsets are committed by slawatch only after its checkpoint is durable.
    pub fn consumer(&self, context: SourceContext) -> Result<Consumer, Error> {
        self.consumer_of(&self.group_id, &self.input_topics(), context)
    }

    /// A consumer of `topics` in group `group`, configured like [`KafkaConfig::consumer`].
    pub fn consumer_of(
        &self,
        group: &str,
        topics: &[String],
        context: SourceContext,
    ) -> Result<Consumer, Error> {
        let mut c = self.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        // Faster group joins than librdkafka's defaults (first assignment ~3 s instead of ~23 s
        // with tansu); still overridable through `properties`.
        for (k, v) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("max.poll.interval.ms", "300000"),
        ] {
            if !self.properties.contains_key(k) {
                c.set(k, v);
            }
        }
        let consumer: BaseConsumer<SourceContext> = c.create_with_context(context)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Consumer { inner: consumer })
    }
}

/// Called during a revoke, before it completes, with the partitions revoked: persist what they
/// changed and commit their offsets.
pub type OnRevoke = Box<dyn Fn(&Committer<'_>, &[(String, i32)]) + Send + Sync>;
/// Called when partitions are assigned, before any of their records is delivered.
pub type OnAssign = Box<dyn Fn(&[(String, i32)]) + Send + Sync>;

/// Rebalance events, recorded for the service loop to act on (it owns the state), and the
/// loop's hooks that must run inside the rebalance.
pub struct SourceContext {
    events: Mutex<Vec<RebalanceEvent>>,
    on_revoke: Option<OnRevoke>,
    on_assign: Option<OnAssign>,
}

impl SourceContext {
    pub fn new(on_revoke: Option<OnRevoke>, on_assign: Option<OnAssign>) -> SourceContext {
        SourceContext {
            events: Mutex::default(),
            on_revoke,
            on_assign,
        }
    }

    fn push(&self, event: RebalanceEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }
}

/// A partition assignment change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(error = %e, "rebalance error");
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            tracing::debug!(partitions = ?revoked, "partitions revoked");
            if let Some(f) = &self.on_revoke {
                f(&Committer(consumer), &revoked);
            }
            self.push(RebalanceEvent::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions(tpl);
            tracing::debug!(partitions = ?assigned, "partitions assigned");
            if let Some(f) = &self.on_assign {
                f(&assigned);
            }
            self.push(RebalanceEvent::Assigned(assigned));
        }
    }
}

/// A group consumer of the service loops.
pub struct Consumer {
    inner: BaseConsumer<SourceContext>,
}

/// What one poll of a [`Consumer`] brought.
pub enum Polled<'a> {
    Record(Record<'a>),
    /// A partition of this number reached its end. librdkafka names only the partition: with
    /// several topics, every assigned partition of that number has reached its end or will
    /// say so again.
    End(i32),
    Failed(Error),
}

impl Consumer {
    /// The next record or event, if one arrives within `timeout`.
    pub fn poll(&self, timeout: Duration) -> Option<Polled<'_>> {
        Some(match self.inner.poll(timeout)? {
            Ok(m) => Polled::Record(Record(m)),
            Err(KafkaError::PartitionEOF(p)) => Polled::End(p),
            Err(e) => Polled::Failed(e.into()),
        })
    }

    /// The rebalance events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(
            &mut *(self.inner.context().events.lock()).unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Commits through this consumer.
    pub fn committer(&self) -> Committer<'_> {
        Committer(&self.inner)
    }

    /// The position (the offset of the next record to read) of every assigned partition read
    /// from; a local call. A partition not read from yet has none.
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        let Ok(list) = self.inner.position() else {
            return BTreeMap::new();
        };
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    /// The partitions of `topic` in the broker's metadata (none when it does not know it).
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, Error> {
        let meta = self.inner.fetch_metadata(Some(topic), timeout)?;
        Ok(meta
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// The offset the group has committed for a partition, if it has one (and the broker
    /// answers within `timeout`).
    pub fn committed(&self, topic: &str, partition: i32, timeout: Duration) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = self.inner.committed_offsets(tpl, timeout).ok()?;
        match committed.find_partition(topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Leaves the group and closes the consumer, serving its last rebalance callbacks, but
    /// never past `deadline`.
    ///
    /// Dropping a group consumer closes it too, but waits for the close without a bound: when
    /// the coordinator holds the group in a rebalance (a member joined or left as this one
    /// stops) the leave can wait for that rebalance, up to the rebalance timeout
    /// (`max.poll.interval.ms`, 5 min), and a run that has finished would hang. Everything is
    /// checkpointed and committed before this is called, so a consumer that is not closed by
    /// the deadline is abandoned instead: the coordinator drops the member when its session
    /// times out.
    pub fn close(self, deadline: Instant) {
        let consumer = self.inner;
        if let Err(e) = consumer.close_queue() {
            tracing::warn!(error = %e, "closing the consumer");
            std::mem::forget(consumer);
            return;
        }
        while !consumer.closed() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "the consumer did not leave its group in time; the coordinator will drop it \
                     when its session times out"
                );
                // Its Drop would wait for the close without a bound.
                std::mem::forget(consumer);
                return;
            }
            consumer.poll(Duration::from_millis(50));
        }
    }
}

/// Commits offsets of a [`Consumer`]: what the loop holds, and what a revoke hook is given
/// (the consumer is inside its rebalance then).
pub struct Committer<'a>(&'a BaseConsumer<SourceContext>);

impl Committer<'_> {
    /// Commits `offset + 1` of every partition (the next record to read).
    pub fn commit(&self, applied: &BTreeMap<(String, i32), i64>) -> Result<(), Error> {
        if applied.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in applied {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
        }
        Ok(self.0.commit(&tpl, CommitMode::Sync)?)
    }
}

/// A consumed message, borrowed from librdkafka's buffer until it is dropped.
pub struct Record<'a>(BorrowedMessage<'a>);

impl Record<'_> {
    pub fn topic(&self) -> &str {
        self.0.topic()
    }

    pub fn partition(&self) -> i32 {
        self.0.partition()
    }

    pub fn offset(&self) -> i64 {
        self.0.offset()
    }

    /// The payload; empty for a message without one.
    pub fn payload(&self) -> &[u8] {
        self.0.payload().unwrap_or_default()
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }

    /// A header's value, as text.
    pub fn header(&self, key: &str) -> Option<&str> {
        let headers = self.0.headers()?;
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| std::str::from_utf8(h.value?).ok())
    }

    /// The message as a raw record (a copy of its payload).
    pub fn raw(&self) -> RawRecord {
        RawRecord {
            bytes: self.payload().to_vec(),
            position: Position::Kafka {
                topic: self.topic().to_owned(),
                partition: self.partition(),
                offset: self.offset(),
            },
        }
    }
}
