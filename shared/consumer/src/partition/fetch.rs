//! The Kafka side of a partition: the fetch loop that fills batches and flushes them
//! through the ledger writer, the out-of-range policy, and the rebuild of a batch that
//! recovery must write again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{FetchedRecords, OffsetAt, PartitionClient, UnknownTopicHandling};
use service_runtime::kafka::{KafkaError, within};
use service_runtime::retry::Backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Shared, Stop, sleep_or_stop};
use crate::batch::{Batch, Bodies, Sealed};
use crate::config::{Formats, OutOfRangePolicy};
use crate::dedup::{Replay, Seen};
use crate::ledger::Entry;
use crate::ledger::pipeline::{Pipeline, Settled};
use crate::ledger::writer::LedgerWriter;

/// The longest one fetch waits for records to arrive.
const MAX_FETCH_WAIT: Duration = Duration::from_millis(1000);

/// Why the last batch's records could not be read again.
pub(super) enum RebuildError {
    /// Kafka no longer has the batch's records (retention, DeleteRecords).
    Gone(String),
    /// Anything else (Kafka unreachable): recovery is retried.
    Failed(String),
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

/// The earliest offset Kafka has on `partition`.
pub(super) async fn earliest_offset(shared: &Shared, partition: i32) -> Result<i64, KafkaError> {
    let client = partition_client(shared, partition).await?;
    let timeout = shared.cluster.settings().request_timeout;
    within(timeout, "reading the earliest offset", client.get_offset(OffsetAt::Earliest)).await
}

/// Rebuilds the batch of `entry` from Kafka: the same records, so the same objects.
pub(super) async fn rebuild(shared: &Shared, partition: i32, entry: &Entry) -> Result<Sealed, RebuildError> {
    let client = partition_client(shared, partition).await.map_err(|e| RebuildError::Failed(e.to_string()))?;
    let settings = shared.cluster.settings();
    let earliest =
        within(settings.request_timeout, "reading the earliest offset", client.get_offset(OffsetAt::Earliest))
            .await
            .map_err(|e| RebuildError::Failed(e.to_string()))?;
    if earliest > entry.first_offset {
        return Err(RebuildError::Gone(format!(
            "the partition starts at offset {earliest}, after the batch's first offset {}",
            entry.first_offset
        )));
    }
    // The records are there: a fetch that does not wait, on the shared connection.
    let timeout = settings.request_timeout;
    let config = &shared.config;
    // The entry's formats, not today's settings: the objects it names are what is missing.
    let formats = Formats {
        json: entry.data_key.is_some(),
        parquet: entry.parquet_key.is_some(),
        iceberg: entry.lake_files.is_some(),
    };
    let mut batch = Batch::new(entry.first_offset, formats);
    let mut resends = Replay::of(entry.event_ids.as_ref());
    let mut offset = entry.first_offset;
    while offset < entry.next_offset {
        let fetched =
            within(timeout, "fetching a batch to write again", client.fetch(offset, 1..config.fetch_max_bytes, 0))
                .await;
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(KafkaError::Client {
                source: ClientError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. },
                ..
            }) => return Err(RebuildError::Gone(format!("offset {offset} is out of range"))),
            Err(e) => {
                return Err(RebuildError::Failed(format!(
                    "the records of ledger entry {} cannot be read again: {e}",
                    entry.first_offset
                )));
            }
        };
        for record in &fetched.records {
            if record.offset < offset || record.offset >= entry.next_offset {
                continue;
            }
            batch.push(config.event_type, &config.common.topic, partition, record, resends.as_mut());
        }
        if fetched.next_offset <= offset {
            return Err(RebuildError::Gone(format!(
                "Kafka has no records for offsets {offset}..{}",
                entry.next_offset
            )));
        }
        offset = fetched.next_offset;
    }
    Ok(batch.seal(entry.event_ids.is_some(), &config.common.topic, partition))
}

/// The next commit round of the Iceberg committer; never resolves without one.
async fn next_round(rounds: &mut Option<watch::Receiver<u64>>) -> u64 {
    if let Some(receiver) = rounds
        && receiver.changed().await.is_ok()
    {
        return *receiver.borrow_and_update();
    }
    // No committer (or it has stopped): no rounds.
    std::future::pending().await
}

