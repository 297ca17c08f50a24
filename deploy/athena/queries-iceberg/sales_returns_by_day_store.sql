-- Sales team, on the Iceberg table: returns by day (of ts, UTC) and store, with the amount
-- refunded (price x qty x (1 - discount / 100) of the returned sale events).
SELECT
  date(ts) AS day,
  store_id,
  count(*) AS returns,
  sum(qty) AS units,
  round(sum(price * qty * (1 - discount / 100)), 2) AS refunded
FROM sale_events
WHERE coalesce(is_return, FALSE) = TRUE
GROUP BY date(ts), store_id
ORDER BY day, store_id
