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
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
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
        with = "crate::duration::serde_ms",
        rename = "idleTimeout"
    )]
    pub idle_timeout_ms: i64,
    /// Checkpoint (state + offsets, durable in sled) at least this often…
    #[serde(
        default = "default_checkpoint_interval",
        with = "crate::duration::serde_ms",
        rename = "checkpointInterval"
    )]
    pub checkpoint_interval_ms: i64,
    /// …and after this many records.
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_records: u64,
    /// How instances share the work: `partitioned` (default) repartitions records by agent so
    /// any number of instances in the group produce the findings of one; `single` evaluates
    /// in the consuming instance (one instance only: fastest, no internal topics).
    #[serde(default)]
    pub topology: Topology,
    /// `partitioned`: the internal topic records are re-keyed to (default `<groupId>.repartition`).
    #[serde(default)]
    pub repartition_topic: Option<String>,
    /// `partitioned`: the internal topic of evaluation-state snapshots (default
    /// `<groupId>.state`).
    #[serde(default)]
    pub state_topic: Option<String>,
    /// `partitioned`: partitions of the internal topics when slawatch creates them (default:
    /// those of the input topics). Fixed once created: it decides which instance owns an agent.
    #[serde(default)]
    pub internal_partitions: Option<i32>,
    /// Replication factor of internal topics slawatch creates (-1: the broker's default).
    #[serde(default = "default_replication")]
    pub internal_replication: i32,
    /// librdkafka properties passed through as they are (security, SASL, timeouts…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Topics of OpenTelemetry spans (`--span-topic`; `single` topology only), one
    /// `ExportTraceServiceRequest` per message.
    #[serde(default)]
    pub span_topics: Vec<String>,
    /// Their encoding (`--span-encoding`); not read from the file.
    #[serde(skip, default = "default_span_encoding")]
    pub span_encoding: crate::otel::Encoding,
}

/// How instances of one consumer group share the work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Topology {
    /// Stage 1 (any instance) validates records and re-keys them by agent into the repartition
    /// topic; stage 2 (the instance owning that partition) evaluates; state moves between
    /// instances through the state topic.
    #[default]
    Partitioned,
    /// One instance consumes every partition and evaluates directly.
    Single,
}

fn default_topics() -> Vec<String> {
    vec!["agent-sessions".into()]
}
fn default_span_encoding() -> crate::otel::Encoding {
    crate::otel::Encoding::Protobuf
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
fn default_replication() -> i32 {
    -1
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
            topology: Topology::default(),
            repartition_topic: None,
            state_topic: None,
            internal_partitions: None,
            internal_replication: default_replication(),
            properties: BTreeMap::new(),
            span_topics: Vec::new(),
            span_encoding: default_span_encoding(),
        }
    }

    /// The repartition topic of the `partitioned` topology.
    pub fn repartition_topic_name(&self) -> String {
        self.repartition_topic
            .clone()
            .unwrap_or_else(|| format!("{}.repartition", self.group_id))
    }

    /// The state topic of the `partitioned` topology.
    pub fn state_topic_name(&self) -> String {
        self.state_topic
            .clone()
            .unwrap_or_else(|| format!("{}.state", self.group_id))
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
        self.consumer_of(&self.group_id, &self.input_topics(), context)
    }

    /// Every topic the `single` consumer reads: record topics, then span topics.
    pub fn input_topics(&self) -> Vec<String> {
        let mut all = self.topics.clone();
        all.extend(self.span_topics.iter().cloned());
        all
    }

    /// A consumer of `topics` in group `group`, configured like [`KafkaConfig::consumer`].
    pub fn consumer_of(
        &self,
        group: &str,
        topics: &[String],
        context: SourceContext,
    ) -> Result<BaseConsumer<SourceContext>, KafkaError> {
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
        Ok(consumer)
    }

    /// An admin client whose metadata requests never create a topic by asking for it (brokers
    /// that auto-create would make it with their default partition count).
    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        let mut c = self.client();
        c.set("allow.auto.create.topics", "false");
        c.create()
    }

    /// Partitions of `topic`, or `None` when the broker does not know it.
    pub fn partition_count(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        let admin = self.admin()?;
        let meta = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(meta
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0))
    }

    /// Creates the topics that do not exist yet (`(name, partitions)`); returns each topic's
    /// actual partition count, which for an existing topic may differ from the one asked for.
    pub fn ensure_topics(&self, topics: &[(String, i32)]) -> Result<Vec<i32>, KafkaError> {
        let admin = self.admin()?;
        let missing: Vec<NewTopic<'_>> = topics
            .iter()
            .filter(|(name, _)| !matches!(self.partition_count(name), Ok(Some(_))))
            .map(|(name, n)| {
                NewTopic::new(name, *n, TopicReplication::Fixed(self.internal_replication))
            })
            .collect();
        if !missing.is_empty() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|_| KafkaError::ClientCreation("a runtime for the admin client".into()))?;
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            for result in runtime.block_on(admin.create_topics(&missing, &opts))? {
                match result {
                    Ok(name) => tracing::info!(topic = %name, "created internal topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        return Err(KafkaError::AdminOp(code)).inspect_err(
                            |_| tracing::error!(topic = %name, "creating the topic failed"),
                        );
                    }
                }
            }
        }
        // A topic just created may take a moment to show up in the metadata.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut counts = Vec::with_capacity(topics.len());
        for (name, _) in topics {
            loop {
                match self.partition_count(name)? {
                    Some(n) => break counts.push(n),
                    None if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    None => {
                        return Err(KafkaError::MetadataFetch(
                            RDKafkaErrorCode::UnknownTopicOrPartition,
                        ));
                    }
                }
            }
        }
        Ok(counts)
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
    /// Called when partitions are assigned, before any of their records is delivered.
    #[allow(clippy::type_complexity)]
    pub on_assign:
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

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

