-- Warehouse, on the Iceberg table: stock movements per day (of ts, UTC) and category: how
-- many, and units out and back.
SELECT
  date(ts) AS day,
  category,
  count(*) AS movements,
  sum(CASE WHEN coalesce(is_return, FALSE) THEN 0 ELSE qty END) AS units_out,
  sum(CASE WHEN coalesce(is_return, FALSE) THEN qty ELSE 0 END) AS units_back
FROM inventory_events
GROUP BY date(ts), category
ORDER BY day, category
