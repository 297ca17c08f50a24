//! The event API's own listener facing the stores: TLS with a certificate renewed without a
//! restart (checked with curl, a client we did not write), and the limits on a request's
//! headers (raw sockets: too many, too large, trickled in).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1 named `name`, made with openssl (which
/// `scripts/stack.sh` also needs): its certificate and key files, in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl could not run (apt-get install openssl)");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// Moves `from` over `to` as a Secret update does (a new file renamed into place).
fn replace(from: &Path, to: &Path) {
    let next = to.with_extension("next");
    std::fs::copy(from, &next).unwrap();
    std::fs::rename(&next, to).unwrap();
}

/// POSTs one event with curl trusting only `ca`: curl's exit code and the HTTP status.
fn curl_post(url: &str, ca: &Path) -> (i32, String) {
    let body = common::example().to_string();
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-H", "content-type: application/json", "--data-binary", &body, &format!("{url}/v1/events")])
        .output()
        .expect("curl could not run");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

// Multi-threaded: curl runs as a blocking child process while the producer serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_api_speaks_tls_and_serves_a_renewed_certificate_without_a_restart() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first_cert, first_key) = certificate(&dir, "store-events-first");
    let (second_cert, second_key) = certificate(&dir, "store-events-second");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace(&first_cert, &cert);
    replace(&first_key, &key);

    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("127.0.0.1:{admin_port}");
    let producer = common::start_at(
        &[
            ("PRODUCER_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("PRODUCER_TLS_KEY_FILE", key.to_str().unwrap()),
            ("ADMIN_ADDR", &admin),
        ],
        &format!("http://{admin}/readyz"),
    )
    .await;
    let url = producer.base.replace("http://", "https://");

    assert_eq!(curl_post(&url, &first_cert), (0, "200".to_owned()));
    // Plain HTTP on the TLS port gets no answer; a client trusting another certificate
    // refuses the server's (curl's 60: peer certificate cannot be authenticated).
    assert_ne!(curl_post(&producer.base, &first_cert).1, "200");
    assert_eq!(curl_post(&url, &second_cert).0, 60);

    // Renewed in place (key first, then certificate: between the two the pair is unusable
    // and the first stays in force).
    replace(&second_key, &key);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(curl_post(&url, &first_cert), (0, "200".to_owned()), "a half-renewed pair must not be served");
    replace(&second_cert, &cert);
    let started = Instant::now();
    while curl_post(&url, &second_cert) != (0, "200".to_owned()) {
        assert!(started.elapsed() < Duration::from_secs(20), "the renewed certificate was not served within 20 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(curl_post(&url, &first_cert).0, 60, "the old certificate is still served");

    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("producer_tls_reloads_total{outcome=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("producer_tls_reloads_total{outcome=\"error\"}"), "the half-renewed pair: {metrics}");
    producer.stop().await;
}

/// Sends `head` (a request line and headers) and reads until the server answers or closes;
/// what it answered, and how long that took.
async fn answer_to(addr: &str, head: &[u8]) -> (String, Duration) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let _ = socket.write_all(head).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test]
async fn headers_beyond_the_limits_get_431_and_headers_trickling_in_are_cut_off() {
    let producer = common::start(&[
        ("PRODUCER_MAX_HEADER_BYTES", "16384"),
        ("PRODUCER_MAX_HEADERS", "20"),
        ("PRODUCER_HEADER_TIMEOUT", "2s"),
    ])
    .await;
    let addr = producer.base.trim_start_matches("http://").to_owned();
    let request = |extra: &str| format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");

    let (ok, _) = answer_to(&addr, request("X-Fine: yes\r\n").as_bytes()).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    let large = format!("X-Large: {}\r\n", "a".repeat(20_000));
    let (answer, _) = answer_to(&addr, request(&large).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "20 kB of headers: {answer:?}");

    let many: String = (0..30).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let (answer, _) = answer_to(&addr, request(&many).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "31 headers: {answer:?}");

    // A request line, then a header a byte every 300 ms: cut off at the 2 s deadline, long
    // before the header is complete (it would take 12 s).
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut closed_after = None;
    for byte in b"X-Trickle: 0123456789012345678901234567890123456789\r\n\r\n" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut buffer = [0u8; 256];
        let gone = match tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buffer)).await {
            Ok(Ok(_)) | Ok(Err(_)) => true,
            Err(_) => socket.write_all(&[*byte]).await.is_err(),
        };
        if gone {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling client was never cut off");
    assert!(closed_after < Duration::from_secs(6), "cut off after {closed_after:?}, the deadline is 2 s");
    producer.stop().await;
}
