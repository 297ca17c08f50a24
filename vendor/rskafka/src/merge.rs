//! store-events patch 13: the requests of several partitions to one broker, merged.
//!
//! A Kafka broker reads one request of a connection at a time and answers it before it
//! reads the next, so partitions that share a connection must share requests: otherwise a
//! fetch that waits for records (`max_wait_ms`) holds back every other partition's fetch
//! and produce behind it. The Java client and librdkafka send one fetch per broker for all
//! of its partitions, and one produce request with the batches of several partitions.
//!
//! Here each partition client keeps asking for its own partition, as before; a
//! [`Merger`] on the connection gathers the requests that arrive while one is in flight
//! and sends them as one when it is answered (the way a database merges the commits that
//! wait for one disk write). Each caller gets a response with its own partitions only,
//! so per-partition errors stay per partition. A request alone on the connection goes out
//! at once, as before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use tokio::sync::oneshot;

use crate::messenger::{Received, RequestError};
use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error as ApiError,
    messages::{
        FetchRequest, FetchRequestPartition, FetchRequestTopic, FetchResponse,
        FetchResponseAbortedTransaction, FetchResponsePartition, FetchResponseTopic,
        ProduceRequest, ProduceRequestPartitionData, ProduceResponse,
        ProduceResponsePartitionResponse, ProduceResponseResponse, ReadVersionedError,
        ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
        read_versioned_array,
    },
    primitives::{Int16, Int32, Int64, NullableBytes, Records, String_},
    traits::{ReadError, ReadType, WriteType},
};

/// A merged fetch's response holds at most this many times the largest part's size
/// (store-events patch 14: 2, was 16). The records of a response are decoded together and
/// held while the partitions take them, so the memory of an instance reading 64 partitions
/// stays that of one reading two; the partitions a response leaves out are fetched again
/// at once (`FetchedRecords::last_stable_offset` says their records are there).
pub(crate) const MERGED_FETCH_PARTS: i64 = 2;

/// One caller's request, as a part of a merged one.
pub(crate) trait Part: Send + Sync + 'static {
    /// The request that carries several parts.
    type Merged: RequestBody<ResponseBody = Self::Response> + WriteVersionedType<Vec<u8>> + Send;
    /// The response of the merged request, and of each part.
    type Response: Send + 'static;

    /// Whether `self` may go in one request with `other` (the request-wide fields agree).
    fn compatible(&self, other: &Self) -> bool;

    /// The topic partitions it asks for.
    fn topic_partitions(&self) -> Vec<(String, i32)>;

    /// One request for all of `parts`.
    fn merge(parts: &[Arc<Self>]) -> Self::Merged;

    /// Each part's share of the response, in the order of `parts`.
    fn split(parts: &[Arc<Self>], response: Self::Response) -> Vec<Self::Response>;
}

/// A part waiting for its round, and where its answer goes.
struct Waiting<P: Part> {
    part: Arc<P>,
    answer: oneshot::Sender<Result<P::Response, RequestError>>,
}

struct Queue<P: Part> {
    /// Whether a driver is sending rounds.
    running: bool,
    waiting: VecDeque<Waiting<P>>,
}

/// The parts of one connection waiting to be sent.
pub(crate) struct Merger<P: Part> {
    queue: Mutex<Queue<P>>,
}

impl<P: Part> std::fmt::Debug for Merger<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue.lock();
        f.debug_struct("Merger")
            .field("running", &queue.running)
            .field("waiting", &queue.waiting.len())
            .finish()
    }
}

impl<P: Part> Default for Merger<P> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                running: false,
                waiting: VecDeque::new(),
            }),
        }
    }
}

impl<P: Part> Merger<P> {
    /// Queues `part`; `true` when the caller must start a driver (none is running).
    pub(crate) fn enqueue(
        &self,
        part: Arc<P>,
    ) -> (bool, oneshot::Receiver<Result<P::Response, RequestError>>) {
        let (answer, receiver) = oneshot::channel();
        let mut queue = self.queue.lock();
        queue.waiting.push_back(Waiting { part, answer });
        let start = !queue.running;
        queue.running = true;
        (start, receiver)
    }

