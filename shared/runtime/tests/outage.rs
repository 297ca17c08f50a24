//! `/readyz` follows Kafka and the S3 server going down and coming back, without a
//! restart. It stops and restarts the shared local broker and S3 server, so it is the only
//! test of its binary (cargo runs test binaries one at a time, and no other test of this
//! binary can run while they are down).

mod common;

use common::{check, serve_probes, wait_for};
use tokio_util::sync::CancellationToken;

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
