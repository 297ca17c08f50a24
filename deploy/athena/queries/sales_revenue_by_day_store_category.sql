-- Sales team: revenue by day, store and category. A sale's revenue is
-- price x qty x (1 - discount / 100); returns are left out here (see sales_returns_by_day_store.sql).
-- In Athena, add `AND dt BETWEEN '2026-11-01' AND '2026-11-30'` to scan only those days.
SELECT
  dt AS day,
  store_id,
  category,
  count(*) AS sales,
  sum(qty) AS units,
  round(sum(price * qty * (1 - discount / 100)), 2) AS revenue
FROM sale_events
WHERE coalesce(is_return, FALSE) = FALSE
GROUP BY dt, store_id, category
ORDER BY day, store_id, category
