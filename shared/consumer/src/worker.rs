//! One partition's loop: recover the position from the ledger, then fetch, batch and
//! commit (ledger entry first, objects second) until shutdown. See `ledger.rs` for why
//! this stores every record exactly once across crashes, restarts and redeliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use service_runtime::kafka::{KafkaCluster, KafkaError, within};
use service_runtime::readiness::Check;
use service_runtime::retry::Backoff;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Sealed};
use crate::config::{ConsumerConfig, OutOfRangePolicy};
use crate::layout::Layout;
use crate::ledger::{Bucket, Checkpoint, Entry, GZIP_JSONL, GetError, PutError, object_metadata};
use crate::metrics::Metrics;

/// How long a fenced-off instance waits before it looks at the ledger again.
const FENCE_BACKOFF: Duration = Duration::from_secs(30);
/// The longest one fetch waits for records to arrive.
const MAX_FETCH_WAIT: Duration = Duration::from_millis(1000);

/// What the partition loops share.
pub struct Shared {
    /// The consumer's settings.
    pub config: ConsumerConfig,
    /// Key names.
    pub layout: Layout,
    /// S3.
    pub bucket: Bucket,
    /// Kafka.
    pub cluster: Arc<KafkaCluster>,
    /// Metrics.
    pub metrics: Metrics,
    /// Per-partition progress, for readiness.
    pub health: Health,
    /// This process's identity in the ledger.
    pub writer: String,
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

/// Runs partition `partition` until `shutdown`.
pub async fn run_partition(shared: Arc<Shared>, partition: i32, shutdown: CancellationToken) {
    let label = partition.to_string();
    shared.health.set(partition, Err("recovering its position from S3".to_owned()));
    let mut retry = Backoff::dependency();
    while !shutdown.is_cancelled() {
        let next = match recover(&shared, partition).await {
            Ok(next) => next,
            Err(error) => {
                let wait = retry.next_wait();
                tracing::error!(partition, %error, retry_in = ?wait, "Recovery failed; retrying.");
                shared.health.set(partition, Err(format!("recovery failed: {error}")));
                sleep_or_stop(wait, &shutdown).await;
                continue;
            }
        };
        retry.reset();
        tracing::info!(partition, next_offset = next, "Partition recovered.");
        let mut state = PartitionLoop::new(Arc::clone(&shared), partition, next, shutdown.clone());
        match state.consume().await {
            Stop::Shutdown => break,
            Stop::Fenced => {
                shared.metrics.fenced.with_label_values(&[&label]).inc();
                tracing::error!(
                    partition,
                    "Another instance wrote the next ledger entry of this partition: two instances own it. \
                     Backing off; check CONSUMER_PARTITIONS / CONSUMER_INSTANCE(S)."
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
    tracing::info!(partition, "Partition stopped.");
}

async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

async fn partition_client(shared: &Shared, partition: i32) -> Result<PartitionClient, KafkaError> {
    let client = shared.cluster.client().await?;
    let settings = shared.cluster.settings();
    let topic = shared.config.common.topic.clone();
    within(
        settings.request_timeout,
        "opening the partition",
        client.partition_client(topic, partition, UnknownTopicHandling::Retry),
    )
    .await
}

/// Reads the ledger: the offset to go on from. Writes the last batch's objects again if
/// any is missing (the crash came between its entry and its objects).
async fn recover(shared: &Shared, partition: i32) -> Result<i64, String> {
    let layout = &shared.layout;
    let checkpoint_key = layout.checkpoint_key(partition);
    // The checkpoint only saves listing: one that cannot be read is ignored, and the next
    // checkpoint replaces it. S3 being unreachable is not that: recovery waits for it.
    let checkpoint = match shared.bucket.get(&checkpoint_key).await {
        Ok(None) => None,
        Ok(Some(bytes)) => serde_json::from_slice::<Checkpoint>(&bytes)
            .inspect_err(|error| {
                tracing::warn!(partition, %error, "The checkpoint is not valid; listing the whole ledger.");
            })
            .ok(),
        Err(GetError::Body(error)) => {
            tracing::warn!(partition, %error, "The checkpoint cannot be read; listing the whole ledger.");
            None
        }
        Err(error @ GetError::Request(_)) => return Err(error.into()),
    };
    let after = checkpoint.as_ref().map(|c| layout.entry_key(partition, c.entry_first_offset));
    let keys = shared.bucket.list(&layout.ledger_prefix(partition), after.as_deref()).await?;
    let last = keys.into_iter().rfind(|k| Layout::entry_offset(k).is_some()).or(after);
    let Some(last) = last else {
        let client = partition_client(shared, partition).await.map_err(|e| e.to_string())?;
        let timeout = shared.cluster.settings().request_timeout;
        let earliest = within(timeout, "reading the earliest offset", client.get_offset(OffsetAt::Earliest))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(partition, earliest, "No ledger yet: starting from the earliest offset Kafka has.");
        return Ok(earliest);
    };
    let label = partition.to_string();
    let Some(entry) = shared.bucket.get_json::<Entry>(&last).await? else {
        // Only the checkpoint's own entry can be missing here (listed keys exist). A
        // checkpoint is written after its entry's objects, so they were complete.
        let Some(checkpoint) = checkpoint else {
            return Err(format!("{last} was listed but cannot be read"));
        };
        tracing::warn!(
            partition,
            entry = %last,
            next_offset = checkpoint.next_offset,
            "The ledger entry the checkpoint names is gone (deleted, or expired by a lifecycle rule); \
             going on from the checkpoint."
        );
        shared.metrics.recoveries.with_label_values(&[&label, "entry_gone"]).inc();
        return Ok(checkpoint.next_offset);
    };
    // An object counts when it carries the record count its entry promises: the same HEAD
    // as an existence check, and the audit's own test. Amazon S3 and the local SeaweedFS
    // make a PUT atomic, so there a present object is a complete one; on an S3-compatible
    // server whose PUT is not, a writer that dies mid-PUT can leave one without metadata.
    let mut missing = Vec::new();
    for (key, count) in entry.objects() {
        if let Some(problem) = crate::audit::check_object(&shared.bucket, key, count, false).await? {
            tracing::info!(partition, %problem, "An object of the last batch is not complete.");
            missing.push(key.to_owned());
        }
    }
    let action = if missing.is_empty() {
        "clean"
    } else {
        tracing::warn!(
            partition,
            first_offset = entry.first_offset,
            ?missing,
            "Writing the last batch's objects again."
        );
        match rewrite(shared, partition, &entry).await {
            Ok(()) => "rewrote",
            // A crash leaves a recent batch incomplete, whose records Kafka still has. When it
            // has not, the objects went missing some other way and nothing can rebuild them:
            // stopping the partition for good would not bring them back.
            Err(RewriteError::Gone(why)) => {
                tracing::error!(
                    partition,
                    first_offset = entry.first_offset,
                    next_offset = entry.next_offset,
                    ?missing,
                    why,
                    "The last batch's objects are missing and Kafka no longer has its records: they cannot be \
                     written again. Going on; the audit reports them."
                );
                "objects_gone"
            }
            Err(RewriteError::Failed(error)) => return Err(error),
        }
    };
    shared.metrics.recoveries.with_label_values(&[&label, action]).inc();
    Ok(entry.next_offset)
}

/// Why the last batch's objects were not written again.
enum RewriteError {
    /// Kafka no longer has the batch's records (retention, DeleteRecords).
    Gone(String),
    /// Anything else (Kafka or S3 unreachable): recovery is retried.
    Failed(String),
}

/// Rebuilds the batch of `entry` from Kafka and writes its objects under its keys.
async fn rewrite(shared: &Shared, partition: i32, entry: &Entry) -> Result<(), RewriteError> {
    let client = partition_client(shared, partition).await.map_err(|e| RewriteError::Failed(e.to_string()))?;
    let settings = shared.cluster.settings();
    let earliest =
        within(settings.request_timeout, "reading the earliest offset", client.get_offset(OffsetAt::Earliest))
            .await
            .map_err(|e| RewriteError::Failed(e.to_string()))?;
    if earliest > entry.first_offset {
        return Err(RewriteError::Gone(format!(
            "the partition starts at offset {earliest}, after the batch's first offset {}",
            entry.first_offset
        )));
    }
    let timeout = settings.request_timeout + MAX_FETCH_WAIT;
    let config = &shared.config;
    let mut batch = Batch::new(entry.first_offset);
    let mut offset = entry.first_offset;
    while offset < entry.next_offset {
        let fetched = within(
            timeout,
            "fetching a batch to write again",
            client.fetch(offset, 1..config.fetch_max_bytes, MAX_FETCH_WAIT.as_millis() as i32),
        )
        .await;
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(KafkaError::Client {
                source: ClientError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. },
                ..
            }) => return Err(RewriteError::Gone(format!("offset {offset} is out of range"))),
            Err(e) => {
                return Err(RewriteError::Failed(format!(
                    "the records of ledger entry {} cannot be read again: {e}",
                    entry.first_offset
                )));
            }
        };
        for record in &fetched.records {
            if record.offset < offset || record.offset >= entry.next_offset {
                continue;
            }
            batch.push(config.event_type, &config.common.topic, partition, record);
        }
        if fetched.next_offset <= offset {
            return Err(RewriteError::Gone(format!(
                "Kafka has no records for offsets {offset}..{}",
                entry.next_offset
            )));
        }
        offset = fetched.next_offset;
    }
    let sealed = batch.seal();
    if (sealed.stored, sealed.dead_lettered) != (entry.stored, entry.dead_lettered) {
        tracing::error!(
            partition,
            first_offset = entry.first_offset,
            stored = sealed.stored,
            expected_stored = entry.stored,
            "The batch rebuilt from Kafka differs from its ledger entry (did validation rules change?)."
        );
    }
    let bucket = &shared.bucket;
    if let (Some(key), Some(data)) = (&entry.data_key, sealed.data) {
        bucket
            .put(key, data, GZIP_JSONL, object_metadata(entry, sealed.stored), false)
            .await
            .map_err(|e| RewriteError::Failed(e.to_string()))?;
    }
    if let (Some(key), Some(dead)) = (&entry.dead_letter_key, sealed.dead_letters) {
        bucket
            .put(key, dead, GZIP_JSONL, object_metadata(entry, sealed.dead_lettered), false)
            .await
            .map_err(|e| RewriteError::Failed(e.to_string()))?;
    }
    Ok(())
}

/// The state of one partition between recoveries.
struct PartitionLoop {
    shared: Arc<Shared>,
    partition: i32,
    label: String,
    next: i64,
    batch: Batch,
    client: Option<PartitionClient>,
    shutdown: CancellationToken,
    last_entry: Option<i64>,
    last_checkpoint: Instant,
    high_watermark: i64,
}

impl PartitionLoop {
    fn new(shared: Arc<Shared>, partition: i32, next: i64, shutdown: CancellationToken) -> PartitionLoop {
        shared.metrics.committed_offset.with_label_values(&[&partition.to_string()]).set(next);
        shared.health.set(partition, Ok(format!("resumed at offset {next}")));
        PartitionLoop {
            shared,
            partition,
            label: partition.to_string(),
            next,
            batch: Batch::new(next),
            client: None,
            shutdown,
            last_entry: None,
            last_checkpoint: Instant::now(),
            high_watermark: next,
        }
    }

    async fn consume(&mut self) -> Stop {
        let outcome = self.consume_until_stopped().await;
        if outcome == Stop::Shutdown {
            // SIGTERM: the open batch is committed before the process exits.
            if let Err(stop) = self.flush().await {
                tracing::warn!(
                    partition = self.partition,
                    ?stop,
                    "The open batch was not committed; it will be read again."
                );
            }
            self.checkpoint().await;
        }
        outcome
    }

    async fn consume_until_stopped(&mut self) -> Stop {
        let limits = self.shared.config.batch;
        let mut backoff = Backoff::dependency();
        loop {
            if self.shutdown.is_cancelled() {
                return Stop::Shutdown;
            }
            if !self.batch.is_empty() && self.batch.age() >= limits.max_age {
                if let Err(stop) = self.flush().await {
                    return stop;
                }
                continue;
            }
            let client = match self.client.take() {
                Some(client) => client,
                None => match partition_client(&self.shared, self.partition).await {
                    Ok(client) => client,
                    Err(error) => {
                        self.kafka_failed("open", &error.to_string(), &mut backoff).await;
                        continue;
                    }
                },
            };
            let wait = if self.batch.is_empty() {
                MAX_FETCH_WAIT
            } else {
                limits.max_age.saturating_sub(self.batch.age()).clamp(Duration::from_millis(10), MAX_FETCH_WAIT)
            };
            let timeout = self.shared.cluster.settings().request_timeout + wait;
            let fetch = client.fetch(self.next, 1..self.shared.config.fetch_max_bytes, wait.as_millis() as i32);
            let fetched = tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
                fetched = within(timeout, "fetching records", fetch) => fetched,
            };
            match fetched {
                Ok(fetched) => {
                    self.client = Some(client);
                    backoff.reset();
                    self.high_watermark = fetched.high_watermark;
                    self.shared.metrics.high_watermark.with_label_values(&[&self.label]).set(fetched.high_watermark);
                    self.update_lag();
                    for record in &fetched.records {
                        if record.offset < self.next {
                            continue;
                        }
                        if !self.batch.is_empty()
                            && !self.batch.fits(record)
                            && let Err(stop) = self.flush().await
                        {
                            return stop;
                        }
                        let config = &self.shared.config;
                        self.batch.push(config.event_type, &config.common.topic, self.partition, record);
                        self.next = record.offset + 1;
                        if self.batch.is_full(&limits)
                            && let Err(stop) = self.flush().await
                        {
                            return stop;
                        }
                    }
                    // Offsets after the last record that hold none (a transaction's marker):
                    // fetching from the last record + 1 would return them again at once.
                    if fetched.next_offset > self.next {
                        self.next = fetched.next_offset;
                        self.batch.cover_to(self.next);
                    }
                }
                Err(KafkaError::Client {
                    source: ClientError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. },
                    ..
                }) => {
                    self.client = Some(client);
                    if let Err(stop) = self.out_of_range().await {
                        return stop;
                    }
                }
                Err(error) => self.kafka_failed("fetch", &error.to_string(), &mut backoff).await,
            }
        }
    }

    async fn kafka_failed(&mut self, operation: &str, error: &str, backoff: &mut Backoff) {
        self.shared.metrics.kafka_errors.with_label_values(&[operation]).inc();
        let wait = backoff.next_wait();
        tracing::warn!(partition = self.partition, error, retry_in = ?wait, "Kafka request failed; reconnecting.");
        self.shared.health.set(self.partition, Err(format!("Kafka: {error}")));
        self.client = None;
        self.shared.cluster.reset().await;
        sleep_or_stop(wait, &self.shutdown).await;
    }

    fn update_lag(&self) {
        let lag = (self.high_watermark - self.committed()).max(0);
        self.shared.metrics.lag.with_label_values(&[&self.label]).set(lag);
    }

    fn committed(&self) -> i64 {
        self.batch.first_offset
    }

    /// The next offset is no longer in Kafka (or was never there).
    async fn out_of_range(&mut self) -> Result<(), Stop> {
        self.shared.metrics.out_of_range.with_label_values(&[&self.label]).inc();
        let Some(client) = self.client.as_ref() else { return Ok(()) };
        let timeout = self.shared.cluster.settings().request_timeout;
        let earliest = within(timeout, "reading the earliest offset", client.get_offset(OffsetAt::Earliest)).await;
        let latest = within(timeout, "reading the latest offset", client.get_offset(OffsetAt::Latest)).await;
        let (Ok(earliest), Ok(latest)) = (earliest, latest) else {
            self.client = None;
            return Ok(());
        };
        if self.next > latest {
            let problem = format!(
                "offset {} is beyond the end of the partition ({latest}): was the topic deleted and created again?",
                self.next
            );
            tracing::error!(partition = self.partition, "{problem}");
            self.shared.health.set(self.partition, Err(problem));
            sleep_or_stop(Duration::from_secs(10), &self.shutdown).await;
            return Ok(());
        }
        if self.next >= earliest {
            return Ok(());
        }
        let problem =
            format!("offsets {}..{earliest} were deleted by Kafka's retention before they were read", self.next);
        if self.shared.config.out_of_range == OutOfRangePolicy::Halt {
            tracing::error!(partition = self.partition, "{problem}; halting (ON_OFFSET_OUT_OF_RANGE=halt).");
            self.shared.health.set(self.partition, Err(format!("{problem}; halted")));
            return Err(Stop::Halted);
        }
        tracing::error!(partition = self.partition, "{problem}; recording the loss in the ledger and going on.");
        self.flush().await?;
        let lost = earliest - self.next;
        let entry = self.entry(self.next, earliest, None, 0, 0, 0, 0, true);
        self.commit(entry, None, None).await?;
        self.shared.metrics.lost.with_label_values(&[&self.label]).inc_by(lost.unsigned_abs());
        self.next = earliest;
        self.batch = Batch::new(earliest);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        first_offset: i64,
        next_offset: i64,
        dt: Option<chrono::NaiveDate>,
        records: u64,
        stored: u64,
        dead_lettered: u64,
        skipped: u64,
        lost: bool,
    ) -> Entry {
        let layout = &self.shared.layout;
        Entry {
            topic: self.shared.config.common.topic.clone(),
            partition: self.partition,
            first_offset,
            next_offset,
            records,
            stored,
            dead_lettered,
            skipped,
            dt,
            data_key: dt.filter(|_| stored > 0).map(|dt| layout.data_key(self.partition, first_offset, dt)),
            dead_letter_key: dt
                .filter(|_| dead_lettered > 0)
                .map(|dt| layout.dead_letter_key(self.partition, first_offset, dt)),
            lost,
            writer: self.shared.writer.clone(),
            written_at: Utc::now(),
        }
    }

    /// Seals and commits the open batch; a new one starts at the next offset.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Batch::new(self.next));
        let sealed: Sealed = batch.seal();
        let entry = self.entry(
            sealed.first_offset,
            sealed.next_offset,
            sealed.dt,
            sealed.records,
            sealed.stored,
            sealed.dead_lettered,
            sealed.skipped,
            false,
        );
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        metrics.batch_records.observe(sealed.records as f64);
        metrics.batch_bytes.observe(sealed.raw_bytes as f64);
        metrics.batch_age.observe(sealed.age.as_secs_f64());
        let counts = [("stored", sealed.stored), ("dead_lettered", sealed.dead_lettered), ("skipped", sealed.skipped)];
        let dead_kinds: BTreeMap<&'static str, u64> = sealed.dead_kinds.clone();
        self.commit(entry, sealed.data, sealed.dead_letters).await?;
        for (outcome, count) in counts {
            metrics.records.with_label_values(&[outcome]).inc_by(count);
        }
        let without_record = (sealed.next_offset - sealed.first_offset).unsigned_abs().saturating_sub(sealed.records);
        metrics.without_record.with_label_values(&[&self.label]).inc_by(without_record);
        for (kind, count) in dead_kinds {
            metrics.dead_letters.with_label_values(&[kind]).inc_by(count);
        }
        Ok(())
    }

