//! store-events patch 4 (tests only): Kafka brokers on loopback that answer `ApiVersions`
//! and `Metadata` (v4) from a script, enough to drive the client's leader discovery
//! without a real cluster. Other requests close the connection.

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

/// A running fake cluster.
pub(crate) struct FakeCluster {
    /// `host:port` of each broker; broker ids are the indexes.
    pub(crate) addresses: Vec<String>,
    /// Metadata requests answered, per broker.
    pub(crate) metadata_requests: Arc<Vec<AtomicUsize>>,
}

/// Starts `brokers` brokers serving one topic with one partition, replicated on all.
pub(crate) async fn start(brokers: usize, topic: &str, script: Script) -> FakeCluster {
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
    for (id, listener) in listeners.into_iter().enumerate() {
        let (addresses, counts) = (addresses.clone(), Arc::clone(&metadata_requests));
        let (topic, script) = (topic.to_owned(), Arc::clone(&script));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let broker = Broker {
                    id: id as i32,
                    addresses: addresses.clone(),
                    topic: topic.clone(),
                    script: Arc::clone(&script),
                    counts: Arc::clone(&counts),
                };
                tokio::spawn(broker.serve(stream));
            }
        });
    }
    FakeCluster {
        addresses,
        metadata_requests,
    }
}

struct Broker {
    id: i32,
    addresses: Vec<String>,
    topic: String,
    script: Script,
    counts: Arc<Vec<AtomicUsize>>,
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
                    self.metadata((self.script)(self.id, nth))
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

    /// A Metadata v4 response naming every broker and `leader` for partition 0.
    fn metadata(&self, leader: i32) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as i16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let all: Vec<i32> = (0..self.addresses.len() as i32).collect();
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
        out.extend_from_slice(&1i32.to_be_bytes()); // one topic
        out.extend_from_slice(&0i16.to_be_bytes()); // no error
        string(&mut out, &self.topic);
        out.push(0); // is_internal
        out.extend_from_slice(&1i32.to_be_bytes()); // one partition
        out.extend_from_slice(&0i16.to_be_bytes()); // no error
        out.extend_from_slice(&0i32.to_be_bytes()); // partition_index
        out.extend_from_slice(&leader.to_be_bytes());
        for _ in 0..2 {
            // replica_nodes, isr_nodes
            out.extend_from_slice(&(all.len() as i32).to_be_bytes());
            for id in &all {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out
    }
}

/// What the brokers support: ApiVersions 0 to 3 and Metadata 4.
fn api_versions(version: i16) -> Vec<u8> {
    let key = |api_key, min, max| ApiVersionsResponseApiKey {
        api_key,
        min_version: ApiVersion(Int16(min)),
        max_version: ApiVersion(Int16(max)),
        tagged_fields: None,
    };
    let response = ApiVersionsResponse {
        error_code: None,
        api_keys: vec![key(ApiKey::ApiVersions, 0, 3), key(ApiKey::Metadata, 4, 4)],
        throttle_time_ms: None,
        tagged_fields: None,
    };
    let mut out = Vec::new();
    response
        .write_versioned(&mut out, ApiVersion(Int16(version)))
        .unwrap();
    out
}
