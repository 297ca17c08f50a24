//! store-events patch 9: idempotent writes (KIP-98, without transactions), as the Java
//! client has by default since Kafka 3.0.
//!
//! A producer id and epoch come from `InitProducerId` (any broker answers it when there
//! is no transactional id). Each partition numbers its batches from 0 under that id
//! (`base_sequence`), one request in flight at a time, and a retry of a batch (after a
//! lost response, a timeout, a moved leader) sends the same bytes with the same sequence:
//! the broker, which keeps the last five batches of each producer per partition, answers
//! a copy with the first write's offsets instead of writing it twice.
//!
//! When the outcome of a batch is unknown (every retry failed), the next batch cannot
//! know which sequence the broker expects, so the producer id is dropped and a new one
//! asked for: the failed batch stays written at most once. A batch the broker refused
//! outright because of its sequence or producer id (`OUT_OF_ORDER_SEQUENCE_NUMBER`,
//! `UNKNOWN_PRODUCER_ID` after the producer's state expired, `INVALID_PRODUCER_EPOCH`)
//! was not written: it is sent once more under a new producer id.
//! `DUPLICATE_SEQUENCE_NUMBER` means the batch was written before but its offsets are
//! unknown: it is an error, and the batch is not sent again.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::{
    client::{
        Error, Result,
        error::{ProtocolError, RequestContext},
    },
    connection::{BrokerCache, BrokerConnector},
    protocol::{
        messages::InitProducerIdRequest,
        primitives::{Int32, NullableString},
    },
};

/// A producer id and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The producer id.
    pub id: i64,
    /// The epoch.
    pub epoch: i16,
}

/// The producer id an idempotent producer's partitions share.
#[derive(Debug)]
pub struct IdempotentProducer {
    brokers: Arc<BrokerConnector>,
    current: Mutex<Option<ProducerIdentity>>,
}

impl IdempotentProducer {
    pub(super) fn new(brokers: Arc<BrokerConnector>) -> Self {
        Self {
            brokers,
            current: Mutex::new(None),
        }
    }

    /// The current producer id, asked for when there is none. A broker that is still
    /// loading its producer id state (`COORDINATOR_LOAD_IN_PROGRESS` just after it
    /// starts, or `COORDINATOR_NOT_AVAILABLE`, `NOT_COORDINATOR`) is asked again, with
    /// waits from 50 ms doubling to 1 s, for up to 30 s.
    pub async fn identity(&self) -> Result<ProducerIdentity> {
        let mut current = self.current.lock().await;
        if let Some(identity) = *current {
            return Ok(identity);
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut wait = std::time::Duration::from_millis(50);
        let identity = loop {
            match self.init_producer_id().await {
                Err(Error::ServerError {
                    protocol_error:
                        ProtocolError::CoordinatorLoadInProgress
                        | ProtocolError::CoordinatorNotAvailable
                        | ProtocolError::NotCoordinator,
                    ..
                }) if tokio::time::Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(1));
                }
                outcome => break outcome?,
            }
        };
        *current = Some(identity);
        Ok(identity)
    }

    async fn init_producer_id(&self) -> Result<ProducerIdentity> {
        let request = InitProducerIdRequest {
            transactional_id: NullableString(None),
            transaction_timeout_ms: Int32(60_000),
        };
        let (broker, generation) = (&*self.brokers).get().await?;
        let response = match broker.request(&request).await {
            Ok(response) => response,
            Err(e) => {
                (&*self.brokers)
                    .invalidate("idempotent producer: connection broken", generation)
                    .await;
                return Err(e.into());
            }
        };
        if let Some(error) = response.error {
            return Err(Error::ServerError {
                protocol_error: error,
                error_message: None,
                request: RequestContext::ProducerId,
                response: None,
                is_virtual: false,
            });
        }
        Ok(ProducerIdentity {
            id: response.producer_id.0,
            epoch: response.producer_epoch.0,
        })
    }

    /// Drops `stale` (if it is still the current id), so that the next batch asks anew.
    pub async fn reset(&self, stale: ProducerIdentity) {
        let mut current = self.current.lock().await;
        if *current == Some(stale) {
            *current = None;
        }
    }
}

/// One partition's place in the sequence of the current producer id.
#[derive(Debug, Default)]
pub(crate) struct Sequence {
    /// The producer id the numbers belong to.
    pub(crate) identity: Option<ProducerIdentity>,
    /// The base sequence of the next batch.
    pub(crate) next: i32,
}

