//! Helpers for integration tests that run against the real local stack started by
//! `scripts/stack.sh up` (Apache Kafka on 127.0.0.1:9092, the S3 server on 127.0.0.1:9000).
//! `STORE_EVENTS_TEST_KAFKA=127.0.0.1:9192` points them at another local broker (the
//! Kafka 3.9 one of `scripts/stack.sh start kafka-3.9`).
//!
//! A test that needs the stack and cannot reach it fails with a message that says how to
//! start it; nothing here ever lets a test pass without talking to the real servers.

pub mod faults;

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use service_runtime::config::Env;
use service_runtime::kafka::{KafkaCluster, KafkaSettings};
use service_runtime::s3::S3Settings;

/// The local broker: `STORE_EVENTS_TEST_KAFKA`, 127.0.0.1:9092 by default.
pub fn kafka_address() -> &'static str {
    static ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDRESS.get_or_init(|| std::env::var("STORE_EVENTS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned()))
}
/// The local S3 server.
pub const S3_ENDPOINT: &str = "http://127.0.0.1:9000";
/// The bucket the stack creates.
pub const BUCKET: &str = "store-events";
/// Credentials of the local S3 server (scripts/local.env); not secrets.
pub const ACCESS_KEY: &str = "store-events-local";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "store-events-local-secret";

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const HOW_TO_START: &str =
    "start the local stack with `make stack-up` (scripts/stack.sh up), or run everything with `make test`";

fn reachable(addr: &str) -> bool {
    addr.parse().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// With `TEST_LOG` set (`TEST_LOG=1 cargo test ...`), shows the logs of the services a
/// test runs in-process, filtered by `RUST_LOG` (default `info`), in the test's captured
/// output (printed when it fails, or always with `--nocapture`). Without it, nothing is
/// installed and the logs are dropped as before. Safe to call from every test.
pub fn test_logs() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_test_writer()
        .try_init();
}

/// Panics with instructions unless Kafka answers on [`kafka_address`].
pub fn require_kafka() {
    let kafka = kafka_address();
    assert!(reachable(kafka), "Apache Kafka is not reachable on {kafka}: {HOW_TO_START}");
}

/// Panics with instructions unless the S3 server answers on 127.0.0.1:9000.
pub fn require_s3() {
    assert!(reachable("127.0.0.1:9000"), "The S3 server is not reachable on {S3_ENDPOINT}: {HOW_TO_START}");
}

/// Runs `scripts/stack.sh ARGS` (e.g. `stop kafka`) and panics if it fails.
pub fn stack(args: &[&str]) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("scripts/stack.sh {args:?} could not run: {e}"));
    assert!(status.success(), "scripts/stack.sh {args:?} failed: {status}");
}

/// A name no other test uses (a topic or an S3 prefix).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A part of the local stack (`kafka` or `s3`) stopped by a test; started again when
/// dropped, even when an assertion fails half-way, so later tests find the stack up.
pub struct Stopped(&'static str);

impl Stopped {
    /// Stops `part` until the guard is dropped.
    pub fn part(part: &'static str) -> Stopped {
        stack(&["stop", part]);
        Stopped(part)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        stack(&["start", self.0]);
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    unique_name(prefix)
}

/// A shared client for the local broker.
pub fn kafka() -> Arc<KafkaCluster> {
    require_kafka();
    Arc::new(KafkaCluster::new(KafkaSettings::local(kafka_address())))
}

/// Creates `topic` with `partitions` partitions on the local broker.
pub async fn create_topic(topic: &str, partitions: i32) {
    let client = kafka().client().await.unwrap_or_else(|e| panic!("connecting to Kafka: {e}"));
    let controller = client.controller_client().unwrap_or_else(|e| panic!("controller client: {e}"));
    controller
        .create_topic(topic, partitions, 1, 10_000)
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic}: {e}"));
}

/// Grows `topic` to `partitions` partitions with Apache Kafka's own `kafka-topics` tool
/// (rskafka cannot add partitions).
pub fn add_partitions(topic: &str, partitions: i32) {
    let count = partitions.to_string();
    stack(&[
        "kafka-tool",
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        kafka_address(),
        "--alter",
        "--topic",
        topic,
        "--partitions",
        &count,
    ]);
}

/// One row of `kafka-consumer-groups.sh --describe`: a partition of a group's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// CURRENT-OFFSET: the group's committed offset (`None` for `-`).
    pub committed: Option<i64>,
    /// LOG-END-OFFSET.
    pub log_end: Option<i64>,
    /// LAG.
    pub lag: Option<i64>,
    /// CONSUMER-ID: the member that owns the partition (`None` for `-`: nobody).
    pub owner: Option<String>,
}

