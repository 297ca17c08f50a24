//! Typed configuration from environment variables, checked at start-up.
//!
//! Each service reads its settings through an [`Env`], which records the first problem
//! as a [`ConfigError`] naming the variable. `main` turns that into one line on stderr
//! and exit code 2 ([`exit_on_error`]), so a bad ConfigMap fails the pod at once with a
//! message that says what to fix.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kafka::KafkaSettings;
use crate::telemetry::{LogFilter, LogFormat};

/// A variable with a value the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable, e.g. `HTTP_ADDR`.
    pub variable: String,
    /// What is wrong with its value, and what would be right.
    pub problem: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError { variable: variable.to_owned(), problem: problem.into() }
    }
}

/// Where settings come from: the process environment in production, a map in tests.
/// It remembers every variable asked for, so a test can list exactly the variables a
/// service reads and check the README and the deployment files against them.
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
    asked: Arc<Mutex<BTreeSet<String>>>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        Env { vars: std::env::vars().collect(), asked: Arc::default() }
    }

    /// A fixed set of variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env { vars: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(), asked: Arc::default() }
    }

    /// The raw value, if set. An empty value counts as set: `KAFKA_BOOTSTRAP_SERVERS=` is an
    /// error, not a silent fallback to the default.
    pub fn raw(&self, name: &str) -> Option<&str> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(name.to_owned());
        }
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable asked for so far.
    pub fn asked(&self) -> BTreeSet<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The value, or `default` when unset.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e| ConfigError::new(name, format!("{raw:?} is not valid: {e}"))),
        }
    }

    /// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError::new(name, format!("{v:?} is not a boolean: use true or false"))),
        }
    }

    /// A duration such as `500ms`, `5s`, `2m` or `1h`; a bare number means seconds.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => parse_duration(raw).map_err(|problem| ConfigError::new(name, problem)),
        }
    }

    /// A number parsed and checked against `min..=max`.
    pub fn bounded<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let value = self.parse(name, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(name, format!("{value} is out of range: use {min} to {max}")));
        }
        Ok(value)
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{raw:?} is not a duration: use e.g. 500ms, 5s, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{raw:?} has an unknown unit {unit:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{raw:?} is out of range"))
}

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// Where the HTTP server listens (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Log format (`LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Which log lines are written (`RUST_LOG`, checked at start-up).
    pub log_filter: LogFilter,
    /// The topic all store events go through (`STORE_EVENTS_TOPIC`).
    pub topic: String,
    /// How to reach Kafka (`KAFKA_*`).
    pub kafka: KafkaSettings,
}

/// The default topic, as in the original demo.
pub const DEFAULT_TOPIC: &str = "MystiqueStoreEventsTopic";

impl CommonConfig {
    /// Reads the common settings; `default_http_addr` differs per service so that all
    /// three can run side by side on one machine.
    pub fn from_env(env: &Env, service: &str, default_http_addr: &str) -> Result<CommonConfig, ConfigError> {
        let http_addr = match env.raw("HTTP_ADDR") {
            None => {
                default_http_addr.parse().map_err(|e| ConfigError::new("HTTP_ADDR", format!("bad default: {e}")))?
            }
            Some(raw) => raw.trim().parse().map_err(|_| {
                ConfigError::new("HTTP_ADDR", format!("{raw:?} is not an address: use host:port, e.g. 0.0.0.0:8080"))
            })?,
        };
        let log_format = env.parse("LOG_FORMAT", LogFormat::default_for_terminal())?;
        let log_filter = env.parse("RUST_LOG", LogFilter::default())?;
        let topic = env.string("STORE_EVENTS_TOPIC", DEFAULT_TOPIC);
        check_topic_name(&topic).map_err(|problem| ConfigError::new("STORE_EVENTS_TOPIC", problem))?;
        let kafka = KafkaSettings::from_env(env, service)?;
        Ok(CommonConfig { http_addr, log_format, log_filter, topic, kafka })
    }
}

/// Kafka's own rule for topic names.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!("{topic:?} must have 1 to 249 characters"));
    }
    if topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a valid topic name"));
    }
    if let Some(c) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{topic:?} contains {c:?}: use letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// Prints a configuration error as one line and exits with code 2 (the convention for
/// usage errors), or returns the value.
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            eprintln!("configuration error: {err}");
            std::process::exit(crate::process::EXIT_CONFIG.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(pairs: &[(&str, &str)]) -> Result<CommonConfig, String> {
        CommonConfig::from_env(&Env::from_pairs(pairs.iter().copied()), "test", "127.0.0.1:8080")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_work_locally() {
        let config = common(&[]).map_err(|e| e.to_string());
        let config =
            config.as_ref().map(|c| (c.topic.as_str(), c.http_addr.to_string(), c.kafka.bootstrap_servers.clone()));
        assert_eq!(
            config,
            Ok(("MystiqueStoreEventsTopic", "127.0.0.1:8080".to_owned(), vec!["127.0.0.1:9092".to_owned()]))
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (("HTTP_ADDR", "nonsense"), "HTTP_ADDR: \"nonsense\" is not an address: use host:port, e.g. 0.0.0.0:8080"),
            (("KAFKA_BOOTSTRAP_SERVERS", ""), "KAFKA_BOOTSTRAP_SERVERS: must list at least one host:port"),
            (("KAFKA_BOOTSTRAP_SERVERS", "kafka"), "KAFKA_BOOTSTRAP_SERVERS: \"kafka\" is not host:port"),
            (("KAFKA_BOOTSTRAP_SERVERS", "a:1,b:x"), "KAFKA_BOOTSTRAP_SERVERS: \"b:x\" has a bad port"),
            (
                ("STORE_EVENTS_TOPIC", "my topic"),
                "STORE_EVENTS_TOPIC: \"my topic\" contains ' ': use letters, digits, '.', '_' and '-'",
            ),
            (("LOG_FORMAT", "xml"), "LOG_FORMAT: \"xml\" is not valid: use json or text"),
            (
                ("RUST_LOG", "info,[[["),
                "RUST_LOG: \"info,[[[\" is not valid: invalid filter directive; use a level (info) or \
                 directives (info,store_consumer=debug)",
            ),
            (
                ("RUST_LOG", ""),
                "RUST_LOG: \"\" is not valid: empty; use a level (info) or directives (info,store_consumer=debug)",
            ),
            (
                ("KAFKA_REQUEST_TIMEOUT", "soon"),
                "KAFKA_REQUEST_TIMEOUT: \"soon\" is not a duration: use e.g. 500ms, 5s, 2m",
            ),
        ];
        for ((name, value), expected) in cases {
            assert_eq!(common(&[(name, value)]).err().as_deref(), Some(expected), "{name}={value}");
        }
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn flags_and_ranges_are_checked() {
        let env = Env::from_pairs([("A", "yes"), ("B", "maybe"), ("N", "0")]);
        assert_eq!(env.flag("A", false), Ok(true));
        assert_eq!(
            env.flag("B", false).map_err(|e| e.to_string()),
            Err("B: \"maybe\" is not a boolean: use true or false".to_owned())
        );
        assert_eq!(
            env.bounded("N", 5u32, 1, 10).map_err(|e| e.to_string()),
            Err("N: 0 is out of range: use 1 to 10".to_owned())
        );
    }
}
