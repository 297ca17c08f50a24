//! One batch: the records of one partition from `first_offset` up to `next_offset`, each
//! with one outcome. Stored (an event of this consumer's type that validates), dead-lettered
//! (of this type but invalid, or of no type at all) or skipped (the other type). Building
//! a batch is pure and deterministic: the same records give the same bytes, which is what
//! lets a crashed batch be written again over the same keys.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDate, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use rskafka::record::RecordAndOffset;
use serde::Serialize;
use store_event::{Document, EventId, EventType, Route, StoreEvent, check_document, classify_keeping_body};

use crate::config::BatchLimits;
use crate::dedup::{EventIds, Resends};

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the data object.
    Stored,
    /// Written to the dead-letter object; the label says why (low cardinality).
    DeadLettered(&'static str),
    /// Another type's record: accounted for, not written.
    Skipped,
    /// A valid event stored before (same store, same `request_id`): accounted for, not
    /// written again.
    Duplicate,
}

/// A batch being filled.
#[derive(Debug)]
pub struct Batch {
    /// The first offset this batch accounts for.
    pub first_offset: i64,
    /// One past the last offset it accounts for.
    pub next_offset: i64,
    date: Option<NaiveDate>,
    stored: GzipLines,
    stored_count: u64,
    dead: GzipLines,
    dead_count: u64,
    skipped: u64,
    duplicates: u64,
    event_ids: Vec<EventId>,
    records: u64,
    opened_at: Option<Instant>,
    dead_kinds: BTreeMap<&'static str, u64>,
}

/// A batch ready to write: its counts and its compressed objects.
#[derive(Debug)]
pub struct Sealed {
    /// The first offset accounted for.
    pub first_offset: i64,
    /// One past the last offset accounted for.
    pub next_offset: i64,
    /// The date of its records (UTC, from the Kafka record timestamps); `None` when empty.
    pub dt: Option<NaiveDate>,
    /// Records in the offset range.
    pub records: u64,
    /// Stored events.
    pub stored: u64,
    /// Dead letters.
    pub dead_lettered: u64,
    /// The other type's records.
    pub skipped: u64,
    /// Resends removed.
    pub duplicates: u64,
    /// The identities of the stored events, when resends are removed.
    pub event_ids: Option<EventIds>,
    /// gzip JSON Lines of the stored events, if any.
    pub data: Option<Vec<u8>>,
    /// gzip JSON Lines of the dead letters, if any.
    pub dead_letters: Option<Vec<u8>>,
    /// Dead letters by reason label.
    pub dead_kinds: BTreeMap<&'static str, u64>,
    /// Uncompressed bytes of both objects.
    pub raw_bytes: usize,
    /// Time from the first record's arrival to sealing.
    pub age: Duration,
}

/// One dead letter, as written (one JSON object per line).
#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: DateTime<Utc>,
    kind: &'static str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Encoded>,
    headers: BTreeMap<&'a str, Encoded>,
    /// The value as text when it is UTF-8, else `{"base64": ...}`; null for a null value.
    value: Option<Encoded>,
}

/// Bytes as text when they are UTF-8, else base64.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Encoded {
    Text(String),
    Binary { base64: String },
}

impl Encoded {
    fn of(bytes: &[u8]) -> Encoded {
        match std::str::from_utf8(bytes) {
            Ok(text) => Encoded::Text(text.to_owned()),
            Err(_) => Encoded::Binary { base64: BASE64.encode(bytes) },
        }
    }
}

/// The date a record is filed under: its Kafka timestamp's UTC date.
pub fn date_of(record: &RecordAndOffset) -> NaiveDate {
    record.record.timestamp.date_naive()
}

impl Batch {
    /// An empty batch starting at `first_offset`.
    pub fn new(first_offset: i64) -> Batch {
        Batch {
            first_offset,
            next_offset: first_offset,
            date: None,
            stored: GzipLines::new(MEMBER_BYTES),
            stored_count: 0,
            dead: GzipLines::new(DEAD_LETTER_MEMBER_BYTES),
            dead_count: 0,
            skipped: 0,
            duplicates: 0,
            event_ids: Vec::new(),
            records: 0,
            opened_at: None,
            dead_kinds: BTreeMap::new(),
        }
    }

    /// Whether it accounts for no offset yet.
    pub fn is_empty(&self) -> bool {
        self.next_offset == self.first_offset
    }

