//! store-events patch 4 (tests only): Kafka brokers on loopback that answer `ApiVersions`
//! and `Metadata` (v4) from a script, enough to drive the client's leader discovery
//! without a real cluster; patch 7 adds `FindCoordinator` (v1) and `OffsetCommit` (v2);
//! patch 8 `JoinGroup` (v5: a first join without member id is answered
//! `MEMBER_ID_REQUIRED`, the next completes with this member alone, as its leader) and
//! `Heartbeat` (v3, answered with `GroupScript::heartbeat_error`); patch 9
//! `InitProducerId` (v1) and `Produce` (v3) of one partition, keeping a log that, like a
//! broker, stores a batch whose producer id and sequence it has seen once, and may drop
//! the connection instead of answering (`ProduceScript`); patch 10 answers a Metadata
//! request naming another topic as a broker with `auto.create.topics.enable` would: a
//! topic named `forbidden…` with `TOPIC_AUTHORIZATION_FAILED`, any other with
//! `LEADER_NOT_AVAILABLE` (being created) when the request allows auto-creation and
//! `UNKNOWN_TOPIC_OR_PARTITION` when it does not; patch 12 `DescribeGroups` (v4: the
//! group `Stable` with one member `m-1` of client `c`, or `GroupScript::describe_error`).
//! Patch 13 counts the connections open to each broker (`FakeCluster::open`).
//! Other requests close the connection.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::protocol::{
    api_key::ApiKey,
    api_version::ApiVersion,
    messages::{ApiVersionsResponse, ApiVersionsResponseApiKey, WriteVersionedType},
    primitives::Int16,
};

/// The leader broker `broker` names for partition 0 in its `nth` Metadata answer.
pub(crate) type Script = Arc<dyn Fn(i32, usize) -> i32 + Send + Sync>;

/// store-events patch 7: what broker `broker` answers to its `nth` request of a kind.
#[derive(Clone)]
pub(crate) struct GroupScript {
    /// The coordinator named by `FindCoordinator`.
    pub(crate) coordinator: Arc<dyn Fn(i32, usize) -> i32 + Send + Sync>,
    /// The error code of every partition of an `OffsetCommit` (0: none).
    pub(crate) commit_error: Arc<dyn Fn(i32, usize) -> i16 + Send + Sync>,
    /// store-events patch 8: the error code of a `Heartbeat` (0: none).
    pub(crate) heartbeat_error: Arc<dyn Fn(i32, usize) -> i16 + Send + Sync>,
    /// store-events patch 12: the group's error code in a `DescribeGroups` (0: none).
    pub(crate) describe_error: Arc<dyn Fn(i32, usize) -> i16 + Send + Sync>,
}

/// store-events patch 9: how the brokers answer `Produce`: for the `nth` request, drop
/// the connection after storing the batch (a lost response), or refuse it with an error
/// code (nothing stored).
#[derive(Clone)]
pub(crate) struct ProduceScript {
    pub(crate) drop_response: Arc<dyn Fn(usize) -> bool + Send + Sync>,
    pub(crate) error: Arc<dyn Fn(usize) -> i16 + Send + Sync>,
    /// The error code of the `nth` `InitProducerId` (0: none).
    pub(crate) init_error: Arc<dyn Fn(i64) -> i16 + Send + Sync>,
}

/// store-events patch 9: a batch as the fake partition saw it: producer id, epoch, base
/// sequence, record count; and the log's batches with their base offsets.
pub(crate) type ProducedBatch = (i64, i16, i32, i32);

/// store-events patch 9: the fake partition's state, shared by the brokers.
#[derive(Default)]
pub(crate) struct FakeLog {
    /// Every produce request received, in order.
    pub(crate) received: Vec<ProducedBatch>,
    /// The batches stored, with their base offsets.
    pub(crate) stored: Vec<(ProducedBatch, i64)>,
    /// InitProducerId requests answered (the id handed out is 1000 + this count).
    pub(crate) producer_ids: i64,
}

/// store-events patch 7: an `OffsetCommit` a broker accepted: broker, group, generation,
/// and (topic, partition, offset) of each partition.
pub(crate) type Commit = (i32, String, i32, Vec<(String, i32, i64)>);

