//! What the probe tests share: a service's probes served against the real local stack.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]
#![allow(dead_code)]

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
pub async fn serve_probes(topic: &str, token: &CancellationToken) -> String {
    testkit::test_logs();
    let registry = Arc::new(metrics::registry());
    let mut settings = KafkaSettings::local(testkit::kafka_address());
    settings.connect_timeout = Duration::from_secs(3);
    settings.request_timeout = Duration::from_secs(3);
    let cluster = Arc::new(KafkaCluster::new(settings));
    let s3 = testkit::s3_settings("probes");
    let readiness = Readiness::new(&registry, Duration::from_secs(5))
        .with(KafkaCheck::new(cluster, topic))
        .with(S3Check::new(testkit::s3_client(&s3).await, testkit::BUCKET));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(http::serve(listener, http::router(Probes { readiness, registry }), token.clone().cancelled_owned()));
    format!("http://{addr}")
}

pub async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("/readyz body is not JSON"))
}

pub fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check named {name} in {body}"))
}

/// Waits until `/readyz` answers `status` with the `kafka` and `s3` checks as given.
pub async fn wait_for(base: &str, status: u16, kafka_ok: bool, s3_ok: bool) -> Value {
    let what = format!("/readyz {status} with kafka ok={kafka_ok}, s3 ok={s3_ok}");
    testkit::eventually(Duration::from_secs(90), &what, || async {
        let (got, body) = readyz(base).await;
        let matches = got == status && check(&body, "kafka")["ok"] == kafka_ok && check(&body, "s3")["ok"] == s3_ok;
        matches.then_some(body)
    })
    .await
}
