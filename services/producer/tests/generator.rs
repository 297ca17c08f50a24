//! The continuous generator against the real broker: its events reach the topic, each
//! keyed record sits on the partition Kafka's own partitioner would choose, and a share of
//! the events is bad on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::time::Duration;

use producer::ProducerConfig;
use producer::sink::partition_for;
use rskafka::client::partition::UnknownTopicHandling;
use service_runtime::config::Env;
use store_event::StoreEvent;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn generated_events_reach_the_topic_as_counted_and_keyed() {
    testkit::test_logs();
    testkit::require_kafka();
    let topic = testkit::unique_topic("gen");
    let env = Env::from_pairs([
        ("STORE_EVENTS_TOPIC", topic.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", testkit::kafka_address()),
        ("PRODUCER_AUTH", "none"),
        ("GENERATOR_RATE", "400"),
        ("GENERATOR_BAD_SHARE", "0.2"),
        ("LOG_FORMAT", "text"),
    ]);
    let config = ProducerConfig::from_env(&env).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let token = CancellationToken::new();
    let service = tokio::spawn(producer::run(config, listener, token.clone()));

    testkit::eventually(Duration::from_secs(60), "200 generated events on the topic", || async {
        let marks = testkit::kafka().partitions(&topic).await.ok().flatten()?;
        let total: i64 = testkit::high_watermarks(&topic, marks.len() as i32).await.iter().sum();
        (total >= 200).then_some(())
    })
    .await;
    token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), service).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "the producer did not stop cleanly: {stopped:?}");

    let marks = testkit::high_watermarks(&topic, 2).await;
    let client = testkit::kafka().client().await.expect("kafka");
    let (mut good, mut bad) = (0, 0);
    for (partition, mark) in marks.iter().enumerate() {
        let pc = client
            .partition_client(topic.as_str(), partition as i32, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let mut offset = 0;
        while offset < *mark {
            let (records, _) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.expect("fetch");
            for record in records {
                offset = record.offset + 1;
                let value = record.record.value.unwrap_or_default();
                match (&record.record.key, StoreEvent::from_json(&value)) {
                    (Some(key), Ok(event)) => {
                        good += 1;
                        assert_eq!(key, &event.kafka_key());
                        assert_eq!(partition_for(key, 2), partition, "key {key:?} on the wrong partition");
                    }
                    (None, Err(_)) => bad += 1,
                    (key, outcome) => panic!("unexpected record: key {key:?}, {outcome:?}"),
                }
            }
        }
    }
    assert!(bad > 0 && good > bad, "good {good}, bad {bad}");
}
