//! The subcommands every service binary has, besides its own: `healthcheck` (container
//! health checks, no curl needed) and `check-kafka` (connection diagnostics).

use std::process::ExitCode;

use crate::config::CommonConfig;

/// Runs `command` when it is a shared subcommand and returns its exit code; `None` for
/// any other command, which the binary handles itself.
pub async fn run(command: &str, config: &CommonConfig) -> Option<ExitCode> {
    let ok = match command {
        "healthcheck" => crate::http::healthcheck(config.http_addr),
        "check-kafka" => crate::kafka::check_kafka(&config.kafka, &config.topic).await,
        _ => return None,
    };
    Some(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