    /// Accounts for the offsets up to `next_offset` that hold no record for a consumer:
    /// transaction markers, records of aborted transactions, batches emptied by compaction.
    /// A batch of such offsets only is committed like any other (an entry without objects),
    /// so that the ledger reaches the end of a partition that ends with a marker.
    pub fn cover_to(&mut self, next_offset: i64) {
        if next_offset > self.next_offset {
            self.opened_at.get_or_insert_with(Instant::now);
            self.next_offset = next_offset;
        }
    }

    /// Whether `record` may join: a batch holds records of one date only, so each object
    /// sits under the `dt=` of all its records.
    pub fn fits(&self, record: &RecordAndOffset) -> bool {
        self.date.is_none_or(|d| d == date_of(record))
    }

    /// Whether a size limit is reached.
    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.records as usize >= limits.max_events || self.stored.raw_len() + self.dead.raw_len() >= limits.max_bytes
    }

    /// Time since the first record arrived.
    pub fn age(&self) -> Duration {
        self.opened_at.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Adds `record` with the outcome its content and `resends` decide, and moves
    /// `next_offset` past it.
    pub fn push(
        &mut self,
        keep: EventType,
        topic: &str,
        partition: i32,
        record: &RecordAndOffset,
        resends: &mut dyn Resends,
    ) -> Outcome {
        if self.opened_at.is_none() {
            self.opened_at = Some(Instant::now());
        }
        self.date.get_or_insert_with(|| date_of(record));
        self.records += 1;
        self.next_offset = record.offset + 1;
        let value = record.record.value.as_deref();
        let (route, body) = classify_keeping_body(&record.record.headers, value);
        let dead = match route {
            Route::Type(other) if other != keep => {
                self.skipped += 1;
                return Outcome::Skipped;
            }
            Route::Type(_) => match check(keep, value, body) {
                Ok((_, id)) if !resends.first_copy(id) => {
                    self.duplicates += 1;
                    return Outcome::Duplicate;
                }
                Ok((document, id)) => {
                    self.event_ids.push(id);
                    if serde_json::to_writer(self.stored.line(), &document).is_err() {
                        unreachable!("a document always serialises to a Vec");
                    }
                    self.stored.end_line();
                    self.stored_count += 1;
                    return Outcome::Stored;
                }
                Err(dead) => dead,
            },
            Route::Unattributable { kind, reason } => (kind, reason),
        };
        let (kind, reason) = dead;
        let letter = DeadLetter {
            topic,
            partition,
            offset: record.offset,
            timestamp: record.record.timestamp,
            kind,
            reason: &reason,
            key: record.record.key.as_deref().map(Encoded::of),
            headers: record.record.headers.iter().map(|(k, v)| (k.as_str(), Encoded::of(v))).collect(),
            value: value.map(Encoded::of),
        };
        if serde_json::to_writer(self.dead.line(), &letter).is_ok() {
            self.dead.end_line();
        }
        self.dead_count += 1;
        *self.dead_kinds.entry(kind).or_default() += 1;
        Outcome::DeadLettered(kind)
    }

    /// Compresses what is left of the objects and freezes the counts; the entry lists the stored events'
    /// identities when `remove_resends`.
    pub fn seal(self, remove_resends: bool) -> Sealed {
        let raw_bytes = self.stored.raw_len() + self.dead.raw_len();
        let age = self.age();
        Sealed {
            first_offset: self.first_offset,
            next_offset: self.next_offset,
            dt: self.date,
            records: self.records,
            stored: self.stored_count,
            dead_lettered: self.dead_count,
            skipped: self.skipped,
            duplicates: self.duplicates,
            event_ids: remove_resends.then_some(EventIds(self.event_ids)),
            age,
            data: (self.stored_count > 0).then(|| self.stored.finish()),
            dead_letters: (self.dead_count > 0).then(|| self.dead.finish()),
            dead_kinds: self.dead_kinds,
            raw_bytes,
        }
    }
}

