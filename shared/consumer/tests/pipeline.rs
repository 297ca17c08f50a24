//! The consumers against the real broker and S3 server: a seeded mix of good, bad,
//! foreign and broken records ends up exactly as specified, record by record.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::time::Duration;

use chrono::Utc;
use rskafka::client::partition::Compression;
use serde_json::Value;
use store_consumer::ledger::{GetError, Store, get_json};
use store_event::{EventType, Generator};

/// What was produced, by expected outcome for one consumer.
#[derive(Default)]
struct Expected {
    stored: Vec<Value>,
    dead_kinds: Vec<String>,
    skipped: usize,
}

/// Partition 0: the project's own records (key, headers), 10% bad, uncompressed.
/// Partition 1: the original Lambda's bare JSON (no key, no headers), gzip-compressed,
/// plus records no consumer can attribute.
async fn produce_mix(topic: &str) -> (Expected, Expected) {
    let mut sales = Expected::default();
    let mut inventory = Expected::default();
    let mut generator = Generator::new(Some(2026), 0.1);
    let now = Utc::now();
    let mut own = Vec::new();
    let mut bare = Vec::new();
    for i in 0..400 {
        let generated = generator.next_event(now);
        let (mine, other) = match generated.event_type {
            EventType::Sale => (&mut sales, &mut inventory),
            EventType::Inventory => (&mut inventory, &mut sales),
        };
        match &generated.event {
            Some(_) => mine.stored.push(generated.value.clone()),
            None => mine.dead_kinds.push("flagged_bad".to_owned()),
        }
        other.skipped += 1;
        if i % 2 == 0 {
            let record = match &generated.event {
                Some(event) => event.to_record(),
                // Bad events go with the type header, as the producer's simulator sends them.
                None => testkit::record(
                    Some(generated.value.to_string().as_bytes()),
                    &[(store_event::EVENT_TYPE_HEADER, generated.event_type.as_str().as_bytes())],
                ),
            };
            own.push(record);
        } else {
            bare.push(testkit::record(Some(generated.value.to_string().as_bytes()), &[]));
        }
    }
    let broken: [(Option<&[u8]>, &str); 7] = [
        (Some(b"hello, kafka"), "not_json"),
        (Some(b"\xff\xfe\x00binary"), "not_utf8"),
        (Some(b""), "empty_value"),
        (None, "null_value"),
        (Some(b"[1, 2, 3]"), "not_an_object"),
        (Some(br#"{"event_type": "refund_event", "store_id": 1}"#), "unknown_event_type"),
        (Some(br#"{"store_id": 1}"#), "missing_event_type"),
    ];
    for (value, kind) in broken {
        bare.push(testkit::record(value, &[]));
        sales.dead_kinds.push(kind.to_owned());
        inventory.dead_kinds.push(kind.to_owned());
    }
    for chunk in own.chunks(50) {
        testkit::produce(topic, 0, chunk.to_vec(), Compression::NoCompression).await;
    }
    for chunk in bare.chunks(50) {
        testkit::produce(topic, 1, chunk.to_vec(), Compression::Gzip).await;
    }
    (sales, inventory)
}

async fn check(config: &store_consumer::ConsumerConfig, expected: &Expected) {
    if config.formats.json {
        let stored = common::stored(config).await;
        assert_eq!(stored.len(), expected.stored.len(), "{}: stored count", config.service);
        assert_eq!(common::request_ids(&stored), common::request_ids(&expected.stored), "{}", config.service);
        let mut by_id: Vec<&Value> = expected.stored.iter().collect();
        by_id.sort_by_key(|v| v["request_id"].as_str().unwrap_or_default().to_owned());
        let mut got: Vec<&Value> = stored.iter().collect();
        got.sort_by_key(|v| v["request_id"].as_str().unwrap_or_default().to_owned());
        assert_eq!(got, by_id, "{}: stored events differ from what was produced", config.service);
    }
    // The Parquet files: every event once, each field equal to what was sent.
    let in_parquet = common::stored_parquet(config).await;
    if config.formats.parquet {
        assert_eq!(common::as_events(&in_parquet), common::as_events(&expected.stored), "{}: Parquet", config.service);
    } else {
        assert!(in_parquet.is_empty(), "{}: Parquet files written without being asked for", config.service);
    }

    let letters = common::dead_letters(config).await;
    let mut kinds: Vec<String> = letters.iter().map(|l| l["kind"].as_str().unwrap_or_default().to_owned()).collect();
    let mut expected_kinds = expected.dead_kinds.clone();
    kinds.sort();
    expected_kinds.sort();
    assert_eq!(kinds, expected_kinds, "{}: dead letters by reason", config.service);
    for letter in &letters {
        assert!(letter["reason"].as_str().is_some_and(|r| !r.is_empty()), "no reason: {letter}");
        assert!(letter["offset"].is_i64() && letter["partition"].is_i64(), "no position: {letter}");
    }
    let binary = letters.iter().find(|l| l["kind"] == "not_utf8").map(|l| l["value"]["base64"].clone());
    assert_eq!(binary, Some(Value::from("//4AYmluYXJ5")), "non-UTF-8 values are kept as base64");

    let report = common::audit(config).await;
    assert!(report.clean(), "{}: audit found problems:\n{}", config.service, report.render());
    let total: u64 = report.partitions.iter().map(|p| p.stored + p.dead_lettered + p.skipped).sum();
    assert_eq!(total, 407, "every record accounted for exactly once");
    let skipped: u64 = report.partitions.iter().map(|p| p.skipped).sum();
    assert_eq!(skipped as usize, expected.skipped);
}

#[tokio::test]
async fn a_seeded_mix_of_good_bad_foreign_and_broken_records_ends_up_exactly_as_specified() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("mix");
    testkit::create_topic(&topic, 2).await;
    let (sales, inventory) = produce_mix(&topic).await;
    let prefix = format!("m{}", uuid_suffix());
    // The sales consumer writes JSON and Parquet from each batch, the inventory consumer
    // Parquet only.
    let batch = [("BATCH_MAX_EVENTS", "37")];
    let sales_env = [batch[0], ("OUTPUT_FORMATS", "json,parquet")];
    let inventory_env = [batch[0], ("OUTPUT_FORMATS", "parquet")];
    let sales_config = common::config(EventType::Sale, &topic, &prefix, &sales_env);
    let inventory_config = common::config(EventType::Inventory, &topic, &prefix, &inventory_env);
    let sales_consumer = common::start(sales_config.clone()).await;
    let inventory_consumer = common::start(inventory_config.clone()).await;

    common::wait_until_caught_up(&sales_config, 2, Duration::from_secs(90)).await;
    common::wait_until_caught_up(&inventory_config, 2, Duration::from_secs(90)).await;
    let metrics = sales_consumer.metrics().await;
    sales_consumer.stop().await;
    inventory_consumer.stop().await;

    check(&sales_config, &sales).await;
    check(&inventory_config, &inventory).await;
    assert_eq!(testkit::metric(&metrics, "consumer_dead_letters_total", &[("reason", "not_utf8")]), Some(1.0));
    assert_eq!(testkit::metric(&metrics, "consumer_lag_records", &[("partition", "0")]), Some(0.0));
}

#[tokio::test]
async fn a_restart_resumes_without_rewriting_or_skipping() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("restart");
    testkit::create_topic(&topic, 1).await;
    let prefix = format!("r{}", uuid_suffix());
    let config = common::config(EventType::Sale, &topic, &prefix, &[]);
    let mut generator = Generator::new(Some(7), 0.0);
    let mut produced = Vec::new();
    for round in 0..3 {
        let events: Vec<_> = (0..60).filter_map(|_| generator.next_event(Utc::now()).event).collect();
        produced.extend(events.iter().filter(|e| e.event_type == EventType::Sale).map(|e| e.to_value()));
        testkit::produce(&topic, 0, events.iter().map(|e| e.to_record()).collect(), Compression::Lz4).await;
        let consumer = common::start(config.clone()).await;
        common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
        let metrics = consumer.metrics().await;
        consumer.stop().await;
        let report = common::audit(&config).await;
        assert!(report.clean(), "round {round}:\n{}", report.render());
        // Each restart found the last batch complete: resumed, nothing written again.
        let (clean, rewrote) = (recoveries(&metrics, "clean"), recoveries(&metrics, "rewrote"));
        let expected_clean = if round == 0 { None } else { Some(1) };
        assert_eq!((clean, rewrote.unwrap_or(0)), (expected_clean, 0), "round {round}:\n{metrics}");
    }
    let stored = common::stored(&config).await;
    assert_eq!(common::request_ids(&stored), common::request_ids(&produced));
}

/// Also: both commit their progress to one consumer group, which Kafka's own
/// `kafka-consumer-groups.sh --describe` shows with lag 0 once they stopped.
#[tokio::test]
async fn two_instances_owning_one_partition_each_cover_the_topic() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("owners");
    testkit::create_topic(&topic, 2).await;
    let mut generator = Generator::new(Some(11), 0.0);
    let events: Vec<_> = (0..300).filter_map(|_| generator.next_event(Utc::now()).event).collect();
    for (partition, half) in events.chunks(150).enumerate() {
        let records = half.iter().map(|e| e.to_record()).collect();
        testkit::produce(&topic, partition as i32, records, Compression::Snappy).await;
    }
    let prefix = format!("o{}", uuid_suffix());
    let group = testkit::unique_name("store-events-inventory-consumer");
    let first = common::config(
        EventType::Inventory,
        &topic,
        &prefix,
        &[("CONSUMER_ASSIGNMENT", "static"), ("CONSUMER_PARTITIONS", "0"), ("CONSUMER_GROUP_ID", &group)],
    );
    let second = common::config(
        EventType::Inventory,
        &topic,
        &prefix,
        &[
            ("CONSUMER_ASSIGNMENT", "static"),
            ("CONSUMER_INSTANCES", "2"),
            ("CONSUMER_INSTANCE", "1"),
            ("CONSUMER_GROUP_ID", &group),
        ],
    );
    let (a, b) = (common::start(first.clone()).await, common::start(second).await);
    common::wait_until_caught_up(&first, 2, Duration::from_secs(60)).await;
    // Progress is committed about once a second, besides the last commit at shutdown.
    let metrics = testkit::eventually(Duration::from_secs(30), "a commit to the consumer group", || async {
        let metrics = a.metrics().await;
        let ok = testkit::metric(&metrics, "consumer_offset_commits_total", &[("outcome", "ok")]);
        ok.is_some_and(|n| n >= 1.0).then_some(metrics)
    })
    .await;
    a.stop().await;
    b.stop().await;

    let report = common::audit(&first).await;
    assert!(report.clean(), "{}", report.render());
    assert_eq!(report.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1]);
    let rows = testkit::describe_group(&group);
    let seen: Vec<_> =
        rows.iter().filter(|r| r.topic == topic).map(|r| (r.partition, r.committed, r.log_end, r.lag)).collect();
    assert_eq!(seen, [(0, Some(150), Some(150), Some(0)), (1, Some(150), Some(150), Some(0))], "{rows:?}");
    assert_eq!(testkit::metric(&metrics, "consumer_offset_commits_total", &[("outcome", "error")]), None, "{metrics}");
    let expected: Vec<Value> =
        events.iter().filter(|e| e.event_type == EventType::Inventory).map(|e| e.to_value()).collect();
    assert_eq!(common::request_ids(&common::stored(&first).await), common::request_ids(&expected));
}

