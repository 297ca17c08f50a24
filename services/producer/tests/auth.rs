//! Who may write, and how much, against the real broker: API keys from a file, per-store authorization,
//! the principal on each record read back with kcat, keys rotated without a restart,
//! `/v1/simulate` off unless enabled, the probes on their own listener, and the limits
//! (rate per key, body deadline, connections).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// A keys file in Cargo's temporary folder; each entry is (principal, stores, simulate).
struct KeysFile {
    path: PathBuf,
}

impl KeysFile {
    fn new(name: &str) -> KeysFile {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("keys-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        KeysFile { path: dir.join("api-keys.json") }
    }

    /// Writes the file anew (a new file moved over the old, as a Secret update does) and
    /// returns each principal's key.
    fn write(&self, entries: &[(&str, Value, bool)]) -> Vec<String> {
        let mut keys = Vec::new();
        let mut list = Vec::new();
        for (principal, stores, simulate) in entries {
            let (key, digest) = producer::auth::new_key();
            keys.push(key);
            list.push(json!({ "principal": principal, "sha256": digest, "stores": stores, "simulate": simulate }));
        }
        let next = self.path.with_extension("next");
        std::fs::write(&next, json!({ "keys": list }).to_string()).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
        keys
    }
}

async fn post(
    base: &str,
    path: &str,
    authorization: Option<&str>,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).json(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

fn event_for(store_id: u64) -> Value {
    let mut event = common::example();
    event["store_id"] = json!(store_id);
    event["request_id"] = json!(uuid::Uuid::new_v4().to_string());
    event
}

#[tokio::test]
async fn only_a_valid_key_writes_and_only_for_its_stores_with_its_principal_on_each_record() {
    let file = KeysFile::new("stores");
    let keys = file.write(&[("store-0017", json!([17]), false), ("head-office", json!("*"), false)]);
    let path = file.path.to_string_lossy().into_owned();
    let producer = common::start(&[
        ("PRODUCER_AUTH", "api-keys"),
        ("PRODUCER_API_KEYS_FILE", &path),
        ("PRODUCER_SIMULATE", "false"),
    ])
    .await;
    let base = producer.base.clone();

    // No key, another scheme, a wrong key: the same 401, telling nothing.
    let wrong = format!("Bearer {}x", keys[0]);
    for authorization in [None, Some("Basic c3RvcmU6c2VjcmV0"), Some(wrong.as_str())] {
        let (status, body, headers) = post(&base, "/v1/events", authorization, &event_for(17)).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(body, json!({ "error": "missing or invalid credentials" }), "{authorization:?}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"store-events\"");
    }

    // Store 17's key and an event of store 18 among its own: 403, nothing written.
    let store_key = format!("Bearer {}", keys[0]);
    let batch = json!([event_for(17), event_for(18), event_for(17)]);
    let (status, body, _) = post(&base, "/v1/events", Some(&store_key), &batch).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "1 of 3 events are for stores \"store-0017\" may not write for; nothing was written");
    assert_eq!(body["forbidden"], json!([{ "index": 1, "field": "store_id", "store_id": 18 }]));
    let marks = testkit::high_watermarks(&producer.topic, 2).await;
    assert_eq!(marks, [0, 0], "nothing of a refused request may reach Kafka");

    // Its own store: written, with the principal in a header, as kcat reads it.
    let (status, body, _) = post(&base, "/v1/events", Some(&store_key), &event_for(17)).await;
    assert_eq!(status, 200, "{body}");
    let written = &body["events"][0];
    let record =
        common::kcat(&producer.topic, written["partition"].as_i64().unwrap(), written["offset"].as_i64().unwrap());
    let headers = common::headers(&record);
    assert!(headers.contains(&("principal".to_owned(), "store-0017".to_owned())), "{headers:?}");

    // Head office writes for any store.
    let office_key = format!("Bearer {}", keys[1]);
    let (status, body, _) = post(&base, "/v1/events", Some(&office_key), &json!([event_for(18), event_for(99)])).await;
    assert_eq!(status, 200, "{body}");

    // /v1/simulate is off unless enabled: 404 whatever the key.
    let (status, body, _) = post(&base, "/v1/simulate", Some(&office_key), &json!({ "count": 5 })).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("PRODUCER_SIMULATE=true"), "{body}");
    producer.stop().await;
}