/// Validates a record routed to this consumer's type; its document to store and its
/// identity, or why not.
/// `body` is the value already parsed to route it, if it was (a record without a header):
/// a record is parsed once.
fn check<'a>(
    keep: EventType,
    value: Option<&'a [u8]>,
    body: Option<Document<'a>>,
) -> Result<(Document<'a>, EventId), (&'static str, String)> {
    let parsed = match body {
        Some(parsed) => parsed,
        None => {
            let Some(bytes) = value else {
                return Err(("null_value", "null value".to_owned()));
            };
            if std::str::from_utf8(bytes).is_err() {
                return Err(("not_utf8", "not UTF-8 text".to_owned()));
            }
            match Document::parse(bytes) {
                Ok(parsed) => parsed,
                Err(_) => {
                    let reason = StoreEvent::from_json(bytes).err().map(|e| e.to_string()).unwrap_or_default();
                    return Err(("not_json", reason));
                }
            }
        }
    };
    match check_document(&parsed) {
        Err(invalid) => Err((invalid.kind(), invalid.to_string())),
        Ok(checked) if checked.event_type != keep => Err((
            "type_mismatch",
            format!("the event_type header says {keep} but the body says {}", checked.event_type),
        )),
        // Stored as received (compacted), so nothing a newer producer added is lost.
        Ok(checked) => Ok((parsed, checked.id)),
    }
}

/// Uncompressed bytes of stored events' lines compressed into one gzip member: 128 KiB
/// makes objects 3 % larger than one member would, 64 KiB 6 % (`profile_batches`).
const MEMBER_BYTES: usize = 128 * 1024;

/// The same for dead letters: they are few, and seldom read, so their object may be
/// larger for an open batch to hold less.
const DEAD_LETTER_MEMBER_BYTES: usize = 32 * 1024;

/// A gzip JSON Lines object, compressed as its lines come: a gzip member (RFC 1952 §2.2:
/// a gzip file is a series of members, and `gzip -d`, Python's `gzip`, Hadoop's codec
/// under Athena, DuckDB and flate2's `MultiGzDecoder` read them all) for each
/// `member_bytes` of lines. An open batch holds its lines compressed, not as text: an
/// instance that reads 64 partitions holds 64 open batches. Members end at the first
/// line end past `member_bytes`, so the same lines give the same bytes.
#[derive(Debug)]
struct GzipLines {
    /// Uncompressed bytes of lines in one member.
    member_bytes: usize,
    /// The members so far.
    compressed: Vec<u8>,
    /// Lines not yet in a member.
    tail: Vec<u8>,
    /// Uncompressed bytes in `compressed`.
    members_raw: usize,
}

impl GzipLines {
    fn new(member_bytes: usize) -> GzipLines {
        GzipLines { member_bytes, compressed: Vec::new(), tail: Vec::new(), members_raw: 0 }
    }