#[tokio::test]
async fn partitions_added_to_the_topic_later_are_picked_up() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("grow");
    testkit::create_topic(&topic, 1).await;
    let config = common::config(EventType::Sale, &topic, &format!("g{}", uuid_suffix()), &[]);
    let mut generator = Generator::new(Some(3), 0.0);
    let mut events: Vec<_> = (0..40).filter_map(|_| generator.next_event(Utc::now()).event).collect();
    testkit::produce(&topic, 0, events.iter().map(|e| e.to_record()).collect(), Compression::NoCompression).await;
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;

    testkit::add_partitions(&topic, 2);
    let later: Vec<_> = (0..40).filter_map(|_| generator.next_event(Utc::now()).event).collect();
    testkit::produce(&topic, 1, later.iter().map(|e| e.to_record()).collect(), Compression::NoCompression).await;
    events.extend(later);
    common::wait_until_caught_up(&config, 2, Duration::from_secs(60)).await;
    consumer.stop().await;

    let report = common::audit(&config).await;
    assert!(report.clean(), "{}", report.render());
    assert_eq!(report.partitions.len(), 2);
    let expected: Vec<Value> =
        events.iter().filter(|e| e.event_type == EventType::Sale).map(|e| e.to_value()).collect();
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&expected));
}

/// Another producer on the topic writes in Kafka transactions (Apache Kafka's Java client):
/// records of an aborted transaction must not be stored, and the commit marker that ends
/// the partition must not stop the consumer short of the high watermark, before or after
/// a restart.
#[tokio::test]
async fn a_transactional_producers_aborted_records_are_dropped_and_its_markers_passed() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("txn");
    testkit::create_topic(&topic, 1).await;
    let mut generator = Generator::new(Some(17), 0.0);
    let mut sales = || loop {
        let generated = generator.next_event(Utc::now());
        if generated.event_type == EventType::Sale {
            return generated.value;
        }
    };
    let (committed, aborted): (Vec<Value>, Vec<Value>) =
        ((0..5).map(|_| sales()).collect(), (0..4).map(|_| sales()).collect());
    let later: Vec<Value> = (0..3).map(|_| sales()).collect();
    let send = |events: &[Value]| events.iter().map(|e| format!("send 0 {e}\n")).collect::<String>();
    // Committed, aborted, committed: the partition ends with a commit marker.
    let script = format!("{}commit\n{}abort\n{}commit\n", send(&committed[..3]), send(&aborted), send(&committed[3..]));
    testkit::produce_in_transactions(&topic, &script);

    let config = common::config(EventType::Sale, &topic, &format!("t{}", uuid_suffix()), &[]);
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
    let metrics = consumer.metrics().await;
    consumer.stop().await;
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&committed));
    // Offsets 0..12 hold 5 committed records; 3 markers and 4 aborted records make up the rest.
    assert_eq!(testkit::metric(&metrics, "consumer_offsets_without_record_total", &[("partition", "0")]), Some(7.0));
    assert_eq!(testkit::metric(&metrics, "consumer_lag_records", &[("partition", "0")]), Some(0.0));
    // Read to the end of the partition, markers included, as committed.
    assert_eq!(testkit::metric(&metrics, "consumer_position", &[("partition", "0")]), Some(12.0));

    // After a restart from the ledger, with more transactions and a plain record after them.
    testkit::produce_in_transactions(&topic, &format!("{}abort\n{}commit\n", send(&aborted[..1]), send(&later)));
    let plain = sales();
    testkit::produce(
        &topic,
        0,
        vec![testkit::record(Some(plain.to_string().as_bytes()), &[])],
        Compression::NoCompression,
    )
    .await;
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
    consumer.stop().await;

    let expected: Vec<Value> = committed.iter().chain(&later).chain([&plain]).cloned().collect();
    let stored = common::stored(&config).await;
    assert_eq!(common::request_ids(&stored), common::request_ids(&expected), "only committed records are stored");
    assert!(common::dead_letters(&config).await.is_empty(), "nothing is dead-lettered");
    let report = common::audit(&config).await;
    assert!(report.clean(), "{}", report.render());
    // 5 + 4 + 1 + 3 + 1 records and 5 markers, every offset accounted for once.
    assert_eq!(report.partitions.iter().map(|p| p.to_offset).collect::<Vec<_>>(), [19]);
    assert_eq!(report.partitions.iter().map(|p| p.stored).sum::<u64>(), 9);
}

