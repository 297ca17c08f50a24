//! Where everything lives in the bucket. Keys are deterministic: a batch's objects are
//! named by its topic, partition and first offset, and dated by its records, so writing
//! the same batch again overwrites the same objects.
//!
//! ```text
//! <prefix>/event_type=sale_event/dt=2026-11-24/<topic>+<partition>+<first offset>.jsonl.gz   data (json)
//! <prefix>/parquet/event_type=sale_event/dt=2026-11-24/<topic>+<partition>+<first offset>.parquet  data (parquet)
//! <prefix>/dead_letter/consumer=sales-consumer/dt=2026-11-24/<topic>+<partition>+<first offset>.jsonl.gz
//! <prefix>/_ledger/consumer=sales-consumer/topic=<topic>/partition=<p>/<first offset>.json  one per batch
//! <prefix>/_ledger/consumer=sales-consumer/topic=<topic>/partition=<p>/checkpoint.json       recovery hint
//! ```
//!
//! Offsets are zero-padded to 20 digits so that S3's lexical order is offset order.

use chrono::NaiveDate;
use service_runtime::s3::S3Settings;
use store_event::EventType;

/// Names the objects of one consumer on one partition.
#[derive(Debug, Clone)]
pub struct Layout {
    settings: S3Settings,
    service: String,
    event_type: EventType,
    topic: String,
}

impl Layout {
    /// The layout of consumer `service` (keeping `event_type`) reading `topic`.
    pub fn new(settings: &S3Settings, service: &str, event_type: EventType, topic: &str) -> Layout {
        Layout { settings: settings.clone(), service: service.to_owned(), event_type, topic: topic.to_owned() }
    }

    /// The object name shared by a batch's data and dead-letter objects.
    fn object_name(&self, partition: i32, first_offset: i64) -> String {
        format!("{}+{partition}+{first_offset:020}.jsonl.gz", self.topic)
    }

    /// The Parquet data file of the batch starting at `first_offset`, dated `dt`: its own
    /// tree, so that a JSON table and a Parquet table each read one format.
    pub fn parquet_key(&self, partition: i32, first_offset: i64, dt: NaiveDate) -> String {
        self.settings.key(&format!(
            "parquet/event_type={}/dt={dt}/{}+{partition}+{first_offset:020}.parquet",
            self.event_type.as_str(),
            self.topic
        ))
    }

    /// The data object of the batch starting at `first_offset`, dated `dt`.
    pub fn data_key(&self, partition: i32, first_offset: i64, dt: NaiveDate) -> String {
        self.settings.key(&format!(
            "event_type={}/dt={dt}/{}",
            self.event_type.as_str(),
            self.object_name(partition, first_offset)
        ))
    }

    /// The dead-letter object of the batch starting at `first_offset`, dated `dt`.
    pub fn dead_letter_key(&self, partition: i32, first_offset: i64, dt: NaiveDate) -> String {
        self.settings.key(&format!(
            "dead_letter/consumer={}/dt={dt}/{}",
            self.service,
            self.object_name(partition, first_offset)
        ))
    }

    /// The folder of a partition's ledger.
    pub fn ledger_prefix(&self, partition: i32) -> String {
        self.settings.key(&format!("_ledger/consumer={}/topic={}/partition={partition}/", self.service, self.topic))
    }

    /// The ledger entry of the batch starting at `first_offset`.
    pub fn entry_key(&self, partition: i32, first_offset: i64) -> String {
        format!("{}{first_offset:020}.json", self.ledger_prefix(partition))
    }

    /// The recovery hint of a partition.
    pub fn checkpoint_key(&self, partition: i32) -> String {
        format!("{}checkpoint.json", self.ledger_prefix(partition))
    }

    /// The bucket (`S3_BUCKET`).
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The folder holding every partition's ledger of this consumer and topic.
    pub fn ledger_root(&self) -> String {
        self.settings.key(&format!("_ledger/consumer={}/topic={}/", self.service, self.topic))
    }

    /// The folder of every data object of this consumer's type.
    pub fn data_root(&self) -> String {
        self.settings.key(&format!("event_type={}/", self.event_type.as_str()))
    }

    /// The folder of every Parquet data file of this consumer's type.
    pub fn parquet_root(&self) -> String {
        self.settings.key(&format!("parquet/event_type={}/", self.event_type.as_str()))
    }

    /// The folder of every dead letter of this consumer.
    pub fn dead_letter_root(&self) -> String {
        self.settings.key(&format!("dead_letter/consumer={}/", self.service))
    }

    /// The first offset named by a ledger entry key, or `None` for other keys.
    pub fn entry_offset(key: &str) -> Option<i64> {
        let name = key.rsplit('/').next()?;
        let digits = name.strip_suffix(".json")?;
        (digits.len() == 20).then(|| digits.parse().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use service_runtime::config::Env;

    use super::*;

    fn layout(prefix: &str) -> Layout {
        let settings = S3Settings::from_env(&Env::from_pairs([("S3_PREFIX", prefix)])).expect("settings");
        Layout::new(&settings, "sales-consumer", EventType::Sale, "MystiqueStoreEventsTopic")
    }

    #[test]
    fn keys_are_hive_style_and_named_by_first_offset() {
        let dt = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap_or_default();
        let layout = layout("events");
        assert_eq!(
            layout.data_key(1, 4200, dt),
            "events/event_type=sale_event/dt=2026-11-24/MystiqueStoreEventsTopic+1+00000000000000004200.jsonl.gz"
        );
        assert_eq!(
            layout.parquet_key(1, 4200, dt),
            "events/parquet/event_type=sale_event/dt=2026-11-24/MystiqueStoreEventsTopic+1+00000000000000004200.parquet"
        );
        assert_eq!(
            layout.dead_letter_key(0, 7, dt),
            "events/dead_letter/consumer=sales-consumer/dt=2026-11-24/MystiqueStoreEventsTopic+0+00000000000000000007.jsonl.gz"
        );
        assert_eq!(
            layout.entry_key(1, 4200),
            "events/_ledger/consumer=sales-consumer/topic=MystiqueStoreEventsTopic/partition=1/00000000000000004200.json"
        );
    }

    #[test]
    fn ledger_entries_sort_by_offset_and_parse_back() {
        let layout = layout("");
        let (a, b) = (layout.entry_key(0, 9), layout.entry_key(0, 10));
        assert!(a < b);
        assert_eq!(Layout::entry_offset(&b), Some(10));
        assert_eq!(Layout::entry_offset(&layout.checkpoint_key(0)), None);
    }
}
