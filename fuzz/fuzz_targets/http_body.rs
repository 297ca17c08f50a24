//! The producer's reading of a `POST /v1/events` body: its syntax (JSON or NDJSON, chosen
//! by the first byte) and each value's check as an event. Nothing may panic; the body reads
//! as serde_json's `Value` reads it, differentially (same syntax verdict, same values, same
//! verdict as an event); and a valid event, written as the producer writes it, reads back
//! as the same event and passes the consumers' check with the same type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use store_event::{BodyFormat, Document, StoreEvent, check_document, parse_body};

const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000000";

/// What serde_json's `Value` reads from the body: the reading `parse_body` replaced.
fn values(body: &[u8], format: BodyFormat) -> Option<Vec<Value>> {
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body).ok()? {
            Value::Array(items) => Some(items),
            value => Some(vec![value]),
        },
        BodyFormat::Ndjson => std::str::from_utf8(body)
            .ok()?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<Value>(line).ok())
            .collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let format = if first & 1 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    let parsed = parse_body(body, format);
    let expected = values(body, format);
    assert_eq!(parsed.is_ok(), expected.is_some(), "parse_body and serde_json disagree on the syntax");
    let (Ok(documents), Some(expected)) = (parsed, expected) else { return };
    assert_eq!(documents.iter().map(Value::from).collect::<Vec<_>>(), expected, "not the values serde_json reads");
    for (mut document, mut value) in documents.into_iter().zip(expected) {
        // As the handler does: a missing request_id is given one.
        document.insert_if_absent("request_id", || Document::String(REQUEST_ID.into()));
        if let Some(object) = value.as_object_mut() {
            object.entry("request_id").or_insert_with(|| Value::from(REQUEST_ID));
        }
        let verdict = StoreEvent::from_document(&document);
        assert_eq!(verdict, StoreEvent::from_value(&value), "the document and the Value get different verdicts");
        let event = match verdict {
            Ok(event) => event,
            Err(invalid) => {
                assert!(!invalid.field_errors().is_empty(), "an invalid event names what is wrong");
                let _ = invalid.kind();
                continue;
            }
        };
        let written = event.to_json();
        let again = StoreEvent::from_json(&written).unwrap_or_else(|e| panic!("written event does not read back: {e}"));
        assert_eq!(again, event, "written as {}", String::from_utf8_lossy(&written));
        let document = Document::parse(&written).unwrap_or_else(|e| panic!("written JSON does not parse: {e}"));
        let checked = check_document(&document).map(|c| (c.event_type, c.id));
        assert_eq!(checked.ok(), Some((event.event_type, event.id())), "the consumers' check disagrees");
    }
});
