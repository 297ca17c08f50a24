//! The producer service: the front door through which stores send events to Kafka.

pub mod config;
pub mod generator;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service_runtime::http::{self, Probes};
use service_runtime::kafka::{KafkaCheck, KafkaCluster, TopicState};
use service_runtime::metrics;
use service_runtime::readiness::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ProducerConfig;

/// Runs the producer until `shutdown` is cancelled, serving HTTP on `listener`.
pub async fn run(config: ProducerConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = Arc::new(metrics::registry());
    let cluster = Arc::new(KafkaCluster::new(config.common.kafka.clone()));
    tokio::spawn(provision_topic(Arc::clone(&cluster), config.clone(), shutdown.clone()));
    let generator = {
        let (cluster, registry, shutdown) = (Arc::clone(&cluster), Arc::clone(&registry), shutdown.clone());
        let (topic, rate, bad_share) = (config.common.topic.clone(), config.generator_rate, config.generator_bad_share);
        tokio::spawn(async move { generator::run(cluster, topic, rate, bad_share, &registry, shutdown).await })
    };
    let readiness =
        Readiness::new(&registry, Duration::from_secs(5)).with(KafkaCheck::new(cluster, &config.common.topic));
    let router = http::router(Probes { readiness, registry });
    http::serve(listener, router, shutdown.cancelled_owned()).await.context("HTTP server failed")?;
    generator.await.context("generator task failed")
}

/// Creates the topic if it is missing, retrying with backoff while Kafka is unreachable.
/// Readiness stays false until the topic exists.
async fn provision_topic(cluster: Arc<KafkaCluster>, config: ProducerConfig, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let topic = &config.common.topic;
        match cluster.ensure_topic(topic, config.topic_partitions, config.topic_replication_factor).await {
            Ok(state) => {
                report_topic(topic, &state);
                return;
            }
            Err(error) => tracing::warn!(%error, retry_in = ?backoff, "The topic could not be checked; retrying."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Logs what provisioning found; `true` when the topic is as configured.
pub fn report_topic(topic: &str, state: &TopicState) -> bool {
    match state {
        TopicState::Created => tracing::info!(topic, "Topic created."),
        TopicState::Exists { partitions } => tracing::info!(topic, partitions, "Topic exists."),
        TopicState::TooFewPartitions { partitions, wanted } => {
            tracing::error!(
                topic,
                partitions,
                wanted,
                "The topic has fewer partitions than TOPIC_PARTITIONS; add partitions with kafka-topics --alter."
            );
            return false;
        }
    }
    true
}
