//! Commits batches of one partition: the ledger entry first, with `If-None-Match: *`, then
//! the objects it names; S3 failures are retried (one jittered policy) until they succeed
//! or shutdown is asked for; a checkpoint now and then. The same writes, unconditional,
//! put a crashed batch's objects back during recovery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use service_runtime::retry::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::store::{Object, PutError, Store};
use super::{Checkpoint, Entry, GZIP_JSONL, PARQUET, get_json, object_metadata};
use crate::batch::{Bodies, LakeBody, Sealed};
use crate::health::Health;
use crate::lake::Committer;
use crate::layout::Layout;
use crate::metrics::Metrics;
use store_lake::LakeFile;

/// Why a commit did not complete.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Another writer holds the entry's key: two instances own the partition.
    #[error("another instance wrote this ledger entry first")]
    Fenced,
    /// Shutdown was asked for while S3 was failing. When the entry was written, recovery
    /// writes its objects on the next start; when it was not, the batch is read again.
    #[error("stopped while S3 was failing")]
    Stopped,
}

/// How the writer behaves.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Write entries with `If-None-Match: *` (`S3_CONDITIONAL_WRITES`).
    pub conditional: bool,
    /// The least time between two checkpoints (`CHECKPOINT_INTERVAL`).
    pub checkpoint_interval: Duration,
}

/// Writes the ledger of one partition. Clones share their state: the partition loop hands
/// one to the task that commits a batch while the next one fills.
#[derive(Clone)]
pub struct LedgerWriter {
    store: Arc<dyn Store>,
    layout: Layout,
    topic: String,
    partition: i32,
    identity: String,
    settings: WriterSettings,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: CancellationToken,
    progress: Arc<Mutex<Progress>>,
    lake: Option<Arc<Committer>>,
}

/// What the checkpoint needs to know.
struct Progress {
    /// The first and next offsets of the last entry this writer committed.
    last_entry: Option<(i64, i64)>,
    last_checkpoint: Instant,
}

