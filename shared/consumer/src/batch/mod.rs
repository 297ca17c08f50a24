//! One batch: the records of one partition from `first_offset` up to `next_offset`, each
//! with one outcome. Stored (an event of this consumer's type that validates), dead-lettered
//! (of this type but invalid, or of no type at all) or skipped (the other type). Building
//! a batch is pure and deterministic: the same records give the same bytes, which is what
//! lets a crashed batch be written again over the same keys.
//!
//! Stored events go to the files of the batch's [`Formats`]: gzip JSON Lines ([`gzip`])
//! and Parquet (`store_event::columnar`), each encoded as the records come. Dead letters
//! are always JSON: they keep what could not be read as an event.

mod gzip;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use rskafka::record::RecordAndOffset;
use serde::Serialize;
use store_event::columnar::ParquetFile;
use store_event::{Document, EventId, EventType, Route, StoreEvent, check_fields, classify_keeping_body};

use crate::config::{BatchLimits, Formats};
use crate::dedup::{EventIds, Resends};
use gzip::{DEAD_LETTER_MEMBER_BYTES, GzipLines, MEMBER_BYTES};

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
    /// The stored events as JSON Lines, when the formats include JSON.
    stored: Option<GzipLines>,
    /// The stored events as Parquet, when the formats include Parquet.
    parquet: Option<ParquetFile>,
    /// The stored events as the Iceberg table's Parquet files, one per UTC day of `ts`
    /// (the table's partition), when the formats include Iceberg.
    lake: Option<BTreeMap<NaiveDate, ParquetFile>>,
    /// Bytes of the stored events' values, as received.
    stored_bytes: usize,
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
    /// gzip JSON Lines of the stored events, if any were stored and JSON is a format.
    pub data: Option<Vec<u8>>,
    /// The Parquet file of the stored events, if any were stored and Parquet is a format.
    pub parquet: Option<Vec<u8>>,
    /// The Iceberg table's files of the stored events when Iceberg is a format (`Some`,
    /// empty when nothing was stored): per UTC day of `ts`, its rows and its bytes.
    pub lake: Option<Vec<LakeBody>>,
    /// gzip JSON Lines of the dead letters, if any.
    pub dead_letters: Option<Vec<u8>>,
    /// Dead letters by reason label.
    pub dead_kinds: BTreeMap<&'static str, u64>,
    /// Bytes of the stored events' values as received and of the dead letters' lines.
    pub raw_bytes: usize,
    /// Time from the first record's arrival to sealing.
    pub age: Duration,
}