/// The value of `consumer_recoveries_total` for `action` in a metrics text, if any.
/// `consumer_recoveries_total` of partition 0 for `action`.
fn recoveries(metrics: &str, action: &str) -> Option<u64> {
    testkit::metric(metrics, "consumer_recoveries_total", &[("partition", "0"), ("action", action)]).map(|v| v as u64)
}

async fn produce_sales(topic: &str, generator: &mut Generator, count: usize) -> Vec<Value> {
    let events: Vec<_> = std::iter::repeat_with(|| generator.next_event(Utc::now()).event)
        .flatten()
        .filter(|e| e.event_type == EventType::Sale)
        .take(count)
        .collect();
    testkit::produce(topic, 0, events.iter().map(|e| e.to_record()).collect(), Compression::NoCompression).await;
    events.iter().map(|e| e.to_value()).collect()
}

/// The last batch's objects are gone (a lifecycle rule, a deletion) and so are its records
/// in Kafka (retention): nothing can rebuild them, and the partition goes on instead of
/// failing its recovery forever.
#[tokio::test]
async fn a_last_batch_gone_from_s3_and_kafka_does_not_stop_the_partition() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("gone");
    testkit::create_topic(&topic, 1).await;
    let config = common::config(EventType::Sale, &topic, &format!("x{}", uuid_suffix()), &[]);
    let mut generator = Generator::new(Some(23), 0.0);
    let mut produced = produce_sales(&topic, &mut generator, 30).await;
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
    consumer.stop().await;

    // Delete the last batch's data object, and every record from Kafka.
    let (bucket, layout) = common::bucket(&config).await;
    let keys = bucket.list(&layout.ledger_prefix(0), None).await.unwrap();
    let last = keys.iter().rfind(|k| store_consumer::layout::Layout::entry_offset(k).is_some()).cloned();
    let entry: store_consumer::ledger::Entry = get_json(&bucket, last.as_deref().unwrap_or_default())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no last entry among {keys:?}"));
    let data_key = entry.data_key.clone().unwrap_or_else(|| panic!("the last entry has no data object: {entry:?}"));
    let s3 = testkit::s3_client(&config.s3).await;
    let deleted = testkit::read_jsonl_gz(&s3, &data_key).await;
    s3.delete_object()
        .bucket(testkit::BUCKET)
        .key(&data_key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {data_key}: {e:?}"));
    let mark = testkit::high_watermarks(&topic, 1).await[0];
    let client = testkit::kafka().client().await.expect("kafka");
    let partition = client
        .partition_client(topic.as_str(), 0, rskafka::client::partition::UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    partition.delete_records(mark, 10_000).await.expect("delete records");

    produced.extend(produce_sales(&topic, &mut generator, 10).await);
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
    let metrics = consumer.metrics().await;
    consumer.stop().await;

    assert_eq!(recoveries(&metrics, "objects_gone"), Some(1), "{metrics}");
    let expected: Vec<Value> = produced.into_iter().filter(|e| !deleted.contains(e)).collect();
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&expected));

    // The deep audit also names an object whose bytes were damaged on the server's disk
    // (they fail the checksum S3 keeps with them) and goes on with the rest.
    let keys = bucket.list(&layout.ledger_prefix(0), None).await.unwrap();
    let newest = keys.iter().rfind(|k| store_consumer::layout::Layout::entry_offset(k).is_some());
    let damaged = get_json::<store_consumer::ledger::Entry>(&bucket, newest.map_or("", |k| k.as_str()))
        .await
        .ok()
        .flatten()
        .and_then(|e| e.data_key)
        .unwrap_or_else(|| panic!("no data object in the newest entry among {keys:?}"));
    testkit::damage_local_s3_object(&damaged);
    let report = common::audit(&config).await;
    let bad = &report.partitions[0].bad_objects;
    assert_eq!(bad.len(), 2, "{}", report.render());
    assert_eq!(bad[0], format!("{data_key} is missing"), "{}", report.render());
    assert!(bad[1].starts_with(&format!("{damaged} cannot be read: ")), "{}", report.render());
    assert!(report.partitions[0].gaps.is_empty() && report.partitions[0].overlaps.is_empty(), "{}", report.render());
    // Left in the shared local bucket, it would fail every later `aws s3 cp --recursive`.
    s3.delete_object().bucket(testkit::BUCKET).key(&damaged).send().await.unwrap_or_else(|e| panic!("{e:?}"));
}

