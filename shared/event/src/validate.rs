//! Validation of untrusted JSON into a [`StoreEvent`]. Every field is checked and every
//! problem reported at once, each with its field and a reason a person can act on. The
//! rules here and `schema/store-event.schema.json` accept and reject the same events
//! (proven by `tests/schema_agreement.rs`).

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::document::Document;
use crate::identity::EventId;
use crate::model::{EventType, StoreEvent};

/// Longest accepted `request_id`, `category`, `variant` (characters).
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 64;
/// Upper bounds that catch unit mistakes (cents sent as dollars, a SKU typed as qty).
const MAX_PRICE: f64 = 1_000_000.0;
const MAX_QTY: u64 = 1_000_000;
/// The largest integer JSON tools agree on (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's name, e.g. `store_id`.
    pub field: String,
    /// What is wrong, e.g. `missing` or `must be at least 1`.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why some input is not a valid event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// The bytes are not JSON.
    #[error("not JSON: {message} at line {line} column {column}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The JSON is valid but not an object.
    #[error("the event must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// The object has one or more invalid fields; every one is listed.
    #[error("{}", join(.0))]
    Fields(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Invalid {
    pub(crate) fn from_syntax(err: serde_json::Error) -> Invalid {
        let message = err.to_string();
        // serde_json appends " at line L column C"; keep the message without it.
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        Invalid::Syntax { line: err.line(), column: err.column(), message }
    }

    /// The problems as field errors; syntax and shape errors become one error on `$`
    /// (the whole document), so that callers can report everything the same way.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Invalid::Fields(errors) => errors.clone(),
            other => vec![FieldError { field: "$".to_owned(), reason: other.to_string() }],
        }
    }

    /// A short, stable, low-cardinality label for metrics, e.g. `missing_field`.
    pub fn kind(&self) -> &'static str {
        match self {
            Invalid::Syntax { .. } => "not_json",
            Invalid::NotAnObject(_) => "not_an_object",
            Invalid::Fields(errors) if errors.iter().any(|e| e.field == "bad_msg") => "flagged_bad",
            Invalid::Fields(errors) if errors.iter().any(|e| e.reason == "missing") => "missing_field",
            Invalid::Fields(_) => "invalid_field",
        }
    }
}

/// Reads a timestamp as the event's `ts`: RFC 3339, or ISO 8601 without a zone (the
/// original demo's local time, which on Lambda is UTC), read as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    // chrono's RFC 3339 parser also takes a space or a `t`; the schema and most readers
    // downstream (Athena, DuckDB) want the `T`. The year is four digits: chrono's `%Y`
    // also reads a signed one ("-021"), which the event would be written back with as
    // "-0021" and then fail this very check in the consumers (found by `make fuzz-smoke`).
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes[10] != b'T' || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(ts);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc().fixed_offset())
}

/// Collects the problems of one object while the fields are read.
struct Checker<'d, 'a> {
    object: &'d Document<'a>,
    errors: Vec<FieldError>,
}

