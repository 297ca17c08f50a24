//! One partition's life: recover the position from the ledger (writing a crashed batch's
//! objects again), then consume until shutdown, backing off when another instance turns
//! out to own the partition too. See [`crate::ledger`] for why this stores every record
//! exactly once across crashes, restarts and redeliveries.
//!
//! - this module: the supervisor of one partition and its recovery;
//! - [`fetch`]: the Kafka side: the fetch loop that fills and flushes batches, and the
//!   rebuild of a batch recovery must write again.

mod fetch;

use std::sync::Arc;
use std::time::Duration;

use service_runtime::kafka::KafkaCluster;
use service_runtime::retry::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use chrono::Utc;

use crate::config::ConsumerConfig;
use crate::dedup::{self, Seen};
use crate::health::Health;
use crate::layout::Layout;
use crate::ledger::recovery::{self, Recovered};
use crate::ledger::writer::{CommitError, LedgerWriter, WriterSettings};
use crate::ledger::{Entry, Store};
use crate::metrics::Metrics;
use fetch::{PartitionLoop, RebuildError};

/// How long a fenced-off instance waits before it looks at the ledger again.
const FENCE_BACKOFF: Duration = Duration::from_secs(30);

/// What the partition loops share.
pub struct Shared {
    /// The consumer's settings.
    pub config: ConsumerConfig,
    /// Key names.
    pub layout: Layout,
    /// S3.
    pub store: Arc<dyn Store>,
    /// Kafka.
    pub cluster: Arc<KafkaCluster>,
    /// Metrics.
    pub metrics: Metrics,
    /// Per-partition progress, for readiness.
    pub health: Arc<Health>,
    /// Per-partition progress, for the consumer group's committed offsets.
    pub progress: Arc<crate::offsets::Progress>,
    /// This process's identity in the ledger.
    pub writer: String,
    /// The Iceberg table's committer, when `iceberg` is a format.
    pub lake: Option<Arc<crate::lake::Committer>>,
}

impl Shared {
    /// Forgets the readiness and per-partition metrics of `partition` (released).
    pub fn forget(&self, partition: i32) {
        self.health.forget(partition);
        self.metrics.forget(partition);
    }

    fn ledger_writer(&self, partition: i32, shutdown: &CancellationToken) -> LedgerWriter {
        let settings = WriterSettings {
            conditional: self.config.conditional_writes,
            checkpoint_interval: self.config.checkpoint_interval,
        };
        LedgerWriter::new(
            Arc::clone(&self.store),
            self.layout.clone(),
            &self.config.common.topic,
            partition,
            &self.writer,
            settings,
            self.metrics.clone(),
            Arc::clone(&self.health),
            shutdown.clone(),
        )
        .with_lake(self.lake.clone())
    }
}

/// Why a partition loop stopped consuming.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Shutdown was asked for.
    Shutdown,
    /// Another instance wrote a ledger entry this one wanted.
    Fenced,
    /// The out-of-range policy is `halt`.
    Halted,
}

impl From<CommitError> for Stop {
    fn from(error: CommitError) -> Stop {
        match error {
            CommitError::Fenced => Stop::Fenced,
            CommitError::Stopped => Stop::Shutdown,
        }
    }
}

/// Runs partition `partition` until `shutdown`; its logs carry `partition` (a span).
pub async fn run_partition(shared: Arc<Shared>, partition: i32, shutdown: CancellationToken) {
    let span = tracing::info_span!("partition", partition);
    supervise(Arc::clone(&shared), partition, shutdown).instrument(span).await;
    release_from_lake(&shared, partition);
}

/// The Iceberg committer's rounds stop waiting for `partition` (registered again by its
/// next recovery).
fn release_from_lake(shared: &Shared, partition: i32) {
    if let Some(committer) = &shared.lake {
        committer.release(partition);
    }
}

async fn supervise(shared: Arc<Shared>, partition: i32, shutdown: CancellationToken) {
    let label = partition.to_string();
    shared.health.set(partition, Err("recovering its position from S3".to_owned()));
    let mut retry = Backoff::dependency();
    while !shutdown.is_cancelled() {
        let writer = shared.ledger_writer(partition, &shutdown);
        let (next, seen) = match recover(&shared, partition, &writer).await {
            Ok(recovered) => recovered,
            Err(RecoverError::Stopped) => break,
            Err(error) => {
                let wait = retry.next_wait();
                tracing::error!(%error, retry_in = ?wait, "Recovery failed; retrying.");
                shared.health.set(partition, Err(format!("recovery failed: {error}")));
                sleep_or_stop(wait, &shutdown).await;
                continue;
            }
        };
        retry.reset();
        tracing::info!(next_offset = next, "Partition recovered.");
        let mut state = PartitionLoop::new(Arc::clone(&shared), partition, next, seen, writer, shutdown.clone());
        match state.consume().await {
            Stop::Shutdown => break,
            Stop::Fenced => {
                release_from_lake(&shared, partition);
                shared.metrics.fenced.with_label_values(&[&label]).inc();
                tracing::error!(
                    "Another instance wrote the next ledger entry of this partition: two instances own it. \
                     Backing off (in a consumer group, the rebalance that moved it ends this; in static assignment, check CONSUMER_PARTITIONS / CONSUMER_INSTANCE(S))."
                );
                shared.health.set(partition, Err("fenced off by another instance owning this partition".to_owned()));
                sleep_or_stop(FENCE_BACKOFF, &shutdown).await;
            }
            Stop::Halted => {
                shutdown.cancelled().await;
                break;
            }
        }
    }
    tracing::info!("Partition stopped.");
}

