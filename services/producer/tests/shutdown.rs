//! SIGTERM during a load loses no acknowledged event: every event the real binary
//! answered 200 for is on the topic at the partition and offset it gave; the requests in
//! flight when it comes are answered before the process exits. SIGINT takes the same path.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::UnknownTopicHandling;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_acknowledged_event() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("term");
    let (child, base) = start_binary(&topic, &[("RUST_LOG", "warn")], Stdio::null()).await;

    // Four clients post batches of 20 until the server goes away.
    let acknowledged: Arc<Mutex<Vec<(i64, i64, String)>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (base, acknowledged) = (base.clone(), Arc::clone(&acknowledged));
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..10_000 {
                let batch: Vec<Value> = (0..20)
                    .map(|_| {
                        let mut event = common::example();
                        event["request_id"] = json!(uuid::Uuid::new_v4().to_string());
                        event
                    })
                    .collect();
                let response = http
                    .post(format!("{base}/v1/events"))
                    .header("content-type", "application/json")
                    .body(Value::from(batch).to_string())
                    .send()
                    .await;
                let Ok(response) = response else { return };
                if response.status().as_u16() != 200 {
                    continue;
                }
                let body: Value = response.json().await.unwrap_or_default();
                if let (Some(events), Ok(mut acknowledged)) = (body["events"].as_array(), acknowledged.lock()) {
                    for e in events {
                        let id = e["request_id"].as_str().unwrap_or_default().to_owned();
                        acknowledged.push((
                            e["partition"].as_i64().unwrap_or(-1),
                            e["offset"].as_i64().unwrap_or(-1),
                            id,
                        ));
                    }
                }
            }
        }));
    }
    testkit::eventually(Duration::from_secs(30), "some events acknowledged under load", || async {
        (acknowledged.lock().map(|a| a.len()).unwrap_or(0) >= 500).then_some(())
    })
    .await;
    signal(&child, "TERM");
    let exit = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await;
    assert!(matches!(exit, Ok(Ok(s)) if s.success()), "the producer did not exit cleanly: {exit:?}");
    for client in clients {
        let _ = client.await;
    }

    let client = testkit::kafka().client().await.expect("kafka");
    let mut on_topic: HashMap<(i64, i64), String> = HashMap::new();
    for (partition, mark) in testkit::high_watermarks(&topic, 2).await.into_iter().enumerate() {
        let pc = client
            .partition_client(topic.as_str(), partition as i32, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let mut offset = 0;
        while offset < mark {
            let (records, _) = pc.fetch_records(offset, 1..10_000_000, 1_000).await.expect("fetch");
            for record in records {
                offset = record.offset + 1;
                let value: Value = serde_json::from_slice(&record.record.value.unwrap_or_default()).unwrap_or_default();
                on_topic.insert(
                    (partition as i64, record.offset),
                    value["request_id"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    for (partition, offset, id) in &acknowledged {
        assert_eq!(
            on_topic.get(&(*partition, *offset)),
            Some(id),
            "acknowledged event {id} is not at {partition}/{offset}"
        );
    }
}

/// Requests the server is serving when SIGTERM comes are answered, and their events are
/// acknowledged, before the process exits; a request after it finds nobody listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_requests_in_flight_finish() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("inflight");
    // A 3 s linger holds every request in the server until its batch is sent.
    let (child, base) = start_binary(&topic, &[("RUST_LOG", "warn"), ("PRODUCER_LINGER", "3s")], Stdio::null()).await;
    let requests: Vec<_> = (0..4)
        .map(|i| {
            let url = format!("{base}/v1/events");
            let mut event = common::example();
            event["request_id"] = json!(format!("in-flight-{i}-{}", uuid::Uuid::new_v4()));
            tokio::spawn(async move {
                // A client of its own per request: four connections, each with one request.
                let response = reqwest::Client::new().post(url).json(&event).send().await;
                let response = response.unwrap_or_else(|e| panic!("request {i} was cut off: {e}"));
                (response.status().as_u16(), response.json::<Value>().await.unwrap_or_default())
            })
        })
        .collect();
    testkit::eventually(Duration::from_secs(30), "four requests in flight", || async {
        let metrics = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
        (testkit::metric(&metrics, "producer_requests_in_flight", &[]) == Some(4.0)).then_some(())
    })
    .await;

    signal(&child, "TERM");
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("a request task failed"));
    }
    let after = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
        .post(format!("{base}/v1/events"))
        .json(&common::example())
        .send()
        .await;
    let exit = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await;

    assert!(matches!(exit, Ok(Ok(s)) if s.success()), "the producer did not exit cleanly: {exit:?}");
    for (status, body) in &answers {
        assert_eq!((*status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    }
    assert!(after.is_err(), "a request after SIGTERM was served: {after:?}");
    let total: i64 = testkit::high_watermarks(&topic, 2).await.iter().sum();
    assert_eq!(total, 4, "the four acknowledged events are on the topic");
}

/// SIGINT (Ctrl-C in a terminal) takes the same shutdown path as SIGTERM.
#[tokio::test]
async fn sigint_takes_the_same_clean_shutdown_path() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("int");
    let env = [("RUST_LOG", "info"), ("LOG_FORMAT", "json")];
    let (child, _) = start_binary(&topic, &env, Stdio::piped()).await;
    signal(&child, "INT");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("waiting for the producer")
        .expect("waiting for the producer");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the producer did not exit cleanly on SIGINT: {:?}\n{log}", output.status);
    let shutdown: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"].as_str().is_some_and(|m| m.starts_with("Shutting down")))
        .collect();
    assert_eq!(shutdown.len(), 1, "one shutdown, logged once:\n{log}");
    assert_eq!(shutdown[0]["signal"], "SIGINT");
}

/// Starts the real producer binary on a free port with `env` added, waits until it is
/// ready and returns it with its base URL.
async fn start_binary(topic: &str, env: &[(&str, &str)], stderr: Stdio) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port");
    let child = Command::new(env!("CARGO_BIN_EXE_producer"))
        .env("PRODUCER_AUTH", "none")
        .env("STORE_EVENTS_TOPIC", topic)
        .env("KAFKA_BOOTSTRAP_SERVERS", testkit::kafka_address())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the producer binary did not start");
    let base = format!("http://127.0.0.1:{port}");
    testkit::eventually(Duration::from_secs(60), "the producer to be ready", || async {
        let status = reqwest::get(format!("{base}/readyz")).await.ok()?.status().as_u16();
        (status == 200).then_some(())
    })
    .await;
    (child, base)
}

/// Sends SIG`name` to `child` with kill(1).
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "SIG{name} could not be sent");
}
