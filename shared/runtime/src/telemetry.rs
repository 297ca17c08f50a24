//! Logs: JSON lines in containers, readable text in a terminal, filtered by `RUST_LOG`.
//!
//! Work on one thing runs in a span that names it (`partition`, a `batch`'s offsets), so
//! its events need not repeat it. Text lines show the spans before the message; JSON
//! lines carry their fields at the top level beside the event's own, one key each, so
//! that a log query filters on `partition` whatever logged the line.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

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
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(FlatJson).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("A log subscriber was already installed; keeping it.");
    }
}

/// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, the
/// fields of the spans it happened in (the innermost wins; the event's own win over
/// them), `target`. Keys are never repeated, so every line is valid JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".to_owned(), Value::String(now));
        line.insert("level".to_owned(), Value::String(metadata.level().to_string()));
        event.record(&mut Fields(&mut line));
        for span in ctx.event_scope().into_iter().flatten() {
            let extensions = span.extensions();
            let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
            if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                for (key, value) in fields {
                    line.entry(key).or_insert(value);
                }
            }
        }
        line.entry("target").or_insert_with(|| Value::String(metadata.target().to_owned()));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields into a JSON object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Lines written by a subscriber, for reading back.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_lines(log: impl FnOnce()) -> Vec<Map<String, Value>> {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn span_fields_are_top_level_keys_beside_the_events_own() {
        let lines = json_lines(|| {
            let partition = tracing::info_span!("partition", partition = 3);
            let _partition = partition.enter();
            let batch = tracing::info_span!("batch", first_offset = 100_i64, next_offset = 150_i64);
            let _batch = batch.enter();
            tracing::warn!(retry_in = ?std::time::Duration::from_millis(200), ok = false, "S3 write failed.");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["timestamp", "level", "message", "retry_in", "ok", "first_offset", "next_offset", "partition", "target"]
        );
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "S3 write failed.");
        assert_eq!(line["retry_in"], "200ms");
        assert_eq!(line["ok"], false);
        assert_eq!(
            (&line["partition"], &line["first_offset"], &line["next_offset"]),
            (&json(3), &json(100), &json(150))
        );
        assert_eq!(line["target"], "service_runtime::telemetry::tests");
        assert!(chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok());
    }

    fn json(n: i64) -> Value {
        Value::from(n)
    }

    #[test]
    fn a_field_named_twice_is_written_once_the_innermost_value_winning() {
        let lines = json_lines(|| {
            let outer = tracing::info_span!("outer", partition = 1, topic = "t");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner", partition = 2);
            let _inner = inner.enter();
            tracing::info!("in both");
            tracing::info!(partition = 7, "its own");
        });
        assert_eq!(lines[0]["partition"], 2);
        assert_eq!(lines[0]["topic"], "t");
        assert_eq!(lines[1]["partition"], 7);
    }

    #[test]
    fn outside_any_span_a_line_has_the_events_fields_only() {
        let lines = json_lines(|| tracing::error!(error = "refused", "Kafka request failed."));
        let keys: Vec<&str> = lines[0].keys().map(String::as_str).collect();
        assert_eq!(keys, ["timestamp", "level", "message", "error", "target"]);
    }
}
