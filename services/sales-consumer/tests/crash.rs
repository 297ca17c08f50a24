//! kill -9 over and over while events keep arriving, half the time at a random moment and
//! half the time right after a ledger entry is written and before its objects are: after
//! the last restart the audit finds no gap and no overlap, and the stored events are
//! exactly the sale events produced. The test reports where the kills landed and fails if
//! none left an entry without its objects (the window recovery exists for). This runs the
//! real binary, as Kubernetes would.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

#[path = "../../../shared/consumer/tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rskafka::client::partition::Compression;
use store_event::{EventType, Generator};

const CYCLES: usize = 20;
/// The consumer's debug line between a ledger entry and its objects.
const ENTRY_WRITTEN: &str = "Ledger entry written; writing its objects.";
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

/// Every run's log goes to one file, printed when the test fails.
fn spawn(env: &[(&str, String)], log: &Path) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let stderr = log.try_clone().expect("cannot share the log file");
    Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .expect("the sales-consumer binary did not start")
}

/// Prints the consumers' log when the test panics, so a CI failure shows why.
struct LogOnFailure(PathBuf);

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!("--- last {} lines of {} ---\n{}", tail.len(), self.0.display(), tail.join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_and_doubles_nothing() {
    testkit::require_kafka();
    testkit::require_s3();
    let topic = testkit::unique_topic("crash");
    testkit::create_topic(&topic, 2).await;
    let prefix = testkit::unique_name("c");
    let log = LogOnFailure(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{topic}.log")));
    let config = common::config(EventType::Sale, &topic, &prefix, &[]);
    let mut env: Vec<(&str, String)> =
        testkit::local_s3_env(&prefix).into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    env.extend([
        ("STORE_EVENTS_TOPIC", topic.clone()),
        ("KAFKA_BOOTSTRAP_SERVERS", testkit::KAFKA.to_owned()),
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("BATCH_MAX_AGE", "150ms".to_owned()),
        ("BATCH_MAX_EVENTS", "25".to_owned()),
        ("CHECKPOINT_INTERVAL", "500ms".to_owned()),
        ("PARTITION_REFRESH", "1s".to_owned()),
        ("RUST_LOG", "info,store_consumer=debug".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
    ]);

    // Events keep arriving on both partitions, 10% of them bad, while the consumer dies.
    let produced = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = {
        let (topic, produced, stop) = (topic.clone(), Arc::clone(&produced), stop.clone());
        tokio::spawn(async move {
            let mut generator = Generator::new(Some(4242), 0.1);
            let mut round = 0;
            while !stop.is_cancelled() && round < 2_000 {
                let batch: Vec<_> = (0..20).map(|_| generator.next_event(Utc::now())).collect();
                let records = batch
                    .iter()
                    .map(|g| match &g.event {
                        Some(event) => event.to_record(),
                        None => testkit::record(Some(g.value.to_string().as_bytes()), &[]),
                    })
                    .collect();
                testkit::produce(&topic, round % 2, records, Compression::NoCompression).await;
                if let Ok(mut produced) = produced.lock() {
                    produced.extend(batch);
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(20261124);
    let mut targeted = 0;
    for cycle in 0..CYCLES {
        mark(&log.0, &format!("{RUN_MARK}{cycle}"));
        let from = std::fs::metadata(&log.0).map(|m| m.len()).unwrap_or(0);
        let mut child = spawn(&env, &log.0);
        if cycle % 2 == 1 {
            // Right after an entry, before its objects (or at a random moment if no entry
            // comes within 5 s).
            let path = log.0.clone();
            let hit = tokio::task::spawn_blocking(move || {
                let hit = wait_for_line(&path, from, ENTRY_WRITTEN, Duration::from_secs(5));
                let _ = child.kill();
                let _ = child.wait();
                hit
            })
            .await
            .expect("the killer thread failed");
            targeted += usize::from(hit);
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
            child.kill().expect("kill -9");
            let _ = child.wait();
        }
    }
    mark(&log.0, &format!("{RUN_MARK}{CYCLES} (the last, clean run)"));
    stop.cancel();
    producer.await.expect("producer task");

    // One last, clean run catches up and stops on SIGTERM.
    let child = spawn(&env, &log.0);
    common::wait_until_caught_up(&config, 2, Duration::from_secs(120)).await;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "SIGTERM could not be sent");
    let exit = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await;
    assert!(matches!(exit, Ok(Ok(s)) if s.success()), "the consumer did not exit cleanly on SIGTERM: {exit:?}");

    // Where the kills landed: a run that begins by writing the last batch's objects again
    // follows a kill between an entry and its objects.
    let text = std::fs::read_to_string(&log.0).unwrap_or_default();
    let runs: Vec<&str> = text.split(RUN_MARK).skip(1).collect();
    let repaired = runs.iter().skip(1).filter(|run| run.contains(REWRITING)).count();
    let phases = format!(
        "{CYCLES} kills ({targeted} sent on the entry-written line): {repaired} left an entry without \
         its objects, which the next run wrote; {} came before an entry or after its objects",
        CYCLES - repaired
    );
    println!("{phases}");
    assert!(repaired >= 1, "no kill landed between a ledger entry and its objects: {phases}");

    let report = common::audit(&config).await;
    assert!(report.clean(), "audit after {CYCLES} kill -9 cycles ({phases}):\n{}", report.render());
    let produced = produced.lock().map(|p| p.clone()).unwrap_or_default();
    let expected: Vec<serde_json::Value> =
        produced.iter().filter(|g| g.event_type == EventType::Sale && !g.is_bad()).map(|g| g.value.clone()).collect();
    let bad_sales = produced.iter().filter(|g| g.event_type == EventType::Sale && g.is_bad()).count();
    assert!(expected.len() > 100, "too few events were produced to mean anything: {}", expected.len());
    assert_eq!(common::request_ids(&common::stored(&config).await), common::request_ids(&expected));
    assert_eq!(common::dead_letters(&config).await.len(), bad_sales);
}
