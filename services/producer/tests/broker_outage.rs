//! With the broker stopped the API answers 503 with Retry-After and readiness fails; both
//! recover without a restart when it is back. Stops the shared broker, so it has its own
//! test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::time::Duration;

#[tokio::test]
async fn a_stopped_broker_gives_503_and_both_api_and_readiness_recover() {
    let producer =
        common::start(&[("PRODUCE_TIMEOUT", "3s"), ("KAFKA_REQUEST_TIMEOUT", "3s"), ("KAFKA_CONNECT_TIMEOUT", "3s")])
            .await;
    let (status, _) = producer.post("/v1/events", "application/json", common::example().to_string()).await;
    // Another event from here on: the first one again would be a resend, answered from memory.
    let event = common::example().to_string();
    assert_eq!(status, 200);

    {
        let _stopped = testkit::Stopped::part("kafka");
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events", producer.base))
            .header("content-type", "application/json")
            .body(event.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("nothing was written") || message.contains("not acknowledged"), "{body}");
        let readyz = reqwest::get(format!("{}/readyz", producer.base)).await.map(|r| r.status().as_u16());
        assert_eq!(readyz.ok(), Some(503));
    }

    let base = producer.base.clone();
    testkit::eventually(Duration::from_secs(90), "POST /v1/events to succeed again", || {
        let (base, event) = (base.clone(), event.clone());
        async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/events"))
                .header("content-type", "application/json")
                .body(event)
                .send()
                .await
                .ok()?;
            (response.status().as_u16() == 200).then_some(())
        }
    })
    .await;
    let readyz = reqwest::get(format!("{}/readyz", producer.base)).await.map(|r| r.status().as_u16());
    assert_eq!(readyz.ok(), Some(200));
    producer.stop().await;
}
