//! The events as columns: the Arrow schema of a table of store events (one table per type,
//! the same columns for both), a builder that fills it from validated documents, and the
//! Parquet file a batch of them is written as.
//!
//! The columns are the contract's fields with their types (integers as `int64`, `price`
//! and `discount` as `double`, the flags as `boolean`, `ts` as a UTC timestamp in
//! microseconds, Iceberg's `timestamptz`), and `extra`: the fields the contract does not
//! name, as the JSON object text they arrived as, so that nothing a newer producer adds is
//! lost. Each column carries its Parquet field id (`PARQUET:field_id`), which Iceberg
//! readers map columns by.
//!
//! `ts` keeps the instant, in UTC, to the microsecond (what Iceberg, Athena and Spark
//! hold); the JSON objects keep the text as received.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::{ArrowWriter, PARQUET_FIELD_ID_META_KEY};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::document::Document;
use crate::validate::{EventFields, KNOWN_FIELDS};

/// The column holding the fields the contract does not name.
pub const EXTRA_COLUMN: &str = "extra";

/// The columns, in order: name, type, nullable. Their field ids are their 1-based
/// positions, and stay so: a column is only ever added at the end.
const COLUMNS: [(&str, ColumnType, bool); 16] = [
    ("request_id", ColumnType::Text, false),
    ("event_type", ColumnType::Text, false),
    ("store_id", ColumnType::Integer, false),
    ("cust_id", ColumnType::Integer, false),
    ("category", ColumnType::Text, false),
    ("sku", ColumnType::Integer, false),
    ("price", ColumnType::Double, false),
    ("qty", ColumnType::Integer, false),
    ("discount", ColumnType::Double, false),
    ("gift_wrap", ColumnType::Boolean, false),
    ("variant", ColumnType::Text, false),
    ("priority_shipping", ColumnType::Boolean, false),
    ("ts", ColumnType::Timestamp, false),
    ("contact_me", ColumnType::Text, true),
    ("is_return", ColumnType::Boolean, true),
    (EXTRA_COLUMN, ColumnType::Text, true),
];

#[derive(Debug, Clone, Copy)]
enum ColumnType {
    Text,
    Integer,
    Double,
    Boolean,
    Timestamp,
}

impl ColumnType {
    fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = COLUMNS.iter().enumerate().map(|(i, (name, column, nullable))| {
        let id = HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_owned(), (i + 1).to_string())]);
        Field::new(*name, column.arrow(), *nullable).with_metadata(id)
    });
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
});

/// The Arrow schema of a table of store events.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Rows of events being collected, column by column.
#[derive(Debug, Default)]
pub struct EventColumns {
    request_id: StringBuilder,
    event_type: StringBuilder,
    store_id: Int64Builder,
    cust_id: Int64Builder,
    category: StringBuilder,
    sku: Int64Builder,
    price: Float64Builder,
    qty: Int64Builder,
    discount: Float64Builder,
    gift_wrap: BooleanBuilder,
    variant: StringBuilder,
    priority_shipping: BooleanBuilder,
    ts: TimestampMicrosecondBuilder,
    contact_me: StringBuilder,
    is_return: BooleanBuilder,
    extra: StringBuilder,
    /// The `extra` text being written.
    scratch: Vec<u8>,
    rows: usize,
}

impl EventColumns {
    /// No rows yet.
    pub fn new() -> EventColumns {
        EventColumns::default()
    }

    /// Adds the event `document` holds, whose checked fields are `fields`.
    pub fn push(&mut self, fields: &EventFields<'_>, document: &Document<'_>) {
        // Validation bounds the integers to 2^53 - 1: every one fits an int64.
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.request_id.append_value(fields.request_id);
        self.event_type.append_value(fields.event_type.as_str());
        self.store_id.append_value(int(fields.store_id));
        self.cust_id.append_value(int(fields.cust_id));
        self.category.append_value(fields.category);
        self.sku.append_value(int(fields.sku));
        self.price.append_value(fields.price);
        self.qty.append_value(int(fields.qty));
        self.discount.append_value(fields.discount);
        self.gift_wrap.append_value(fields.gift_wrap);
        self.variant.append_value(fields.variant);
        self.priority_shipping.append_value(fields.priority_shipping);
        self.ts.append_value(fields.ts.timestamp_micros());
        self.contact_me.append_option(fields.contact_me);
        self.is_return.append_option(fields.is_return);
        if extra_json(document, &mut self.scratch) {
            // `Document` writes valid UTF-8 only (serde_json escapes every string).
            self.extra.append_value(String::from_utf8_lossy(&self.scratch));
        } else {
            self.extra.append_null();
        }
        self.rows += 1;
    }

