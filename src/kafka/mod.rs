//! Kafka through rdkafka: configuration (`config`), topic metadata and creation (`admin`),
//! the group consumers of the service loops (`consumer`), the producer of dead letters,
//! findings and internal topics (`producer`), reading partitions outside a group
//! (`reader`) and the state topic (`state_topic`). The only module that imports rdkafka:
//! the service loops see [`Consumer`], [`Record`] and [`Polled`], never rdkafka's types.
//!
//! Configuration comes from `slawatch.yaml` (`kafka:`), environment and flags; any
//! librdkafka property (SSL, SASL, timeouts) passes through `kafka.properties` unchanged.

mod admin;
mod config;
mod consumer;
mod producer;
mod reader;
mod state_topic;

pub use config::{KafkaConfig, Topology};
pub use consumer::{
    Committer, Consumer, OnAssign, OnRevoke, Polled, RebalanceEvent, Record, SourceContext,
};
pub use producer::{Sink, SinkError, publish_lines, session_id_of};
pub use reader::{ReadMessage, Reader, TailMessage, Tailer};
pub use state_topic::StateTopic;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// An error of the Kafka client, as the service loops see it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] KafkaError);

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