    /// Writes the ledger entry (conditionally), then the objects it names.
    async fn commit(&mut self, entry: Entry, data: Option<Vec<u8>>, dead: Option<Vec<u8>>) -> Result<(), Stop> {
        let layout = &self.shared.layout;
        let entry_key = layout.entry_key(self.partition, entry.first_offset);
        let body = serde_json::to_vec_pretty(&entry).unwrap_or_default();
        let conditional = self.shared.config.conditional_writes;
        match self.write("entry", &entry_key, body, "application/json", HashMap::new(), conditional).await {
            Ok(()) => {}
            Err(WriteError::Exists) if self.is_ours(&entry_key, &entry).await => {}
            Err(WriteError::Exists) => return Err(Stop::Fenced),
            Err(WriteError::Stopped) => return Err(Stop::Shutdown),
        }
        // From here until "Batch committed." a crash leaves an entry whose objects recovery
        // writes (the crash test kills the process on this line).
        tracing::debug!(
            partition = self.partition,
            first_offset = entry.first_offset,
            next_offset = entry.next_offset,
            "Ledger entry written; writing its objects."
        );
        for (operation, key, body, count) in [
            ("data", &entry.data_key, data, entry.stored),
            ("dead_letter", &entry.dead_letter_key, dead, entry.dead_lettered),
        ] {
            if let (Some(key), Some(body)) = (key, body) {
                let metadata = object_metadata(&entry, count);
                match self.write(operation, key, body, GZIP_JSONL, metadata, false).await {
                    Ok(()) | Err(WriteError::Exists) => {}
                    // The entry is written: recovery writes the objects on the next start.
                    Err(WriteError::Stopped) => return Err(Stop::Shutdown),
                }
            }
        }
        tracing::debug!(partition = self.partition, first_offset = entry.first_offset, "Batch committed.");
        self.last_entry = Some(entry.first_offset);
        let metrics = &self.shared.metrics;
        metrics.committed_offset.with_label_values(&[&self.label]).set(entry.next_offset);
        self.update_lag();
        self.shared.health.set(self.partition, Ok(format!("committed up to offset {}", entry.next_offset)));
        if self.last_checkpoint.elapsed() >= self.shared.config.checkpoint_interval {
            self.checkpoint().await;
        }
        Ok(())
    }

