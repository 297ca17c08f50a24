//! Realistic random events for demos and load, with the original demo's value ranges and
//! categories, and a share of bad events made the way the original made them (no
//! `store_id`, `"bad_msg": true`). Seedable, so a test can make the same events twice.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::model::{EventType, StoreEvent};

/// The original demo's sixteen product categories.
pub const CATEGORIES: [&str; 16] = [
    "Books",
    "Games",
    "Mobiles",
    "Groceries",
    "Shoes",
    "Stationaries",
    "Laptops",
    "Tablets",
    "Notebooks",
    "Camera",
    "Printers",
    "Monitors",
    "Speakers",
    "Projectors",
    "Cables",
    "Furniture",
];

/// The original demo's product variants.
pub const VARIANTS: [&str; 2] = ["black", "red"];

/// One generated event.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEvent {
    /// The JSON to send; for a bad event, not a valid [`StoreEvent`].
    pub value: Value,
    /// The event type written in the JSON.
    pub event_type: EventType,
    /// The typed event, or `None` for a bad one.
    pub event: Option<StoreEvent>,
}

impl GeneratedEvent {
    /// Whether this is one of the deliberately bad events.
    pub fn is_bad(&self) -> bool {
        self.event.is_none()
    }
}

/// Makes events. Not thread-safe by design: give each task its own (cheap) generator.
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    bad_share: f64,
}

impl Generator {
    /// A generator; `seed` makes the sequence repeatable, `bad_share` (clamped to 0..=1)
    /// is the probability that an event is bad.
    pub fn new(seed: Option<u64>, bad_share: f64) -> Generator {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Generator { rng, bad_share: bad_share.clamp(0.0, 1.0) }
    }

    /// The next event, stamped `now`.
    pub fn next_event(&mut self, now: DateTime<Utc>) -> GeneratedEvent {
        let rng = &mut self.rng;
        let event_type = if rng.random_bool(0.5) { EventType::Sale } else { EventType::Inventory };
        let request_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let price = (rng.random_range(0..=10_000) as f64) / 100.0;
        let discount = (rng.random_range(0..=200) as f64) / 10.0;
        let mut value = json!({
            "request_id": request_id.to_string(),
            "event_type": event_type.as_str(),
            "store_id": rng.random_range(1..=10),
            "cust_id": rng.random_range(100..=999),
            "category": CATEGORIES[rng.random_range(0..CATEGORIES.len())],
            "sku": rng.random_range(18_981..=189_281),
            "price": price,
            "qty": rng.random_range(1..=38),
            "discount": discount,
            "gift_wrap": rng.random_bool(0.5),
            "variant": VARIANTS[rng.random_range(0..VARIANTS.len())],
            "priority_shipping": rng.random_bool(0.5),
            "ts": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "contact_me": "github.com/miztiik",
        });
        if rng.random_bool(0.5) {
            value["is_return"] = json!(true);
        }
        if rng.random_bool(self.bad_share) {
            if let Some(object) = value.as_object_mut() {
                object.remove("store_id");
                object.insert("bad_msg".to_owned(), json!(true));
            }
            return GeneratedEvent { value, event_type, event: None };
        }
        let event = StoreEvent::from_value(&value).ok();
        debug_assert!(event.is_some(), "generated good events are valid");
        GeneratedEvent { value, event_type, event }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_events() {
        let now = Utc::now();
        let a: Vec<_> = (0..20).map(|_| Generator::new(Some(42), 0.1).next_event(now).value).collect();
        let b: Vec<_> = (0..20).map(|_| Generator::new(Some(42), 0.1).next_event(now).value).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn good_events_validate_and_bad_ones_are_the_originals_bad_events() {
        let mut generator = Generator::new(Some(1), 0.3);
        let now = Utc::now();
        let events: Vec<_> = (0..2_000).map(|_| generator.next_event(now)).collect();
        let bad: Vec<_> = events.iter().filter(|e| e.is_bad()).collect();
        // 30% of 2,000 is 600; a seeded run lands well inside a wide band around it.
        assert!((450..750).contains(&bad.len()), "bad events: {}", bad.len());
        for event in &bad {
            assert!(event.value.get("store_id").is_none());
            assert_eq!(event.value["bad_msg"], json!(true));
            assert!(StoreEvent::from_value(&event.value).is_err());
        }
        for event in events.iter().filter(|e| !e.is_bad()) {
            assert_eq!(StoreEvent::from_value(&event.value).ok(), event.event);
        }
    }

    #[test]
    fn values_stay_in_the_original_ranges() {
        let mut generator = Generator::new(Some(3), 0.0);
        for _ in 0..1_000 {
            let event = generator.next_event(Utc::now()).event;
            let Some(e) = event else { panic!("a bad share of 0 makes only good events") };
            assert!((1..=10).contains(&e.store_id));
            assert!((100..=999).contains(&e.cust_id));
            assert!((18_981..=189_281).contains(&e.sku));
            assert!((0.0..=100.0).contains(&e.price));
            assert!((1..=38).contains(&e.qty));
            assert!((0.0..=20.0).contains(&e.discount));
            assert!(CATEGORIES.contains(&e.category.as_str()));
            assert!(VARIANTS.contains(&e.variant.as_str()));
        }
    }

    #[test]
    fn a_bad_share_of_one_makes_only_bad_events() {
        let mut generator = Generator::new(Some(9), 1.0);
        assert!((0..100).all(|_| generator.next_event(Utc::now()).is_bad()));
    }
}
