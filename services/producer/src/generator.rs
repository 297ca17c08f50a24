//! The continuous generator (`GENERATOR_RATE` events per second, 0 = off): realistic
//! events with a share of bad ones, like the original Lambda, for demos and load. Bad
//! events go to the topic on purpose: the consumers must show that they handle them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rskafka::record::Record;
use store_event::{CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, GeneratedEvent, Generator};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::sink::Sink;

/// The record a generated event is written as; bad events carry the type header too.
pub fn to_record(generated: &GeneratedEvent) -> Record {
    match &generated.event {
        Some(event) => event.to_record(),
        None => Record {
            key: None,
            value: Some(generated.value.to_string().into_bytes()),
            headers: BTreeMap::from([
                (EVENT_TYPE_HEADER.to_owned(), generated.event_type.as_str().as_bytes().to_vec()),
                (CONTENT_TYPE_HEADER.to_owned(), b"application/json".to_vec()),
            ]),
            timestamp: Utc::now(),
        },
    }
}

/// `producer generate --count N [--bad-share F] [--seed S]`: prints generated events as
/// NDJSON, for `curl --data-binary`, for load tools' payload files, or to look at.
pub fn print_ndjson(args: &[String], default_bad_share: f64) -> Result<(), String> {
    use std::io::Write;
    let mut count: Option<u64> = None;
    let mut bad_share = default_bad_share;
    let mut seed = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value:?} is not {what}");
        match flag.as_str() {
            "--count" => count = Some(value.parse().map_err(|_| bad("a count"))?),
            "--bad-share" => {
                bad_share =
                    value.parse().ok().filter(|s| (0.0..=1.0).contains(s)).ok_or_else(|| bad("between 0 and 1"))?
            }
            "--seed" => seed = Some(value.parse().map_err(|_| bad("a number"))?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let count = count.ok_or("--count is required")?;
    let mut generator = Generator::new(seed, bad_share);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let generated = generator.next_event(Utc::now());
        writeln!(out, "{}", generated.value).map_err(|e| format!("cannot write: {e}"))?;
    }
    out.flush().map_err(|e| format!("cannot write: {e}"))
}

/// Produces `rate` events per second until `shutdown`, in ticks of 100 ms, through the
/// shared sink. Only acknowledged events are counted.
pub async fn run(sink: Arc<Sink>, rate: u32, bad_share: f64, metrics: Metrics, shutdown: CancellationToken) {
    if rate == 0 {
        return;
    }
    tracing::info!(rate, bad_share, "Generator on.");
    let mut generator = Generator::new(None, bad_share);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0_f64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        owed += f64::from(rate) / 10.0;
        let count = owed.floor() as usize;
        owed -= count as f64;
        let generated: Vec<GeneratedEvent> = (0..count).map(|_| generator.next_event(Utc::now())).collect();
        // In pieces that fit the sink (a tick may make more than PRODUCER_MAX_PENDING),
        // looking at shutdown between them.
        for piece in generated.chunks(sink.capacity()) {
            if shutdown.is_cancelled() {
                return;
            }
            match sink.send(piece.iter().map(to_record).collect(), true).await {
                Ok(results) => {
                    for (event, result) in piece.iter().zip(results) {
                        if result.is_ok() {
                            metrics.produced.with_label_values(&[event.event_type.as_str(), "generator"]).inc();
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "Generated events were not written; they are not counted."),
            }
        }
    }
}
