//! The Iceberg output against the real broker, S3 server and a SQLite catalog: every
//! stored event is a row of the consumer's table exactly once, across restarts, a crash
//! between the files and the commit, and two consumers sharing one catalog; the table is
//! read back with the `iceberg` crate's own scan and audited from its metadata.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::time::Duration;

use chrono::Utc;
use rskafka::client::partition::Compression;
use serde_json::Value;
use store_event::{EventType, Generator};

/// Sales and inventory events, 10 % bad, on `partitions` partitions: half as the project's
/// producer sends them, half as bare JSON (the original Lambda's). The valid ones by type.
async fn produce(topic: &str, partitions: i32, seed: u64, count: usize) -> (Vec<Value>, Vec<Value>) {
    let mut generator = Generator::new(Some(seed), 0.1);
    let (mut sales, mut inventory) = (Vec::new(), Vec::new());
    let mut records: Vec<Vec<rskafka::record::Record>> = vec![Vec::new(); partitions as usize];
    for i in 0..count {
        let generated = generator.next_event(Utc::now());
        let record = match (&generated.event, i % 2) {
            (Some(event), 0) => event.to_record(),
            _ => testkit::record(Some(generated.value.to_string().as_bytes()), &[]),
        };
        records[i % partitions as usize].push(record);
        if generated.event.is_some() {
            match generated.event_type {
                EventType::Sale => sales.push(generated.value),
                EventType::Inventory => inventory.push(generated.value),
            }
        }
    }
    for (partition, records) in records.into_iter().enumerate() {
        for chunk in records.chunks(50) {
            testkit::produce(topic, partition as i32, chunk.to_vec(), Compression::Zstd).await;
        }
    }
    (sales, inventory)
}

/// Owned settings as the pairs `common::config` takes.
fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The table holds exactly `expected`, every field equal, and the audit reading its
/// metadata agrees: every entry's files once, nothing else, nothing waiting, its offsets
/// at the ledger's end.
async fn check_table(config: &store_consumer::ConsumerConfig, expected: &[Value], partitions: i32) {
    let rows = common::table_rows(config).await;
    assert_eq!(rows.len(), expected.len(), "{}: rows in the table", config.service);
    assert_eq!(common::as_events(&rows), common::as_events(expected), "{}: the table's rows", config.service);
    let report = common::audit_with_table(config).await;
    assert!(report.clean(), "{}: audit found problems:\n{}", config.service, report.render());
    let table = report.table.as_ref().expect("a table report");
    assert_eq!(table.waiting_entries, 0, "{}: entries left out of the table:\n{}", config.service, report.render());
    assert_eq!(table.rows as usize, expected.len(), "{}", report.render());
    let marks = testkit::high_watermarks(&config.common.topic, partitions).await;
    let ends: Vec<i64> = (0..partitions).map(|p| table.offsets.get(&p).copied().unwrap_or_default()).collect();
    assert_eq!(ends, marks, "{}: the table's offsets are the ledger's end\n{}", config.service, report.render());
}

