//! The S3 server stopped for a while and started again loses nothing: the consumer keeps
//! its batch, reports not ready, retries, and catches up. Stops the shared S3 server, so
//! it has its own test binary.

mod common;

use std::time::Duration;

use chrono::Utc;
use rskafka::client::partition::Compression;
use store_event::{EventType, Generator};

async fn produce(topic: &str, generator: &mut Generator, count: usize) -> Vec<serde_json::Value> {
    let events: Vec<_> = (0..count).filter_map(|_| generator.next_event(Utc::now()).event).collect();
    testkit::produce(topic, 0, events.iter().map(|e| e.to_record()).collect(), Compression::NoCompression).await;
    events.iter().filter(|e| e.event_type == EventType::Sale).map(|e| e.to_value()).collect()
}

#[tokio::test]
async fn an_s3_outage_loses_nothing_and_readiness_says_why() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("s3down");
    testkit::create_topic(&topic, 1).await;
    let config = common::config(EventType::Sale, &topic, &testkit::unique_name("d"), &[("S3_REQUEST_TIMEOUT", "2s")]);
    let mut generator = Generator::new(Some(99), 0.0);
    let mut expected = produce(&topic, &mut generator, 100).await;
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;

    {
        let _stopped = testkit::Stopped::part("s3");
        expected.extend(produce(&topic, &mut generator, 200).await);
        let readyz = format!("{}/readyz", consumer.base);
        let detail = testkit::eventually(Duration::from_secs(60), "readiness to report failing S3 writes", || async {
            let response = reqwest::get(&readyz).await.ok()?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.ok()?;
            let pipeline = body["checks"].as_array()?.iter().find(|c| c["name"] == "pipeline")?.clone();
            (status == 503 && pipeline["ok"] == false)
                .then(|| pipeline["detail"].as_str().unwrap_or_default().to_owned())
        })
        .await;
        assert!(detail.contains("S3 writes failing"), "{detail}");
    }

    common::wait_until_caught_up(&config, 1, Duration::from_secs(90)).await;
    let metrics = consumer.metrics().await;
    consumer.stop().await;
    let entry_errors = testkit::metric(&metrics, "consumer_s3_errors_total", &[("operation", "entry")]);
    assert!(entry_errors.is_some_and(|n| n >= 1.0), "{metrics}");
    let report = common::audit(&config).await;
    assert!(report.clean(), "{}", report.render());
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&expected));
}
