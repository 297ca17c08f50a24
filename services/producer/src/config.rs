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
    /// `GENERATOR_RATE`: generated events per second, 0 = off.
    pub generator_rate: u32,
    /// `GENERATOR_BAD_SHARE`: the share of generated events that are bad (0 to 1).
    pub generator_bad_share: f64,
}

impl ProducerConfig {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env) -> Result<ProducerConfig, ConfigError> {
        Ok(ProducerConfig {
            common: CommonConfig::from_env(env, "producer", "0.0.0.0:8080")?,
            topic_partitions: env.bounded("TOPIC_PARTITIONS", 2, 1, 10_000)?,
            topic_replication_factor: env.bounded("TOPIC_REPLICATION_FACTOR", 1, 1, 16)?,
            generator_rate: env.bounded("GENERATOR_RATE", 0, 0, 1_000_000)?,
            generator_bad_share: env.bounded("GENERATOR_BAD_SHARE", 0.1, 0.0, 1.0)?,
        })
    }
}