#[tokio::test]
async fn both_tables_hold_every_stored_event_once_across_restarts() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("ice");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("ice");
    let (mut sales, inventory) = produce(&topic, 2, 2312, 600).await;
    // Both consumers in one catalog: the sales consumer writes JSON too, the inventory one
    // the table only.
    let sales_env = common::iceberg_env(&prefix, "json,iceberg");
    let inventory_env = common::iceberg_env(&prefix, "iceberg");
    let pairs = |env: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut pairs = env.to_vec();
        pairs.push(("BATCH_MAX_EVENTS", "37".to_owned()));
        pairs
    };
    let (sales_env, inventory_env) = (pairs(&sales_env), pairs(&inventory_env));
    let sales_config = common::config(EventType::Sale, &topic, &prefix, &borrow(&sales_env));
    let inventory_config = common::config(EventType::Inventory, &topic, &prefix, &borrow(&inventory_env));
    let sales_consumer = common::start(sales_config.clone()).await;
    let inventory_consumer = common::start(inventory_config.clone()).await;
    common::wait_until_caught_up(&sales_config, 2, Duration::from_secs(90)).await;
    common::wait_until_caught_up(&inventory_config, 2, Duration::from_secs(90)).await;
    let metrics = sales_consumer.metrics().await;
    sales_consumer.stop().await;
    inventory_consumer.stop().await;
    check_table(&sales_config, &sales, 2).await;
    check_table(&inventory_config, &inventory, 2).await;
    assert!(
        testkit::metric(&metrics, "consumer_iceberg_commits_total", &[("outcome", "committed")]).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    // The JSON objects and the table hold the same events.
    assert_eq!(common::as_events(&common::stored(&sales_config).await), common::as_events(&sales));

    // Two more rounds: each restart appends only the new batches.
    for round in 0..2 {
        let (more, _) = produce(&topic, 2, 100 + round, 200).await;
        sales.extend(more);
        let consumer = common::start(sales_config.clone()).await;
        common::wait_until_caught_up(&sales_config, 2, Duration::from_secs(60)).await;
        consumer.stop().await;
        check_table(&sales_config, &sales, 2).await;
    }
}

/// A commit is a round: the partitions seal their open batches for it, so the table holds
/// what was read one interval later even when no batch would close for an hour.
#[tokio::test]
async fn each_commit_seals_the_open_batches_whatever_their_age() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("ice-round");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("icer");
    let (sales, _) = produce(&topic, 2, 4242, 300).await;
    let mut env = common::iceberg_env(&prefix, "json,iceberg");
    env.push(("BATCH_MAX_AGE", "1h".to_owned()));
    env.push(("BATCH_MAX_EVENTS", "100000".to_owned()));
    let config = common::config(EventType::Sale, &topic, &prefix, &borrow(&env));
    let consumer = common::start(config.clone()).await;
    // While it runs: no batch is full or an hour old, yet every event gets into the table.
    testkit::eventually(Duration::from_secs(60), "every event in the table while the consumer runs", || async {
        let rows = common::table_rows(&config).await;
        (rows.len() == sales.len()).then_some(())
    })
    .await;
    let metrics = consumer.metrics().await;
    consumer.stop().await;
    assert!(
        testkit::metric(&metrics, "consumer_iceberg_rows_total", &[]).unwrap_or(0.0) >= sales.len() as f64,
        "{metrics}"
    );
    check_table(&config, &sales, 2).await;
    assert_eq!(common::as_events(&common::stored(&config).await), common::as_events(&sales));
}

#[tokio::test]
async fn batches_written_but_never_committed_are_appended_once_by_the_next_start() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("ice-crash");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("icec");
    let (sales, _) = produce(&topic, 2, 77, 400).await;
    let mut env = common::iceberg_env(&prefix, "iceberg");
    env.push(("BATCH_MAX_EVENTS", "40".to_owned()));
    // First run: commits only every hour, and dies (its task dropped mid-flight, as a
    // kill would) after writing every batch's files and ledger entry.
    let mut slow = env.clone();
    slow.retain(|(k, _)| *k != "ICEBERG_COMMIT_INTERVAL");
    slow.push(("ICEBERG_COMMIT_INTERVAL", "1h".to_owned()));
    let slow_config = common::config(EventType::Sale, &topic, &prefix, &borrow(&slow));
    let first = common::start(slow_config.clone()).await;
    common::wait_until_caught_up(&slow_config, 2, Duration::from_secs(60)).await;
    first.task.abort();
    let _ = first.task.await;
    let before = common::audit_with_table(&slow_config).await;
    let table = before.table.as_ref().expect("table report");
    assert_eq!(table.files, 0, "nothing was committed before the crash:\n{}", before.render());
    assert!(table.waiting_entries > 0, "{}", before.render());

    // The next start finds the entries past the table's offsets (none yet) and appends them.
    // (In a group of its own: the dead instance's membership would hold the partitions
    // until its session expired.)
    let group = format!("{topic}-next");
    env.push(("CONSUMER_GROUP_ID", group));
    let config = common::config(EventType::Sale, &topic, &prefix, &borrow(&env));
    let second = common::start(config.clone()).await;
    testkit::eventually(Duration::from_secs(60), "the backlog appended", || async {
        let report = common::audit_with_table(&config).await;
        let table = report.table.clone().expect("table report");
        (table.waiting_entries == 0 && table.files > 0).then_some(())
    })
    .await;
    second.stop().await;
    check_table(&config, &sales, 2).await;

    // A third start finds everything in: it appends nothing (the table's snapshot count stays).
    let snapshots = common::lake(&config).await.load().await.expect("load").metadata().snapshots().count();
    let third = common::start(config.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    third.stop().await;
    let after = common::lake(&config).await.load().await.expect("load").metadata().snapshots().count();
    assert_eq!(after, snapshots, "a start with nothing new appended a snapshot");
    check_table(&config, &sales, 2).await;
}

