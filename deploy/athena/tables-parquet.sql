-- Athena (or Glue Data Catalog) tables over the Parquet files the consumers write with
-- OUTPUT_FORMATS=parquet (or json,parquet): the same event tables as tables.sql, with typed
-- columns, in a database of their own, so that the teams' queries (queries/*.sql) run
-- unchanged against either: `USE store_events_parquet` (or pick it in the console).
--
-- Replace s3://store-events/ with s3://<S3_BUCKET>/<S3_PREFIX>/ (in LOCATION and in
-- storage.location.template). Partition projection, as in tables.sql: no crawler.
--
-- Columns are matched by name. The integers are BIGINT (int64 in the files), ts a
-- TIMESTAMP (UTC, microseconds in the files; Athena shows milliseconds), and extra the
-- fields the event contract does not name, as JSON text: json_extract_scalar(extra, '$.note').
-- Dead letters stay JSON: use store_events.dead_letters.

CREATE DATABASE IF NOT EXISTS store_events_parquet;

CREATE EXTERNAL TABLE IF NOT EXISTS store_events_parquet.sale_events (
  request_id STRING,
  event_type STRING,
  store_id BIGINT,
  cust_id BIGINT,
  category STRING,
  sku BIGINT,
  price DOUBLE,
  qty BIGINT,
  discount DOUBLE,
  gift_wrap BOOLEAN,
  variant STRING,
  priority_shipping BOOLEAN,
  ts TIMESTAMP,
  contact_me STRING,
  is_return BOOLEAN,
  extra STRING
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
LOCATION 's3://store-events/parquet/event_type=sale_event/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://store-events/parquet/event_type=sale_event/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS store_events_parquet.inventory_events (
  request_id STRING,
  event_type STRING,
  store_id BIGINT,
  cust_id BIGINT,
  category STRING,
  sku BIGINT,
  price DOUBLE,
  qty BIGINT,
  discount DOUBLE,
  gift_wrap BOOLEAN,
  variant STRING,
  priority_shipping BOOLEAN,
  ts TIMESTAMP,
  contact_me STRING,
  is_return BOOLEAN,
  extra STRING
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
LOCATION 's3://store-events/parquet/event_type=inventory_event/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://store-events/parquet/event_type=inventory_event/dt=${dt}/'
);
