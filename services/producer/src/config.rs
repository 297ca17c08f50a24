//! The producer's settings.

use std::time::Duration;

use rskafka::client::partition::Compression;
use service_runtime::config::{CommonConfig, ConfigError, Env};

use crate::auth::KeySource;

/// How records are written to Kafka (`PRODUCER_*`).
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// `PRODUCER_LINGER`: how long a partition's batch waits for more records.
    pub linger: Duration,
    /// `PRODUCER_BATCH_BYTES`: the largest batch sent in one request, per partition.
    pub batch_bytes: usize,
    /// `PRODUCER_COMPRESSION`: `none`, `gzip`, `lz4`, `snappy` or `zstd`.
    pub compression: Compression,
    /// `PRODUCER_MAX_PENDING`: records waiting for Kafka at most; beyond, the API answers 503.
    pub max_pending: usize,
    /// `PRODUCE_TIMEOUT`: the longest a request waits for Kafka's acknowledgement.
    pub timeout: Duration,
    /// `PRODUCER_IDEMPOTENCE`: write with a producer id and per-partition sequence
    /// numbers, so that a batch the client sends again (after a lost response, a timeout,
    /// a broker restart) is stored once (rskafka patch 9).
    pub idempotence: bool,
}

/// Everything the producer reads from its environment.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Topic, Kafka, HTTP and logs.
    pub common: CommonConfig,
    /// `TOPIC_PARTITIONS`: partitions of the topic when the producer creates it.
    pub topic_partitions: i32,
    /// `TOPIC_REPLICATION_FACTOR`: replicas of the topic when the producer creates it
    /// (1 locally; 2 or 3 on MSK).
    pub topic_replication_factor: i16,
    /// `GENERATOR_RATE`: generated events per second, 0 = off.
    pub generator_rate: u32,
    /// `GENERATOR_BAD_SHARE`: the share of generated events that are bad (0 to 1).
    pub generator_bad_share: f64,
    /// `MAX_BODY_BYTES`: the largest request body `POST /v1/events` takes.
    pub max_body_bytes: usize,
    /// `EVENT_TS_MAX_AHEAD`: how far ahead of this server's clock an event's `ts` may be.
    /// The record's timestamp is the event's `ts`, and Kafka refuses records stamped
    /// further ahead than `log.message.timestamp.after.max.ms` (1 hour by default since
    /// Kafka 3.6): such an event is a client's error to report, not a Kafka outage.
    pub event_ts_max_ahead: Duration,
    /// `PRODUCER_AUTH`: who may write events.
    pub access: Access,
    /// `PRODUCER_SIMULATE`: whether `POST /v1/simulate` is served.
    pub simulate: bool,
    /// `PRODUCER_RATE_LIMIT`: events per second per principal of the keys file, unless its
    /// entry has a `rate` of its own; 0: none.
    pub rate_limit: f64,
    /// `PRODUCER_MAX_CONNECTIONS`: connections the API's listener holds open at once;
    /// beyond, new ones wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// `PRODUCER_BODY_TIMEOUT`: how long a request's body may take to arrive; a client
    /// that trickles it in is cut off with 408.
    pub body_timeout: Duration,
    /// `PRODUCER_TLS_CERT_FILE` and `PRODUCER_TLS_KEY_FILE`: serve the event API over TLS
    /// with this PEM certificate chain and key, read again when they change.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `PRODUCER_MAX_HEADER_BYTES`, `PRODUCER_MAX_HEADERS`, `PRODUCER_HEADER_TIMEOUT`: what a
    /// request's line and headers may be, on the event API's listener.
    pub server_limits: service_runtime::server::ServerLimits,
    /// `PRODUCER_RESEND_WINDOW`: how long an acknowledged event is remembered, to answer its
    /// resends with the first answer; zero turns it off.
    pub resend_window: Duration,
    /// `PRODUCER_RESEND_CACHE`: the most acknowledged events remembered.
    pub resend_cache: usize,
    /// `ADMIN_ADDR`: where `/healthz`, `/readyz` and `/metrics` listen when they must not
    /// share the event API's listener (a public ingress exposes only the API); unset,
    /// they are on `HTTP_ADDR` with it.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// How records are written.
    pub sink: SinkSettings,
}

