//! The producer's settings.

use service_runtime::config::{CommonConfig, ConfigError, Env};

/// Everything the producer reads from its environment.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Topic, Kafka, HTTP and logs.
    pub common: CommonConfig,
    /// `TOPIC_PARTITIONS`: partitions of the topic when the producer creates it.
    pub topic_partitions: i32,
    /// `TOPIC_REPLICATION_FACTOR`: replicas of the topic when the producer creates it
    /// (1 locally; 2 or 3 on MSK).
    pub topic_replication_factor: i16,
}

impl ProducerConfig {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env) -> Result<ProducerConfig, ConfigError> {
        Ok(ProducerConfig {
            common: CommonConfig::from_env(env, "producer", "0.0.0.0:8080")?,
            topic_partitions: env.bounded("TOPIC_PARTITIONS", 2, 1, 10_000)?,
            topic_replication_factor: env.bounded("TOPIC_REPLICATION_FACTOR", 1, 1, 16)?,
        })
    }
}
