//! The ledger: S3 is the consumer's only durable state.
//!
//! For every batch, one ledger entry is written *before* its objects, with
//! `If-None-Match: *`. The entry says which offsets the batch accounts for and which
//! objects hold them. Recovery reads the last entry and writes its objects again if any
//! is missing (same records, same bytes, same keys), then goes on from its `next_offset`.
//! So after a crash at any point every offset is accounted for exactly once:
//!
//! - crash before the entry: the batch never existed; its records are read again and
//!   may be cut differently, under an entry that was never taken;
//! - crash after the entry: its objects are (re)written exactly as the entry says;
//! - a second instance on the same partition loses the race for the next entry's key
//!   (412 Precondition Failed) and backs off; it never writes objects for an entry it
//!   did not win, except the same bytes again during recovery.
//!
//! A checkpoint object names the last entry now and then, so recovery lists only the
//! entries written after it instead of the partition's whole history.
//!
//! - [`store`]: the four object operations the protocol needs, on S3 ([`Bucket`]);
//! - [`writer`]: commit (entry first, conditionally; then its objects), retries, checkpoints;
//! - [`pipeline`]: a partition's commits in the background, one at a time, each while the
//!   next batch fills;
//! - [`recovery`]: reading the ledger back at start: where to go on, and what to write again.
//!
//! The partition loop (`crate::partition`) drives them with Kafka's records; the audit
//! (`crate::audit`) reads the same entries and objects to prove the result.

pub mod pipeline;
pub mod recovery;
pub mod store;
pub mod writer;

#[cfg(test)]
pub(crate) mod memory;

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, NaiveDate, Utc};
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dedup::EventIds;
pub use store::{Bucket, GetError, Object, PutError, Store, StoreError};

/// One ledger entry: the offsets `first_offset..next_offset` of one partition and where
/// they went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset accounted for.
    pub first_offset: i64,
    /// One past the last offset accounted for.
    pub next_offset: i64,
    /// Records found in the range (offsets without a record, such as transaction
    /// markers, are accounted for by the range).
    pub records: u64,
    /// Events stored in `data_key`.
    pub stored: u64,
    /// Records in `dead_letter_key`.
    pub dead_lettered: u64,
    /// The other type's records.
    pub skipped: u64,
    /// Valid events not stored because an earlier copy (same store, same `request_id`)
    /// was: resends (see [`crate::dedup`]).
    #[serde(default)]
    pub duplicates: u64,
    /// The date of the batch's records.
    pub dt: Option<NaiveDate>,
    /// The gzip JSON Lines data object, when events were stored and JSON is a format.
    pub data_key: Option<String>,
    /// The Parquet data file, when events were stored and Parquet is a format (entries
    /// written before Parquet have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_key: Option<String>,
    /// The dead-letter object, when there were dead letters.
    pub dead_letter_key: Option<String>,
    /// The Iceberg table's data files of the batch (one per UTC day of `ts`), when Iceberg
    /// is a format: `Some` (maybe empty) marks an entry the table must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake_files: Option<Vec<store_lake::LakeFile>>,
    /// True when the range was deleted by Kafka's retention before it could be read:
    /// recorded so that the loss is visible to the audit, never silent.
    #[serde(default)]
    pub lost: bool,
    /// The identities of the stored events, in order, when resends are removed: what
    /// recovery remembers, and what a batch written again keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<EventIds>,
    /// The first offset of the oldest entry whose identities were still remembered when
    /// this one was written: where recovery starts reading them back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_from: Option<i64>,
    /// Which instance wrote the entry.
    pub writer: String,
    /// When.
    pub written_at: DateTime<Utc>,
}

impl Entry {
    /// The objects the entry promises, each with the records it must hold: keys in the
    /// bucket, and the Iceberg table's files by their `s3://` locations (see [`Store`]).
    pub fn objects(&self) -> impl Iterator<Item = (&str, u64)> {
        let data = self.data_key.as_deref().map(|key| (key, self.stored));
        let parquet = self.parquet_key.as_deref().map(|key| (key, self.stored));
        let dead = self.dead_letter_key.as_deref().map(|key| (key, self.dead_lettered));
        let lake = self.lake_files.iter().flatten().map(|file| (file.path.as_str(), file.rows));
        data.into_iter().chain(parquet).chain(dead).chain(lake)
    }
}