/// Runs Kafka's own `kafka-consumer-groups.sh --describe --group GROUP ARGS`
/// (`ConsumerGroupCommand`, from the broker's jars) and returns what it printed.
pub fn consumer_groups_text(group: &str, args: &[&str]) -> String {
    require_kafka();
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .args([
            "kafka-tool",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            kafka_address(),
            "--describe",
            "--group",
            group,
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kafka-consumer-groups could not run: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "kafka-consumer-groups failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    text
}

/// [`consumer_groups_text`]'s table rows for `group`, each by column name (the columns
/// vary: `GROUP-INSTANCE-ID` appears with static members).
fn consumer_groups_describe(group: &str, args: &[&str]) -> Vec<std::collections::HashMap<String, String>> {
    let text = consumer_groups_text(group, args);
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let columns: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match columns.first().map(String::as_str) {
            Some("GROUP") => header = columns,
            Some(first) if first == group && columns.len() == header.len() => {
                rows.push(header.iter().cloned().zip(columns).collect());
            }
            _ => {}
        }
    }
    rows
}

/// `group`'s committed offsets as Apache Kafka's own `kafka-consumer-groups.sh --describe`
/// prints them, parsed from its table.
pub fn describe_group(group: &str) -> Vec<GroupPartition> {
    let number = |row: &std::collections::HashMap<String, String>, column: &str| row.get(column)?.parse::<i64>().ok();
    consumer_groups_describe(group, &[])
        .into_iter()
        .filter_map(|row| {
            Some(GroupPartition {
                topic: row.get("TOPIC")?.clone(),
                partition: row.get("PARTITION")?.parse().ok()?,
                committed: number(&row, "CURRENT-OFFSET"),
                log_end: number(&row, "LOG-END-OFFSET"),
                lag: number(&row, "LAG"),
                owner: row.get("CONSUMER-ID").filter(|id| *id != "-").cloned(),
            })
        })
        .collect()
}

/// One row of `kafka-consumer-groups.sh --describe --members`: a member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// CONSUMER-ID: the member id the coordinator gave.
    pub member_id: String,
    /// GROUP-INSTANCE-ID: a static member's instance id (`None` for a dynamic member).
    pub instance_id: Option<String>,
    /// CLIENT-ID.
    pub client_id: String,
    /// #PARTITIONS: how many partitions it was assigned.
    pub partitions: usize,
}

/// `group`'s active members as `kafka-consumer-groups.sh --describe --members` prints them
/// (the tool reads each member's assignment from the group's state).
pub fn describe_members(group: &str) -> Vec<GroupMember> {
    consumer_groups_describe(group, &["--members"])
        .into_iter()
        .filter_map(|row| {
            Some(GroupMember {
                member_id: row.get("CONSUMER-ID")?.clone(),
                instance_id: row.get("GROUP-INSTANCE-ID").filter(|id| *id != "-").cloned(),
                client_id: row.get("CLIENT-ID")?.clone(),
                partitions: row.get("#PARTITIONS")?.parse().ok()?,
            })
        })
        .collect()
}

/// Runs `commands` (`send PARTITION VALUE`, `commit`, `abort`, one per line) through
/// Apache Kafka's own Java producer in transactions (scripts/kafka/TransactionalProducer.java):
/// what a transactional producer sharing the topic leaves behind, markers included.
/// Gives up after two minutes.
pub fn produce_in_transactions(topic: &str, commands: &str) {
    use std::io::Write;
    require_kafka();
    let transactional_id = unique_name("tx");
    let log_path = std::env::temp_dir().join(format!("{transactional_id}.log"));
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
    let log_err = log.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .args(["kafka-tool", "scripts/kafka/TransactionalProducer.java", kafka_address(), topic, &transactional_id])
        .current_dir(repo_root())
        .stdin(std::process::Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("the transactional producer could not start: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(commands.as_bytes()).unwrap_or_else(|e| panic!("writing the producer's commands: {e}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                panic!("the transactional producer did not finish within 120 s");
            }
            Err(e) => panic!("waiting for the transactional producer: {e}"),
        }
    };
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success() && out.trim_end().ends_with("done"), "the transactional producer failed: {status}\n{out}");
    let _ = std::fs::remove_file(&log_path);
}

