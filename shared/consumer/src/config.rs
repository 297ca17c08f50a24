//! The consumer's settings: the common ones, S3, batching, partition ownership, and which
//! event type it keeps.

use std::time::Duration;

use service_runtime::config::{CommonConfig, ConfigError, Env};
use service_runtime::s3::S3Settings;
use store_event::EventType;

use crate::dedup::DedupSettings;

use crate::ownership::Assignment;

/// When an open batch is written to S3: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// `BATCH_MAX_EVENTS`: records (of any outcome) in one batch.
    pub max_events: usize,
    /// `BATCH_MAX_BYTES`: uncompressed bytes of stored and dead-lettered lines.
    pub max_bytes: usize,
    /// `BATCH_MAX_AGE`: time since the batch's first record arrived.
    pub max_age: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_events: 10_000, max_bytes: 4 * 1024 * 1024, max_age: Duration::from_secs(5) }
    }
}

/// The files a batch's stored events are written as (`OUTPUT_FORMATS`): gzip JSON Lines,
/// Parquet, rows of an Iceberg table, or several of them from the same batch. Dead
/// letters are JSON in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// `json`: gzip JSON Lines under `event_type=<type>/`, as received.
    pub json: bool,
    /// `parquet`: Parquet files under `parquet/event_type=<type>/`, typed columns.
    pub parquet: bool,
    /// `iceberg`: Parquet files of the consumer's Iceberg table, one per `day(ts)`,
    /// appended to it exactly once (see `store_lake`).
    pub iceberg: bool,
}

const FORMATS_HINT: &str = "use a comma-separated list of json, parquet and iceberg (json,iceberg for example)";

impl Formats {
    /// gzip JSON Lines only: the default, and what every version before Parquet wrote.
    pub const JSON: Formats = Formats { json: true, parquet: false, iceberg: false };

    /// No format: what [`Formats::parse`] starts from.
    pub const NONE: Formats = Formats { json: false, parquet: false, iceberg: false };

    /// Reads a comma-separated list such as `json,parquet`.
    pub fn parse(text: &str) -> Result<Formats, String> {
        let mut formats = Formats::NONE;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "json" => formats.json = true,
                "parquet" => formats.parquet = true,
                "iceberg" => formats.iceberg = true,
                _ => return Err(format!("{name:?} is not a format: {FORMATS_HINT}")),
            }
        }
        if formats == Formats::NONE {
            return Err(format!("names no format: {FORMATS_HINT}"));
        }
        Ok(formats)
    }
}

impl std::fmt::Display for Formats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(self.json, "json"), (self.parquet, "parquet"), (self.iceberg, "iceberg")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// What to do when the next offset to read is no longer in Kafka (retention deleted
/// records before they were stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRangePolicy {
    /// Log an error, count it, record the lost range in the ledger (the audit reports it)
    /// and go on from the earliest offset Kafka still has.
    Skip,
    /// Stop the partition and report not ready until an operator decides.
    Halt,
}

/// Everything a consumer reads from its environment.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `sales-consumer` or `inventory-consumer`.
    pub service: &'static str,
    /// The event type this consumer keeps.
    pub event_type: EventType,
    /// Topic, Kafka, HTTP and logs.
    pub common: CommonConfig,
    /// Where the events go.
    pub s3: S3Settings,
    /// `S3_CONDITIONAL_WRITES`: write ledger entries with `If-None-Match: *`, which fences
    /// off a second instance that claims the same partition. Turn off only for S3 servers
    /// that reject the header, and then make sure ownership is exclusive.
    pub conditional_writes: bool,
    /// When batches are flushed.
    pub batch: BatchLimits,
    /// `OUTPUT_FORMATS`: the files stored events are written as.
    pub formats: Formats,
    /// The Iceberg table and its catalog (`ICEBERG_*`), when `iceberg` is a format.
    pub lake: Option<store_lake::LakeSettings>,
    /// Which partitions this instance owns: the group's or fixed.
    pub assignment: Assignment,
    /// `FETCH_MAX_BYTES`: the most bytes one fetch asks for, per partition.
    pub fetch_max_bytes: i32,
    /// `PARTITION_REFRESH`: how often new partitions of the topic are looked for.
    pub partition_refresh: Duration,
    /// `CHECKPOINT_INTERVAL`: how often the recovery hint is written.
    pub checkpoint_interval: Duration,
    /// `ON_OFFSET_OUT_OF_RANGE`: `skip` or `halt`.
    pub out_of_range: OutOfRangePolicy,
    /// `DEDUP_WINDOW`, `DEDUP_MAX_IDS`: resend removal.
    pub dedup: DedupSettings,
    /// `CONSUMER_GROUP_ID`: the consumer group this service's instances form (in group
    /// assignment) and commit their progress to, for Kafka's tools and lag monitors (the
    /// ledger, not the committed offset, decides where a partition resumes).
    pub group_id: String,
}