/// What a partition client needs to write idempotently.
#[derive(Debug)]
pub(crate) struct PartitionIdempotence {
    pub(crate) producer: Arc<IdempotentProducer>,
    /// Held for the whole of a batch's send and retries: one batch in flight.
    pub(crate) sequence: Mutex<Sequence>,
}

/// The base sequence after a batch of `records` records at `sequence` (wrapping at
/// `i32::MAX`, as Kafka does).
pub(crate) fn next_sequence(sequence: i32, records: usize) -> i32 {
    let next = i64::from(sequence) + records as i64;
    (next % (i64::from(i32::MAX) + 1)) as i32
}

/// A refusal that says the batch was not written because of its producer id or sequence:
/// it can be sent again under a new producer id.
pub(crate) fn refused_for_its_sequence(error: &Error) -> bool {
    matches!(
        error,
        Error::ServerError {
            protocol_error: ProtocolError::OutOfOrderSequenceNumber
                | ProtocolError::UnknownProducerId
                | ProtocolError::InvalidProducerEpoch,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{
        client::{
            ClientBuilder, fake_broker,
            partition::{Compression, PartitionClient, UnknownTopicHandling},
        },
        record::Record,
    };

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: None,
                value: Some(format!("r{i}").into_bytes()),
                headers: Default::default(),
                timestamp: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
            })
            .collect()
    }

    async fn idempotent_client(
        produce: fake_broker::ProduceScript,
    ) -> (fake_broker::FakeCluster, PartitionClient) {
        let cluster = fake_broker::start_with_produce(1, "t", Arc::new(|_, _| 0), produce).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let producer = client.idempotent_producer();
        let partition = client
            .partition_client("t", 0, UnknownTopicHandling::Error)
            .await
            .unwrap()
            .with_idempotence(producer);
        (cluster, partition)
    }

    /// The broker is still loading its producer ids at first (it just started): the id
    /// is asked for again. The response to the first batch is lost (the broker stored
    /// it, then the connection dropped): rskafka sends it again with the same producer id
    /// and sequence, and the broker answers with the first write's offsets; the next
    /// batch goes on from there.
    #[tokio::test]
    async fn a_retry_after_a_lost_response_carries_the_same_sequence_and_is_stored_once() {
        let (cluster, partition) = idempotent_client(fake_broker::ProduceScript {
            drop_response: Arc::new(|nth| nth == 0),
            error: Arc::new(|_| 0),
            init_error: Arc::new(|nth| if nth == 0 { 14 } else { 0 }), // COORDINATOR_LOAD_IN_PROGRESS
        })
        .await;
        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(
            within,
            partition.produce(records(3), Compression::NoCompression),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(first, [0, 1, 2]);
        let second = tokio::time::timeout(
            within,
            partition.produce(records(2), Compression::NoCompression),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(second, [3, 4]);

        let log = cluster.log.lock().unwrap();
        assert_eq!(
            log.received,
            [(1002, 0, 0, 3), (1002, 0, 0, 3), (1002, 0, 3, 2)]
        );
        assert_eq!(log.stored, [((1002, 0, 0, 3), 0), ((1002, 0, 3, 2), 3)]);
    }

    /// A batch refused for its sequence (the broker lost the producer's state) was not
    /// stored: it goes once more under a new producer id, from sequence 0.
    #[tokio::test]
    async fn a_batch_refused_for_its_sequence_is_sent_again_under_a_new_producer_id() {
        let (cluster, partition) = idempotent_client(fake_broker::ProduceScript {
            drop_response: Arc::new(|_| false),
            error: Arc::new(|nth| if nth == 1 { 59 } else { 0 }), // UNKNOWN_PRODUCER_ID
            init_error: Arc::new(|_| 0),
        })
        .await;
        let within = Duration::from_secs(10);
        for expected in [[0i64, 1], [2, 3]] {
            let offsets = tokio::time::timeout(
                within,
                partition.produce(records(2), Compression::NoCompression),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(offsets, expected);
        }
        let log = cluster.log.lock().unwrap();
        assert_eq!(
            log.received,
            [(1001, 0, 0, 2), (1001, 0, 2, 2), (1002, 0, 0, 2)]
        );
        assert_eq!(log.stored.len(), 2);
        assert_eq!(log.producer_ids, 2);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
    }
}