    /// Rows collected since the last [`EventColumns::take`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows are collected.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows collected, as a record batch of [`schema`]; the builder starts empty again.
    pub fn take(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.request_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.store_id.finish()),
            Arc::new(self.cust_id.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.sku.finish()),
            Arc::new(self.price.finish()),
            Arc::new(self.qty.finish()),
            Arc::new(self.discount.finish()),
            Arc::new(self.gift_wrap.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.priority_shipping.finish()),
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.contact_me.finish()),
            Arc::new(self.is_return.finish()),
            Arc::new(self.extra.finish()),
        ];
        self.rows = 0;
        match RecordBatch::try_new(schema(), columns) {
            Ok(batch) => batch,
            Err(error) => unreachable!("the builders match the schema: {error}"),
        }
    }
}

/// Writes the members of `document` that the contract does not name as a JSON object into
/// `out`; false (and `out` empty) when there are none.
fn extra_json(document: &Document<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Document::Object(members) = document else { return false };
    for (key, value) in members.iter().filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_ref())) {
        out.push(if out.is_empty() { b'{' } else { b',' });
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key.as_ref());
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
    if out.is_empty() {
        return false;
    }
    out.push(b'}');
    true
}

/// The Parquet file of a batch of events: zstd pages, dictionary encoding (except for
/// `request_id`, unique per row, and `ts`, which rises: delta encoded), page statistics
/// (min/max per column chunk and page, which Athena, Trino and DuckDB use to skip), one row
/// group. A random UUID `request_id` is most of a file's bytes (its 122 random bits are
/// ~20 bytes of zstd'd text); zstd level 9 instead of 3 saved 2 % more for 18 % more CPU
/// (`profile_batches --formats parquet`).
///
/// The rows are held as Arrow columns (about half the bytes of their JSON text) and encoded
/// when the file is finished. Encoding as they came cost more memory, not less: the
/// encoder's state per column outweighs the rows. A sales-consumer draining 500,000 events
/// from 64 partitions peaked at 91 MiB this way, at 111 MiB encoding every 4,096 rows and
/// 194 MiB every 1,024 (gzip JSON: 71 MiB). The same rows, with the same metadata, give the
/// same bytes.
#[derive(Debug, Default)]
pub struct ParquetFile {
    columns: EventColumns,
}

/// The largest dictionary page of a column whose values may rarely repeat (see [`properties`]).
const DICTIONARY_LIMIT: usize = 8 * 1024;