    /// The next round: the oldest waiting part and every later one compatible with it that
    /// asks for none of the same partitions, oldest first. Parts whose caller gave up are
    /// dropped unsent. Empty (and the driver stops) when nothing waits.
    fn next_round(&self) -> Vec<Waiting<P>> {
        let mut queue = self.queue.lock();
        queue.waiting.retain(|waiting| !waiting.answer.is_closed());
        let mut round: Vec<Waiting<P>> = Vec::new();
        let mut taken = HashSet::new();
        let mut kept = VecDeque::new();
        while let Some(waiting) = queue.waiting.pop_front() {
            let partitions = waiting.part.topic_partitions();
            let fits = round
                .first()
                .is_none_or(|first| first.part.compatible(&waiting.part))
                && partitions.iter().all(|tp| !taken.contains(tp));
            if fits {
                taken.extend(partitions);
                round.push(waiting);
            } else {
                kept.push_back(waiting);
            }
        }
        queue.waiting = kept;
        if round.is_empty() {
            queue.running = false;
        }
        round
    }

    /// Sends rounds until nothing waits; `send` sends one merged request and receives
    /// its response. A response is decoded and handed out by a task of its own, so that
    /// the next round is on the wire while it is: at most one merged request in flight
    /// per connection, as the Java client keeps one fetch in flight per broker, without
    /// the decoding (decompression, for fetches) holding the connection idle.
    pub(crate) async fn drive<F, Fut>(&self, send: F)
    where
        F: Fn(P::Merged) -> Fut,
        Fut: std::future::Future<Output = Result<Received<P::Merged>, RequestError>>,
        P::Response: ReadVersionedType<std::io::Cursor<Vec<u8>>>,
    {
        loop {
            let round = self.next_round();
            if round.is_empty() {
                return;
            }
            let parts: Vec<Arc<P>> = round.iter().map(|w| Arc::clone(&w.part)).collect();
            let received = send(P::merge(&parts)).await;
            tokio::spawn(async move {
                let answers: Vec<Result<P::Response, RequestError>> =
                    match received.and_then(Received::decode) {
                        Ok(response) => P::split(&parts, response).into_iter().map(Ok).collect(),
                        Err(error) => shared_error(error, parts.len()),
                    };
                // The caller gets its part back unshared (it may renumber it and send it
                // again).
                drop(parts);
                for (Waiting { part, answer }, result) in round.into_iter().zip(answers) {
                    drop(part);
                    answer.send(result).ok();
                }
            });
        }
    }
}

/// The error of a merged request for each of its `n` parts. An error that poisoned the
/// connection is the same for all; any other (a version the broker does not serve, a
/// response that cannot be read) goes to all as [`RequestError::Merged`], which is not
/// retried, as those errors are not. A request of one part gets its error as it came.
fn shared_error<T>(error: RequestError, n: usize) -> Vec<Result<T, RequestError>> {
    if n == 1 {
        return vec![Err(error)];
    }
    let shared = match error {
        RequestError::Poisoned(poison) => {
            return (0..n)
                .map(|_| Err(RequestError::Poisoned(Arc::clone(&poison))))
                .collect();
        }
        other => Arc::new(other),
    };
    (0..n)
        .map(|_| Err(RequestError::Merged(Arc::clone(&shared))))
        .collect()
}

/// A fetch response whose records are not decoded yet: a merged fetch's response is only
/// split by the connection's driver, and each caller decodes (decompresses) its own
/// partitions' records, in its own task, while the next round is on the wire.
#[derive(Debug)]
pub struct RawFetchResponse {
    pub throttle_time_ms: Option<Int32>,
    pub responses: Vec<RawFetchResponseTopic>,
}

/// A topic of a [`RawFetchResponse`].
#[derive(Debug)]
pub struct RawFetchResponseTopic {
    pub topic: String_,
    pub partitions: Vec<RawFetchResponsePartition>,
}

/// A partition of a [`RawFetchResponse`]: `FetchResponsePartition` with its records' bytes.
#[derive(Debug)]
pub struct RawFetchResponsePartition {
    pub partition_index: Int32,
    pub error_code: Option<ApiError>,
    pub high_watermark: Int64,
    pub last_stable_offset: Option<Int64>,
    pub aborted_transactions: Vec<FetchResponseAbortedTransaction>,
    pub records: Vec<u8>,
}