/// One Iceberg data file of a batch: the stored events whose `ts` falls on `day` (UTC).
#[derive(Debug, Clone)]
pub struct LakeBody {
    /// The day.
    pub day: NaiveDate,
    /// Its rows.
    pub rows: u64,
    /// The Parquet file.
    pub body: Bytes,
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

/// The bodies of a batch's objects, as the writer sends them.
#[derive(Debug, Clone, Default)]
pub struct Bodies {
    /// The gzip JSON Lines data object.
    pub data: Option<Bytes>,
    /// The Parquet data file.
    pub parquet: Option<Bytes>,
    /// The dead-letter object.
    pub dead_letters: Option<Bytes>,
    /// The Iceberg table's files.
    pub lake: Vec<LakeBody>,
}

impl Sealed {
    /// Its objects' bodies, moved out.
    pub fn take_bodies(&mut self) -> Bodies {
        Bodies {
            data: self.data.take().map(Bytes::from),
            parquet: self.parquet.take().map(Bytes::from),
            dead_letters: self.dead_letters.take().map(Bytes::from),
            lake: self.lake.as_mut().map(std::mem::take).unwrap_or_default(),
        }
    }
}

impl Batch {
    /// An empty batch starting at `first_offset`, storing its events in `formats`.
    pub fn new(first_offset: i64, formats: Formats) -> Batch {
        Batch {
            first_offset,
            next_offset: first_offset,
            date: None,
            stored: formats.json.then(|| GzipLines::new(MEMBER_BYTES)),
            parquet: formats.parquet.then(ParquetFile::new),
            lake: formats.iceberg.then(BTreeMap::new),
            stored_bytes: 0,
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
        self.records as usize >= limits.max_events || self.stored_bytes + self.dead.raw_len() >= limits.max_bytes
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
            Route::Type(_) => match parse(value, body) {
                Ok(document) => match check_fields(&document) {
                    Err(invalid) => (invalid.kind(), invalid.to_string()),
                    Ok(fields) if fields.event_type != keep => (
                        "type_mismatch",
                        format!("the event_type header says {keep} but the body says {}", fields.event_type),
                    ),
                    Ok(fields) if !resends.first_copy(fields.id()) => {
                        self.duplicates += 1;
                        return Outcome::Duplicate;
                    }
                    Ok(fields) => {
                        self.event_ids.push(fields.id());
                        // Stored as received (compacted), so nothing a newer producer added is lost.
                        if let Some(lines) = &mut self.stored {
                            if serde_json::to_writer(lines.line(), &document).is_err() {
                                unreachable!("a document always serialises to a Vec");
                            }
                            lines.end_line();
                        }
                        if let Some(file) = &mut self.parquet {
                            file.push(&fields, &document);
                        }
                        if let Some(days) = &mut self.lake {
                            let day = fields.ts.naive_utc().date();
                            days.entry(day).or_insert_with(ParquetFile::new).push(&fields, &document);
                        }
                        self.stored_bytes += value.map_or(0, <[u8]>::len) + 1;
                        self.stored_count += 1;
                        return Outcome::Stored;
                    }
                },
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
    /// identities when `remove_resends`. `topic` and `partition` go into the Parquet file's
    /// metadata with the offsets.
    pub fn seal(self, remove_resends: bool, topic: &str, partition: i32) -> Sealed {
        let raw_bytes = self.stored_bytes + self.dead.raw_len();
        let stored = self.stored_count > 0;
        let metadata = [
            ("store_events.topic", topic.to_owned()),
            ("store_events.partition", partition.to_string()),
            ("store_events.first_offset", self.first_offset.to_string()),
            ("store_events.next_offset", self.next_offset.to_string()),
        ];
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
            data: self.stored.filter(|_| stored).map(GzipLines::finish),
            parquet: self.parquet.filter(|_| stored).map(|file| file.finish(&metadata)),
            lake: self.lake.map(|days| {
                days.into_iter()
                    .map(|(day, file)| {
                        let rows = file.rows() as u64;
                        LakeBody { day, rows, body: Bytes::from(file.finish(&metadata)) }
                    })
                    .collect()
            }),
            dead_letters: (self.dead_count > 0).then(|| self.dead.finish()),
            dead_kinds: self.dead_kinds,
            raw_bytes,
        }
    }
}

/// Reads the value of a record routed to this consumer's type as a document, or says why
/// it is not one. `body` is the value already parsed to route it, if it was (a record
/// without a header): a record is parsed once.
fn parse<'a>(value: Option<&'a [u8]>, body: Option<Document<'a>>) -> Result<Document<'a>, (&'static str, String)> {
    if let Some(parsed) = body {
        return Ok(parsed);
    }
    let Some(bytes) = value else {
        return Err(("null_value", "null value".to_owned()));
    };
    if std::str::from_utf8(bytes).is_err() {
        return Err(("not_utf8", "not UTF-8 text".to_owned()));
    }
    Document::parse(bytes).map_err(|_| {
        let reason = StoreEvent::from_json(bytes).err().map(|e| e.to_string()).unwrap_or_default();
        ("not_json", reason)
    })
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
        let mut batch = Batch::new(20, Formats::JSON);
        assert!(batch.is_empty());
        batch.cover_to(21);
        assert!(!batch.is_empty(), "a batch covering a marker is committed like any other");
        batch.cover_to(19);
        let sealed = batch.seal(false, "t", 0);
        assert_eq!((sealed.first_offset, sealed.next_offset, sealed.records), (20, 21, 0));
        assert_eq!((sealed.dt, sealed.data.is_none(), sealed.dead_letters.is_none()), (None, true, true));

        // Records, then a marker after the last of them.
        let mut batch = Batch::new(5, Formats::JSON);
        push(&mut batch, EventType::Sale, "t", 0, &record(5, &[], Some(&event(EventType::Sale))));
        batch.cover_to(7);
        let sealed = batch.seal(false, "t", 0);
        assert_eq!((sealed.first_offset, sealed.next_offset, sealed.records, sealed.stored), (5, 7, 1, 1));
    }

    /// The rows of a Parquet file as the events they hold, read with the Arrow reader.
    fn parquet_events(bytes: &[u8]) -> Vec<(String, i64, f64, i64)> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes)).and_then(|b| b.build());
        let mut rows = Vec::new();
        for batch in reader.into_iter().flatten().flatten() {
            let column = |name: &str| batch.column_by_name(name).cloned().unwrap_or_else(|| unreachable!("{name}"));
            let (ids, stores) = (column("request_id"), column("store_id"));
            let (prices, ts) = (column("price"), column("ts"));
            for row in 0..batch.num_rows() {
                rows.push((
                    ids.as_string::<i32>().value(row).to_owned(),
                    stores.as_primitive::<Int64Type>().value(row),
                    prices.as_primitive::<Float64Type>().value(row),
                    ts.as_primitive::<TimestampMicrosecondType>().value(row),
                ));
            }
        }
        rows
    }

    #[test]
    fn json_and_parquet_from_one_batch_hold_the_same_events_and_dead_letters_stay_json() {
        let records: Vec<RecordAndOffset> = (0..3_000)
            .map(|i| match i % 10 {
                9 => record(i, &[], Some(b"not json")),
                _ => record(i, &[], Some(&event(if i % 3 == 0 { EventType::Inventory } else { EventType::Sale }))),
            })
            .collect();
        let both = Formats { json: true, parquet: true, iceberg: false };
        let seal = |formats| {
            let mut batch = Batch::new(0, formats);
            records.iter().for_each(|r| {
                push(&mut batch, EventType::Sale, "topic", 4, r);
            });
            batch.seal(false, "topic", 4)
        };
        let sealed = seal(both);
        let lines = gunzip_lines(sealed.data.as_deref().unwrap_or_default());
        let rows = parquet_events(sealed.parquet.as_deref().unwrap_or_default());
        assert_eq!((rows.len() as u64, lines.len() as u64), (sealed.stored, sealed.stored));
        for (line, row) in lines.iter().zip(&rows) {
            let event = StoreEvent::from_value(line).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(row, &(event.request_id, event.store_id as i64, event.price, event.ts.timestamp_micros()));
        }
        assert!(
            sealed.dead_lettered > 0
                && gunzip_lines(sealed.dead_letters.as_deref().unwrap_or_default()).len() as u64
                    == sealed.dead_lettered
        );

        // Parquet alone: the same file, no JSON object; and the same records, the same bytes.
        let parquet_only = seal(Formats { json: false, parquet: true, iceberg: false });
        assert_eq!((parquet_only.data, parquet_only.parquet.as_ref()), (None, sealed.parquet.as_ref()));
        assert_eq!(seal(Formats::JSON).parquet, None);
        let footer = parquet::file::reader::SerializedFileReader::new(Bytes::from(sealed.parquet.unwrap_or_default()));
        let metadata = footer.map(|f| {
            use parquet::file::reader::FileReader;
            f.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default()
        });
        let metadata: Vec<(String, String)> =
            metadata.unwrap_or_default().into_iter().map(|kv| (kv.key, kv.value.unwrap_or_default())).collect();
        for expected in
            [("store_events.partition", "4"), ("store_events.first_offset", "0"), ("store_events.next_offset", "3000")]
        {
            assert!(metadata.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{metadata:?}");
        }
    }

    #[test]
    fn the_iceberg_files_of_a_batch_hold_one_utc_day_of_ts_each_and_all_its_stored_events() {
        // Sales stamped on three UTC days (one late in the evening at UTC-5: the next UTC day),
        // in one batch (their Kafka timestamps share a date).
        let stamps = ["2026-11-20T10:00:00Z", "2026-11-21T23:59:59.999999Z", "2026-11-21T20:00:00-05:00"];
        let records: Vec<RecordAndOffset> = (0..300)
            .map(|i| {
                let mut value: serde_json::Value = serde_json::from_slice(&event(EventType::Sale)).unwrap_or_default();
                value["ts"] = serde_json::Value::from(stamps[i as usize % 3]);
                value["request_id"] = serde_json::Value::from(format!("00000000-0000-4000-8000-{i:012}"));
                record(i, &[], Some(value.to_string().as_bytes()))
            })
            .collect();
        let mut batch = Batch::new(0, Formats { json: true, parquet: false, iceberg: true });
        records.iter().for_each(|r| {
            push(&mut batch, EventType::Sale, "topic", 1, r);
        });
        let mut sealed = batch.seal(false, "topic", 1);
        let lake = sealed.take_bodies().lake;
        let days: Vec<String> = lake.iter().map(|f| f.day.to_string()).collect();
        assert_eq!(days, ["2026-11-20", "2026-11-21", "2026-11-22"]);
        assert_eq!(lake.iter().map(|f| f.rows).sum::<u64>(), sealed.stored);
        for file in &lake {
            let rows = parquet_events(&file.body);
            assert_eq!(rows.len() as u64, file.rows);
            for (_, _, _, micros) in rows {
                let day = chrono::DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
                assert_eq!(day, Some(file.day), "a row of another day in {}'s file", file.day);
            }
        }
        // Without Iceberg no table files; with it and nothing stored, none either (but `Some`).
        assert!(Batch::new(0, Formats::JSON).seal(false, "t", 0).lake.is_none());
        let empty = Batch::new(0, Formats { json: false, parquet: false, iceberg: true }).seal(false, "t", 0);
        assert_eq!(empty.lake.map(|files| files.len()), Some(0));
    }

    #[test]
    fn each_record_gets_one_outcome_and_the_range_is_contiguous() {
        let sale = event(EventType::Sale);
        let inventory = event(EventType::Inventory);
        let bad = br#"{"event_type":"sale_event","store_id":0}"#;
        let mut batch = Batch::new(10, Formats::JSON);
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
        let sealed = batch.seal(false, "t", 0);
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
        let mut batch = Batch::new(0, Formats::JSON);
        assert_eq!(push(&mut batch, EventType::Sale, "t", 0, &record(0, &[], Some(text.as_bytes()))), Outcome::Stored);
        let mut stored = String::new();
        let data = batch.seal(false, "t", 0).data.unwrap_or_default();
        let _ = MultiGzDecoder::new(data.as_slice()).read_to_string(&mut stored);
        let as_value: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(stored, format!("{}\n", serde_json::to_string(&as_value).unwrap_or_default()));
        assert!(stored.starts_with(r#"{"added_later":{"k":[1,2.5]},"store_id":42,"#), "{stored}");
        assert!(stored.ends_with(",\"note\":\"café / ok\"}\n"), "{stored}");
    }

    #[test]
    fn dead_letters_carry_the_raw_value_reason_and_position() {
        let mut batch = Batch::new(0, Formats::JSON);
        push(&mut batch, EventType::Sale, "topic", 3, &record(0, &[("trace", b"\xfe")], Some(b"\xff\x00")));
        push(&mut batch, EventType::Sale, "topic", 3, &record(1, &[], Some(b"not json")));
        let letters = gunzip_lines(batch.seal(false, "t", 0).dead_letters.as_deref().unwrap_or_default());
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
        let mut batch = Batch::new(0, Formats::JSON);
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
            let mut batch = Batch::new(0, Formats::JSON);
            records.iter().for_each(|r| {
                push(&mut batch, EventType::Inventory, "t", 0, r);
            });
            let sealed = batch.seal(false, "t", 0);
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
            let mut batch = Batch::new(0, Formats::JSON);
            for record in &records {
                push(&mut batch, EventType::Sale, "t", 0, record);
                // Only the lines of the member being filled are held as text.
                assert!(batch.stored.as_ref().is_some_and(|lines| lines.tail.len() < MEMBER_BYTES + 4096));
            }
            batch.seal(false, "t", 0)
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
        let mut batch = Batch::new(0, Formats::JSON);
        assert_eq!(push(&mut batch, EventType::Sale, "t", 0, &record(0, &[], Some(&bytes))), Outcome::Stored);
        assert!(batch.is_full(&limits));
        let stored = gunzip_lines(batch.seal(false, "t", 0).data.as_deref().unwrap_or_default());
        assert_eq!(stored, [big]);
    }

    #[test]
    fn a_batch_holds_one_date_and_reports_full_at_its_limits() {
        let mut batch = Batch::new(0, Formats::JSON);
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
        let mut batch = Batch::new(0, Formats::JSON);
        let outcomes: Vec<Outcome> = first.iter().map(|r| batch.push(EventType::Sale, "t", 0, r, &mut seen)).collect();
        assert_eq!(outcomes, [Outcome::Stored, Outcome::Stored, Outcome::Duplicate, Outcome::Stored]);
        let sealed = batch.seal(true, "t", 0);
        assert_eq!((sealed.records, sealed.stored, sealed.duplicates), (4, 3, 1));
        let ids = sealed.event_ids.clone().unwrap_or_default();
        assert_eq!(ids.0.len(), 3);
        seen.remember(0, Utc::now());

        let mut later = Batch::new(4, Formats::JSON);
        let outcomes: Vec<Outcome> = [record(4, &[], Some(&b)), record(5, &[], Some(&c))]
            .iter()
            .map(|r| later.push(EventType::Sale, "t", 0, r, &mut seen))
            .collect();
        assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Stored]);

        // Written again after a crash: the entry's identities decide, not what is remembered.
        let mut again = Batch::new(0, Formats::JSON);
        let mut replay = Replay::of(Some(&ids));
        first.iter().for_each(|r| {
            again.push(EventType::Sale, "t", 0, r, replay.as_mut());
        });
        let rebuilt = again.seal(true, "t", 0);
        assert_eq!((rebuilt.stored, rebuilt.duplicates), (3, 1));
        assert_eq!((rebuilt.data, rebuilt.event_ids), (sealed.data, Some(ids)));
    }
}
