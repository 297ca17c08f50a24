-- Warehouse, on the Iceberg table: units moved per SKU and store. An inventory event moves qty units out of
-- stock (dispatched); one marked is_return brings them back (restocked).
SELECT
  sku,
  store_id,
  sum(CASE WHEN coalesce(is_return, FALSE) THEN 0 ELSE qty END) AS units_out,
  sum(CASE WHEN coalesce(is_return, FALSE) THEN qty ELSE 0 END) AS units_back,
  sum(CASE WHEN coalesce(is_return, FALSE) THEN qty ELSE -qty END) AS net_units
FROM inventory_events
GROUP BY sku, store_id
ORDER BY sku, store_id
