//! The Iceberg side of a consumer (`OUTPUT_FORMATS` with `iceberg`): the batches whose
//! files are written wait here, and are appended to the table together, one snapshot per
//! commit, every `ICEBERG_COMMIT_INTERVAL` or as soon as `ICEBERG_COMMIT_MAX_FILES` wait.
//!
//! A commit is a round, as the Kafka Connect sink's coordinator starts one: the partitions
//! seal their open batches (whatever their age) and answer once those are written, then
//! what waits is appended. So an event is in the table about one interval after it was
//! read, not a batch age plus an interval; a partition that does not answer within
//! [`ROUND_WAIT`] (Kafka or S3 down) is not waited for: its batches go with the next commit.
//!
//! Exactly once, whatever crashes: a batch's files are written after its ledger entry,
//! like its other objects; the table's snapshots say up to which offset they hold each
//! partition (`store_lake::offsets`). When a partition starts (process start, rebalance)
//! [`backlog`] reads the ledger entries past that offset and they are appended, once: an
//! append only commits against the snapshot it was planned on, so a member racing for
//! the same entries finds them present and drops them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use service_runtime::metrics::registered;
use store_lake::{Batch, Lake, LakeError, LakeFile, Offsets};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::layout::Layout;
use crate::ledger::{Entry, ReadError, Store, StoreError, get_json};

/// Appends after this many conflicts in a row wait for the next interval.
const CONFLICT_RETRIES: u32 = 8;

/// Batches that stored nothing (only the other type's records, say) move the table's
/// offsets with the next append that has files; alone, once the oldest has waited this long
/// (and at shutdown), so that the offsets a table shows stay recent.
const EMPTY_COMMIT_AGE: Duration = Duration::from_secs(300);

/// The longest a commit waits for the partitions to seal and write their open batches
/// (capped by the interval).
const ROUND_WAIT: Duration = Duration::from_secs(3);

/// The batches waiting for the table, and the commits that append them.
pub struct Committer {
    lake: Lake,
    interval: Duration,
    max_files: usize,
    queue: Mutex<Queue>,
    wake: Notify,
    /// The commit rounds started: partitions seal their open batches when it moves.
    rounds: watch::Sender<u64>,
    /// The partitions running here, and the last round each has answered.
    answers: watch::Sender<BTreeMap<i32, u64>>,
    metrics: LakeMetrics,
}

#[derive(Default)]
struct Queue {
    /// Waiting batches, by partition, in offset order.
    batches: BTreeMap<i32, Vec<Waiting>>,
    /// Where partitions the table does not hold yet enter it.
    starts: Offsets,
    files: usize,
}

struct Waiting {
    batch: Batch,
    since: Instant,
}

/// The committer's metrics (registered when `iceberg` is a format).
#[derive(Clone)]
pub struct LakeMetrics {
    /// `consumer_iceberg_commits_total{outcome}`: `committed`, `conflict` (another writer
    /// moved the table first; planned again), `failed`.
    commits: IntCounterVec,
    /// `consumer_iceberg_commit_seconds`: one append, load to commit.
    commit_seconds: Histogram,
    /// `consumer_iceberg_rows_total`: rows appended to the table.
    rows: prometheus::IntCounter,
    /// `consumer_iceberg_files_total`: data files appended.
    files: prometheus::IntCounter,
    /// `consumer_iceberg_batches_total`: batches (ledger entries) appended.
    batches: prometheus::IntCounter,
    /// `consumer_iceberg_waiting_batches`: written batches not in the table yet.
    waiting: IntGauge,
    /// `consumer_iceberg_oldest_waiting_seconds`: how long the oldest of them has waited.
    oldest: prometheus::Gauge,
    /// `consumer_iceberg_snapshots_expired_total`.
    expired: prometheus::IntCounter,
}

