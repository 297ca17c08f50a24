//! `POST /v1/events` and `POST /v1/simulate` against the real broker; what was written
//! is read back with kcat.

mod common;

use serde_json::{Value, json};

#[tokio::test]
async fn a_posted_event_is_on_the_topic_with_its_key_header_and_normalised_json() {
    let producer = common::start(&[]).await;
    let example = common::example();
    let (status, body) = producer.post("/v1/events", "application/json", example.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let written = &body["events"][0];
    assert_eq!(written["request_id"], example["request_id"]);

    let record = common::kcat(
        &producer.topic,
        written["partition"].as_i64().unwrap_or(-1),
        written["offset"].as_i64().unwrap_or(-1),
    );
    assert_eq!(record["key"], "6");
    let headers = common::headers(&record);
    assert!(headers.contains(&("event_type".to_owned(), "inventory_event".to_owned())), "{headers:?}");
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap_or_default()).unwrap_or_default();
    let mut expected = example;
    expected["ts"] = json!("2021-04-25T12:52:40.938937Z");
    assert_eq!(payload, expected, "the zone-less ts is written as UTC with its zone");
    producer.stop().await;
}

#[tokio::test]
async fn arrays_and_ndjson_get_a_partition_and_offset_per_event_and_missing_ids_are_made() {
    let producer = common::start(&[]).await;
    let mut without_id = common::example();
    without_id.as_object_mut().map(|o| o.remove("request_id"));
    let (status, body) =
        producer.post("/v1/events", "application/json", json!([without_id, common::example()]).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let made = body["events"][0]["request_id"].as_str().unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "generated request_id {made:?}");

    let ndjson = format!("{}\n\n{}\n", common::example(), json!(common::example()));
    let (status, body) = producer.post("/v1/events", "application/x-ndjson", ndjson).await;
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2);
    for event in events {
        let record = common::kcat(
            &producer.topic,
            event["partition"].as_i64().unwrap_or(-1),
            event["offset"].as_i64().unwrap_or(-1),
        );
        let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(payload["request_id"], event["request_id"]);
    }
    producer.stop().await;
}

#[tokio::test]
async fn invalid_events_reject_the_whole_batch_listing_every_problem() {
    let producer = common::start(&[]).await;
    let mut bad = common::example();
    bad.as_object_mut().map(|o| o.remove("store_id"));
    bad["bad_msg"] = json!(true);
    let mut worse = common::example();
    worse["qty"] = json!(0);
    worse["price"] = json!("2.52");
    let (status, body) =
        producer.post("/v1/events", "application/json", json!([common::example(), bad, worse]).to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "2 of 3 events are invalid; nothing was written");
    assert_eq!(
        body["invalid"],
        json!([
            {"index": 1, "errors": [
                {"field": "store_id", "reason": "missing"},
                {"field": "bad_msg", "reason": "the producer flagged this event as bad"}]},
            {"index": 2, "errors": [
                {"field": "price", "reason": "must be a number, found a string"},
                {"field": "qty", "reason": "must be at least 1"}]}
        ])
    );
    let marks = testkit::high_watermarks(&producer.topic, 2).await;
    assert_eq!(marks, [0, 0], "nothing of a rejected batch may reach Kafka");
    producer.stop().await;
}

