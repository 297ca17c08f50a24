//! `sales-consumer migrate` / `inventory-consumer migrate`: brings the history of a JSON
//! lake (the ledger entries written before Iceberg was turned on) into the consumer's
//! Iceberg table, exactly once and resumable.
//!
//! Turn `iceberg` on first: each partition then enters the table at its first entry written
//! with Iceberg (`store-events.starts.<topic>`). The migration reads the entries before that
//! start, in offset order, converts each one's gzip JSON Lines to the table's Parquet files
//! (one per UTC day of `ts`, named like the live path's) and appends them in chunks, each
//! snapshot moving `store-events.migrated.<topic>` (how far each partition's history is in).
//! Appends only commit on the snapshot they were planned on, as the live path's do, so a
//! migration killed at any point and run again goes on where the table says, and one run
//! beside the consumers never appends an entry twice.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use chrono::NaiveDate;
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use store_event::columnar::ParquetFile;
use store_event::{Document, check_fields};
use store_lake::{Batch, Lake, LakeError, LakeFile, Offsets};

use crate::layout::Layout;
use crate::ledger::{Entry, Object, PARQUET, ReadError, Store, StoreError, get_json, object_metadata};

/// Entries per append: a snapshot per this many history entries.
const CHUNK: usize = 64;
/// Conflicts in a row before the migration gives up (run it again).
const CONFLICT_RETRIES: u32 = 16;

/// What the migration did on one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionMigration {
    /// The partition.
    pub partition: i32,
    /// Where the table holds the partition from (its live start), if it does.
    pub start: Option<i64>,
    /// How far its history is in the table now.
    pub migrated_to: Option<i64>,
    /// Entries appended by this run.
    pub entries: u64,
    /// Rows appended by this run.
    pub rows: u64,
    /// Data files written and appended by this run.
    pub files: u64,
}

/// Why the migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// S3 failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger entry could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The table could not be read or appended to.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// An entry's events cannot be read back.
    #[error("ledger entry {first_offset} of partition {partition}: {reason}")]
    Entry {
        /// The partition.
        partition: i32,
        /// The entry's first offset.
        first_offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// Other writers kept moving the table.
    #[error("the table kept moving ({CONFLICT_RETRIES} conflicts in a row): run the migration again")]
    Busy,
}

/// Migrates every partition of the ledger the table holds; partitions it does not hold yet
/// (their consumer has not run with Iceberg) are reported with no start and left alone.
pub async fn run(store: &dyn Store, layout: &Layout, lake: &Lake) -> Result<Vec<PartitionMigration>, MigrateError> {
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for key in store.list(&layout.ledger_root(), None).await? {
        if Layout::entry_offset(&key).is_none() {
            continue;
        }
        let partition =
            key.split('/').find_map(|segment| segment.strip_prefix("partition=")).and_then(|p| p.parse::<i32>().ok());
        if let Some(partition) = partition {
            by_partition.entry(partition).or_default().push(key);
        }
    }
    let state = lake.state().await?;
    let mut report = Vec::new();
    for (partition, mut keys) in by_partition {
        keys.sort_by_key(|k| Layout::entry_offset(k));
        let mut done =
            PartitionMigration { partition, start: state.starts.get(&partition).copied(), ..Default::default() };
        if let Some(start) = done.start {
            migrate_partition(store, lake, partition, start, &keys, &mut done).await?;
        }
        report.push(done);
    }
    Ok(report)
}

