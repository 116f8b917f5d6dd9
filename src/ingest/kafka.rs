//! Kafka through rdkafka: the consumer-group source, and producers for dead letters and
//! findings. The only module that imports rdkafka.
//!
//! Configuration comes from `slawatch.yaml` (`kafka:`), environment and flags; any
//! librdkafka property (SSL, SASL, timeouts) passes through `kafka.properties` unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::finding::Finding;
use crate::ingest::decode::RejectReason;
use crate::ingest::{Position, RawRecord};

/// `kafka:` of `slawatch.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topics of session records.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Consumer group id.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where rejected records go (original bytes, reason in headers); none = not published.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Where findings are published (JSON, keyed by spec/objective/key); none = not published.
    #[serde(default)]
    pub findings_topic: Option<String>,
    /// A partition with no record for this long stops holding the watermark back.
    #[serde(
        default = "default_idle",
        with = "duration_str",
        rename = "idleTimeout"
    )]
    pub idle_timeout_ms: i64,
    /// Checkpoint (state + offsets, durable in sled) at least this often…
    #[serde(
        default = "default_checkpoint_interval",
        with = "duration_str",
        rename = "checkpointInterval"
    )]
    pub checkpoint_interval_ms: i64,
    /// …and after this many records.
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_records: u64,
    /// librdkafka properties passed through as they are (security, SASL, timeouts…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_topics() -> Vec<String> {
    vec!["agent-sessions".into()]
}
fn default_group() -> String {
    "slawatch".into()
}
fn default_idle() -> i64 {
    30_000
}
// A checkpoint snapshots the whole state (tens of MB at high rates), so it is taken every few
// seconds, not every few thousand records; a crash replays at most that much.
fn default_checkpoint_interval() -> i64 {
    10_000
}
fn default_checkpoint_records() -> u64 {
    1_000_000
}

mod duration_str {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse_duration_ms(&s).map_err(serde::de::Error::custom)
    }
}

impl KafkaConfig {
    /// A configuration with defaults for everything but the brokers.
    pub fn new(brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_owned(),
            topics: default_topics(),
            group_id: default_group(),
            dead_letter_topic: None,
            findings_topic: None,
            idle_timeout_ms: default_idle(),
            checkpoint_interval_ms: default_checkpoint_interval(),
            checkpoint_records: default_checkpoint_records(),
            properties: BTreeMap::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// The consumer: offsets are committed by slawatch only after its checkpoint is durable.
    pub fn consumer(
        &self,
        context: SourceContext,
    ) -> Result<BaseConsumer<SourceContext>, KafkaError> {
        let mut c = self.client();
        c.set("group.id", &self.group_id)
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
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }

    /// A producer for dead letters and findings; delivery failures are counted so a checkpoint
    /// never commits offsets past a record whose dead letter or finding was lost.
    pub fn producer(&self) -> Result<Sink, KafkaError> {
        let mut c = self.client();
        c.set("enable.idempotence", "true").set("linger.ms", "20");
        // Dead letters include records over slawatch's own size limit (1 MiB by default).
        if !self.properties.contains_key("message.max.bytes") {
            c.set("message.max.bytes", "16777216");
        }
        let failures = Arc::new(AtomicU64::new(0));
        let producer = c.create_with_context(DeliveryCounter {
            failures: failures.clone(),
        })?;
        Ok(Sink {
            producer,
            failures,
            dead_letter_topic: self.dead_letter_topic.clone(),
            findings_topic: self.findings_topic.clone(),
        })
    }
}

/// Rebalance events, recorded for the service loop to act on (it owns the state).
#[derive(Default)]
pub struct SourceContext {
    pub events: std::sync::Mutex<Vec<RebalanceEvent>>,
    /// Called during a revoke, before it completes: persist what the revoked partitions
    /// changed and commit their offsets.
    #[allow(clippy::type_complexity)]
    pub on_revoke:
        Option<Box<dyn Fn(&BaseConsumer<SourceContext>, &[(String, i32)]) + Send + Sync>>,
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

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            if let Some(f) = &self.on_revoke {
                f(consumer, &revoked);
            }
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RebalanceEvent::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RebalanceEvent::Assigned(partitions(tpl)));
        }
    }
}

/// A message as a raw record.
pub fn raw_record(m: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        bytes: m.payload().unwrap_or_default().to_vec(),
        position: Position::Kafka {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
        },
    }
}

