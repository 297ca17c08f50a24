//! Running consumers in-process against the real local stack, and reading what they wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]
#![allow(dead_code)]

use std::time::Duration;

use service_runtime::config::Env;
use store_consumer::ConsumerConfig;
use store_consumer::layout::Layout;
use store_consumer::ledger::Bucket;
use store_event::EventType;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A consumer running in this process.
pub struct Running {
    pub token: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub base: String,
}

impl Running {
    /// SIGTERM's equivalent: cancel and wait until every open batch is committed.
    pub async fn stop(self) {
        self.token.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(60), self.task).await;
        match outcome {
            Ok(Ok(Ok(()))) => {}
            other => panic!("the consumer did not stop cleanly: {other:?}"),
        }
    }

    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.base)).await.expect("metrics");
        response.text().await.unwrap_or_default()
    }
}

/// A consumer of `topic` writing under `prefix`; in a consumer group of its own
/// (`test-<type>-<topic>`: a sales and an inventory consumer never share one) unless
/// `extra` says otherwise.
pub fn config(event_type: EventType, topic: &str, prefix: &str, extra: &[(&str, &str)]) -> ConsumerConfig {
    let mut pairs = testkit::local_s3_env(prefix);
    let kind = match event_type {
        EventType::Sale => "sales",
        EventType::Inventory => "inventory",
    };
    let group = format!("test-{kind}-{topic}");
    pairs.extend([
        ("CONSUMER_GROUP_ID", group.as_str()),
        ("STORE_EVENTS_TOPIC", topic),
        ("KAFKA_BOOTSTRAP_SERVERS", testkit::kafka_address()),
        ("BATCH_MAX_AGE", "300ms"),
        ("PARTITION_REFRESH", "1s"),
        ("LOG_FORMAT", "text"),
    ]);
    pairs.extend(extra.iter().copied());
    ConsumerConfig::from_env(&Env::from_pairs(pairs), event_type).expect("consumer config")
}

pub async fn start(config: ConsumerConfig) -> Running {
    testkit::test_logs();
    let s3 = testkit::s3_client(&config.s3).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let token = CancellationToken::new();
    let task = tokio::spawn(store_consumer::run(config, s3, listener, token.clone()));
    Running { token, task, base }
}

pub async fn bucket(config: &ConsumerConfig) -> (Bucket, Layout) {
    let client = testkit::s3_client(&config.s3).await;
    let bucket = Bucket::new(client, testkit::BUCKET);
    let layout = Layout::new(&config.s3, config.service, config.event_type, &config.common.topic);
    (bucket, layout)
}

/// Waits until the ledger accounts for every offset Kafka has on every partition.
pub async fn wait_until_caught_up(config: &ConsumerConfig, partitions: i32, limit: Duration) {
    let (bucket, layout) = bucket(config).await;
    let topic = config.common.topic.clone();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let marks = testkit::high_watermarks(&topic, partitions).await;
        let report = store_consumer::audit::run(
            &bucket,
            &layout,
            false,
            store_consumer::dedup::DedupSettings::default().window,
            None,
        )
        .await;
        let reached: Vec<i64> = match &report {
            Ok(report) => (0..partitions)
                .map(|p| report.partitions.iter().find(|r| r.partition == p).map_or(0, |r| r.to_offset))
                .collect(),
            Err(_) => Vec::new(),
        };
        if reached == marks {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the ledger did not reach the high watermarks {marks:?} within {limit:?}: reached {reached:?}, {report:?}",
            config.service
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn audit(config: &ConsumerConfig) -> store_consumer::audit::Report {
    let (bucket, layout) = bucket(config).await;
    store_consumer::audit::run(&bucket, &layout, true, store_consumer::dedup::DedupSettings::default().window, None)
        .await
        .expect("audit")
}

/// The stored events of the consumer, as JSON values.
pub async fn stored(config: &ConsumerConfig) -> Vec<serde_json::Value> {
    let client = testkit::s3_client(&config.s3).await;
    let prefix = config.s3.key(&format!("event_type={}/", config.event_type.as_str()));
    testkit::read_all_jsonl_gz(&client, &prefix).await
}

/// The stored events of the consumer read back from its Parquet files (see
/// `testkit::read_parquet`).
pub async fn stored_parquet(config: &ConsumerConfig) -> Vec<serde_json::Value> {
    let client = testkit::s3_client(&config.s3).await;
    let prefix = config.s3.key(&format!("parquet/event_type={}/", config.event_type.as_str()));
    testkit::read_all_parquet(&client, &prefix).await
}

/// Events as the typed model reads them, sorted by request id: equal when every field is
/// equal (`ts` the same instant, unknown fields the same JSON).
pub fn as_events(values: &[serde_json::Value]) -> Vec<store_event::StoreEvent> {
    let mut events: Vec<store_event::StoreEvent> = values
        .iter()
        .map(|v| store_event::StoreEvent::from_value(v).unwrap_or_else(|e| panic!("not a valid event ({e}): {v}")))
        .collect();
    events.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    events
}

/// The dead letters of the consumer.
pub async fn dead_letters(config: &ConsumerConfig) -> Vec<serde_json::Value> {
    let client = testkit::s3_client(&config.s3).await;
    let prefix = config.s3.key(&format!("dead_letter/consumer={}/", config.service));
    testkit::read_all_jsonl_gz(&client, &prefix).await
}

/// Request ids, sorted, so that two multisets compare equal.
pub fn request_ids(values: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = values.iter().map(|v| v["request_id"].as_str().unwrap_or("<none>").to_owned()).collect();
    ids.sort();
    ids
}

/// Settings that make a consumer write its Iceberg table (besides `formats`) in a SQLite
/// catalog of the test's own, under its prefix, committing every 300 ms.
pub fn iceberg_env(prefix: &str, formats: &'static str) -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join("store-events-tests");
    std::fs::create_dir_all(&dir).expect("catalog directory");
    vec![
        ("OUTPUT_FORMATS", formats.to_owned()),
        ("ICEBERG_CATALOG_URI", format!("sqlite:{}", dir.join(format!("{prefix}.db")).display())),
        ("ICEBERG_COMMIT_INTERVAL", "300ms".to_owned()),
    ]
}

/// The consumer's Iceberg table.
pub async fn lake(config: &ConsumerConfig) -> store_lake::Lake {
    let settings = config.lake.as_ref().expect("iceberg is one of the formats");
    let catalog = store_lake::connect(settings).await.expect("the Iceberg catalog");
    store_lake::Lake::open(catalog, settings, &config.common.topic, "test").await.expect("the Iceberg table")
}

/// Every row of the consumer's Iceberg table, read with the `iceberg` crate's own scan
/// (manifests, then data files), each as the JSON object of its event.
pub async fn table_rows(config: &ConsumerConfig) -> Vec<serde_json::Value> {
    use futures::TryStreamExt;
    let table = lake(config).await.load().await.expect("load the table");
    let stream = table.scan().select_all().build().expect("scan").to_arrow().await.expect("scan to Arrow");
    let batches: Vec<_> = stream.try_collect().await.expect("read the table's rows");
    batches.iter().flat_map(|batch| testkit::rows_as_json(batch, "the Iceberg table")).collect()
}

/// The audit with the consumer's Iceberg table.
pub async fn audit_with_table(config: &ConsumerConfig) -> store_consumer::audit::Report {
    let (bucket, layout) = bucket(config).await;
    let lake = lake(config).await;
    let window = store_consumer::dedup::DedupSettings::default().window;
    store_consumer::audit::run(&bucket, &layout, true, window, Some(&lake)).await.expect("audit")
}