impl<'d, 'a> Checker<'d, 'a> {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError { field: field.to_owned(), reason: reason.into() });
    }

    /// The field's value; records `missing` when it is absent and required.
    fn get(&mut self, field: &str, required: bool) -> Option<&'d Document<'a>> {
        let value = self.object.get(field);
        if value.is_none() && required {
            self.fail(field, "missing");
        }
        value
    }

    fn string(&mut self, field: &str, max_len: usize, required: bool) -> Option<&'d str> {
        match self.get(field, required)? {
            Document::String(s) if s.is_empty() => self.fail(field, "must not be empty"),
            Document::String(s) if s.chars().count() > max_len => {
                self.fail(field, format!("must be at most {max_len} characters"))
            }
            Document::String(s) => return Some(s),
            other => self.fail(field, format!("must be a string, found {}", other.type_name())),
        }
        None
    }

    fn boolean(&mut self, field: &str, required: bool) -> Option<bool> {
        match self.get(field, required)? {
            Document::Bool(b) => Some(*b),
            other => {
                self.fail(field, format!("must be a boolean, found {}", other.type_name()));
                None
            }
        }
    }

    /// An integer in `min..=max`. Like JSON Schema, `5.0` counts as the integer 5.
    fn integer(&mut self, field: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.get(field, true)?;
        let Document::Number(number) = value else {
            self.fail(field, format!("must be an integer, found {}", value.type_name()));
            return None;
        };
        let as_float = number.as_f64().unwrap_or(f64::NAN);
        let integer = match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => Some(n as i128),
            (None, Some(n)) => Some(n as i128),
            _ if as_float.fract() == 0.0 && as_float.abs() < 1e19 => Some(as_float as i128),
            _ => None,
        };
        match integer {
            None => self.fail(field, "must be an integer"),
            Some(n) if n < min as i128 => self.fail(field, format!("must be at least {min}")),
            Some(n) if n > max as i128 => self.fail(field, format!("must be at most {max}")),
            Some(n) => return Some(n as u64),
        }
        None
    }

    /// A number in `min..=max`.
    fn number(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.get(field, true)?;
        match value.as_f64() {
            None => self.fail(field, format!("must be a number, found {}", value.type_name())),
            Some(n) if n < min || n > max => self.fail(field, format!("must be between {min} and {max}")),
            Some(n) => return Some(n),
        }
        None
    }
}

/// The modelled fields of a valid event, borrowed from its document: what the columnar
/// writer reads (`crate::columnar`), without building a [`StoreEvent`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventFields<'d> {
    /// See [`StoreEvent::request_id`].
    pub request_id: &'d str,
    /// See [`StoreEvent::event_type`].
    pub event_type: EventType,
    /// See [`StoreEvent::store_id`].
    pub store_id: u64,
    /// See [`StoreEvent::cust_id`].
    pub cust_id: u64,
    /// See [`StoreEvent::category`].
    pub category: &'d str,
    /// See [`StoreEvent::sku`].
    pub sku: u64,
    /// See [`StoreEvent::price`].
    pub price: f64,
    /// See [`StoreEvent::qty`].
    pub qty: u64,
    /// See [`StoreEvent::discount`].
    pub discount: f64,
    /// See [`StoreEvent::gift_wrap`].
    pub gift_wrap: bool,
    /// See [`StoreEvent::variant`].
    pub variant: &'d str,
    /// See [`StoreEvent::priority_shipping`].
    pub priority_shipping: bool,
    /// See [`StoreEvent::ts`].
    pub ts: DateTime<FixedOffset>,
    /// See [`StoreEvent::contact_me`].
    pub contact_me: Option<&'d str>,
    /// See [`StoreEvent::is_return`].
    pub is_return: Option<bool>,
}

impl EventFields<'_> {
    /// Its identity across resends.
    pub fn id(&self) -> EventId {
        EventId::of(self.store_id, self.request_id)
    }
}

