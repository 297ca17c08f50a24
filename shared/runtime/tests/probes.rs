//! The HTTP probes against the real local stack: `/readyz` names a missing topic, and
//! `/metrics` is valid Prometheus text. (Kafka and S3 going down and back: `outage.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::time::Duration;

use common::{check, readyz, serve_probes};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn readyz_names_a_missing_topic() {
    testkit::require_kafka();
    let token = CancellationToken::new();
    let base = serve_probes(&testkit::unique_topic("absent"), &token).await;
    let body = testkit::eventually(Duration::from_secs(60), "kafka check reports the topic", || async {
        let (status, body) = readyz(&base).await;
        let detail = check(&body, "kafka")["detail"].as_str().unwrap_or_default().to_owned();
        (status == 503 && detail.contains("does not exist")).then_some(detail)
    })
    .await;
    assert!(body.starts_with("topic absent-"), "{body}");
    token.cancel();
}

#[tokio::test]
async fn metrics_is_valid_prometheus_text_with_process_metrics() {
    let token = CancellationToken::new();
    let base = serve_probes(&testkit::unique_topic("metrics"), &token).await;
    let _ = readyz(&base).await;
    let response = reqwest::get(format!("{base}/metrics")).await.expect("GET /metrics");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap_or_default();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"));
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for expected in ["process_resident_memory_bytes", "process_cpu_seconds_total", "service_check_up"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    token.cancel();
}