/// One fetch of `partition` from `offset`, waiting up to `wait` for records.
async fn fetch_records(
    shared: &Shared,
    client: &PartitionClient,
    offset: i64,
    wait: Duration,
) -> Result<FetchedRecords, KafkaError> {
    let timeout = shared.cluster.settings().request_timeout + wait;
    let fetch = client.fetch(offset, 1..shared.config.fetch_max_bytes, wait.as_millis() as i32);
    within(timeout, "fetching records", fetch).await
}

/// A fetch sent ahead, as the Java client and librdkafka fetch while the application takes
/// the records already fetched. Used only if the loop is still where it expected to be
/// (`offset`); dropped (and stopped) otherwise.
struct Prefetch {
    offset: i64,
    task: tokio::task::JoinHandle<Result<FetchedRecords, KafkaError>>,
}

impl Prefetch {
    fn start(shared: &Arc<Shared>, client: &Arc<PartitionClient>, offset: i64, wait: Duration) -> Prefetch {
        let (shared, client) = (Arc::clone(shared), Arc::clone(client));
        let task = tokio::spawn(async move { fetch_records(&shared, &client, offset, wait).await });
        Prefetch { offset, task }
    }

    /// Its answer; `None` if its task did not finish (the loop then fetches again).
    async fn result(mut self) -> Option<Result<FetchedRecords, KafkaError>> {
        (&mut self.task).await.ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a batch's commit brings back to be counted once it is committed.
struct Counts {
    next_offset: i64,
    outcomes: [(&'static str, u64); 4],
    without_record: u64,
    dead_kinds: BTreeMap<&'static str, u64>,
}

/// The state of one partition between recoveries.
pub(super) struct PartitionLoop {
    shared: Arc<Shared>,
    partition: i32,
    label: String,
    next: i64,
    batch: Batch,
    client: Option<Arc<PartitionClient>>,
    /// The fetch from where this loop will be once it has taken the last response's
    /// records, sent before it takes them (see `Prefetch`).
    prefetched: Option<Prefetch>,
    /// The identities stored in the window, to remove resends.
    seen: Seen,
    shutdown: CancellationToken,
    /// Batches are committed through it while the next one fills.
    commits: Pipeline<Counts>,
    /// The first offset not yet committed.
    committed: i64,
    high_watermark: i64,
    /// Whether the next fetch will find records at once: the partition's readable end (its
    /// last stable offset) is past where it starts, or nothing is known of it yet. Such a fetch does not wait, so it
    /// goes on the shared connection (rskafka patch 14).
    behind: bool,
    /// The Iceberg committer's rounds, when `iceberg` is a format: each seals the open batch.
    rounds: Option<watch::Receiver<u64>>,
    /// The round whose batch is being written: answered once it is.
    answer_pending: Option<u64>,
}

impl PartitionLoop {
    pub(super) fn new(
        shared: Arc<Shared>,
        partition: i32,
        next: i64,
        seen: Seen,
        ledger: LedgerWriter,
        shutdown: CancellationToken,
    ) -> PartitionLoop {
        shared.metrics.committed_offset.with_label_values(&[&partition.to_string()]).set(next);
        shared.metrics.position.with_label_values(&[&partition.to_string()]).set(next);
        shared.health.set(partition, Ok(format!("resumed at offset {next}")));
        shared.progress.set(partition, next);
        let rounds = shared.lake.as_ref().map(|committer| {
            let mut rounds = committer.rounds();
            // A round may have started since the partition registered: answer it at once.
            rounds.mark_changed();
            rounds
        });
        PartitionLoop {
            batch: Batch::new(next, shared.config.formats),
            shared,
            partition,
            label: partition.to_string(),
            next,
            client: None,
            prefetched: None,
            seen,
            shutdown,
            commits: Pipeline::new(ledger),
            committed: next,
            high_watermark: next,
            // Unknown until the first answer: a first fetch that waited could queue behind
            // the long polls of partitions that have caught up (rskafka patch 14).
            behind: true,
            rounds,
            answer_pending: None,
        }
    }

    pub(super) async fn consume(&mut self) -> Stop {
        let outcome = self.consume_until_stopped().await;
        if outcome == Stop::Shutdown {
            // SIGTERM: the open batch is committed before the process exits.
            let committed = match self.flush().await {
                Ok(()) => self.settle().await,
                Err(stop) => Err(stop),
            };
            if let Err(stop) = committed {
                tracing::warn!(?stop, "The open batch was not committed; it will be read again.");
            }
            self.commits.writer().checkpoint().await;
        } else if let Err(stop) = self.settle().await {
            // No commit of this loop outlives it: the next one starts from the ledger.
            tracing::warn!(?stop, "The batch being written was not committed; it will be read again.");
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
                    Ok(client) => Arc::new(client),
                    Err(error) => {
                        self.kafka_failed("open", &error.to_string(), &mut backoff).await;
                        continue;
                    }
                },
            };
            let prefetched = self.prefetched.take().filter(|prefetch| prefetch.offset == self.next);
            let fetched = {
                let (shared, next, wait) = (Arc::clone(&self.shared), self.next, self.fetch_wait());
                let client = &client;
                let fetch = async move {
                    if let Some(prefetch) = prefetched
                        && let Some(fetched) = prefetch.result().await
                    {
                        return fetched;
                    }
                    fetch_records(&shared, client, next, wait).await
                };
                tokio::pin!(fetch);
                // The batch being written is settled as soon as it is, not at the next
                // flush: the committed offset, readiness and the group's offsets follow.
                loop {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Stop::Shutdown,
                        settled = self.commits.settled() => {
                            if let Err(stop) = self.count(settled) {
                                return stop;
                            }
                        }
                        round = next_round(&mut self.rounds) => {
                            if let Err(stop) = self.seal_for(round).await {
                                return stop;
                            }
                        }
                        fetched = &mut fetch => break fetched,
                    }
                }
            };
            match fetched {
                Ok(fetched) => {
                    // The next fetch goes out now, while these records are taken: the
                    // partitions that share a broker connection share its requests (rskafka
                    // patch 13), and one that asked only after taking its records would
                    // miss the request in flight and wait for it.
                    let from = fetched.records.last().map_or(self.next, |last| last.offset + 1);
                    let from = from.max(fetched.next_offset).max(self.next);
                    // Records are there when the partition's readable end is past them,
                    // also when the response's size limit left this partition out.
                    self.behind = from < fetched.last_stable_offset;
                    if !fetched.records.is_empty() {
                        self.prefetched = Some(Prefetch::start(&self.shared, &client, from, self.fetch_wait()));
                    }
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
                        self.batch.push(
                            config.event_type,
                            &config.common.topic,
                            self.partition,
                            record,
                            &mut self.seen,
                        );
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
                    self.shared.metrics.position.with_label_values(&[&self.label]).set(self.next);
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
        tracing::warn!(error, retry_in = ?wait, "Kafka request failed; reconnecting.");
        self.shared.health.set(self.partition, Err(format!("Kafka: {error}")));
        self.client = None;
        self.prefetched = None;
        self.behind = true;
        self.shared.cluster.reset().await;
        sleep_or_stop(wait, &self.shutdown).await;
    }

    /// How long the next fetch may wait for records: not at all when they are there
    /// (`behind`), else until the open batch is due.
    fn fetch_wait(&self) -> Duration {
        if self.behind {
            Duration::ZERO
        } else if self.batch.is_empty() {
            MAX_FETCH_WAIT
        } else {
            let limits = self.shared.config.batch;
            limits.max_age.saturating_sub(self.batch.age()).clamp(Duration::from_millis(10), MAX_FETCH_WAIT)
        }
    }

    fn update_lag(&self) {
        let lag = (self.high_watermark - self.committed).max(0);
        self.shared.metrics.lag.with_label_values(&[&self.label]).set(lag);
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
            tracing::error!("{problem}");
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
            tracing::error!("{problem}; halting (ON_OFFSET_OUT_OF_RANGE=halt).");
            self.shared.health.set(self.partition, Err(format!("{problem}; halted")));
            return Err(Stop::Halted);
        }
        tracing::error!("{problem}; recording the loss in the ledger and going on.");
        self.flush().await?;
        self.settle().await?;
        let lost = earliest - self.next;
        let entry = self.commits.writer().loss(self.next, earliest);
        self.commit(&entry, Bodies::default()).await?;
        self.shared.metrics.lost.with_label_values(&[&self.label]).inc_by(lost.unsigned_abs());
        self.next = earliest;
        self.batch = Batch::new(earliest, self.shared.config.formats);
        Ok(())
    }

    /// Seals the open batch and starts its commit, once the batch before it is committed;
    /// a new batch starts at the next offset and fills while this one is written.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Batch::new(self.next, self.shared.config.formats));
        let mut sealed: Sealed =
            batch.seal(self.seen.settings().enabled(), &self.shared.config.common.topic, self.partition);
        let metrics = &self.shared.metrics;
        metrics.batch_records.observe(sealed.records as f64);
        metrics.batch_bytes.observe(sealed.raw_bytes as f64);
        metrics.batch_age.observe(sealed.age.as_secs_f64());
        self.settle().await?;
        let mut entry = self.commits.writer().entry(&sealed);
        self.remember(&mut entry);
        let (first_offset, next_offset) = (entry.first_offset, entry.next_offset);
        let counts = Counts {
            next_offset,
            outcomes: [
                ("stored", sealed.stored),
                ("dead_lettered", sealed.dead_lettered),
                ("skipped", sealed.skipped),
                ("duplicate", sealed.duplicates),
            ],
            without_record: (next_offset - first_offset).unsigned_abs().saturating_sub(sealed.records),
            dead_kinds: std::mem::take(&mut sealed.dead_kinds),
        };
        self.commits.start(entry, sealed.take_bodies(), counts);
        Ok(())
    }

    /// The Iceberg committer started `round`: the open batch is sealed and written, whatever
    /// its age, and the round answered once it is (at once with nothing to write).
    async fn seal_for(&mut self, round: u64) -> Result<(), Stop> {
        self.flush().await?;
        if self.commits.is_busy() {
            self.answer_pending = Some(round);
        } else {
            self.answer(round);
        }
        Ok(())
    }

    fn answer(&self, round: u64) {
        if let Some(committer) = &self.shared.lake {
            committer.sealed(self.partition, round);
        }
    }

    /// Remembers the identities `entry` stores (the next batch removes their resends) and
    /// writes down in it where the window starts, for recovery.
    fn remember(&mut self, entry: &mut Entry) {
        if entry.event_ids.is_none() {
            return;
        }
        let forgotten = self.seen.forgotten_early();
        self.seen.remember(entry.first_offset, entry.written_at);
        entry.dedup_from = self.seen.window_start();
        let metrics = &self.shared.metrics;
        metrics.dedup_remembered.with_label_values(&[&self.label]).set(self.seen.len() as i64);
        let early = self.seen.forgotten_early() - forgotten;
        if early > 0 {
            metrics.dedup_forgotten_early.with_label_values(&[&self.label]).inc_by(early);
        }
    }

    /// Waits for the batch being written, if any, and counts its commit.
    async fn settle(&mut self) -> Result<(), Stop> {
        match self.commits.settle().await {
            Some(settled) => self.count(settled),
            None => Ok(()),
        }
    }

    /// Records a batch's commit: progress, readiness and the record counts.
    fn count(&mut self, (counts, result): Settled<Counts>) -> Result<(), Stop> {
        if let Some(round) = self.answer_pending.take() {
            self.answer(round);
        }
        result?;
        self.committed_to(counts.next_offset);
        let metrics = &self.shared.metrics;
        for (outcome, count) in counts.outcomes {
            metrics.records.with_label_values(&[outcome]).inc_by(count);
        }
        metrics.without_record.with_label_values(&[&self.label]).inc_by(counts.without_record);
        for (kind, count) in counts.dead_kinds {
            metrics.dead_letters.with_label_values(&[kind]).inc_by(count);
        }
        Ok(())
    }

    /// Commits `entry` through the ledger writer; on success the partition's progress is
    /// durable, and readiness and the offset metrics say so.
    async fn commit(&mut self, entry: &Entry, bodies: Bodies) -> Result<(), Stop> {
        self.commits.writer().commit(entry, bodies).await?;
        self.committed_to(entry.next_offset);
        Ok(())
    }

    /// The partition's progress is durable up to `next_offset`: readiness and the offset
    /// metrics say so.
    fn committed_to(&mut self, next_offset: i64) {
        self.committed = next_offset;
        self.shared.metrics.committed_offset.with_label_values(&[&self.label]).set(next_offset);
        self.update_lag();
        self.shared.health.set(self.partition, Ok(format!("committed up to offset {next_offset}")));
        self.shared.progress.set(self.partition, next_offset);
    }
}
