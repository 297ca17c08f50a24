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

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); an invalid
/// `RUST_LOG` falls back to `info` with a warning rather than failing start-up.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(e) if std::env::var_os("RUST_LOG").is_some() => (EnvFilter::new("info"), Some(e.to_string())),
        Err(_) => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("A log subscriber was already installed; keeping it.");
    }
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "RUST_LOG is invalid; logging at info.");
    }
}