    /// After a write whose answer was lost, the retry finds the object: is it our own?
    async fn is_ours(&self, key: &str, entry: &Entry) -> bool {
        match self.shared.bucket.get_json::<Entry>(key).await {
            Ok(Some(found)) => found.writer == entry.writer && found.next_offset == entry.next_offset,
            _ => false,
        }
    }

    /// Writes one object, retrying with backoff while S3 fails; gives up only on shutdown.
    async fn write(
        &self,
        operation: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
        if_absent: bool,
    ) -> Result<(), WriteError> {
        let metrics = &self.shared.metrics;
        let mut backoff = Backoff::dependency();
        loop {
            let timer = metrics.s3_duration.with_label_values(&[operation]).start_timer();
            match self.shared.bucket.put(key, body.clone(), content_type, metadata.clone(), if_absent).await {
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
                    metrics.s3_errors.with_label_values(&[operation]).inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(partition = self.partition, %error, retry_in = ?wait, "S3 write failed; keeping the batch.");
                    self.shared.health.set(self.partition, Err(format!("S3 writes failing: {error}")));
                    if self.shutdown.is_cancelled() {
                        return Err(WriteError::Stopped);
                    }
                    sleep_or_stop(wait, &self.shutdown).await;
                }
            }
        }
    }

    /// Writes the recovery hint; a failure only makes the next recovery list more.
    async fn checkpoint(&mut self) {
        let Some(entry_first_offset) = self.last_entry else { return };
        let checkpoint = Checkpoint { entry_first_offset, next_offset: self.committed(), written_at: Utc::now() };
        let key = self.shared.layout.checkpoint_key(self.partition);
        let body = serde_json::to_vec(&checkpoint).unwrap_or_default();
        let timer = self.shared.metrics.s3_duration.with_label_values(&["checkpoint"]).start_timer();
        match self.shared.bucket.put(&key, body, "application/json", HashMap::new(), false).await {
            Ok(()) => {
                timer.observe_duration();
                self.last_checkpoint = Instant::now();
            }
            Err(error) => {
                timer.stop_and_discard();
                self.shared.metrics.s3_errors.with_label_values(&["checkpoint"]).inc();
                tracing::warn!(partition = self.partition, %error, "The checkpoint was not written.");
            }
        }
    }
}

