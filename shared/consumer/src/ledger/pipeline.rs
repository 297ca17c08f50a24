//! One partition's commits, in the background and one at a time: a sealed batch's commit
//! runs in its own task while the partition loop reads and judges the next batch, and the
//! next commit starts only after this one has settled. So at most one batch is in flight,
//! entries are written in order, and recovery's rule holds: only the ledger's last entry
//! can lack objects.

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Entry;
use super::writer::{CommitError, LedgerWriter};
use crate::batch::Bodies;

/// The batch in flight, with what its caller wants back when it settles.
struct InFlight<T> {
    task: JoinHandle<Result<(), CommitError>>,
    tag: T,
}

/// Commits a partition's batches one after another, each while the next one fills.
pub struct Pipeline<T> {
    writer: LedgerWriter,
    in_flight: Option<InFlight<T>>,
}

/// A batch whose commit has ended: what was given with it, and how it ended.
pub type Settled<T> = (T, Result<(), CommitError>);

impl<T> Pipeline<T> {
    /// A pipeline committing through `writer`.
    pub fn new(writer: LedgerWriter) -> Pipeline<T> {
        Pipeline { writer, in_flight: None }
    }

    /// The writer, for entries and direct commits (while nothing is in flight).
    pub fn writer(&self) -> &LedgerWriter {
        &self.writer
    }

    /// Whether a batch is being committed.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts committing `entry` and its objects in the background (in the caller's span);
    /// `tag` comes back with the outcome. Only when nothing is in flight: settle first.
    pub fn start(&mut self, entry: Entry, bodies: Bodies, tag: T) {
        debug_assert!(self.in_flight.is_none(), "a commit started while another was in flight");
        let writer = self.writer.clone();
        let task = tokio::spawn(async move { writer.commit(&entry, bodies).await }.in_current_span());
        self.in_flight = Some(InFlight { task, tag });
    }

    /// Waits for the batch in flight, if any, to be committed (or to fail).
    pub async fn settle(&mut self) -> Option<Settled<T>> {
        self.in_flight.as_ref()?;
        Some(self.settled().await)
    }

    /// The end of the batch in flight; never resolves while there is none. Cancel-safe: a
    /// `select!` that drops it leaves the batch in flight.
    pub async fn settled(&mut self) -> Settled<T> {
        let Some(in_flight) = self.in_flight.as_mut() else { return std::future::pending().await };
        let joined = (&mut in_flight.task).await;
        let result = match joined {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only the runtime shutting down cancels the task.
            Err(_) => Err(CommitError::Stopped),
        };
        let Some(InFlight { tag, .. }) = self.in_flight.take() else { unreachable!("checked above") };
        (tag, result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::ledger::memory::{Fixture, PARTITION};

    fn start(ledger: &Fixture, pipeline: &mut Pipeline<i64>, first: i64, records: i64) -> Entry {
        let mut sealed = ledger.sealed(first, records);
        let entry = pipeline.writer().entry(&sealed);
        pipeline.start(entry.clone(), sealed.take_bodies(), first);
        entry
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_settles_once_its_objects_are_written_and_the_next_entry_only_then() {
        let ledger = Fixture::new();
        let mut pipeline = Pipeline::new(ledger.writer("a", &CancellationToken::new()));
        assert!(pipeline.settle().await.is_none(), "nothing in flight");
        // The first batch's data object fails three times (retried with backoff).
        ledger.store.fail_puts("event_type=", 3);
        let first = start(&ledger, &mut pipeline, 0, 20);
        assert!(pipeline.is_busy());
        assert_eq!(pipeline.settle().await, Some((0, Ok(()))));
        assert!(!pipeline.is_busy());
        for key in [first.data_key.clone(), first.dead_letter_key.clone()].into_iter().flatten() {
            assert!(ledger.store.object(&key).is_some(), "{key} missing after settling");
        }
        let second = start(&ledger, &mut pipeline, 20, 10);
        assert_eq!(pipeline.settle().await, Some((20, Ok(()))));
        // In S3's order of writes: the first batch whole, then the second's entry.
        let puts = ledger.store.puts();
        let at = |key: &str| puts.iter().rposition(|k| k == key).unwrap_or(usize::MAX);
        let second_entry = at(&ledger.layout.entry_key(PARTITION, second.first_offset));
        for key in [first.data_key, first.dead_letter_key].into_iter().flatten() {
            assert!(at(&key) < second_entry, "{key} written after the next entry: {puts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn settled_waits_while_the_batch_is_in_flight_and_never_resolves_when_idle() {
        let ledger = Fixture::new();
        let mut pipeline: Pipeline<i64> = Pipeline::new(ledger.writer("a", &CancellationToken::new()));
        let idle = tokio::time::timeout(Duration::from_secs(60), pipeline.settled()).await;
        assert!(idle.is_err(), "settled resolved with nothing in flight");
        ledger.store.set_unreachable(true);
        start(&ledger, &mut pipeline, 0, 10);
        let waiting = tokio::time::timeout(Duration::from_secs(60), pipeline.settled()).await;
        assert!(waiting.is_err(), "settled while S3 was unreachable");
        assert!(pipeline.is_busy(), "a cancelled wait dropped the batch in flight");
        ledger.store.set_unreachable(false);
        assert_eq!(pipeline.settled().await, (0, Ok(())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_commit_comes_back_as_fenced() {
        let ledger = Fixture::new();
        let (_, won) = ledger.commit(&mut ledger.writer("b", &CancellationToken::new()), 0, 10).await;
        assert_eq!(won, Ok(()));
        let mut pipeline = Pipeline::new(ledger.writer("a", &CancellationToken::new()));
        start(&ledger, &mut pipeline, 0, 15);
        assert_eq!(pipeline.settle().await, Some((0, Err(CommitError::Fenced))));
    }
}