impl LedgerWriter {
    /// A writer for `partition` of `topic`, signing entries as `identity`; S3 failures
    /// are retried until `shutdown`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        layout: Layout,
        topic: &str,
        partition: i32,
        identity: &str,
        settings: WriterSettings,
        metrics: Metrics,
        health: Arc<Health>,
        shutdown: CancellationToken,
    ) -> LedgerWriter {
        LedgerWriter {
            store,
            layout,
            topic: topic.to_owned(),
            partition,
            identity: identity.to_owned(),
            settings,
            metrics,
            health,
            shutdown,
            progress: Arc::new(Mutex::new(Progress { last_entry: None, last_checkpoint: Instant::now() })),
            lake: None,
        }
    }

    /// The same writer, also writing the batches' Iceberg files and handing them to
    /// `committer` once written.
    pub fn with_lake(mut self, committer: Option<Arc<Committer>>) -> LedgerWriter {
        self.lake = committer;
        self
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // Nothing panics while holding it; a poisoned lock still holds plain offsets.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ledger entry of a sealed batch.
    pub fn entry(&self, sealed: &Sealed) -> Entry {
        let (partition, first_offset, dt) = (self.partition, sealed.first_offset, sealed.dt);
        Entry {
            records: sealed.records,
            stored: sealed.stored,
            dead_lettered: sealed.dead_lettered,
            skipped: sealed.skipped,
            duplicates: sealed.duplicates,
            event_ids: sealed.event_ids.clone(),
            dt,
            data_key: dt.filter(|_| sealed.data.is_some()).map(|dt| self.layout.data_key(partition, first_offset, dt)),
            parquet_key: dt
                .filter(|_| sealed.parquet.is_some())
                .map(|dt| self.layout.parquet_key(partition, first_offset, dt)),
            dead_letter_key: dt
                .filter(|_| sealed.dead_lettered > 0)
                .map(|dt| self.layout.dead_letter_key(partition, first_offset, dt)),
            lake_files: self.lake.as_ref().zip(sealed.lake.as_ref()).map(|(committer, bodies)| {
                bodies
                    .iter()
                    .map(|body| LakeFile {
                        path: committer.lake().file_path(body.day, partition, first_offset),
                        day: body.day,
                        rows: body.rows,
                        bytes: body.body.len() as u64,
                    })
                    .collect()
            }),
            lost: false,
            ..self.loss(first_offset, sealed.next_offset)
        }
    }

    /// The entry that records offsets `first_offset..next_offset` as deleted by Kafka's
    /// retention before they were read.
    pub fn loss(&self, first_offset: i64, next_offset: i64) -> Entry {
        Entry {
            topic: self.topic.clone(),
            partition: self.partition,
            first_offset,
            next_offset,
            records: 0,
            stored: 0,
            dead_lettered: 0,
            skipped: 0,
            duplicates: 0,
            dt: None,
            data_key: None,
            parquet_key: None,
            dead_letter_key: None,
            lake_files: self.lake.as_ref().map(|_| Vec::new()),
            lost: true,
            event_ids: None,
            dedup_from: None,
            writer: self.identity.clone(),
            written_at: Utc::now(),
        }
    }

    /// Writes `entry` (conditionally), then its objects. `Ok` means the batch is durable:
    /// from the entry on, a crash leaves work that recovery completes.
    pub async fn commit(&self, entry: &Entry, bodies: Bodies) -> Result<(), CommitError> {
        let span = batch_span(entry);
        self.commit_in_span(entry, bodies).instrument(span).await
    }

    async fn commit_in_span(&self, entry: &Entry, bodies: Bodies) -> Result<(), CommitError> {
        let key = self.layout.entry_key(self.partition, entry.first_offset);
        let body = serde_json::to_vec_pretty(entry).unwrap_or_default();
        let object = Object { body: body.into(), content_type: "application/json", metadata: Default::default() };
        match self.write("entry", &key, &object, self.settings.conditional).await {
            Ok(()) => {}
            // A retry after a lost answer finds the entry this writer wrote.
            Err(WriteError::Exists) if self.is_ours(&key, entry).await => {}
            Err(WriteError::Exists) => return Err(CommitError::Fenced),
            Err(WriteError::Stopped) => return Err(CommitError::Stopped),
        }
        // From here until "Batch committed." a crash leaves an entry whose objects recovery
        // writes (the crash test kills the process on this line).
        tracing::debug!("Ledger entry written; writing its objects.");
        self.write_objects(entry, bodies).await?;
        tracing::debug!("Batch committed.");
        if let Some(committer) = &self.lake {
            committer.submit(entry);
        }
        let due = {
            let mut progress = self.progress();
            progress.last_entry = Some((entry.first_offset, entry.next_offset));
            progress.last_checkpoint.elapsed() >= self.settings.checkpoint_interval
        };
        if due {
            self.checkpoint().await;
        }
        Ok(())
    }

    /// Writes the objects of an entry recovery found incomplete, from its batch rebuilt
    /// from Kafka: the same records give the same bytes under the same keys.
    pub async fn write_again(&self, entry: &Entry, mut rebuilt: Sealed) -> Result<(), CommitError> {
        let span = batch_span(entry);
        if (rebuilt.stored, rebuilt.dead_lettered) != (entry.stored, entry.dead_lettered) {
            span.in_scope(|| {
                tracing::error!(
                    stored = rebuilt.stored,
                    expected_stored = entry.stored,
                    dead_lettered = rebuilt.dead_lettered,
                    expected_dead_lettered = entry.dead_lettered,
                    "The batch rebuilt from Kafka differs from its ledger entry (did validation rules change?)."
                );
            });
        }
        self.write_objects(entry, rebuilt.take_bodies()).instrument(span).await?;
        self.progress().last_entry = Some((entry.first_offset, entry.next_offset));
        Ok(())
    }

    /// The data and dead-letter objects `entry` names, each with the metadata the audit
    /// and recovery check, written at the same time.
    async fn write_objects(&self, entry: &Entry, bodies: Bodies) -> Result<(), CommitError> {
        let (stored, dead) = (object_metadata(entry, entry.stored), object_metadata(entry, entry.dead_lettered));
        let (data, parquet, dead, lake) = tokio::join!(
            self.write_object("data", entry.data_key.as_deref(), bodies.data, GZIP_JSONL, stored.clone()),
            self.write_object("parquet", entry.parquet_key.as_deref(), bodies.parquet, PARQUET, stored),
            self.write_object("dead_letter", entry.dead_letter_key.as_deref(), bodies.dead_letters, GZIP_JSONL, dead),
            self.write_lake_files(entry, bodies.lake),
        );
        data.and(parquet).and(dead).and(lake)
    }

    /// The Iceberg table's files of `entry`, at their locations (in the bucket, or in an S3
    /// Tables table's storage), each with its rows as `record-count`, as the other objects.
    async fn write_lake_files(&self, entry: &Entry, bodies: Vec<LakeBody>) -> Result<(), CommitError> {
        let files = entry.lake_files.iter().flatten();
        for (file, body) in files.zip(bodies) {
            let metadata = object_metadata(entry, file.rows);
            self.write_object("iceberg", Some(&file.path), Some(body.body), PARQUET, metadata).await?;
        }
        Ok(())
    }

    async fn write_object(
        &self,
        operation: &str,
        key: Option<&str>,
        body: Option<bytes::Bytes>,
        content_type: &'static str,
        metadata: HashMap<String, String>,
    ) -> Result<(), CommitError> {
        let (Some(key), Some(body)) = (key, body) else { return Ok(()) };
        let object = Object { body, content_type, metadata };
        match self.write(operation, key, &object, false).await {
            Ok(()) | Err(WriteError::Exists) => Ok(()),
            Err(WriteError::Stopped) => Err(CommitError::Stopped),
        }
    }

    /// After a write whose answer was lost, the retry finds the entry: is it this one?
    async fn is_ours(&self, key: &str, entry: &Entry) -> bool {
        match get_json::<Entry>(self.store.as_ref(), key).await {
            Ok(Some(found)) => found.writer == entry.writer && found.next_offset == entry.next_offset,
            _ => false,
        }
    }

    /// Writes one object, retrying with backoff while S3 fails; gives up only when an
    /// attempt fails after shutdown was asked for. A shutdown during a wait ends the wait,
    /// not the write: one more attempt is made, so that a batch whose S3 came back is
    /// committed before the process exits.
    async fn write(&self, operation: &str, key: &str, object: &Object, if_absent: bool) -> Result<(), WriteError> {
        let mut backoff = Backoff::dependency();
        loop {
            let timer = self.metrics.s3_duration.with_label_values(&[operation]).start_timer();
            match self.store.put(key, object, if_absent).await {
                Ok(()) => {
                    timer.observe_duration();
                    return Ok(());
                }
                Err(PutError::Exists) => {
                    timer.observe_duration();
                    return Err(WriteError::Exists);
                }
                Err(PutError::Failed(error)) => {
                    timer.stop_and_discard();
                    self.metrics.s3_errors.with_label_values(&[operation]).inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, retry_in = ?wait, "S3 write failed; keeping the batch.");
                    self.health.set(self.partition, Err(format!("S3 writes failing: {error}")));
                    if self.shutdown.is_cancelled() {
                        return Err(WriteError::Stopped);
                    }
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Writes the recovery hint naming the last committed entry; a failure only makes the
    /// next recovery list more.
    pub async fn checkpoint(&self) {
        let Some((entry_first_offset, next_offset)) = self.progress().last_entry else { return };
        let checkpoint = Checkpoint { entry_first_offset, next_offset, written_at: Utc::now() };
        let key = self.layout.checkpoint_key(self.partition);
        let body = serde_json::to_vec(&checkpoint).unwrap_or_default();
        let object = Object { body: body.into(), content_type: "application/json", metadata: Default::default() };
        let timer = self.metrics.s3_duration.with_label_values(&["checkpoint"]).start_timer();
        match self.store.put(&key, &object, false).await {
            Ok(()) => {
                timer.observe_duration();
                self.progress().last_checkpoint = Instant::now();
            }
            Err(error) => {
                timer.stop_and_discard();
                self.metrics.s3_errors.with_label_values(&["checkpoint"]).inc();
                tracing::warn!(%error, "The checkpoint was not written.");
            }
        }
    }
}

/// The span of the work on one batch: its logs carry its offsets (and, from the
/// partition's span, its partition).
fn batch_span(entry: &Entry) -> tracing::Span {
    tracing::info_span!("batch", first_offset = entry.first_offset, next_offset = entry.next_offset)
}

#[derive(Debug)]
enum WriteError {
    Exists,
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::memory::{Fixture, PARTITION};

    #[tokio::test(start_paused = true)]
    async fn a_commit_writes_the_entry_first_then_its_objects_then_a_checkpoint() {
        let ledger = Fixture::new();
        let mut writer = ledger.writer("a", &CancellationToken::new());
        let (entry, result) = ledger.commit(&mut writer, 0, 50).await;
        assert_eq!(result, Ok(()));
        let entry_key = ledger.layout.entry_key(PARTITION, 0);
        let (data_key, dead_key) = (entry.data_key.clone().unwrap(), entry.dead_letter_key.clone().unwrap());
        let checkpoint_key = ledger.layout.checkpoint_key(PARTITION);
        assert_eq!(
            ledger.store.puts(),
            [entry_key.clone(), data_key.clone(), dead_key.clone(), checkpoint_key.clone()]
        );

        let stored: Entry = serde_json::from_slice(&ledger.store.object(&entry_key).unwrap().body).unwrap();
        assert_eq!(stored, entry);
        assert_eq!((entry.first_offset, entry.next_offset, entry.records), (0, 50, 50));
        assert_eq!(entry.stored + entry.dead_lettered + entry.skipped, 50);
        for (key, count) in [(&data_key, entry.stored), (&dead_key, entry.dead_lettered)] {
            let object = ledger.store.object(key).unwrap();
            assert_eq!(object.content_type, GZIP_JSONL);
            assert_eq!(object.metadata.get("record-count"), Some(&count.to_string()), "{key}");
            assert_eq!(object.metadata.get("last-offset").map(String::as_str), Some("49"), "{key}");
        }
        let checkpoint: Checkpoint =
            serde_json::from_slice(&ledger.store.object(&checkpoint_key).unwrap().body).unwrap();
        assert_eq!((checkpoint.entry_first_offset, checkpoint.next_offset), (0, 50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_parquet_file_is_written_beside_the_json_object_and_checked_by_its_rows() {
        let mut ledger = Fixture::new();
        ledger.formats = crate::config::Formats { json: true, parquet: true, iceberg: false };
        let mut writer = ledger.writer("a", &CancellationToken::new());
        let (entry, result) = ledger.commit(&mut writer, 0, 50).await;
        assert_eq!(result, Ok(()));
        let parquet_key = entry.parquet_key.clone().unwrap();
        assert_eq!(parquet_key, ledger.layout.parquet_key(PARTITION, 0, entry.dt.unwrap()));
        assert_eq!(entry.objects().count(), 3, "data, parquet, dead letters");
        let object = ledger.store.object(&parquet_key).unwrap();
        assert_eq!(object.content_type, PARQUET);
        assert_eq!(object.metadata.get("record-count"), Some(&entry.stored.to_string()));
        let store = ledger.store.as_ref();
        for (key, count) in entry.objects() {
            assert_eq!(crate::ledger::check_object(store, key, count, true).await.unwrap(), None, "{key}");
        }
        // A file cut short keeps its metadata; the deep check reads it and says so.
        let mut cut = object.clone();
        cut.body = cut.body.slice(..cut.body.len() / 2);
        ledger.store.put(&parquet_key, &cut, false).await.unwrap();
        let problem = crate::ledger::check_object(store, &parquet_key, entry.stored, true).await.unwrap();
        assert!(problem.as_ref().is_some_and(|p| p.contains("is not a valid Parquet file")), "{problem:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn s3_failures_are_retried_until_the_batch_is_written_and_counted() {
        let ledger = Fixture::new();
        let mut writer = ledger.writer("a", &CancellationToken::new());
        ledger.store.fail_puts("_ledger/", 2);
        ledger.store.fail_puts("event_type=", 3);
        let (entry, result) = ledger.commit(&mut writer, 0, 20).await;
        assert_eq!(result, Ok(()));
        assert!(ledger.store.object(&entry.data_key.clone().unwrap()).is_some());
        assert_eq!(ledger.metric("consumer_s3_errors_total", &[("operation", "entry")]), 2.0);
        assert_eq!(ledger.metric("consumer_s3_errors_total", &[("operation", "data")]), 3.0);
        assert_eq!(ledger.metric("consumer_s3_request_duration_seconds", &[("operation", "data")]), 1.0);
        let health = ledger.health.summary();
        assert!(health.as_ref().is_err_and(|h| h.contains("S3 writes failing")), "{health:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_another_instance_wrote_fences_this_one_off_before_any_object() {
        let ledger = Fixture::new();
        let (mut a, mut b) =
            (ledger.writer("a", &CancellationToken::new()), ledger.writer("b", &CancellationToken::new()));
        let (won, result) = ledger.commit(&mut a, 0, 30).await;
        assert_eq!(result, Ok(()));
        let before = ledger.store.puts();
        let (_, result) = ledger.commit(&mut b, 0, 40).await;
        assert_eq!(result, Err(CommitError::Fenced));
        assert_eq!(ledger.store.puts(), before, "the fenced writer wrote something");
        let entry: Entry =
            serde_json::from_slice(&ledger.store.object(&ledger.layout.entry_key(PARTITION, 0)).unwrap().body).unwrap();
        assert_eq!(entry, won);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_whose_answer_was_lost_is_recognised_as_its_own_on_retry() {
        let ledger = Fixture::new();
        let mut writer = ledger.writer("a", &CancellationToken::new());
        ledger.store.lose_answer("_ledger/");
        let (entry, result) = ledger.commit(&mut writer, 0, 30).await;
        assert_eq!(result, Ok(()));
        assert!(ledger.store.object(&entry.data_key.clone().unwrap()).is_some());
        assert_eq!(ledger.metric("consumer_s3_errors_total", &[("operation", "entry")]), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_s3_fails_stops_the_commit_instead_of_retrying_forever() {
        let ledger = Fixture::new();
        let shutdown = CancellationToken::new();
        let mut writer = ledger.writer("a", &shutdown);
        ledger.store.set_unreachable(true);
        shutdown.cancel();
        let (_, result) = ledger.commit(&mut writer, 0, 10).await;
        assert_eq!(result, Err(CommitError::Stopped));
        assert!(ledger.store.keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_retry_wait_makes_one_last_attempt() {
        let ledger = Fixture::new();
        let shutdown = CancellationToken::new();
        let mut writer = ledger.writer("a", &shutdown);
        // The data object's first PUT fails; shutdown comes during the wait before the
        // next attempt (the first wait is at least 200 ms), and S3 is back by then.
        ledger.store.fail_puts("event_type=", 1);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shutdown.cancel();
        };
        let ((entry, result), ()) = tokio::join!(ledger.commit(&mut writer, 0, 20), stop);
        assert_eq!(result, Ok(()));
        assert!(ledger.store.object(&entry.data_key.clone().unwrap()).is_some());
        assert_eq!(ledger.metric("consumer_s3_errors_total", &[("operation", "data")]), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_checkpoint_does_not_fail_the_commit() {
        let ledger = Fixture::new();
        let mut writer = ledger.writer("a", &CancellationToken::new());
        ledger.store.fail_puts("checkpoint", 1);
        let (_, result) = ledger.commit(&mut writer, 0, 10).await;
        assert_eq!(result, Ok(()));
        assert!(ledger.store.object(&ledger.layout.checkpoint_key(PARTITION)).is_none());
        assert_eq!(ledger.metric("consumer_s3_errors_total", &[("operation", "checkpoint")]), 1.0);
    }
}