/// Checks every field of `document`; see the crate's README section for the rules.
pub fn check_fields<'d>(document: &'d Document<'_>) -> Result<EventFields<'d>, Invalid> {
    if !document.is_object() {
        return Err(Invalid::NotAnObject(document.type_name()));
    }
    let mut c = Checker { object: document, errors: Vec::new() };

    let request_id = c.string("request_id", MAX_ID_LEN, true);
    let event_type = match c.get("event_type", true) {
        Some(Document::String(name)) => match name.parse::<EventType>() {
            Ok(event_type) => Some(event_type),
            Err(_) => {
                c.fail("event_type", format!("must be sale_event or inventory_event, found {name:?}"));
                None
            }
        },
        Some(other) => {
            c.fail("event_type", format!("must be a string, found {}", other.type_name()));
            None
        }
        None => None,
    };
    let store_id = c.integer("store_id", 1, MAX_SAFE_INTEGER);
    let cust_id = c.integer("cust_id", 1, MAX_SAFE_INTEGER);
    let category = c.string("category", MAX_NAME_LEN, true);
    let sku = c.integer("sku", 1, MAX_SAFE_INTEGER);
    let price = c.number("price", 0.0, MAX_PRICE);
    let qty = c.integer("qty", 1, MAX_QTY);
    let discount = c.number("discount", 0.0, 100.0);
    let gift_wrap = c.boolean("gift_wrap", true);
    let variant = c.string("variant", MAX_NAME_LEN, true);
    let priority_shipping = c.boolean("priority_shipping", true);
    let ts = match c.get("ts", true) {
        Some(Document::String(text)) => {
            let parsed = parse_timestamp(text);
            if parsed.is_none() {
                c.fail("ts", "must be an ISO 8601 date-time such as 2026-11-24T12:52:40.938937Z");
            }
            parsed
        }
        Some(other) => {
            c.fail("ts", format!("must be a string, found {}", other.type_name()));
            None
        }
        None => None,
    };
    let contact_me = c.string("contact_me", 256, false);
    let is_return = c.boolean("is_return", false);
    if let Some(flag) = c.get("bad_msg", false) {
        match flag {
            Document::Bool(false) => {}
            Document::Bool(true) => c.fail("bad_msg", "the producer flagged this event as bad"),
            other => c.fail("bad_msg", format!("must be a boolean, found {}", other.type_name())),
        }
    }

    if !c.errors.is_empty() {
        return Err(Invalid::Fields(c.errors));
    }
    match (
        request_id,
        event_type,
        store_id,
        cust_id,
        category,
        sku,
        price,
        qty,
        discount,
        gift_wrap,
        variant,
        priority_shipping,
        ts,
    ) {
        (
            Some(request_id),
            Some(event_type),
            Some(store_id),
            Some(cust_id),
            Some(category),
            Some(sku),
            Some(price),
            Some(qty),
            Some(discount),
            Some(gift_wrap),
            Some(variant),
            Some(priority_shipping),
            Some(ts),
        ) => Ok(EventFields {
            request_id,
            event_type,
            store_id,
            cust_id,
            category,
            sku,
            price,
            qty,
            discount,
            gift_wrap,
            variant,
            priority_shipping,
            ts,
            contact_me,
            is_return,
        }),
        _ => unreachable!("every required field either parsed or recorded an error"),
    }
}

/// Checks every field of `value` and builds the event, unknown fields kept in `extra`.
pub(crate) fn event(value: &Value) -> Result<StoreEvent, Invalid> {
    event_from_document(&Document::from(value))
}

/// The same, from a document read without building a `Value` (the producer's bodies).
pub(crate) fn event_from_document(document: &Document<'_>) -> Result<StoreEvent, Invalid> {
    let f = check_fields(document)?;
    let extra: Map<String, Value> = match document {
        Document::Object(members) => members
            .iter()
            .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_ref()))
            .map(|(k, v)| (k.as_ref().to_owned(), Value::from(v)))
            .collect(),
        _ => Map::new(),
    };
    Ok(StoreEvent {
        request_id: f.request_id.to_owned(),
        event_type: f.event_type,
        store_id: f.store_id,
        cust_id: f.cust_id,
        category: f.category.to_owned(),
        sku: f.sku,
        price: f.price,
        qty: f.qty,
        discount: f.discount,
        gift_wrap: f.gift_wrap,
        variant: f.variant.to_owned(),
        priority_shipping: f.priority_shipping,
        ts: f.ts,
        contact_me: f.contact_me.map(str::to_owned),
        is_return: f.is_return,
        extra,
    })
}

/// What a consumer needs of a valid document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The event type it validly carries.
    pub event_type: EventType,
    /// Its identity across resends.
    pub id: EventId,
}

