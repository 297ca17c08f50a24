//! Property: serialising an event and parsing it back loses nothing, unknown fields
//! included.

use chrono::{DateTime, FixedOffset, TimeZone};
use proptest::prelude::*;
use serde_json::{Map, Value};
use store_event::{EventType, StoreEvent};

fn known(name: &str) -> bool {
    name == "bad_msg" || store_event::KNOWN_FIELDS.contains(&name)
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..4_102_444_800, 0u32..1_000_000_000, -14i32 * 4..=14 * 4).prop_map(|(secs, nanos, quarter_hours)| {
        let offset = FixedOffset::east_opt(quarter_hours * 900).unwrap_or_else(|| unreachable!("offsets within 14 h"));
        offset.timestamp_opt(secs, nanos).single().unwrap_or_else(|| unreachable!("fixed offsets are unambiguous"))
    })
}

prop_compose! {
    fn store_event()(
        request_id in "[a-zA-Z0-9-]{1,40}",
        sale in any::<bool>(),
        store_id in 1u64..=9_007_199_254_740_991,
        cust_id in 1u64..=9_007_199_254_740_991,
        category in "\\PC{1,20}",
        sku in 1u64..=9_007_199_254_740_991,
        price in 0.0f64..=1_000_000.0,
        qty in 1u64..=1_000_000,
        discount in 0.0f64..=100.0,
        gift_wrap in any::<bool>(),
        variant in "[a-z]{1,10}",
        priority_shipping in any::<bool>(),
        ts in timestamp(),
        contact_me in proptest::option::of("\\PC{1,30}"),
        is_return in proptest::option::of(any::<bool>()),
        extra in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..5),
    ) -> StoreEvent {
        let extra: Map<String, Value> = extra.into_iter().filter(|(k, _)| !known(k)).collect();
        StoreEvent {
            request_id,
            event_type: if sale { EventType::Sale } else { EventType::Inventory },
            store_id, cust_id, category, sku, price, qty, discount, gift_wrap, variant,
            priority_shipping, ts, contact_me, is_return, extra,
        }
    }
}

proptest! {
    #[test]
    fn serialise_then_parse_is_lossless(event in store_event()) {
        let bytes = event.to_json();
        let parsed = StoreEvent::from_json(&bytes);
        prop_assert_eq!(parsed, Ok(event.clone()));
        // The Kafka record carries the event: its value parses back to it, its key is the
        // store, its header the type.
        let record = event.to_record();
        prop_assert_eq!(StoreEvent::from_json(record.value.as_deref().unwrap_or_default()), Ok(event.clone()));
        prop_assert_eq!(record.key, Some(event.store_id.to_string().into_bytes()));
        prop_assert_eq!(record.headers.get("event_type").map(Vec::as_slice), Some(event.event_type.as_str().as_bytes()));
    }
}
