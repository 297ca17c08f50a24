//! An in-memory [`Store`] with failures on demand, for the protocol's unit tests: a
//! request that fails, an answer lost after the write happened, a process killed between
//! two writes, a body that breaks off. The real-S3 tests cover the same code against a
//! real server; these reach the branches a real server rarely shows.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use prometheus::Registry;
use rskafka::record::{Record, RecordAndOffset};
use service_runtime::config::Env;
use service_runtime::s3::S3Settings;
use store_event::{EventType, Generator};
use tokio_util::sync::CancellationToken;

use super::Entry;
use super::store::{GetError, Object, PutError, Store, StoreError};
use super::writer::{CommitError, LedgerWriter, WriterSettings};
use crate::batch::{Batch, Sealed};
use crate::config::Formats;
use crate::health::Health;
use crate::layout::Layout;
use crate::metrics::Metrics;

/// Objects in a map, and the failures to inject.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    /// Keys written, in order (every successful PUT, conditional or not).
    puts: Vec<String>,
    /// The next PUTs of keys containing the pattern fail without writing, `n` times.
    failing_puts: Vec<(String, usize)>,
    /// The next PUT of a key containing the pattern writes, then answers with a failure.
    lost_answers: Vec<String>,
    /// After this many more PUTs, every request hangs: the process was killed.
    crash_after: Option<usize>,
    /// GETs of keys containing the pattern answer with a broken body.
    broken_bodies: Vec<String>,
    /// Every request fails.
    unreachable: bool,
}

fn failure(operation: &'static str, key: &str) -> StoreError {
    StoreError::new(operation, key, "injected failure")
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// The next `times` PUTs of keys containing `pattern` fail.
    pub fn fail_puts(&self, pattern: &str, times: usize) {
        self.with(|s| s.failing_puts.push((pattern.to_owned(), times)));
    }

    /// The next PUT of a key containing `pattern` is written but answered with a failure.
    pub fn lose_answer(&self, pattern: &str) {
        self.with(|s| s.lost_answers.push(pattern.to_owned()));
    }

    /// After `puts` more successful PUTs, nothing answers any more.
    pub fn crash_after(&self, puts: usize) {
        self.with(|s| s.crash_after = Some(puts));
    }

    /// GETs of keys containing `pattern` break off.
    pub fn break_bodies(&self, pattern: &str) {
        self.with(|s| s.broken_bodies.push(pattern.to_owned()));
    }

    /// Every request fails (or succeeds again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.with(|s| s.unreachable = unreachable);
    }

    /// Writes an object directly, as another writer would.
    pub fn insert(&self, key: &str, body: &[u8], metadata: HashMap<String, String>) {
        let object = Object { body: body.to_vec().into(), content_type: "application/octet-stream", metadata };
        self.with(|s| s.objects.insert(key.to_owned(), object));
    }

    /// Deletes an object.
    pub fn remove(&self, key: &str) {
        self.with(|s| s.objects.remove(key));
    }

    /// The object at `key`.
    pub fn object(&self, key: &str) -> Option<Object> {
        self.with(|s| s.objects.get(key).cloned())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.with(|s| s.objects.keys().cloned().collect())
    }

    /// The keys written so far, in the order they were written.
    pub fn puts(&self) -> Vec<String> {
        self.with(|s| s.puts.clone())
    }

    /// A new process: requests are answered again after [`MemoryStore::crash_after`].
    pub fn restart(&self) {
        self.with(|s| s.crash_after = None);
    }

    fn crashed(&self) -> bool {
        self.with(|s| s.crash_after == Some(0))
    }
}