/// The bucket of an `s3://bucket/key` location.
pub fn object_bucket(location: &str) -> Option<&str> {
    location.strip_prefix("s3://")?.split('/').next()
}

/// The recovery hint: the last entry known to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The `first_offset` of that entry.
    pub entry_first_offset: i64,
    /// Its `next_offset`: where reading goes on.
    pub next_offset: i64,
    /// When the hint was written.
    pub written_at: DateTime<Utc>,
}

/// Content type of the data and dead-letter objects (gzip-compressed JSON Lines). No
/// `Content-Encoding`, so that downloads keep the `.gz` bytes the name promises.
pub const GZIP_JSONL: &str = "application/gzip";

/// Content type of the Parquet data files (IANA, 2024).
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// Object metadata of a batch's objects: what they account for.
pub fn object_metadata(entry: &Entry, records: u64) -> HashMap<String, String> {
    HashMap::from([
        ("topic".to_owned(), entry.topic.clone()),
        ("partition".to_owned(), entry.partition.to_string()),
        ("first-offset".to_owned(), entry.first_offset.to_string()),
        ("last-offset".to_owned(), (entry.next_offset - 1).to_string()),
        ("record-count".to_owned(), records.to_string()),
    ])
}

/// Why a JSON object of the ledger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The store failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// The object is there but is not what its key says.
    #[error("{key} is not valid: {source}")]
    Invalid {
        /// The key.
        key: String,
        /// What the parser found.
        source: serde_json::Error,
    },
}

/// A JSON object (an entry, a checkpoint), or `None` when it does not exist.
pub async fn get_json<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<T>, ReadError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ReadError::Invalid { key: key.to_owned(), source }),
    }
}

/// `None` when the object exists and carries the `count` records its entry promises; else
/// what is wrong with it. Recovery asks without `deep` (the same HEAD as an existence check:
/// an object without its metadata is as good as missing); the audit's `--deep` also reads
/// every object and counts its lines (its rows, from a Parquet file's footer).
pub async fn check_object(store: &dyn Store, key: &str, count: u64, deep: bool) -> Result<Option<String>, StoreError> {
    let Some(metadata) = store.head(key).await? else {
        return Ok(Some(format!("{key} is missing")));
    };
    let recorded = metadata.get("record-count").and_then(|c| c.parse::<u64>().ok());
    if recorded != Some(count) {
        return Ok(Some(format!("{key} says {recorded:?} records, its ledger entry {count}")));
    }
    if deep {
        let bytes = match store.get(key).await {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(GetError::Body(error)) => return Ok(Some(format!("{key} cannot be read: {error}"))),
            Err(GetError::Request(error)) => return Err(error),
        };
        if key.ends_with(".parquet") {
            return Ok(match parquet_rows(bytes) {
                Err(error) => Some(format!("{key} is not a valid Parquet file: {error}")),
                Ok(rows) if rows != count => Some(format!("{key} holds {rows} rows, its ledger entry {count}")),
                Ok(_) => None,
            });
        }
        let mut text = String::new();
        if MultiGzDecoder::new(bytes.as_slice()).read_to_string(&mut text).is_err() {
            return Ok(Some(format!("{key} is not valid gzip text")));
        }
        let lines = text.lines().count() as u64;
        if lines != count {
            return Ok(Some(format!("{key} holds {lines} lines, its ledger entry {count}")));
        }
    }
    Ok(None)
}

/// The rows of a Parquet file, from its footer, with every page of it read: a file cut
/// short or corrupted fails here.
fn parquet_rows(bytes: Vec<u8>) -> Result<u64, parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut rows = 0;
    for batch in reader {
        rows += batch.map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?.num_rows() as u64;
    }
    Ok(rows)
}
