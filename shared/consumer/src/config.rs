//! The consumer's settings: the common ones, S3, and which event type it keeps.

use service_runtime::config::{CommonConfig, ConfigError, Env};
use service_runtime::s3::S3Settings;
use store_event::EventType;

/// Everything a consumer reads from its environment.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `sales-consumer` or `inventory-consumer`.
    pub service: &'static str,
    /// The event type this consumer keeps.
    pub event_type: EventType,
    /// Topic, Kafka, HTTP and logs.
    pub common: CommonConfig,
    /// Where the events go.
    pub s3: S3Settings,
}

impl ConsumerConfig {
    /// Reads the settings of the consumer of `event_type`.
    pub fn from_env(env: &Env, event_type: EventType) -> Result<ConsumerConfig, ConfigError> {
        let (service, default_addr) = match event_type {
            EventType::Sale => ("sales-consumer", "0.0.0.0:8081"),
            EventType::Inventory => ("inventory-consumer", "0.0.0.0:8082"),
        };
        Ok(ConsumerConfig {
            service,
            event_type,
            common: CommonConfig::from_env(env, service, default_addr)?,
            s3: S3Settings::from_env(env)?,
        })
    }
}
