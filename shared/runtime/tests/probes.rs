//! The HTTP probes against the real local stack: `/readyz` follows Kafka and the S3
//! server going down and coming back without a restart, and `/metrics` is valid
//! Prometheus text.
//!
//! This test stops and restarts the shared local broker and S3 server, so it lives in its
//! own test binary (cargo runs test binaries one at a time).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use service_runtime::http::{self, Probes};
use service_runtime::kafka::{KafkaCheck, KafkaCluster, KafkaSettings};
use service_runtime::metrics;
use service_runtime::readiness::Readiness;
use service_runtime::s3::S3Check;
use tokio_util::sync::CancellationToken;

/// Serves the probes of a service that depends on Kafka (topic `topic`) and S3; returns
/// its base URL.
async fn serve_probes(topic: &str, token: &CancellationToken) -> String {
    let registry = Arc::new(metrics::registry());
    let mut settings = KafkaSettings::local(testkit::KAFKA);
    settings.connect_timeout = Duration::from_secs(3);
    settings.request_timeout = Duration::from_secs(3);
    let cluster = Arc::new(KafkaCluster::new(settings));
    let s3 = testkit::s3_settings("probes");
    let readiness = Readiness::new(&registry, Duration::from_secs(5))
        .with(KafkaCheck::new(cluster, topic))
        .with(S3Check::new(testkit::s3_client(&s3).await, testkit::BUCKET));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    tokio::spawn(http::serve(listener, http::router(Probes { readiness, registry }), token.clone().cancelled_owned()));
    format!("http://{addr}")
}

async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap_or_else(|e| panic!("GET /readyz: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_else(|e| panic!("/readyz body is not JSON: {e}")))
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check named {name} in {body}"))
}

/// Waits until `/readyz` answers `status` with the `kafka` and `s3` checks as given.
async fn wait_for(base: &str, status: u16, kafka_ok: bool, s3_ok: bool) -> Value {
    let what = format!("/readyz {status} with kafka ok={kafka_ok}, s3 ok={s3_ok}");
    testkit::eventually(Duration::from_secs(90), &what, || async {
        let (got, body) = readyz(base).await;
        let matches = got == status && check(&body, "kafka")["ok"] == kafka_ok && check(&body, "s3")["ok"] == s3_ok;
        matches.then_some(body)
    })
    .await
}

#[tokio::test]
async fn readyz_follows_kafka_and_s3_down_and_back_without_a_restart() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("probes");
    testkit::create_topic(&topic, 2).await;
    let token = CancellationToken::new();
    let base = serve_probes(&topic, &token).await;

    let body = wait_for(&base, 200, true, true).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(check(&body, "kafka")["detail"], format!("topic {topic} has 2 partitions"));

    {
        let _stopped = testkit::Stopped::part("kafka");
        let body = wait_for(&base, 503, false, true).await;
        assert_eq!(body["status"], "not_ready");
    }
    wait_for(&base, 200, true, true).await;

    {
        let _stopped = testkit::Stopped::part("s3");
        let body = wait_for(&base, 503, true, false).await;
        let detail = check(&body, "s3")["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.starts_with("bucket store-events: "), "{detail}");
    }
    wait_for(&base, 200, true, true).await;
    token.cancel();
}

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
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap_or_else(|e| panic!("GET /metrics: {e}"));
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