impl ProducerConfig {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env) -> Result<ProducerConfig, ConfigError> {
        let compression = env.string("PRODUCER_COMPRESSION", "lz4");
        let compression =
            crate::sink::parse_compression(&compression).map_err(|p| ConfigError::new("PRODUCER_COMPRESSION", p))?;
        let timeout = env.duration("PRODUCE_TIMEOUT", Duration::from_secs(10))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("PRODUCE_TIMEOUT", "must be greater than zero"));
        }
        Ok(ProducerConfig {
            common: CommonConfig::from_env(env, "producer", "0.0.0.0:8080")?,
            topic_partitions: env.bounded("TOPIC_PARTITIONS", 2, 1, 10_000)?,
            topic_replication_factor: env.bounded("TOPIC_REPLICATION_FACTOR", 1, 1, 16)?,
            generator_rate: env.bounded("GENERATOR_RATE", 0, 0, 1_000_000)?,
            generator_bad_share: env.bounded("GENERATOR_BAD_SHARE", 0.1, 0.0, 1.0)?,
            max_body_bytes: env.bounded("MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024)?,
            event_ts_max_ahead: env.duration("EVENT_TS_MAX_AHEAD", Duration::from_secs(3600))?,
            access: access(env)?,
            simulate: env.flag("PRODUCER_SIMULATE", false)?,
            rate_limit: env.bounded("PRODUCER_RATE_LIMIT", 1000.0, 0.0, 10_000_000.0)?,
            max_connections: env.bounded("PRODUCER_MAX_CONNECTIONS", 4096, 1, 1_000_000)?,
            body_timeout: match env.duration("PRODUCER_BODY_TIMEOUT", Duration::from_secs(10))? {
                zero if zero.is_zero() => {
                    return Err(ConfigError::new("PRODUCER_BODY_TIMEOUT", "must be greater than zero"));
                }
                timeout => timeout,
            },
            tls: tls_files(env)?,
            server_limits: service_runtime::server::ServerLimits {
                max_header_bytes: env.bounded("PRODUCER_MAX_HEADER_BYTES", 32 * 1024, 8 * 1024, 1024 * 1024)?,
                max_headers: env.bounded("PRODUCER_MAX_HEADERS", 64, 8, 1000)?,
                header_timeout: match env.duration("PRODUCER_HEADER_TIMEOUT", Duration::from_secs(10))? {
                    zero if zero.is_zero() => {
                        return Err(ConfigError::new("PRODUCER_HEADER_TIMEOUT", "must be greater than zero"));
                    }
                    timeout => timeout,
                },
            },
            resend_window: env.duration("PRODUCER_RESEND_WINDOW", Duration::from_secs(600))?,
            resend_cache: env.bounded("PRODUCER_RESEND_CACHE", 200_000, 0, 100_000_000)?,
            admin_addr: match env.raw("ADMIN_ADDR") {
                None => None,
                Some(raw) => Some(raw.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "ADMIN_ADDR",
                        format!("{raw:?} is not an address: use host:port, e.g. 0.0.0.0:9080"),
                    )
                })?),
            },
            sink: SinkSettings {
                linger: env.duration("PRODUCER_LINGER", Duration::from_millis(5))?,
                batch_bytes: env.bounded("PRODUCER_BATCH_BYTES", 512 * 1024, 1024, 64 * 1024 * 1024)?,
                compression,
                max_pending: env.bounded("PRODUCER_MAX_PENDING", 50_000, 1, 10_000_000)?,
                timeout,
                idempotence: env.flag("PRODUCER_IDEMPOTENCE", true)?,
            },
        })
    }
}

/// Who may write events (`PRODUCER_AUTH`).
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// `none`: anyone who reaches the port, as the principal `anonymous`; for local use,
    /// and logged as such at start.
    Open,
    /// `api-keys` (the default): a bearer key from the keys file or variable.
    Keys(KeySource),
}

const AUTH: &str = "PRODUCER_AUTH";
const KEYS_FILE: &str = "PRODUCER_API_KEYS_FILE";
const KEYS: &str = "PRODUCER_API_KEYS";

fn access(env: &Env) -> Result<Access, ConfigError> {
    let file = env.raw(KEYS_FILE).map(str::to_owned);
    let inline = env.raw(KEYS).map(str::to_owned);
    match env.string(AUTH, "api-keys").trim() {
        "none" => {
            for (name, set) in [(KEYS_FILE, file.is_some()), (KEYS, inline.is_some())] {
                if set {
                    return Err(ConfigError::new(name, format!("is set but {AUTH}=none: keys would be ignored")));
                }
            }
            Ok(Access::Open)
        }
        "api-keys" => {
            let (name, source) = match (file, inline) {
                (Some(_), Some(_)) => return Err(ConfigError::new(KEYS, format!("set this or {KEYS_FILE}, not both"))),
                (Some(path), None) => (KEYS_FILE, KeySource::File(path.into())),
                (None, Some(json)) => (KEYS, KeySource::Inline(json)),
                (None, None) => {
                    return Err(ConfigError::new(
                        KEYS_FILE,
                        format!(
                            "must be set ({AUTH}=api-keys, the default): a file of API key digests (README, Security), \
                             or {AUTH}=none for open local use"
                        ),
                    ));
                }
            };
            crate::auth::load(&source).map_err(|problem| ConfigError::new(name, problem))?;
            Ok(Access::Keys(source))
        }
        other => Err(ConfigError::new(AUTH, format!("{other:?} is not valid: use api-keys or none"))),
    }
}

/// `PRODUCER_TLS_CERT_FILE` and `PRODUCER_TLS_KEY_FILE`: both or neither.
fn tls_files(env: &Env) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, ConfigError> {
    let cert = env.raw("PRODUCER_TLS_CERT_FILE").map(str::trim).filter(|v| !v.is_empty());
    let key = env.raw("PRODUCER_TLS_KEY_FILE").map(str::trim).filter(|v| !v.is_empty());
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some((cert.into(), key.into()))),
        (Some(_), None) => Err(ConfigError::new(
            "PRODUCER_TLS_KEY_FILE",
            "must be set with PRODUCER_TLS_CERT_FILE: the certificate's private key (PEM)",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "PRODUCER_TLS_CERT_FILE",
            "must be set with PRODUCER_TLS_KEY_FILE: the certificate chain (PEM), leaf first",
        )),
    }
}