async fn migrate_partition(
    store: &dyn Store,
    lake: &Lake,
    partition: i32,
    start: i64,
    keys: &[String],
    done: &mut PartitionMigration,
) -> Result<(), MigrateError> {
    let Some(first) = keys.first().and_then(|k| Layout::entry_offset(k)) else { return Ok(()) };
    let firsts = Offsets::from([(partition, first)]);
    let mut cursor = lake.state().await?.migrated.get(&partition).copied().unwrap_or(first);
    let pending: Vec<&String> =
        keys.iter().filter(|k| Layout::entry_offset(k).is_some_and(|o| o >= cursor && o < start)).collect();
    for chunk in pending.chunks(CHUNK) {
        let mut batches = Vec::with_capacity(chunk.len());
        for key in chunk {
            let Some(entry) = get_json::<Entry>(store, key).await? else { continue };
            if entry.next_offset > start {
                break;
            }
            batches.push(history_batch(store, lake, &entry).await?);
        }
        let mut conflicts = 0;
        loop {
            match lake.append_history(&batches, &firsts).await {
                Ok(appended) => {
                    for &i in &appended.plan.append {
                        done.entries += 1;
                        done.files += batches[i].files.len() as u64;
                        done.rows += batches[i].files.iter().map(|f| f.rows).sum::<u64>();
                    }
                    cursor = appended.plan.state.migrated.get(&partition).copied().unwrap_or(cursor);
                    if !appended.plan.waiting.is_empty() || !appended.plan.conflicting.is_empty() {
                        return Err(MigrateError::Entry {
                            partition,
                            first_offset: cursor,
                            reason: "the ledger has a gap or an overlap here: run the audit".to_owned(),
                        });
                    }
                    break;
                }
                Err(LakeError::Conflict(_)) if conflicts < CONFLICT_RETRIES => conflicts += 1,
                Err(LakeError::Conflict(_)) => return Err(MigrateError::Busy),
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(partition, migrated_to = cursor, start, "History appended to the Iceberg table.");
    }
    done.migrated_to = Some(cursor);
    Ok(())
}

/// The table's batch of one history entry: its stored events read back from its JSON
/// object and written as the table's Parquet files (one per UTC day of `ts`); an entry
/// written with Iceberg already names its files.
async fn history_batch(store: &dyn Store, lake: &Lake, entry: &Entry) -> Result<Batch, MigrateError> {
    let fail =
        |reason: String| MigrateError::Entry { partition: entry.partition, first_offset: entry.first_offset, reason };
    let mut batch = Batch {
        partition: entry.partition,
        first_offset: entry.first_offset,
        next_offset: entry.next_offset,
        files: Vec::new(),
    };
    if let Some(files) = &entry.lake_files {
        batch.files = files.clone();
        return Ok(batch);
    }
    if entry.stored == 0 {
        return Ok(batch);
    }
    let Some(key) = &entry.data_key else {
        return Err(fail(
            "its events are in no JSON object (a Parquet-only lake is not migrated by this version)".to_owned(),
        ));
    };
    let bytes = match store.get(key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(fail(format!("{key} is missing"))),
        Err(error) => return Err(fail(format!("{key} cannot be read: {error}"))),
    };
    let mut text = String::new();
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("{key} is not gzip text: {e}")))?;
    let mut days: BTreeMap<NaiveDate, ParquetFile> = BTreeMap::new();
    for (line, number) in text.lines().zip(1..) {
        let document = Document::parse(line.as_bytes()).map_err(|e| fail(format!("{key} line {number}: {e}")))?;
        let fields = check_fields(&document).map_err(|e| fail(format!("{key} line {number}: {e}")))?;
        days.entry(fields.ts.naive_utc().date()).or_default().push(&fields, &document);
    }
    let rows: u64 = days.values().map(|f| f.rows() as u64).sum();
    if rows != entry.stored {
        return Err(fail(format!("{key} holds {rows} events, its entry {}", entry.stored)));
    }
    let footer = [
        ("store_events.topic", entry.topic.clone()),
        ("store_events.partition", entry.partition.to_string()),
        ("store_events.first_offset", entry.first_offset.to_string()),
        ("store_events.next_offset", entry.next_offset.to_string()),
    ];
    for (day, file) in days {
        let rows = file.rows() as u64;
        let body = Bytes::from(file.finish(&footer));
        let path = lake.file_path(day, entry.partition, entry.first_offset);
        let bytes = body.len() as u64;
        let object = Object { body, content_type: PARQUET, metadata: object_metadata(entry, rows) };
        store.put(&path, &object, false).await.map_err(|e| fail(format!("writing {path}: {e}")))?;
        batch.files.push(LakeFile { path, day, rows, bytes });
    }
    Ok(batch)
}
