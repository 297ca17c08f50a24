//! The producer service: the front door through which stores send events to Kafka.
//!
//! - `api`: `POST /v1/events` and `POST /v1/simulate`;
//! - `sink`: batched, compressed, bounded writes to Kafka shared by every path;
//! - `generator`: continuous realistic events (`GENERATOR_RATE`) and the partitioner;
//! - `config`, `metrics`: settings and what Prometheus sees.

pub mod api;
pub mod auth;
pub mod config;
pub mod generator;
pub mod limit;
pub mod metrics;
pub mod resend;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service_runtime::http::{self, Probes};
use service_runtime::kafka::{KafkaCheck, KafkaCluster, TopicState};
use service_runtime::readiness::Readiness;
use service_runtime::retry::Backoff;
use service_runtime::server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Access, ProducerConfig};

/// Runs the producer until `shutdown` is cancelled, serving HTTP on `listener`. On
/// shutdown it stops accepting, lets requests in flight finish (each waits for its
/// acknowledgements), stops the generator, and returns when nothing waits for Kafka.
pub async fn run(config: ProducerConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = Arc::new(service_runtime::metrics::registry());
    let metrics = metrics::Metrics::new(&registry);
    let cluster = Arc::new(KafkaCluster::new(config.common.kafka.clone()));
    tokio::spawn(provision_topic(Arc::clone(&cluster), config.clone(), shutdown.clone()));
    let sink =
        Arc::new(sink::Sink::new(Arc::clone(&cluster), &config.common.topic, config.sink.clone(), metrics.clone()));
    let generator = tokio::spawn(generator::run(
        Arc::clone(&sink),
        config.generator_rate,
        config.generator_bad_share,
        metrics.clone(),
        shutdown.clone(),
    ));
    let readiness =
        Readiness::new(&registry, Duration::from_secs(5)).with(KafkaCheck::new(cluster, &config.common.topic));
    let gate = match &config.access {
        Access::Open => {
            tracing::warn!(
                "PRODUCER_AUTH=none: anyone who reaches this port may write events for any store. For local use only."
            );
            api::Gate::Open
        }
        Access::Keys(source) => {
            let store = Arc::new(auth::KeyStore::open(source.clone()).map_err(anyhow::Error::msg)?);
            metrics.api_keys.set(store.keys().len() as i64);
            tracing::info!(keys = store.keys().len(), "API keys loaded.");
            let (keys, metrics) = (Arc::clone(&store), metrics.clone());
            tokio::spawn(every_reload_period(shutdown.clone(), move || reload_keys(&keys, &metrics)));
            api::Gate::Keys(store)
        }
    };
    let tls = match &config.tls {
        None => None,
        Some((cert, key)) => {
            let certificate = Arc::new(
                service_runtime::server::ReloadingCertificate::load(cert, key)
                    .map_err(|e| anyhow::anyhow!("PRODUCER_TLS_CERT_FILE / PRODUCER_TLS_KEY_FILE: {e}"))?,
            );
            let (watched, metrics) = (Arc::clone(&certificate), metrics.clone());
            tokio::spawn(every_reload_period(shutdown.clone(), move || reload_certificate(&watched, &metrics)));
            Some(certificate.acceptor().map_err(anyhow::Error::msg)?)
        }
    };
    let limits = config.server_limits;
    let admin = match config.admin_addr {
        Some(addr) => Some(http::listen_as("ADMIN_ADDR", addr).await?),
        None => None,
    };
    let api = Arc::new(api::Api {
        sink: Arc::clone(&sink),
        metrics,
        max_body_bytes: config.max_body_bytes,
        ts_max_ahead: config.event_ts_max_ahead,
        gate,
        simulate: config.simulate,
        limiter: limit::Limiter::default(),
        rate_limit: config.rate_limit,
        body_timeout: config.body_timeout,
        acknowledged: resend::Acknowledged::new(config.resend_window, config.resend_cache),
        bad_share: config.generator_bad_share,
        shutdown: shutdown.clone(),
    });
    let probes = http::router(Probes { readiness, registry });
    let listener = http::LimitedListener::new(listener, config.max_connections);
    match admin {
        None => {
            let router = probes.merge(api::router(api));
            server::serve(listener, router, tls, limits, shutdown.cancelled_owned())
                .await
                .context("HTTP server failed")?;
        }
        Some(admin) => {
            // The probes and metrics on their own listener, the event API alone on HTTP_ADDR.
            let (served, admin_served) = tokio::join!(
                server::serve(listener, api::router(api), tls, limits, shutdown.clone().cancelled_owned()),
                http::serve(admin, probes, shutdown.clone().cancelled_owned()),
            );
            served.context("HTTP server failed")?;
            admin_served.context("admin HTTP server (ADMIN_ADDR) failed")?;
        }
    }
    generator.await.context("generator task failed")?;
    sink.drain(config.sink.timeout).await;
    tracing::info!("Producer stopped: every accepted event was acknowledged or reported as failed.");
    Ok(())
}

