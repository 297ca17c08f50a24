//! The runtime every store-events service stands on: typed configuration from the
//! environment, logs, the HTTP endpoints for health, readiness and metrics, the Kafka and
//! S3 clients with bounded timeouts, and the one shutdown path.

pub mod commands;
pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod process;
pub mod readiness;
pub mod retry;
pub mod s3;
pub mod server;
pub mod shutdown;
pub mod telemetry;

/// An error and its sources, outermost first: `streaming error: body checksum mismatch ...`.
/// The AWS SDK's errors say little at the top and what happened further down.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
