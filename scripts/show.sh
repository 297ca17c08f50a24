#!/usr/bin/env bash
# Prints where the running system can be seen: each service's URLs and readiness, and
# what the S3 bucket holds so far.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/local.env
source "$root/scripts/local.env"

echo
echo "store-events is running:"
for entry in producer:8080 sales-consumer:8081 inventory-consumer:8082; do
  name=${entry%%:*} port=${entry##*:}
  ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
  printf '  %-19s http://127.0.0.1:%s  (/healthz /readyz=%s /metrics)\n' "$name" "$port" "$ready"
done
echo "  Kafka               127.0.0.1:9092, topic ${STORE_EVENTS_TOPIC:-MystiqueStoreEventsTopic}"
echo "  S3                  $S3_ENDPOINT, bucket $S3_BUCKET (files under .local/s3/data/$S3_BUCKET/)"
echo "  logs                .local/logs/*.log    stop with: make down"
objects=$(find "$root/.local/s3/data/$S3_BUCKET" -type f -name '*.gz' 2>/dev/null | wc -l)
echo "  objects in S3 so far: $objects"
