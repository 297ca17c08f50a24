//! The continuous generator (`GENERATOR_RATE` events per second, 0 = off): realistic
//! events with a share of bad ones, like the original Lambda, for demos and load. Bad
//! events go to the topic on purpose: the consumers must show that they handle them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::{IntCounterVec, Opts, Registry};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use service_runtime::kafka::{KafkaCluster, within};
use store_event::{CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, GeneratedEvent, Generator};
use tokio_util::sync::CancellationToken;

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

/// The record a generated event is written as; bad events carry the type header too.
pub fn to_record(generated: &GeneratedEvent) -> Record {
    match &generated.event {
        Some(event) => event.to_record(),
        None => Record {
            key: None,
            value: Some(generated.value.to_string().into_bytes()),
            headers: BTreeMap::from([
                (EVENT_TYPE_HEADER.to_owned(), generated.event_type.as_str().as_bytes().to_vec()),
                (CONTENT_TYPE_HEADER.to_owned(), b"application/json".to_vec()),
            ]),
            timestamp: Utc::now(),
        },
    }
}

/// Produces `rate` events per second until `shutdown`, in ticks of 100 ms.
pub async fn run(
    cluster: Arc<KafkaCluster>,
    topic: String,
    rate: u32,
    bad_share: f64,
    registry: &Registry,
    shutdown: CancellationToken,
) {
    let produced = IntCounterVec::new(
        Opts::new("producer_generated_events_total", "Generated events acknowledged by Kafka, by type and quality."),
        &["event_type", "quality"],
    )
    .unwrap_or_else(|_| unreachable!("valid options"));
    service_runtime::metrics::register(registry, &produced);
    if rate == 0 {
        return;
    }
    tracing::info!(rate, bad_share, "Generator on.");
    let mut generator = Generator::new(None, bad_share);
    let mut clients: Vec<PartitionClient> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut owed = 0.0_f64;
    let mut round_robin = 0usize;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if clients.is_empty() {
            match open(&cluster, &topic).await {
                Ok(opened) => clients = opened,
                Err(error) => {
                    tracing::warn!(%error, "The generator cannot reach the topic; retrying.");
                    continue;
                }
            }
        }
        owed += f64::from(rate) / 10.0;
        let count = owed.floor() as usize;
        owed -= count as f64;
        let mut by_partition: BTreeMap<usize, Vec<(Record, GeneratedEvent)>> = BTreeMap::new();
        for _ in 0..count {
            let generated = generator.next_event(Utc::now());
            let record = to_record(&generated);
            let partition = match &record.key {
                Some(key) => partition_for(key, clients.len()),
                None => {
                    round_robin = round_robin.wrapping_add(1);
                    round_robin % clients.len()
                }
            };
            by_partition.entry(partition).or_default().push((record, generated));
        }
        for (partition, batch) in by_partition {
            let (records, events): (Vec<Record>, Vec<GeneratedEvent>) = batch.into_iter().unzip();
            let timeout = cluster.settings().request_timeout;
            let acked =
                within(timeout, "producing", clients[partition].produce(records, Compression::NoCompression)).await;
            match acked {
                Ok(_) => {
                    for event in events {
                        let quality = if event.is_bad() { "bad" } else { "good" };
                        produced.with_label_values(&[event.event_type.as_str(), quality]).inc();
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Generated events were not acknowledged; they are not counted.");
                    clients.clear();
                    cluster.reset().await;
                    break;
                }
            }
        }
    }
}

async fn open(cluster: &KafkaCluster, topic: &str) -> Result<Vec<PartitionClient>, String> {
    let partitions =
        cluster.partitions(topic).await.map_err(|e| e.to_string())?.ok_or("the topic does not exist yet")?;
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let opened = client.partition_client(topic, partition, UnknownTopicHandling::Retry);
        let opened = within(cluster.settings().request_timeout, "opening a partition", opened).await;
        clients.push(opened.map_err(|e| e.to_string())?);
    }
    Ok(clients)
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