impl LakeMetrics {
    /// Creates and registers them.
    pub fn new(registry: &Registry) -> LakeMetrics {
        LakeMetrics {
            commits: registered(
                registry,
                IntCounterVec::new(
                    Opts::new("consumer_iceberg_commits_total", "Appends to the Iceberg table, by outcome."),
                    &["outcome"],
                ),
            ),
            commit_seconds: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("consumer_iceberg_commit_seconds", "Duration of one Iceberg append.")
                        .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                ),
            ),
            rows: registered(
                registry,
                prometheus::IntCounter::new("consumer_iceberg_rows_total", "Rows appended to the Iceberg table."),
            ),
            files: registered(
                registry,
                prometheus::IntCounter::new(
                    "consumer_iceberg_files_total",
                    "Data files appended to the Iceberg table.",
                ),
            ),
            batches: registered(
                registry,
                prometheus::IntCounter::new(
                    "consumer_iceberg_batches_total",
                    "Batches (ledger entries) appended to the Iceberg table.",
                ),
            ),
            waiting: registered(
                registry,
                IntGauge::new("consumer_iceberg_waiting_batches", "Written batches not in the Iceberg table yet."),
            ),
            oldest: registered(
                registry,
                prometheus::Gauge::new(
                    "consumer_iceberg_oldest_waiting_seconds",
                    "How long the oldest batch not in the Iceberg table yet has waited.",
                ),
            ),
            expired: registered(
                registry,
                prometheus::IntCounter::new(
                    "consumer_iceberg_snapshots_expired_total",
                    "Snapshots of the Iceberg table expired by ICEBERG_SNAPSHOT_MAX_AGE.",
                ),
            ),
        }
    }
}

impl Committer {
    /// A committer of `lake`'s appends.
    pub fn new(lake: Lake, interval: Duration, max_files: usize, registry: &Registry) -> Committer {
        Committer {
            lake,
            interval,
            max_files,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            rounds: watch::Sender::new(0),
            answers: watch::Sender::new(BTreeMap::new()),
            metrics: LakeMetrics::new(registry),
        }
    }

    /// The table.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch whose files (if any) are written: it waits for the next commit.
    pub fn submit(&self, entry: &Entry) {
        let Some(batch) = batch_of(entry) else { return };
        let has_files = !batch.files.is_empty();
        {
            let mut queue = self.queue();
            queue.push(batch);
            self.metrics.waiting.set(queue.len() as i64);
        }
        if has_files {
            self.wake.notify_one();
        }
    }

    fn is_full(&self) -> bool {
        self.queue().files >= self.max_files
    }

    /// A partition starts: the table holds it from `start` on when it holds nothing of it
    /// yet, and `backlog` (ledger entries past what the table holds) waits for the next commit.
    /// From now on the partition answers the commit rounds ([`Committer::rounds`]).
    pub fn register(&self, partition: i32, start: i64, backlog: Vec<Batch>) {
        {
            let mut queue = self.queue();
            queue.starts.insert(partition, start);
            for batch in backlog {
                queue.push(batch);
            }
            self.metrics.waiting.set(queue.len() as i64);
        }
        let round = *self.rounds.borrow();
        self.answers.send_modify(|answers| {
            answers.insert(partition, round);
        });
        self.wake.notify_one();
    }

    /// The partition stopped here (released, fenced off): rounds no longer wait for it.
    pub fn release(&self, partition: i32) {
        self.answers.send_if_modified(|answers| answers.remove(&partition).is_some());
    }

    /// The commit rounds: when it changes, a partition seals its open batch and, once the
    /// batch is written (or at once, with nothing open or being written), calls
    /// [`Committer::sealed`] with the round.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// `partition`'s batches up to `round` are written: the round need not wait for it.
    pub fn sealed(&self, partition: i32, round: u64) {
        self.answers.send_if_modified(|answers| match answers.get_mut(&partition) {
            Some(answered) if *answered < round => {
                *answered = round;
                true
            }
            _ => false,
        });
    }

