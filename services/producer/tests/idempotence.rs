//! Idempotent writes against the real broker (`PRODUCER_IDEMPOTENCE`, rskafka patch 9):
//! a TCP proxy between the producer and the broker loses the broker's answers to some
//! produce requests after the broker wrote them; the client sends those batches again.
//! Read back with kcat, every event the producer answered 200 for is on the topic exactly
//! once. Without idempotence, the same faults store batches twice: the control that shows
//! the test can see the problem.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use testkit::faults::{PROXY, ResponseDropper};

const REQUESTS: usize = 40;
const EVENTS_PER_REQUEST: usize = 10;
const DROPS: usize = 4;

/// Every record's `request_id` on `topic`, read with kcat (a client that shares no code
/// with this project), counted.
fn stored_request_ids(topic: &str) -> BTreeMap<String, usize> {
    let output = Command::new("kcat")
        .args(["-C", "-b", testkit::kafka_address(), "-t", topic, "-e", "-q", "-f", "%s\n"])
        .output()
        .expect("kcat could not run (scripts/stack.sh up installs it)");
    assert!(output.status.success(), "kcat failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("kcat line {line:?}: {e}"));
        *counts.entry(value["request_id"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Sends `REQUESTS` requests through the proxy, losing `DROPS` produce answers on the
/// way; returns the request ids answered 200, every request id sent, and what kcat reads.
async fn send_through_lost_answers(idempotence: &str) -> (Vec<String>, Vec<String>, BTreeMap<String, usize>) {
    let proxy = ResponseDropper::start().await;
    let producer = common::start(&[
        ("KAFKA_BOOTSTRAP_SERVERS", PROXY),
        ("PRODUCER_IDEMPOTENCE", idempotence),
        ("PRODUCE_TIMEOUT", "30s"),
        ("TOPIC_PARTITIONS", "1"),
    ])
    .await;
    let (mut acknowledged, mut sent) = (Vec::new(), Vec::new());
    for request in 0..REQUESTS {
        if request % (REQUESTS / DROPS) == REQUESTS / DROPS / 2 {
            proxy.arm(1);
        }
        let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
            .map(|_| {
                let mut event = common::example();
                event["request_id"] = json!(uuid::Uuid::new_v4().to_string());
                event
            })
            .collect();
        let ids: Vec<String> = events.iter().map(|e| e["request_id"].as_str().unwrap().to_owned()).collect();
        sent.extend(ids.iter().cloned());
        let (status, body) =
            producer.post("/v1/events", "application/json", serde_json::to_vec(&events).unwrap()).await;
        match status {
            200 => acknowledged.extend(ids),
            503 => println!("request {request}: 503 {body}"),
            other => panic!("request {request}: unexpected status {other}: {body}"),
        }
    }
    assert_eq!(proxy.dropped(), DROPS, "the proxy did not lose as many answers as armed");
    let topic = producer.topic.clone();
    producer.stop().await;
    (acknowledged, sent, stored_request_ids(&topic))
}

/// Both runs in one test: they share the proxy's port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_double_batches_only_without_idempotence() {
    testkit::require_kafka();
    let (acknowledged, sent, stored) = send_through_lost_answers("true").await;
    println!("idempotent: {} of {} events answered 200; {DROPS} answers lost", acknowledged.len(), sent.len());
    assert!(acknowledged.len() >= sent.len() / 2, "too few events were acknowledged to mean anything");
    for id in &acknowledged {
        assert_eq!(stored.get(id), Some(&1), "acknowledged event {id} is stored {:?} times", stored.get(id));
    }
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");
    let unknown: Vec<_> = stored.keys().filter(|id| !sent.contains(id)).collect();
    assert!(unknown.is_empty(), "events nobody sent: {unknown:?}");

    // The control: the same faults without idempotence store the resent batches twice.
    let (_, _, stored) = send_through_lost_answers("false").await;
    let doubled = stored.values().filter(|n| **n > 1).count();
    println!("without idempotence: {doubled} events stored twice after {DROPS} lost answers");
    assert!(doubled >= EVENTS_PER_REQUEST, "no batch was stored twice: the proxy's fault did not reach the client");
}
