-- Sales team, on the Iceberg table: the ten SKUs with the most revenue (returns left out), ties broken by SKU.
SELECT
  sku,
  count(*) AS sales,
  sum(qty) AS units,
  round(sum(price * qty * (1 - discount / 100)), 2) AS revenue
FROM sale_events
WHERE coalesce(is_return, FALSE) = FALSE
GROUP BY sku
ORDER BY revenue DESC, sku
LIMIT 10
