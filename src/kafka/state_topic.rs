//! Evaluation-state snapshots of the `partitioned` topology in a Kafka topic.

use rdkafka::error::KafkaError;
use serde::Deserialize;

use super::{KafkaConfig, ReadMessage, Reader, Sink, SinkError};

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
