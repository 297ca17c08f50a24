//! The producer's reading of a `POST /v1/events` body: its syntax (JSON or NDJSON, chosen
//! by the first byte) and each value's check as an event. Nothing may panic, and a valid
//! event, written as the producer writes it, reads back as the same event and passes the
//! consumers' check with the same type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use store_event::{BodyFormat, Document, StoreEvent, check_document, parse_body};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let format = if first & 1 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    let Ok(values) = parse_body(body, format) else { return };
    for mut value in values {
        // As the handler does: a missing request_id is given one.
        if let Some(object) = value.as_object_mut() {
            object.entry("request_id").or_insert_with(|| Value::from("00000000-0000-4000-8000-000000000000"));
        }
        let event = match StoreEvent::from_value(&value) {
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
