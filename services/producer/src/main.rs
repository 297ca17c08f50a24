//! producer: reads its configuration (exit code 2 when it is wrong), sets up logs and
//! runs the service until SIGINT or SIGTERM. Everything else is in the library.

use anyhow::Context;
use producer::ProducerConfig;
use service_runtime::config::{Env, exit_on_error};
use service_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = exit_on_error(ProducerConfig::from_env(&Env::from_process()));
    telemetry::init(config.common.log_format);
    let listener = tokio::net::TcpListener::bind(config.common.http_addr)
        .await
        .with_context(|| format!("cannot listen on HTTP_ADDR={}", config.common.http_addr))?;
    tracing::info!(topic = %config.common.topic, "Producer starting.");
    producer::run(config, listener, shutdown::on_signal()).await
}