/// Checks a document a consumer read: its type and identity, or every problem.
pub fn check_document(document: &Document<'_>) -> Result<Checked, Invalid> {
    check_fields(document).map(|f| Checked { event_type: f.event_type, id: f.id() })
}

/// Fields the typed model holds; everything else goes to `extra`. `bad_msg: false` is
/// kept in `extra` (it is not modelled, only checked).
pub const KNOWN_FIELDS: [&str; 15] = [
    "request_id",
    "event_type",
    "store_id",
    "cust_id",
    "category",
    "sku",
    "price",
    "qty",
    "discount",
    "gift_wrap",
    "variant",
    "priority_shipping",
    "ts",
    "contact_me",
    "is_return",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid() -> Value {
        json!({
            "request_id": "f5570d0f-5389-4bce-98c3-7ed5380eefb2",
            "event_type": "inventory_event",
            "store_id": 6,
            "cust_id": 206,
            "category": "Camera",
            "sku": 100657,
            "price": 2.52,
            "qty": 18,
            "discount": 8.2,
            "gift_wrap": true,
            "variant": "red",
            "priority_shipping": true,
            "ts": "2021-04-25T12:52:40.938937",
            "contact_me": "github.com/miztiik"
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut event = valid();
        event[field] = value;
        event
    }

    fn without(field: &str) -> Value {
        let mut event = valid();
        event.as_object_mut().map(|o| o.remove(field));
        event
    }

    fn errors(value: &Value) -> Vec<String> {
        match StoreEvent::from_value(value) {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_readme_example_is_valid_and_its_zoneless_time_is_read_as_utc() {
        let event = StoreEvent::from_value(&valid()).map_err(|e| e.to_string());
        let ts = event.map(|e| crate::model::format_ts(&e.ts));
        assert_eq!(ts, Ok("2021-04-25T12:52:40.938937Z".to_owned()));
    }

    #[test]
    fn the_original_bad_event_fails_with_both_reasons() {
        let mut bad = without("store_id");
        bad["bad_msg"] = json!(true);
        assert_eq!(errors(&bad), ["store_id: missing", "bad_msg: the producer flagged this event as bad"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut event = with("qty", json!(0));
        event["price"] = json!("2.52");
        event["gift_wrap"] = json!("yes");
        assert_eq!(
            errors(&event),
            [
                "price: must be a number, found a string",
                "qty: must be at least 1",
                "gift_wrap: must be a boolean, found a string"
            ]
        );
    }

    #[test]
    fn every_required_field_reports_missing() {
        for field in [
            "request_id",
            "event_type",
            "store_id",
            "cust_id",
            "category",
            "sku",
            "price",
            "qty",
            "discount",
            "gift_wrap",
            "variant",
            "priority_shipping",
            "ts",
        ] {
            assert_eq!(errors(&without(field)), [format!("{field}: missing")], "field {field}");
        }
    }

    #[test]
    fn optional_fields_may_be_absent() {
        for field in ["contact_me", "is_return", "bad_msg"] {
            assert!(errors(&without(field)).is_empty(), "field {field}");
        }
    }

    #[test]
    fn each_rule_names_its_field_and_reason() {
        let cases = [
            ("request_id", json!(""), "request_id: must not be empty"),
            ("request_id", json!("x".repeat(129)), "request_id: must be at most 128 characters"),
            ("request_id", json!(7), "request_id: must be a string, found a number"),
            (
                "event_type",
                json!("refund_event"),
                "event_type: must be sale_event or inventory_event, found \"refund_event\"",
            ),
            ("event_type", json!(1), "event_type: must be a string, found a number"),
            ("store_id", json!(0), "store_id: must be at least 1"),
            ("store_id", json!(-3), "store_id: must be at least 1"),
            ("store_id", json!(1.5), "store_id: must be an integer"),
            ("store_id", json!("6"), "store_id: must be an integer, found a string"),
            ("store_id", json!(9_007_199_254_740_992_u64), "store_id: must be at most 9007199254740991"),
            ("cust_id", json!(null), "cust_id: must be an integer, found null"),
            ("category", json!(""), "category: must not be empty"),
            ("category", json!("c".repeat(65)), "category: must be at most 64 characters"),
            ("sku", json!(0), "sku: must be at least 1"),
            ("price", json!(-0.01), "price: must be between 0 and 1000000"),
            ("price", json!(1_000_000.01), "price: must be between 0 and 1000000"),
            ("price", json!(true), "price: must be a number, found a boolean"),
            ("qty", json!(0), "qty: must be at least 1"),
            ("qty", json!(1_000_001), "qty: must be at most 1000000"),
            ("discount", json!(100.5), "discount: must be between 0 and 100"),
            ("discount", json!(-1), "discount: must be between 0 and 100"),
            ("gift_wrap", json!(1), "gift_wrap: must be a boolean, found a number"),
            ("variant", json!(["red"]), "variant: must be a string, found an array"),
            ("priority_shipping", json!(null), "priority_shipping: must be a boolean, found null"),
            ("ts", json!("yesterday"), "ts: must be an ISO 8601 date-time such as 2026-11-24T12:52:40.938937Z"),
            (
                "ts",
                json!("2021-02-30T10:00:00Z"),
                "ts: must be an ISO 8601 date-time such as 2026-11-24T12:52:40.938937Z",
            ),
            (
                "ts",
                json!("-021-04-25T12:52:40.938937"),
                "ts: must be an ISO 8601 date-time such as 2026-11-24T12:52:40.938937Z",
            ),
            ("ts", json!(1619355160), "ts: must be a string, found a number"),
            ("contact_me", json!(false), "contact_me: must be a string, found a boolean"),
            ("is_return", json!("true"), "is_return: must be a boolean, found a string"),
            ("bad_msg", json!("no"), "bad_msg: must be a boolean, found a string"),
        ];
        for (field, value, expected) in cases {
            assert_eq!(errors(&with(field, value.clone())), [expected], "{field} = {value}");
        }
    }

    #[test]
    fn integral_floats_count_as_integers_like_in_json_schema() {
        let event = StoreEvent::from_value(&with("qty", json!(18.0))).map(|e| e.qty);
        assert_eq!(event, Ok(18));
    }

    #[test]
    fn timestamps_with_zones_keep_their_offset() {
        let ts = parse_timestamp("2026-11-24T10:00:00.5+02:00").map(|t| t.to_rfc3339());
        assert_eq!(ts.as_deref(), Some("2026-11-24T10:00:00.500+02:00"));
        assert_eq!(parse_timestamp("2026-11-24 10:00:00Z"), None);
    }

    #[test]
    fn non_objects_and_syntax_errors_say_where() {
        assert_eq!(errors(&json!([1])), ["$: the event must be a JSON object, found an array"]);
        let err = StoreEvent::from_json(b"{\n  \"a\": }").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("not JSON: expected value at line 2 column 8"));
    }

    #[test]
    fn unknown_fields_are_kept() {
        let event = StoreEvent::from_value(&with("loyalty_tier", json!({"level": 3}))).map(|e| e.to_value());
        assert_eq!(event.map(|v| v["loyalty_tier"].clone()), Ok(json!({"level": 3})));
    }

    #[test]
    fn error_kinds_are_low_cardinality_labels() {
        let mut bad = without("store_id");
        bad["bad_msg"] = json!(true);
        let kind = |v: &Value| StoreEvent::from_value(v).err().map(|e| e.kind());
        assert_eq!(kind(&bad), Some("flagged_bad"));
        assert_eq!(kind(&without("sku")), Some("missing_field"));
        assert_eq!(kind(&with("qty", json!(0))), Some("invalid_field"));
        assert_eq!(kind(&json!("x")), Some("not_an_object"));
    }
}