impl<R: Read> ReadVersionedType<R> for RawFetchResponsePartition {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!(v <= 4);
        Ok(Self {
            partition_index: Int32::read(reader)?,
            error_code: ApiError::new(Int16::read(reader)?.0),
            high_watermark: Int64::read(reader)?,
            last_stable_offset: (v >= 4).then(|| Int64::read(reader)).transpose()?,
            aborted_transactions: (v >= 4)
                .then(|| read_versioned_array(reader, version))
                .transpose()?
                .flatten()
                .unwrap_or_default(),
            records: NullableBytes::read(reader)?.0.unwrap_or_default(),
        })
    }
}

impl<R: Read> ReadVersionedType<R> for RawFetchResponseTopic {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        Ok(Self {
            topic: String_::read(reader)?,
            partitions: read_versioned_array(reader, version)?.unwrap_or_default(),
        })
    }
}

impl<R: Read> ReadVersionedType<R> for RawFetchResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!(v <= 4);
        Ok(Self {
            throttle_time_ms: (v >= 1).then(|| Int32::read(reader)).transpose()?,
            responses: read_versioned_array(reader, version)?.unwrap_or_default(),
        })
    }
}

impl RawFetchResponse {
    /// The response with its records decoded, as `FetchRequest`'s own response reads.
    pub fn decode(self) -> Result<FetchResponse, ReadError> {
        let mut responses = Vec::with_capacity(self.responses.len());
        for topic in self.responses {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                partitions.push(FetchResponsePartition {
                    partition_index: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    aborted_transactions: p.aborted_transactions,
                    records: Records::from_bytes(p.records)?,
                });
            }
            responses.push(FetchResponseTopic {
                topic: topic.topic,
                partitions,
            });
        }
        Ok(FetchResponse {
            throttle_time_ms: self.throttle_time_ms,
            responses,
        })
    }
}

/// A merged fetch: written as `FetchRequest` is, read as a [`RawFetchResponse`].
#[derive(Debug)]
pub(crate) struct MergedFetch(pub(crate) FetchRequest);

impl<W: Write> WriteVersionedType<W> for MergedFetch {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        self.0.write_versioned(writer, version)
    }
}

impl RequestBody for MergedFetch {
    type ResponseBody = RawFetchResponse;
    const API_KEY: ApiKey = <FetchRequest as RequestBody>::API_KEY;
    const API_VERSION_RANGE: ApiVersionRange = <FetchRequest as RequestBody>::API_VERSION_RANGE;
    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion =
        <FetchRequest as RequestBody>::FIRST_TAGGED_FIELD_IN_REQUEST_VERSION;
    const FIRST_TAGGED_FIELD_IN_RESPONSE_VERSION: ApiVersion =
        <FetchRequest as RequestBody>::FIRST_TAGGED_FIELD_IN_RESPONSE_VERSION;
}

impl Part for FetchRequest {
    type Merged = MergedFetch;
    type Response = RawFetchResponse;

    fn compatible(&self, other: &Self) -> bool {
        self.replica_id == other.replica_id && self.isolation_level == other.isolation_level
    }

