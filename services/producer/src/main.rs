//! producer: reads its configuration (exit code 2 when it is wrong), sets up logs and
//! runs the service until SIGINT or SIGTERM, or one of the commands of USAGE; a fatal
//! error is printed and exits as `service_runtime::process` says. Everything else is in
//! the library.

use std::process::ExitCode;

use producer::ProducerConfig;
use service_runtime::config::{Env, exit_on_error};
use service_runtime::{shutdown, telemetry};

const USAGE: &str = "usage: producer [healthcheck | check-kafka | ensure-topic | generate --count N [--bad-share F] [--seed S] | issue-key PRINCIPAL STORES [--simulate] | --help]";

/// The producer allocates with mimalloc: under its HTTP load glibc's malloc and free took
/// about a third of its CPU (`examples/profile_http.rs`). The consumers keep glibc's,
/// which served their batch work better (`profile_batches`: 2.9 CPU-s per million events
/// against 3.6 with mimalloc, and less memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    service_runtime::process::main(run)
}

async fn run() -> anyhow::Result<ExitCode> {
    if service_runtime::commands::is_help(std::env::args().nth(1).as_deref()) {
        println!("{USAGE}\n{}", service_runtime::commands::HELP_FOOTER);
        return Ok(ExitCode::SUCCESS);
    }
    if std::env::args().nth(1).as_deref() == Some("issue-key") {
        // Needs no settings: the platform team runs it anywhere.
        let args: Vec<String> = std::env::args().skip(2).collect();
        return Ok(match producer::auth::issue_key(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(problem) => {
                eprintln!("{problem}");
                ExitCode::from(service_runtime::process::EXIT_CONFIG)
            }
        });
    }
    if std::env::args().nth(1).as_deref() == Some("generate") {
        // Needs no Kafka, keys or listener settings: only the default share of bad events.
        let bad_share = exit_on_error(Env::from_process().bounded("GENERATOR_BAD_SHARE", 0.1, 0.0, 1.0));
        let args: Vec<String> = std::env::args().skip(2).collect();
        return Ok(match producer::generator::print_ndjson(&args, bad_share) {
            Ok(()) => ExitCode::SUCCESS,
            Err(problem) => {
                eprintln!("{problem}; {USAGE}");
                ExitCode::from(service_runtime::process::EXIT_CONFIG)
            }
        });
    }
    let config = exit_on_error(ProducerConfig::from_env(&Env::from_process()));
    telemetry::init(config.common.log_format, &config.common.log_filter);
    let command = std::env::args().nth(1);
    // With ADMIN_ADDR the probes are there, and so is what `healthcheck` asks.
    let mut common = config.common.clone();
    common.http_addr = config.admin_addr.unwrap_or(common.http_addr);
    if let Some(code) = service_runtime::commands::run(command.as_deref().unwrap_or(""), &common).await {
        return Ok(code);
    }
    match command.as_deref() {
        None => {}
        Some("ensure-topic") => {
            return Ok(if producer::ensure_topic(&config).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Some(other) => {
            eprintln!("unknown command {other}; {USAGE}");
            return Ok(ExitCode::from(service_runtime::process::EXIT_CONFIG));
        }
    }
    let listener = service_runtime::http::listen(config.common.http_addr).await?;
    tracing::info!(topic = %config.common.topic, "Producer starting.");
    producer::run(config, listener, shutdown::on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