/// S3 settings for the local server, under a prefix no other test uses.
pub fn s3_settings(prefix: &str) -> S3Settings {
    require_s3();
    let prefix = unique_name(prefix);
    S3Settings::from_env(&Env::from_pairs(local_s3_env(&prefix))).unwrap_or_else(|e| panic!("local S3 settings: {e}"))
}

/// The environment that points a service at the local S3 server.
pub fn local_s3_env(prefix: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("S3_BUCKET", BUCKET),
        ("S3_PREFIX", prefix),
        ("S3_ENDPOINT", S3_ENDPOINT),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

/// Damages the stored bytes of `key` behind the S3 API (`scripts/stack.sh damage`): the
/// local server keeps the object's recorded checksum, so afterwards it sends bytes that
/// fail that checksum, as after bit rot.
pub fn damage_local_s3_object(key: &str) {
    stack(&["damage", key]);
}

/// An S3 client for the local server. The SDK reads credentials from the environment, so
/// this sets them for the test process (the values are the local server's, not secrets).
pub async fn s3_client(settings: &S3Settings) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "testkit");
    let base = service_runtime::s3::client(settings).await;
    let config = base.config().to_builder().credentials_provider(credentials).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The value of the sample of `name` whose labels are exactly `labels` in the Prometheus
/// text `metrics` (parsed, not matched as text: `} 7` also matches 70), or `None` when no
/// sample has them. Panics when `metrics` is not Prometheus text.
pub fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{metrics}"));
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .filter(|s| s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics after `limit` saying
/// what was awaited. Tests wait for outcomes this way, never with bare sleeps.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Produces `records` to one partition of `topic`; returns their offsets.
pub async fn produce(
    topic: &str,
    partition: i32,
    records: Vec<rskafka::record::Record>,
    compression: rskafka::client::partition::Compression,
) -> Vec<i64> {
    let client = kafka().client().await.unwrap_or_else(|e| panic!("connecting to Kafka: {e}"));
    let partition_client = client
        .partition_client(topic, partition, rskafka::client::partition::UnknownTopicHandling::Retry)
        .await
        .unwrap_or_else(|e| panic!("partition client for {topic}/{partition}: {e}"));
    partition_client
        .produce(records, compression)
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}/{partition}: {e}"))
}