    /// Starts a round and waits until every partition running here answered it, at most
    /// [`ROUND_WAIT`] (or the interval, when shorter), or until `stop`.
    async fn round(&self, stop: &CancellationToken) {
        self.rounds.send_modify(|round| *round += 1);
        let round = *self.rounds.borrow();
        let mut answers = self.answers.subscribe();
        let all = answers.wait_for(|answers| answers.values().all(|&answered| answered >= round));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(ROUND_WAIT.min(self.interval)) => {
                let late: Vec<i32> =
                    self.answers.borrow().iter().filter(|(_, answered)| **answered < round).map(|(p, _)| *p).collect();
                tracing::debug!(?late, round, "Partitions did not seal their batches in time; they go with the next commit.");
            }
            _ = all => {}
        }
    }

    /// Commits as batches with files come, at most once per interval (at once when the
    /// last commit is older, or when `ICEBERG_COMMIT_MAX_FILES` wait), and every interval
    /// anyway (a failed append is retried then), until `stop`; then once more for what the
    /// partitions' last batches added. Each commit but the last is a round: the partitions
    /// seal their open batches for it. Expires old snapshots now and then.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut last_expiry = Instant::now();
        // The first append waits an interval too: the partitions' backlogs and first
        // batches go in together.
        let mut last_commit = Instant::now();
        loop {
            let mut stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(self.interval) => false,
                _ = self.wake.notified() => false,
            };
            // Batches wait for the interval since the last commit to pass, so that a commit
            // gathers every partition's batches of that time.
            let due = last_commit + self.interval;
            if !stopping && Instant::now() < due && !self.is_full() {
                tokio::select! {
                    _ = stop.cancelled() => stopping = true,
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
            if !stopping && !self.is_full() {
                self.round(&stop).await;
                stopping = stop.is_cancelled();
            }
            self.commit(stopping).await;
            last_commit = Instant::now();
            if stopping {
                break;
            }
            if last_expiry.elapsed() >= EXPIRY_INTERVAL {
                last_expiry = Instant::now();
                match self.lake.expire_snapshots().await {
                    Ok(0) => {}
                    Ok(expired) => {
                        self.metrics.expired.inc_by(expired as u64);
                        tracing::info!(expired, table = %self.lake.name(), "Old Iceberg snapshots expired.");
                    }
                    Err(error) => tracing::warn!(%error, "Expiring old Iceberg snapshots failed; trying again later."),
                }
            }
        }
    }

    /// Appends what waits, planning again on conflicts; batches without files alone only
    /// when `flush` or when they waited [`EMPTY_COMMIT_AGE`]. `true` when nothing that
    /// could be appended is left waiting.
    pub async fn commit(&self, flush: bool) -> bool {
        for _ in 0..CONFLICT_RETRIES {
            let (batches, starts, empty) = {
                let queue = self.queue();
                let oldest = queue.oldest().map_or(Duration::ZERO, |t| t.elapsed());
                self.metrics.oldest.set(oldest.as_secs_f64());
                (queue.snapshot(), queue.starts.clone(), flush || oldest >= EMPTY_COMMIT_AGE)
            };
            if batches.is_empty() {
                return true;
            }
            // The crash test kills the process on this line.
            tracing::debug!(batches = batches.len(), "Appending to the Iceberg table.");
            let timer = self.metrics.commit_seconds.start_timer();
            match self.lake.append(&batches, &starts, empty).await {
                Ok(appended) => {
                    timer.observe_duration();
                    let plan = &appended.plan;
                    let done: Vec<&Batch> = plan.append.iter().chain(&plan.present).map(|&i| &batches[i]).collect();
                    if appended.snapshot_id.is_some() {
                        self.metrics.commits.with_label_values(&["committed"]).inc();
                        let chosen = plan.append.iter().map(|&i| &batches[i]);
                        let (files, rows) =
                            chosen.clone().flat_map(|b| &b.files).fold((0, 0), |(f, r), file| (f + 1, r + file.rows));
                        self.metrics.files.inc_by(files);
                        self.metrics.rows.inc_by(rows);
                        self.metrics.batches.inc_by(plan.append.len() as u64);
                        tracing::debug!(snapshot = appended.snapshot_id, files, rows, "Appended to the Iceberg table.");
                    }
                    if !plan.conflicting.is_empty() {
                        let ranges: Vec<_> = plan
                            .conflicting
                            .iter()
                            .map(|&i| {
                                let b = &batches[i];
                                format!("{}:{}-{}", b.partition, b.first_offset, b.next_offset)
                            })
                            .collect();
                        tracing::error!(
                            ?ranges,
                            "Ledger entries overlap what the Iceberg table holds without matching its offsets: not appended. Run the audit."
                        );
                    }
                    let waiting = {
                        let mut queue = self.queue();
                        let conflicting = plan.conflicting.iter().map(|&i| &batches[i]);
                        queue.remove(done.into_iter().chain(conflicting));
                        self.metrics.waiting.set(queue.len() as i64);
                        queue.len()
                    };
                    return waiting == 0 || appended.snapshot_id.is_none();
                }
                Err(LakeError::Conflict(error)) => {
                    timer.stop_and_discard();
                    self.metrics.commits.with_label_values(&["conflict"]).inc();
                    tracing::debug!(%error, "Another writer moved the Iceberg table; planning again.");
                }
                Err(error) => {
                    timer.stop_and_discard();
                    self.metrics.commits.with_label_values(&["failed"]).inc();
                    tracing::warn!(%error, "Appending to the Iceberg table failed; the batches wait for the next commit.");
                    return false;
                }
            }
        }
        false
    }

    /// Batches waiting (for tests and the final report).
    pub fn waiting(&self) -> usize {
        self.queue().len()
    }
}