#[tokio::test]
async fn the_migration_brings_a_json_history_in_once_even_run_twice_at_the_same_time() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("ice-migrate");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("icem");
    let mut env = common::iceberg_env(&prefix, "json,iceberg");
    env.push(("BATCH_MAX_EVENTS", "30".to_owned()));
    let config = common::config(EventType::Sale, &topic, &prefix, &borrow(&env));
    let (bucket, layout) = common::bucket(&config).await;

    // A JSON lake first: the consumer without Iceberg.
    let (mut sales, _) = produce(&topic, 2, 31, 300).await;
    let json_only = common::config(EventType::Sale, &topic, &prefix, &[]);
    let consumer = common::start(json_only.clone()).await;
    common::wait_until_caught_up(&json_only, 2, Duration::from_secs(60)).await;
    consumer.stop().await;
    // Before Iceberg is on, the table holds no partition: nothing to migrate onto.
    let lake = common::lake(&config).await;
    let early = store_consumer::migrate::run(&bucket, &layout, &lake).await.expect("migrate");
    assert!(early.iter().all(|p| p.start.is_none() && p.entries == 0), "{early:?}");

    // Then Iceberg on: the table holds each partition from its first entry written so.
    let (more, _) = produce(&topic, 2, 32, 200).await;
    let consumer = common::start(config.clone()).await;
    common::wait_until_caught_up(&config, 2, Duration::from_secs(60)).await;
    consumer.stop().await;
    let report = common::audit_with_table(&config).await;
    assert!(report.clean(), "{}", report.render());
    let table = report.table.as_ref().expect("table report");
    assert!(table.history_waiting > 0, "the JSON history is not in the table yet:\n{}", report.render());
    assert_eq!(common::as_events(&common::table_rows(&config).await), common::as_events(&more));

    // Two migrations at once: each entry's events in once, whoever wins each append.
    let other = common::lake(&config).await;
    let (a, b) = tokio::join!(
        store_consumer::migrate::run(&bucket, &layout, &lake),
        store_consumer::migrate::run(&bucket, &layout, &other)
    );
    let (a, b) = (a.expect("migration a"), b.expect("migration b"));
    let history_entries: u64 = a.iter().chain(&b).map(|p| p.entries).sum();
    assert!(history_entries > 0, "{a:?} {b:?}");
    sales.extend(more);
    assert_eq!(common::as_events(&common::table_rows(&config).await), common::as_events(&sales));
    let report = common::audit_with_table(&config).await;
    assert!(report.clean(), "{}", report.render());
    assert_eq!(report.table.as_ref().map(|t| t.history_waiting), Some(0), "{}", report.render());

    // Run again: nothing left to bring in.
    let again = store_consumer::migrate::run(&bucket, &layout, &lake).await.expect("migrate again");
    assert_eq!(again.iter().map(|p| p.entries).sum::<u64>(), 0, "{again:?}");
    assert_eq!(common::table_rows(&config).await.len(), sales.len());
}
