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

/// What a fatal error prints: the error and its causes, one block at the end of stderr, and
/// no backtrace even where `RUST_BACKTRACE=1` is set (as many Rust developers have it).
fn run_failing(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_producer"));
    command.args(args).env("RUST_BACKTRACE", "1").env_remove("RUST_LIB_BACKTRACE").env("LOG_FORMAT", "text");
    command.env("PRODUCER_AUTH", "none");
    for (var, value) in env {
        command.env(var, value);
    }
    let output = command.output().expect("the producer binary did not start");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The lines of stderr from the error block on.
fn error_block(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start =
        lines.iter().rposition(|l| l.starts_with("Error: ")).unwrap_or_else(|| panic!("no error block: {stderr}"));
    lines[start..].to_vec()
}

fn has_stack_frames(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start();
        t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    })
}

#[test]
fn a_taken_port_is_named_with_its_cause_and_what_to_do_without_a_backtrace() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let (code, stderr) = run_failing(&[], &[("HTTP_ADDR", &addr.to_string())]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        error_block(&stderr),
        [
            format!(
                "Error: cannot listen on HTTP_ADDR={addr}; another program listens there (`ss -ltnp 'sport = :{}'` \
                 names it): stop it, or set HTTP_ADDR to a free address",
                addr.port()
            )
            .as_str(),
            "  caused by: Address already in use (os error 98)",
        ]
    );
    assert!(!has_stack_frames(&stderr) && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn error_backtrace_1_adds_the_backtrace_under_the_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (code, stderr) = run_failing(&[], &[("HTTP_ADDR", &addr), ("ERROR_BACKTRACE", "1")]);
    assert_eq!(code, Some(1), "{stderr}");
    let block = error_block(&stderr);
    assert_eq!(block[2], "backtrace:", "{stderr}");
    assert!(has_stack_frames(&stderr), "{stderr}");
}

#[test]
fn an_unreachable_broker_is_one_block_naming_the_address_each_cause_once() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let (code, stderr) = run_failing(&["ensure-topic"], &[("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")]);
    assert_eq!(code, Some(1), "{stderr}");
    let block = error_block(&stderr);
    assert_eq!(block[0], "Error: cannot make sure topic MystiqueStoreEventsTopic exists", "{stderr}");
    assert_eq!(block.len(), 2, "each cause once: {block:#?}");
    assert!(block[1].starts_with("  caused by: connecting to Kafka (Plaintext): "), "{block:#?}");
    assert!(
        block[1].contains("\"127.0.0.1:1\"") && block[1].ends_with("Connection refused (os error 111)"),
        "{block:#?}"
    );
    assert!(!has_stack_frames(&stderr), "{stderr}");
}

#[test]
fn generate_needs_no_service_settings_and_prints_valid_events() {
    // No PRODUCER_AUTH, no keys file, no Kafka: `producer generate` is a tool for anyone.
    let output = Command::new(env!("CARGO_BIN_EXE_producer"))
        .args(["generate", "--count", "3", "--seed", "4", "--bad-share", "0"])
        .env_remove("PRODUCER_AUTH")
        .env_remove("PRODUCER_API_KEYS_FILE")
        .env_remove("PRODUCER_API_KEYS")
        .output()
        .expect("the producer binary did not start");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<_> = stdout.lines().map(|line| store_event::StoreEvent::from_json(line.as_bytes())).collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(Result::is_ok), "{stdout}");

    let output = Command::new(env!("CARGO_BIN_EXE_producer"))
        .args(["generate", "--count", "1"])
        .env("GENERATOR_BAD_SHARE", "2")
        .output()
        .expect("the producer binary did not start");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("configuration error: GENERATOR_BAD_SHARE"));
}