/// How often old snapshots are looked for.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(600);

impl Queue {
    fn push(&mut self, batch: Batch) {
        let list = self.batches.entry(batch.partition).or_default();
        if list.iter().any(|w| w.batch.first_offset == batch.first_offset) {
            return;
        }
        // Consecutive batches without files (all skipped, say) are one range.
        if batch.files.is_empty()
            && let Some(last) = list.last_mut()
            && last.batch.files.is_empty()
            && last.batch.next_offset == batch.first_offset
        {
            last.batch.next_offset = batch.next_offset;
            return;
        }
        self.files += batch.files.len();
        let at = list.partition_point(|w| w.batch.first_offset < batch.first_offset);
        list.insert(at, Waiting { batch, since: Instant::now() });
    }

    fn remove<'a>(&mut self, done: impl Iterator<Item = &'a Batch>) {
        for batch in done {
            if let Some(list) = self.batches.get_mut(&batch.partition)
                && let Some(at) = list.iter().position(|w| w.batch.first_offset == batch.first_offset)
            {
                let removed = list.remove(at);
                self.files -= removed.batch.files.len();
                // A merged range of empty batches may have grown since the plan: what grew waits on.
                if removed.batch.next_offset > batch.next_offset {
                    let rest = Batch { first_offset: batch.next_offset, ..removed.batch };
                    list.insert(at, Waiting { batch: rest, since: removed.since });
                }
            }
        }
        self.batches.retain(|_, list| !list.is_empty());
    }

    fn snapshot(&self) -> Vec<Batch> {
        self.batches.values().flatten().map(|w| w.batch.clone()).collect()
    }

    fn len(&self) -> usize {
        self.batches.values().map(Vec::len).sum()
    }

    fn oldest(&self) -> Option<Instant> {
        self.batches.values().flatten().map(|w| w.since).min()
    }
}

