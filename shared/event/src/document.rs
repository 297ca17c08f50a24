//! A JSON document read from a record's bytes without building serde_json's [`Value`]:
//! strings and keys borrow the bytes when they hold no escapes, and an object is a list of
//! pairs in the order received. A consumer reads, checks and writes back each of its
//! events; building a `Value` for that (an `IndexMap` hashed with SipHash, one allocation
//! per key and string) was the largest part of its CPU time.
//!
//! [`Document::parse`] gives what `serde_json::from_slice::<Value>` gives, converted:
//! the same syntax errors, numbers and strings, and the same document when a key repeats
//! (such a document is read by `Value`, whose last value wins at the first key's place,
//! so that validation and storage keep the meaning they always had). Written back with
//! serde_json ([`Serialize`]), it gives the bytes `serde_json::to_vec(&value)` gives.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

/// One JSON value; see the [module](self) documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum Document<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json reads it.
    Number(Number),
    /// A string, borrowed from the input when it holds no escape.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Document<'a>>),
    /// An object's members in the order received, each key once.
    Object(Vec<(Cow<'a, str>, Document<'a>)>),
}

/// Objects up to this many members are checked for a repeated key pair by pair; larger
/// ones through a set.
const PAIRWISE_LIMIT: usize = 32;

impl<'a> Document<'a> {
    /// Parses `bytes` as one JSON value (whitespace around it allowed, nothing else).
    pub fn parse(bytes: &'a [u8]) -> Result<Document<'a>, serde_json::Error> {
        match serde_json::from_slice::<Document<'a>>(bytes) {
            Ok(document) => Ok(document),
            // A syntax error, or a repeated key: serde_json's own reading decides, so the
            // error (or the merged object) is exactly the one a `Value` gives.
            Err(_) => serde_json::from_slice::<Value>(bytes).map(Document::from),
        }
    }

    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Document<'a>> {
        match self {
            Document::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether it is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Document::Object(_))
    }

    /// The JSON type's name, for messages: `a string`, `an object`...
    pub fn type_name(&self) -> &'static str {
        match self {
            Document::Null => "null",
            Document::Bool(_) => "a boolean",
            Document::Number(_) => "a number",
            Document::String(_) => "a string",
            Document::Array(_) => "an array",
            Document::Object(_) => "an object",
        }
    }

    /// Adds the member `key` to an object that lacks it, last (where `Value`'s map would
    /// put it); does nothing to an object that has it or to a non-object.
    pub fn insert_if_absent(&mut self, key: &'a str, value: impl FnOnce() -> Document<'a>) {
        if let Document::Object(members) = self
            && !members.iter().any(|(k, _)| k == key)
        {
            members.push((Cow::Borrowed(key), value()));
        }
    }

    /// The number as `f64`, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Document::Number(n) => n.as_f64(),
            _ => None,
        }
    }
}

impl<'a> From<&'a Value> for Document<'a> {
    /// A view of `value`, borrowing its strings.
    fn from(value: &'a Value) -> Document<'a> {
        match value {
            Value::Null => Document::Null,
            Value::Bool(b) => Document::Bool(*b),
            Value::Number(n) => Document::Number(n.clone()),
            Value::String(s) => Document::String(Cow::Borrowed(s)),
            Value::Array(items) => Document::Array(items.iter().map(Document::from).collect()),
            Value::Object(map) => {
                Document::Object(map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Document::from(v))).collect())
            }
        }
    }
}

impl From<&Document<'_>> for Value {
    /// The `Value` serde_json would have read from the same bytes.
    fn from(document: &Document<'_>) -> Value {
        match document {
            Document::Null => Value::Null,
            Document::Bool(b) => Value::Bool(*b),
            Document::Number(n) => Value::Number(n.clone()),
            Document::String(s) => Value::String(s.as_ref().to_owned()),
            Document::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            Document::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.as_ref().to_owned(), Value::from(v))).collect())
            }
        }
    }
}

impl From<Value> for Document<'static> {
    fn from(value: Value) -> Document<'static> {
        match value {
            Value::Null => Document::Null,
            Value::Bool(b) => Document::Bool(b),
            Value::Number(n) => Document::Number(n),
            Value::String(s) => Document::String(Cow::Owned(s)),
            Value::Array(items) => Document::Array(items.into_iter().map(Document::from).collect()),
            Value::Object(map) => {
                Document::Object(map.into_iter().map(|(k, v)| (Cow::Owned(k), Document::from(v))).collect())
            }
        }
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Document::Null => serializer.serialize_unit(),
            Document::Bool(b) => serializer.serialize_bool(*b),
            Document::Number(n) => n.serialize(serializer),
            Document::String(s) => serializer.serialize_str(s),
            Document::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Document::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key.as_ref(), value)?;
                }
                map.end()
            }
        }
    }
}

