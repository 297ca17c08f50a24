//! The runtime every store-events service stands on: typed configuration from the
//! environment, logs, the HTTP endpoints for health, readiness and metrics, the Kafka and
//! S3 clients with bounded timeouts, and the one shutdown path.

pub mod commands;
pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod readiness;
pub mod s3;
pub mod shutdown;
pub mod telemetry;
