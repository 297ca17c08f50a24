//! The consumer of one event type. `sales-consumer` and `inventory-consumer` are the same
//! program with a different [`EventType`]: each reads every partition it owns, keeps the
//! events of its type, dead-letters the bad ones with a reason, and writes them to S3 in
//! batches, exactly once (see [`ledger`]).
//!
//! - `config`: settings; `ownership`: which partitions this instance reads (the group's
//!   or fixed); `group/`: membership of the consumer group and its assignor;
//!   `runner`: the partition loops running now;
//! - `batch`: one batch's records and outcomes, pure; `layout`: object keys;
//! - `dedup`: removing a store's resends (same store, same `request_id`) within a window;
//! - `ledger/`: the S3 protocol that makes it exactly once (store, writer, recovery);
//! - `partition/`: one partition's life (supervisor and recovery; the Kafka fetch loop);
//! - `health`: readiness per partition; `metrics`: what Prometheus sees; `offsets`: the
//!   ledger's progress committed to a consumer group, for Kafka's tools;
//! - `audit`: the operator's proof.

pub mod audit;
pub mod batch;
pub mod config;
pub mod dedup;
pub mod group;
pub mod health;
pub mod lake;
pub mod layout;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod offsets;
pub mod ownership;
pub mod partition;
pub mod runner;

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
use tokio_util::sync::CancellationToken;

pub use config::ConsumerConfig;

use crate::health::{Health, PipelineCheck};
use crate::layout::Layout;
use crate::ledger::Bucket;
use crate::ownership::{Assignment, Ownership};
use crate::partition::Shared;
use crate::runner::Partitions;

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
    let writer = format!("{}@{}/{}", config.service, hostname(), uuid::Uuid::new_v4().simple());
    let lake = match &config.lake {
        Some(settings) => Some(Arc::new(open_lake(settings, &config, &writer, &registry, &shutdown).await?)),
        None => None,
    };
    let shared = Arc::new(Shared {
        layout: Layout::new(&config.s3, config.service, config.event_type, &topic),
        store: Arc::new(Bucket::new(s3.clone(), &config.s3.bucket)),
        cluster: Arc::clone(&cluster),
        metrics: metrics::Metrics::new(&registry),
        health: Arc::new(Health::default()),
        progress: Arc::new(offsets::Progress::default()),
        writer,
        lake: lake.clone(),
        config,
    });
    // In a set, so that a dropped `run` (a test's stand-in for a kill) takes it along.
    let committing = CancellationToken::new();
    let mut committer = tokio::task::JoinSet::new();
    if let Some(lake) = lake.clone() {
        committer.spawn(lake.run(committing.clone()));
    }
    let readiness = Readiness::new(&registry, Duration::from_secs(5))
        .with(KafkaCheck::new(Arc::clone(&cluster), &topic))
        .with(S3Check::new(s3, &shared.config.s3.bucket))
        .with(PipelineCheck(Arc::clone(&shared.health)));
    let router = http::router(Probes { readiness, registry });
    let server = tokio::spawn(http::serve(listener, router, shutdown.clone().cancelled_owned()));

    let mut partitions = Partitions::new(Arc::clone(&shared), shutdown.clone());
    let outcome = match shared.config.assignment.clone() {
        Assignment::Group(settings) => group::run(Arc::clone(&shared), settings, &mut partitions, shutdown.clone())
            .await
            .map_err(anyhow::Error::from),
        Assignment::Static(ownership) => {
            let committing = CancellationToken::new();
            let committer = tokio::spawn(offsets::commit_until(
                Arc::clone(&cluster),
                shared.config.group_id.clone(),
                topic.clone(),
                Arc::clone(&shared.progress),
                shared.metrics.clone(),
                committing.clone(),
            ));
            let outcome = read_static(&shared, &ownership, &mut partitions, &shutdown).await;
            // The partitions' last commits made, their progress goes to the group once more.
            committing.cancel();
            let _ = committer.await;
            outcome
        }
    };
    // The partitions stopped (their last batches written): one more append for those.
    committing.cancel();
    while committer.join_next().await.is_some() {}
    if let Some(lake) = &lake
        && lake.waiting() > 0
    {
        tracing::warn!(
            waiting = lake.waiting(),
            "Batches not in the Iceberg table yet: the next start appends them (their files are written)."
        );
    }
    if outcome.is_err() {
        tracing::error!("Stopping the process so that it restarts clean.");
        shutdown.cancel();
    }
    let served = server.await.context("HTTP server task failed").and_then(|r| r.context("HTTP server failed"));
    outcome.and(served)
}

/// Static assignment: reads the partitions `ownership` names, looking for new ones every
/// `PARTITION_REFRESH`, until `shutdown`; then stops them all (each commits its batch).
async fn read_static(
    shared: &Arc<Shared>,
    ownership: &Ownership,
    partitions: &mut Partitions,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let topic = &shared.config.common.topic;
    while !shutdown.is_cancelled() {
        match shared.cluster.partitions(topic).await {
            Ok(Some(all)) => {
                for partition in all.into_iter().filter(|p| ownership.owns(*p)) {
                    partitions.start(partition);
                }
            }
            Ok(None) => tracing::warn!(topic, "The topic does not exist yet; waiting for it."),
            Err(error) => tracing::warn!(%error, "Partitions could not be listed; retrying."),
        }
        let running = partitions.owned().len();
        shared.metrics.assigned_partitions.set(i64::try_from(running).unwrap_or(i64::MAX));
        let refresh = if running == 0 { Duration::from_secs(2) } else { shared.config.partition_refresh };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(refresh) => {}
            ended = partitions.ended() => {
                shutdown.cancel();
                partitions.stop_all().await?;
                return Err(ended.into());
            }
        }
    }
    partitions.stop_all().await?;
    Ok(())
}

