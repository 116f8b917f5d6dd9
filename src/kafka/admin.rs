//! Topic metadata and the creation of the internal topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaConfig;

impl KafkaConfig {
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
}
