use crate::{
    backoff::{Backoff, BackoffConfig, ErrorOrThrottle},
    client::error::{Error, RequestContext, Result},
    connection::{
        BrokerCache, BrokerCacheGeneration, BrokerConnection, BrokerConnector, MessengerTransport,
        MetadataLookupMode,
    },
    messenger::RequestError,
    protocol::{
        error::Error as ProtocolError,
        messages::{
            DeleteRecordsRequest, DeleteRecordsResponse, DeleteRequestPartition,
            DeleteRequestTopic, DeleteResponsePartition, FetchRequest, FetchRequestPartition,
            FetchRequestTopic, FetchResponse, FetchResponsePartition, IsolationLevel,
            ListOffsetsRequest, ListOffsetsRequestPartition, ListOffsetsRequestTopic,
            ListOffsetsResponse, ListOffsetsResponsePartition, NORMAL_CONSUMER, ProduceRequest,
            ProduceRequestPartitionData, ProduceRequestTopicData, ProduceResponse,
        },
        primitives::*,
        record::{Record as ProtocolRecord, *},
    },
    record::{Record, RecordAndOffset},
    throttle::maybe_throttle,
    validation::ExactlyOne,
};
use chrono::{DateTime, LocalResult, TimeZone, Utc};
use std::{
    ops::{ControlFlow, Deref, Range},
    sync::Arc,
};
use tokio::sync::Mutex;
use tracing::{debug, error, info, warn};

use super::{error::ServerErrorResponse, metadata_cache::MetadataCacheGeneration};
// store-events patch 9.
use super::idempotence::{
    IdempotentProducer, PartitionIdempotence, ProducerIdentity, Sequence, next_sequence,
    refused_for_its_sequence,
};

/// How strongly a [`PartitionClient`] is bound to a partition.
///
/// Under some circumstances and broker implementations, you might face a [`ProtocolError::UnknownTopicOrPartition`]
/// for nearly all operations directly after topic/partition creation. Since the Kafka protocol offers no (at least
/// to our knowledge) way to differentiate between "a topic/partition actually does not exist" and "our multiverse
/// split brain is not synced up yet", we can only offer you a manual way to wait for topic existence.
///
/// We offer the following ways to deal with this:
///
/// - Use a [`Error`](Self::Error). All other methods (including the creation of a [`PartitionClient`]) may produce
///   sporadic [`ProtocolError::UnknownTopicOrPartition`] errors.
/// - Use a [`Retry`](Self::Error) which assumes a partition exists and retries [`ProtocolError::UnknownTopicOrPartition`]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTopicHandling {
    /// When a [`ProtocolError::UnknownTopicOrPartition`] is returned by Kafka,
    /// it is passed up to the user to handle.
    ///
    /// These errors may occur spuriously.
    Error,

    /// Always retry operations that return a
    /// [`ProtocolError::UnknownTopicOrPartition`], until the operation succeeds
    /// or a different error is returned.
    ///
    /// This may unpredictably increase operation latency.
    Retry,
}

/// Compression of records.
///
/// This is only relevant for [produce requests](PartitionClient::produce). There the client compresses the records.
///
/// For [fetch requests](PartitionClient::fetch_records) we have to accept a message as it exists, i.e. how it was
/// originally compressed. The broker will NOT change the data compression based on our request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    #[default]
    NoCompression,
    #[cfg(feature = "compression-gzip")]
    Gzip,
    #[cfg(feature = "compression-lz4")]
    Lz4,
    #[cfg(feature = "compression-snappy")]
    Snappy,
    #[cfg(feature = "compression-zstd")]
    Zstd,
}

// store-events patch 3 (vendor/rskafka/PATCHES.md): FetchedRecords is new.
/// What one [`PartitionClient::fetch`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// The records at or after the requested offset, without those of aborted transactions.
    pub records: Vec<RecordAndOffset>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// store-events patch 14: the end of what a fetch can read now (it reads committed
    /// records): the partition's last stable offset, or the high watermark from a broker
    /// that sends none (fetch versions before 4). A fetch from below it finds records at
    /// once, unless the response's size limit left this partition out.
    pub last_stable_offset: i64,
    /// Where the next fetch starts: one past the last offset of the response's last batch,
    /// or the requested offset when the response held no batch.
    pub next_offset: i64,
}

/// Which type of offset should be requested by [`PartitionClient::get_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetAt {
    /// Earliest existing record.
    ///
    /// This is NOT the earliest produced record but the earliest record that is still kept, i.e. the offset might
    /// change if records are pruned by Kafka (retention policy) or if the are deleted.
    Earliest,

    /// The latest existing record.
    Latest,

    /// Timestamp
    ///
    /// The Kafka API supports querying an offset based on a timestamp, but the behavior seems to be
    /// semi-defined, unintuitive (even within Apache Kafka) and inconsistent between Apache Kafka and Redpanda. Mostly it
    /// offers timestamp based querying with millisecond precision.
    Timestamp(DateTime<Utc>),
}

#[derive(Debug)]
struct CurrentBroker {
    broker: Option<BrokerConnection>,
    /// store-events patch 14: the id of the broker `broker` connects to.
    leader: Option<i32>,
    gen_broker: BrokerCacheGeneration,
    gen_leader_from_arbitrary: Option<MetadataCacheGeneration>,
    gen_leader_from_self: Option<MetadataCacheGeneration>,
}

/// Many operations must be performed on the leader for a partition
///
/// Additionally a partition is the unit of concurrency within Kafka
///
/// As such a [`PartitionClient`] is a dedicated connection to the broker that
/// is the leader for a given partition.
///
/// In the event of a leadership change, [`PartitionClient`] will transparently
/// handle migrating to the new broker
///
pub struct PartitionClient {
    topic: String,
    partition: i32,
    brokers: Arc<BrokerConnector>,

    backoff_config: Arc<BackoffConfig>,

    /// Current broker connection if any
    current_broker: Mutex<CurrentBroker>,

    unknown_topic_handling: UnknownTopicHandling,

    /// store-events patch 9: the producer id and this partition's sequence, when writes
    /// are idempotent.
    idempotence: Option<PartitionIdempotence>,
}

impl std::fmt::Debug for PartitionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartitionClient({}:{})", self.topic, self.partition)
    }
}

