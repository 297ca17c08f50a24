//! The consumer binary stops at once on a bad setting, with one line and exit code 2.

use std::process::Command;

#[test]
fn a_bad_setting_exits_2_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_sales-consumer"))
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("S3_ENDPOINT", "127.0.0.1:9000")
        .output()
        .unwrap_or_else(|e| panic!("the sales-consumer binary did not start: {e}"));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "configuration error: S3_ENDPOINT: \"127.0.0.1:9000\" must start with http:// or https://\n"
    );
}