/// The writer settings of every events file.
fn properties() -> WriterProperties {
    let zstd = ZstdLevel::try_new(3).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ColumnPath::from("request_id"), false)
        .set_column_encoding(ColumnPath::from("request_id"), parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY)
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
        // A store's catalogue repeats its SKUs and prices, where a dictionary is the smallest
        // encoding; values that rarely repeat make a dictionary as large as the data. These
        // keep theirs while it stays under 8 KiB (about 1,000 values) and go on in delta
        // (integers) or plain (doubles) once it is full, as Parquet's Java writer falls back.
        .set_column_dictionary_page_size_limit(ColumnPath::from("sku"), DICTIONARY_LIMIT)
        .set_column_encoding(ColumnPath::from("sku"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_page_size_limit(ColumnPath::from("cust_id"), DICTIONARY_LIMIT)
        .set_column_encoding(ColumnPath::from("cust_id"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_page_size_limit(ColumnPath::from("price"), DICTIONARY_LIMIT)
        .set_column_dictionary_page_size_limit(ColumnPath::from("discount"), DICTIONARY_LIMIT)
        .set_statistics_enabled(EnabledStatistics::Page)
        // A batch is one row group: its files are megabytes, far below the 128 MiB a row
        // group is worth splitting at.
        .set_max_row_group_row_count(None)
        .set_data_page_size_limit(128 * 1024)
        .build()
}

impl ParquetFile {
    /// An empty file.
    pub fn new() -> ParquetFile {
        ParquetFile::default()
    }

    /// Adds an event (see [`EventColumns::push`]).
    pub fn push(&mut self, fields: &EventFields<'_>, document: &Document<'_>) {
        self.columns.push(fields, document);
    }

    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.columns.len()
    }

    /// The file's bytes, with `metadata` (key, value) in its footer.
    pub fn finish(mut self, metadata: &[(&str, String)]) -> Vec<u8> {
        let batch = self.columns.take();
        let mut writer = match ArrowWriter::try_new(Vec::new(), schema(), Some(properties())) {
            Ok(writer) => writer,
            Err(error) => unreachable!("the schema is one Parquet supports: {error}"),
        };
        if let Err(error) = writer.write(&batch) {
            unreachable!("encoding rows of the writer's own schema into a Vec cannot fail: {error}");
        }
        for (key, value) in metadata {
            writer.append_key_value_metadata(KeyValue::new((*key).to_owned(), value.clone()));
        }
        match writer.into_inner() {
            Ok(bytes) => bytes,
            Err(error) => unreachable!("closing a file written to a Vec cannot fail: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::{Array, RecordBatch};
    use chrono::{TimeZone, Utc};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::PageType;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::{Generator, StoreEvent, check_fields};

    /// Valid events as the consumers store them: generated (returns, contact fields), and
    /// some with fields the contract does not name, escapes, and a zone other than UTC.
    fn events() -> Vec<Vec<u8>> {
        let mut generator = Generator::new(Some(3), 0.0);
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().unwrap_or_default();
        let mut values: Vec<Value> = (0..5_000).map(|_| generator.next_event(at).value).collect();
        for (i, value) in values.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
            value["added_later"] = json!({"k": [1, 2.5, null], "n": i});
            value["bad_msg"] = json!(false);
            value["note"] = json!("caf\u{e9} \"quoted\" \\ / \u{1}");
            value["ts"] = json!("2026-11-24T13:00:00.123456+01:00");
        }
        values.iter().map(|v| serde_json::to_vec(v).unwrap_or_default()).collect()
    }

    fn parquet_of(events: &[Vec<u8>]) -> Vec<u8> {
        let mut file = ParquetFile::new();
        for bytes in events {
            let document = Document::parse(bytes).unwrap_or(Document::Null);
            let fields = check_fields(&document).unwrap_or_else(|e| panic!("{e}"));
            file.push(&fields, &document);
        }
        file.finish(&[("store_events.topic", "t".to_owned())])
    }

    fn read(bytes: Vec<u8>) -> Vec<RecordBatch> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).and_then(|b| b.build());
        reader.map(|r| r.map(|b| b.unwrap_or_else(|e| panic!("{e}"))).collect()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_stored_event_reads_back_from_parquet_with_equal_values() {
        let events = events();
        let batches = read(parquet_of(&events));
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), events.len());
        let mut expected = events.iter().map(|bytes| StoreEvent::from_json(bytes).unwrap_or_else(|e| panic!("{e}")));
        for batch in &batches {
            assert_eq!(batch.schema(), schema());
            let text = |name: &str| batch.column_by_name(name).map(|c| c.as_string::<i32>().clone());
            let int = |name: &str| batch.column_by_name(name).map(|c| c.as_primitive::<Int64Type>().clone());
            let double = |name: &str| batch.column_by_name(name).map(|c| c.as_primitive::<Float64Type>().clone());
            let flag = |name: &str| batch.column_by_name(name).map(|c| c.as_boolean().clone());
            let (request_id, event_type, category, variant, contact_me, extra) = (
                text("request_id").unwrap_or_else(|| unreachable!()),
                text("event_type").unwrap_or_else(|| unreachable!()),
                text("category").unwrap_or_else(|| unreachable!()),
                text("variant").unwrap_or_else(|| unreachable!()),
                text("contact_me").unwrap_or_else(|| unreachable!()),
                text("extra").unwrap_or_else(|| unreachable!()),
            );
            let (store_id, cust_id, sku, qty) = (
                int("store_id").unwrap_or_else(|| unreachable!()),
                int("cust_id").unwrap_or_else(|| unreachable!()),
                int("sku").unwrap_or_else(|| unreachable!()),
                int("qty").unwrap_or_else(|| unreachable!()),
            );
            let (price, discount) = (
                double("price").unwrap_or_else(|| unreachable!()),
                double("discount").unwrap_or_else(|| unreachable!()),
            );
            let (gift_wrap, priority, is_return) = (
                flag("gift_wrap").unwrap_or_else(|| unreachable!()),
                flag("priority_shipping").unwrap_or_else(|| unreachable!()),
                flag("is_return").unwrap_or_else(|| unreachable!()),
            );
            let ts = batch.column_by_name("ts").map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
            let ts = ts.unwrap_or_else(|| unreachable!());
            for row in 0..batch.num_rows() {
                let event = expected.next().unwrap_or_else(|| unreachable!("as many rows as events"));
                assert_eq!(request_id.value(row), event.request_id);
                assert_eq!(event_type.value(row), event.event_type.as_str());
                assert_eq!(store_id.value(row), event.store_id as i64);
                assert_eq!(cust_id.value(row), event.cust_id as i64);
                assert_eq!(category.value(row), event.category);
                assert_eq!(sku.value(row), event.sku as i64);
                assert_eq!(price.value(row), event.price);
                assert_eq!(qty.value(row), event.qty as i64);
                assert_eq!(discount.value(row), event.discount);
                assert_eq!(gift_wrap.value(row), event.gift_wrap);
                assert_eq!(variant.value(row), event.variant);
                assert_eq!(priority.value(row), event.priority_shipping);
                assert_eq!(ts.value(row), event.ts.timestamp_micros(), "the same instant, to the microsecond");
                assert_eq!(contact_me.is_valid(row).then(|| contact_me.value(row)), event.contact_me.as_deref());
                assert_eq!(is_return.is_valid(row).then(|| is_return.value(row)), event.is_return);
                let extra: Map<String, Value> = match extra.is_valid(row) {
                    true => serde_json::from_str(extra.value(row)).unwrap_or_else(|e| panic!("{e}")),
                    false => Map::new(),
                };
                assert_eq!(extra, event.extra, "row {row}");
            }
        }
        assert!(expected.next().is_none());
    }

    /// The encodings of the data pages of a column chunk of a file (a dictionary page is itself
    /// PLAIN: only the data pages tell whether the values left their dictionary).
    fn encodings_of(bytes: Vec<u8>, column: &str) -> Vec<parquet::basic::Encoding> {
        let options = ReadOptionsBuilder::new().with_encoding_stats_as_mask(false).build();
        let reader = SerializedFileReader::new_with_options(bytes::Bytes::from(bytes), options)
            .unwrap_or_else(|e| panic!("{e}"));
        let group = reader.metadata().row_group(0);
        let chunk = group.columns().iter().find(|c| c.column_path().string() == column);
        let stats =
            chunk.and_then(|c| c.page_encoding_stats()).unwrap_or_else(|| panic!("{column}: no page encoding stats"));
        let data = stats.iter().filter(|s| matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2));
        data.map(|s| s.encoding).collect()
    }

    #[test]
    fn a_column_keeps_its_dictionary_while_its_values_repeat_and_leaves_it_when_they_do_not() {
        use parquet::basic::Encoding::{DELTA_BINARY_PACKED, PLAIN, RLE_DICTIONARY};
        // The generator's 5,000 events: SKUs from 170,301 and prices from 10,001 values, at random.
        let varied = parquet_of(&events());
        let sku = encodings_of(varied.clone(), "sku");
        assert!(sku.contains(&RLE_DICTIONARY) && sku.contains(&DELTA_BINARY_PACKED), "{sku:?}");
        let price = encodings_of(varied, "price");
        assert!(price.contains(&RLE_DICTIONARY) && price.contains(&PLAIN), "{price:?}");
        // A catalogue of 50 SKUs and prices: the dictionary holds them all.
        let repeated: Vec<Vec<u8>> = events()
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                let mut value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                value["sku"] = json!(20_000 + i % 50);
                value["price"] = json!((i % 50) as f64 * 1.25);
                serde_json::to_vec(&value).unwrap_or_default()
            })
            .collect();
        let file = parquet_of(&repeated);
        for column in ["sku", "price"] {
            let encodings = encodings_of(file.clone(), column);
            assert!(encodings.iter().all(|e| *e == RLE_DICTIONARY) && !encodings.is_empty(), "{column}: {encodings:?}");
        }
    }

    #[test]
    fn files_are_zstd_with_field_ids_statistics_and_our_metadata_and_the_same_rows_give_the_same_bytes() {
        let events = events();
        let bytes = parquet_of(&events);
        assert_eq!(bytes, parquet_of(&events));
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap_or_else(|e| panic!("{e}"));
        let metadata = reader.metadata();
        assert_eq!(metadata.num_row_groups(), 1, "a batch is one row group");
        let key_values = metadata.file_metadata().key_value_metadata().cloned().unwrap_or_default();
        assert!(key_values.iter().any(|kv| kv.key == "store_events.topic" && kv.value.as_deref() == Some("t")));
        let fields = metadata.file_metadata().schema_descr().root_schema().get_fields().to_vec();
        let ids: Vec<i32> = fields.iter().map(|f| f.get_basic_info().id()).collect();
        assert_eq!(ids, (1..=16).collect::<Vec<i32>>());
        let group = metadata.row_group(0);
        for column in group.columns() {
            // The footer names the codec, not its level.
            assert!(matches!(column.compression(), Compression::ZSTD(_)), "{:?}", column.compression());
            assert!(column.statistics().is_some(), "{}", column.column_path());
        }
        let store_id = group.columns().iter().find(|c| c.column_path().string() == "store_id");
        let (min, max) = match store_id.and_then(|c| c.statistics()) {
            Some(parquet::file::statistics::Statistics::Int64(s)) => (s.min_opt().copied(), s.max_opt().copied()),
            _ => (None, None),
        };
        let ids = events.iter().filter_map(|e| StoreEvent::from_json(e).ok()).map(|e| e.store_id as i64);
        let (least, most) = ids.fold((i64::MAX, i64::MIN), |(lo, hi), id| (lo.min(id), hi.max(id)));
        assert_eq!((min, max), (Some(least), Some(most)));
    }
}