impl PartitionClient {
    pub(super) async fn new(
        topic: String,
        partition: i32,
        brokers: Arc<BrokerConnector>,
        unknown_topic_handling: UnknownTopicHandling,
        backoff_config: Arc<BackoffConfig>,
    ) -> Result<Self> {
        let p = Self {
            topic,
            partition,
            brokers: Arc::clone(&brokers),
            backoff_config,
            current_broker: Mutex::new(CurrentBroker {
                broker: None,
                leader: None,
                gen_broker: BrokerCacheGeneration::START,
                gen_leader_from_arbitrary: None,
                gen_leader_from_self: None,
            }),
            unknown_topic_handling,
            idempotence: None,
        };

        // Force discover and establish a cached connection to the leader
        let scope = &p;
        maybe_retry(
            &p.backoff_config,
            p.unknown_topic_handling,
            &*brokers,
            "leader_detection",
            || async move {
                scope
                    .get()
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e, None)))?;
                Ok(())
            },
        )
        .await?;

        Ok(p)
    }

    /// Topic
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// store-events patch 9: writes through this client are idempotent under
    /// `producer`'s id (see [`crate::client::idempotence`]): one batch in flight, and a
    /// retry carries the same sequence, so the broker never stores a batch twice.
    pub fn with_idempotence(mut self, producer: Arc<IdempotentProducer>) -> Self {
        self.idempotence = Some(PartitionIdempotence {
            producer,
            sequence: tokio::sync::Mutex::new(Sequence::default()),
        });
        self
    }

    /// Produce a batch of records to the partition
    pub async fn produce(
        &self,
        records: Vec<Record>,
        compression: Compression,
    ) -> Result<Vec<i64>> {
        // skip request entirely if `records` is empty
        if records.is_empty() {
            return Ok(vec![]);
        }

        if let Some(idempotence) = &self.idempotence {
            return self
                .produce_idempotently(idempotence, records, compression)
                .await;
        }
        let n = records.len() as i64;
        let request = Arc::new(build_produce_request(
            self.partition,
            &self.topic,
            records,
            compression,
        ));
        self.send_produce(&request, n).await
    }

    /// store-events patch 9: a batch under the producer id, with this partition's next
    /// sequence; sent once more under a new producer id if the broker refused it for its
    /// sequence or producer id.
    async fn produce_idempotently(
        &self,
        idempotence: &PartitionIdempotence,
        records: Vec<Record>,
        compression: Compression,
    ) -> Result<Vec<i64>> {
        let mut sequence = idempotence.sequence.lock().await;
        let n = records.len();
        // Built once; a resend under a new producer id only renumbers the batch.
        let mut request = Arc::new(build_produce_request(
            self.partition,
            &self.topic,
            records,
            compression,
        ));
        let mut refused_once = false;
        loop {
            let identity = idempotence.producer.identity().await?;
            if sequence.identity != Some(identity) {
                *sequence = Sequence {
                    identity: Some(identity),
                    next: 0,
                };
            }
            // store-events patch 13: a merged request holds the batch only until its
            // answer came, so it is unshared again here.
            let Some(unshared) = Arc::get_mut(&mut request) else {
                return Err(Error::InvalidResponse(
                    "a produce request is still shared after its answer".to_owned(),
                ));
            };
            set_producer(unshared, identity, sequence.next);
            match self.send_produce(&request, n as i64).await {
                Ok(offsets) => {
                    sequence.next = next_sequence(sequence.next, n);
                    return Ok(offsets);
                }
                Err(error) => {
                    // Whatever the error, the next batch must not guess the sequence.
                    idempotence.producer.reset(identity).await;
                    sequence.identity = None;
                    if refused_once || !refused_for_its_sequence(&error) {
                        return Err(error);
                    }
                    warn!(
                        topic = self.topic,
                        partition = self.partition,
                        %error,
                        "batch refused for its producer id or sequence; sending it again under a new producer id",
                    );
                    refused_once = true;
                }
            }
        }
    }

    /// Sends a produce request, retried as rskafka retries (the same bytes each time).
    async fn send_produce(&self, request: &Arc<ProduceRequest>, n: i64) -> Result<Vec<i64>> {
        maybe_retry(
            &self.backoff_config,
            self.unknown_topic_handling,
            self,
            "produce",
            || async move {
                let (broker, r#gen) = self
                    .get()
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e, None)))?;
                // store-events patch 13: with the other partitions' batches for this broker.
                let response = broker
                    .produce_merged(Arc::clone(request))
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e.into(), Some(r#gen))))?;
                maybe_throttle(response.throttle_time_ms)?;
                process_produce_response(self.partition, &self.topic, n, response)
                    .map_err(|e| ErrorOrThrottle::Error((e, Some(r#gen))))
            },
        )
        .await
    }

    // store-events patch 3: the doc below, fetch_records calling fetch, and fetch (new).
    /// Fetch `bytes` bytes of record data starting at sequence number `offset`
    ///
    /// Returns the records, and the current high watermark. Records of aborted transactions
    /// are not returned. See [`fetch`](Self::fetch) for the offset to go on from.
    ///
    ///
    /// # Error Handling
    /// Fetching records outside the range known the to broker (marked by low and high watermark) will lead to a
    /// [`ServerError`](Error::ServerError) with [`OffsetOutOfRange`](ProtocolError::OffsetOutOfRange). You may use
    /// [`get_offset`](Self::get_offset) to determine the offset range.
    pub async fn fetch_records(
        &self,
        offset: i64,
        bytes: Range<i32>,
        max_wait_ms: i32,
    ) -> Result<(Vec<RecordAndOffset>, i64)> {
        let fetched = self.fetch(offset, bytes, max_wait_ms).await?;
        Ok((fetched.records, fetched.high_watermark))
    }

    /// Like [`fetch_records`](Self::fetch_records), and also returns the offset to fetch from
    /// next: one past the last batch of the response. It is past the last record when the
    /// response ends with offsets that hold no record for the application (transaction
    /// markers, records of aborted transactions, batches emptied by compaction); a consumer
    /// that went on from the last record + 1 would fetch those offsets again forever.
    pub async fn fetch(
        &self,
        offset: i64,
        bytes: Range<i32>,
        max_wait_ms: i32,
    ) -> Result<FetchedRecords> {
        let request = &Arc::new(build_fetch_request(
            offset,
            bytes,
            max_wait_ms,
            self.partition,
            &self.topic,
        ));

        let partition = maybe_retry(
            &self.backoff_config,
            self.unknown_topic_handling,
            self,
            "fetch_records",
            || async move {
                // store-events patch 14: a fetch that may wait goes on the broker's waiting
                // connection, so that it holds back no fetch that finds records at once.
                let (broker, r#gen) = self
                    .fetch_connection(max_wait_ms)
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e, None)))?;
                // store-events patch 13: with the other partitions' fetches from this broker.
                let response = broker
                    .fetch_merged(Arc::clone(request))
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e.into(), Some(r#gen))))?;
                // Its records decoded here, in this partition's task.
                let response = response.decode().map_err(|e| {
                    ErrorOrThrottle::Error((RequestError::from(e).into(), Some(r#gen)))
                })?;
                maybe_throttle(response.throttle_time_ms)?;
                process_fetch_response(self.partition, &self.topic, response, offset)
                    .map_err(|e| ErrorOrThrottle::Error((e, Some(r#gen))))
            },
        )
        .await?;

        // store-events patch 3: the aborted transactions go to extract_records.
        let aborted = partition
            .aborted_transactions
            .iter()
            .map(|t| (t.first_offset.0, t.producer_id.0))
            .collect();
        let (records, next_offset) = extract_records(partition.records.0, offset, aborted)?;

        Ok(FetchedRecords {
            records,
            high_watermark: partition.high_watermark.0,
            last_stable_offset: partition
                .last_stable_offset
                .map_or(partition.high_watermark.0, |offset| offset.0),
            next_offset,
        })
    }

    /// store-events patch 14: the connection a fetch waiting up to `max_wait_ms` goes on:
    /// the leader's shared connection when it does not wait, else the leader's waiting
    /// connection (`BrokerConnector::waiting_connection`). A broker answers a
    /// connection's requests one at a time, so a fetch that waits for records (a partition
    /// that has caught up) would hold back, for up to `max_wait_ms`, every fetch and
    /// produce request behind it, although their records are there: a partition with a
    /// backlog would get one fetch per `max_wait_ms` while another is idle. Fetches that
    /// wait are merged with each other on that connection, as on the shared one.
    async fn fetch_connection(
        &self,
        max_wait_ms: i32,
    ) -> Result<(BrokerConnection, BrokerCacheGeneration)> {
        let (broker, r#gen) = self.get().await?;
        if max_wait_ms <= 0 {
            return Ok((broker, r#gen));
        }
        let leader = {
            let current = self.current_broker.lock().await;
            current.leader.filter(|_| current.gen_broker == r#gen)
        };
        let Some(leader) = leader else {
            // The leader was invalidated since: the next attempt looks it up again.
            return Err(Error::ServerError {
                protocol_error: ProtocolError::NotLeaderOrFollower,
                error_message: None,
                request: RequestContext::Partition(self.topic.clone(), self.partition),
                response: None,
                is_virtual: true,
            });
        };
        match self.brokers.waiting_connection(leader).await? {
            Some(waiting) => Ok((waiting, r#gen)),
            None => Err(Error::InvalidResponse(format!(
                "Partition leader {leader} not found in metadata response"
            ))),
        }
    }

    /// Get offset for this partition.
    ///
    /// Note that the value returned by this method should be considered stale data, since:
    ///
    /// - **[`OffsetAt::Earliest`]:** Might be change at any time due to the Kafka retention policy or by
    ///   [deleting records](Self::delete_records).
    /// - **[`OffsetAt::Latest`]:** Might be change at any time by [producing records](Self::produce).
    pub async fn get_offset(&self, at: OffsetAt) -> Result<i64> {
        let request = &build_list_offsets_request(self.partition, &self.topic, at);

        let partition = maybe_retry(
            &self.backoff_config,
            self.unknown_topic_handling,
            self,
            "get_offset",
            || async move {
                let (broker, r#gen) = self
                    .get()
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e, None)))?;
                let response = broker
                    .request(&request)
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e.into(), Some(r#gen))))?;
                maybe_throttle(response.throttle_time_ms)?;
                process_list_offsets_response(self.partition, &self.topic, response)
                    .map_err(|e| ErrorOrThrottle::Error((e, Some(r#gen))))
            },
        )
        .await?;

        extract_offset(partition)
    }

    /// Delete records whose offset is smaller than the given offset.
    ///
    /// # Supported Brokers
    /// Currently this is only supported by Apache Kafka but NOT by Redpanda, see
    /// <https://github.com/redpanda-data/redpanda/issues/1016>.
    pub async fn delete_records(&self, offset: i64, timeout_ms: i32) -> Result<()> {
        let request =
            &build_delete_records_request(offset, timeout_ms, &self.topic, self.partition);

        maybe_retry(
            &self.backoff_config,
            self.unknown_topic_handling,
            self,
            "delete_records",
            || async move {
                let (broker, r#gen) = self
                    .get()
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e, None)))?;
                let response = broker
                    .request(&request)
                    .await
                    .map_err(|e| ErrorOrThrottle::Error((e.into(), Some(r#gen))))?;
                maybe_throttle(Some(response.throttle_time_ms))?;
                process_delete_records_response(&self.topic, self.partition, response)
                    .map_err(|e| ErrorOrThrottle::Error((e, Some(r#gen))))
            },
        )
        .await?;

        Ok(())
    }

    /// Retrieve the broker ID of the partition leader
    async fn get_leader(
        &self,
        metadata_mode: MetadataLookupMode,
    ) -> Result<(i32, Option<MetadataCacheGeneration>)> {
        let (metadata, r#gen) = self
            .brokers
            .request_metadata(&metadata_mode, Some(vec![self.topic.clone()]))
            .await?;

        let topic = metadata
            .topics
            .exactly_one()
            .map_err(Error::exactly_one_topic)?;

        if topic.name.0 != self.topic {
            return Err(Error::InvalidResponse(format!(
                "Expected metadata for topic \"{}\" got \"{}\"",
                self.topic, topic.name.0
            )));
        }

        if let Some(e) = topic.error {
            // TODO: Add retry logic
            return Err(Error::ServerError {
                protocol_error: e,
                error_message: None,
                request: RequestContext::Topic(self.topic.clone()),
                response: None,
                is_virtual: false,
            });
        }

        let partition = topic
            .partitions
            .iter()
            .find(|p| p.partition_index.0 == self.partition)
            .ok_or_else(|| {
                // store-events patch 10: a partition added since the cached metadata was
                // fetched is missing from it; drop the cache so that the next lookup asks
                // a broker (before, only a `list_topics` call refreshed it).
                if let Some(r#gen) = r#gen {
                    self.brokers.invalidate_metadata_cache(
                        "partition client: partition not in the cached metadata",
                        r#gen,
                    );
                }
                // store-events patch 11: a partition the answer leaves out is unknown to
                // that broker, as `UNKNOWN_TOPIC_OR_PARTITION` would say (Kafka's brokers
                // learn of new partitions asynchronously, so one may answer before it
                // knows): [`UnknownTopicHandling::Retry`] waits for it instead of failing
                // with an `InvalidResponse`, as the Java client waits for metadata.
                Error::ServerError {
                    protocol_error: ProtocolError::UnknownTopicOrPartition,
                    error_message: Some(format!(
                        "no metadata for partition {} in topic \"{}\"",
                        self.partition, self.topic
                    )),
                    request: RequestContext::Partition(self.topic.clone(), self.partition),
                    response: None,
                    is_virtual: true,
                }
            })?;

        if let Some(e) = partition.error {
            // TODO: Add retry logic
            return Err(Error::ServerError {
                protocol_error: e,
                error_message: None,
                request: RequestContext::Partition(self.topic.clone(), self.partition),
                response: None,
                is_virtual: false,
            });
        }

        if partition.leader_id.0 == -1 {
            return Err(Error::ServerError {
                protocol_error: ProtocolError::LeaderNotAvailable,
                error_message: None,
                request: RequestContext::Partition(self.topic.clone(), self.partition),
                response: None,
                is_virtual: true,
            });
        }

        info!(
            topic=%self.topic,
            partition=%self.partition,
            leader=partition.leader_id.0,
            %metadata_mode,
            "Detected leader",
        );
        Ok((partition.leader_id.0, r#gen))
    }
}

/// Caches the partition leader broker.
impl BrokerCache for &PartitionClient {
    type R = MessengerTransport;
    type E = Error;

    async fn get(&self) -> Result<(Arc<Self::R>, BrokerCacheGeneration)> {
        let mut current_broker = self.current_broker.lock().await;
        if let Some(broker) = &current_broker.broker {
            return Ok((Arc::clone(broker), current_broker.gen_broker));
        }

        info!(
            topic=%self.topic,
            partition=%self.partition,
            "Creating new partition-specific broker connection",
        );

        // Perform a request to fetch the topic metadata to determine the
        // current leader.
        //
        // Accept a cached metadata entry as a response because:
        //   * If the leader is offline, the connection call below fails and the cache is invalidated - the next call
        //     will cause the cache to be re-populate with a fresh entry.
        //   * A subsequent query is performed against the leader that does not use the cached entry - this validates
        //     the correctness of the cached entry.
        //
        let (leader, gen_leader_from_arbitrary) =
            self.get_leader(MetadataLookupMode::CachedArbitrary).await?;
        // store-events patch 13: the broker's shared connection, not one of our own.
        let broker = match self.brokers.shared_connection(leader).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                if let Some(r#gen) = gen_leader_from_arbitrary {
                    self.brokers.invalidate_metadata_cache(
                        "partition client: broker that is leader is unknown",
                        r#gen,
                    );
                }
                Err(Error::InvalidResponse(format!(
                    "Partition leader {} not found in metadata response",
                    leader
                )))
            }
            Err(e) => {
                if let Some(r#gen) = gen_leader_from_arbitrary {
                    self.brokers.invalidate_metadata_cache(
                        "partition client: error connecting to partition leader",
                        r#gen,
                    );
                }
                Err(e.into())
            }
        }?;

        // Check if the chosen leader also thinks it is the leader.
        //
        // For Kafka (+ Zookeeper) this seems to be required if we don't want to blindly retry `UnknownTopicOrPartition`
        // that happen after we connect to a leader (as advised by another broker) which doesn't know about its assigned
        // partition yet. The metadata query below seems to result in an LeaderNotAvailable in this case and is retried
        // by the layer above.
        //
        // This does not seem to be required for redpanda.
        //
        // Because this check requires the most up-to-date metadata from a specific broker, do not accept a cached
        // metadata response.
        let (leader_self, gen_leader_from_self) = self
            .get_leader(MetadataLookupMode::SpecificBroker(Arc::clone(&broker)))
            .await?;
        if leader != leader_self {
            // store-events patch 4: the answer that named `leader` is the stale one. It came
            // from the cache when `gen_leader_from_arbitrary` is set; `gen_leader_from_self`
            // is always `None` (an uncached lookup), so invalidating only that one left the
            // stale entry in place and every retry went back to the old leader.
            for r#gen in [gen_leader_from_arbitrary, gen_leader_from_self]
                .into_iter()
                .flatten()
            {
                // The cached metadata identified an incorrect leader - it is stale and should be refreshed.
                self.brokers.invalidate_metadata_cache(
                    "partition client: broker that should be leader does treat itself as a leader",
                    r#gen,
                );
            }

            // this might happen if the leader changed after we got the hint from a arbitrary broker and this specific
            // metadata call.
            return Err(Error::ServerError {
                protocol_error: ProtocolError::NotLeaderOrFollower,
                error_message: None,
                request: RequestContext::Partition(self.topic.clone(), self.partition),
                response: Some(ServerErrorResponse::LeaderForward {
                    broker: leader,
                    new_leader: leader_self,
                }),
                is_virtual: true,
            });
        }

        *current_broker = CurrentBroker {
            broker: Some(Arc::clone(&broker)),
            leader: Some(leader),
            gen_broker: current_broker.gen_broker.bump(),
            gen_leader_from_arbitrary,
            gen_leader_from_self,
        };

        info!(
            topic=%self.topic,
            partition=%self.partition,
            leader,
            "Using the leader's shared broker connection", // store-events patch 13
        );
        Ok((broker, current_broker.gen_broker))
    }

    async fn invalidate(&self, reason: &'static str, r#gen: BrokerCacheGeneration) {
        let mut current_broker = self.current_broker.lock().await;

        if current_broker.gen_broker != r#gen {
            // stale request
            debug!(
                reason,
                current_gen = current_broker.gen_broker.get(),
                request_gen = r#gen.get(),
                "stale invalidation request for arbitrary broker cache",
            );
            return;
        }

        info!(
            topic = self.topic.deref(),
            partition = self.partition,
            reason,
            "Invaliding cached leader",
        );

        if let Some(r#gen) = current_broker.gen_leader_from_arbitrary {
            self.brokers.invalidate_metadata_cache(reason, r#gen);
        }
        if let Some(r#gen) = current_broker.gen_leader_from_self {
            self.brokers.invalidate_metadata_cache(reason, r#gen);
        }

        current_broker.broker = None
    }
}

/// Takes a `request_name` and a function yielding a fallible future
/// and handles certain classes of error
async fn maybe_retry<B, R, F, T>(
    backoff_config: &BackoffConfig,
    unknown_topic_handling: UnknownTopicHandling,
    broker_cache: B,
    request_name: &str,
    f: R,
) -> Result<T>
where
    B: BrokerCache,
    R: (Fn() -> F) + Send + Sync,
    F: std::future::Future<
            Output = Result<T, ErrorOrThrottle<(Error, Option<BrokerCacheGeneration>)>>,
        > + Send,
{
    let mut backoff = Backoff::new(backoff_config);

    backoff
        .retry_with_backoff(request_name, || async {
            let (error, cache_gen) = match f().await {
                Ok(v) => {
                    return ControlFlow::Break(Ok(v));
                }
                Err(ErrorOrThrottle::Throttle(throttle)) => {
                    return ControlFlow::Continue(ErrorOrThrottle::Throttle(throttle));
                }
                Err(ErrorOrThrottle::Error(e)) => e,
            };

            let retry = match error {
                Error::Request(RequestError::Poisoned(_) | RequestError::IO(_))
                | Error::Connection(_) => {
                    if let Some(cache_gen) = cache_gen {
                        broker_cache
                            .invalidate("partition client: connection broken", cache_gen)
                            .await;
                    }
                    true
                }
                Error::ServerError {
                    protocol_error:
                        ProtocolError::InvalidReplicationFactor
                        | ProtocolError::LeaderNotAvailable
                        | ProtocolError::OffsetNotAvailable,
                    ..
                } => true,
                Error::ServerError {
                    protocol_error: ProtocolError::NotLeaderOrFollower,
                    ..
                } => {
                    if let Some(cache_gen) = cache_gen {
                        broker_cache
                            .invalidate(
                                "partition client: server error: not leader or follower",
                                cache_gen,
                            )
                            .await;
                    }
                    true
                }
                Error::ServerError {
                    protocol_error: ProtocolError::UnknownTopicOrPartition,
                    ..
                } => {
                    if let Some(cache_gen) = cache_gen {
                        broker_cache
                            .invalidate(
                                "partition client: server error: unknown topic or partition",
                                cache_gen,
                            )
                            .await;
                    }
                    unknown_topic_handling == UnknownTopicHandling::Retry
                }
                _ => false,
            };

            if retry {
                ControlFlow::Continue(ErrorOrThrottle::Error(error))
            } else {
                error!(
                    e=%error,
                    request_name,
                    "request encountered fatal error",
                );
                ControlFlow::Break(Err(error))
            }
        })
        .await
        .map_err(Error::RetryFailed)?
}

/// store-events patch 9: the producer id and base sequence of the request's batches.
fn set_producer(request: &mut ProduceRequest, identity: ProducerIdentity, sequence: i32) {
    let batches = request
        .topic_data
        .iter_mut()
        .flat_map(|topic| topic.partition_data.iter_mut())
        .flat_map(|partition| partition.records.0.iter_mut());
    for batch in batches {
        batch.producer_id = identity.id;
        batch.producer_epoch = identity.epoch;
        batch.base_sequence = sequence;
    }
}

// store-events patch 13: pub(crate), for the merge tests.
pub(crate) fn build_produce_request(
    partition: i32,
    topic: &str,
    records: Vec<Record>,
    compression: Compression,
) -> ProduceRequest {
    let n = records.len() as i32;

    // TODO: Retry on failure

    let first_timestamp = records.first().unwrap().timestamp;
    let mut max_timestamp = first_timestamp;

    let records = records
        .into_iter()
        .enumerate()
        .map(|(offset_delta, record)| {
            max_timestamp = max_timestamp.max(record.timestamp);

            ProtocolRecord {
                key: record.key,
                value: record.value,
                timestamp_delta: (record.timestamp - first_timestamp).num_milliseconds(),
                offset_delta: offset_delta as i32,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(key, value)| RecordHeader { key, value })
                    .collect(),
            }
        })
        .collect();

    let record_batch = ProduceRequestPartitionData {
        index: Int32(partition),
        records: Records(vec![RecordBatch {
            base_offset: 0,
            partition_leader_epoch: 0,
            last_offset_delta: n - 1,
            is_transactional: false,
            base_sequence: -1,
            compression: match compression {
                Compression::NoCompression => RecordBatchCompression::NoCompression,
                #[cfg(feature = "compression-gzip")]
                Compression::Gzip => RecordBatchCompression::Gzip,
                #[cfg(feature = "compression-lz4")]
                Compression::Lz4 => RecordBatchCompression::Lz4,
                #[cfg(feature = "compression-snappy")]
                Compression::Snappy => RecordBatchCompression::Snappy,
                #[cfg(feature = "compression-zstd")]
                Compression::Zstd => RecordBatchCompression::Zstd,
            },
            timestamp_type: RecordBatchTimestampType::CreateTime,
            producer_id: -1,
            producer_epoch: -1,
            first_timestamp: first_timestamp.timestamp_millis(),
            max_timestamp: max_timestamp.timestamp_millis(),
            records: ControlBatchOrRecords::Records(records),
        }]),
    };

    ProduceRequest {
        transactional_id: crate::protocol::primitives::NullableString(None),
        acks: Int16(-1),
        timeout_ms: Int32(30_000),
        topic_data: vec![ProduceRequestTopicData {
            name: String_(topic.to_string()),
            partition_data: vec![record_batch],
        }],
    }
}

fn process_produce_response(
    partition: i32,
    topic: &str,
    num_records: i64,
    response: ProduceResponse,
) -> Result<Vec<i64>> {
    let response = response
        .responses
        .exactly_one()
        .map_err(Error::exactly_one_topic)?;

    if response.name.0 != topic {
        return Err(Error::InvalidResponse(format!(
            "Expected write for topic \"{}\" got \"{}\"",
            topic, response.name.0,
        )));
    }

    let response = response
        .partition_responses
        .exactly_one()
        .map_err(Error::exactly_one_partition)?;

    if response.index.0 != partition {
        return Err(Error::InvalidResponse(format!(
            "Expected partition {} for topic \"{}\" got {}",
            partition, topic, response.index.0,
        )));
    }

    match response.error {
        Some(e) => Err(Error::ServerError {
            protocol_error: e,
            error_message: None,
            request: RequestContext::Partition(topic.to_owned(), partition),
            response: None,
            is_virtual: false,
        }),
        None => Ok((0..num_records)
            .map(|x| x + response.base_offset.0)
            .collect()),
    }
}

// store-events patch 13: pub(crate), for the merge tests.
pub(crate) fn build_fetch_request(
    offset: i64,
    bytes: Range<i32>,
    max_wait_ms: i32,
    partition: i32,
    topic: &str,
) -> FetchRequest {
    FetchRequest {
        replica_id: NORMAL_CONSUMER,
        max_wait_ms: Int32(max_wait_ms),
        min_bytes: Int32(bytes.start),
        max_bytes: Some(Int32(bytes.end.saturating_sub(1))),
        isolation_level: Some(IsolationLevel::ReadCommitted),
        topics: vec![FetchRequestTopic {
            topic: String_(topic.to_string()),
            partitions: vec![FetchRequestPartition {
                partition: Int32(partition),
                fetch_offset: Int64(offset),
                partition_max_bytes: Int32(bytes.end.saturating_sub(1)),
            }],
        }],
    }
}

fn process_fetch_response(
    partition: i32,
    topic: &str,
    response: FetchResponse,
    request_offset: i64,
) -> Result<FetchResponsePartition> {
    let response_topic = response
        .responses
        .exactly_one()
        .map_err(Error::exactly_one_topic)?;

    if response_topic.topic.0 != topic {
        return Err(Error::InvalidResponse(format!(
            "Expected data for topic '{}' but got data for topic '{}'",
            topic, response_topic.topic.0
        )));
    }

    let response_partition = response_topic
        .partitions
        .exactly_one()
        .map_err(Error::exactly_one_partition)?;

    if response_partition.partition_index.0 != partition {
        return Err(Error::InvalidResponse(format!(
            "Expected data for partition {} but got data for partition {}",
            partition, response_partition.partition_index.0
        )));
    }

    if let Some(err) = response_partition.error_code {
        return Err(Error::ServerError {
            protocol_error: err,
            error_message: None,
            request: RequestContext::Fetch {
                topic_name: topic.to_owned(),
                partition_id: partition,
                offset: request_offset,
            },
            response: Some(ServerErrorResponse::PartitionFetchState {
                high_watermark: response_partition.high_watermark.0,
                last_stable_offset: response_partition.last_stable_offset.map(|x| x.0),
            }),
            is_virtual: false,
        });
    }

    Ok(response_partition)
}

// store-events patch 3, to the end of extract_records: aborted transactions dropped,
// the offset after the last batch returned.
/// The records of a fetch response at or after `request_offset`, without those of aborted
/// transactions (`aborted`: first offset and producer id of each, from the response), and
/// the offset after the response's last batch.
///
/// The filter is the Java client's (`Fetcher`, read_committed): walking the batches in
/// order, an aborted transaction whose first offset is at or before a batch's last offset
/// marks its producer as aborting; that producer's transactional batches are dropped until
/// its abort marker.
fn extract_records(
    partition_records: Vec<RecordBatch>,
    request_offset: i64,
    mut aborted: Vec<(i64, i64)>,
) -> Result<(Vec<RecordAndOffset>, i64)> {
    let mut records = vec![];
    let mut next_offset = request_offset;
    aborted.sort_unstable();
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting = std::collections::HashSet::new();

    // store-events patch 6: offsets come from the wire; a batch whose base offset plus a
    // delta leaves i64 panicked (debug builds) or wrapped to a negative offset (release).
    let overflow = |base_offset: i64, delta: i32| {
        Error::InvalidResponse(format!(
            "Offset overflow (base_offset={base_offset}, delta={delta})"
        ))
    };
    for batch in partition_records {
        let last_offset = batch
            .base_offset
            .checked_add(i64::from(batch.last_offset_delta))
            .and_then(|last| last.checked_add(1).map(|next| (last, next)));
        let Some((last_offset, after_last)) = last_offset else {
            return Err(overflow(batch.base_offset, batch.last_offset_delta));
        };
        next_offset = next_offset.max(after_last);
        if batch.producer_id >= 0 {
            while let Some(&(first_offset, producer_id)) = aborted.peek() {
                if first_offset > last_offset {
                    break;
                }
                aborting.insert(producer_id);
                aborted.next();
            }
        }
        match batch.records {
            ControlBatchOrRecords::ControlBatch(ControlBatchRecord::Abort) => {
                aborting.remove(&batch.producer_id);
            }
            ControlBatchOrRecords::ControlBatch(_) => {
                // commit markers and unknown control records hold nothing for the application
            }
            ControlBatchOrRecords::Records(_)
                if batch.is_transactional && aborting.contains(&batch.producer_id) =>
            {
                // a batch of an aborted transaction
            }
            ControlBatchOrRecords::Records(protocol_records) => {
                records.reserve(protocol_records.len());

                for record in protocol_records {
                    let Some(offset) = batch
                        .base_offset
                        .checked_add(i64::from(record.offset_delta))
                    else {
                        return Err(overflow(batch.base_offset, record.offset_delta));
                    };
                    if offset < request_offset {
                        // Kafka does not split record batches on the server side, so we need to do this filtering on
                        // the client side
                        continue;
                    }

                    let timestamp_millis =
                        match batch.first_timestamp.checked_add(record.timestamp_delta) {
                            Some(ts) => ts,
                            None => {
                                return Err(Error::InvalidResponse(format!(
                                    "Timestamp overflow (first_timestamp={}, delta={}",
                                    batch.first_timestamp, record.timestamp_delta
                                )));
                            }
                        };
                    let timestamp = match Utc.timestamp_millis_opt(timestamp_millis) {
                        LocalResult::None => {
                            return Err(Error::InvalidResponse(format!(
                                "Not a valid timestamp ({timestamp_millis})"
                            )));
                        }
                        LocalResult::Single(ts) => ts,
                        LocalResult::Ambiguous(a, b) => {
                            return Err(Error::InvalidResponse(format!(
                                "Ambiguous timestamp ({timestamp_millis}): {a} or {b}"
                            )));
                        }
                    };

                    records.push(RecordAndOffset {
                        record: Record {
                            key: record.key,
                            value: record.value,
                            headers: record
                                .headers
                                .into_iter()
                                .map(|header| (header.key, header.value))
                                .collect(),
                            timestamp,
                        },
                        offset,
                    })
                }
            }
        }
    }

    Ok((records, next_offset))
}

fn build_list_offsets_request(partition: i32, topic: &str, at: OffsetAt) -> ListOffsetsRequest {
    let timestamp = match at {
        OffsetAt::Earliest => -2,
        OffsetAt::Latest => -1,
        OffsetAt::Timestamp(ts) => ts.timestamp_millis(),
    };

    ListOffsetsRequest {
        replica_id: NORMAL_CONSUMER,
        isolation_level: Some(IsolationLevel::ReadCommitted),
        topics: vec![ListOffsetsRequestTopic {
            name: String_(topic.to_owned()),
            partitions: vec![ListOffsetsRequestPartition {
                partition_index: Int32(partition),
                timestamp: Int64(timestamp),
                max_num_offsets: Some(Int32(1)),
            }],
        }],
    }
}

fn process_list_offsets_response(
    partition: i32,
    topic: &str,
    response: ListOffsetsResponse,
) -> Result<ListOffsetsResponsePartition> {
    let response_topic = response
        .topics
        .exactly_one()
        .map_err(Error::exactly_one_topic)?;

    if response_topic.name.0 != topic {
        return Err(Error::InvalidResponse(format!(
            "Expected data for topic '{}' but got data for topic '{}'",
            topic, response_topic.name.0
        )));
    }

    let response_partition = response_topic
        .partitions
        .exactly_one()
        .map_err(Error::exactly_one_partition)?;

    if response_partition.partition_index.0 != partition {
        return Err(Error::InvalidResponse(format!(
            "Expected data for partition {} but got data for partition {}",
            partition, response_partition.partition_index.0
        )));
    }

    match response_partition.error_code {
        Some(err) => Err(Error::ServerError {
            protocol_error: err,
            error_message: None,
            request: RequestContext::Partition(topic.to_owned(), partition),
            response: None,
            is_virtual: false,
        }),
        None => Ok(response_partition),
    }
}

fn extract_offset(partition: ListOffsetsResponsePartition) -> Result<i64> {
    match (
        partition.old_style_offsets.as_ref(),
        partition.offset.as_ref(),
    ) {
        // old style
        (Some(offsets), None) => match offsets.0.as_ref() {
            Some(offsets) => match offsets.len() {
                1 => Ok(offsets[0].0),
                n => Err(Error::InvalidResponse(format!(
                    "Expected 1 offset to be returned but got {}",
                    n
                ))),
            },
            None => Err(Error::InvalidResponse(
                "Got NULL as offset array".to_owned(),
            )),
        },
        // new style
        (None, Some(offset)) => Ok(offset.0),
        _ => unreachable!(),
    }
}

fn build_delete_records_request(
    offset: i64,
    timeout_ms: i32,
    topic: &str,
    partition: i32,
) -> DeleteRecordsRequest {
    DeleteRecordsRequest {
        topics: vec![DeleteRequestTopic {
            name: String_(topic.to_string()),
            partitions: vec![DeleteRequestPartition {
                partition_index: Int32(partition),
                offset: Int64(offset),
                tagged_fields: None,
            }],
            tagged_fields: None,
        }],
        timeout_ms: Int32(timeout_ms),
        tagged_fields: None,
    }
}

fn process_delete_records_response(
    topic: &str,
    partition: i32,
    response: DeleteRecordsResponse,
) -> Result<DeleteResponsePartition> {
    let response_topic = response
        .topics
        .exactly_one()
        .map_err(Error::exactly_one_topic)?;

    if response_topic.name.0 != topic {
        return Err(Error::InvalidResponse(format!(
            "Expected data for topic '{}' but got data for topic '{}'",
            topic, response_topic.name.0
        )));
    }

    let response_partition = response_topic
        .partitions
        .exactly_one()
        .map_err(Error::exactly_one_partition)?;

    if response_partition.partition_index.0 != partition {
        return Err(Error::InvalidResponse(format!(
            "Expected data for partition {} but got data for partition {}",
            partition, response_partition.partition_index.0
        )));
    }

    match response_partition.error {
        Some(err) => Err(Error::ServerError {
            protocol_error: err,
            error_message: None,
            request: RequestContext::Partition(topic.to_owned(), partition),
            response: None,
            is_virtual: false,
        }),
        None => Ok(response_partition),
    }
}

// store-events patch 3: unit tests of extract_records (the crate had none).
#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `values` from `producer_id` (-1: no producer) at `base_offset`.
    fn batch(
        base_offset: i64,
        producer_id: i64,
        transactional: bool,
        values: &[&str],
    ) -> RecordBatch {
        let records = values
            .iter()
            .enumerate()
            .map(|(i, v)| ProtocolRecord {
                timestamp_delta: 0,
                offset_delta: i as i32,
                key: None,
                value: Some(v.as_bytes().to_vec()),
                headers: vec![],
            })
            .collect::<Vec<_>>();
        RecordBatch {
            base_offset,
            partition_leader_epoch: 0,
            last_offset_delta: values.len() as i32 - 1,
            first_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_000,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records: ControlBatchOrRecords::Records(records),
            compression: RecordBatchCompression::NoCompression,
            is_transactional: transactional,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        }
    }

    /// A transaction marker of `producer_id` at `offset`.
    fn marker(offset: i64, producer_id: i64, record: ControlBatchRecord) -> RecordBatch {
        RecordBatch {
            records: ControlBatchOrRecords::ControlBatch(record),
            ..batch(offset, producer_id, true, &["marker"])
        }
    }

    fn values(records: &[RecordAndOffset]) -> Vec<(i64, String)> {
        records
            .iter()
            .map(|r| {
                let value = r.record.value.clone().unwrap_or_default();
                (r.offset, String::from_utf8(value).unwrap())
            })
            .collect()
    }

    #[test]
    fn aborted_transactions_are_dropped_and_committed_ones_kept() {
        let batches = vec![
            batch(0, 7, true, &["a1", "a2"]), // producer 7, aborted below
            batch(2, 8, true, &["c1"]),       // producer 8, committed
            batch(3, -1, false, &["plain"]),  // no transaction
            marker(4, 7, ControlBatchRecord::Abort),
            marker(5, 8, ControlBatchRecord::Commit),
            batch(6, 7, true, &["b1"]), // producer 7 again, a new transaction
        ];
        let (records, next) = extract_records(batches, 0, vec![(0, 7)]).unwrap();
        assert_eq!(
            values(&records),
            vec![
                (2, "c1".to_owned()),
                (3, "plain".to_owned()),
                (6, "b1".to_owned())
            ]
        );
        assert_eq!(next, 7);
    }

    #[test]
    fn an_aborted_transaction_is_dropped_only_from_its_first_offset() {
        // Producer 7 committed a transaction at 0..2 and aborted the one starting at 3.
        let batches = vec![
            batch(0, 7, true, &["kept"]),
            marker(1, 7, ControlBatchRecord::Commit),
            batch(2, 7, true, &["dropped"]),
            marker(3, 7, ControlBatchRecord::Abort),
        ];
        let (records, next) = extract_records(batches, 0, vec![(2, 7)]).unwrap();
        assert_eq!(values(&records), vec![(0, "kept".to_owned())]);
        assert_eq!(next, 4);
    }

    #[test]
    fn the_next_offset_is_past_a_final_marker_and_records_before_the_request_are_cut() {
        let batches = vec![
            batch(10, 3, true, &["x", "y", "z"]),
            marker(13, 3, ControlBatchRecord::Commit),
        ];
        let (records, next) = extract_records(batches, 11, vec![]).unwrap();
        assert_eq!(
            values(&records),
            vec![(11, "y".to_owned()), (12, "z".to_owned())]
        );
        assert_eq!(next, 14, "one past the marker, not past the last record");
    }

    #[test]
    fn an_empty_response_goes_on_from_the_requested_offset() {
        let (records, next) = extract_records(vec![], 42, vec![]).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 42);
    }

    /// store-events patch 4: the broker the cached metadata names as leader says another
    /// broker leads (the leader moved). The cached answer must be dropped, or every retry
    /// reads it again and goes back to the old leader, forever (no backoff deadline).
    #[tokio::test]
    async fn a_leader_that_moved_is_found_although_the_cached_metadata_names_the_old_one() {
        use crate::client::{ClientBuilder, fake_broker};
        use std::sync::atomic::Ordering;
        use std::time::Duration;

        // Broker 0's first answer (the client's start-up metadata, cached) names broker 1;
        // later answers, and brokers 1 and 2 themselves, name broker 2.
        let script: fake_broker::Script =
            Arc::new(|broker, nth| if broker == 0 && nth == 0 { 1 } else { 2 });
        let cluster = fake_broker::start(3, "t", script).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            client.partition_client("t", 0, UnknownTopicHandling::Error),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "the new leader was not found within 10 s: {found:?}"
        );
        let asked: Vec<usize> = cluster
            .metadata_requests
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect();
        // The start-up answer (broker 0), the old leader's own (broker 1), and at least
        // one refresh: over the bootstrap connection, or (store-events patch 13) over the
        // connection the partition shares with broker 1.
        assert!(
            asked[0] + asked[1] >= 3,
            "the cached metadata was never refreshed: {asked:?}"
        );
        assert!(asked[2] >= 1, "the new leader was never asked: {asked:?}");
    }

    /// store-events patch 13: the partitions a broker leads share one connection to it,
    /// opened once although every partition asks at the same time; metadata goes over
    /// it too, and the connection of the first metadata request is closed.
    #[tokio::test]
    async fn the_partitions_of_a_broker_share_one_connection() {
        use crate::client::{ClientBuilder, fake_broker};
        use std::sync::atomic::Ordering;
        use std::time::Duration;

        let cluster = fake_broker::start(2, "t", Arc::new(|_, _| 1)).await;
        cluster.partitions.store(16, Ordering::SeqCst);
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let partitions = futures::future::join_all(
            (0..16).map(|p| client.partition_client("t", p, UnknownTopicHandling::Error)),
        )
        .await;
        let partitions: Vec<PartitionClient> = partitions.into_iter().map(Result::unwrap).collect();
        let connections =
            futures::future::join_all(partitions.iter().map(|p| async move { p.get().await }))
                .await;
        let connections: Vec<_> = connections.into_iter().map(|c| c.unwrap().0).collect();
        assert!(
            connections.iter().all(|c| Arc::ptr_eq(c, &connections[0])),
            "every partition has the leader's one connection"
        );
        // Metadata now goes over the shared connection; the first one is closed.
        client.list_topics().await.unwrap();
        let open = || -> Vec<usize> {
            cluster
                .open
                .iter()
                .map(|o| o.load(Ordering::SeqCst))
                .collect()
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while open() != [0, 1] {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("one connection, to the leader: {:?}", open()));
        drop(connections);
        drop(partitions);
        drop(client);
    }

    /// store-events patch 13: the connection of the first metadata request, to the
    /// broker that leads the partitions, becomes their shared connection: a (re)start
    /// opens one connection to that broker, not two.
    #[tokio::test]
    async fn the_first_connection_becomes_the_shared_one_of_its_broker() {
        use crate::client::{ClientBuilder, fake_broker};
        use std::sync::atomic::Ordering;

        let cluster = fake_broker::start(1, "t", Arc::new(|_, _| 0)).await;
        cluster.partitions.store(4, Ordering::SeqCst);
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        for partition in 0..4 {
            let partition = client
                .partition_client("t", partition, UnknownTopicHandling::Error)
                .await
                .unwrap();
            (&partition).get().await.unwrap();
        }
        client.list_topics().await.unwrap();
        assert_eq!(cluster.open[0].load(Ordering::SeqCst), 1);
    }

    /// store-events patch 14: a fetch that waits for records goes on the leader's second
    /// connection, shared by the partitions' waiting fetches and by the group clients when
    /// the leader is their coordinator; a fetch that does not wait goes on the shared one.
    /// Two connections to the broker, whatever the partition count.
    #[tokio::test]
    async fn fetches_that_wait_go_on_the_leaders_second_connection() {
        use crate::client::{ClientBuilder, fake_broker};
        use std::sync::atomic::Ordering;
        use std::time::Duration;

        let groups = fake_broker::GroupScript {
            coordinator: Arc::new(|_, _| 1),
            commit_error: Arc::new(|_, _| 0),
            heartbeat_error: Arc::new(|_, _| 0),
            describe_error: Arc::new(|_, _| 0),
        };
        let cluster =
            fake_broker::start_with_groups(2, "t", Arc::new(|_, _| 1), Some(groups)).await;
        cluster.partitions.store(8, Ordering::SeqCst);
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let mut partitions = vec![];
        for partition in 0..8 {
            partitions.push(
                client
                    .partition_client("t", partition, UnknownTopicHandling::Error)
                    .await
                    .unwrap(),
            );
        }
        let mut at_once = vec![];
        let mut waiting = vec![];
        for partition in &partitions {
            at_once.push(partition.fetch_connection(0).await.unwrap().0);
            waiting.push(partition.fetch_connection(500).await.unwrap().0);
        }
        assert!(at_once.iter().all(|c| Arc::ptr_eq(c, &at_once[0])));
        assert!(waiting.iter().all(|c| Arc::ptr_eq(c, &waiting[0])));
        assert!(
            !Arc::ptr_eq(&at_once[0], &waiting[0]),
            "a fetch that waits must not share the connection of those that do not"
        );
        let group = client.group_client("g");
        tokio::time::timeout(
            Duration::from_secs(10),
            group.commit_offsets("t", &[(0, 5)]),
        )
        .await
        .unwrap()
        .unwrap();
        let open = || -> Vec<usize> {
            cluster
                .open
                .iter()
                .map(|o| o.load(Ordering::SeqCst))
                .collect()
        };
        // Broker 0's bootstrap connection is closed once unused; broker 1 (the leader and
        // the coordinator): the shared connection and the waiting one.
        tokio::time::timeout(Duration::from_secs(5), async {
            while open()[1] != 2 || open()[0] > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("two connections to the leader: {:?}", open()));
        drop((at_once, waiting, partitions, group, client));
    }

    /// store-events patch 6.
    #[test]
    fn offsets_that_overflow_are_an_invalid_response_not_a_panic() {
        for base_offset in [i64::MAX, i64::MAX - 1] {
            let result =
                extract_records(vec![batch(base_offset, -1, false, &["a", "b"])], 0, vec![]);
            assert!(
                matches!(&result, Err(Error::InvalidResponse(m)) if m.contains("Offset overflow")),
                "{result:?}"
            );
        }
        // The last offset Kafka can hold is still read.
        let (records, next) =
            extract_records(vec![batch(i64::MAX - 2, -1, false, &["a", "b"])], 0, vec![]).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [i64::MAX - 2, i64::MAX - 1]
        );
        assert_eq!(next, i64::MAX);
    }
}