/// Reads the keys file again whenever it changes; a file that cannot be used leaves the
/// keys in force and is logged and counted.
fn reload_keys(store: &auth::KeyStore, metrics: &metrics::Metrics) {
    match store.reload_if_changed() {
        Ok(None) => {}
        Ok(Some(count)) => {
            metrics.api_keys.set(count as i64);
            tracing::info!(keys = count, "API keys reloaded.");
        }
        Err(problem) => {
            metrics.api_keys_reload_errors.inc();
            tracing::error!(%problem, "The changed API keys file cannot be used; the keys before it stay in force.");
        }
    }
}

/// Reads the TLS certificate and key again whenever either file changes; a pair that
/// cannot be used (one file replaced, not yet the other) leaves the one in force.
fn reload_certificate(certificate: &service_runtime::server::ReloadingCertificate, metrics: &metrics::Metrics) {
    match certificate.reload_if_changed() {
        Ok(false) => {}
        Ok(true) => {
            metrics.tls_reloads.with_label_values(&["ok"]).inc();
            tracing::info!("TLS certificate reloaded.");
        }
        Err(problem) => {
            metrics.tls_reloads.with_label_values(&["error"]).inc();
            tracing::error!(%problem, "The changed TLS certificate cannot be used; the one before it stays in force.");
        }
    }
}

/// Runs `check` every `auth::RELOAD_EVERY` until shutdown: the watch of a mounted file
/// (a Kubernetes Secret is updated in place by the kubelet, with no event to wait for).
async fn every_reload_period(shutdown: CancellationToken, mut check: impl FnMut() + Send) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(auth::RELOAD_EVERY) => check(),
        }
    }
}

/// Creates the topic if it is missing, retrying with backoff while Kafka is unreachable.
/// Readiness stays false until the topic exists.
async fn provision_topic(cluster: Arc<KafkaCluster>, config: ProducerConfig, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let topic = &config.common.topic;
        let wait = match cluster.ensure_topic(topic, config.topic_partitions, config.topic_replication_factor).await {
            Ok(state) => {
                report_topic(topic, &state);
                return;
            }
            Err(error) => {
                let wait = backoff.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "The topic could not be checked; retrying.");
                wait
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `producer ensure-topic`: makes sure the topic exists, for an init job. `Ok(true)` when
/// it exists with at least `TOPIC_PARTITIONS` partitions.
pub async fn ensure_topic(config: &ProducerConfig) -> anyhow::Result<bool> {
    let cluster = KafkaCluster::new(config.common.kafka.clone());
    let topic = &config.common.topic;
    let state = cluster
        .ensure_topic(topic, config.topic_partitions, config.topic_replication_factor)
        .await
        .with_context(|| format!("cannot make sure topic {topic} exists"))?;
    let fine = report_topic(topic, &state);
    match state {
        TopicState::Created => println!("topic {topic} created with {} partitions", config.topic_partitions),
        TopicState::Exists { partitions } => println!("topic {topic} exists with {partitions} partitions"),
        TopicState::TooFewPartitions { partitions, wanted } => {
            println!("topic {topic} has {partitions} partitions, fewer than TOPIC_PARTITIONS={wanted}")
        }
    }
    Ok(fine)
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
