//! The consumer binary stops at once on a bad setting, with one line and exit code 2.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::process::Command;

#[test]
fn a_bad_setting_exits_2_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("S3_ENDPOINT", "127.0.0.1:9000")
        .output()
        .expect("the sales-consumer binary did not start");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "configuration error: S3_ENDPOINT: \"127.0.0.1:9000\" must start with http:// or https://\n"
    );
}

/// Runs `sales-consumer audit` with only `vars` (and PATH) set, against nothing that
/// answers: S3 at 127.0.0.1:1, and the instance metadata service off, so no request
/// leaves the machine.
fn audit_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .arg("audit")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("S3_ENDPOINT", "http://127.0.0.1:1")
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("S3_REQUEST_TIMEOUT", "5s")
        .envs(vars.iter().copied())
        .output()
        .expect("the sales-consumer binary did not start");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn audit_without_credentials_says_so_in_one_line() {
    let (code, stderr) = audit_with(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no warnings before it: {stderr}");
    assert!(
        stderr.starts_with(
            "Error: LIST event_type=sale_event/: no AWS credentials: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role"
        ),
        "{stderr}"
    );
}

#[test]
fn audit_against_an_endpoint_that_does_not_answer_names_it_in_one_line() {
    let (code, stderr) =
        audit_with(&[("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"), ("AWS_REGION", "us-east-1")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no warnings before it: {stderr}");
    assert!(
        stderr.starts_with("Error: LIST event_type=sale_event/: cannot reach S3 (S3_ENDPOINT, AWS_REGION): "),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

/// `sales-consumer --help` prints the usage with the service's name and exits 0 before
/// any setting is read.
#[test]
fn help_prints_the_usage_and_exits_0_whatever_the_settings() {
    for flag in ["--help", "-h", "help"] {
        let output = Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
            .arg(flag)
            .env("BATCH_MAX_AGE", "forever")
            .output()
            .expect("the sales-consumer binary did not start");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}: {stdout}");
        assert!(stdout.starts_with("usage: sales-consumer [healthcheck | check-kafka | audit"), "{flag}: {stdout}");
    }
}

/// A consumer that cannot listen stops with the error and its cause as one block, exit
/// code 1, and no backtrace even with `RUST_BACKTRACE=1`: the same path as the producer's
/// (its test checks the details).
#[test]
fn a_taken_port_stops_it_with_the_error_block_and_exit_1() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .env("HTTP_ADDR", addr.to_string())
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("the sales-consumer binary did not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let tail: Vec<&str> = stderr.lines().rev().take(2).collect();
    assert_eq!(tail[0], "  caused by: Address already in use (os error 98)", "{stderr}");
    assert!(
        tail[1].starts_with(&format!("Error: cannot listen on HTTP_ADDR={addr}; another program listens there")),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace") && !stderr.contains("__libc_start"), "{stderr}");
}