/// Commits `offset + 1` of every partition (the next record to read).
pub fn commit(
    consumer: &BaseConsumer<SourceContext>,
    applied: &BTreeMap<(String, i32), i64>,
) -> Result<(), KafkaError> {
    if applied.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in applied {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
    }
    consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
}

/// Counts failed deliveries.
pub struct DeliveryCounter {
    failures: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, _)) = result {
            tracing::error!(error = %e, "a dead letter or finding could not be delivered");
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces dead letters and findings.
pub struct Sink {
    producer: ThreadedProducer<DeliveryCounter>,
    failures: Arc<AtomicU64>,
    dead_letter_topic: Option<String>,
    findings_topic: Option<String>,
}

/// Errors of the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("producing to {topic}: {source}")]
    Produce { topic: String, source: KafkaError },
    #[error("flushing the producer: {0}")]
    Flush(KafkaError),
    #[error("{0} dead letter(s) or finding(s) could not be delivered; offsets are not committed")]
    Lost(u64),
}

impl Sink {
    /// Publishes a rejected record with its original bytes and key; headers say why and where
    /// it came from.
    pub fn dead_letter(
        &self,
        record: &RawRecord,
        key: Option<&[u8]>,
        reason: &RejectReason,
    ) -> Result<(), SinkError> {
        let Some(topic) = &self.dead_letter_topic else {
            return Ok(());
        };
        let detail = reason.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "slawatch.reason",
                value: Some(reason.code()),
            })
            .insert(Header {
                key: "slawatch.detail",
                value: Some(detail.as_str()),
            });
        if let Position::Kafka {
            topic: src,
            partition,
            offset,
        } = &record.position
        {
            let (p, o) = (partition.to_string(), offset.to_string());
            headers = headers
                .insert(Header {
                    key: "slawatch.source.topic",
                    value: Some(src.as_str()),
                })
                .insert(Header {
                    key: "slawatch.source.partition",
                    value: Some(p.as_str()),
                })
                .insert(Header {
                    key: "slawatch.source.offset",
                    value: Some(o.as_str()),
                });
        }
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .payload(record.bytes.as_slice())
            .headers(headers);
        if let Some(k) = key {
            r = r.key(k);
        }
        self.send(topic, r)
    }

    /// Publishes a finding as JSON, keyed by spec/objective/key so one incident stays ordered.
    pub fn finding(&self, f: &Finding) -> Result<(), SinkError> {
        let Some(topic) = &self.findings_topic else {
            return Ok(());
        };
        let key = format!("{}/{}/{}", f.spec, f.objective, f.key_label());
        let payload = serde_json::to_vec(f).expect("findings serialize");
        let headers = OwnedHeaders::new().insert(Header {
            key: "slawatch.finding.id",
            value: Some(f.id.as_str()),
        });
        let r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_slice())
            .headers(headers);
        self.send(topic, r)
    }

    fn send(&self, topic: &str, mut r: BaseRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
        // A full local queue is backpressure: wait for deliveries, then retry.
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(SinkError::Produce {
                        topic: topic.to_owned(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Waits until everything sent is delivered; fails if anything was lost.
    pub fn flush(&self) -> Result<(), SinkError> {
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(SinkError::Flush)?;
        match self.failures.swap(0, Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(SinkError::Lost(n)),
        }
    }
}

/// Publishes JSON Lines records to a topic, each keyed by its `session_id` (lines without one
/// are sent without a key), optionally at most `rate_limit` records per second. Returns how many
/// were sent once all are delivered.
pub fn publish_lines(
    brokers: &str,
    topic: &str,
    lines: impl Iterator<Item = Vec<u8>>,
    rate_limit: Option<f64>,
) -> Result<u64, SinkError> {
    let mut cfg = KafkaConfig::new(brokers);
    cfg.dead_letter_topic = Some(topic.to_owned());
    let sink = cfg.producer().map_err(SinkError::Flush)?;
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    for line in lines {
        if let Some(rate) = rate_limit.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let key = session_id_of(&line);
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(line.as_slice());
        if let Some(k) = key {
            r = r.key(k);
        }
        sink.send(topic, r)?;
        sent += 1;
    }
    sink.flush()?;
    Ok(sent)
}

/// The bytes of `"session_id":"…"` in a JSON line, without parsing it (dirty lines included).
pub fn session_id_of(line: &[u8]) -> Option<&[u8]> {
    let needle = b"\"session_id\":\"";
    let start = line.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
    Some(&line[start..start + len])
}

/// The header value of a consumed message, as text.
pub fn header<'a>(m: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}