/// Opens the consumer's Iceberg table (creating it when missing), retried while the
/// catalog cannot be reached. Its files are written with the batch's other objects, by
/// the same S3 client: in the consumer's bucket (ICEBERG_WAREHOUSE), or in the storage an
/// S3 Tables table bucket gave the table.
async fn open_lake(
    settings: &store_lake::LakeSettings,
    config: &ConsumerConfig,
    writer: &str,
    registry: &prometheus::Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<lake::Committer> {
    let mut retry = service_runtime::retry::Backoff::dependency();
    let table = loop {
        let opened = match store_lake::connect(settings).await {
            Ok(catalog) => store_lake::Lake::open(catalog, settings, &config.common.topic, writer).await,
            Err(error) => Err(error.into()),
        };
        match opened {
            Ok(table) => break table,
            Err(error @ store_lake::LakeError::NotIceberg { .. }) => return Err(error.into()),
            Err(error) => {
                let wait = retry.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "The Iceberg catalog cannot be reached; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => anyhow::bail!("stopped before the Iceberg catalog could be reached"),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    };
    tracing::info!(table = %table.name(), location = table.location(), "Writing to the Iceberg table.");
    Ok(lake::Committer::new(table, settings.commit_interval, settings.commit_max_files, registry))
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned())
}

/// Audits the S3 layout of this consumer; prints the report; `Ok(true)` when clean.
pub async fn audit(config: &ConsumerConfig, deep: bool, json: bool) -> anyhow::Result<bool> {
    let s3 = service_runtime::s3::client(&config.s3).await;
    let bucket = Bucket::new(s3, &config.s3.bucket);
    let layout = Layout::new(&config.s3, config.service, config.event_type, &config.common.topic);
    let lake = match &config.lake {
        Some(settings) => {
            let catalog = store_lake::connect(settings).await.context("the Iceberg catalog cannot be reached")?;
            Some(store_lake::Lake::open(catalog, settings, &config.common.topic, "audit").await?)
        }
        None => None,
    };
    let report = audit::run(&bucket, &layout, deep, config.dedup.window, lake.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.clean())
}

const USAGE: &str = "usage: <consumer> [healthcheck | check-kafka | audit [--deep] [--json] | migrate | --help]";

/// Brings the JSON history before Iceberg into the consumer's table (see [`migrate`]);
/// prints what it did per partition.
pub async fn migrate(config: &ConsumerConfig) -> anyhow::Result<()> {
    let Some(settings) = &config.lake else {
        anyhow::bail!(
            "migrate brings a JSON lake into the Iceberg table: set OUTPUT_FORMATS with iceberg (and ICEBERG_*)"
        );
    };
    let s3 = service_runtime::s3::client(&config.s3).await;
    let bucket = Bucket::new(s3, &config.s3.bucket);
    let layout = Layout::new(&config.s3, config.service, config.event_type, &config.common.topic);
    let catalog = store_lake::connect(settings).await.context("the Iceberg catalog cannot be reached")?;
    let writer = format!("{}-migrate@{}", config.service, hostname());
    let lake = store_lake::Lake::open(catalog, settings, &config.common.topic, &writer).await?;
    let report = migrate::run(&bucket, &layout, &lake).await?;
    println!("partition  start       migrated to  entries  files  rows (this run)");
    for p in &report {
        let show = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
        println!(
            "{:>9}  {:<10}  {:<11}  {:>7}  {:>5}  {:>5}",
            p.partition,
            show(p.start),
            show(p.migrated_to),
            p.entries,
            p.files,
            p.rows
        );
        if p.start.is_none() {
            println!(
                "           not in the table yet: run the consumer with iceberg in OUTPUT_FORMATS first, then migrate"
            );
        }
    }
    Ok(())
}

/// The whole program of a consumer service: configuration (exit code 2 when it is
/// wrong), logs, then either the service until SIGINT or SIGTERM, or `audit` (exit code 1
/// on any gap, overlap, loss or bad object); a fatal error is printed and exits as
/// `service_runtime::process` says.
pub fn main(event_type: EventType) -> std::process::ExitCode {
    service_runtime::process::main(|| run_main(event_type))
}

async fn run_main(event_type: EventType) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if service_runtime::commands::is_help(args.first().map(String::as_str)) {
        let service = match event_type {
            EventType::Sale => "sales-consumer",
            EventType::Inventory => "inventory-consumer",
        };
        println!("{}", USAGE.replace("<consumer>", service));
        println!("{}", service_runtime::commands::HELP_FOOTER);
        return Ok(ExitCode::SUCCESS);
    }
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
                return Ok(ExitCode::from(service_runtime::process::EXIT_CONFIG));
            }
            let clean = audit(&config, flags.contains(&"--deep"), flags.contains(&"--json")).await?;
            return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Some("migrate") => {
            migrate(&config).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => {
            eprintln!("unknown command {other}; {USAGE}");
            return Ok(ExitCode::from(service_runtime::process::EXIT_CONFIG));
        }
    }
    let listener = service_runtime::http::listen(config.common.http_addr).await?;
    tracing::info!(service = config.service, topic = %config.common.topic, "Consumer starting.");
    let s3 = service_runtime::s3::client(&config.s3).await;
    run(config, s3, listener, shutdown::on_signal()).await?;
    tracing::info!("Consumer stopped.");
    Ok(ExitCode::SUCCESS)
}