/// An event stamped hours ahead (a store's clock or time zone set wrong) is the client's
/// error, named by field, not a 503 "Kafka unavailable" to retry forever: Kafka refuses
/// records stamped more than an hour ahead by default.
#[tokio::test]
async fn an_event_stamped_too_far_ahead_is_a_422_naming_ts() {
    let producer = common::start(&[]).await;
    let mut ahead = common::example();
    ahead["ts"] = json!((chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339());
    let mut soon = common::example();
    soon["ts"] = json!((chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339());
    let (status, body) =
        producer.post("/v1/events", "application/json", json!([soon.clone(), ahead]).to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "1 of 2 events are invalid; nothing was written");
    let errors = &body["invalid"][0]["errors"];
    assert_eq!(body["invalid"][0]["index"], 1, "{body}");
    assert_eq!(errors[0]["field"], "ts", "{body}");
    let reason = errors[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("is 1079") || reason.starts_with("is 1080"), "{reason}");
    assert!(reason.contains("at most 3600s is taken (EVENT_TS_MAX_AHEAD"), "{reason}");
    // Ten minutes ahead is within the bound: it is written, as Kafka takes it.
    let (status, body) = producer.post("/v1/events", "application/json", json!([soon]).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let marks = testkit::high_watermarks(&producer.topic, 2).await;
    assert_eq!(marks.iter().sum::<i64>(), 1, "only the valid request reached Kafka");
    producer.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_their_status_and_a_clear_error() {
    let producer = common::start(&[("MAX_BODY_BYTES", "2048")]).await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("application/json", "{\n  \"store_id\": }".to_owned(), 400, "not JSON: expected value at line 2 column 15"),
        (
            "application/x-ndjson",
            format!("{}\n{{oops\n", common::example()),
            400,
            "not JSON: key must be a string at line 2 column 2",
        ),
        ("application/json", "x".repeat(4096), 413, "the body is larger than 2048 bytes (MAX_BODY_BYTES)"),
        (
            "text/plain",
            common::example().to_string(),
            415,
            "Content-Type \"text/plain\" is not supported: use application/json or application/x-ndjson",
        ),
        ("application/json", "  \n".to_owned(), 400, "the body is empty: send an event, an array of events or NDJSON"),
        ("application/json", "[]".to_owned(), 400, "no events: the array is empty"),
    ];
    for (content_type, body, status, message) in cases {
        let (got, answer) = producer.post("/v1/events", content_type, body).await;
        assert_eq!((got, answer["error"].as_str().unwrap_or_default()), (status, message), "{content_type}");
    }
    producer.stop().await;
}

#[tokio::test]
async fn the_simulate_summary_equals_what_is_on_the_topic() {
    let producer = common::start(&[]).await;
    let (status, summary) =
        producer.post("/v1/simulate", "application/json", r#"{"count": 300, "bad_share": 0.2, "seed": 5}"#).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["status"], true);
    assert_eq!(summary["tot_msgs"], 300);

    let marks = testkit::high_watermarks(&producer.topic, 2).await;
    let (mut total, mut bad, mut sales, mut inventory, mut revenue) = (0, 0, 0, 0, 0.0);
    for (partition, mark) in marks.iter().enumerate() {
        for offset in 0..*mark {
            let record = common::kcat(&producer.topic, partition as i64, offset);
            let event: Value = serde_json::from_str(record["payload"].as_str().unwrap_or_default()).unwrap_or_default();
            total += 1;
            let is_bad = event.get("bad_msg") == Some(&json!(true));
            bad += i32::from(is_bad);
            match event["event_type"].as_str() {
                Some("sale_event") => {
                    sales += 1;
                    if !is_bad {
                        let f = |k: &str| event[k].as_f64().unwrap_or_default();
                        revenue += f("price") * f("qty") * (1.0 - f("discount") / 100.0);
                    }
                }
                _ => inventory += 1,
            }
        }
    }
    assert_eq!((summary["tot_msgs"].as_i64(), summary["bad_msgs"].as_i64()), (Some(total), Some(bad.into())));
    assert_eq!((summary["sale_evnts"].as_i64(), summary["inventory_evnts"].as_i64()), (Some(sales), Some(inventory)));
    assert_eq!(summary["tot_sales"].as_f64(), Some((revenue * 100.0).round() / 100.0));
    assert!(bad > 0);
    producer.stop().await;
}

#[tokio::test]
async fn simulate_requests_are_checked() {
    let producer = common::start(&[]).await;
    let (status, body) = producer.post("/v1/simulate", "application/json", r#"{"count": 0, "bad_share": 2}"#).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["invalid"],
        json!([{"field": "count", "reason": "must be between 1 and 1000000"}, {"field": "bad_share", "reason": "must be between 0 and 1"}])
    );
    producer.stop().await;
}