impl Store for MemoryStore {
    fn put<'a>(&'a self, key: &'a str, object: &'a Object, if_absent: bool) -> BoxFuture<'a, Result<(), PutError>> {
        if self.crashed() {
            return Box::pin(futures::future::pending());
        }
        let outcome = self.with(|s| {
            if s.unreachable {
                return Err(PutError::Failed(failure("PUT", key)));
            }
            if let Some((_, times)) = s.failing_puts.iter_mut().find(|(p, n)| *n > 0 && key.contains(p.as_str())) {
                *times -= 1;
                return Err(PutError::Failed(failure("PUT", key)));
            }
            if if_absent && s.objects.contains_key(key) {
                return Err(PutError::Exists);
            }
            s.objects.insert(key.to_owned(), object.clone());
            s.puts.push(key.to_owned());
            if let Some(left) = s.crash_after.as_mut() {
                *left = left.saturating_sub(1);
            }
            if let Some(i) = s.lost_answers.iter().position(|p| key.contains(p.as_str())) {
                s.lost_answers.remove(i);
                return Err(PutError::Failed(StoreError::new("PUT", key, "the answer was lost")));
            }
            Ok(())
        });
        Box::pin(async move { outcome })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<HashMap<String, String>>, StoreError>> {
        let crashed = self.crashed();
        let outcome = self.with(|s| {
            if s.unreachable {
                return Err(failure("HEAD", key));
            }
            Ok(s.objects.get(key).map(|o| o.metadata.clone()))
        });
        Box::pin(async move { if crashed { futures::future::pending().await } else { outcome } })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GetError>> {
        let crashed = self.crashed();
        let outcome = self.with(|s| {
            if s.unreachable {
                return Err(GetError::Request(failure("GET", key)));
            }
            if s.broken_bodies.iter().any(|p| key.contains(p.as_str())) && s.objects.contains_key(key) {
                return Err(GetError::Body(StoreError::new("GET", key, "the body broke off")));
            }
            Ok(s.objects.get(key).map(|o| o.body.to_vec()))
        });
        Box::pin(async move { if crashed { futures::future::pending().await } else { outcome } })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let crashed = self.crashed();
        let outcome = self.with(|s| {
            if s.unreachable {
                return Err(failure("LIST", prefix));
            }
            Ok(s.objects
                .keys()
                .filter(|k| k.starts_with(prefix) && start_after.is_none_or(|after| k.as_str() > after))
                .cloned()
                .collect())
        });
        Box::pin(async move { if crashed { futures::future::pending().await } else { outcome } })
    }
}

/// A ledger on a [`MemoryStore`], with writers and batches to commit.
pub struct Fixture {
    /// The store.
    pub store: Arc<MemoryStore>,
    /// Key names (no prefix, `sales-consumer`, topic `t`).
    pub layout: Layout,
    /// Readiness states written by the writers.
    pub health: Arc<Health>,
    /// What the writers count.
    pub registry: Registry,
    /// The formats batches are sealed in (JSON unless a test says otherwise).
    pub formats: Formats,
    metrics: Metrics,
}

/// The partition every fixture writes.
pub const PARTITION: i32 = 0;

impl Fixture {
    /// An empty ledger.
    pub fn new() -> Fixture {
        let settings = S3Settings::from_env(&Env::from_pairs([("S3_BUCKET", "test")])).unwrap();
        let registry = Registry::new();
        Fixture {
            store: Arc::new(MemoryStore::default()),
            layout: Layout::new(&settings, "sales-consumer", EventType::Sale, "t"),
            health: Arc::new(Health::default()),
            metrics: Metrics::new(&registry),
            registry,
            formats: Formats::JSON,
        }
    }

    /// A writer signing as `identity`, conditional writes on, retrying until `shutdown`.
    pub fn writer(&self, identity: &str, shutdown: &CancellationToken) -> LedgerWriter {
        let settings = WriterSettings { conditional: true, checkpoint_interval: Duration::ZERO };
        LedgerWriter::new(
            Arc::clone(&self.store) as Arc<dyn Store>,
            self.layout.clone(),
            "t",
            PARTITION,
            identity,
            settings,
            self.metrics.clone(),
            Arc::clone(&self.health),
            shutdown.clone(),
        )
    }

    /// The batch of offsets `first..first + records`: generated events (seeded by `first`,
    /// one in five bad), dated 2026-11-24, so the same offsets always give the same bytes.
    pub fn sealed(&self, first: i64, records: i64) -> Sealed {
        let mut generator = Generator::new(Some(first.unsigned_abs()), 0.2);
        let timestamp = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let mut batch = Batch::new(first, self.formats);
        for offset in first..first + records {
            let value = generator.next_event(timestamp).value.to_string().into_bytes();
            let record = Record { key: None, value: Some(value), headers: Default::default(), timestamp };
            batch.push(
                EventType::Sale,
                "t",
                PARTITION,
                &RecordAndOffset { record, offset },
                &mut crate::dedup::KeepAll,
            );
        }
        batch.seal(false, "t", PARTITION)
    }

    /// `writer` commits the batch of offsets `first..first + records`; its entry.
    pub async fn commit(
        &self,
        writer: &mut LedgerWriter,
        first: i64,
        records: i64,
    ) -> (Entry, Result<(), CommitError>) {
        let mut sealed = self.sealed(first, records);
        let entry = writer.entry(&sealed);
        let result = writer.commit(&entry, sealed.take_bodies()).await;
        (entry, result)
    }

    /// The value of counter or histogram-count `name` with `labels`, from the registry.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus::proto::MetricType;
        let family = self.registry.gather().into_iter().find(|f| f.name() == name);
        let Some(family) = family else { return 0.0 };
        family
            .get_metric()
            .iter()
            .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
            .map(|m| match family.get_field_type() {
                MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
                MetricType::GAUGE => m.get_gauge().value(),
                _ => m.get_counter().value(),
            })
            .sum()
    }
}
