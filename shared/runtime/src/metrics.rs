//! The Prometheus registry of a service, with process metrics (CPU, memory, file
//! descriptors) registered, and the text exposition for `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};

/// Creates a registry with the process collector registered. Each service registers its
/// own metrics on it; names follow Prometheus conventions (units, `_total` on counters).
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    if let Err(error) = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())) {
        tracing::warn!(%error, "Process metrics are unavailable.");
    }
    register(&registry, &BrokerConnections::new());
    registry
}

/// `kafka_broker_connections`: the connections to Kafka brokers the process has open, all
/// its clients together, read when scraped. What a broker's connection quota counts (MSK
/// limits them per broker, README "Amazon MSK"): a partition does not open its own, the
/// partitions a broker leads share one (rskafka patch 13).
#[derive(Clone)]
struct BrokerConnections {
    gauge: prometheus::IntGauge,
}

impl BrokerConnections {
    fn new() -> BrokerConnections {
        let gauge = prometheus::IntGauge::new(
            "kafka_broker_connections",
            "Connections to Kafka brokers this process has open (all its clients).",
        )
        .unwrap_or_else(|e| unreachable!("a metric's constant options are invalid: {e}"));
        BrokerConnections { gauge }
    }
}

impl prometheus::core::Collector for BrokerConnections {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set(rskafka::open_connections() as i64);
        self.gauge.collect()
    }
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(%error, "Metrics could not be encoded.");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// The one way services make their metrics: `metric` is the result of the metric's
/// constructor (its options are constants in the code, so an error there is a bug), and
/// the metric is registered on `registry` and returned.
pub fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    let metric = metric.unwrap_or_else(|e| unreachable!("a metric's constant options are invalid: {e}"));
    register(registry, &metric);
    metric
}

/// Registers a collector, logging instead of panicking on a duplicate name (a programming
/// error that must not take the service down).
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: &C) {
    if let Ok(mut names) = REGISTERED.lock() {
        names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
    }
    if let Err(error) = registry.register(Box::new(collector.clone())) {
        tracing::error!(%error, "A metric could not be registered.");
    }
}

static REGISTERED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The name of every metric registered through [`registered`] in this process, so that a
/// test can check dashboards and alert rules against what the services really export.
pub fn registered_names() -> std::collections::BTreeSet<String> {
    REGISTERED.lock().map(|n| n.clone()).unwrap_or_default()
}
