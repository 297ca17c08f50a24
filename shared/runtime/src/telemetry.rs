//! Logs: JSON lines in containers, readable text in a terminal, filtered by `RUST_LOG`.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (CloudWatch, Loki, Fluent Bit).
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (containers, systemd, CI).
    pub fn default_for_terminal() -> LogFormat {
        if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json }
    }
}

impl FromStr for LogFormat {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("use json or text"),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })
    }
}

/// The log filter (`RUST_LOG`): a level (`info`) or directives
/// (`info,store_consumer=debug`), checked when the configuration is read so that a typo
/// stops start-up with the variable named instead of silently changing what is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl Default for LogFilter {
    /// `info`, with the AWS SDK's configuration loader at `error`: off AWS it warns of every
    /// instance-metadata probe of its credential chain, and a request that finds no
    /// credentials is reported once, by the error that names them (`s3::describe`).
    fn default() -> Self {
        LogFilter("info,aws_config=error".to_owned())
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str = "use a level (info) or directives (info,store_consumer=debug)";
        if s.trim().is_empty() {
            return Err(format!("empty; {HINT}"));
        }
        match EnvFilter::builder().parse(s) {
            Ok(_) => Ok(LogFilter(s.to_owned())),
            Err(e) => Err(format!("{e}; {HINT}")),
        }
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat, filter: &LogFilter) {
    let filter = EnvFilter::builder().parse_lossy(&filter.0);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("A log subscriber was already installed; keeping it.");
    }
}
