//! Reading one partition's ledger back at start: where to go on, and whether the last
//! batch's objects must be written again (the process died between its entry and them).
//! Kafka is not read here: the partition loop rebuilds a batch when told to.

use super::store::{GetError, Store, StoreError};
use super::{Checkpoint, Entry, ReadError, check_object, get_json};
use crate::layout::Layout;

/// What the ledger says about a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// No entry yet: start from the earliest offset Kafka has.
    Empty,
    /// Every offset before `next` is accounted for and stored.
    Resume {
        /// Where reading goes on.
        next: i64,
        /// How it was found, the `action` label of `consumer_recoveries_total`: `clean`, or
        /// `entry_gone` when the entry a checkpoint names was deleted.
        action: &'static str,
    },
    /// The last entry names objects that are missing or incomplete: rebuild its batch from
    /// Kafka and write them again, then go on from its `next_offset`.
    Incomplete {
        /// The last entry.
        entry: Box<Entry>,
        /// What is wrong with each object that must be written again.
        missing: Vec<String>,
    },
}

/// Why the ledger could not be read (recovery is retried).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// S3 failed or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A listed entry was gone when it was read, and no checkpoint says where to go on.
    #[error("{0} was listed but cannot be read")]
    Vanished(String),
}

/// Reads the ledger of `partition`: the checkpoint, the entries written after it, the last
/// entry and the objects it names. Also gives the last entry, when it could be read: it
/// says where the identities to remember start ([`crate::dedup::load`]).
pub async fn read(
    store: &dyn Store,
    layout: &Layout,
    partition: i32,
) -> Result<(Recovered, Option<Entry>), RecoveryError> {
    // The checkpoint only saves listing: one that cannot be read is ignored, and the next
    // checkpoint replaces it. S3 being unreachable is not that: recovery waits for it.
    let checkpoint = match get_json::<Checkpoint>(store, &layout.checkpoint_key(partition)).await {
        Ok(checkpoint) => checkpoint,
        Err(error @ (ReadError::Invalid { .. } | ReadError::Get(GetError::Body(_)))) => {
            tracing::warn!(%error, "The checkpoint cannot be read; listing the whole ledger.");
            None
        }
        Err(error @ ReadError::Get(GetError::Request(_))) => return Err(error.into()),
    };
    let after = checkpoint.as_ref().map(|c| layout.entry_key(partition, c.entry_first_offset));
    let keys = store.list(&layout.ledger_prefix(partition), after.as_deref()).await?;
    let Some(last) = keys.into_iter().rfind(|k| Layout::entry_offset(k).is_some()).or(after) else {
        return Ok((Recovered::Empty, None));
    };
    let Some(entry) = get_json::<Entry>(store, &last).await? else {
        // Only the checkpoint's own entry can be missing here (listed keys exist). A
        // checkpoint is written after its entry's objects, so they were complete.
        let Some(checkpoint) = checkpoint else {
            return Err(RecoveryError::Vanished(last));
        };
        tracing::warn!(
            entry = %last,
            next_offset = checkpoint.next_offset,
            "The ledger entry the checkpoint names is gone (deleted, or expired by a lifecycle rule); \
             going on from the checkpoint."
        );
        return Ok((Recovered::Resume { next: checkpoint.next_offset, action: "entry_gone" }, None));
    };
    // An object counts when it carries the record count its entry promises: the same HEAD
    // as an existence check, and the audit's own test. Amazon S3 and the local SeaweedFS
    // make a PUT atomic, so there a present object is a complete one; on an S3-compatible
    // server whose PUT is not, a writer that dies mid-PUT can leave one without metadata.
    let mut missing = Vec::new();
    for (key, count) in entry.objects() {
        if let Some(problem) = check_object(store, key, count, false).await? {
            missing.push(problem);
        }
    }
    if missing.is_empty() {
        Ok((Recovered::Resume { next: entry.next_offset, action: "clean" }, Some(entry)))
    } else {
        Ok((Recovered::Incomplete { entry: Box::new(entry.clone()), missing }, Some(entry)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::ledger::memory::{Fixture, PARTITION};

    async fn recover(ledger: &Fixture) -> Result<Recovered, RecoveryError> {
        read(ledger.store.as_ref(), &ledger.layout, PARTITION).await.map(|(recovered, _)| recovered)
    }

    /// Three batches, 0..40, 40..75, 75..100.
    async fn three_batches(ledger: &Fixture) -> Vec<Entry> {
        let mut writer = ledger.writer("a", &CancellationToken::new());
        let mut entries = Vec::new();
        for (first, records) in [(0, 40), (40, 35), (75, 25)] {
            let (entry, result) = ledger.commit(&mut writer, first, records).await;
            assert_eq!(result, Ok(()));
            entries.push(entry);
        }
        entries
    }

    fn clean(next: i64) -> Recovered {
        Recovered::Resume { next, action: "clean" }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_ledger_starts_from_kafka() {
        assert_eq!(recover(&Fixture::new()).await.unwrap(), Recovered::Empty);
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_ledger_resumes_after_its_last_entry() {
        let ledger = Fixture::new();
        three_batches(&ledger).await;
        assert_eq!(recover(&ledger).await.unwrap(), clean(100));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_written_after_the_checkpoint_are_found() {
        let ledger = Fixture::new();
        three_batches(&ledger).await;
        let old = r#"{"entry_first_offset":0,"next_offset":40,"written_at":"2026-11-24T12:00:00Z"}"#;
        ledger.store.insert(&ledger.layout.checkpoint_key(PARTITION), old.as_bytes(), HashMap::new());
        assert_eq!(recover(&ledger).await.unwrap(), clean(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_that_cannot_be_read_is_ignored() {
        for damage in ["not json", "broken body"] {
            let ledger = Fixture::new();
            three_batches(&ledger).await;
            let key = ledger.layout.checkpoint_key(PARTITION);
            if damage == "not json" {
                ledger.store.insert(&key, b"{\"entry_first", HashMap::new());
            } else {
                ledger.store.break_bodies("checkpoint");
            }
            assert_eq!(recover(&ledger).await.unwrap(), clean(100), "{damage}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_naming_a_deleted_entry_resumes_from_the_checkpoint() {
        let ledger = Fixture::new();
        three_batches(&ledger).await;
        for first in [0, 40, 75] {
            ledger.store.remove(&ledger.layout.entry_key(PARTITION, first));
        }
        assert_eq!(recover(&ledger).await.unwrap(), Recovered::Resume { next: 100, action: "entry_gone" });
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_or_incomplete_object_of_the_last_batch_is_named() {
        let ledger = Fixture::new();
        let entries = three_batches(&ledger).await;
        let last = &entries[2];
        let (data, dead) = (last.data_key.clone().unwrap(), last.dead_letter_key.clone().unwrap());
        ledger.store.remove(&data);
        // A PUT cut off on a server that is not atomic: bytes, but not its metadata.
        ledger.store.insert(&dead, b"\x1f\x8b", HashMap::new());
        let Recovered::Incomplete { entry, missing } = recover(&ledger).await.unwrap() else {
            panic!("the incomplete batch was not found");
        };
        assert_eq!(entry.as_ref(), last);
        assert_eq!(
            missing,
            [
                format!("{data} is missing"),
                format!("{dead} says None records, its ledger entry {}", last.dead_lettered)
            ]
        );
        // Only the last batch is checked: an earlier one's loss is the audit's to report.
        ledger.store.remove(entries[0].data_key.as_deref().unwrap());
        assert!(matches!(recover(&ledger).await.unwrap(), Recovered::Incomplete { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn s3_failures_and_unreadable_entries_are_errors_to_retry_not_positions() {
        let ledger = Fixture::new();
        three_batches(&ledger).await;
        ledger.store.set_unreachable(true);
        assert!(matches!(recover(&ledger).await, Err(RecoveryError::Read(ReadError::Get(GetError::Request(_))))));
        ledger.store.set_unreachable(false);
        ledger.store.remove(&ledger.layout.checkpoint_key(PARTITION));
        ledger.store.insert(&ledger.layout.entry_key(PARTITION, 75), b"garbage", HashMap::new());
        assert!(matches!(recover(&ledger).await, Err(RecoveryError::Read(ReadError::Invalid { .. }))));
    }

    /// Kills the writer after `puts` more writes while it commits 40..75 (after 0..40), then
    /// recovers as a new process would, writing the batch's objects again if told to.
    /// Returns what the first recovery said and the store's objects at the end.
    async fn crash_then_recover(puts: usize) -> (Recovered, Fixture) {
        let ledger = Fixture::new();
        let mut writer = ledger.writer("a", &CancellationToken::new());
        assert_eq!(ledger.commit(&mut writer, 0, 40).await.1, Ok(()));
        ledger.store.crash_after(puts);
        let crashed = tokio::time::timeout(Duration::from_secs(600), ledger.commit(&mut writer, 40, 35)).await;
        assert!(crashed.is_err(), "the commit finished although the process was killed after {puts} writes");
        ledger.store.restart();

        let mut writer = ledger.writer("b", &CancellationToken::new());
        let recovered = recover(&ledger).await.unwrap();
        match &recovered {
            Recovered::Incomplete { entry, .. } => {
                let rebuilt = ledger.sealed(entry.first_offset, entry.next_offset - entry.first_offset);
                assert_eq!(writer.write_again(entry, rebuilt).await, Ok(()));
                assert_eq!(recover(&ledger).await.unwrap(), clean(75), "after writing again");
            }
            Recovered::Resume { next: 40, .. } => {
                // The batch never was: it is read and committed again, possibly cut otherwise.
                assert_eq!(ledger.commit(&mut writer, 40, 35).await.1, Ok(()));
            }
            other => assert_eq!(other, &clean(75), "after {puts} writes"),
        }
        (recovered, ledger)
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_at_every_point_of_a_commit_ends_with_the_same_objects_as_no_crash() {
        let reference = Fixture::new();
        let mut writer = reference.writer("a", &CancellationToken::new());
        for (first, records) in [(0, 40), (40, 35)] {
            assert_eq!(reference.commit(&mut writer, first, records).await.1, Ok(()));
        }
        let objects = |ledger: &Fixture| -> Vec<(String, Vec<u8>)> {
            let keys = ledger.store.keys().into_iter().filter(|k| k.ends_with(".jsonl.gz"));
            keys.map(|k| (k.clone(), ledger.store.object(&k).unwrap().body.to_vec())).collect()
        };
        let expected = objects(&reference);
        assert_eq!(expected.len(), 4, "two batches with data and dead letters each");

        // Writes of a commit: the entry, the data object, the dead-letter object, the checkpoint.
        let mut said = Vec::new();
        for puts in 0..4 {
            let (recovered, ledger) = crash_then_recover(puts).await;
            assert_eq!(objects(&ledger), expected, "killed after {puts} writes: {recovered:?}");
            said.push(match recovered {
                Recovered::Empty => "empty".to_owned(),
                Recovered::Resume { next, action } => format!("{action} at {next}"),
                Recovered::Incomplete { missing, .. } => format!("{} missing", missing.len()),
            });
        }
        assert_eq!(said, ["clean at 40", "2 missing", "1 missing", "clean at 75"]);
    }
}
