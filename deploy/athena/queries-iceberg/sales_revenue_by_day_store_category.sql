-- Sales team, on the Iceberg table: revenue by day (of the sale's ts, UTC), store and
-- category. A sale's revenue is price x qty x (1 - discount / 100); returns are left out.
-- Athena reads only the days a filter on ts names (the table is partitioned by day(ts)):
-- add `AND ts >= TIMESTAMP '2026-11-01 00:00:00 UTC' AND ts < TIMESTAMP '2026-12-01 00:00:00 UTC'`.
SELECT
  date(ts) AS day,
  store_id,
  category,
  count(*) AS sales,
  sum(qty) AS units,
  round(sum(price * qty * (1 - discount / 100)), 2) AS revenue
FROM sale_events
WHERE coalesce(is_return, FALSE) = FALSE
GROUP BY date(ts), store_id, category
ORDER BY day, store_id, category
