#!/usr/bin/env bash
# Prints where the running system can be seen, waits until the consumers have written
# events to S3 (the producer's generator feeds them), and shows a sample, all read back
# with the AWS CLI (scripts/aws) as a user would.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/local.env
source "$root/scripts/local.env"
aws() { "$root/scripts/aws" "$@"; }

echo
echo "store-events is running:"
for entry in "producer:${PRODUCER_PORT:-8080}" "sales-consumer:${SALES_CONSUMER_PORT:-8081}" "inventory-consumer:${INVENTORY_CONSUMER_PORT:-8082}"; do
  name=${entry%%:*} port=${entry##*:}
  ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
  printf '  %-19s http://127.0.0.1:%s  (/healthz /readyz=%s /metrics)\n' "$name" "$port" "$ready"
done
echo "  Kafka               127.0.0.1:9092, topic ${STORE_EVENTS_TOPIC:-MystiqueStoreEventsTopic}"
echo "  S3                  $S3_ENDPOINT, bucket $S3_BUCKET (SeaweedFS, data in .local/s3/)"
echo "  logs                .local/logs/*.log    stop with: make down"

# objects PREFIX: the keys of the objects under PREFIX, one per line.
objects() { aws s3 ls --recursive "s3://$S3_BUCKET/$1" | awk '{ $1 = $2 = $3 = ""; sub(/^ +/, ""); print }'; }
count() { objects "$1" | grep -c '\.jsonl\.gz$' || true; }
deadline=$((SECONDS + 30))
while [ "$(count event_type=sale_event/)" -eq 0 ] || [ "$(count event_type=inventory_event/)" -eq 0 ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "  no events in S3 after 30 s: is GENERATOR_RATE 0? see .local/logs/"
    exit 0
  fi
  sleep 1
done
echo
echo "Events are landing in S3 (the generator makes ${GENERATOR_RATE:-20} events/s, 10% bad):"
for prefix in event_type=sale_event/ event_type=inventory_event/ dead_letter/consumer=sales-consumer/ dead_letter/consumer=inventory-consumer/; do
  printf '  %-42s %s objects\n' "$prefix" "$(count "$prefix")"
done
sample=$(objects event_type=sale_event/ | sed -n 1p)
echo "  a stored sale event: $(aws s3 cp "s3://$S3_BUCKET/$sample" - | gzip -dc | sed -n 1p)"
parquet=$(objects parquet/ | grep -c '\.parquet$' || true)
if [ "$parquet" -gt 0 ]; then
  # The same events as Parquet (OUTPUT_FORMATS=json,parquet), read by DuckDB from a copy.
  copy="$root/.local/show-parquet"
  rm -rf "$copy" && aws s3 cp --recursive --only-show-errors "s3://$S3_BUCKET/parquet/" "$copy/"
  echo "  parquet/                                   $parquet files; sales so far, by category (DuckDB over the Parquet files):"
  "$root/scripts/py.sh" python - "$copy" <<'PY' | sed 's/^/    /'
import sys, duckdb
duckdb.sql(f"""SELECT category, count(*) AS sales, sum(qty) AS units, round(sum(price * qty * (1 - discount / 100)), 2) AS revenue,
  max(ts) AS latest FROM read_parquet('{sys.argv[1]}/event_type=sale_event/dt=*/*.parquet') GROUP BY ALL ORDER BY revenue DESC""").show()
PY
fi
catalog="$root/.local/iceberg-catalog.db"
if [ -f "$catalog" ]; then
  # The Iceberg tables (OUTPUT_FORMATS with iceberg): pyiceberg over the SQLite catalog, and
  # the sales team's top SKUs query run by DuckDB's iceberg extension (scripts/py.sh --iceberg).
  echo "  iceberg/                                   the Iceberg tables, committed every 5 s (pyiceberg and DuckDB):"
  "$root/scripts/py.sh" --iceberg python "$root/deploy/iceberg/iceberg_local.py" --catalog "sqlite:$catalog" --wait 20 | sed 's/^/    /'
  "$root/scripts/py.sh" --iceberg python "$root/deploy/iceberg/iceberg_local.py" --catalog "sqlite:$catalog" \
    --query "$root/deploy/athena/queries-iceberg/sales_top_skus.sql" | sed 's/^/    /'
fi
echo
echo "Look further with:"
echo "  scripts/aws s3 ls --recursive s3://$S3_BUCKET/                 # every object (the AWS CLI, local endpoint)"
echo "  scripts/aws s3 cp --recursive s3://$S3_BUCKET/ .local/copy/     # download them"
echo "  scripts/py.sh python deploy/athena/duckdb_local.py .local/copy/  # the teams' Athena queries, in DuckDB"
echo "  scripts/py.sh python deploy/athena/duckdb_local.py --parquet .local/copy/  # the same, on the Parquet tables"
echo "  source scripts/local.env; scripts/py.sh --iceberg python deploy/iceberg/iceberg_local.py \\"
echo "    --query deploy/athena/queries-iceberg/sales_top_skus.sql      # the teams' queries on the Iceberg tables"
echo "  make audit                                                      # prove exactly once (the ledger, the objects, the tables)"
