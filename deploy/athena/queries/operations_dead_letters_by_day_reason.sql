-- Operations: dead letters by day, consumer and reason, with one reason in full as an example.
-- Each consumer dead-letters what it cannot attribute to a type (not JSON, no event_type),
-- so such a record is counted once under each consumer.
SELECT
  dt AS day,
  consumer,
  kind,
  count(*) AS records,
  min(reason) AS example
FROM dead_letters
GROUP BY dt, consumer, kind
ORDER BY day, consumer, kind
