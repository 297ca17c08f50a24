//! How an event maps onto a Kafka record, and how a consumer tells which event type a
//! record carries.
//!
//! - key: the store id in decimal, so that one store's events stay in order on one
//!   partition;
//! - header `event_type`: `sale_event` or `inventory_event`, so a consumer skips the other
//!   type without parsing JSON;
//! - header `content-type`: `application/json`;
//! - timestamp: the event's `ts`;
//! - value: the event as compact JSON.
//!
//! Records from other producers may have no key and no headers (the original Lambda
//! wrote bare JSON): [`classify`] then reads `event_type` from the body.

use std::collections::BTreeMap;

use chrono::Utc;
use rskafka::record::Record;

use crate::document::Document;
use crate::model::{EventType, StoreEvent};

/// Header naming the event type.
pub const EVENT_TYPE_HEADER: &str = "event_type";
/// Header naming the value's media type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

impl StoreEvent {
    /// The Kafka record key: the store id in decimal.
    pub fn kafka_key(&self) -> Vec<u8> {
        self.store_id.to_string().into_bytes()
    }

    /// The record this event is written as.
    pub fn to_record(&self) -> Record {
        let headers = BTreeMap::from([
            (EVENT_TYPE_HEADER.to_owned(), self.event_type.as_str().as_bytes().to_vec()),
            (CONTENT_TYPE_HEADER.to_owned(), b"application/json".to_vec()),
        ]);
        Record {
            key: Some(self.kafka_key()),
            value: Some(self.to_json()),
            headers,
            timestamp: self.ts.with_timezone(&Utc),
        }
    }
}

/// Where a consumer routes one record, decided as cheaply as possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// The record carries this event type (by header, or by its JSON body when it has no
    /// header). Whether it is a *valid* event is for the consumer of that type to check.
    Type(EventType),
    /// No type can be attributed: the value is missing, empty, not JSON, not an object,
    /// or its `event_type` is absent or unknown.
    Unattributable {
        /// A short stable label for metrics: `null_value`, `empty_value`, `not_utf8`,
        /// `not_json`, `not_an_object`, `missing_event_type` or `unknown_event_type`.
        kind: &'static str,
        /// What a person reads: what is wrong, and where.
        reason: String,
    },
}

fn unattributable(kind: &'static str, reason: impl Into<String>) -> Route {
    Route::Unattributable { kind, reason: reason.into() }
}

/// Decides which event type a record belongs to, from its `event_type` header when it has
/// one, else from the `event_type` field of its JSON body.
///
/// A header that names an unknown type is not trusted: the body decides.
pub fn classify(headers: &BTreeMap<String, Vec<u8>>, value: Option<&[u8]>) -> Route {
    classify_keeping_body(headers, value).0
}

/// [`classify`], and the parsed body when the body had to be read to decide (a record
/// without a usable header), so that a consumer validating it does not parse it again.
/// The body is a [`Document`], cheap enough to build for every bare record: an earlier
/// quick read of `event_type` alone, to skip the other type's records unbuilt, cost more
/// than building them this way.
pub fn classify_keeping_body<'a>(
    headers: &BTreeMap<String, Vec<u8>>,
    value: Option<&'a [u8]>,
) -> (Route, Option<Document<'a>>) {
    if let Some(event_type) = header_type(headers) {
        return (Route::Type(event_type), None);
    }
    let bytes = match value {
        None => return (unattributable("null_value", "null value"), None),
        Some([]) => return (unattributable("empty_value", "empty value"), None),
        Some(bytes) => bytes,
    };
    let body = match Document::parse(bytes) {
        Ok(body) => body,
        Err(e) if e.is_data() || e.is_syntax() || e.is_eof() => {
            let reason = crate::validate::Invalid::from_syntax(e).to_string();
            // Invalid UTF-8 is a syntax error to serde_json; say so plainly.
            let route = if std::str::from_utf8(bytes).is_err() {
                unattributable("not_utf8", "not UTF-8 text")
            } else {
                unattributable("not_json", reason)
            };
            return (route, None);
        }
        Err(e) => return (unattributable("not_json", format!("not JSON: {e}")), None),
    };
    let route = route_by_body(&body);
    (route, Some(body))
}

/// The type the `event_type` header names, when it names a known one.
fn header_type(headers: &BTreeMap<String, Vec<u8>>) -> Option<EventType> {
    headers.get(EVENT_TYPE_HEADER).and_then(|h| std::str::from_utf8(h).ok()).and_then(|name| name.parse().ok())
}

