//! `kafka:` of `slawatch.yaml`, and the librdkafka client configuration every client of this
//! module starts from.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

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

    /// Every topic the `single` consumer reads: record topics, then span topics.
    pub fn input_topics(&self) -> Vec<String> {
        let mut all = self.topics.clone();
        all.extend(self.span_topics.iter().cloned());
        all
    }

    /// The client configuration every client starts from: brokers, then `properties`.
    pub(super) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