    fn topic_partitions(&self) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.0.clone(), p.partition.0))
            })
            .collect()
    }

    /// The partitions grouped by topic, in a random order: a broker fills the response up
    /// to its size limit in the order asked, so no partition may always be last. The
    /// shortest wait and the smallest minimum of the parts, so that no part waits longer
    /// than it asked. The response's size limit is the sum of the parts' up to
    /// `MERGED_FETCH_PARTS` times the largest: the records of a response are decoded at
    /// once, so 64 partitions must not bring 64 partitions' worth into memory.
    fn merge(parts: &[Arc<Self>]) -> MergedFetch {
        let mut order: Vec<&Arc<Self>> = parts.iter().collect();
        order.shuffle(&mut rand::thread_rng());
        let mut topics: Vec<FetchRequestTopic> = Vec::new();
        for part in order {
            for topic in &part.topics {
                let partitions = topic.partitions.iter().map(|p| FetchRequestPartition {
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes,
                });
                match topics.iter_mut().find(|t| t.topic.0 == topic.topic.0) {
                    Some(merged) => merged.partitions.extend(partitions),
                    None => topics.push(FetchRequestTopic {
                        topic: String_(topic.topic.0.clone()),
                        partitions: partitions.collect(),
                    }),
                }
            }
        }
        let sizes: Option<Vec<i64>> = parts
            .iter()
            .map(|p| p.max_bytes.map(|b| i64::from(b.0)))
            .collect();
        let max_bytes = sizes.map(|sizes| {
            let largest = sizes.iter().copied().max().unwrap_or(0);
            let limit = sizes
                .iter()
                .sum::<i64>()
                .min(largest.saturating_mul(MERGED_FETCH_PARTS));
            Int32(limit.min(i64::from(i32::MAX)) as i32)
        });
        MergedFetch(FetchRequest {
            replica_id: parts[0].replica_id,
            max_wait_ms: Int32(parts.iter().map(|p| p.max_wait_ms.0).min().unwrap_or(0)),
            min_bytes: Int32(parts.iter().map(|p| p.min_bytes.0).min().unwrap_or(1)),
            max_bytes,
            isolation_level: parts[0].isolation_level,
            topics,
        })
    }

    fn split(parts: &[Arc<Self>], response: RawFetchResponse) -> Vec<RawFetchResponse> {
        if parts.len() == 1 {
            return vec![response];
        }
        let throttle_time_ms = response.throttle_time_ms;
        let mut answered: HashMap<(String, i32), RawFetchResponsePartition> = HashMap::new();
        for topic in response.responses {
            for partition in topic.partitions {
                answered.insert(
                    (topic.topic.0.clone(), partition.partition_index.0),
                    partition,
                );
            }
        }
        parts
            .iter()
            .map(|part| RawFetchResponse {
                throttle_time_ms,
                responses: part
                    .topics
                    .iter()
                    .map(|topic| RawFetchResponseTopic {
                        topic: String_(topic.topic.0.clone()),
                        partitions: topic
                            .partitions
                            .iter()
                            .filter_map(|p| {
                                answered.remove(&(topic.topic.0.clone(), p.partition.0))
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The produce requests of several partitions as one: the same acks, timeout and
/// transactional id, every part's batches grouped by topic, written as `ProduceRequest` is.
#[derive(Debug)]
pub(crate) struct MergedProduce {
    parts: Vec<Arc<ProduceRequest>>,
}

impl MergedProduce {
    /// Each topic with the partition data of every part, in the order of the parts.
    fn topics(&self) -> Vec<(&String_, Vec<&ProduceRequestPartitionData>)> {
        let mut topics: Vec<(&String_, Vec<&ProduceRequestPartitionData>)> = Vec::new();
        for topic in self.parts.iter().flat_map(|p| p.topic_data.iter()) {
            match topics.iter_mut().find(|(name, _)| name.0 == topic.name.0) {
                Some((_, partitions)) => partitions.extend(topic.partition_data.iter()),
                None => topics.push((&topic.name, topic.partition_data.iter().collect())),
            }
        }
        topics
    }
}

impl<W: Write> WriteVersionedType<W> for MergedProduce {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!(v <= 7);
        let first = &self.parts[0];
        if v >= 3 {
            first.transactional_id.write(writer)?;
        }
        first.acks.write(writer)?;
        first.timeout_ms.write(writer)?;
        let topics = self.topics();
        Int32(topics.len() as i32).write(writer)?;
        for (name, partitions) in topics {
            name.write(writer)?;
            Int32(partitions.len() as i32).write(writer)?;
            for partition in partitions {
                partition.write_versioned(writer, version)?;
            }
        }
        Ok(())
    }
}

impl RequestBody for MergedProduce {
    type ResponseBody = ProduceResponse;
    const API_KEY: ApiKey = <ProduceRequest as RequestBody>::API_KEY;
    const API_VERSION_RANGE: ApiVersionRange = <ProduceRequest as RequestBody>::API_VERSION_RANGE;
    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion =
        <ProduceRequest as RequestBody>::FIRST_TAGGED_FIELD_IN_REQUEST_VERSION;
    const FIRST_TAGGED_FIELD_IN_RESPONSE_VERSION: ApiVersion =
        <ProduceRequest as RequestBody>::FIRST_TAGGED_FIELD_IN_RESPONSE_VERSION;
}

impl Part for ProduceRequest {
    type Merged = MergedProduce;
    type Response = ProduceResponse;

    fn compatible(&self, other: &Self) -> bool {
        self.acks == other.acks
            && self.timeout_ms == other.timeout_ms
            && self.transactional_id == other.transactional_id
    }

    fn topic_partitions(&self) -> Vec<(String, i32)> {
        self.topic_data
            .iter()
            .flat_map(|t| {
                t.partition_data
                    .iter()
                    .map(|p| (t.name.0.clone(), p.index.0))
            })
            .collect()
    }

    fn merge(parts: &[Arc<Self>]) -> MergedProduce {
        MergedProduce {
            parts: parts.to_vec(),
        }
    }

    fn split(parts: &[Arc<Self>], response: ProduceResponse) -> Vec<ProduceResponse> {
        if parts.len() == 1 {
            return vec![response];
        }
        let throttle_time_ms = response.throttle_time_ms;
        let mut answered: HashMap<(String, i32), ProduceResponsePartitionResponse> = HashMap::new();
        for topic in response.responses {
            for partition in topic.partition_responses {
                answered.insert((topic.name.0.clone(), partition.index.0), partition);
            }
        }
        parts
            .iter()
            .map(|part| ProduceResponse {
                throttle_time_ms,
                responses: part
                    .topic_data
                    .iter()
                    .map(|topic| ProduceResponseResponse {
                        name: String_(topic.name.0.clone()),
                        partition_responses: topic
                            .partition_data
                            .iter()
                            .filter_map(|p| answered.remove(&(topic.name.0.clone(), p.index.0)))
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::Notify;

    use super::*;
    use crate::client::partition::{Compression, build_fetch_request, build_produce_request};
    use crate::messenger::Messenger;
    use crate::record::Record;

    fn key(api_key: ApiKey) -> i16 {
        Int16::from(api_key).0
    }

    /// What the scripted broker read of one request: the API key, `max_wait_ms` and
    /// `max_bytes` of a fetch (0 for a produce), and the partitions asked for.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        api_key: i16,
        max_wait_ms: i32,
        max_bytes: i32,
        partitions: Vec<i32>,
    }

    struct Cursor<'a>(&'a [u8]);

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            head
        }
        fn i16(&mut self) -> i16 {
            i16::from_be_bytes(self.take(2).try_into().unwrap())
        }
        fn i32(&mut self) -> i32 {
            i32::from_be_bytes(self.take(4).try_into().unwrap())
        }
        fn skip_string(&mut self) {
            let len = self.i16();
            self.take(len.max(0) as usize);
        }
    }

    /// A broker on the other end of `stream`, reading one request at a time as Kafka does.
    /// The first request is answered only once `release` is notified, so that others
    /// queue behind it. A fetch is answered with no records, high watermark 100 +
    /// partition, and `NOT_LEADER_OR_FOLLOWER` for partition 2; a produce with base
    /// offset 1000 × partition. `hang_up_after`: requests answered before it closes.
    async fn broker(
        mut stream: DuplexStream,
        seen: Arc<StdMutex<Vec<Seen>>>,
        release: Arc<Notify>,
        hang_up_after: usize,
    ) {
        let mut answered = 0;
        loop {
            let Ok(len) = stream.read_i32().await else {
                return;
            };
            let mut request = vec![0u8; len as usize];
            stream.read_exact(&mut request).await.unwrap();
            let mut c = Cursor(&request);
            let api_key = c.i16();
            let _version = c.i16();
            let correlation_id = c.i32();
            c.skip_string(); // client id
            let (mut max_wait_ms, mut max_bytes, mut topics) = (0, 0, Vec::new());
            if api_key == key(ApiKey::Fetch) {
                c.i32(); // replica id
                max_wait_ms = c.i32();
                c.i32(); // min bytes
                max_bytes = c.i32();
                c.take(1); // isolation level
                for _ in 0..c.i32() {
                    let name_len = c.i16() as usize;
                    let name = String::from_utf8(c.take(name_len).to_vec()).unwrap();
                    let mut partitions = Vec::new();
                    for _ in 0..c.i32() {
                        partitions.push(c.i32());
                        c.take(8 + 4); // offset, partition max bytes
                    }
                    topics.push((name, partitions));
                }
            } else {
                c.skip_string(); // transactional id
                c.take(2 + 4); // acks, timeout
                for _ in 0..c.i32() {
                    let name_len = c.i16() as usize;
                    let name = String::from_utf8(c.take(name_len).to_vec()).unwrap();
                    let mut partitions = Vec::new();
                    for _ in 0..c.i32() {
                        partitions.push(c.i32());
                        let records = c.i32();
                        c.take(records as usize);
                    }
                    topics.push((name, partitions));
                }
            }
            seen.lock().unwrap().push(Seen {
                api_key,
                max_wait_ms,
                max_bytes,
                partitions: topics.iter().flat_map(|(_, p)| p.clone()).collect(),
            });
            if answered == 0 {
                release.notified().await;
            }
            if answered == hang_up_after {
                return;
            }
            answered += 1;
            let mut body = Vec::new();
            if api_key == key(ApiKey::Fetch) {
                body.extend_from_slice(&0i32.to_be_bytes()); // throttle
            }
            body.extend_from_slice(&(topics.len() as i32).to_be_bytes());
            for (name, partitions) in &topics {
                body.extend_from_slice(&(name.len() as i16).to_be_bytes());
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
                // Answered in the opposite order: the split must not rely on it.
                for &partition in partitions.iter().rev() {
                    body.extend_from_slice(&partition.to_be_bytes());
                    if api_key == key(ApiKey::Fetch) {
                        let error: i16 = if partition == 2 { 6 } else { 0 };
                        body.extend_from_slice(&error.to_be_bytes());
                        body.extend_from_slice(&(100 + i64::from(partition)).to_be_bytes());
                        body.extend_from_slice(&(100 + i64::from(partition)).to_be_bytes()); // LSO
                        body.extend_from_slice(&0i32.to_be_bytes()); // aborted transactions
                        body.extend_from_slice(&0i32.to_be_bytes()); // records
                    } else {
                        body.extend_from_slice(&0i16.to_be_bytes());
                        body.extend_from_slice(&(1000 * i64::from(partition)).to_be_bytes());
                        body.extend_from_slice(&(-1i64).to_be_bytes()); // log append time
                    }
                }
            }
            if api_key == key(ApiKey::Produce) {
                body.extend_from_slice(&0i32.to_be_bytes()); // throttle
            }
            let mut response = ((body.len() + 4) as i32).to_be_bytes().to_vec();
            response.extend_from_slice(&correlation_id.to_be_bytes());
            response.extend_from_slice(&body);
            stream.write_all(&response).await.unwrap();
        }
    }

    struct Setup {
        messenger: Arc<Messenger<DuplexStream>>,
        seen: Arc<StdMutex<Vec<Seen>>>,
        release: Arc<Notify>,
    }

    fn setup(hang_up_after: usize) -> Setup {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let mut messenger = Messenger::new(ours, 1 << 20, Arc::from("merge-test"));
        messenger.set_version_ranges(HashMap::from([
            (
                ApiKey::Fetch,
                ApiVersionRange::new(ApiVersion(Int16(4)), ApiVersion(Int16(4))),
            ),
            (
                ApiKey::Produce,
                ApiVersionRange::new(ApiVersion(Int16(3)), ApiVersion(Int16(3))),
            ),
        ]));
        let (seen, release) = (Arc::default(), Arc::new(Notify::new()));
        tokio::spawn(broker(
            theirs,
            Arc::clone(&seen),
            Arc::clone(&release),
            hang_up_after,
        ));
        Setup {
            messenger: Arc::new(messenger),
            seen,
            release,
        }
    }

    fn fetch(partition: i32, max_wait_ms: i32) -> Arc<FetchRequest> {
        Arc::new(build_fetch_request(
            7,
            1..1001,
            max_wait_ms,
            partition,
            "events",
        ))
    }

    fn produce(partition: i32) -> Arc<ProduceRequest> {
        let record = Record {
            key: None,
            value: Some(b"{}".to_vec()),
            headers: Default::default(),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        Arc::new(build_produce_request(
            partition,
            "events",
            vec![record],
            Compression::NoCompression,
        ))
    }

    /// Waits until the broker has read `n` requests.
    async fn requests_read(seen: &StdMutex<Vec<Seen>>, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while seen.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the broker reads the requests");
    }

    #[tokio::test]
    async fn fetches_waiting_behind_one_in_flight_go_out_as_one_request() {
        let Setup {
            messenger,
            seen,
            release,
        } = setup(usize::MAX);
        let first = tokio::spawn({
            let messenger = Arc::clone(&messenger);
            async move { messenger.fetch_merged(fetch(0, 500)).await }
        });
        requests_read(&seen, 1).await;
        let waiting: Vec<_> = [(1, 500), (2, 200), (3, 900)]
            .into_iter()
            .map(|(partition, wait)| {
                let messenger = Arc::clone(&messenger);
                tokio::spawn(async move { messenger.fetch_merged(fetch(partition, wait)).await })
            })
            .collect();
        // Let the three queue behind the first, then answer it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();

        let first = first.await.unwrap().unwrap();
        assert_eq!(first.responses[0].partitions.len(), 1);
        assert_eq!(first.responses[0].partitions[0].high_watermark.0, 100);
        for (task, partition) in waiting.into_iter().zip([1, 2, 3]) {
            let response = task.await.unwrap().unwrap();
            // Each caller gets its own partition only, with its own error.
            let partitions = &response.responses[0].partitions;
            assert_eq!(partitions.len(), 1);
            assert_eq!(partitions[0].partition_index.0, partition);
            assert_eq!(partitions[0].high_watermark.0, 100 + i64::from(partition));
            assert_eq!(partitions[0].error_code.is_some(), partition == 2);
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].partitions, [0]);
        // The three in one request, oldest first, waiting the least any of them asked,
        // with room for the sum of their sizes up to twice the largest.
        let mut merged = seen[1].partitions.clone();
        merged.sort_unstable();
        assert_eq!(merged, [1, 2, 3]);
        assert_eq!(seen[1].max_wait_ms, 200);
        assert_eq!(seen[1].max_bytes, 2 * 1000);
    }

    #[tokio::test]
    async fn a_produce_request_carries_the_batches_of_several_partitions() {
        let Setup {
            messenger,
            seen,
            release,
        } = setup(usize::MAX);
        let first = tokio::spawn({
            let messenger = Arc::clone(&messenger);
            async move { messenger.produce_merged(produce(0)).await }
        });
        requests_read(&seen, 1).await;
        let waiting: Vec<_> = [1, 2, 3]
            .into_iter()
            .map(|partition| {
                let messenger = Arc::clone(&messenger);
                let request = produce(partition);
                tokio::spawn(async move {
                    let response = messenger.produce_merged(Arc::clone(&request)).await;
                    // The caller has its request back unshared (patch 9 renumbers it).
                    (response, Arc::strong_count(&request))
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();

        assert_eq!(
            first.await.unwrap().unwrap().responses[0].partition_responses[0]
                .base_offset
                .0,
            0
        );
        for (task, partition) in waiting.into_iter().zip([1, 2, 3]) {
            let (response, references) = task.await.unwrap();
            let response = response.unwrap();
            let partitions = &response.responses[0].partition_responses;
            assert_eq!(partitions.len(), 1);
            assert_eq!(partitions[0].index.0, partition);
            assert_eq!(partitions[0].base_offset.0, 1000 * i64::from(partition));
            assert_eq!(references, 1);
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].partitions, [1, 2, 3]);
        assert_eq!(seen[1].api_key, key(ApiKey::Produce));
    }

    #[tokio::test]
    async fn a_part_whose_caller_gave_up_is_not_sent() {
        let Setup {
            messenger,
            seen,
            release,
        } = setup(usize::MAX);
        let first = tokio::spawn({
            let messenger = Arc::clone(&messenger);
            async move { messenger.produce_merged(produce(0)).await }
        });
        requests_read(&seen, 1).await;
        let given_up = tokio::spawn({
            let messenger = Arc::clone(&messenger);
            async move { messenger.produce_merged(produce(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        given_up.abort();
        assert!(given_up.await.unwrap_err().is_cancelled());
        release.notify_one();
        first.await.unwrap().unwrap();
        // Anything still queued would be sent right after the first answer.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
    }

    #[tokio::test]
    async fn the_same_partition_twice_waits_for_the_next_round() {
        let Setup {
            messenger,
            seen,
            release,
        } = setup(usize::MAX);
        let tasks: Vec<_> = [0, 1, 1]
            .into_iter()
            .map(|partition| {
                let messenger = Arc::clone(&messenger);
                tokio::spawn(async move { messenger.fetch_merged(fetch(partition, 100)).await })
            })
            .collect();
        requests_read(&seen, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let rounds: Vec<Vec<i32>> = seen.into_iter().map(|s| s.partitions).collect();
        assert_eq!(rounds.concat().iter().filter(|&&p| p == 1).count(), 2);
        assert!(
            rounds
                .iter()
                .all(|r| r.iter().filter(|&&p| p == 1).count() <= 1),
            "{rounds:?}"
        );
    }

    #[tokio::test]
    async fn a_broken_connection_fails_every_part_of_the_merged_request() {
        // The broker reads the first and the merged request and hangs up without an answer.
        let Setup {
            messenger,
            seen,
            release,
        } = setup(0);
        let tasks: Vec<_> = [0, 1, 2]
            .into_iter()
            .map(|partition| {
                let messenger = Arc::clone(&messenger);
                tokio::spawn(async move { messenger.fetch_merged(fetch(partition, 100)).await })
            })
            .collect();
        requests_read(&seen, 1).await;
        release.notify_one();
        for task in tasks {
            let error = task.await.unwrap().unwrap_err();
            assert!(matches!(error, RequestError::Poisoned(_)), "{error}");
        }
        assert!(messenger.is_poisoned());
    }

    #[test]
    fn a_merged_fetch_asks_for_at_most_twice_the_largest_part() {
        let parts: Vec<Arc<FetchRequest>> = (0..64).map(|p| fetch(p, 500)).collect();
        let MergedFetch(merged) = FetchRequest::merge(&parts);
        assert_eq!(merged.max_bytes, Some(Int32(2 * 1000)));
        let mut asked: Vec<i32> = merged.topics[0]
            .partitions
            .iter()
            .map(|p| p.partition.0)
            .collect();
        asked.sort_unstable();
        assert_eq!(asked, (0..64).collect::<Vec<_>>());
    }

    /// A fetch response read raw and decoded by its caller is the response `FetchRequest`
    /// itself reads, records included.
    #[test]
    fn a_raw_fetch_response_decodes_to_what_the_fetch_response_reads() {
        let produced = Arc::try_unwrap(produce(3)).unwrap();
        let records = &produced.topic_data[0].partition_data[0].records;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i32.to_be_bytes()); // throttle
        bytes.extend_from_slice(&1i32.to_be_bytes()); // one topic
        String_("events".to_owned()).write(&mut bytes).unwrap();
        bytes.extend_from_slice(&1i32.to_be_bytes()); // one partition
        bytes.extend_from_slice(&3i32.to_be_bytes());
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&9i64.to_be_bytes()); // high watermark
        bytes.extend_from_slice(&9i64.to_be_bytes()); // last stable offset
        bytes.extend_from_slice(&0i32.to_be_bytes()); // aborted transactions
        records.write(&mut bytes).unwrap();
        let version = ApiVersion(Int16(4));
        let raw = RawFetchResponse::read_versioned(&mut std::io::Cursor::new(&bytes), version)
            .unwrap()
            .decode()
            .unwrap();
        let read =
            FetchResponse::read_versioned(&mut std::io::Cursor::new(&bytes), version).unwrap();
        assert_eq!(format!("{raw:?}"), format!("{read:?}"));
        assert_eq!(read.responses[0].partitions[0].records.0.len(), 1);
    }

    #[test]
    fn an_error_that_did_not_break_the_connection_is_shared_as_merged() {
        let alone = shared_error::<()>(
            RequestError::NoVersionMatch {
                api_key: ApiKey::Fetch,
            },
            1,
        );
        assert!(matches!(
            alone[..],
            [Err(RequestError::NoVersionMatch { .. })]
        ));
        let shared = shared_error::<()>(
            RequestError::NoVersionMatch {
                api_key: ApiKey::Fetch,
            },
            3,
        );
        assert_eq!(shared.len(), 3);
        assert!(
            shared
                .iter()
                .all(|r| matches!(r, Err(RequestError::Merged(_))))
        );
    }
}
