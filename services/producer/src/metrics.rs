//! The producer's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use service_runtime::metrics::registered;

/// Every metric the producer exports.
#[derive(Clone)]
pub struct Metrics {
    /// `producer_events_accepted_total`: events of `POST /v1/events` acknowledged by Kafka.
    pub accepted: IntCounter,
    /// `producer_events_rejected_total{reason}`: events or requests refused, by reason.
    pub rejected: IntCounterVec,
    /// `producer_events_produced_total{event_type,source}`: events acknowledged by Kafka,
    /// by type and by path (`http`, `simulate`, `generator`).
    pub produced: IntCounterVec,
    /// `producer_produce_latency_seconds`: from handing records to the sink to Kafka's ack.
    pub produce_latency: Histogram,
    /// `producer_request_events`: events per `POST /v1/events` request.
    pub request_events: Histogram,
    /// `producer_requests_in_flight`: API requests being served.
    pub in_flight: IntGauge,
    /// `producer_resends_total`: events of POST /v1/events answered without being written
    /// again: acknowledged before (`PRODUCER_RESEND_WINDOW`) or repeated in one request.
    pub resends: IntCounter,
    /// `producer_tls_reloads_total{outcome}`: the event API's certificate read again after
    /// its files changed (`ok`), or found unusable and kept (`error`).
    pub tls_reloads: IntCounterVec,
    /// `producer_kafka_errors_total`: sends with at least one record not acknowledged.
    pub kafka_errors: IntCounter,
    /// `producer_api_keys`: API keys in force (`PRODUCER_AUTH=api-keys`).
    pub api_keys: IntGauge,
    /// `producer_api_keys_reload_errors_total`: changed keys files that could not be
    /// used (the keys before them stay in force).
    pub api_keys_reload_errors: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Metrics {
        Metrics {
            accepted: registered(
                registry,
                IntCounter::new("producer_events_accepted_total", "Events of POST /v1/events acknowledged by Kafka."),
            ),
            rejected: registered(
                registry,
                IntCounterVec::new(
                    Opts::new("producer_events_rejected_total", "Events or requests refused, by reason."),
                    &["reason"],
                ),
            ),
            produced: registered(
                registry,
                IntCounterVec::new(
                    Opts::new("producer_events_produced_total", "Events acknowledged by Kafka, by type and path."),
                    &["event_type", "source"],
                ),
            ),
            produce_latency: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "producer_produce_latency_seconds",
                        "From handing records to the sink to Kafka's ack.",
                    )
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
                ),
            ),
            request_events: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("producer_request_events", "Events per POST /v1/events request.")
                        .buckets(prometheus::exponential_buckets(1.0, 4.0, 9).unwrap_or_default()),
                ),
            ),
            in_flight: registered(registry, IntGauge::new("producer_requests_in_flight", "API requests being served.")),
            tls_reloads: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "producer_tls_reloads_total",
                        "TLS certificate reloads after its files changed, by outcome.",
                    ),
                    &["outcome"],
                ),
            ),
            resends: registered(
                registry,
                IntCounter::new(
                    "producer_resends_total",
                    "Events answered with an earlier copy's acknowledgement instead of being written again.",
                ),
            ),
            kafka_errors: registered(
                registry,
                IntCounter::new("producer_kafka_errors_total", "Sends with a record Kafka did not acknowledge."),
            ),
            api_keys: registered(registry, IntGauge::new("producer_api_keys", "API keys in force.")),
            api_keys_reload_errors: registered(
                registry,
                IntCounter::new(
                    "producer_api_keys_reload_errors_total",
                    "Changed keys files that could not be used; the keys before them stay in force.",
                ),
            ),
        }
    }
}