/// A running fake cluster.
pub(crate) struct FakeCluster {
    /// `host:port` of each broker; broker ids are the indexes.
    pub(crate) addresses: Vec<String>,
    /// Metadata requests answered, per broker.
    pub(crate) metadata_requests: Arc<Vec<AtomicUsize>>,
    /// store-events patch 7: `OffsetCommit` requests answered without error.
    pub(crate) commits: Arc<std::sync::Mutex<Vec<Commit>>>,
    /// store-events patch 9: the partition's produce requests and log.
    pub(crate) log: Arc<std::sync::Mutex<FakeLog>>,
    /// store-events patch 10: how many partitions the topic has (1 at start); raise it to
    /// add partitions, led by the same broker as partition 0.
    pub(crate) partitions: Arc<AtomicUsize>,
    /// store-events patch 13: connections open, per broker.
    pub(crate) open: Arc<Vec<AtomicUsize>>,
}

/// Starts `brokers` brokers serving one topic with one partition, replicated on all.
pub(crate) async fn start(brokers: usize, topic: &str, script: Script) -> FakeCluster {
    start_with_groups(brokers, topic, script, None).await
}

/// store-events patch 9: [`start`], with brokers that take produce requests as `produce`
/// says.
pub(crate) async fn start_with_produce(
    brokers: usize,
    topic: &str,
    script: Script,
    produce: ProduceScript,
) -> FakeCluster {
    start_full(brokers, topic, script, None, Some(produce)).await
}

/// store-events patch 7: [`start`], with brokers that also coordinate groups.
pub(crate) async fn start_with_groups(
    brokers: usize,
    topic: &str,
    script: Script,
    groups: Option<GroupScript>,
) -> FakeCluster {
    start_full(brokers, topic, script, groups, None).await
}

