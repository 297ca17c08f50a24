//! `PRODUCER_MAX_PENDING` bounds what waits for Kafka, and no path ever waits for more
//! room than exists: a request larger than the bound gets 413 at once, the simulator and
//! the generator send in pieces that fit, and shutdown ends each of them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::time::Duration;

use serde_json::{Value, json};

/// `n` copies of the example event, each with its own request id.
fn events(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut event = common::example();
            event["request_id"] = json!(format!("capacity-{i}-{}", testkit::unique_name("r")));
            event
        })
        .collect();
    Value::Array(events)
}

async fn total_on_topic(topic: &str) -> i64 {
    testkit::high_watermarks(topic, 2).await.iter().sum()
}

#[tokio::test]
async fn a_request_with_more_events_than_may_wait_gets_413_naming_the_setting() {
    let producer = common::start(&[("PRODUCER_MAX_PENDING", "5")]).await;

    let (status, body) = producer.post("/v1/events", "application/json", events(6).to_string()).await;
    let (fits, answer) = producer.post("/v1/events", "application/json", events(5).to_string()).await;
    let topic = producer.topic.clone();
    producer.stop().await;

    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body["error"],
        "6 events in one request, but at most 5 may wait for Kafka at once (PRODUCER_MAX_PENDING): \
         send them in smaller requests; nothing was written"
    );
    assert_eq!((fits, answer["accepted"].as_u64()), (200, Some(5)), "{answer}");
    assert_eq!(total_on_topic(&topic).await, 5, "the refused request wrote nothing");
}

#[tokio::test]
async fn simulate_sends_in_pieces_that_fit_a_small_bound() {
    let producer = common::start(&[("PRODUCER_MAX_PENDING", "100")]).await;

    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        producer.post("/v1/simulate", "application/json", json!({"count": 1500, "seed": 3}).to_string()),
    )
    .await;
    let topic = producer.topic.clone();
    producer.stop().await;

    let (status, summary) = answer.unwrap_or_else(|_| panic!("simulate did not answer within 60 s"));
    assert_eq!((status, summary["status"].as_bool(), summary["tot_msgs"].as_u64()), (200, Some(true), Some(1500)));
    assert_eq!(total_on_topic(&topic).await, 1500);
}

#[tokio::test]
async fn the_generator_makes_more_per_tick_than_the_bound_and_stops_on_shutdown() {
    // 2,000 events/s is 200 per 100 ms tick: four times what may wait for Kafka.
    let producer = common::start(&[("PRODUCER_MAX_PENDING", "50"), ("GENERATOR_RATE", "2000")]).await;
    let topic = producer.topic.clone();

    testkit::eventually(Duration::from_secs(60), "1,000 generated events on the topic", || async {
        (total_on_topic(&topic).await >= 1000).then_some(())
    })
    .await;

    // Running::stop fails unless the producer returns cleanly within 30 s.
    producer.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_long_simulation_with_what_was_acknowledged() {
    let producer = common::start(&[]).await;
    let url = format!("{}/v1/simulate", producer.base);
    let request = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&json!({"duration_seconds": 300}))
            .send()
            .await
            .expect("POST /v1/simulate");
        (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
    });
    let topic = producer.topic.clone();
    testkit::eventually(Duration::from_secs(60), "simulated events on the topic", || async {
        (total_on_topic(&topic).await >= 1000).then_some(())
    })
    .await;

    producer.stop().await;
    let (status, summary) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .unwrap_or_else(|_| panic!("the simulate request did not end with the producer"))
        .expect("the request task failed");

    assert_eq!((status, summary["status"].as_bool()), (200, Some(false)), "{summary}");
    let acknowledged = summary["tot_msgs"].as_i64().unwrap_or_default();
    assert!(acknowledged >= 1000, "{summary}");
    assert_eq!(total_on_topic(&topic).await, acknowledged, "every event on the topic is counted, and only those");
}
