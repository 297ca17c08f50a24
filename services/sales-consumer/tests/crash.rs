//! kill -9 over and over while events keep arriving: half the time at a random moment, a
//! quarter right after a ledger entry is written and before its objects are, a quarter as
//! an append to the Iceberg table starts (sent or not, answered or not). After the last
//! restart the audit finds no gap and no overlap, the stored events (JSON, Parquet and the
//! Iceberg table's rows) are exactly the sale events produced, and the table's metadata
//! lists every entry's files once. The test reports where the kills landed and fails if
//! none left an entry without its objects (the window recovery exists for). This runs the
//! real binary, as Kubernetes would.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

#[path = "../../../shared/consumer/tests/common/mod.rs"]
mod common;
mod process;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_event::EventType;

use process::{LogOnFailure, Producing};

const CYCLES: usize = 20;
/// The consumer's debug line between a ledger entry and its objects.
const ENTRY_WRITTEN: &str = "Ledger entry written; writing its objects.";
/// The committer's debug line just before it appends to the Iceberg table.
const APPENDING: &str = "Appending to the Iceberg table.";
/// Recovery's line when it finds the last entry's objects missing.
const REWRITING: &str = "Writing the last batch's objects again.";
/// Starts each run's part of the log.
const RUN_MARK: &str = "=== crash test: run ";

/// Appends a line of the test's own to the log the runs share.
fn mark(log: &Path, line: &str) {
    let mut file = File::options().create(true).append(true).open(log).unwrap();
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("writing {}: {e}", log.display()));
}

/// Waits (polling every 0.2 ms, for at most `limit`) until the log grows past `from` with a
/// line containing `needle`; true when it did.
fn wait_for_line(log: &Path, from: u64, needle: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = String::new();
    let mut offset = from;
    while std::time::Instant::now() < deadline {
        if let Ok(mut file) = File::open(log) {
            let _ = file.seek(SeekFrom::Start(offset));
            let mut more = String::new();
            if let Ok(n) = file.read_to_string(&mut more) {
                offset += n as u64;
                seen.push_str(&more);
                if seen.contains(needle) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_and_doubles_nothing() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("crash");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("c");
    let mut logs = LogOnFailure::default();
    let log = logs.add(&topic);
    // JSON, Parquet and the Iceberg table's files from each batch: a kill between an entry
    // and its objects leaves them all for the next run to write, and the table's append to
    // the next run's backlog.
    let iceberg = common::iceberg_env(&prefix, "json,parquet,iceberg");
    let iceberg: Vec<(&str, &str)> = iceberg.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = common::config(EventType::Sale, &topic, &prefix, &iceberg);
    let group = format!("test-{topic}");
    let env = process::env(
        &topic,
        &prefix,
        &[
            ("BATCH_MAX_AGE", "150ms"),
            ("BATCH_MAX_EVENTS", "25"),
            ("CHECKPOINT_INTERVAL", "500ms"),
            ("PARTITION_REFRESH", "1s"),
            ("RUST_LOG", "info,store_consumer=debug"),
            // A static member of a group of its own: each restart takes the killed
            // instance's place at once, without waiting for its session to expire (KIP-345).
            ("CONSUMER_GROUP_ID", &group),
            ("CONSUMER_GROUP_INSTANCE_ID", "crash-test-0"),
        ]
        .into_iter()
        .chain(iceberg.iter().copied())
        .collect::<Vec<_>>(),
    );

    // Events keep arriving on both partitions, 10% of them bad, while the consumer dies.
    let producing = Producing::start(&topic, 2, 2_000, Duration::from_millis(40), 4242);

    let mut rng = StdRng::seed_from_u64(20261124);
    let (mut targeted, mut appending) = (0, 0);
    for cycle in 0..CYCLES {
        mark(&log, &format!("{RUN_MARK}{cycle}"));
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = process::spawn(&env, &log);
        if cycle % 2 == 1 {
            // Right after an entry, before its objects, or as an append to the table starts
            // (or at a random moment if the line does not come within 5 s).
            let path = log.clone();
            let line = if cycle % 4 == 1 { ENTRY_WRITTEN } else { APPENDING };
            let hit = tokio::task::spawn_blocking(move || {
                let hit = wait_for_line(&path, from, line, Duration::from_secs(5));
                let _ = child.kill();
                let _ = child.wait();
                hit
            })
            .await
            .expect("the killer thread failed");
            if line == ENTRY_WRITTEN {
                targeted += usize::from(hit);
            } else {
                appending += usize::from(hit);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
            child.kill().expect("kill -9");
            let _ = child.wait();
        }
    }
    mark(&log, &format!("{RUN_MARK}{CYCLES} (the last, clean run)"));
    let produced = producing.finish().await;

    // One last, clean run catches up and stops on SIGTERM.
    let child = process::spawn(&env, &log);
    common::wait_until_caught_up(&config, 2, Duration::from_secs(120)).await;
    let exit = process::terminate(child).await;
    assert!(exit.success(), "the consumer did not exit cleanly on SIGTERM: {exit:?}");

    // Where the kills landed: a run that begins by writing the last batch's objects again
    // follows a kill between an entry and its objects.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let runs: Vec<&str> = text.split(RUN_MARK).skip(1).collect();
    let repaired = runs.iter().skip(1).filter(|run| run.contains(REWRITING)).count();
    let phases = format!(
        "{CYCLES} kills ({targeted} sent on the entry-written line, {appending} as an Iceberg append started): \
         {repaired} left an entry without its objects, which the next run wrote; {} came before an entry or \
         after its objects",
        CYCLES - repaired
    );
    println!("{phases}");
    assert!(repaired >= 1, "no kill landed between a ledger entry and its objects: {phases}");

    process::assert_exactly_once(&config, &produced, &format!("after {CYCLES} kill -9 cycles ({phases})")).await;
}
