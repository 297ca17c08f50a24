//! The sales-consumer binary as Kubernetes runs it: spawned with an environment, its log
//! kept in a file (printed when the test fails), stopped with SIGTERM or killed with -9;
//! a producer that keeps events arriving meanwhile; and the end-of-test proof that S3
//! holds every sale event once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rskafka::client::partition::Compression;
use store_consumer::ConsumerConfig;
use store_event::{EventType, GeneratedEvent, Generator};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common;

/// The environment of a consumer process reading `topic` into `prefix` on the local stack.
pub fn env(topic: &str, prefix: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        testkit::local_s3_env(prefix).into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let pairs = [
        ("STORE_EVENTS_TOPIC", topic),
        ("KAFKA_BOOTSTRAP_SERVERS", testkit::kafka_address()),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "text"),
    ];
    env.extend(pairs.iter().chain(extra).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// The processes [`spawn`] started, by the log they write: a failing test's
/// [`LogOnFailure`] kills those of its own logs, so none outlives it (the tests of one
/// binary run side by side; the others' processes are left alone).
static SPAWNED: Mutex<Vec<(PathBuf, u32)>> = Mutex::new(Vec::new());

/// Starts the consumer binary; its output goes to `log` (appended).
pub fn spawn(env: &[(String, String)], log: &Path) -> Child {
    let child = start(env, log);
    SPAWNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((log.to_path_buf(), child.id()));
    child
}

fn start(env: &[(String, String)], log: &Path) -> Child {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let stderr = file.try_clone().expect("cannot share the log file");
    Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .expect("the sales-consumer binary did not start")
}

/// SIGTERM, then waits for the exit (at most a minute).
pub async fn terminate(child: Child) -> ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "SIGTERM could not be sent");
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait()
        }),
    )
    .await;
    match waited {
        Ok(Ok(Ok(status))) => status,
        other => panic!("the consumer did not exit within a minute of SIGTERM: {other:?}"),
    }
}

/// Prints the logs of the test's processes when it panics, so a CI failure shows why.
#[derive(Default)]
pub struct LogOnFailure(Vec<PathBuf>);

impl LogOnFailure {
    /// A new, empty log file `<name>.log` in Cargo's temporary folder, printed on failure.
    pub fn add(&mut self, name: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
        let _ = std::fs::remove_file(&path);
        self.0.push(path.clone());
        path
    }
}

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let spawned = SPAWNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let binary = Path::new(env!("CARGO_BIN_EXE_sales-consumer"));
            for (_, pid) in spawned.iter().filter(|(log, _)| self.0.contains(log)) {
                // Only a process that still runs our binary: the pid may be another's by now.
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                if exe == binary {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                    eprintln!("--- killed consumer process {pid}, left running by the failed test ---");
                }
            }
            for path in &self.0 {
                let log = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(150)..];
                eprintln!("--- last {} lines of {} ---\n{}", tail.len(), path.display(), tail.join("\n"));
            }
        }
    }
}

/// Events (10 % of them bad) produced in rounds of 20 to the partitions in turn, every
/// `pause`, until stopped or `rounds` rounds were sent.
pub struct Producing {
    stop: CancellationToken,
    task: JoinHandle<()>,
    produced: Arc<Mutex<Vec<GeneratedEvent>>>,
}

impl Producing {
    pub fn start(topic: &str, partitions: i32, rounds: usize, pause: Duration, seed: u64) -> Producing {
        let stop = CancellationToken::new();
        let produced = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (topic, produced, stop) = (topic.to_owned(), Arc::clone(&produced), stop.clone());
            tokio::spawn(async move {
                let mut generator = Generator::new(Some(seed), 0.1);
                let mut round = 0;
                while !stop.is_cancelled() && round < rounds {
                    let batch: Vec<_> = (0..20).map(|_| generator.next_event(Utc::now())).collect();
                    let records = batch
                        .iter()
                        .map(|g| match &g.event {
                            Some(event) => event.to_record(),
                            None => testkit::record(Some(g.value.to_string().as_bytes()), &[]),
                        })
                        .collect();
                    let partition = i32::try_from(round).unwrap_or(0) % partitions;
                    testkit::produce(&topic, partition, records, Compression::NoCompression).await;
                    if let Ok(mut produced) = produced.lock() {
                        produced.extend(batch);
                    }
                    round += 1;
                    tokio::time::sleep(pause).await;
                }
            })
        };
        Producing { stop, task, produced }
    }

    /// How many events were produced so far.
    pub fn count(&self) -> usize {
        self.produced.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Stops producing; every event produced.
    pub async fn finish(self) -> Vec<GeneratedEvent> {
        self.stop.cancel();
        self.task.await.expect("producer task");
        self.produced.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// The proof: the audit is clean, S3 holds each good sale event of `produced` exactly
/// once, and each bad sale event as one dead letter.
pub async fn assert_exactly_once(config: &ConsumerConfig, produced: &[GeneratedEvent], context: &str) {
    let report = common::audit(config).await;
    assert!(report.clean(), "audit ({context}):\n{}", report.render());
    let expected: Vec<serde_json::Value> =
        produced.iter().filter(|g| g.event_type == EventType::Sale && !g.is_bad()).map(|g| g.value.clone()).collect();
    let bad_sales = produced.iter().filter(|g| g.event_type == EventType::Sale && g.is_bad()).count();
    assert!(expected.len() > 100, "too few events were produced to mean anything: {}", expected.len());
    assert_eq!(
        common::request_ids(&common::stored(config).await),
        common::request_ids(&expected),
        "stored sale events ({context})"
    );
    if config.formats.parquet {
        assert_eq!(
            common::as_events(&common::stored_parquet(config).await),
            common::as_events(&expected),
            "stored sale events in Parquet ({context})"
        );
    }
    if config.formats.iceberg {
        let report = common::audit_with_table(config).await;
        assert!(report.clean(), "audit with the Iceberg table ({context}):\n{}", report.render());
        let table = report.table.as_ref().expect("a table report");
        assert_eq!(table.waiting_entries, 0, "entries left out of the table ({context}):\n{}", report.render());
        assert_eq!(
            common::as_events(&common::table_rows(config).await),
            common::as_events(&expected),
            "the Iceberg table's rows ({context})"
        );
    }
    assert_eq!(common::dead_letters(config).await.len(), bad_sales, "dead letters ({context})");
}