#[tokio::test]
async fn keys_added_and_revoked_in_the_file_apply_without_a_restart() {
    let file = KeysFile::new("rotate");
    let first = file.write(&[("till-a", json!([6]), false)]);
    let path = file.path.to_string_lossy().into_owned();
    let producer = common::start(&[("PRODUCER_AUTH", "api-keys"), ("PRODUCER_API_KEYS_FILE", &path)]).await;
    let base = producer.base.clone();
    let old = format!("Bearer {}", first[0]);
    assert_eq!(post(&base, "/v1/events", Some(&old), &event_for(6)).await.0, 200);

    // Rotation: the old key replaced by a new one for the same principal.
    let second = file.write(&[("till-a", json!([6]), false)]);
    let new = format!("Bearer {}", second[0]);
    testkit::eventually(Duration::from_secs(30), "the new key to be taken", || async {
        (post(&base, "/v1/events", Some(&new), &event_for(6)).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(post(&base, "/v1/events", Some(&old), &event_for(6)).await.0, 401, "the old key is revoked");

    // A broken file: the keys in force stay, and the error is counted.
    let next = file.path.with_extension("next");
    std::fs::write(&next, "{\"keys\": [").unwrap();
    std::fs::rename(&next, &file.path).unwrap();
    let metrics = format!("{base}/metrics");
    testkit::eventually(Duration::from_secs(30), "the broken file to be counted", || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.contains("producer_api_keys_reload_errors_total 1").then_some(())
    })
    .await;
    assert_eq!(post(&base, "/v1/events", Some(&new), &event_for(6)).await.0, 200, "the keys in force stay");
    producer.stop().await;
}

#[tokio::test]
async fn simulate_needs_a_key_that_may_simulate_and_admin_addr_takes_the_probes_off_the_api() {
    let file = KeysFile::new("simulate");
    let keys = file.write(&[("till", json!([1]), false), ("demo", json!("*"), true)]);
    let path = file.path.to_string_lossy().into_owned();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let producer = common::start_at(
        &[
            ("PRODUCER_AUTH", "api-keys"),
            ("PRODUCER_API_KEYS_FILE", &path),
            ("PRODUCER_SIMULATE", "true"),
            ("ADMIN_ADDR", &admin_addr),
        ],
        &format!("http://{admin_addr}/readyz"),
    )
    .await;
    let base = producer.base.clone();
    let (status, body, _) =
        post(&base, "/v1/simulate", Some(&format!("Bearer {}", keys[0])), &json!({ "count": 5 })).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "\"till\" may not simulate: its key needs \"simulate\": true in the keys file");
    let (status, body, _) =
        post(&base, "/v1/simulate", Some(&format!("Bearer {}", keys[1])), &json!({ "count": 5 })).await;
    assert_eq!(status, 200, "{body}");

    // The probes and metrics are on ADMIN_ADDR only; the API's listener serves the API.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let on_api = reqwest::get(format!("{base}{path}")).await.unwrap().status().as_u16();
        let on_admin = reqwest::get(format!("http://{admin_addr}{path}")).await.unwrap().status().as_u16();
        assert_eq!((on_api, on_admin), (404, 200), "{path}");
    }
    producer.stop().await;
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_with_retry_after_and_the_others_do_not() {
    let file = KeysFile::new("rate");
    let mut keys = file.write(&[("flood", json!([5]), false), ("quiet", json!([6]), false)]);
    // The flooding store's own limit: 10 events a second (the file's "rate").
    let text = std::fs::read_to_string(&file.path).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["keys"][0]["rate"] = json!(10);
    std::fs::write(&file.path, doc.to_string()).unwrap();
    let path = file.path.to_string_lossy().into_owned();
    let producer = common::start(&[("PRODUCER_AUTH", "api-keys"), ("PRODUCER_API_KEYS_FILE", &path)]).await;
    let base = producer.base.clone();
    let flood = format!("Bearer {}", keys.remove(0));
    let quiet = format!("Bearer {}", keys.remove(0));

    let batch: Vec<Value> = (0..30).map(|_| event_for(5)).collect();
    let (status, body, _) = post(&base, "/v1/events", Some(&flood), &json!(batch)).await;
    assert_eq!(status, 200, "a batch larger than a second's worth goes through once: {body}");
    let (status, body, headers) = post(&base, "/v1/events", Some(&flood), &event_for(5)).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: f64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1.0..=3.0).contains(&retry_after), "20 events of debt at 10/s: about 2 s, got {retry_after}");
    assert!(body["error"].as_str().unwrap_or_default().starts_with("\"flood\" is over its rate limit of 10 events/s"));
    // The other store, under PRODUCER_RATE_LIMIT's default, is not slowed.
    let (status, body, _) = post(&base, "/v1/events", Some(&quiet), &event_for(6)).await;
    assert_eq!(status, 200, "{body}");
    producer.stop().await;
}

/// A client that sends its body a byte at a time is cut off when PRODUCER_BODY_TIMEOUT
/// passes, with 408, instead of holding a connection and a task for as long as it likes.
#[tokio::test]
async fn a_body_trickling_in_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let producer = common::start(&[("PRODUCER_BODY_TIMEOUT", "2s")]).await;
    let addr = producer.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // One byte a second, until the server answers (or 10 s, well past the 2 s allowed).
    while started.elapsed() < Duration::from_secs(10) {
        let _ = socket.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    producer.stop().await;
}

/// At PRODUCER_MAX_CONNECTIONS open connections, a new client waits (it is not served)
/// until one of them closes, and is then served as usual.
#[tokio::test]
async fn at_the_connection_limit_a_new_client_waits_for_one_to_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let producer = common::start(&[("PRODUCER_MAX_CONNECTIONS", "2")]).await;
    let addr = producer.base.trim_start_matches("http://").to_owned();
    let idle_a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _idle_b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Give the server time to accept both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buffer = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buffer)).await;
    assert!(early.is_err(), "a third connection was served beyond the limit of 2");
    drop(idle_a);
    let served = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buffer)).await;
    let n = served.expect("the waiting client was not served once a connection closed").unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buffer[..n])
    );
    producer.stop().await;
}
