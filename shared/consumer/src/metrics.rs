//! The consumer's Prometheus metrics. Labels are low-cardinality: outcome, reason label,
//! operation, and partition (a topic has few).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use service_runtime::metrics::registered;

/// Every metric a consumer exports.
#[derive(Clone)]
pub struct Metrics {
    /// `consumer_records_total{outcome}`: records accounted for, by outcome
    /// (`stored`, `dead_lettered`, `skipped`).
    pub records: IntCounterVec,
    /// `consumer_dead_letters_total{reason}`: dead letters by reason label.
    pub dead_letters: IntCounterVec,
    /// `consumer_committed_offset{partition}`: the next offset to read, durable in S3.
    pub committed_offset: IntGaugeVec,
    /// `consumer_position{partition}`: the next offset to fetch. Every record before it
    /// has been read: committed to S3 or held in the open batch (`position -
    /// committed_offset`), as the Java client's position is ahead of its commits.
    pub position: IntGaugeVec,
    /// `consumer_high_watermark{partition}`: Kafka's high watermark at the last fetch.
    pub high_watermark: IntGaugeVec,
    /// `consumer_lag_records{partition}`: high watermark minus committed offset.
    pub lag: IntGaugeVec,
    /// `consumer_batch_records`: records per flushed batch.
    pub batch_records: Histogram,
    /// `consumer_batch_bytes`: uncompressed bytes per flushed batch.
    pub batch_bytes: Histogram,
    /// `consumer_batch_age_seconds`: age of a batch when flushed.
    pub batch_age: Histogram,
    /// `consumer_s3_request_duration_seconds{operation}`: S3 writes (`entry`, `data`,
    /// `dead_letter`, `checkpoint`).
    pub s3_duration: HistogramVec,
    /// `consumer_s3_errors_total{operation}`: failed S3 requests.
    pub s3_errors: IntCounterVec,
    /// `consumer_kafka_errors_total{operation}`: failed Kafka requests.
    pub kafka_errors: IntCounterVec,
    /// `consumer_fenced_total{partition}`: times another instance won a ledger entry.
    pub fenced: IntCounterVec,
    /// `consumer_offset_out_of_range_total{partition}`: reads of offsets Kafka no longer has.
    pub out_of_range: IntCounterVec,
    /// `consumer_records_lost_total{partition}`: offsets deleted by retention before they
    /// were read (recorded in the ledger).
    pub lost: IntCounterVec,
    /// `consumer_offsets_without_record_total{partition}`: committed offsets that held no
    /// record for a consumer: transaction markers, records of aborted transactions.
    pub without_record: IntCounterVec,
    /// `consumer_recoveries_total{partition,action}`: recoveries at start, by whether the
    /// last batch's objects had to be written again (`rewrote`) or not (`clean`).
    pub recoveries: IntCounterVec,
    /// `consumer_offset_commits_total{outcome}`: commits of the ledger's progress to the
    /// consumer group (`ok`, `error`), for Kafka's tools and lag monitors.
    pub offset_commits: IntCounterVec,
    /// `consumer_assigned_partitions`: partitions this instance reads now.
    pub assigned_partitions: IntGauge,
    /// `consumer_group_generation`: the consumer group's generation this instance is in.
    pub generation: IntGauge,
    /// `consumer_group_unowned_partitions`: partitions of this instance's topic that no
    /// member of its consumer group owned when the coordinator last described the group
    /// (0 when every partition has an owner).
    pub unowned_partitions: IntGauge,
    /// `consumer_dedup_remembered_ids`: event identities a partition remembers to remove
    /// resends (bounded by `DEDUP_MAX_IDS`).
    pub dedup_remembered: IntGaugeVec,
    /// `consumer_dedup_forgotten_early_total`: batches whose identities were forgotten
    /// before `DEDUP_WINDOW` ended to stay within `DEDUP_MAX_IDS` (resends of their events
    /// are no longer removed).
    pub dedup_forgotten_early: IntCounterVec,
    /// `consumer_rebalances_total`: rebalances this instance completed (joins included).
    pub rebalances: IntCounter,
    /// `consumer_rebalance_seconds`: from a rebalance's start (or the process's) to this
    /// instance's new partitions: committing open batches, rejoining, the assignment.
    pub rebalance_seconds: Histogram,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), &["partition"]))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    registered(registry, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)))
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Metrics {
        let s3_duration = registered(
            registry,
            HistogramVec::new(
                HistogramOpts::new("consumer_s3_request_duration_seconds", "Duration of S3 writes.")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["operation"],
            ),
        );
        let assigned_partitions =
            registered(registry, IntGauge::new("consumer_assigned_partitions", "Partitions this instance reads now."));
        let generation = registered(
            registry,
            IntGauge::new("consumer_group_generation", "The consumer group generation this instance is in."),
        );
        let unowned_partitions = registered(
            registry,
            IntGauge::new(
                "consumer_group_unowned_partitions",
                "Partitions of this instance's topic that no member of its consumer group owns.",
            ),
        );
        let rebalances = registered(
            registry,
            IntCounter::new(
                "consumer_rebalances_total",
                "Consumer group rebalances completed, the first join included.",
            ),
        );
        Metrics {
            assigned_partitions,
            generation,
            unowned_partitions,
            rebalances,
            rebalance_seconds: histogram(
                registry,
                "consumer_rebalance_seconds",
                "Time from a rebalance's start to this instance's new partitions.",
                vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
            ),
            records: counter(registry, "consumer_records_total", "Records accounted for, by outcome.", &["outcome"]),
            dead_letters: counter(registry, "consumer_dead_letters_total", "Dead letters by reason.", &["reason"]),
            committed_offset: gauge(registry, "consumer_committed_offset", "Next offset to read, durable in S3."),
            position: gauge(
                registry,
                "consumer_position",
                "Next offset to fetch: records before it are committed or in the open batch.",
            ),
            high_watermark: gauge(registry, "consumer_high_watermark", "Kafka high watermark at the last fetch."),
            lag: gauge(registry, "consumer_lag_records", "High watermark minus committed offset."),
            dedup_remembered: gauge(
                registry,
                "consumer_dedup_remembered_ids",
                "Event identities remembered to remove resends (DEDUP_WINDOW, DEDUP_MAX_IDS).",
            ),
            dedup_forgotten_early: counter(
                registry,
                "consumer_dedup_forgotten_early_total",
                "Batches forgotten before DEDUP_WINDOW ended, to stay within DEDUP_MAX_IDS.",
                &["partition"],
            ),
            batch_records: histogram(
                registry,
                "consumer_batch_records",
                "Records per flushed batch.",
                prometheus::exponential_buckets(1.0, 4.0, 10).unwrap_or_default(),
            ),
            batch_bytes: histogram(
                registry,
                "consumer_batch_bytes",
                "Uncompressed bytes per flushed batch.",
                prometheus::exponential_buckets(256.0, 4.0, 10).unwrap_or_default(),
            ),
            batch_age: histogram(
                registry,
                "consumer_batch_age_seconds",
                "Age of a batch when flushed.",
                vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
            ),
            s3_duration,
            s3_errors: counter(registry, "consumer_s3_errors_total", "Failed S3 requests.", &["operation"]),
            kafka_errors: counter(registry, "consumer_kafka_errors_total", "Failed Kafka requests.", &["operation"]),
            fenced: counter(
                registry,
                "consumer_fenced_total",
                "Ledger entries won by another instance.",
                &["partition"],
            ),
            out_of_range: counter(
                registry,
                "consumer_offset_out_of_range_total",
                "Reads of offsets Kafka no longer has.",
                &["partition"],
            ),
            lost: counter(
                registry,
                "consumer_records_lost_total",
                "Offsets deleted by retention before they were read.",
                &["partition"],
            ),
            without_record: counter(
                registry,
                "consumer_offsets_without_record_total",
                "Committed offsets without a record: transaction markers, aborted transactions.",
                &["partition"],
            ),
            recoveries: counter(
                registry,
                "consumer_recoveries_total",
                "Recoveries at start, by action.",
                &["partition", "action"],
            ),
            offset_commits: counter(
                registry,
                "consumer_offset_commits_total",
                "Commits of the ledger's progress to the consumer group, by outcome.",
                &["outcome"],
            ),
        }
    }
}

impl Metrics {
    /// Drops the per-partition series of `partition`, released to another member, so that
    /// lag is not reported twice (and stale) across the group.
    pub fn forget(&self, partition: i32) {
        let label = partition.to_string();
        for gauge in [&self.committed_offset, &self.high_watermark, &self.lag, &self.dedup_remembered] {
            let _ = gauge.remove_label_values(&[&label]);
        }
    }
}
