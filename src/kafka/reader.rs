//! Reading partitions outside any consumer group: end offsets, messages at given offsets,
//! and every partition of some topics from given offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{KafkaConfig, log_client_error};

/// The context of a [`Reader`]: no group, errors logged like the service consumers'.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

impl ConsumerContext for ReaderContext {}

/// Reads partitions outside any group (`assign` only, nothing committed): end offsets and
/// messages at given offsets.
pub struct Reader {
    consumer: BaseConsumer<ReaderContext>,
}

/// A message read by [`Reader::read_range`]: its text headers and payload.
pub struct ReadMessage {
    pub offset: i64,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Reader {
    pub fn new(cfg: &KafkaConfig) -> Result<Reader, KafkaError> {
        let mut c = cfg.client();
        c.set("group.id", format!("{}.reader", cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            // Answers at the end of a partition at once instead of after the usual long poll.
            .set("fetch.wait.max.ms", "10");
        Ok(Reader {
            consumer: c.create_with_context(ReaderContext)?,
        })
    }

    /// The broker's high watermark of a partition (one round trip; see [`Reader::end_offset`]
    /// for why it may fall short of the end on tansu).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> anyhow::Result<i64> {
        Ok(self
            .consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(5))?
            .1)
    }

    /// The offset after the last message of a partition.
    ///
    /// Read rather than trusted from the broker's high watermark: tansu reports the base offset
    /// of the newest record batch plus one, which misses the rest of that batch.
    pub fn end_offset(&self, topic: &str, partition: i32) -> anyhow::Result<i64> {
        Ok(self.tail(topic, partition)?.0)
    }

    /// The end offset of a partition and its last message, if it has one.
    pub fn tail(&self, topic: &str, partition: i32) -> anyhow::Result<(i64, Option<ReadMessage>)> {
        let (low, high) =
            self.consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high <= low {
            return Ok((high, None));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
        self.consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut last: Option<ReadMessage> = None;
        loop {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "timed out reading the end of {topic}/{partition}"
            );
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m))
                    if m.topic() == topic
                        && m.partition() == partition
                        && m.offset() >= high - 1
                        && last.as_ref().is_none_or(|l| m.offset() > l.offset) =>
                {
                    last = Some(read_message(&m));
                }
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition && last.is_some() => {
                    let end = last.as_ref().map_or(high, |l| l.offset + 1).max(high);
                    return Ok((end, last));
                }
                Some(Err(KafkaError::PartitionEOF(_))) | Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// `count` messages of a partition from `offset` on, in order.
    pub fn read_range(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        count: usize,
    ) -> anyhow::Result<Vec<ReadMessage>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "timed out reading {topic}/{partition} at offset {offset}"
            );
            let m = match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => m,
                Some(Err(KafkaError::PartitionEOF(_))) | None => continue,
                Some(Err(e)) => return Err(e.into()),
            };
            // Only the expected offsets, in order (a fetch of the previous assignment may
            // still be delivered).
            if m.topic() != topic
                || m.partition() != partition
                || m.offset() != offset + out.len() as i64
            {
                continue;
            }
            out.push(read_message(&m));
        }
        Ok(out)
    }
}

fn read_message(m: &BorrowedMessage<'_>) -> ReadMessage {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .filter_map(|h| {
                    Some((
                        h.key.to_owned(),
                        std::str::from_utf8(h.value?).ok()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ReadMessage {
        offset: m.offset(),
        headers,
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

/// A message read by a [`Tailer`], copied out of librdkafka's buffer.
pub struct TailMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

/// Reads every partition of some topics from given offsets, without a consumer group: what
/// each instance uses to materialise a table that every instance must hold whole (the Kafka
/// Streams global-table pattern). Never commits.
pub struct Tailer {
    consumer: BaseConsumer<ReaderContext>,
}

impl Tailer {
    /// Assigns every partition of `topics`, each from the offset after the one in `resume`
    /// (or from the beginning).
    pub fn new(
        cfg: &KafkaConfig,
        topics: &[String],
        resume: &BTreeMap<(String, i32), i64>,
    ) -> anyhow::Result<Tailer> {
        let mut c = cfg.client();
        c.set("group.id", format!("{}.tables", cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<ReaderContext> = c.create_with_context(ReaderContext)?;
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let n = loop {
                match cfg.partition_count(topic)? {
                    Some(n) => break n,
                    None if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    None => anyhow::bail!("topic `{topic}` does not exist"),
                }
            };
            for p in 0..n {
                let offset = match resume.get(&(topic.clone(), p)) {
                    Some(o) => Offset::Offset(o + 1),
                    None => Offset::Beginning,
                };
                tpl.add_partition_offset(topic, p, offset)?;
            }
        }
        consumer.assign(&tpl)?;
        Ok(Tailer { consumer })
    }

    /// The next message, if one arrives within `timeout`.
    pub fn poll(&self, timeout: Duration) -> anyhow::Result<Option<TailMessage>> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(TailMessage {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            })),
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(None),
            Some(Err(e)) => Err(e.into()),
        }
    }
}
