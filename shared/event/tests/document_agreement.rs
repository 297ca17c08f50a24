//! A `Document` reads and writes JSON text exactly as serde_json's `Value` does: for any
//! text, both give the same error or the same compact bytes, and the same validation
//! verdict. The texts are generated with few distinct keys, so repeated keys are common,
//! with numbers in every notation, escapes, whitespace, and now and then a broken byte.

use proptest::prelude::*;
use serde_json::Value;
use store_event::{Document, StoreEvent, check_document};

/// JSON text: scalars in many spellings, arrays and objects nested a few levels.
fn json_text() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("12.50".to_owned()),
        Just("1E-7".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        "[a-z \\u{e9}]{0,8}".prop_map(|s| format!("{s:?}")),
        Just(r#""caf\u00e9 \/ \"q\" \n""#.to_owned()),
        Just(r#""\ud83d\ude00""#.to_owned()),
        Just(r#""sale_event""#.to_owned()),
    ];
    scalar.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![Just("event_type"), Just("store_id"), Just("a"), Just("b"), Just("k\\u0061"), Just("ts")];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((key, inner, 0..3usize), 0..6).prop_map(|members| {
                let members: Vec<String> =
                    members.iter().map(|(k, v, spaces)| format!("\"{k}\"{}:{v}", " ".repeat(*spaces))).collect();
                format!("{{ {} }}", members.join(" ,"))
            }),
        ]
    })
}

/// Some text, sometimes damaged: a byte cut off, or one replaced with an invalid one.
fn input() -> impl Strategy<Value = Vec<u8>> {
    (json_text(), 0..8u8, any::<prop::sample::Index>()).prop_map(|(text, damage, at)| {
        let mut bytes = text.into_bytes();
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            match damage {
                0 => bytes.truncate(i),
                1 => bytes[i] = 0xff,
                _ => {}
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_document_agrees_with_a_value(bytes in input()) {
        let by_value = serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string());
        let by_document = Document::parse(&bytes).map_err(|e| e.to_string());
        match (&by_value, &by_document) {
            (Ok(value), Ok(document)) => {
                prop_assert_eq!(serde_json::to_vec(document).ok(), serde_json::to_vec(value).ok());
                let verdict = check_document(document).map(|c| c.event_type).map_err(|e| e.to_string());
                let by_model = StoreEvent::from_value(value).map(|e| e.event_type).map_err(|e| e.to_string());
                prop_assert_eq!(verdict, by_model);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "one read failed: {:?} / {:?}", by_value.err(), by_document.err()),
        }
    }
}