/// A record with the given value and headers, stamped now, no key.
pub fn record(value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> rskafka::record::Record {
    rskafka::record::Record {
        key: None,
        value: value.map(<[u8]>::to_vec),
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect(),
        timestamp: chrono::Utc::now(),
    }
}

/// The high watermark (one past the last offset) of each partition of `topic`.
pub async fn high_watermarks(topic: &str, partitions: i32) -> Vec<i64> {
    let client = kafka().client().await.unwrap_or_else(|e| panic!("connecting to Kafka: {e}"));
    let mut marks = Vec::new();
    for partition in 0..partitions {
        let partition_client = client
            .partition_client(topic, partition, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap_or_else(|e| panic!("partition client: {e}"));
        let latest = partition_client
            .get_offset(rskafka::client::partition::OffsetAt::Latest)
            .await
            .unwrap_or_else(|e| panic!("latest offset: {e}"));
        marks.push(latest);
    }
    marks
}

/// Every key under `prefix` in the local bucket.
pub async fn list_keys(client: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    service_runtime::s3::list_keys(client, BUCKET, prefix, None).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The JSON lines of a gzip JSON Lines object.
pub async fn read_jsonl_gz(client: &aws_sdk_s3::Client, key: &str) -> Vec<serde_json::Value> {
    use std::io::Read;
    let object =
        client.get_object().bucket(BUCKET).key(key).send().await.unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    let bytes = object.body.collect().await.unwrap_or_else(|e| panic!("reading {key}: {e}")).into_bytes();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes.as_ref())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("gunzip {key}: {e}"));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: bad line {l}: {e}"))).collect()
}

/// Every JSON line of every object under `prefix`.
pub async fn read_all_jsonl_gz(client: &aws_sdk_s3::Client, prefix: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for key in list_keys(client, prefix).await {
        lines.extend(read_jsonl_gz(client, &key).await);
    }
    lines
}

/// The rows of a Parquet data file, each as the JSON object of the event it holds (see
/// [`rows_as_json`]). So a row compares with the event sent, once both are read as a
/// `StoreEvent`.
pub async fn read_parquet(client: &aws_sdk_s3::Client, key: &str) -> Vec<serde_json::Value> {
    let object =
        client.get_object().bucket(BUCKET).key(key).send().await.unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    let bytes = object.body.collect().await.unwrap_or_else(|e| panic!("reading {key}: {e}")).into_bytes();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .unwrap_or_else(|e| panic!("{key} is not a Parquet file: {e}"));
    let mut rows = Vec::new();
    for batch in reader {
        rows.extend(rows_as_json(&batch.unwrap_or_else(|e| panic!("{key}: {e}")), key));
    }
    rows
}

/// The rows of Arrow columns of events (a Parquet file's, an Iceberg scan's), each as the
/// JSON object of the event: the columns by name (nulls left out), `ts` as RFC 3339 in
/// UTC, and the `extra` column's fields merged back in. `what` names the source in panics.
pub fn rows_as_json(batch: &arrow_array::RecordBatch, what: &str) -> Vec<serde_json::Value> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_schema::DataType;
    use serde_json::{Map, Value};
    let mut rows = Vec::new();
    let schema = batch.schema();
    for row in 0..batch.num_rows() {
        let mut object = Map::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if column.is_null(row) {
                continue;
            }
            let value = match field.data_type() {
                DataType::Utf8 => Value::from(column.as_string::<i32>().value(row)),
                DataType::LargeUtf8 => Value::from(column.as_string::<i64>().value(row)),
                DataType::Int64 => Value::from(column.as_primitive::<Int64Type>().value(row)),
                DataType::Float64 => Value::from(column.as_primitive::<Float64Type>().value(row)),
                DataType::Boolean => Value::from(column.as_boolean().value(row)),
                DataType::Timestamp(_, _) => {
                    let micros = column.as_primitive::<TimestampMicrosecondType>().value(row);
                    let ts = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
                    Value::from(ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                }
                other => panic!("{what}: column {} has a type no event column has: {other}", field.name()),
            };
            if field.name() == "extra" {
                let extra: Map<String, Value> = value
                    .as_str()
                    .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: extra {text}: {e}")))
                    .unwrap_or_default();
                object.extend(extra);
            } else {
                object.insert(field.name().clone(), value);
            }
        }
        rows.push(Value::Object(object));
    }
    rows
}

/// Every row of every Parquet file under `prefix` (see [`read_parquet`]).
pub async fn read_all_parquet(client: &aws_sdk_s3::Client, prefix: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for key in list_keys(client, prefix).await {
        rows.extend(read_parquet(client, &key).await);
    }
    rows
}

/// The local broker's secured listeners (scripts/stack.sh), the way Amazon MSK has them.
pub mod secured {
    use std::path::PathBuf;

    /// SSL with a required client certificate (MSK's TLS listener, with mutual TLS).
    pub const SSL: &str = "127.0.0.1:9094";
    /// SASL_SSL with SCRAM-SHA-512 (MSK's SCRAM listener).
    pub const SCRAM: &str = "127.0.0.1:9096";
    /// SASL_PLAINTEXT with OAUTHBEARER checked by Kafka's unsecured JWT validator.
    pub const OAUTH: &str = "127.0.0.1:9097";

    /// A file made by the stack in `.local/kafka/tls`: `ca.crt`, `other-ca.crt`,
    /// `client.crt`, `client.key`.
    pub fn tls_file(name: &str) -> String {
        let path: PathBuf = super::repo_root().join(".local/kafka/tls").join(name);
        assert!(path.exists(), "{} is missing: the local stack makes it; run `make stack-up`", path.display());
        path.to_string_lossy().into_owned()
    }

    /// The SCRAM user the stack creates (scripts/local.env).
    pub fn scram_user() -> (String, String) {
        let user = std::env::var("KAFKA_TEST_SCRAM_USER").unwrap_or_else(|_| "store-events".to_owned());
        let password =
            std::env::var("KAFKA_TEST_SCRAM_PASSWORD").unwrap_or_else(|_| "store-events-scram-secret".to_owned());
        (user, password)
    }

    /// An unsecured JWT (`alg: none`) for `subject` that expires `valid_for` seconds from
    /// now (negative: already expired): what Kafka's unsecured OAUTHBEARER validator checks.
    pub fn unsecured_jwt(subject: &str, valid_for: i64) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = serde_json::json!({"sub": subject, "iat": now.min(now + valid_for) - 60, "exp": now + valid_for});
        format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }
}