/// Logs a client error; the end of a partition is an event the caller handles, not an error
/// (it arrives here when reached during a call other than `poll`).
fn log_client_error(error: KafkaError, reason: &str) {
    if !matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    ) {
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

/// The context of a [`Reader`]: no group, errors logged like the service consumers'.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

impl ConsumerContext for ReaderContext {}

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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions(tpl);
            if let Some(f) = &self.on_assign {
                f(consumer, &assigned);
            }
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RebalanceEvent::Assigned(assigned));
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

/// The position (the offset of the next record to read) of every assigned partition read
/// from; a local call. A partition not read from yet has none.
pub fn positions(consumer: &BaseConsumer<SourceContext>) -> BTreeMap<(String, i32), i64> {
    let Ok(list) = consumer.position() else {
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

/// Leaves the group and closes the consumer, serving its last rebalance callbacks, but never
/// past `deadline`.
///
/// Dropping a group consumer closes it too, but waits for the close without a bound: when the
/// coordinator holds the group in a rebalance (a member joined or left as this one stops) the
/// leave can wait for that rebalance, up to the rebalance timeout (`max.poll.interval.ms`, 5
/// min), and a run that has finished would hang. Everything is checkpointed and committed
/// before this is called, so a consumer that is not closed by the deadline is abandoned
/// instead: the coordinator drops the member when its session times out.
pub fn close(consumer: BaseConsumer<SourceContext>, deadline: std::time::Instant) {
    if let Err(e) = consumer.close_queue() {
        tracing::warn!(error = %e, "closing the consumer");
        std::mem::forget(consumer);
        return;
    }
    while !consumer.closed() {
        if std::time::Instant::now() >= deadline {
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

    /// Publishes to one partition of a topic, with text headers.
    pub fn send_to(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), SinkError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition)
            .payload(payload)
            .headers(h);
        if let Some(k) = key {
            r = r.key(k);
        }
        self.send(topic, r)
    }

    fn send(&self, topic: &str, mut r: BaseRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
        // A full local queue is backpressure: wait for deliveries, then retry.
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
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

/// Largest chunk of a state snapshot (brokers reject messages over ~1 MB by default).
const STATE_CHUNK_BYTES: usize = 512 * 1024;

/// Evaluation-state snapshots kept in a Kafka topic — one stream of snapshots per partition
/// of the repartition topic, so whichever instance owns that partition next can restore it.
///
/// A snapshot is its chunks followed by a manifest (size, chunk count, xxh3 of the bytes), all
/// in the same partition from one idempotent producer, so the chunks sit right before their
/// manifest. Keys are `<p>/<slot>/<i>` and `<p>/manifest` with slots alternating: under log
/// compaction an interrupted snapshot overwrites only the other slot, never the chunks of the
/// last complete one.
pub struct StateTopic {
    topic: String,
    reader: Reader,
}

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

#[derive(Debug, serde::Serialize, Deserialize)]
struct Manifest {
    id: u64,
    chunks: u32,
    bytes: u64,
    xxh3: u64,
}

impl StateTopic {
    pub fn new(cfg: &KafkaConfig, topic: String) -> Result<StateTopic, KafkaError> {
        Ok(StateTopic {
            topic,
            reader: Reader::new(cfg)?,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends snapshot `id` of `partition` (durable once `sink.flush()` returns).
    pub fn write(
        &self,
        sink: &Sink,
        partition: i32,
        id: u64,
        bytes: &[u8],
    ) -> Result<(), SinkError> {
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(STATE_CHUNK_BYTES).collect()
        };
        let id_text = id.to_string();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{partition}/{}/{i}", id % 2);
            let index = i.to_string();
            sink.send_to(
                &self.topic,
                partition,
                Some(key.as_bytes()),
                chunk,
                &[
                    ("slawatch.state", "chunk"),
                    ("slawatch.state.id", &id_text),
                    ("slawatch.state.index", &index),
                ],
            )?;
        }
        let manifest = serde_json::to_vec(&Manifest {
            id,
            chunks: chunks.len() as u32,
            bytes: bytes.len() as u64,
            xxh3: xxhash_rust::xxh3::xxh3_64(bytes),
        })
        .expect("manifests serialize");
        sink.send_to(
            &self.topic,
            partition,
            Some(format!("{partition}/manifest").as_bytes()),
            &manifest,
            &[
                ("slawatch.state", "manifest"),
                ("slawatch.state.id", &id_text),
            ],
        )
    }

    /// The newest complete snapshot of `partition` and its id, if there is one.
    pub fn read_latest(&self, partition: i32) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        let topic = &self.topic;
        let Some(last) = self.reader.tail(topic, partition)?.1 else {
            return Ok(None);
        };
        let kind = |m: &ReadMessage| m.headers.get("slawatch.state").cloned();
        let header = |m: &ReadMessage, k: &str| m.headers.get(k).cloned().unwrap_or_default();
        let mut at = last.offset;
        let found = if kind(&last).as_deref() == Some("manifest") {
            last
        } else {
            // An interrupted snapshot: its first chunk follows the previous manifest.
            let index: i64 = header(&last, "slawatch.state.index").parse().unwrap_or(-1);
            at = at - index - 1;
            if index < 0 || at < 0 {
                return Ok(None);
            }
            self.reader.read_range(topic, partition, at, 1)?.remove(0)
        };
        anyhow::ensure!(
            kind(&found).as_deref() == Some("manifest"),
            "state topic {topic}/{partition}: offset {at} is not a snapshot manifest"
        );
        let manifest: Manifest = serde_json::from_slice(&found.payload)?;
        let first = at - i64::from(manifest.chunks);
        let mut bytes = Vec::with_capacity(manifest.bytes as usize);
        for (i, m) in self
            .reader
            .read_range(topic, partition, first, manifest.chunks as usize)?
            .into_iter()
            .enumerate()
        {
            anyhow::ensure!(
                kind(&m).as_deref() == Some("chunk")
                    && header(&m, "slawatch.state.index") == i.to_string()
                    && header(&m, "slawatch.state.id") == manifest.id.to_string(),
                "state topic {topic}/{partition}: snapshot {} is not contiguous",
                manifest.id
            );
            bytes.extend_from_slice(&m.payload);
        }
        anyhow::ensure!(
            bytes.len() as u64 == manifest.bytes
                && xxhash_rust::xxh3::xxh3_64(&bytes) == manifest.xxh3,
            "state topic {topic}/{partition}: snapshot {} is corrupt",
            manifest.id
        );
        Ok(Some((manifest.id, bytes)))
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
