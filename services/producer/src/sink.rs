//! The way into Kafka for every path of the producer (HTTP, simulate, generator): one
//! rskafka `BatchProducer` per partition, which batches records with a linger and sends
//! them compressed with acks=all, idempotently unless `PRODUCER_IDEMPOTENCE=false` (a
//! batch sent again is stored once), and a bound on records waiting for an acknowledgement,
//! so that an overloaded producer answers 503 instead of queueing without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::producer::aggregator::RecordAggregator;
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder};
use rskafka::record::Record;
use service_runtime::kafka::{KafkaCluster, within};
use tokio::sync::{RwLock, Semaphore};

use crate::config::SinkSettings;
use crate::metrics::Metrics;

/// Where one record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The partition.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// Why nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// More records in one send than may ever wait for Kafka at once: waiting for room
    /// would wait forever, so the send is refused at once.
    #[error(
        "{records} events in one request, but at most {limit} may wait for Kafka at once \
         (PRODUCER_MAX_PENDING): send them in smaller requests"
    )]
    TooLarge {
        /// Records in the send.
        records: usize,
        /// `PRODUCER_MAX_PENDING`.
        limit: usize,
    },
    /// Too many records already wait for Kafka.
    #[error("the producer is overloaded: {0} records are waiting for Kafka; retry later")]
    Overloaded(usize),
    /// Kafka cannot be reached, or the topic does not exist.
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
}

type Producer = BatchProducer<RecordAggregator>;

/// The shared writer to the topic.
pub struct Sink {
    cluster: Arc<KafkaCluster>,
    topic: String,
    settings: SinkSettings,
    producers: RwLock<Vec<Arc<Producer>>>,
    pending: Arc<Semaphore>,
    round_robin: AtomicUsize,
    metrics: Metrics,
}

impl Sink {
    /// A sink for `topic`; nothing connects until the first send.
    pub fn new(cluster: Arc<KafkaCluster>, topic: &str, settings: SinkSettings, metrics: Metrics) -> Sink {
        Sink {
            cluster,
            topic: topic.to_owned(),
            pending: Arc::new(Semaphore::new(settings.max_pending)),
            settings,
            producers: RwLock::new(Vec::new()),
            round_robin: AtomicUsize::new(0),
            metrics,
        }
    }

