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

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use service_runtime::error_chain;
use service_runtime::s3::describe;

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
    /// The date of the batch's records.
    pub dt: Option<NaiveDate>,
    /// The data object, when events were stored.
    pub data_key: Option<String>,
    /// The dead-letter object, when there were dead letters.
    pub dead_letter_key: Option<String>,
    /// True when the range was deleted by Kafka's retention before it could be read:
    /// recorded so that the loss is visible to the audit, never silent.
    #[serde(default)]
    pub lost: bool,
    /// Which instance wrote the entry.
    pub writer: String,
    /// When.
    pub written_at: DateTime<Utc>,
}

impl Entry {
    /// The objects the entry promises, each with the records it must hold.
    pub fn objects(&self) -> impl Iterator<Item = (&str, u64)> {
        let data = self.data_key.as_deref().map(|key| (key, self.stored));
        let dead = self.dead_letter_key.as_deref().map(|key| (key, self.dead_lettered));
        data.into_iter().chain(dead)
    }
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

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The object exists and the write was conditional: another writer got there first.
    #[error("the object already exists")]
    Exists,
    /// S3 failed or could not be reached.
    #[error("{0}")]
    Failed(String),
}

/// Objects to and from the bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    client: Client,
    bucket: String,
}

impl Bucket {
    /// Operations on `bucket`.
    pub fn new(client: Client, bucket: &str) -> Bucket {
        Bucket { client, bucket: bucket.to_owned() }
    }

    /// Writes an object; with `if_absent`, only when no object has the key.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
        if_absent: bool,
    ) -> Result<(), PutError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata))
            .body(ByteStream::from(body));
        if if_absent {
            request = request.if_none_match("*");
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                // 412 Precondition Failed; AWS answers 409 when two conditional writes race.
                if if_absent && matches!(status, Some(412 | 409)) {
                    Err(PutError::Exists)
                } else {
                    Err(PutError::Failed(format!("PUT {key}: {}", describe(&err))))
                }
            }
        }
    }

    /// The object's user metadata, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, String> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => Ok(Some(head.metadata.unwrap_or_default())),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(err) => Err(format!("HEAD {key}: {}", describe(&err))),
        }
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, GetError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| GetError::Body(format!("GET {key}: {}", error_chain(&e))))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(err) => Err(GetError::Request(format!("GET {key}: {}", describe(&err)))),
        }
    }

    /// A JSON object, or `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{key} is not valid: {e}")),
        }
    }

    /// Every key under `prefix` after `start_after`, in S3's (lexical) order.
    pub async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<Vec<String>, String> {
        service_runtime::s3::list_keys(&self.client, &self.bucket, prefix, start_after).await
    }
}

/// Why [`Bucket::get`] has no bytes to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// The request failed: S3 could not be reached, timed out or refused it.
    Request(String),
    /// S3 answered, but the body broke off or did not match the checksum S3 keeps with
    /// it (the SDK checks it): the stored object itself may be damaged.
    Body(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Request(message) | GetError::Body(message) => f.write_str(message),
        }
    }
}

impl From<GetError> for String {
    fn from(error: GetError) -> String {
        error.to_string()
    }
}

/// Content type of the data and dead-letter objects (gzip-compressed JSON Lines). No
/// `Content-Encoding`, so that downloads keep the `.gz` bytes the name promises.
pub const GZIP_JSONL: &str = "application/gzip";

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
