//! Running the producer in-process against the real broker, and reading the topic back
//! with kcat, a client that shares no code with this project.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use producer::ProducerConfig;
use serde_json::Value;
use service_runtime::config::Env;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Running {
    pub base: String,
    pub topic: String,
    pub token: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.token.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "the producer did not stop cleanly: {stopped:?}");
    }

    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Starts a producer on a new topic (it creates the topic) and waits until it is ready.
pub async fn start(extra: &[(&str, &str)]) -> Running {
    start_at(extra, "").await
}

/// As [`start`], asking `readyz` (a URL; empty: the API's own `/readyz`) when it is ready,
/// for a producer whose probes are on `ADMIN_ADDR`.
pub async fn start_at(extra: &[(&str, &str)], readyz: &str) -> Running {
    testkit::test_logs();
    testkit::require_kafka();
    let topic = testkit::unique_topic("api");
    // Open access and /v1/simulate unless a test says otherwise (tests/auth.rs does).
    let mut pairs = vec![
        ("PRODUCER_AUTH", "none"),
        ("PRODUCER_SIMULATE", "true"),
        ("STORE_EVENTS_TOPIC", topic.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", testkit::kafka_address()),
        ("LOG_FORMAT", "text"),
    ];
    pairs.extend(extra.iter().copied());
    let config = ProducerConfig::from_env(&Env::from_pairs(pairs)).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let token = CancellationToken::new();
    let task = tokio::spawn(producer::run(config, listener, token.clone()));
    let readyz = if readyz.is_empty() { format!("{base}/readyz") } else { readyz.to_owned() };
    testkit::eventually(Duration::from_secs(60), "the producer to be ready", || async {
        let response = reqwest::get(&readyz).await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    Running { base, topic, token, task }
}

/// Reads one record with kcat: its key, headers and payload as kcat's JSON envelope.
pub fn kcat(topic: &str, partition: i64, offset: i64) -> Value {
    let output = Command::new("kcat")
        .args(["-C", "-b", testkit::kafka_address(), "-t", topic, "-J", "-e", "-c", "1"])
        .args(["-p", &partition.to_string(), "-o", &offset.to_string()])
        .output()
        .expect("kcat could not run (scripts/stack.sh up installs it)");
    assert!(output.status.success(), "kcat failed: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("kcat output {line:?}: {e}"))
}

/// kcat's header list `["k", "v", ...]` as pairs.
pub fn headers(envelope: &Value) -> Vec<(String, String)> {
    let list = envelope["headers"].as_array().cloned().unwrap_or_default();
    list.chunks(2)
        .map(|kv| (kv[0].as_str().unwrap_or("").to_owned(), kv[1].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The example event of the original README, with a request_id of its own: the same
/// event posted twice would be a resend, answered from the producer's memory.
pub fn example() -> Value {
    serde_json::json!({
        "request_id": uuid::Uuid::new_v4().to_string(),
        "event_type": "inventory_event",
        "store_id": 6,
        "cust_id": 206,
        "category": "Camera",
        "sku": 100657,
        "price": 2.52,
        "qty": 18,
        "discount": 8.2,
        "gift_wrap": true,
        "variant": "red",
        "priority_shipping": true,
        "ts": "2021-04-25T12:52:40.938937",
        "contact_me": "github.com/miztiik"
    })
}
