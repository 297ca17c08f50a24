//! The store event shared by every service: its typed model, the validation that reports
//! every problem at once, the mapping onto Kafka records, and a generator of realistic
//! events (with a configurable share of bad ones) in the spirit of the original demo.
//!
//! The wire format is the original demo's: one JSON object per Kafka record. Records from
//! producers that send no key and no headers (the original Lambda did exactly that) are
//! first-class: [`classify`] attributes them from their JSON body.

mod body;
#[cfg(feature = "columnar")]
pub mod columnar;
mod document;
mod generator;
mod identity;
mod kafka;
mod model;
mod validate;

pub use body::{BodyFormat, parse_body};
pub use document::Document;
pub use generator::{CATEGORIES, GeneratedEvent, Generator, VARIANTS};
pub use identity::EventId;
pub use kafka::{CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, Route, classify, classify_keeping_body};
pub use model::{EventType, StoreEvent, UnknownEventType};
pub use validate::{
    Checked, EventFields, FieldError, Invalid, KNOWN_FIELDS, check_document, check_fields, parse_timestamp,
};

/// The JSON Schema (draft 2020-12) of a valid event, kept beside the Rust validation and
/// proven to agree with it by this crate's tests.
pub const JSON_SCHEMA: &str = include_str!("../schema/store-event.schema.json");