async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

/// Why recovery did not find where to go on.
#[derive(Debug, thiserror::Error)]
enum RecoverError {
    #[error(transparent)]
    Ledger(#[from] recovery::RecoveryError),
    #[error(transparent)]
    Kafka(#[from] service_runtime::kafka::KafkaError),
    #[error("the identities of recent batches cannot be read back: {0}")]
    Dedup(#[from] dedup::LoadError),
    #[error("the last batch cannot be rebuilt: {0}")]
    Rebuild(String),
    #[error("shutdown while writing the last batch again")]
    Stopped,
    #[error(transparent)]
    Lake(#[from] crate::lake::BacklogError),
}

/// Reads the ledger: the offset to go on from, and the identities stored in the window.
/// Writes the last batch's objects again if any is missing (the crash came between its
/// entry and its objects).
async fn recover(shared: &Shared, partition: i32, writer: &LedgerWriter) -> Result<(i64, Seen), RecoverError> {
    let label = partition.to_string();
    let settings = shared.config.dedup;
    let (recovered, last) = recovery::read(shared.store.as_ref(), &shared.layout, partition).await?;
    let seen = match &last {
        Some(last) => {
            let started = std::time::Instant::now();
            let seen =
                dedup::load(shared.store.as_ref(), &shared.layout, partition, last, settings, Utc::now()).await?;
            if settings.enabled() {
                tracing::info!(ids = seen.len(), took = ?started.elapsed(), "Identities of the window read back.");
            }
            seen
        }
        None => Seen::new(settings),
    };
    shared.metrics.dedup_remembered.with_label_values(&[&label]).set(seen.len() as i64);
    let (next, action) = match recovered {
        Recovered::Empty => {
            let earliest = fetch::earliest_offset(shared, partition).await?;
            tracing::info!(earliest, "No ledger yet: starting from the earliest offset Kafka has.");
            register_with_lake(shared, partition, earliest).await?;
            return Ok((earliest, seen));
        }
        Recovered::Resume { next, action } => {
            if action == "entry_gone" && settings.enabled() {
                tracing::warn!("Without the last ledger entry, resends of events stored before it are not removed.");
            }
            (next, action)
        }
        Recovered::Incomplete { entry, missing } => {
            tracing::warn!(first_offset = entry.first_offset, ?missing, "Writing the last batch's objects again.");
            (entry.next_offset, write_again(shared, partition, writer, &entry, &missing).await?)
        }
    };
    shared.metrics.recoveries.with_label_values(&[&label, action]).inc();
    register_with_lake(shared, partition, next).await?;
    Ok((next, seen))
}

/// Hands the committer the ledger entries of `partition` its table does not hold yet
/// (the ledger ends at `next`): what a crash, or the previous owner, left unappended.
async fn register_with_lake(shared: &Shared, partition: i32, next: i64) -> Result<(), RecoverError> {
    let Some(committer) = &shared.lake else { return Ok(()) };
    let state = committer.lake().state().await.map_err(crate::lake::BacklogError::from)?;
    let held = state.offsets.get(&partition).copied();
    let (start, backlog) = crate::lake::backlog(shared.store.as_ref(), &shared.layout, partition, held, next).await?;
    if !backlog.is_empty() {
        tracing::info!(
            held,
            entries = backlog.len(),
            "Ledger entries not in the Iceberg table yet: appending them with the next commit."
        );
    }
    committer.register(partition, start, backlog);
    Ok(())
}

/// Rebuilds the batch of `entry` from Kafka and writes its objects; the recoveries label.
async fn write_again(
    shared: &Shared,
    partition: i32,
    writer: &LedgerWriter,
    entry: &Entry,
    missing: &[String],
) -> Result<&'static str, RecoverError> {
    match fetch::rebuild(shared, partition, entry).await {
        Ok(rebuilt) => {
            writer.write_again(entry, rebuilt).await.map_err(|_| RecoverError::Stopped)?;
            Ok("rewrote")
        }
        // A crash leaves a recent batch incomplete, whose records Kafka still has. When it
        // has not, the objects went missing some other way and nothing can rebuild them:
        // stopping the partition for good would not bring them back.
        Err(RebuildError::Gone(why)) => {
            tracing::error!(
                first_offset = entry.first_offset,
                next_offset = entry.next_offset,
                ?missing,
                why,
                "The last batch's objects are missing and Kafka no longer has its records: they cannot be \
                 written again. Going on; the audit reports them."
            );
            Ok("objects_gone")
        }
        Err(RebuildError::Failed(error)) => Err(RecoverError::Rebuild(error)),
    }
}