impl ConsumerConfig {
    /// Reads the settings of the consumer of `event_type`.
    pub fn from_env(env: &Env, event_type: EventType) -> Result<ConsumerConfig, ConfigError> {
        let (service, default_addr) = match event_type {
            EventType::Sale => ("sales-consumer", "0.0.0.0:8081"),
            EventType::Inventory => ("inventory-consumer", "0.0.0.0:8082"),
        };
        let defaults = BatchLimits::default();
        let batch = BatchLimits {
            max_events: env.bounded("BATCH_MAX_EVENTS", defaults.max_events, 1, 10_000_000)?,
            max_bytes: env.bounded("BATCH_MAX_BYTES", defaults.max_bytes, 1024, 1024 * 1024 * 1024)?,
            max_age: env.duration("BATCH_MAX_AGE", defaults.max_age)?,
        };
        if batch.max_age.is_zero() {
            return Err(ConfigError::new("BATCH_MAX_AGE", "must be greater than zero"));
        }
        let out_of_range = match env.string("ON_OFFSET_OUT_OF_RANGE", "skip").as_str() {
            "skip" => OutOfRangePolicy::Skip,
            "halt" => OutOfRangePolicy::Halt,
            other => {
                return Err(ConfigError::new(
                    "ON_OFFSET_OUT_OF_RANGE",
                    format!("{other:?} is not valid: use skip or halt"),
                ));
            }
        };
        let formats = Formats::parse(&env.string("OUTPUT_FORMATS", "json"))
            .map_err(|reason| ConfigError::new("OUTPUT_FORMATS", reason))?;
        let s3 = S3Settings::from_env(env)?;
        let table = match event_type {
            EventType::Sale => "sale_events",
            EventType::Inventory => "inventory_events",
        };
        let lake = if formats.iceberg { Some(store_lake::LakeSettings::from_env(env, &s3, table)?) } else { None };
        Ok(ConsumerConfig {
            service,
            formats,
            lake,
            event_type,
            common: CommonConfig::from_env(env, service, default_addr)?,
            s3,
            conditional_writes: env.flag("S3_CONDITIONAL_WRITES", true)?,
            batch,
            assignment: Assignment::from_env(env)?,
            fetch_max_bytes: env.bounded("FETCH_MAX_BYTES", 1024 * 1024, 1024, 256 * 1024 * 1024)?,
            partition_refresh: env.duration("PARTITION_REFRESH", Duration::from_secs(30))?,
            checkpoint_interval: env.duration("CHECKPOINT_INTERVAL", Duration::from_secs(60))?,
            out_of_range,
            dedup: DedupSettings {
                window: env.duration("DEDUP_WINDOW", DedupSettings::default().window)?,
                max_ids: env.bounded("DEDUP_MAX_IDS", DedupSettings::default().max_ids, 1_000, 1_000_000_000)?,
            },
            group_id: group_id(env, service)?,
        })
    }
}

/// `CONSUMER_GROUP_ID`, `store-events-<service>` by default.
fn group_id(env: &Env, service: &str) -> Result<String, ConfigError> {
    let group = env.string("CONSUMER_GROUP_ID", &format!("store-events-{service}")).trim().to_owned();
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "CONSUMER_GROUP_ID",
            format!("{group:?} is not a group id: use 1 to 255 printable characters"),
        ));
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(pairs: &[(&str, &str)], event_type: EventType) -> Result<String, String> {
        ConsumerConfig::from_env(&Env::from_pairs(pairs.iter().copied()), event_type)
            .map(|c| c.group_id)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_consumer_has_its_own_group_unless_told() {
        assert_eq!(group(&[], EventType::Sale).as_deref(), Ok("store-events-sales-consumer"));
        assert_eq!(group(&[], EventType::Inventory).as_deref(), Ok("store-events-inventory-consumer"));
        assert_eq!(group(&[("CONSUMER_GROUP_ID", " team-a ")], EventType::Sale).as_deref(), Ok("team-a"));
    }

    #[test]
    fn output_formats_are_a_list_and_a_wrong_one_is_named() {
        let formats = |value: &str| {
            ConsumerConfig::from_env(&Env::from_pairs([("OUTPUT_FORMATS", value)]), EventType::Sale)
                .map(|c| c.formats.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            ConsumerConfig::from_env(&Env::from_pairs([]), EventType::Sale).map(|c| c.formats).ok(),
            Some(Formats::JSON)
        );
        assert_eq!(formats("parquet").as_deref(), Ok("parquet"));
        assert_eq!(formats(" Parquet , json ").as_deref(), Ok("json,parquet"));
        assert_eq!(formats("json,orc"), Err(format!("OUTPUT_FORMATS: \"orc\" is not a format: {FORMATS_HINT}")));
        assert_eq!(formats(" , "), Err(format!("OUTPUT_FORMATS: names no format: {FORMATS_HINT}")));
        assert_eq!(formats("iceberg,json").as_deref(), Ok("json,iceberg"));
    }

    #[test]
    fn a_group_id_kafka_would_refuse_is_named() {
        for bad in ["", "   ", "a\nb", &"g".repeat(256)] {
            let error = group(&[("CONSUMER_GROUP_ID", bad)], EventType::Sale).unwrap_err();
            assert!(error.starts_with("CONSUMER_GROUP_ID: "), "{error}");
            assert!(error.contains("is not a group id"), "{error}");
        }
    }
}
