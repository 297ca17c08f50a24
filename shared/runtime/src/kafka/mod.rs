//! Kafka clients with bounded time. rskafka 0.6 retries forever by default and never
//! times out a connect; every call here has a deadline, and a client that failed is
//! rebuilt on next use, so a service recovers from a broker restart without restarting.
//! `security` reads TLS and SASL settings; `msk_iam` signs MSK IAM tokens.

pub mod msk_iam;
pub mod security;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

pub use self::security::Security;
use crate::config::{ConfigError, Env};
use crate::readiness::Check;

/// How to reach the brokers (`KAFKA_*` variables).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port` list.
    pub bootstrap_servers: Vec<String>,
    /// `KAFKA_CLIENT_ID`: the client id brokers log and quota by; the service name by default.
    pub client_id: String,
    /// `KAFKA_CONNECT_TIMEOUT`: the longest a new connection (with metadata) may take.
    pub connect_timeout: Duration,
    /// `KAFKA_REQUEST_TIMEOUT`: the longest one request, retries included, may take.
    pub request_timeout: Duration,
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`.
    pub security: Security,
}

/// How long a broker may hold a produce request waiting for its replicas (rskafka sends
/// `timeout_ms` 30000).
const BROKER_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaSettings {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env, service: &str) -> Result<KafkaSettings, ConfigError> {
        let raw = env.string("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
        let bootstrap_servers = parse_bootstrap(&raw).map_err(|p| ConfigError::new("KAFKA_BOOTSTRAP_SERVERS", p))?;
        let connect_timeout = env.duration("KAFKA_CONNECT_TIMEOUT", Duration::from_secs(10))?;
        let request_timeout = env.duration("KAFKA_REQUEST_TIMEOUT", Duration::from_secs(30))?;
        for (name, value) in [("KAFKA_CONNECT_TIMEOUT", connect_timeout), ("KAFKA_REQUEST_TIMEOUT", request_timeout)] {
            if value.is_zero() {
                return Err(ConfigError::new(name, "must be greater than zero"));
            }
        }
        let security = Security::from_env(env, &bootstrap_servers)?;
        Ok(KafkaSettings {
            bootstrap_servers,
            client_id: env.string("KAFKA_CLIENT_ID", service),
            connect_timeout,
            request_timeout,
            security,
        })
    }

    /// Settings for a local broker, for tests.
    pub fn local(bootstrap: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: vec![bootstrap.to_owned()],
            client_id: "test".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            security: Security::plaintext(),
        }
    }

    /// The longest one request waits for the broker's answer before its connection is
    /// closed and the request retried on a new one (rskafka patch 5). A backstop for
    /// connections on which nothing comes back: longer than `KAFKA_REQUEST_TIMEOUT` (the
    /// services' own deadline per operation) and than the 30 s a broker may hold a produce
    /// request while its replicas acknowledge (rskafka's produce timeout), so that it
    /// never cuts off an answer still coming, and never makes a retry write twice what a
    /// slow broker was about to acknowledge.
    pub fn attempt_timeout(&self) -> Duration {
        self.request_timeout.max(BROKER_PRODUCE_TIMEOUT) + Duration::from_secs(5)
    }

    /// rskafka's retry policy. Its deadline counts only the time slept between attempts;
    /// a quarter of the connect timeout leaves the rest for the attempts themselves (a
    /// failed SCRAM exchange takes a few hundred milliseconds), so that a connection that
    /// keeps failing (a TLS or SASL error that no retry fixes) ends with rskafka's own
    /// error, which says why, rather than with our timeout, which cannot. Requests that
    /// still fail after that are retried by the services' own loops.
    pub fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(self.connect_timeout.min(self.request_timeout) / 4),
        }
    }
}

fn parse_bootstrap(raw: &str) -> Result<Vec<String>, String> {
    let servers: Vec<String> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if servers.is_empty() {
        return Err("must list at least one host:port".to_owned());
    }
    for server in &servers {
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(format!("{server:?} is not host:port"));
        };
        if host.is_empty() {
            return Err(format!("{server:?} has no host"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{server:?} has a bad port"));
        }
    }
    Ok(servers)
}

/// A Kafka failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The call did not finish in time.
    #[error("{what}: no answer from Kafka within {after:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The client or the broker reported an error; TLS, authentication and authorization
    /// failures are named in plain words before rskafka's own text.
    #[error("{what}: {}{source}", plain_words(what, source))]
    Client {
        /// What was being done.
        what: String,
        /// rskafka's error.
        #[source]
        source: rskafka::client::error::Error,
    },
}

/// What a failure that no retry fixes means, from the text of rskafka's error (its TLS
/// and SASL errors are strings and boxed lists, not types one can match).
pub fn explain(error: &str) -> Option<&'static str> {
    const RULES: &[(&[&str], &str)] = &[
        (
            &["UnknownIssuer"],
            "TLS: the broker's certificate is not signed by a CA in KAFKA_SSL_CA_LOCATION \
             (the system's CAs when it is unset)",
        ),
        (
            &["not valid for name", "NotValidForName"],
            "TLS: the broker's certificate does not name the host connected to; use a host name it \
             lists (host-name verification is always on)",
        ),
        (&["Expired"], "TLS: a certificate has expired"),
        (
            &["BadCertificate", "CertificateRequired", "UnknownCA"],
            "TLS: the broker refused this client's certificate or wants one: set \
             KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION to one its truststore accepts",
        ),
        (
            &["tls handshake eof", "InvalidContentType", "CorruptMessage", "received corrupt message"],
            "TLS: the listener does not speak TLS (it ended the handshake); check the port and \
             KAFKA_SECURITY_PROTOCOL",
        ),
        (
            &["UnsupportedSaslMechanism", "unsupported sasl mechanism"],
            "authentication: the broker does not enable this KAFKA_SASL_MECHANISM on this listener",
        ),
        (
            &["SaslAuthenticationFailed"],
            "authentication: the broker rejected the credentials (user name and password, or token)",
        ),
        (
            // rsasl reports the broker's OAUTHBEARER error answer as an unhandled callback.
            &["Sasl session error: callback error"],
            "authentication: the broker rejected the token (OAUTHBEARER; for AWS_MSK_IAM: the IAM identity, \
             its kafka-cluster:Connect permission, or the region)",
        ),
        (
            &["IllegalSaslState", "Sasl handshake failed"],
            "authentication: the SASL exchange failed; check KAFKA_SECURITY_PROTOCOL against the listener",
        ),
        (
            &["TopicAuthorizationFailed", "ClusterAuthorizationFailed", "GroupAuthorizationFailed"],
            "authorization: the broker authenticated this client but does not allow the operation \
             (Kafka ACLs, or the kafka-cluster:* actions of the IAM policy on MSK)",
        ),
    ];
    RULES.iter().find(|(markers, _)| markers.iter().any(|m| error.contains(m))).map(|(_, problem)| *problem)
}

/// What a failure means, in plain words, for the start of its message (empty when rskafka's
/// text is all there is): the problem, and for a refused request the permission it needs.
pub fn plain_words(what: &str, error: &rskafka::client::error::Error) -> String {
    let text = error.to_string();
    match (explain(&text), missing_permission(what, error)) {
        (Some(problem), Some(needed)) => format!("{problem}: it needs {needed}. "),
        (Some(problem), None) => format!("{problem}. "),
        (None, _) => String::new(),
    }
}

/// The permission a request refused by the broker's authorizer needs, named as Kafka's ACLs
/// and MSK's IAM policies name it, e.g. `Write on topic "t" (kafka-cluster:WriteData on MSK
/// IAM)`; `what` is what was being done, as the callers of [`within`] say it.
pub fn missing_permission(what: &str, error: &rskafka::client::error::Error) -> Option<String> {
    use rskafka::client::error::{Error, ProtocolError, RequestContext};
    let Error::ServerError { protocol_error, request, .. } = error else {
        return None;
    };
    let topic = match request {
        RequestContext::Topic(topic) | RequestContext::Partition(topic, _) => Some(topic.as_str()),
        RequestContext::Fetch { topic_name, .. } => Some(topic_name.as_str()),
        _ => None,
    };
    let (operation, resource, iam) = match (protocol_error, request) {
        (ProtocolError::TopicAuthorizationFailed, _) => {
            let resource = format!("topic {:?}", topic.unwrap_or("?"));
            if what.contains("fetching") {
                ("Read", resource, "kafka-cluster:ReadData")
            } else if what.contains("producing") {
                ("Write", resource, "kafka-cluster:WriteData")
            } else if what.contains("creating topic") {
                ("Create", resource, "kafka-cluster:CreateTopic")
            } else {
                ("Describe", resource, "kafka-cluster:DescribeTopic")
            }
        }
        (ProtocolError::GroupAuthorizationFailed, RequestContext::Group(group)) => {
            ("Read", format!("group {group:?}"), "kafka-cluster:AlterGroup and kafka-cluster:DescribeGroup")
        }
        (ProtocolError::ClusterAuthorizationFailed, RequestContext::ProducerId) => {
            ("IdempotentWrite", "the cluster (or Write on the topic)".to_owned(), "kafka-cluster:WriteDataIdempotently")
        }
        (ProtocolError::ClusterAuthorizationFailed, _) if what.contains("creating topic") => {
            ("Create", "the cluster".to_owned(), "kafka-cluster:CreateTopic")
        }
        _ => return None,
    };
    Some(format!("{operation} on {resource} ({iam} on MSK IAM)"))
}

/// Runs a Kafka call with a deadline.
pub async fn within<T>(
    after: Duration,
    what: &str,
    call: impl Future<Output = Result<T, rskafka::client::error::Error>>,
) -> Result<T, KafkaError> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(KafkaError::Client { what: what.to_owned(), source }),
        Err(_) => Err(KafkaError::Timeout { what: what.to_owned(), after }),
    }
}

