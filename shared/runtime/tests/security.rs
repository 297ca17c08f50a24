//! Kafka's secured listeners, the way Amazon MSK has them, on the local broker: mutual TLS,
//! SASL_SSL with SCRAM-SHA-512, and OAUTHBEARER. Each produces and reads back a record; each
//! way of getting it wrong ends with an error that says what is wrong, within the connect
//! timeout, instead of a hang or a bare timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::time::Duration;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use service_runtime::config::Env;
use service_runtime::kafka::{KafkaCluster, KafkaError, KafkaSettings};
use testkit::secured;

/// Settings as a service would read them, for the given bootstrap server and variables.
fn settings(bootstrap: &str, pairs: &[(&str, String)]) -> KafkaSettings {
    let mut all: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend([("KAFKA_BOOTSTRAP_SERVERS", bootstrap), ("KAFKA_CONNECT_TIMEOUT", "10s")]);
    KafkaSettings::from_env(&Env::from_pairs(all), "security-test").expect("settings")
}

fn mutual_tls() -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_owned()),
        ("KAFKA_SSL_CA_LOCATION", secured::tls_file("ca.crt")),
        ("KAFKA_SSL_CERTIFICATE_LOCATION", secured::tls_file("client.crt")),
        ("KAFKA_SSL_KEY_LOCATION", secured::tls_file("client.key")),
    ]
}

fn scram(mechanism: &str, password: &str) -> Vec<(&'static str, String)> {
    let (user, _) = secured::scram_user();
    vec![
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
        ("KAFKA_SSL_CA_LOCATION", secured::tls_file("ca.crt")),
        ("KAFKA_SASL_MECHANISM", mechanism.to_owned()),
        ("KAFKA_SASL_USERNAME", user),
        ("KAFKA_SASL_PASSWORD", password.to_owned()),
    ]
}

/// Writes a record through `settings` and reads it back through the same connection.
async fn round_trip(settings: KafkaSettings) {
    testkit::require_kafka();
    let topic = testkit::unique_topic("sec");
    testkit::create_topic(&topic, 1).await;
    let cluster = KafkaCluster::new(settings);
    let client = cluster.client().await.unwrap();
    let partition =
        client.partition_client(topic.clone(), 0, UnknownTopicHandling::Retry).await.expect("partition client");
    let value = format!("through a secured listener to {topic}");
    let record = testkit::record(Some(value.as_bytes()), &[("content-type", b"text/plain")]);
    let offsets = partition.produce(vec![record], Compression::NoCompression).await.unwrap();
    assert_eq!(offsets, vec![0]);
    let (records, high_watermark) = partition.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
    assert_eq!(high_watermark, 1);
    let values: Vec<Option<Vec<u8>>> = records.into_iter().map(|r| r.record.value).collect();
    assert_eq!(values, vec![Some(value.into_bytes())]);
}

/// Connects with `settings` and returns the error, which must come before the test's
/// own bound and must not be a bare timeout.
async fn connect_error(settings: KafkaSettings) -> String {
    testkit::require_kafka();
    let cluster = KafkaCluster::new(settings);
    let outcome = tokio::time::timeout(Duration::from_secs(30), cluster.client()).await;
    match outcome {
        Err(_) => panic!("connecting neither succeeded nor failed within 30 s"),
        Ok(Ok(_)) => panic!("the connection was accepted"),
        Ok(Err(error @ KafkaError::Timeout { .. })) => panic!("a bare timeout says nothing: {error}"),
        Ok(Err(error)) => error.to_string(),
    }
}

#[tokio::test]
async fn ssl_with_a_client_certificate_carries_records() {
    round_trip(settings(secured::SSL, &mutual_tls())).await;
}

#[tokio::test]
async fn sasl_ssl_with_scram_sha_512_carries_records() {
    let (_, password) = secured::scram_user();
    round_trip(settings(secured::SCRAM, &scram("SCRAM-SHA-512", &password))).await;
}

#[tokio::test]
async fn oauthbearer_with_a_token_file_carries_records() {
    let token = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oauthbearer.jwt");
    std::fs::write(&token, secured::unsecured_jwt("store-events", 3600)).unwrap();
    let pairs = [
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        ("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", token.to_string_lossy().into_owned()),
    ];
    round_trip(settings(secured::OAUTH, &pairs)).await;
}

#[tokio::test]
async fn a_broker_certificate_from_another_ca_is_named_as_such() {
    let mut pairs = mutual_tls();
    pairs[1].1 = secured::tls_file("other-ca.crt");
    let error = connect_error(settings(secured::SSL, &pairs)).await;
    assert!(error.contains("TLS: the broker's certificate is not signed by a CA in KAFKA_SSL_CA_LOCATION"), "{error}");
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_is_refused() {
    let error = connect_error(settings("localhost:9094", &mutual_tls())).await;
    assert!(error.contains("TLS: the broker's certificate does not name the host connected to"), "{error}");
}

#[tokio::test]
async fn a_missing_client_certificate_is_refused() {
    let pairs: Vec<_> = mutual_tls().into_iter().take(2).collect();
    let error = connect_error(settings(secured::SSL, &pairs)).await;
    assert!(error.contains("TLS: the broker refused this client's certificate or wants one"), "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_named_as_such() {
    let error = connect_error(settings(secured::SCRAM, &scram("SCRAM-SHA-512", "not-the-password"))).await;
    assert!(error.contains("authentication: the broker rejected the credentials"), "{error}");
}

#[tokio::test]
async fn a_mechanism_the_broker_does_not_enable_is_named_as_such() {
    let (_, password) = secured::scram_user();
    let error = connect_error(settings(secured::SCRAM, &scram("SCRAM-SHA-256", &password))).await;
    assert!(error.contains("authentication: the broker does not enable this KAFKA_SASL_MECHANISM"), "{error}");
}

#[tokio::test]
async fn tls_to_a_plaintext_listener_is_named_as_such() {
    let pairs = [("KAFKA_SECURITY_PROTOCOL", "SSL".to_owned()), ("KAFKA_SSL_CA_LOCATION", secured::tls_file("ca.crt"))];
    let error = connect_error(settings(testkit::kafka_address(), &pairs)).await;
    assert!(error.contains("TLS: the listener does not speak TLS"), "{error}");
}

#[tokio::test]
async fn an_expired_token_is_named_as_a_rejected_token() {
    let token = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("expired.jwt");
    std::fs::write(&token, secured::unsecured_jwt("store-events", -600)).unwrap();
    let pairs = [
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        ("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", token.to_string_lossy().into_owned()),
    ];
    let error = connect_error(settings(secured::OAUTH, &pairs)).await;
    assert!(error.contains("authentication: the broker rejected the token"), "{error}");
}
