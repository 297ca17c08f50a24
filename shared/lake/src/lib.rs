//! The Apache Iceberg tables of the stored events (issue #23): one table per event type,
//! partitioned by `day(ts)`, whose snapshots are appended exactly once.
//!
//! The consumers write a batch's Parquet files after its ledger entry, as they write its
//! other objects; this crate then appends the files of several batches in one snapshot.
//! What makes it exactly once is the table itself: every snapshot carries the Kafka
//! offsets it holds up to per partition, and an append commits only against the
//! snapshot it was planned on. A restarted or rebalanced consumer reads those offsets and
//! appends the ledger entries past them, and only those.
//!
//! - [`catalog`]: settings, catalogs, and the pinned catalog that makes commits conditional;
//! - [`offsets`]: the offsets a table holds, and the plan of an append (pure);
//! - [`table`]: the table: created, written, appended, expired, listed.

pub mod catalog;
pub mod offsets;
pub mod table;

pub use catalog::{CatalogSettings, LakeSettings, connect};
pub use offsets::{Batch, LakeFile, Offsets, TableState};
pub use table::{Appended, Lake, LakeError};