#[derive(Debug)]
enum WriteError {
    Exists,
    Stopped,
}

/// Per-partition progress, behind the `pipeline` readiness check.
#[derive(Default)]
pub struct Health {
    states: Mutex<BTreeMap<i32, Result<String, String>>>,
}

impl Health {
    /// Records the state of `partition`.
    pub fn set(&self, partition: i32, state: Result<String, String>) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(partition, state);
        }
    }

    fn summary(&self) -> Result<String, String> {
        let states = self.states.lock().map_err(|_| "state unavailable".to_owned())?;
        if states.is_empty() {
            return Err("no partition assigned yet".to_owned());
        }
        let describe = |(p, s): (&i32, &String)| format!("partition {p}: {s}");
        let failing: Vec<String> =
            states.iter().filter_map(|(p, s)| s.as_ref().err().map(|s| describe((p, s)))).collect();
        if failing.is_empty() {
            Ok(states
                .iter()
                .filter_map(|(p, s)| s.as_ref().ok().map(|s| describe((p, s))))
                .collect::<Vec<_>>()
                .join("; "))
        } else {
            Err(failing.join("; "))
        }
    }
}

/// Readiness: every owned partition is making durable progress.
pub struct PipelineCheck(pub Arc<Shared>);

impl Check for PipelineCheck {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        let summary = self.0.health.summary();
        Box::pin(async move { summary })
    }
}