async fn start_full(
    brokers: usize,
    topic: &str,
    script: Script,
    groups: Option<GroupScript>,
    produce: Option<ProduceScript>,
) -> FakeCluster {
    let mut listeners = Vec::new();
    for _ in 0..brokers {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let metadata_requests = Arc::new(
        (0..brokers)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let group_requests = Arc::new(
        (0..brokers * 2)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let commits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::new(std::sync::Mutex::new(FakeLog::default()));
    let partitions = Arc::new(AtomicUsize::new(1));
    let open = Arc::new(
        (0..brokers)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    for (id, listener) in listeners.into_iter().enumerate() {
        let open = Arc::clone(&open);
        let (produce, log, partitions) =
            (produce.clone(), Arc::clone(&log), Arc::clone(&partitions));
        let (addresses, counts) = (addresses.clone(), Arc::clone(&metadata_requests));
        let (topic, script) = (topic.to_owned(), Arc::clone(&script));
        let (groups, group_requests, commits) = (
            groups.clone(),
            Arc::clone(&group_requests),
            Arc::clone(&commits),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let broker = Broker {
                    id: id as i32,
                    addresses: addresses.clone(),
                    topic: topic.clone(),
                    script: Arc::clone(&script),
                    counts: Arc::clone(&counts),
                    groups: groups.clone(),
                    group_requests: Arc::clone(&group_requests),
                    commits: Arc::clone(&commits),
                    produce: produce.clone(),
                    log: Arc::clone(&log),
                    partitions: Arc::clone(&partitions),
                };
                let open = Arc::clone(&open);
                open[id].fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    broker.serve(stream).await;
                    open[id].fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    FakeCluster {
        addresses,
        metadata_requests,
        commits,
        log,
        partitions,
        open,
    }
}

struct Broker {
    id: i32,
    addresses: Vec<String>,
    topic: String,
    script: Script,
    counts: Arc<Vec<AtomicUsize>>,
    groups: Option<GroupScript>,
    /// FindCoordinator then OffsetCommit requests, two counters per broker.
    group_requests: Arc<Vec<AtomicUsize>>,
    commits: Arc<std::sync::Mutex<Vec<Commit>>>,
    produce: Option<ProduceScript>,
    log: Arc<std::sync::Mutex<FakeLog>>,
    partitions: Arc<AtomicUsize>,
}

impl Broker {
    async fn serve(self, mut stream: TcpStream) {
        loop {
            let Ok(len) = stream.read_i32().await else {
                return;
            };
            let mut request = vec![0u8; len as usize];
            if stream.read_exact(&mut request).await.is_err() {
                return;
            }
            // Every request header starts with the API key, its version, the correlation id.
            let api_key = ApiKey::from(Int16(i16::from_be_bytes([request[0], request[1]])));
            let version = i16::from_be_bytes([request[2], request[3]]);
            let correlation_id = &request[4..8];
            let body = match api_key {
                ApiKey::ApiVersions => api_versions(version),
                ApiKey::Metadata => {
                    let nth = self.counts[self.id as usize].fetch_add(1, Ordering::SeqCst);
                    match other_topic(&request[8..], &self.topic) {
                        Some((name, auto_create)) => self.metadata_of_missing(&name, auto_create),
                        None => self.metadata((self.script)(self.id, nth)),
                    }
                }
                ApiKey::FindCoordinator if self.groups.is_some() => {
                    let nth =
                        self.group_requests[self.id as usize * 2].fetch_add(1, Ordering::SeqCst);
                    let groups = self.groups.as_ref().unwrap();
                    self.find_coordinator((groups.coordinator)(self.id, nth))
                }
                ApiKey::OffsetCommit if self.groups.is_some() => {
                    let nth = self.group_requests[self.id as usize * 2 + 1]
                        .fetch_add(1, Ordering::SeqCst);
                    let error = (self.groups.as_ref().unwrap().commit_error)(self.id, nth);
                    let commit = parse_offset_commit(&request[8..]);
                    let body = offset_commit_response(&commit.3, error);
                    if error == 0 {
                        self.commits
                            .lock()
                            .unwrap()
                            .push((self.id, commit.1, commit.2, commit.3));
                    }
                    body
                }
                ApiKey::JoinGroup if self.groups.is_some() => join_group_response(&request[8..]),
                ApiKey::InitProducerId if self.produce.is_some() => {
                    let mut log = self.log.lock().unwrap();
                    let error = (self.produce.as_ref().unwrap().init_error)(log.producer_ids);
                    log.producer_ids += 1;
                    let mut out = 0i32.to_be_bytes().to_vec(); // throttle_time_ms
                    out.extend_from_slice(&error.to_be_bytes());
                    out.extend_from_slice(&(1000 + log.producer_ids).to_be_bytes());
                    out.extend_from_slice(&0i16.to_be_bytes()); // epoch
                    out
                }
                ApiKey::Produce if self.produce.is_some() => {
                    let script = self.produce.as_ref().unwrap();
                    let batch = parse_produce(&request[8..]);
                    let (nth, answer) = {
                        let mut log = self.log.lock().unwrap();
                        let nth = log.received.len();
                        log.received.push(batch);
                        let error = (script.error)(nth);
                        let key = (batch.0, batch.2);
                        let seen = log
                            .stored
                            .iter()
                            .find(|(b, _)| (b.0, b.2) == key)
                            .map(|(_, o)| *o);
                        let offset = match (error, seen) {
                            (0, Some(offset)) => offset,
                            (0, None) => {
                                let offset =
                                    log.stored.last().map_or(0, |(b, o)| o + i64::from(b.3));
                                log.stored.push((batch, offset));
                                offset
                            }
                            _ => -1,
                        };
                        (nth, produce_response(&self.topic, error, offset))
                    };
                    if (script.drop_response)(nth) {
                        return;
                    }
                    answer
                }
                ApiKey::Heartbeat if self.groups.is_some() => {
                    let nth = self.group_requests[self.id as usize * 2 + 1]
                        .fetch_add(1, Ordering::SeqCst);
                    let error = (self.groups.as_ref().unwrap().heartbeat_error)(self.id, nth);
                    let mut out = 0i32.to_be_bytes().to_vec(); // throttle_time_ms
                    out.extend_from_slice(&error.to_be_bytes());
                    out
                }
                ApiKey::DescribeGroups if self.groups.is_some() => {
                    let nth = self.group_requests[self.id as usize * 2 + 1]
                        .fetch_add(1, Ordering::SeqCst);
                    describe_groups_response((self.groups.as_ref().unwrap().describe_error)(
                        self.id, nth,
                    ))
                }
                _ => return,
            };
            // Response header v0 (these responses are not flexible): the correlation id.
            let mut response = Vec::new();
            response.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            response.extend_from_slice(correlation_id);
            response.extend_from_slice(&body);
            if stream.write_all(&response).await.is_err() {
                return;
            }
        }
    }

    /// A FindCoordinator v1 response naming broker `id`.
    fn find_coordinator(&self, id: i32) -> Vec<u8> {
        let (host, port) = self.addresses[id as usize].rsplit_once(':').unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
        out.extend_from_slice(&0i16.to_be_bytes()); // no error
        out.extend_from_slice(&(-1i16).to_be_bytes()); // error_message: null
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(host.len() as i16).to_be_bytes());
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(&port.parse::<i32>().unwrap().to_be_bytes());
        out
    }

    /// The brokers part of a Metadata v4 response, up to and including the controller.
    fn metadata_brokers(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
        out.extend_from_slice(&(self.addresses.len() as i32).to_be_bytes());
        for (id, address) in self.addresses.iter().enumerate() {
            let (host, port) = address.rsplit_once(':').unwrap();
            out.extend_from_slice(&(id as i32).to_be_bytes());
            string(&mut out, host);
            out.extend_from_slice(&port.parse::<i32>().unwrap().to_be_bytes());
            out.extend_from_slice(&(-1i16).to_be_bytes()); // rack: null
        }
        out.extend_from_slice(&(-1i16).to_be_bytes()); // cluster_id: null
        out.extend_from_slice(&0i32.to_be_bytes()); // controller_id
        out
    }

    /// store-events patch 10: a Metadata v4 response for `name`, which this cluster does
    /// not have, as a broker that creates topics when asked would answer.
    fn metadata_of_missing(&self, name: &str, auto_create: bool) -> Vec<u8> {
        let error: i16 = match (name.starts_with("forbidden"), auto_create) {
            (true, _) => 29,     // TOPIC_AUTHORIZATION_FAILED
            (false, true) => 5,  // LEADER_NOT_AVAILABLE: being created
            (false, false) => 3, // UNKNOWN_TOPIC_OR_PARTITION
        };
        let mut out = self.metadata_brokers();
        out.extend_from_slice(&1i32.to_be_bytes()); // one topic
        out.extend_from_slice(&error.to_be_bytes());
        string(&mut out, name);
        out.push(0); // is_internal
        out.extend_from_slice(&0i32.to_be_bytes()); // no partitions
        out
    }

    /// A Metadata v4 response naming every broker and `leader` for each partition.
    fn metadata(&self, leader: i32) -> Vec<u8> {
        let all: Vec<i32> = (0..self.addresses.len() as i32).collect();
        let mut out = self.metadata_brokers();
        out.extend_from_slice(&1i32.to_be_bytes()); // one topic
        out.extend_from_slice(&0i16.to_be_bytes()); // no error
        string(&mut out, &self.topic);
        out.push(0); // is_internal
        let partitions = self.partitions.load(Ordering::SeqCst) as i32;
        out.extend_from_slice(&partitions.to_be_bytes());
        for partition in 0..partitions {
            out.extend_from_slice(&0i16.to_be_bytes()); // no error
            out.extend_from_slice(&partition.to_be_bytes()); // partition_index
            out.extend_from_slice(&leader.to_be_bytes());
            for _ in 0..2 {
                // replica_nodes, isr_nodes
                out.extend_from_slice(&(all.len() as i32).to_be_bytes());
                for id in &all {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
        }
        out
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// store-events patch 10: the topic a Metadata v4 request (after the header's key,
/// version and correlation id) names, when it names one other than `ours`, and whether
/// it allows auto-creation.
fn other_topic(bytes: &[u8], ours: &str) -> Option<(String, bool)> {
    let mut at = 0;
    let client_id_len = i16::from_be_bytes([bytes[0], bytes[1]]);
    at += 2 + client_id_len.max(0) as usize;
    let count = i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    at += 4;
    if count != 1 {
        return None;
    }
    let len = i16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
    let name = String::from_utf8(bytes[at + 2..at + 2 + len].to_vec()).unwrap();
    at += 2 + len;
    let auto_create = bytes[at] != 0;
    (name != ours).then_some((name, auto_create))
}

/// Reads an OffsetCommit v2 request (after the header's key, version and correlation id):
/// client id, group, generation, member, retention, then the topics' partitions.
fn parse_offset_commit(bytes: &[u8]) -> Commit {
    let mut at = 0;
    let mut take = |n: usize| {
        at += n;
        &bytes[at - n..at]
    };
    let int16 = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
    let int32 = |b: &[u8]| i32::from_be_bytes(b.try_into().unwrap());
    let client_id_len = int16(take(2));
    take(client_id_len.max(0) as usize);
    let group_len = int16(take(2)) as usize;
    let group = String::from_utf8(take(group_len).to_vec()).unwrap();
    let generation = int32(take(4));
    let member_len = int16(take(2)) as usize;
    take(member_len);
    take(8); // retention_time_ms
    let mut partitions = Vec::new();
    for _ in 0..int32(take(4)) {
        let name_len = int16(take(2)) as usize;
        let name = String::from_utf8(take(name_len).to_vec()).unwrap();
        for _ in 0..int32(take(4)) {
            let partition = int32(take(4));
            let offset = i64::from_be_bytes(take(8).try_into().unwrap());
            let metadata_len = int16(take(2));
            take(metadata_len.max(0) as usize);
            partitions.push((name.clone(), partition, offset));
        }
    }
    (-1, group, generation, partitions)
}

/// An OffsetCommit v2 response: `error` for each partition committed.
fn offset_commit_response(partitions: &[(String, i32, i64)], error: i16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(partitions.len() as i32).to_be_bytes()); // a topic per partition
    for (topic, partition, _) in partitions {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&partition.to_be_bytes());
        out.extend_from_slice(&error.to_be_bytes());
    }
    out
}

/// store-events patch 8: the answer to a `JoinGroup` v5 (`request` after the header's
/// correlation id): `MEMBER_ID_REQUIRED` with member id `m-1` when it has no member id;
/// else generation 1 with this member as leader and only member, its metadata echoed.
fn join_group_response(request: &[u8]) -> Vec<u8> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }
        fn int16(&mut self) -> i16 {
            i16::from_be_bytes(self.take(2).try_into().unwrap())
        }
        fn string(&mut self) -> Option<String> {
            let len = self.int16();
            (len >= 0).then(|| String::from_utf8(self.take(len as usize).to_vec()).unwrap())
        }
    }
    let mut cursor = Cursor(request);
    let _client_id = cursor.string();
    let _group = cursor.string();
    cursor.take(8); // session and rebalance timeouts
    let member_id = cursor.string().unwrap();
    let instance = cursor.string();
    let _protocol_type = cursor.string();
    cursor.take(4); // one protocol
    let protocol = cursor.string().unwrap();
    let metadata_len = i32::from_be_bytes(cursor.take(4).try_into().unwrap());
    let metadata = cursor.take(metadata_len as usize).to_vec();

    let put_string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let mut out = 0i32.to_be_bytes().to_vec(); // throttle_time_ms
    if member_id.is_empty() && instance.is_none() {
        out.extend_from_slice(&79i16.to_be_bytes()); // MEMBER_ID_REQUIRED
        out.extend_from_slice(&(-1i32).to_be_bytes());
        put_string(&mut out, "");
        put_string(&mut out, "");
        put_string(&mut out, "m-1");
        out.extend_from_slice(&0i32.to_be_bytes());
        return out;
    }
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes()); // generation
    put_string(&mut out, &protocol);
    put_string(&mut out, &member_id); // leader
    put_string(&mut out, &member_id);
    out.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut out, &member_id);
    match &instance {
        Some(id) => put_string(&mut out, id),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    out.extend_from_slice(&(metadata.len() as i32).to_be_bytes());
    out.extend_from_slice(&metadata);
    out
}

/// store-events patch 12: a `DescribeGroups` v4 answer for group `g`: `Stable` with
/// member `m-1` (client `c`, host `/127.0.0.1`, metadata `[1]`, assignment `[2]`), or
/// `Dead` with no member and `error`.
fn describe_groups_response(error: i16) -> Vec<u8> {
    let mut out = 0i32.to_be_bytes().to_vec(); // throttle_time_ms
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    string(&mut out, "g");
    if error != 0 {
        string(&mut out, "Dead");
        string(&mut out, "");
        string(&mut out, "");
        out.extend_from_slice(&0i32.to_be_bytes());
    } else {
        string(&mut out, "Stable");
        string(&mut out, "consumer");
        string(&mut out, "sticky");
        out.extend_from_slice(&1i32.to_be_bytes());
        string(&mut out, "m-1");
        out.extend_from_slice(&(-1i16).to_be_bytes()); // no instance id
        string(&mut out, "c");
        string(&mut out, "/127.0.0.1");
        out.extend_from_slice(&[0, 0, 0, 1, 1, 0, 0, 0, 1, 2]);
    }
    out.extend_from_slice(&i32::MIN.to_be_bytes()); // authorized operations
    out
}

/// store-events patch 9: (producer id, epoch, base sequence, record count) of the one
/// batch of a `Produce` v3 request (`request` after the header's correlation id).
fn parse_produce(request: &[u8]) -> ProducedBatch {
    let mut at = 0;
    let skip_string = |at: &mut usize| {
        let len = i16::from_be_bytes(request[*at..*at + 2].try_into().unwrap());
        *at += 2 + len.max(0) as usize;
    };
    skip_string(&mut at); // client id
    skip_string(&mut at); // transactional id
    at += 2 + 4 + 4; // acks, timeout, one topic
    skip_string(&mut at); // topic name
    at += 4 + 4 + 4; // one partition, its index, the records' length
    let batch = &request[at..];
    (
        i64::from_be_bytes(batch[43..51].try_into().unwrap()),
        i16::from_be_bytes(batch[51..53].try_into().unwrap()),
        i32::from_be_bytes(batch[53..57].try_into().unwrap()),
        i32::from_be_bytes(batch[57..61].try_into().unwrap()),
    )
}

/// store-events patch 9: a `Produce` v3 response for partition 0 of `topic`.
fn produce_response(topic: &str, error: i16, base_offset: i64) -> Vec<u8> {
    let mut out = 1i32.to_be_bytes().to_vec();
    out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // log_append_time
    out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    out
}

/// What the brokers support: ApiVersions 0 to 3, Metadata 4, FindCoordinator 1,
/// OffsetCommit 2, JoinGroup 5, Heartbeat 3, InitProducerId 1, Produce 3 and
/// DescribeGroups 4.
fn api_versions(version: i16) -> Vec<u8> {
    let key = |api_key, min, max| ApiVersionsResponseApiKey {
        api_key,
        min_version: ApiVersion(Int16(min)),
        max_version: ApiVersion(Int16(max)),
        tagged_fields: None,
    };
    let response = ApiVersionsResponse {
        error_code: None,
        api_keys: vec![
            key(ApiKey::ApiVersions, 0, 3),
            key(ApiKey::Metadata, 4, 4),
            key(ApiKey::FindCoordinator, 1, 1),
            key(ApiKey::OffsetCommit, 2, 2),
            key(ApiKey::JoinGroup, 5, 5),
            key(ApiKey::Heartbeat, 3, 3),
            key(ApiKey::InitProducerId, 1, 1),
            key(ApiKey::Produce, 3, 3),
            key(ApiKey::DescribeGroups, 4, 4),
        ],
        throttle_time_ms: None,
        tagged_fields: None,
    };
    let mut out = Vec::new();
    response
        .write_versioned(&mut out, ApiVersion(Int16(version)))
        .unwrap();
    out
}
