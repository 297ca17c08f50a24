//! A store's resend answered with the first answer and not written again, against the real
//! broker: Kafka's high watermarks count what was written. (The consumers remove what one
//! instance cannot know: `tests/interop/test_resends.py` sends through two producers.)

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use serde_json::{Value, json};

fn event(store_id: u64, request_id: &str) -> Value {
    let mut event = common::example();
    event["store_id"] = json!(store_id);
    event["request_id"] = json!(request_id);
    event
}

async fn post(base: &str, body: &Value) -> (u16, Value, Option<String>) {
    let response = reqwest::Client::new().post(format!("{base}/v1/events")).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap_or_default().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), replayed)
}

async fn written(topic: &str) -> i64 {
    testkit::high_watermarks(topic, 2).await.iter().sum()
}

#[tokio::test]
async fn a_resent_event_is_answered_as_the_first_time_and_written_once() {
    let producer = common::start(&[]).await;
    let base = producer.base.clone();
    let (a, b, c) =
        (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());

    // One request holding the same event twice: written once, both answered alike.
    let (status, first, replayed) = post(&base, &json!([event(17, &a), event(17, &b), event(17, &a)])).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["events"][2], first["events"][0]);
    assert_eq!(replayed, None);
    assert_eq!(written(&producer.topic).await, 2);

    // The whole request again, as a store that lost the answer sends it: the same answer.
    let (status, again, replayed) = post(&base, &json!([event(17, &a), event(17, &b), event(17, &a)])).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(written(&producer.topic).await, 2, "a resend writes nothing");

    // Part resend, part new: only the new event is written, and the answer is not a replay.
    let (status, mixed, replayed) = post(&base, &json!([event(17, &b), event(17, &c)])).await;
    assert_eq!(status, 200, "{mixed}");
    assert_eq!(mixed["events"][0], first["events"][1]);
    assert_eq!(replayed, None);
    assert_eq!(written(&producer.topic).await, 3);

    // Another store's event with the same request_id is another event.
    let (status, other, _) = post(&base, &json!(event(18, &a))).await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(written(&producer.topic).await, 4);

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("producer_resends_total 5"), "1 in the first request, 3 in the second, 1 in the third");
    producer.stop().await;
}

#[tokio::test]
async fn with_a_zero_window_every_copy_is_written() {
    let producer = common::start(&[("PRODUCER_RESEND_WINDOW", "0")]).await;
    let a = uuid::Uuid::new_v4().to_string();
    for _ in 0..2 {
        let (status, body, replayed) = post(&producer.base, &json!(event(17, &a))).await;
        assert_eq!((status, replayed), (200, None), "{body}");
    }
    assert_eq!(written(&producer.topic).await, 2, "the consumers remove the copy");
    producer.stop().await;
}