    /// Where the next line is written; [`GzipLines::end_line`] ends it.
    fn line(&mut self) -> &mut Vec<u8> {
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(self.member_bytes + self.member_bytes / 8);
        }
        &mut self.tail
    }

    fn end_line(&mut self) {
        self.tail.push(b'\n');
        if self.tail.len() >= self.member_bytes {
            self.compress_tail();
        }
    }

    /// Uncompressed bytes of all its lines.
    fn raw_len(&self) -> usize {
        self.members_raw + self.tail.len()
    }

    fn compress_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        // Level 3: most of level 6's ratio on JSON at about twice the speed. flate2 writes
        // no timestamp in the header, so equal input gives equal output.
        let mut encoder = GzEncoder::new(std::mem::take(&mut self.compressed), Compression::new(3));
        match encoder.write_all(&self.tail).and_then(|()| encoder.finish()) {
            Ok(compressed) => self.compressed = compressed,
            Err(_) => unreachable!("writing to a Vec cannot fail"),
        }
        self.members_raw += self.tail.len();
        self.tail.clear();
    }

    /// The object: every member.
    fn finish(mut self) -> Vec<u8> {
        self.compress_tail();
        self.compressed
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use chrono::TimeZone;
    use flate2::read::MultiGzDecoder;
    use rskafka::record::Record;
    use serde_json::{Value, json};
    use store_event::{EVENT_TYPE_HEADER, Generator};

    use super::*;
    use crate::dedup::KeepAll;

    fn record(offset: i64, headers: &[(&str, &[u8])], value: Option<&[u8]>) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: None,
                value: value.map(<[u8]>::to_vec),
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
                timestamp: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().unwrap_or_default(),
            },
            offset,
        }
    }

    fn push(batch: &mut Batch, keep: EventType, topic: &str, partition: i32, record: &RecordAndOffset) -> Outcome {
        batch.push(keep, topic, partition, record, &mut KeepAll)
    }

    fn gunzip_lines(bytes: &[u8]) -> Vec<Value> {
        let mut text = String::new();
        let _ = MultiGzDecoder::new(bytes).read_to_string(&mut text);
        text.lines().map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect()
    }

    fn event(event_type: EventType) -> Vec<u8> {
        let mut generator = Generator::new(Some(5), 0.0);
        loop {
            let generated = generator.next_event(Utc::now());
            if generated.event_type == event_type {
                return generated.value.to_string().into_bytes();
            }
        }
    }

    #[test]
    fn offsets_without_records_are_covered_and_committed_without_objects() {
        // A partition that ends with a transaction marker at offset 20.
        let mut batch = Batch::new(20);
        assert!(batch.is_empty());
        batch.cover_to(21);
        assert!(!batch.is_empty(), "a batch covering a marker is committed like any other");
        batch.cover_to(19);
        let sealed = batch.seal(false);
        assert_eq!((sealed.first_offset, sealed.next_offset, sealed.records), (20, 21, 0));
        assert_eq!((sealed.dt, sealed.data.is_none(), sealed.dead_letters.is_none()), (None, true, true));

        // Records, then a marker after the last of them.
        let mut batch = Batch::new(5);
        push(&mut batch, EventType::Sale, "t", 0, &record(5, &[], Some(&event(EventType::Sale))));
        batch.cover_to(7);
        let sealed = batch.seal(false);
        assert_eq!((sealed.first_offset, sealed.next_offset, sealed.records, sealed.stored), (5, 7, 1, 1));
    }

    #[test]
    fn each_record_gets_one_outcome_and_the_range_is_contiguous() {
        let sale = event(EventType::Sale);
        let inventory = event(EventType::Inventory);
        let bad = br#"{"event_type":"sale_event","store_id":0}"#;
        let mut batch = Batch::new(10);
        let outcomes: Vec<Outcome> = [
            record(10, &[], Some(&sale)),
            record(11, &[(EVENT_TYPE_HEADER, b"inventory_event")], Some(&inventory)),
            record(12, &[], Some(bad)),
            record(13, &[], Some(b"\xff\x00")),
            record(15, &[], None),
        ]
        .iter()
        .map(|r| push(&mut batch, EventType::Sale, "t", 0, r))
        .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Stored,
                Outcome::Skipped,
                Outcome::DeadLettered("missing_field"),
                Outcome::DeadLettered("not_utf8"),
                Outcome::DeadLettered("null_value"),
            ]
        );
        let sealed = batch.seal(false);
        assert_eq!((sealed.first_offset, sealed.next_offset), (10, 16));
        assert_eq!((sealed.records, sealed.stored, sealed.dead_lettered, sealed.skipped), (5, 1, 3, 1));
        let stored = gunzip_lines(sealed.data.as_deref().unwrap_or_default());
        assert_eq!(stored, [serde_json::from_slice::<Value>(&sale).unwrap_or_default()]);
    }

    #[test]
    fn a_stored_event_is_its_json_compacted_in_order_with_a_repeated_key_once_and_last_value_wins() {
        let sale: Value = serde_json::from_slice(&event(EventType::Sale)).unwrap_or_default();
        let Value::Object(members) = &sale else { unreachable!("an event is an object") };
        // Spaced out, an unknown field first, `store_id` given twice (0 is invalid: the
        // value validated and stored must be the last one, 42), an escaped string.
        let mut text = String::from(r#"{ "added_later" : {"k": [1, 2.50]}, "store_id": 0"#);
        for (key, value) in members {
            let value = if key == "store_id" { json!(42) } else { value.clone() };
            text.push_str(&format!(", {key:?} : {value}"));
        }
        text.push_str(r#", "note": "caf\u00e9 \/ ok" }"#);
        let mut batch = Batch::new(0);
        assert_eq!(push(&mut batch, EventType::Sale, "t", 0, &record(0, &[], Some(text.as_bytes()))), Outcome::Stored);
        let mut stored = String::new();
        let data = batch.seal(false).data.unwrap_or_default();
        let _ = MultiGzDecoder::new(data.as_slice()).read_to_string(&mut stored);
        let as_value: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(stored, format!("{}\n", serde_json::to_string(&as_value).unwrap_or_default()));
        assert!(stored.starts_with(r#"{"added_later":{"k":[1,2.5]},"store_id":42,"#), "{stored}");
        assert!(stored.ends_with(",\"note\":\"café / ok\"}\n"), "{stored}");
    }

    #[test]
    fn dead_letters_carry_the_raw_value_reason_and_position() {
        let mut batch = Batch::new(0);
        push(&mut batch, EventType::Sale, "topic", 3, &record(0, &[("trace", b"\xfe")], Some(b"\xff\x00")));
        push(&mut batch, EventType::Sale, "topic", 3, &record(1, &[], Some(b"not json")));
        let letters = gunzip_lines(batch.seal(false).dead_letters.as_deref().unwrap_or_default());
        assert_eq!(
            letters[0],
            json!({
                "topic": "topic", "partition": 3, "offset": 0, "timestamp": "2026-11-24T12:00:00Z",
                "kind": "not_utf8", "reason": "not UTF-8 text",
                "headers": {"trace": {"base64": "/g=="}}, "value": {"base64": "/wA="}
            })
        );
        assert_eq!(letters[1]["value"], "not json");
        assert_eq!(letters[1]["kind"], "not_json");
        assert_eq!(letters[1]["reason"], "not JSON: expected ident at line 1 column 2");
    }

    #[test]
    fn a_header_that_contradicts_the_body_is_dead_lettered() {
        let inventory = event(EventType::Inventory);
        let mut batch = Batch::new(0);
        let outcome = push(
            &mut batch,
            EventType::Sale,
            "t",
            0,
            &record(0, &[(EVENT_TYPE_HEADER, b"sale_event")], Some(&inventory)),
        );
        assert_eq!(outcome, Outcome::DeadLettered("type_mismatch"));
    }

    #[test]
    fn the_same_records_seal_to_the_same_bytes() {
        let records: Vec<RecordAndOffset> = (0..50)
            .map(|i| record(i, &[], Some(&event(if i % 2 == 0 { EventType::Sale } else { EventType::Inventory }))))
            .collect();
        let seal = || {
            let mut batch = Batch::new(0);
            records.iter().for_each(|r| {
                push(&mut batch, EventType::Inventory, "t", 0, r);
            });
            let sealed = batch.seal(false);
            (sealed.data, sealed.dead_letters)
        };
        assert_eq!(seal(), seal());
    }

    /// Members of the gzip object (RFC 1952: each starts with 1f 8b 08), counted by
    /// decompressing them one at a time.
    fn gzip_members(mut bytes: &[u8]) -> usize {
        let mut members = 0;
        while !bytes.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(bytes);
            let _ = std::io::copy(&mut decoder, &mut std::io::sink());
            bytes = decoder.into_inner();
            members += 1;
        }
        members
    }

    #[test]
    fn a_large_batch_is_compressed_as_it_fills_into_members_that_decode_to_every_line() {
        let records: Vec<RecordAndOffset> = (0..2_000).map(|i| record(i, &[], Some(&event(EventType::Sale)))).collect();
        let seal = || {
            let mut batch = Batch::new(0);
            for record in &records {
                push(&mut batch, EventType::Sale, "t", 0, record);
                // Only the lines of the member being filled are held as text.
                assert!(batch.stored.tail.len() < MEMBER_BYTES + 4096);
            }
            batch.seal(false)
        };
        let sealed = seal();
        let data = sealed.data.clone().unwrap_or_default();
        let lines = gunzip_lines(&data);
        assert_eq!(lines.len(), 2_000);
        let expected: Vec<Value> = records
            .iter()
            .map(|r| serde_json::from_slice(r.record.value.as_deref().unwrap_or_default()).unwrap_or_default())
            .collect();
        assert_eq!(lines, expected);
        let members = gzip_members(&data);
        assert_eq!(members, sealed.raw_bytes.div_ceil(MEMBER_BYTES).max(1), "{} raw bytes", sealed.raw_bytes);
        assert!(members >= 3);
        // The same records, the same bytes.
        assert_eq!(seal().data, Some(data));
    }

    #[test]
    fn a_record_larger_than_the_byte_limit_is_stored_whole_and_closes_the_batch() {
        let mut big = serde_json::from_slice::<Value>(&event(EventType::Sale)).unwrap_or_default();
        big["notes"] = Value::from("x".repeat(64 * 1024));
        let bytes = big.to_string().into_bytes();
        let limits = BatchLimits { max_events: 1_000, max_bytes: 16 * 1024, max_age: Duration::from_secs(5) };
        let mut batch = Batch::new(0);
        assert_eq!(push(&mut batch, EventType::Sale, "t", 0, &record(0, &[], Some(&bytes))), Outcome::Stored);
        assert!(batch.is_full(&limits));
        let stored = gunzip_lines(batch.seal(false).data.as_deref().unwrap_or_default());
        assert_eq!(stored, [big]);
    }

    #[test]
    fn a_batch_holds_one_date_and_reports_full_at_its_limits() {
        let mut batch = Batch::new(0);
        let today = record(0, &[], Some(b"{}"));
        let mut tomorrow = record(1, &[], Some(b"{}"));
        tomorrow.record.timestamp += chrono::Duration::days(1);
        assert!(batch.fits(&today));
        push(&mut batch, EventType::Sale, "t", 0, &today);
        assert!(batch.fits(&today) && !batch.fits(&tomorrow));
        let limits = BatchLimits { max_events: 2, max_bytes: 1 << 20, max_age: Duration::from_secs(1) };
        assert!(!batch.is_full(&limits));
        push(&mut batch, EventType::Sale, "t", 0, &today);
        assert!(batch.is_full(&limits));
    }

    #[test]
    fn a_resend_is_a_duplicate_in_its_batch_and_later_ones_and_a_replay_gives_the_same_bytes() {
        use crate::dedup::{DedupSettings, Replay, Seen};
        let mut generator = Generator::new(Some(9), 0.0);
        let mut sales = std::iter::from_fn(|| Some(generator.next_event(Utc::now())))
            .filter(|g| g.event_type == EventType::Sale)
            .map(|g| g.value.to_string().into_bytes());
        let (a, b, c) =
            (sales.next().unwrap_or_default(), sales.next().unwrap_or_default(), sales.next().unwrap_or_default());
        let mut a_with_another_store: Value = serde_json::from_slice(&a).unwrap_or_default();
        a_with_another_store["store_id"] = json!(a_with_another_store["store_id"].as_u64().unwrap_or(1) + 1);
        let a_with_another_store = a_with_another_store.to_string().into_bytes();
        // The original Lambda's bare JSON and our producer's record (key, header) of one event.
        let a_as_our_producer = record(2, &[(EVENT_TYPE_HEADER, b"sale_event")], Some(&a));
        let first: Vec<RecordAndOffset> = vec![
            record(0, &[], Some(&a)),
            record(1, &[], Some(&b)),
            a_as_our_producer,
            record(3, &[], Some(&a_with_another_store)),
        ];
        let mut seen = Seen::new(DedupSettings::default());
        let mut batch = Batch::new(0);
        let outcomes: Vec<Outcome> = first.iter().map(|r| batch.push(EventType::Sale, "t", 0, r, &mut seen)).collect();
        assert_eq!(outcomes, [Outcome::Stored, Outcome::Stored, Outcome::Duplicate, Outcome::Stored]);
        let sealed = batch.seal(true);
        assert_eq!((sealed.records, sealed.stored, sealed.duplicates), (4, 3, 1));
        let ids = sealed.event_ids.clone().unwrap_or_default();
        assert_eq!(ids.0.len(), 3);
        seen.remember(0, Utc::now(), &ids.0);

        let mut later = Batch::new(4);
        let outcomes: Vec<Outcome> = [record(4, &[], Some(&b)), record(5, &[], Some(&c))]
            .iter()
            .map(|r| later.push(EventType::Sale, "t", 0, r, &mut seen))
            .collect();
        assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Stored]);

        // Written again after a crash: the entry's identities decide, not what is remembered.
        let mut again = Batch::new(0);
        let mut replay = Replay::of(Some(&ids));
        first.iter().for_each(|r| {
            again.push(EventType::Sale, "t", 0, r, replay.as_mut());
        });
        let rebuilt = again.seal(true);
        assert_eq!((rebuilt.stored, rebuilt.duplicates), (3, 1));
        assert_eq!((rebuilt.data, rebuilt.event_ids), (sealed.data, Some(ids)));
    }
}