/// A lazily built, shared client that is rebuilt after a failure.
pub struct KafkaCluster {
    settings: KafkaSettings,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl KafkaCluster {
    /// A cluster handle; nothing connects until first use.
    pub fn new(settings: KafkaSettings) -> KafkaCluster {
        KafkaCluster { settings, client: tokio::sync::Mutex::new(None) }
    }

    /// The settings it connects with.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The current client, connecting first if there is none.
    pub async fn client(&self) -> Result<Arc<Client>, KafkaError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let builder = ClientBuilder::new(self.settings.bootstrap_servers.clone())
            .client_id(self.settings.client_id.clone())
            .backoff_config(self.settings.backoff())
            .request_timeout(self.settings.attempt_timeout());
        let builder = self.settings.security.apply(builder);
        let what = format!("connecting to Kafka ({})", self.settings.security.describe());
        let client = Arc::new(within(self.settings.connect_timeout, &what, builder.build()).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Forgets the client so that the next use reconnects; call after a failed request.
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }

    /// The partitions of `topic`, or `None` when the topic does not exist.
    pub async fn partitions(&self, topic: &str) -> Result<Option<Vec<i32>>, KafkaError> {
        let outcome = async {
            let client = self.client().await?;
            within(self.settings.request_timeout, &format!("describing topic {topic}"), client.describe_topic(topic))
                .await
        }
        .await;
        match outcome {
            // A BTreeSet: already in order.
            Ok(found) => Ok(found.map(|t| t.partitions.into_iter().collect())),
            Err(e) => {
                self.reset().await;
                Err(e)
            }
        }
    }
}

/// What [`KafkaCluster::ensure_topic`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// The topic was created with the requested partitions.
    Created,
    /// The topic already existed with at least the requested partitions.
    Exists {
        /// Its partition count.
        partitions: usize,
    },
    /// The topic exists with fewer partitions than requested: reported, never hidden,
    /// because consumers sized for more partitions would sit idle.
    TooFewPartitions {
        /// Its partition count.
        partitions: usize,
        /// The requested count.
        wanted: usize,
    },
}