/// The checkpoint is a hint: one whose entry is gone, one that is not JSON, or one whose
/// stored bytes are damaged costs a warning and a longer listing, never the partition.
#[tokio::test]
async fn a_checkpoint_naming_a_deleted_entry_not_json_or_damaged_is_only_a_hint() {
    testkit::require_kafka();
    let topic = testkit::unique_topic("hint");
    testkit::create_topic(&topic, 1).await;
    let config = common::config(EventType::Sale, &topic, &format!("h{}", uuid_suffix()), &[]);
    let (bucket, layout) = common::bucket(&config).await;
    let s3 = testkit::s3_client(&config.s3).await;
    let mut generator = Generator::new(Some(29), 0.0);
    let mut produced = Vec::new();
    for round in 0..4 {
        produced.extend(produce_sales(&topic, &mut generator, 20).await);
        let consumer = common::start(config.clone()).await;
        common::wait_until_caught_up(&config, 1, Duration::from_secs(60)).await;
        let metrics = consumer.metrics().await;
        consumer.stop().await;
        if round == 1 {
            assert_eq!(recoveries(&metrics, "entry_gone"), Some(1), "{metrics}");
        }
        let checkpoint = layout.checkpoint_key(0);
        let named: store_consumer::ledger::Checkpoint =
            get_json(&bucket, &checkpoint).await.ok().flatten().expect("no checkpoint");
        match round {
            // Round 1 starts from a checkpoint whose entry was deleted,
            0 => {
                let key = layout.entry_key(0, named.entry_first_offset);
                s3.delete_object().bucket(testkit::BUCKET).key(&key).send().await.unwrap_or_else(|e| panic!("{e:?}"));
            }
            // round 2 from a checkpoint that is not JSON,
            1 => {
                let garbage = aws_sdk_s3::primitives::ByteStream::from_static(b"{\"entry_first_offset\": ");
                s3.put_object()
                    .bucket(testkit::BUCKET)
                    .key(&checkpoint)
                    .body(garbage)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e:?}"));
            }
            // and round 3 from a checkpoint whose bytes no longer match the checksum the
            // server keeps with them (the SDK refuses such a body): bit rot, or a server
            // whose overwrite is not atomic (a kill -9 once left one such on the S3 server
            // this project used before SeaweedFS), and recovery retried it forever.
            2 => {
                testkit::damage_local_s3_object(&checkpoint);
                let read = bucket.get(&checkpoint).await;
                assert!(matches!(read, Err(GetError::Body(_))), "the damaged checkpoint was read: {read:?}");
            }
            // Each run wrote a good checkpoint again (read above), the damaged one included.
            _ => {}
        }
    }
    // Nothing doubled, nothing skipped.
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&produced));
}

fn uuid_suffix() -> String {
    testkit::unique_name("p").trim_start_matches("p-").to_owned()
}
