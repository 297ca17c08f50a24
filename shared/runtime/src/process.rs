//! How a service binary starts and ends: whether errors carry backtraces is decided
//! before any thread exists, the tokio runtime is built, and an error that stops the
//! program is printed as what went wrong and why, one block, with an exit code a
//! supervisor can tell apart from the others:
//!
//! | code | meaning |
//! | ---: | --- |
//! | 0 | done, or stopped by SIGTERM/SIGINT after finishing its work |
//! | 1 | a runtime failure: cannot listen, Kafka or S3 unreachable or refusing, no credentials (the error says which) |
//! | 2 | a configuration or usage error, naming the variable or argument |
//! | 101 | a panic: a bug in store-events (with a backtrace when `RUST_BACKTRACE=1`) |
//!
//! A person reads the first lines of a failed start; Rust's default (`Error: {:?}` from
//! `main`) prints a backtrace under it whenever `RUST_BACKTRACE` is set, which pushed the
//! cause out of sight. An error's backtrace is printed only with `ERROR_BACKTRACE=1` (it is
//! captured where Rust captures one: `RUST_LIB_BACKTRACE=1` or `RUST_BACKTRACE=1`); panics
//! keep following `RUST_BACKTRACE`.

use std::fmt::Write as _;
use std::future::Future;
use std::process::ExitCode;

/// Exit code of a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;

/// The variable that asks for a backtrace under a fatal error.
pub const BACKTRACE_VAR: &str = "ERROR_BACKTRACE";

/// Runs `body` on a multi-threaded tokio runtime and turns its outcome into the exit code;
/// an error is printed with [`render`].
pub fn main<Fut>(body: impl FnOnce() -> Fut) -> ExitCode
where
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let backtrace = match backtrace_wanted(std::env::var(BACKTRACE_VAR).ok().as_deref()) {
        Ok(wanted) => wanted,
        Err(problem) => {
            eprintln!("configuration error: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprint!("{}", render(&anyhow::Error::new(error).context("cannot start the async runtime"), false));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(body()) {
        Ok(code) => code,
        Err(error) => {
            eprint!("{}", render(&error, backtrace));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `ERROR_BACKTRACE`'s value: unset, `0`/`false` (no) or `1`/`true` (yes).
fn backtrace_wanted(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("" | "0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(format!("{BACKTRACE_VAR}: {other:?} is neither 1/true nor 0/false")),
    }
}

/// The error block: `Error: <what>`, then each cause on its own `caused by:` line (a
/// cause whose words the line above already holds is left out: many errors repeat their
/// source in their own message), then, only when `with_backtrace`, the backtrace or why
/// there is none.
pub fn render(error: &anyhow::Error, with_backtrace: bool) -> String {
    let mut text = format!("Error: {error}\n");
    let mut above = error.to_string();
    for cause in error.chain().skip(1) {
        let line = cause.to_string();
        if !above.contains(&line) {
            let _ = writeln!(text, "  caused by: {line}");
        }
        above = line;
    }
    if with_backtrace {
        if error.backtrace().status() == std::backtrace::BacktraceStatus::Captured {
            let _ = write!(text, "backtrace:\n{}\n", error.backtrace());
        } else {
            text.push_str("backtrace: none captured (set RUST_LIB_BACKTRACE=1 as well)\n");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_names_the_error_and_each_cause_on_its_own_line() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use (os error 98)");
        let error = anyhow::Error::new(io).context("cannot listen on HTTP_ADDR=127.0.0.1:8080");
        assert_eq!(
            render(&error, false),
            "Error: cannot listen on HTTP_ADDR=127.0.0.1:8080\n  caused by: Address already in use (os error 98)\n"
        );
    }

    #[derive(Debug)]
    struct Wrapping(std::io::Error);
    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Connection error: {}", self.0)
        }
    }
    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_line_above_already_says_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let error = anyhow::Error::new(Wrapping(io)).context("cannot make sure topic t exists");
        assert_eq!(
            render(&error, false),
            "Error: cannot make sure topic t exists\n  caused by: Connection error: Connection refused (os error 111)\n"
        );
    }

    #[test]
    fn no_backtrace_unless_asked_and_captured() {
        let error = anyhow::anyhow!("S3 refused the request");
        assert_eq!(render(&error, false), "Error: S3 refused the request\n");
        // Whether one was captured depends on the test process's environment; when none
        // was, asking for it adds nothing rather than "disabled backtrace".
        let asked = render(&error, true);
        assert!(asked.starts_with("Error: S3 refused the request\nbacktrace"), "{asked}");
        if error.backtrace().status() != std::backtrace::BacktraceStatus::Captured {
            assert!(asked.ends_with("backtrace: none captured (set RUST_LIB_BACKTRACE=1 as well)\n"), "{asked}");
        }
    }

    #[test]
    fn error_backtrace_takes_one_zero_true_false_and_names_itself_otherwise() {
        assert_eq!(backtrace_wanted(None), Ok(false));
        assert_eq!(backtrace_wanted(Some("0")), Ok(false));
        assert_eq!(backtrace_wanted(Some("false")), Ok(false));
        assert_eq!(backtrace_wanted(Some("1")), Ok(true));
        assert_eq!(backtrace_wanted(Some("true")), Ok(true));
        let problem = backtrace_wanted(Some("yes please")).unwrap_err();
        assert!(problem.starts_with("ERROR_BACKTRACE: \"yes please\""), "{problem}");
    }
}