/// The table's view of a ledger entry, when it was written with Iceberg as a format.
pub fn batch_of(entry: &Entry) -> Option<Batch> {
    let files: &Vec<LakeFile> = entry.lake_files.as_ref()?;
    Some(Batch {
        partition: entry.partition,
        first_offset: entry.first_offset,
        next_offset: entry.next_offset,
        files: files.clone(),
    })
}

/// Why the ledger's backlog for the table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// The table could not be read.
    #[error("the Iceberg table cannot be read: {0}")]
    Lake(#[from] LakeError),
    /// S3 failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The ledger entries of `partition` the table does not hold yet, and where the table
/// holds the partition from when it holds nothing of it (`next`, the ledger's end, when
/// no entry was written with Iceberg on).
///
/// When the table holds the partition up to offset `o`, that is every entry from `o` on.
/// When it holds nothing, the entries of the last run written with Iceberg on: the entries
/// before (a JSON lake from earlier) are for the migration.
pub async fn backlog(
    store: &dyn Store,
    layout: &Layout,
    partition: i32,
    held: Option<i64>,
    next: i64,
) -> Result<(i64, Vec<Batch>), BacklogError> {
    let after = match held {
        Some(0) | None => None,
        Some(offset) => Some(layout.entry_key(partition, offset - 1)),
    };
    let keys = store.list(&layout.ledger_prefix(partition), after.as_deref()).await?;
    let offsets: Vec<&String> = keys.iter().filter(|k| Layout::entry_offset(k).is_some()).collect();
    let mut batches = Vec::new();
    // Newest first: without an offset in the table, the walk stops at the first entry
    // written without Iceberg.
    for key in offsets.into_iter().rev() {
        let Some(entry) = get_json::<Entry>(store, key).await? else { continue };
        if held.is_some_and(|o| entry.next_offset <= o) {
            break;
        }
        match batch_of(&entry) {
            Some(batch) => batches.push(batch),
            None if held.is_none() => break,
            None => {
                tracing::error!(
                    first_offset = entry.first_offset,
                    "A ledger entry past the Iceberg table's offset was written without Iceberg: its rows cannot be \
                     appended, and the table's offset for this partition stops before it. Write it with the migration."
                );
                batches.clear();
            }
        }
    }
    batches.reverse();
    let start = batches.first().map_or(next, |b| b.first_offset);
    Ok((held.unwrap_or(start), batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partition: i32, first_offset: i64, next_offset: i64, files: usize) -> Batch {
        let file = |n: usize| LakeFile {
            path: format!("s3://b/t/data/{partition}-{first_offset}-{n}.parquet"),
            day: chrono::NaiveDate::default(),
            rows: 1,
            bytes: 1,
        };
        Batch { partition, first_offset, next_offset, files: (0..files).map(file).collect() }
    }

    #[test]
    fn batches_wait_in_offset_order_once_each_and_empty_ones_merge() {
        let mut queue = Queue::default();
        queue.push(batch(0, 10, 20, 1));
        queue.push(batch(0, 0, 10, 2));
        queue.push(batch(0, 10, 20, 1));
        queue.push(batch(0, 20, 25, 0));
        queue.push(batch(0, 25, 30, 0));
        queue.push(batch(1, 0, 5, 1));
        let ranges: Vec<_> = queue.snapshot().iter().map(|b| (b.partition, b.first_offset, b.next_offset)).collect();
        assert_eq!(ranges, vec![(0, 0, 10), (0, 10, 20), (0, 20, 30), (1, 0, 5)]);
        assert_eq!(queue.files, 4);
        // An empty range that grew after the plan keeps what grew.
        let planned = queue.snapshot();
        queue.push(batch(0, 30, 40, 0));
        queue.remove(planned.iter());
        let left: Vec<_> = queue.snapshot().iter().map(|b| (b.partition, b.first_offset, b.next_offset)).collect();
        assert_eq!(left, vec![(0, 30, 40)]);
        assert_eq!(queue.files, 0);
    }
}
