//! The producer of dead letters, findings, repartitioned records and state snapshots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaConfig;
use crate::finding::Finding;
use crate::ingest::decode::RejectReason;
use crate::ingest::{Position, RawRecord};

impl KafkaConfig {
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

    /// Waits at most `within` for what was sent to be delivered; whether it was. Failures are
    /// left for [`Sink::flush`] to report.
    pub fn flush_within(&self, within: Duration) -> bool {
        self.producer.flush(within).is_ok()
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
