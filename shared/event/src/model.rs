//! The typed store event and its event type.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::document::Document;
use crate::validate::{self, Invalid};

/// The kinds of event that stores send. Each consumer keeps one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A sale at a till: `sale_event`.
    Sale,
    /// A stock movement: `inventory_event`.
    Inventory,
}

impl EventType {
    /// Every event type, in a stable order.
    pub const ALL: [EventType; 2] = [EventType::Sale, EventType::Inventory];

    /// The canonical name on the wire, in the JSON body and in the Kafka header.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Sale => "sale_event",
            EventType::Inventory => "inventory_event",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event type name that is neither `sale_event` nor `inventory_event`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}: expected sale_event or inventory_event")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    /// Accepts the canonical names and `sales_event`, the spelling of the original demo's
    /// prose (its code always wrote `sale_event`). The alias is read, never written.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sale_event" | "sales_event" => Ok(EventType::Sale),
            "inventory_event" => Ok(EventType::Inventory),
            other => Err(UnknownEventType(other.to_owned())),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One store event, valid by construction: the only way to get one from untrusted input
/// is [`StoreEvent::from_value`], [`StoreEvent::from_document`] or [`StoreEvent::from_json`],
/// which check every field.
///
/// Fields this version does not know are kept in `extra` and written back on
/// serialisation, so a service never drops data a newer producer added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreEvent {
    /// Unique id of the event, set by the store or by the producer when absent.
    pub request_id: String,
    /// Sale or inventory.
    pub event_type: EventType,
    /// The store that sent the event; also the Kafka record key (per-store ordering).
    pub store_id: u64,
    /// The customer.
    pub cust_id: u64,
    /// Product category, e.g. `Books`.
    pub category: String,
    /// Stock keeping unit.
    pub sku: u64,
    /// Unit price, at least 0.
    pub price: f64,
    /// Quantity, at least 1.
    pub qty: u64,
    /// Discount in percent, 0 to 100.
    pub discount: f64,
    /// Whether the item is gift wrapped.
    pub gift_wrap: bool,
    /// Product variant, e.g. `red`.
    pub variant: String,
    /// Whether the customer paid for priority shipping.
    pub priority_shipping: bool,
    /// When the event happened. Read from RFC 3339; a time without a zone (the original
    /// demo's) is read as UTC. Written as RFC 3339 with its zone.
    #[serde(serialize_with = "serialize_ts")]
    pub ts: DateTime<FixedOffset>,
    /// Free-text contact, present on the original demo's events; optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_me: Option<String>,
    /// Present (true) when the sale is a return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_return: Option<bool>,
    /// Every field this version does not model, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn serialize_ts<S: Serializer>(ts: &DateTime<FixedOffset>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_ts(ts))
}

/// RFC 3339 with as many fractional digits as the value needs and `Z` for UTC, so that a
/// serialise-then-parse round trip is exact.
pub(crate) fn format_ts(ts: &DateTime<FixedOffset>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl StoreEvent {
    /// Checks a JSON value and builds the event, or returns every problem found.
    pub fn from_value(value: &Value) -> Result<StoreEvent, Invalid> {
        validate::event(value)
    }

    /// Checks a document and builds the event, as [`StoreEvent::from_value`] does for the
    /// `Value` of the same bytes.
    pub fn from_document(document: &Document<'_>) -> Result<StoreEvent, Invalid> {
        validate::event_from_document(document)
    }

    /// Parses JSON bytes and checks them; a syntax error reports its line and column.
    pub fn from_json(bytes: &[u8]) -> Result<StoreEvent, Invalid> {
        let value: Value = serde_json::from_slice(bytes).map_err(Invalid::from_syntax)?;
        Self::from_value(&value)
    }

    /// The event as a JSON value, unknown fields included.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| unreachable!("a StoreEvent always serialises"))
    }

    /// The event as compact JSON bytes, as written to Kafka.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("a StoreEvent always serialises"))
    }
}

impl<'de> Deserialize<'de> for StoreEvent {
    /// Deserialising runs the full validation, so no invalid event can be built this way.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        StoreEvent::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_reads_the_prose_alias_and_writes_the_canonical_name() {
        let parsed: EventType = "sales_event".parse().unwrap_or(EventType::Inventory);
        assert_eq!(parsed, EventType::Sale);
        assert_eq!(parsed.as_str(), "sale_event");
    }

    #[test]
    fn unknown_event_type_names_the_value() {
        let err = "refund_event".parse::<EventType>().err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("unknown event type \"refund_event\": expected sale_event or inventory_event".to_owned())
        );
    }
}