/// The route the `event_type` field of a parsed body gives.
fn route_by_body(body: &Document<'_>) -> Route {
    match body.get("event_type") {
        _ if !body.is_object() => {
            unattributable("not_an_object", format!("the value must be a JSON object, found {}", body.type_name()))
        }
        None => unattributable("missing_event_type", "event_type: missing"),
        Some(Document::String(name)) => match name.parse::<EventType>() {
            Ok(event_type) => Route::Type(event_type),
            Err(_) => unattributable("unknown_event_type", format!("event_type: unknown event type {name:?}")),
        },
        Some(other) => {
            unattributable("unknown_event_type", format!("event_type: must be a string, found {}", other.type_name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn no_headers() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::new()
    }

    #[test]
    fn the_header_decides_without_reading_the_body() {
        let headers = BTreeMap::from([(EVENT_TYPE_HEADER.to_owned(), b"sale_event".to_vec())]);
        assert_eq!(classify(&headers, Some(b"not json")), Route::Type(EventType::Sale));
    }

    #[test]
    fn bare_json_from_the_original_lambda_is_routed_by_its_body() {
        let body = json!({"event_type": "inventory_event", "store_id": 3}).to_string();
        assert_eq!(classify(&no_headers(), Some(body.as_bytes())), Route::Type(EventType::Inventory));
    }

    #[test]
    fn the_body_parsed_to_route_a_record_is_kept_and_a_header_needs_none() {
        let body = json!({"event_type": "sale_event", "store_id": 3});
        let text = body.to_string();
        let (route, parsed) = classify_keeping_body(&no_headers(), Some(text.as_bytes()));
        assert_eq!((route, parsed), (Route::Type(EventType::Sale), Some(Document::from(&body))));
        let headers = BTreeMap::from([(EVENT_TYPE_HEADER.to_owned(), b"sale_event".to_vec())]);
        assert_eq!(classify_keeping_body(&headers, Some(text.as_bytes())), (Route::Type(EventType::Sale), None));
        let (route, parsed) = classify_keeping_body(&no_headers(), Some(b"[1]"));
        assert!(matches!(route, Route::Unattributable { kind: "not_an_object", .. }), "{route:?}");
        assert_eq!(parsed, Some(Document::from(json!([1]))));
    }

    #[test]
    fn an_unknown_header_falls_back_to_the_body() {
        let headers = BTreeMap::from([(EVENT_TYPE_HEADER.to_owned(), b"mystery".to_vec())]);
        let body = br#"{"event_type":"sales_event"}"#;
        assert_eq!(classify(&headers, Some(body)), Route::Type(EventType::Sale));
    }

    #[test]
    fn unattributable_records_say_why() {
        let cases: [(Option<&[u8]>, &str, &str); 7] = [
            (None, "null_value", "null value"),
            (Some(b""), "empty_value", "empty value"),
            (Some(b"\xff\xfe"), "not_utf8", "not UTF-8 text"),
            (Some(b"{\"event_type\": "), "not_json", "not JSON: EOF while parsing a value at line 1 column 15"),
            (Some(b"[1,2]"), "not_an_object", "the value must be a JSON object, found an array"),
            (Some(b"{\"store_id\": 1}"), "missing_event_type", "event_type: missing"),
            (Some(b"{\"event_type\": \"refund\"}"), "unknown_event_type", "event_type: unknown event type \"refund\""),
        ];
        for (value, kind, reason) in cases {
            assert_eq!(classify(&no_headers(), value), Route::Unattributable { kind, reason: reason.to_owned() });
        }
    }

    #[test]
    fn an_event_maps_to_key_headers_and_timestamp() {
        let event = crate::Generator::new(Some(7), 0.0).next_event(Utc::now()).event;
        let event = event.unwrap_or_else(|| unreachable!("a bad share of 0 makes only good events"));
        let record = event.to_record();
        assert_eq!(record.key, Some(event.store_id.to_string().into_bytes()));
        assert_eq!(record.headers.get(EVENT_TYPE_HEADER), Some(&event.event_type.as_str().as_bytes().to_vec()));
        assert_eq!(record.timestamp, event.ts.with_timezone(&Utc));
        let round_trip = record.value.as_deref().map(StoreEvent::from_json);
        assert_eq!(round_trip, Some(Ok(event)));
    }
}
