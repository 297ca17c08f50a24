//! A bad setting stops the real binary at once with one line naming the variable, and
//! exit code 2. The same code path serves all three services; the consumers' binaries are
//! checked in their own crate's test.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::process::Command;

fn run_producer(var: &str, value: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_producer"))
        .env(var, value)
        .env("HTTP_ADDR", if var == "HTTP_ADDR" { value } else { "127.0.0.1:0" })
        .output()
        .expect("the producer binary did not start");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn an_empty_bootstrap_list_exits_2_naming_the_variable() {
    let (code, stderr) = run_producer("KAFKA_BOOTSTRAP_SERVERS", "");
    assert_eq!(code, Some(2));
    assert_eq!(stderr, "configuration error: KAFKA_BOOTSTRAP_SERVERS: must list at least one host:port\n");
}

#[test]
fn a_nonsense_http_addr_exits_2_naming_the_variable() {
    let (code, stderr) = run_producer("HTTP_ADDR", "nonsense");
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "configuration error: HTTP_ADDR: \"nonsense\" is not an address: use host:port, e.g. 0.0.0.0:8080\n"
    );
}

#[test]
fn every_common_variable_is_checked_on_the_real_binary() {
    let cases = [
        ("LOG_FORMAT", "xml", "LOG_FORMAT: \"xml\" is not valid: use json or text"),
        (
            "RUST_LOG",
            "info,[[[",
            "RUST_LOG: \"info,[[[\" is not valid: invalid filter directive; use a level (info) or directives \
             (info,store_consumer=debug)",
        ),
        ("STORE_EVENTS_TOPIC", "", "STORE_EVENTS_TOPIC: \"\" must have 1 to 249 characters"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "KAFKA_BOOTSTRAP_SERVERS: \"kafka\" is not host:port"),
    ];
    for (var, value, problem) in cases {
        let (code, stderr) = run_producer(var, value);
        assert_eq!((code, stderr), (Some(2), format!("configuration error: {problem}\n")), "{var}={value}");
    }
}

/// `producer --help` (as `docker run IMAGE producer --help` runs it) prints the usage and
/// exits 0 before any setting is read: a broken one does not hide the help.
#[test]
fn help_prints_the_usage_and_exits_0_whatever_the_settings() {
    let output = Command::new(env!("CARGO_BIN_EXE_producer"))
        .arg("--help")
        .env("HTTP_ADDR", "nonsense")
        .output()
        .expect("the producer binary did not start");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("usage: producer [healthcheck | check-kafka | ensure-topic"), "{stdout}");
    assert!(stdout.contains("environment variables"), "{stdout}");
}
