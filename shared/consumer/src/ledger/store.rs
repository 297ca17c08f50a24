//! The object operations the ledger needs, and their S3 implementation.
//!
//! The protocol (`writer`, `recovery`) and the audit speak only to [`Store`], so that
//! their every branch can be tested against an in-memory store with failures injected,
//! while the integration tests run the same code against a real S3 server.

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::future::BoxFuture;
use service_runtime::error_chain;
use service_runtime::s3::describe;

/// A failed request: what was asked, of which key, and why.
pub use service_runtime::s3::S3Error as StoreError;

/// One object to write. The body is shared, not copied, by each retry.
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The object exists and the write was conditional: another writer got there first.
    #[error("the object already exists")]
    Exists,
    /// The store failed or could not be reached.
    #[error(transparent)]
    Failed(#[from] StoreError),
}

/// Why [`Store::get`] has no bytes to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// The request failed: the store could not be reached, timed out or refused it.
    #[error(transparent)]
    Request(StoreError),
    /// The store answered, but the body broke off or did not match the checksum kept with
    /// it (the SDK checks it): the stored object itself may be damaged.
    #[error(transparent)]
    Body(StoreError),
}

/// Objects by key: what the ledger protocol needs of S3.
///
/// A key is an object's key in the consumer's bucket, or an `s3://bucket/key` location for
/// an object elsewhere: the Iceberg table's files are named by their locations, since an
/// Amazon S3 Tables table keeps them in storage of its own.
pub trait Store: Send + Sync {
    /// Writes `object` at `key`; with `if_absent`, only when no object has the key
    /// (`If-None-Match: *`), else [`PutError::Exists`].
    fn put<'a>(&'a self, key: &'a str, object: &'a Object, if_absent: bool) -> BoxFuture<'a, Result<(), PutError>>;

    /// The object's user metadata, or `None` when it does not exist.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<HashMap<String, String>>, StoreError>>;

    /// The object's bytes, or `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GetError>>;

    /// Every key under `prefix` after `start_after`, in S3's (lexical) order; locations
    /// under a location.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
}

/// One S3 bucket.
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

    /// The bucket and key a store key names (see [`Store`]).
    fn locate<'k>(&'k self, key: &'k str) -> (&'k str, &'k str) {
        key.strip_prefix("s3://").and_then(|location| location.split_once('/')).unwrap_or((&self.bucket, key))
    }
}

fn is_not_found<E>(err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    err.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

impl Store for Bucket {
    fn put<'a>(&'a self, key: &'a str, object: &'a Object, if_absent: bool) -> BoxFuture<'a, Result<(), PutError>> {
        Box::pin(async move {
            let (bucket, object_key) = self.locate(key);
            let mut request = self
                .client
                .put_object()
                .bucket(bucket)
                .key(object_key)
                .content_type(object.content_type)
                .set_metadata(Some(object.metadata.clone()))
                .body(ByteStream::from(object.body.clone()));
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
                        Err(PutError::Failed(StoreError::new("PUT", key, describe(&err))))
                    }
                }
            }
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<HashMap<String, String>>, StoreError>> {
        Box::pin(async move {
            let (bucket, object_key) = self.locate(key);
            match self.client.head_object().bucket(bucket).key(object_key).send().await {
                Ok(head) => Ok(Some(head.metadata.unwrap_or_default())),
                Err(err) if is_not_found(&err) => Ok(None),
                Err(err) => Err(StoreError::new("HEAD", key, describe(&err))),
            }
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GetError>> {
        Box::pin(async move {
            let (bucket, object_key) = self.locate(key);
            match self.client.get_object().bucket(bucket).key(object_key).send().await {
                Ok(object) => {
                    let body = object
                        .body
                        .collect()
                        .await
                        .map_err(|e| GetError::Body(StoreError::new("GET", key, error_chain(&e))))?;
                    Ok(Some(body.into_bytes().to_vec()))
                }
                Err(err) if is_not_found(&err) => Ok(None),
                Err(err) => Err(GetError::Request(StoreError::new("GET", key, describe(&err)))),
            }
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let (bucket, key_prefix) = self.locate(prefix);
            let start_after = start_after.map(|key| self.locate(key).1);
            let keys = service_runtime::s3::list_keys(&self.client, bucket, key_prefix, start_after).await?;
            if prefix.starts_with("s3://") {
                Ok(keys.into_iter().map(|key| format!("s3://{bucket}/{key}")).collect())
            } else {
                Ok(keys)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_in_the_bucket_and_a_location_in_its_own() {
        let config =
            aws_sdk_s3::Config::builder().behavior_version(aws_sdk_s3::config::BehaviorVersion::latest()).build();
        let bucket = Bucket::new(Client::from_conf(config), "store-events");
        assert_eq!(bucket.locate("_ledger/a/b.json"), ("store-events", "_ledger/a/b.json"));
        assert_eq!(
            bucket.locate("s3://store-events/iceberg/t/data/x.parquet"),
            ("store-events", "iceberg/t/data/x.parquet")
        );
        assert_eq!(
            bucket.locate("s3://e6c9bf20-991a-46fb-kni5xs1q2yxi3xxdyxzjzigdeop1quse2b--table-s3/data/x.parquet"),
            ("e6c9bf20-991a-46fb-kni5xs1q2yxi3xxdyxzjzigdeop1quse2b--table-s3", "data/x.parquet")
        );
    }
}