    async fn producers(&self) -> Result<Vec<Arc<Producer>>, SendError> {
        {
            let producers = self.producers.read().await;
            if !producers.is_empty() {
                return Ok(producers.clone());
            }
        }
        let mut producers = self.producers.write().await;
        if !producers.is_empty() {
            return Ok(producers.clone());
        }
        let unavailable = |e: String| SendError::Unavailable(e);
        let partitions = self
            .cluster
            .partitions(&self.topic)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable(format!("topic {} does not exist", self.topic)))?;
        let client = self.cluster.client().await.map_err(|e| unavailable(e.to_string()))?;
        let timeout = self.cluster.settings().request_timeout;
        // One producer id for every partition; a new one after each reset.
        let idempotent = self.settings.idempotence.then(|| client.idempotent_producer());
        let mut opened = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let partition_client = within(
                timeout,
                "opening a partition",
                client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry),
            )
            .await
            .map_err(|e| unavailable(e.to_string()))?;
            let partition_client = match &idempotent {
                Some(producer) => partition_client.with_idempotence(Arc::clone(producer)),
                None => partition_client,
            };
            let producer = BatchProducerBuilder::new(Arc::new(partition_client))
                .with_linger(self.settings.linger)
                .with_compression(self.settings.compression)
                .build(RecordAggregator::new(self.settings.batch_bytes));
            opened.push(Arc::new(producer));
        }
        *producers = opened;
        Ok(producers.clone())
    }

    /// Forgets the producers so that the next send reconnects (after a Kafka failure).
    async fn reset(&self) {
        self.producers.write().await.clear();
        self.cluster.reset().await;
    }

    /// The most records one send may hold (`PRODUCER_MAX_PENDING`): callers that make
    /// their own records send them in pieces of at most this many.
    pub fn capacity(&self) -> usize {
        self.settings.max_pending
    }

    /// Sends `records` and waits for Kafka's acknowledgement of each. With `wait`, blocks
    /// for room when overloaded instead of failing; a send larger than [`Sink::capacity`]
    /// would never find room and fails at once with [`SendError::TooLarge`]. The result
    /// has one entry per record, in order: an acknowledgement, or why there is none.
    pub async fn send(&self, records: Vec<Record>, wait: bool) -> Result<Vec<Result<Ack, NotAcknowledged>>, SendError> {
        if records.len() > self.settings.max_pending {
            return Err(SendError::TooLarge { records: records.len(), limit: self.settings.max_pending });
        }
        let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let permits = if wait {
            Arc::clone(&self.pending).acquire_many_owned(count).await.map_err(|_| SendError::Overloaded(0))?
        } else {
            Arc::clone(&self.pending)
                .try_acquire_many_owned(count)
                .map_err(|_| SendError::Overloaded(self.settings.max_pending - self.pending.available_permits()))?
        };
        let producers = match self.producers().await {
            Ok(producers) => producers,
            Err(e) => {
                self.metrics.kafka_errors.inc();
                return Err(e);
            }
        };
        let started = Instant::now();
        let sends = records.into_iter().map(|record| {
            let index = match &record.key {
                Some(key) => partition_for(key, producers.len()),
                None => self.round_robin.fetch_add(1, Ordering::Relaxed) % producers.len(),
            };
            let producer = Arc::clone(&producers[index]);
            let timeout = self.settings.timeout;
            async move {
                match tokio::time::timeout(timeout, producer.produce(record)).await {
                    Ok(Ok(offset)) => Ok(Ack { partition: index as i32, offset }),
                    Ok(Err(e)) => Err(NotAcknowledged::Failed(e)),
                    Err(_) => Err(NotAcknowledged::TimedOut(timeout)),
                }
            }
        });
        let results = join_all(sends).await;
        drop(permits);
        let latency = started.elapsed().as_secs_f64();
        for result in &results {
            if result.is_ok() {
                self.metrics.produce_latency.observe(latency);
            }
        }
        if results.iter().any(Result::is_err) {
            self.metrics.kafka_errors.inc();
            self.reset().await;
        }
        Ok(results)
    }

    /// Waits until every record handed to the sink is acknowledged or failed (shutdown).
    pub async fn drain(&self, limit: Duration) {
        let all = u32::try_from(self.settings.max_pending).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.pending.acquire_many(all)).await;
    }
}

/// Why one record of a send has no acknowledgement: it may or may not be on the topic.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotAcknowledged {
    /// The broker refused the batch, or the connection failed.
    #[error("not acknowledged by Kafka: {refused}{0}", refused = refused(.0))]
    Failed(rskafka::client::producer::Error),
    /// No answer within `PRODUCER_TIMEOUT`.
    #[error("not acknowledged by Kafka within {0:?}")]
    TimedOut(Duration),
}

/// A refused batch's failure in plain words (an ACL or IAM permission it lacks), or nothing.
fn refused(error: &rskafka::client::producer::Error) -> String {
    match error {
        rskafka::client::producer::Error::Client(client) => service_runtime::kafka::plain_words("producing", client),
        _ => String::new(),
    }
}

/// Kafka's default partitioner (murmur2 of the key), so that a store's events land on
/// the same partition whichever client (Java or this one) produced them.
pub fn partition_for(key: &[u8], partitions: usize) -> usize {
    (murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// `none|gzip|lz4|snappy|zstd` as rskafka's compression.
pub fn parse_compression(name: &str) -> Result<Compression, String> {
    match name {
        "none" => Ok(Compression::NoCompression),
        "gzip" => Ok(Compression::Gzip),
        "lz4" => Ok(Compression::Lz4),
        "snappy" => Ok(Compression::Snappy),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!("{other:?} is not a compression: use none, gzip, lz4, snappy or zstd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_java_partitioner() {
        // Values from Kafka's own UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 3] =
            [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536)];
        for (key, expected) in cases {
            assert_eq!(murmur2(key) as i32, expected, "key {:?}", String::from_utf8_lossy(key));
        }
    }
}
