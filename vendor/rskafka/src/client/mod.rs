use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::{
    backoff::BackoffConfig,
    build_info::DEFAULT_CLIENT_ID,
    client::partition::PartitionClient,
    connection::{BrokerConnector, MetadataLookupMode, TlsConfig},
    protocol::primitives::Boolean,
    topic::Topic,
};

pub mod consumer;
pub mod controller;
pub mod error;
// store-events patch 7: committed offsets of a consumer group.
pub mod group;
// store-events patch 9.
pub mod idempotence;
// store-events patch 4: brokers on loopback for the leader-discovery tests.
#[cfg(test)]
mod fake_broker;
pub(crate) mod metadata_cache;
pub mod partition;
pub mod producer;

use error::{Error, ProtocolError, RequestContext, Result};

use self::{controller::ControllerClient, partition::UnknownTopicHandling};

pub use crate::connection::{Credentials, OauthBearerCredentials, OauthCallback, SaslConfig};

#[derive(Debug, Error)]
pub enum ProduceError {
    #[error("Broker error: {0}")]
    BrokerError(#[from] crate::connection::Error),

    #[error("Request error: {0}")]
    RequestError(#[from] crate::messenger::RequestError),

    #[error("Got duplicate results for topic '{topic}' and partition {partition}")]
    DuplicateResult { topic: String, partition: i32 },

    #[error("No result for record {index}")]
    NoResult { index: usize },
}

/// Builder for [`Client`].
pub struct ClientBuilder {
    bootstrap_brokers: Vec<String>,
    client_id: Option<Arc<str>>,
    max_message_size: usize,
    socks5_proxy: Option<String>,
    tls_config: TlsConfig,
    sasl_config: Option<SaslConfig>,
    backoff_config: Arc<BackoffConfig>,
    // store-events patch 5
    request_timeout: Option<Duration>,
}

impl ClientBuilder {
    /// Create a new [`ClientBuilder`] with the list of bootstrap brokers
    pub fn new(bootstrap_brokers: Vec<String>) -> Self {
        Self {
            bootstrap_brokers,
            client_id: None,
            max_message_size: 100 * 1024 * 1024, // 100MB
            socks5_proxy: None,
            tls_config: TlsConfig::default(),
            sasl_config: None,
            backoff_config: Default::default(),
            request_timeout: None,
        }
    }

    /// Sets client ID.
    pub fn client_id(mut self, client_id: impl Into<Arc<str>>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Set maximum size (in bytes) of message frames that can be received from a broker.
    ///
    /// Setting this to larger sizes allows you to specify larger size limits in [`PartitionClient::fetch_records`],
    /// however it increases maximum memory consumption per broker connection. Settings this too small will result in
    /// failures all over the place since metadata requests cannot be handled any longer.
    pub fn max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// store-events patch 5: the longest a request waits for its response (none by
    /// default). A request that waits longer fails with `RequestError::Poisoned` wrapping
    /// `RequestError::TimedOut`, and its connection is closed: the broker may still
    /// answer it, and another request's response cannot be told from a late one. The
    /// request is then retried on a new connection like any broken-connection error.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Set up backoff configuration
    pub fn backoff_config(mut self, backoff_config: BackoffConfig) -> Self {
        self.backoff_config = Arc::from(backoff_config);
        self
    }

    /// Use SOCKS5 proxy.
    #[cfg(feature = "transport-socks5")]
    pub fn socks5_proxy(mut self, proxy: String) -> Self {
        self.socks5_proxy = Some(proxy);
        self
    }

    /// Setup TLS.
    #[cfg(feature = "transport-tls")]
    pub fn tls_config(mut self, tls_config: Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(tls_config);
        self
    }

    /// Setup SASL username and password. Mechanism is assumed to be PLAIN.
    pub fn sasl_config(mut self, sasl_config: SaslConfig) -> Self {
        self.sasl_config = Some(sasl_config);
        self
    }

    /// Build [`Client`].
    pub async fn build(self) -> Result<Client> {
        let brokers = Arc::new(BrokerConnector::new(
            self.bootstrap_brokers,
            self.client_id
                .unwrap_or_else(|| Arc::from(DEFAULT_CLIENT_ID)),
            self.tls_config,
            self.socks5_proxy,
            self.sasl_config,
            self.max_message_size,
            self.request_timeout,
            Arc::clone(&self.backoff_config),
        ));
        brokers.refresh_metadata().await?;

        Ok(Client {
            brokers,
            backoff_config: self.backoff_config,
        })
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").finish_non_exhaustive()
    }
}

/// Top-level cluster-wide client.
///
/// This client can be used to query some cluster-wide metadata and construct task-specific sub-clients like
/// [`ControllerClient`] and [`PartitionClient`].
///
/// Must be constructed using [`ClientBuilder`].
#[derive(Debug)]
pub struct Client {
    brokers: Arc<BrokerConnector>,
    backoff_config: Arc<BackoffConfig>,
}

impl Client {
    /// Returns a client for performing certain cluster-wide operations.
    pub fn controller_client(&self) -> Result<ControllerClient> {
        Ok(ControllerClient::new(
            Arc::clone(&self.brokers),
            Arc::clone(&self.backoff_config),
        ))
    }

    /// store-events patch 9: the producer id an idempotent producer's partition clients
    /// share (see [`partition::PartitionClient::with_idempotence`]).
    pub fn idempotent_producer(&self) -> Arc<idempotence::IdempotentProducer> {
        Arc::new(idempotence::IdempotentProducer::new(Arc::clone(
            &self.brokers,
        )))
    }

    /// store-events patch 7: a client for the committed offsets of consumer group `group`.
    pub fn group_client(&self, group: impl Into<String>) -> group::GroupClient {
        group::GroupClient::new(Arc::clone(&self.brokers), group.into())
    }

    /// Returns a client for performing operations on a specific partition
    pub async fn partition_client(
        &self,
        topic: impl Into<String> + Send,
        partition: i32,
        unknown_topic_handling: UnknownTopicHandling,
    ) -> Result<PartitionClient> {
        PartitionClient::new(
            topic.into(),
            partition,
            Arc::clone(&self.brokers),
            unknown_topic_handling,
            Arc::clone(&self.backoff_config),
        )
        .await
    }

    /// Returns a list of topics in the cluster
    pub async fn list_topics(&self) -> Result<Vec<Topic>> {
        // Do not used a cached metadata response to satisfy this request, in
        // order to prevent:
        //
        //  * Client creates a topic
        //  * Client calls list_topics() and does not see new topic
        //
        // Because this is an unconstrained metadata request (all topics) it
        // will update the cached metadata entry.
        let (response, _gen) = self
            .brokers
            .request_metadata(&MetadataLookupMode::ArbitraryBroker, None)
            .await?;

        Ok(response
            .topics
            .into_iter()
            .filter(|t| !matches!(t.is_internal, Some(Boolean(true))))
            .map(|t| Topic {
                name: t.name.0,
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| p.partition_index.0)
                    .collect(),
            })
            .collect())
    }

    /// store-events patch 10: one topic's partitions, `None` when it does not exist.
    ///
    /// Unlike [`list_topics`](Self::list_topics), which asks for every topic and so is
    /// answered without the topics the client may not describe, this names the topic: a
    /// broker that refuses it answers `TOPIC_AUTHORIZATION_FAILED`, returned as
    /// [`Error::ServerError`] with [`RequestContext::Topic`]. It never creates the topic,
    /// whatever the broker's `auto.create.topics.enable`.
    pub async fn describe_topic(&self, topic: &str) -> Result<Option<Topic>> {
        let response = self
            .brokers
            .request_topic_metadata(vec![topic.to_owned()])
            .await?;
        let found = response
            .topics
            .into_iter()
            .find(|t| t.name.0 == topic)
            .ok_or_else(|| {
                Error::InvalidResponse(format!("no metadata for topic \"{topic}\" in the answer"))
            })?;
        match found.error {
            None => Ok(Some(Topic {
                name: found.name.0,
                partitions: found
                    .partitions
                    .into_iter()
                    .map(|p| p.partition_index.0)
                    .collect(),
            })),
            Some(ProtocolError::UnknownTopicOrPartition) => Ok(None),
            Some(e) => Err(Error::ServerError {
                protocol_error: e,
                error_message: None,
                request: RequestContext::Topic(topic.to_owned()),
                response: None,
                is_virtual: false,
            }),
        }
    }
}

/// store-events patch 10.
#[cfg(test)]
mod describe_topic_tests {
    use std::sync::Arc;

    use super::*;

    async fn client() -> (fake_broker::FakeCluster, Client) {
        let cluster = fake_broker::start(1, "orders", Arc::new(|_, _| 0)).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        (cluster, client)
    }

    #[tokio::test]
    async fn a_topic_is_described_with_its_partitions() {
        let (_cluster, client) = client().await;
        let topic = client.describe_topic("orders").await.unwrap().unwrap();
        assert_eq!(topic.name, "orders");
        assert_eq!(topic.partitions.into_iter().collect::<Vec<_>>(), vec![0]);
    }

    #[tokio::test]
    async fn a_missing_topic_is_none_and_never_created() {
        // The fake broker answers "being created" to a request that allows auto-creation.
        let (_cluster, client) = client().await;
        assert!(client.describe_topic("returns").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_topic_the_client_may_not_describe_is_an_authorization_error() {
        let (_cluster, client) = client().await;
        let error = client.describe_topic("forbidden").await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::ServerError {
                    protocol_error: ProtocolError::TopicAuthorizationFailed,
                    request: RequestContext::Topic(topic),
                    ..
                } if topic == "forbidden"
            ),
            "{error:?}"
        );
        // Listing every topic hides it instead: the reason this call exists.
        let listed = client.list_topics().await.unwrap();
        assert!(listed.iter().all(|t| t.name != "forbidden"));
    }

    #[tokio::test]
    async fn a_partition_added_after_the_metadata_was_cached_is_found() {
        // describe_topic does not refresh the cached metadata (list_topics did), so a
        // partition missing from the cache must drop it.
        let (cluster, client) = client().await;
        cluster
            .partitions
            .store(2, std::sync::atomic::Ordering::SeqCst);
        let topic = client.describe_topic("orders").await.unwrap().unwrap();
        assert_eq!(topic.partitions.len(), 2);
        let first = client
            .partition_client("orders", 1, partition::UnknownTopicHandling::Error)
            .await;
        let partition = match first {
            Ok(partition) => partition,
            // The stale cache answers first; the lookup after it asks a broker.
            Err(_) => client
                .partition_client("orders", 1, partition::UnknownTopicHandling::Error)
                .await
                .unwrap(),
        };
        assert_eq!(partition.partition(), 1);
    }

    fn answered(counts: &[std::sync::atomic::AtomicUsize]) -> usize {
        counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .sum()
    }

    /// store-events patch 11.
    #[tokio::test]
    async fn a_partition_missing_from_the_answer_is_unknown_not_an_invalid_response() {
        let (_cluster, client) = client().await;
        let error = client
            .partition_client("orders", 5, partition::UnknownTopicHandling::Error)
            .await
            .err()
            .expect("partition 5 does not exist");
        assert!(
            matches!(
                &error,
                Error::ServerError {
                    protocol_error: ProtocolError::UnknownTopicOrPartition,
                    request: RequestContext::Partition(topic, 5),
                    is_virtual: true,
                    ..
                } if topic == "orders"
            ),
            "{error:?}"
        );
    }

    /// store-events patch 11: a broker may answer before it has learned of a new partition
    /// (Kafka propagates metadata asynchronously); `Retry` waits until it knows it.
    #[tokio::test]
    async fn a_partition_the_broker_learns_of_later_is_waited_for_with_retry() {
        let (cluster, client) = client().await;
        let before = answered(&cluster.metadata_requests);
        let (partitions, counts) = (
            Arc::clone(&cluster.partitions),
            Arc::clone(&cluster.metadata_requests),
        );
        // The partition appears only once two more metadata requests were answered
        // without it, so the client must have asked again after an answer lacked it.
        tokio::spawn(async move {
            while answered(&counts) < before + 2 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            partitions.store(2, std::sync::atomic::Ordering::SeqCst);
        });
        let partition = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            client.partition_client("orders", 1, partition::UnknownTopicHandling::Retry),
        )
        .await
        .expect("the partition client waited for the partition")
        .unwrap();
        assert_eq!(partition.partition(), 1);
        assert!(answered(&cluster.metadata_requests) >= before + 3);
    }
}
