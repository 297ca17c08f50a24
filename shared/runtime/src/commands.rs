//! The subcommands every service binary has, besides its own: `healthcheck` (container
//! health checks, no curl needed) and `check-kafka` (connection diagnostics).

use std::process::ExitCode;

use crate::config::CommonConfig;

/// What `--help` says after a service's usage line.
pub const HELP_FOOTER: &str = "Without a command it runs the service until SIGINT or SIGTERM. Settings come from \
environment variables (README, Configuration); a wrong one stops it with exit code 2, naming the variable.";

/// Whether `command` asks for help (`--help`, `-h`, `help`): answered before the
/// configuration is read, so that it works anywhere.
pub fn is_help(command: Option<&str>) -> bool {
    matches!(command, Some("--help" | "-h" | "help"))
}

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
