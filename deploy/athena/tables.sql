-- Athena (or Glue Data Catalog) tables over what the consumers write to S3.
--
-- Replace s3://store-events/ with s3://<S3_BUCKET>/<S3_PREFIX>/ (in LOCATION and in
-- storage.location.template). Partition projection computes the dt partitions from the
-- date range, so no crawler, MSCK REPAIR TABLE or ALTER TABLE ADD PARTITION is needed:
-- a new day is queryable as soon as its first object lands.
--
-- Events are stored as received (unknown fields kept); these columns are the ones the
-- JSON Schema (shared/event/schema/store-event.schema.json) defines. The two event tables
-- use the Hive JSON SerDe, which Athena's documentation recommends over OpenX (whose
-- results it says can be non-deterministic). dead_letters uses the OpenX JSON SerDe, meant
-- to give a nested value (a non-UTF-8 value's {"base64": ...}, the headers) to a string
-- column as its JSON text; DuckDB does so in the tests, Athena itself was not reachable.

CREATE DATABASE IF NOT EXISTS store_events;

CREATE EXTERNAL TABLE IF NOT EXISTS store_events.sale_events (
  request_id STRING,
  event_type STRING,
  store_id INT,
  cust_id INT,
  category STRING,
  sku INT,
  price DOUBLE,
  qty INT,
  discount DOUBLE,
  gift_wrap BOOLEAN,
  variant STRING,
  priority_shipping BOOLEAN,
  ts STRING,
  contact_me STRING,
  is_return BOOLEAN
)
PARTITIONED BY (dt STRING)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://store-events/event_type=sale_event/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://store-events/event_type=sale_event/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS store_events.inventory_events (
  request_id STRING,
  event_type STRING,
  store_id INT,
  cust_id INT,
  category STRING,
  sku INT,
  price DOUBLE,
  qty INT,
  discount DOUBLE,
  gift_wrap BOOLEAN,
  variant STRING,
  priority_shipping BOOLEAN,
  ts STRING,
  contact_me STRING,
  is_return BOOLEAN
)
PARTITIONED BY (dt STRING)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://store-events/event_type=inventory_event/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://store-events/event_type=inventory_event/dt=${dt}/'
);

-- One row per record a consumer could not store: where it was in Kafka, why (kind is the
-- reason's label, reason the sentence a person reads), and the record as it was.
CREATE EXTERNAL TABLE IF NOT EXISTS store_events.dead_letters (
  `topic` STRING,
  `partition` INT,
  `offset` BIGINT,
  `timestamp` STRING,
  kind STRING,
  reason STRING,
  `key` STRING,
  headers STRING,
  `value` STRING
)
PARTITIONED BY (consumer STRING, dt STRING)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://store-events/dead_letter/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.consumer.type' = 'enum',
  'projection.consumer.values' = 'sales-consumer,inventory-consumer',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://store-events/dead_letter/consumer=${consumer}/dt=${dt}/'
);
