//! The JSON Schema in `schema/` and the Rust validation accept and reject the same events.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use serde_json::Value;
use store_event::{JSON_SCHEMA, StoreEvent};

struct Case {
    name: String,
    valid: bool,
    event: Value,
}

fn corpus() -> Vec<Case> {
    include_str!("corpus.jsonl")
        .lines()
        .map(|line| {
            let case: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {line}: {e}"));
            Case {
                name: case["name"].as_str().unwrap_or_default().to_owned(),
                valid: case["valid"].as_bool().unwrap_or_else(|| panic!("corpus case without `valid`: {line}")),
                event: case["event"].clone(),
            }
        })
        .collect()
}

#[test]
fn schema_and_rust_validation_agree_on_every_corpus_event() {
    let schema: Value = serde_json::from_str(JSON_SCHEMA).expect("schema is not JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("schema does not compile");
    let cases = corpus();
    assert!(cases.len() > 40, "the corpus is too small: {}", cases.len());
    assert!(cases.iter().any(|c| c.valid) && cases.iter().any(|c| !c.valid));
    for case in cases {
        let by_schema = validator.is_valid(&case.event);
        let by_rust = StoreEvent::from_value(&case.event);
        assert_eq!(by_schema, case.valid, "schema on case {:?}", case.name);
        assert_eq!(by_rust.is_ok(), case.valid, "rust on case {:?}: {:?}", case.name, by_rust.err());
    }
}
