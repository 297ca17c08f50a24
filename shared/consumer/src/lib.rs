//! The consumer of one event type. `sales-consumer` and `inventory-consumer` are the same
//! program with a different [`EventType`]: each reads every partition it owns, keeps the
//! events of its type, dead-letters the bad ones with a reason, and writes them to S3 in
//! batches, exactly once (see [`ledger`]).
//!
//! - `config`: settings; `ownership`: which partitions this instance reads;
//! - `batch`: one batch's records and outcomes, pure; `layout`: object keys;
//! - `ledger/`: the S3 protocol that makes it exactly once (store, writer, recovery);
//! - `partition/`: one partition's life (supervisor and recovery; the Kafka fetch loop);
//! - `health`: readiness per partition; `metrics`: what Prometheus sees; `offsets`: the
//!   ledger's progress committed to a consumer group, for Kafka's tools;
//! - `audit`: the operator's proof.

pub mod audit;
pub mod batch;
pub mod config;
pub mod health;
pub mod layout;
pub mod ledger;
pub mod metrics;
pub mod offsets;
pub mod ownership;
pub mod partition;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service_runtime::http::{self, Probes};
use service_runtime::kafka::{KafkaCheck, KafkaCluster};
use service_runtime::readiness::Readiness;
use service_runtime::s3::S3Check;
use service_runtime::{shutdown, telemetry};
use store_event::EventType;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::ConsumerConfig;

use crate::health::{Health, PipelineCheck};
use crate::layout::Layout;
use crate::ledger::Bucket;
use crate::partition::Shared;

/// Runs the consumer until `shutdown` is cancelled: one loop per owned partition, and the
/// HTTP probes on `listener`. Returns after every partition committed its open batch.
pub async fn run(
    config: ConsumerConfig,
    s3: aws_sdk_s3::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Arc::new(service_runtime::metrics::registry());
    let cluster = Arc::new(KafkaCluster::new(config.common.kafka.clone()));
    let topic = config.common.topic.clone();
    let shared = Arc::new(Shared {
        layout: Layout::new(&config.s3, config.service, config.event_type, &topic),
        store: Arc::new(Bucket::new(s3.clone(), &config.s3.bucket)),
        cluster: Arc::clone(&cluster),
        metrics: metrics::Metrics::new(&registry),
        health: Arc::new(Health::default()),
        progress: Arc::new(offsets::Progress::default()),
        writer: format!("{}@{}/{}", config.service, hostname(), uuid::Uuid::new_v4().simple()),
        config,
    });
    let readiness = Readiness::new(&registry, Duration::from_secs(5))
        .with(KafkaCheck::new(Arc::clone(&cluster), &topic))
        .with(S3Check::new(s3, &shared.config.s3.bucket))
        .with(PipelineCheck(Arc::clone(&shared.health)));
    let router = http::router(Probes { readiness, registry });
    let server = tokio::spawn(http::serve(listener, router, shutdown.clone().cancelled_owned()));

    let committing = CancellationToken::new();
    let committer = tokio::spawn(offsets::commit_until(
        Arc::clone(&cluster),
        shared.config.group_id.clone(),
        topic.clone(),
        Arc::clone(&shared.progress),
        shared.metrics.clone(),
        committing.clone(),
    ));
    let mut workers = JoinSet::new();
    let mut running: BTreeSet<i32> = BTreeSet::new();
    while !shutdown.is_cancelled() {
        match cluster.partitions(&topic).await {
            Ok(Some(partitions)) => {
                for partition in partitions.into_iter().filter(|p| shared.config.ownership.owns(*p)) {
                    if running.insert(partition) {
                        tracing::info!(partition, "Partition assigned.");
                        workers.spawn(partition::run_partition(Arc::clone(&shared), partition, shutdown.clone()));
                    }
                }
            }
            Ok(None) => tracing::warn!(topic, "The topic does not exist yet; waiting for it."),
            Err(error) => tracing::warn!(%error, "Partitions could not be listed; retrying."),
        }
        let refresh = if running.is_empty() { Duration::from_secs(2) } else { shared.config.partition_refresh };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(refresh) => {}
            // A partition loop ends only on shutdown; one that ends before has panicked.
            // The process stops so that its supervisor restarts it and recovery runs,
            // instead of living on with a partition nobody reads.
            Some(ended) = workers.join_next(), if !workers.is_empty() => {
                if !shutdown.is_cancelled() {
                    let why = match ended {
                        Err(error) if error.is_panic() => "panicked",
                        _ => "stopped",
                    };
                    tracing::error!("A partition loop {why}; stopping the process so that it restarts clean.");
                    shutdown.cancel();
                    while workers.join_next().await.is_some() {}
                    committing.cancel();
                    let _ = committer.await;
                    let _ = server.await;
                    anyhow::bail!("a partition loop {why} while the consumer was running");
                }
            }
        }
    }
    while workers.join_next().await.is_some() {}
    // The partitions' last commits made, their progress goes to the group once more.
    committing.cancel();
    let _ = committer.await;
    server.await.context("HTTP server task failed")?.context("HTTP server failed")
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned())
}

/// Audits the S3 layout of this consumer; prints the report; `Ok(true)` when clean.
pub async fn audit(config: &ConsumerConfig, deep: bool, json: bool) -> anyhow::Result<bool> {
    let s3 = service_runtime::s3::client(&config.s3).await;
    let bucket = Bucket::new(s3, &config.s3.bucket);
    let layout = Layout::new(&config.s3, config.service, config.event_type, &config.common.topic);
    let report = audit::run(&bucket, &layout, deep).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.clean())
}

const USAGE: &str = "usage: <consumer> [healthcheck | check-kafka | audit [--deep] [--json]]";

/// The whole program of a consumer service: configuration (exit code 2 when it is
/// wrong), logs, then either the service until SIGINT or SIGTERM, or `audit` (exit code 1
/// on any gap, overlap, loss or bad object).
pub async fn main(event_type: EventType) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = service_runtime::config::Env::from_process();
    let config = service_runtime::config::exit_on_error(ConsumerConfig::from_env(&env, event_type));
    telemetry::init(config.common.log_format, &config.common.log_filter);
    let command = args.first().map(String::as_str);
    if let Some(code) = service_runtime::commands::run(command.unwrap_or(""), &config.common).await {
        return Ok(code);
    }
    match command {
        None => {}
        Some("audit") => {
            let flags: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            if let Some(unknown) = flags.iter().find(|f| !["--deep", "--json"].contains(f)) {
                eprintln!("unknown option {unknown}; {USAGE}");
                return Ok(ExitCode::from(2));
            }
            let clean = audit(&config, flags.contains(&"--deep"), flags.contains(&"--json")).await?;
            return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Some(other) => {
            eprintln!("unknown command {other}; {USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    let listener = TcpListener::bind(config.common.http_addr)
        .await
        .with_context(|| format!("cannot listen on HTTP_ADDR={}", config.common.http_addr))?;
    tracing::info!(service = config.service, topic = %config.common.topic, "Consumer starting.");
    let s3 = service_runtime::s3::client(&config.s3).await;
    run(config, s3, listener, shutdown::on_signal()).await?;
    tracing::info!("Consumer stopped.");
    Ok(ExitCode::SUCCESS)
}
