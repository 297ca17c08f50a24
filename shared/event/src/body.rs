//! Reading a request body of events, as the producer's `POST /v1/events` takes it: one
//! JSON value (an event, or an array of events) or NDJSON (one event per line, blank lines
//! skipped). Only the syntax is judged here; each value is then checked as an event.
//!
//! The values are [`Document`]s, borrowing the body's strings: what `Value` would read, at
//! a fraction of the allocations (building `Value`s was the largest part of the producer's
//! CPU under load). A body whose objects repeat a key is read through `Value`, so such a
//! body means what it always meant (see [`Document::parse`]).

use crate::document::Document;
use crate::validate::Invalid;

/// How a body is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one value, or an array of values.
    Json,
    /// `application/x-ndjson`: one value per line.
    Ndjson,
}

/// The values of a body, in order; what is wrong with its syntax, saying where.
pub fn parse_body(bytes: &[u8], format: BodyFormat) -> Result<Vec<Document<'_>>, String> {
    match format {
        BodyFormat::Json => match Document::parse(bytes).map_err(|e| Invalid::from_syntax(e).to_string())? {
            Document::Array(values) => Ok(values),
            value => Ok(vec![value]),
        },
        BodyFormat::Ndjson => {
            let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
            let mut values = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value = Document::parse(line.as_bytes()).map_err(|e| {
                    format!("not JSON: {} at line {} column {}", without_position(&e), number + 1, e.column())
                })?;
                values.push(value);
            }
            Ok(values)
        }
    }
}

fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    message.split(" at line ").next().unwrap_or(&message).to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn values(bytes: &[u8], format: BodyFormat) -> Result<Vec<Value>, String> {
        parse_body(bytes, format).map(|documents| documents.iter().map(Value::from).collect())
    }

    #[test]
    fn a_value_an_array_and_ndjson_give_their_values_in_order() {
        assert_eq!(values(b" {\"a\": 1} ", BodyFormat::Json), Ok(vec![json!({"a": 1})]));
        assert_eq!(values(b"[1, {}]", BodyFormat::Json), Ok(vec![json!(1), json!({})]));
        assert_eq!(values(b"{\"a\":1}\n\n  \n[2]\r\n", BodyFormat::Ndjson), Ok(vec![json!({"a": 1}), json!([2])]));
    }

    #[test]
    fn a_repeated_key_means_what_value_makes_of_it() {
        // serde_json's Value: the last value wins, at the first key's place.
        let body = br#"[{"a": 1, "b": 2, "a": 3}, {"c": "\u00e9"}]"#;
        let expected: Vec<Value> = match serde_json::from_slice(body) {
            Ok(Value::Array(items)) => items,
            other => panic!("serde_json reads the body: {other:?}"),
        };
        assert_eq!(values(body, BodyFormat::Json), Ok(expected));
        assert_eq!(values(b"{\"a\": 1, \"a\": 2}", BodyFormat::Ndjson), Ok(vec![json!({"a": 2})]));
    }

    #[test]
    fn syntax_errors_say_where() {
        let error = parse_body(b"{\"a\": }", BodyFormat::Json).unwrap_err();
        assert_eq!(error, "not JSON: expected value at line 1 column 7");
        let error = parse_body(b"{}\n{\"a\" 1}\n", BodyFormat::Ndjson).unwrap_err();
        assert_eq!(error, "not JSON: expected `:` at line 2 column 6");
        assert!(parse_body(b"\xff", BodyFormat::Ndjson).unwrap_err().starts_with("not UTF-8 text"));
    }
}
