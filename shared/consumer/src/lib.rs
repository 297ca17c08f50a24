//! The consumer of one event type. `sales-consumer` and `inventory-consumer` are the same
//! program with a different [`EventType`]: each reads the whole topic, keeps the events of
//! its type and writes them to S3 under its own prefix.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service_runtime::http::{self, Probes};
use service_runtime::kafka::{KafkaCheck, KafkaCluster};
use service_runtime::readiness::Readiness;
use service_runtime::s3::S3Check;
use service_runtime::{metrics, shutdown, telemetry};
use store_event::EventType;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ConsumerConfig;

/// Runs the consumer until `shutdown` is cancelled: the HTTP probes on `listener`.
pub async fn run(config: ConsumerConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = Arc::new(metrics::registry());
    let cluster = Arc::new(KafkaCluster::new(config.common.kafka.clone()));
    let s3 = service_runtime::s3::client(&config.s3).await;
    let readiness = Readiness::new(&registry, Duration::from_secs(5))
        .with(KafkaCheck::new(cluster, &config.common.topic))
        .with(S3Check::new(s3, &config.s3.bucket));
    let router = http::router(Probes { readiness, registry });
    http::serve(listener, router, shutdown.cancelled_owned()).await.context("HTTP server failed")
}

/// The whole program of a consumer service: configuration (exit code 2 when it is
/// wrong), logs, the listener, and [`run`] until SIGINT or SIGTERM.
pub async fn main(event_type: EventType) -> anyhow::Result<()> {
    let env = service_runtime::config::Env::from_process();
    let config = service_runtime::config::exit_on_error(ConsumerConfig::from_env(&env, event_type));
    telemetry::init(config.common.log_format);
    let listener = TcpListener::bind(config.common.http_addr)
        .await
        .with_context(|| format!("cannot listen on HTTP_ADDR={}", config.common.http_addr))?;
    tracing::info!(service = config.service, topic = %config.common.topic, "Consumer starting.");
    run(config, listener, shutdown::on_signal()).await
}