impl KafkaCluster {
    /// Makes sure `topic` exists, creating it with `partitions` and `replication_factor`
    /// when it does not; "already exists" (a race with another producer) is accepted.
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<TopicState, KafkaError> {
        let wanted = usize::try_from(partitions).unwrap_or(0);
        let judge = |found: usize| {
            if found >= wanted {
                TopicState::Exists { partitions: found }
            } else {
                TopicState::TooFewPartitions { partitions: found, wanted }
            }
        };
        if let Some(existing) = self.partitions(topic).await? {
            return Ok(judge(existing.len()));
        }
        let client = self.client().await?;
        let controller = client
            .controller_client()
            .map_err(|source| KafkaError::Client { what: "finding the controller".to_owned(), source })?;
        let timeout_ms = i32::try_from(self.settings.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let created = within(
            self.settings.request_timeout,
            &format!("creating topic {topic}"),
            controller.create_topic(topic, partitions, replication_factor, timeout_ms),
        )
        .await;
        match created {
            Ok(()) => Ok(TopicState::Created),
            Err(KafkaError::Client {
                source:
                    rskafka::client::error::Error::ServerError {
                        protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                        ..
                    },
                ..
            }) => match self.partitions(topic).await? {
                Some(existing) => Ok(judge(existing.len())),
                None => Ok(TopicState::Created),
            },
            Err(e) => Err(e),
        }
    }
}

/// Readiness: Kafka answers a metadata request and the topic exists.
pub struct KafkaCheck {
    cluster: Arc<KafkaCluster>,
    topic: String,
}

impl KafkaCheck {
    /// A check of `topic` on `cluster`.
    pub fn new(cluster: Arc<KafkaCluster>, topic: &str) -> KafkaCheck {
        KafkaCheck { cluster, topic: topic.to_owned() }
    }
}

impl Check for KafkaCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            match self.cluster.partitions(&self.topic).await {
                Ok(Some(partitions)) => Ok(format!("topic {} has {} partitions", self.topic, partitions.len())),
                Ok(None) => Err(format!("topic {} does not exist", self.topic)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// `<service> check-kafka`: connects with the service's settings the way the service
/// would and prints what it found, one line per step, for an operator setting up TLS,
/// SASL or IAM. `true` when Kafka answered and the topic exists.
pub async fn check_kafka(settings: &KafkaSettings, topic: &str) -> bool {
    println!("Kafka: {} ({})", settings.bootstrap_servers.join(","), settings.security.describe());
    if let Some(tokens) = settings.security.msk_iam() {
        match tokens.token_at(std::time::SystemTime::now()).await {
            Ok(token) => {
                let until: chrono::DateTime<chrono::Utc> = token.expires_at.into();
                println!(
                    "AWS_MSK_IAM: token for {} signed with access key {}, valid until {}",
                    tokens.region(),
                    token.access_key_id,
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            Err(error) => {
                println!("error: {error}");
                return false;
            }
        }
    }
    let cluster = KafkaCluster::new(settings.clone());
    match cluster.partitions(topic).await {
        Ok(Some(partitions)) => {
            println!("ok: connected; topic {topic} has {} partitions", partitions.len());
            true
        }
        Ok(None) => {
            println!(
                "error: connected, but topic {topic} does not exist (the producer creates it: `producer ensure-topic`)"
            );
            false
        }
        Err(error) => {
            println!("error: {error}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(
        code: rskafka::client::error::ProtocolError,
        request: rskafka::client::error::RequestContext,
    ) -> KafkaError {
        KafkaError::Client {
            what: String::new(),
            source: rskafka::client::error::Error::ServerError {
                protocol_error: code,
                error_message: None,
                request,
                response: None,
                is_virtual: false,
            },
        }
    }

    fn needed(what: &str, error: &KafkaError) -> Option<String> {
        let KafkaError::Client { source, .. } = error else { return None };
        missing_permission(what, source)
    }

    #[test]
    fn a_refused_request_names_the_acl_and_the_iam_action_it_needs() {
        use rskafka::client::error::{ProtocolError as P, RequestContext as R};
        let topic = || R::Topic("orders".to_owned());
        let partition = || R::Partition("orders".to_owned(), 2);
        let cases = [
            ("describing topic orders", refused(P::TopicAuthorizationFailed, topic()), "Describe on topic \"orders\""),
            ("producing", refused(P::TopicAuthorizationFailed, partition()), "Write on topic \"orders\""),
            ("fetching records", refused(P::TopicAuthorizationFailed, partition()), "Read on topic \"orders\""),
            ("creating topic orders", refused(P::TopicAuthorizationFailed, topic()), "Create on topic \"orders\""),
            (
                "creating topic orders",
                refused(P::ClusterAuthorizationFailed, R::Topic("orders".to_owned())),
                "Create on the cluster",
            ),
            ("heartbeat", refused(P::GroupAuthorizationFailed, R::Group("g".to_owned())), "Read on group \"g\""),
            ("producing", refused(P::ClusterAuthorizationFailed, R::ProducerId), "IdempotentWrite on the cluster"),
        ];
        for (what, error, expected) in cases {
            let needed = needed(what, &error).unwrap_or_default();
            assert!(needed.starts_with(expected), "{what}: {needed}");
            assert!(needed.contains("kafka-cluster:"), "{what}: {needed}");
        }
        // Not an authorization failure: nothing to name.
        assert_eq!(needed("producing", &refused(P::NotLeaderOrFollower, partition())), None);
    }

    #[test]
    fn an_authorization_error_reads_problem_then_permission_then_the_clients_text() {
        let mut error = refused(
            rskafka::client::error::ProtocolError::TopicAuthorizationFailed,
            rskafka::client::error::RequestContext::Topic("orders".to_owned()),
        );
        if let KafkaError::Client { what, .. } = &mut error {
            *what = "describing topic orders".to_owned();
        }
        let text = error.to_string();
        assert!(
            text.starts_with(
                "describing topic orders: authorization: the broker authenticated this client but does not allow the \
                 operation (Kafka ACLs, or the kafka-cluster:* actions of the IAM policy on MSK): it needs Describe on \
                 topic \"orders\" (kafka-cluster:DescribeTopic on MSK IAM). Server error TopicAuthorizationFailed"
            ),
            "{text}"
        );
    }

    #[test]
    fn bootstrap_lists_are_checked() {
        assert_eq!(parse_bootstrap(" a:1 , b:2 "), Ok(vec!["a:1".to_owned(), "b:2".to_owned()]));
        assert_eq!(parse_bootstrap("a:0"), Err("\"a:0\" has a bad port".to_owned()));
        assert_eq!(parse_bootstrap(":9092"), Err("\":9092\" has no host".to_owned()));
    }

    #[test]
    fn a_request_waits_longer_than_the_operation_and_the_broker_may() {
        let mut settings = KafkaSettings::local("127.0.0.1:9092");
        settings.request_timeout = Duration::from_secs(60);
        assert_eq!(settings.attempt_timeout(), Duration::from_secs(65));
        settings.request_timeout = Duration::from_secs(1);
        assert_eq!(settings.attempt_timeout(), Duration::from_secs(35));
    }

    #[tokio::test]
    async fn a_dead_address_gives_up_instead_of_retrying_forever() {
        // Nothing listens on 127.0.0.1:9: every connect is refused, and rskafka's retries
        // must stop at the deadline. The outer bound only turns a hang into a failure.
        let mut settings = KafkaSettings::local("127.0.0.1:9");
        settings.connect_timeout = Duration::from_millis(1500);
        settings.request_timeout = Duration::from_millis(500);
        let outcome = tokio::time::timeout(Duration::from_secs(30), KafkaCluster::new(settings).client()).await;
        let message = outcome.map(|r| r.err().map(|e| e.to_string()));
        assert!(matches!(&message, Ok(Some(m)) if m.starts_with("connecting to Kafka")), "{message:?}");
    }
}