/// A repeated key makes the fast reading give up (see [`Document::parse`]).
fn has_repeated_key(members: &[(Cow<'_, str>, Document<'_>)]) -> bool {
    if members.len() <= PAIRWISE_LIMIT {
        members.iter().enumerate().any(|(i, (key, _))| members[..i].iter().any(|(k, _)| k == key))
    } else {
        let mut seen = HashSet::with_capacity(members.len());
        !members.iter().all(|(key, _)| seen.insert(key.as_ref()))
    }
}

/// A string that borrows the input when it can.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Document<'de> {
    /// What serde_json's `Value` reads, except that a repeated key is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Document<'de>, E> {
        Ok(Document::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Document<'de>, E> {
        Ok(Document::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Document<'de>, E> {
        Ok(Document::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Document<'de>, E> {
        // As `Value` does: a float JSON can carry is always finite.
        Ok(Number::from_f64(n).map_or(Document::Null, Document::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Document<'de>, E> {
        Ok(Document::String(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Document<'de>, E> {
        Ok(Document::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Document<'de>, E> {
        Ok(Document::String(Cow::Owned(s)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Document<'de>, E> {
        Ok(Document::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Document<'de>, E> {
        Ok(Document::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Document<'de>, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Document::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Text(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        if has_repeated_key(&members) {
            return Err(de::Error::custom("a repeated key"));
        }
        Ok(Document::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json's own reading and writing give.
    fn by_value(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }

    fn by_document(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let document = Document::parse(bytes).map_err(|e| e.to_string())?;
        serde_json::to_vec(&document).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_and_writes_what_serde_json_values_do_including_errors_and_repeated_keys() {
        let inputs: [&[u8]; 18] = [
            br#"{"event_type":"sale_event","store_id":1,"price":12.50,"ts":"2026-11-24T12:00:00Z"}"#,
            br#" { "b" : [1, -2, 3.0, 1e3, 1E-7, 18446744073709551615, -9223372036854775808] , "a" : null } "#,
            br#"{"s":"caf\u00e9 \"quoted\" \/ \n","t":"plain","nested":{"x":{"y":[true,false,{}]}}}"#,
            br#"{"event_type":"inventory_event","event_type":"sale_event","z":1}"#,
            br#"{"a":1,"b":2,"a":{"c":3}}"#,
            br#"{"outer":{"k":1,"k":2}}"#,
            br#"[{"a":1},{"a":2}]"#,
            br#""just a string""#,
            b"12345678901234567890123",
            b"1e400",
            b"{\"x\":\"\xff\"}",
            br#"{"a":1"#,
            br#"{"a":1} trailing"#,
            b"",
            b"nul",
            br#"{"a":1,}"#,
            b"\"\\ud800\"",
            b"0.1000000000000000055511151231257827",
        ];
        for input in inputs {
            let text = String::from_utf8_lossy(input);
            assert_eq!(by_document(input), by_value(input), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value_as_a_value_does() {
        let bytes = br#"{"a":1,"b":2,"a":3}"#;
        let document = Document::parse(bytes).unwrap_or(Document::Null);
        assert_eq!(document.get("a"), Some(&Document::Number(3.into())));
        assert_eq!(serde_json::to_string(&document).ok().as_deref(), Some(r#"{"a":3,"b":2}"#));
    }

    #[test]
    fn a_large_object_with_a_repeated_key_is_read_like_a_value_too() {
        let mut members: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push("\"k7\":\"again\"".to_owned());
        let bytes = format!("{{{}}}", members.join(",")).into_bytes();
        assert_eq!(by_document(&bytes), by_value(&bytes));
        let document = Document::parse(&bytes).unwrap_or(Document::Null);
        assert_eq!(document.get("k7"), Some(&Document::String(Cow::Borrowed("again"))));
    }

    #[test]
    fn strings_without_escapes_borrow_the_input() {
        let bytes = br#"{"plain":"text","escaped":"a\"b"}"#;
        let Ok(Document::Object(members)) = Document::parse(bytes) else { unreachable!("an object") };
        assert!(members.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(members[0].1, Document::String(Cow::Borrowed("text"))));
        assert!(matches!(&members[1].1, Document::String(Cow::Owned(s)) if s == "a\"b"));
    }

    #[test]
    fn a_value_viewed_as_a_document_gives_the_same_document() {
        let bytes = br#"{"a":[1,"x",{"b":null}],"c":2.5}"#;
        let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        assert_eq!(Document::from(&value), Document::parse(bytes).unwrap_or(Document::Null));
        assert_eq!(Document::from(value.clone()), Document::from(&value));
    }
}
