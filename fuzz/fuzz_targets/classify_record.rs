//! The consumers' reading of one Kafka record: routing by the `event_type` header or the
//! body, and the borrowed `Document` reader against serde_json, differentially: the same
//! verdict (valid with the same type and identity, or the same errors) and the same bytes
//! stored (the consumers write the `Document` back as JSON).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use store_event::{Document, EVENT_TYPE_HEADER, StoreEvent, check_document, classify_keeping_body};

#[derive(Arbitrary, Debug)]
struct Record {
    event_type_header: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fuzz_target!(|record: Record| {
    let mut headers = BTreeMap::new();
    if let Some(header) = &record.event_type_header {
        headers.insert(EVENT_TYPE_HEADER.to_owned(), header.clone());
    }
    let _route = classify_keeping_body(&headers, record.value.as_deref());
    let Some(bytes) = record.value.as_deref() else { return };
    match (serde_json::from_slice::<Value>(bytes), Document::parse(bytes)) {
        (Ok(value), Ok(document)) => {
            let stored = serde_json::to_vec(&document).unwrap_or_else(|e| panic!("a document must serialise: {e}"));
            assert_eq!(stored, serde_json::to_vec(&value).unwrap_or_default(), "stored bytes differ");
            let verdict = check_document(&document).map(|c| (c.event_type, c.id)).map_err(|e| e.to_string());
            let by_model = StoreEvent::from_value(&value).map(|e| (e.event_type, e.id())).map_err(|e| e.to_string());
            assert_eq!(verdict, by_model);
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("one reader failed: {:?} / {:?}", a.err(), b.err()),
    }
});
