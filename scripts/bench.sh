#!/usr/bin/env bash
# make bench: measures the services against Apache Kafka's own tools, on this machine, in
# one run, and writes benches/results/latest.{md,json}.
#
#   BENCH_PRODUCE_EVENTS  events for the producer measures      (default 500000)
#   BENCH_BACKLOG_EVENTS  backlog the consumers drain           (default 2000000)
#   BENCH_HTTP_SECONDS    length of the HTTP load               (default 15)
#   BENCH_LATENCY_SECONDS length of the steady-rate latency run (default 30)
#   BENCH_BASELINE_EVENTS events the one-PUT-per-event baseline stores (default 5000)
#   BENCH_STEADY_RPS      fixed HTTP rate for the latency measure, requests of 100 (default 250)
#   BENCH_FAULT_SECONDS   length of the kill -9 run beside Iceberg's sink (default 45)
#   BENCH_OUT             results folder                        (default benches/results)
#
# `make bench-smoke` runs the same harness tiny (CI): it checks that every part produced
# a number, never a speed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/local.env
source scripts/local.env

produce_events=${BENCH_PRODUCE_EVENTS:-500000}
backlog_events=${BENCH_BACKLOG_EVENTS:-2000000}
http_seconds=${BENCH_HTTP_SECONDS:-15}
latency_seconds=${BENCH_LATENCY_SECONDS:-30}
baseline_events=${BENCH_BASELINE_EVENTS:-5000}
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
seaweedfs=$(awk '$2 == "github.com/seaweedfs/seaweedfs" {print $3; exit}' scripts/seaweedfs/go.mod)
out=${BENCH_OUT:-benches/results}
work=$root/.local/bench
run_id=$(date +%s)
mkdir -p "$out" "$work"
rm -f "$work"/*.db "$work"/connect-* "$work"/fault-* # an earlier run's catalogs and logs: each run's tables are its own
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

log() { printf '[bench] %s\n' "$*" >&2; }
kafka_tool() { scripts/stack.sh kafka-tool "$@"; }
ticks=$(getconf CLK_TCK)
# CPU seconds (user + system) and peak RSS (MiB) of a process.
cpu_seconds() { awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.6f\", $*}"; }
metric_sum() { # metric_sum URL NAME: the sum of a metric's samples
  curl -s "$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {s += $2} END {printf "%.0f", s}'
}
wait_ready() {
  local url=$1 deadline=$((SECONDS + 60))
  until curl -fs "$url/readyz" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { log "$url is not ready"; exit 1; }
    sleep 0.3
  done
}
# perf_produce TOPIC COUNT: kafka-producer-perf-test with the payload file, acks=all, lz4.
perf_produce() {
  kafka_tool org.apache.kafka.tools.ProducerPerformance --topic "$1" --num-records "$2" \
    --payload-file "$work/payload.ndjson" --throughput -1 \
    --producer-props bootstrap.servers=127.0.0.1:9092 acks=all compression.type=lz4 linger.ms=5 batch.size=524288
}
create_topic() { # create_topic NAME [PARTITIONS (2)]
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --create \
    --topic "$1" --partitions "${2:-2}" --replication-factor 1 >/dev/null
}

scripts/stack.sh up
command -v wrk >/dev/null || { log "Installing wrk from Debian's packages"; apt-get install -y -qq wrk >&2; }
# GNU time gives the Flink JVM's CPU and peak RSS once it has exited.
[ -x /usr/bin/time ] || { log "Installing GNU time from Debian's packages"; apt-get install -y -qq time >&2; }
# vegeta sends at a fixed rate (wrk cannot), for acknowledgement latency without queueing.
vegeta=$cache/bin/vegeta
[ -x "$vegeta" ] || { log "Installing vegeta from Go modules"; GOBIN=$cache/bin go install github.com/tsenart/vegeta/v12@v12.13.0; }
# The one-PUT-per-event baseline and the latency observer are Python with boto3 (scripts/py.sh).
scripts/py.sh python -c 'import boto3'
if [ -n "${BENCH_IMAGE:-}" ]; then
  # The release binaries of an image built from the Dockerfile (CI builds one anyway):
  # the same profile, stripped, without a second release build.
  bin=$work/bin
  log "Taking the services' binaries from the image $BENCH_IMAGE"
  mkdir -p "$bin"
  container=$(docker create "$BENCH_IMAGE")
  for name in producer sales-consumer inventory-consumer; do docker cp "$container:/usr/local/bin/$name" "$bin/$name"; done
  docker rm "$container" >/dev/null
else
  log "Building the services (release)"
  cargo build --quiet --release --bins
  bin=$root/target/release
fi

# Payload: realistic events, 10% bad, as one JSON object per line.
"$bin/producer" generate --count 20000 --seed 7 --bad-share 0.1 >"$work/payload.ndjson"
record_bytes=$(awk '{n++; b += length($0)} END {printf "%.0f", b / n}' "$work/payload.ndjson")
"$bin/producer" generate --count 100 --seed 8 --bad-share 0 |
  awk 'BEGIN {printf "["} NR > 1 {printf ","} {printf "%s", $0} END {printf "]"}' >"$work/batch100.json"

# 1. Ceiling: Apache Kafka's own perf tools, same records, acks=all, lz4.
ceiling_topic=bench-ceiling-$run_id
create_topic "$ceiling_topic"
log "kafka-producer-perf-test: $produce_events records"
perf_produce "$ceiling_topic" "$produce_events" >"$work/producer-perf.txt"
ceiling_produce=$(grep -E 'records sent' "$work/producer-perf.txt" | tail -n 1 | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/')
log "kafka-consumer-perf-test"
kafka_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server 127.0.0.1:9092 --topic "$ceiling_topic" \
  --num-records "$produce_events" >"$work/consumer-perf.txt"
# fetch.nMsg.sec: the rate once fetching started, without the consumer group's join
# (the services have no group to join).
ceiling_consume=$(awk -F', *' '/^[0-9][0-9][0-9][0-9]-/ {print $10}' "$work/consumer-perf.txt")

# 2. Producer: the generator path (POST /v1/simulate) and the HTTP path (batches of 100).
producer_topic=bench-producer-$run_id
STORE_EVENTS_TOPIC=$producer_topic HTTP_ADDR=127.0.0.1:18080 LOG_FORMAT=json RUST_LOG=warn \
  "$bin/producer" >"$work/producer.log" 2>&1 &
producer_pid=$!
pids+=("$producer_pid")
wait_ready http://127.0.0.1:18080
log "producer generator path: $produce_events events"
start=$(now)
summary=$(curl -s http://127.0.0.1:18080/v1/simulate -H 'content-type: application/json' \
  -d "{\"count\": $produce_events, \"bad_share\": 0.1}")
elapsed=$(calc "$(now) - $start")
acked=$(echo "$summary" | sed -E 's/.*"tot_msgs":([0-9]+).*/\1/')
generator_rate=$(calc "$acked / $elapsed")
log "producer HTTP path: wrk, ${http_seconds}s, batches of 100"
# Every request carries 100 events never sent before, as stores send them: the same body
# again would be answered from the producer's memory of acknowledged events
# (PRODUCER_RESEND_WINDOW) and measure nothing. Each wrk thread numbers its requests.
cat >"$work/post.lua" <<EOF
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", threads)
end
local parts, sent
local headers = {["Content-Type"] = "application/json"}
if os.getenv("BENCH_AUTHORIZATION") then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end
function init(args)
  local f = io.open("$work/batch100.json", "r")
  local template = f:read("*a")
  f:close()
  -- The body cut once after each request id's value; a request is the pieces joined with
  -- its suffix. wrk shares the two cores with the producer and the broker: a pattern
  -- substitution per request took half a core of them, this a tenth.
  parts = {}
  local at = 1
  for stop in template:gmatch('"request_id":"[^"]*()"') do
    parts[#parts + 1] = template:sub(at, stop - 1)
    at = stop
  end
  parts[#parts + 1] = template:sub(at)
  sent = 0
end
function request()
  sent = sent + 1
  return wrk.format("POST", nil, headers, table.concat(parts, string.format("-%d-%d", tag, sent)))
end
EOF
http_cpu_before=$(cpu_seconds "$producer_pid")
/usr/bin/time -f '%U %S' -o "$work/wrk.time" \
  wrk -t2 -c32 -d"${http_seconds}s" --latency -s "$work/post.lua" http://127.0.0.1:18080/v1/events >"$work/wrk.txt"
wrk_cpu=$(awk '{printf "%.2f", $1 + $2}' "$work/wrk.time")
producer_connections=$(metric_sum http://127.0.0.1:18080 kafka_broker_connections || echo "?")
http_cpu=$(calc "$(cpu_seconds "$producer_pid") - $http_cpu_before")
http_requests=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
http_rate=$(calc "$http_requests * 100")
http_p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
http_p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
http_non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
# Acknowledgement latency at a fixed rate: half of issue #3's 50,000 events/s target,
# 250 requests/s of 100 events (BENCH_STEADY_RPS), sent by vegeta whatever the answers take.
half_rps=${BENCH_STEADY_RPS:-250}
log "producer HTTP path at a fixed rate: vegeta, ${half_rps} requests/s of 100 events, ${http_seconds}s"
# vegeta sends one body: without request ids, so that the producer gives each event a new one.
python3 -c 'import json, sys; print(json.dumps([{k: v for k, v in e.items() if k != "request_id"} for e in json.load(open(sys.argv[1]))]))' \
  "$work/batch100.json" >"$work/batch100-no-ids.json"
printf 'POST http://127.0.0.1:18080/v1/events\nContent-Type: application/json\n@%s\n' "$work/batch100-no-ids.json" >"$work/vegeta.targets"
"$vegeta" attack -targets="$work/vegeta.targets" -rate="$half_rps/1s" -duration="${http_seconds}s" -max-workers=64 |
  "$vegeta" report -type=json >"$work/vegeta.json"
read -r half_p50 half_p99 half_success < <(python3 - "$work/vegeta.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
latencies = report["latencies"]
print(f"{latencies['50th'] / 1e6:.1f}", f"{latencies['99th'] / 1e6:.1f}", f"{report['success']:.4f}")
PY
)
producer_cpu=$(cpu_seconds "$producer_pid")
producer_rss=$(peak_rss_mib "$producer_pid")
kill -TERM "$producer_pid"
wait "$producer_pid" || true

# 2b. Authentication's cost, and one store flooding beside another. The same producer with
# API keys on (PRODUCER_AUTH=api-keys, as deployed): the wrk load again with a key without
# a rate limit; then a quiet store at a fixed rate (vegeta, 20 requests/s of 100 events),
# alone and while another key floods with wrk (limited to PRODUCER_RATE_LIMIT, 1,000 events/s:
# its excess gets 429 before its body is read).
key_entry() { # key_entry PRINCIPAL RATE: "KEY ENTRY" (the entry with its rate)
  local out
  out=$("$bin/producer" issue-key "$1" '*')
  printf '%s %s\n' "$(awk '/^sek_/ {print; exit}' <<<"$out")" "$(awk '/^\{/ {print; exit}' <<<"$out" | sed "s/}\$/,\"rate\":$2}/")"
}
read -r load_key load_entry < <(key_entry bench-load 0)
read -r quiet_key quiet_entry < <(key_entry bench-quiet 0)
read -r flood_key flood_entry < <(key_entry bench-flood null)
flood_entry=${flood_entry/,\"rate\":null/}
printf '{"keys": [%s, %s, %s]}\n' "$load_entry" "$quiet_entry" "$flood_entry" >"$work/api-keys.json"
STORE_EVENTS_TOPIC=$producer_topic HTTP_ADDR=127.0.0.1:18085 PRODUCER_AUTH=api-keys \
  PRODUCER_API_KEYS_FILE=$work/api-keys.json LOG_FORMAT=json RUST_LOG=warn \
  "$bin/producer" >"$work/producer-auth.log" 2>&1 &
auth_pid=$!
pids+=("$auth_pid")
wait_ready http://127.0.0.1:18085
log "producer HTTP path with API keys: wrk, ${http_seconds}s, batches of 100"
auth_cpu_before=$(cpu_seconds "$auth_pid")
BENCH_AUTHORIZATION="Bearer $load_key" wrk -t2 -c32 -d"${http_seconds}s" --latency -s "$work/post.lua" \
  http://127.0.0.1:18085/v1/events >"$work/wrk-auth.txt"
auth_cpu=$(calc "$(cpu_seconds "$auth_pid") - $auth_cpu_before")
auth_rate=$(calc "$(awk '/Requests\/sec/ {print $2}' "$work/wrk-auth.txt") * 100")
auth_non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk-auth.txt")
# quiet_p99 OUT: the quiet store's p99 (ms) over 10 s at 20 requests/s of 100 events.
quiet_p99() {
  printf 'POST http://127.0.0.1:18085/v1/events\nContent-Type: application/json\nAuthorization: Bearer %s\n@%s\n' \
    "$quiet_key" "$work/batch100-no-ids.json" >"$work/quiet.targets"
  "$vegeta" attack -targets="$work/quiet.targets" -rate=20/1s -duration=10s -max-workers=16 |
    "$vegeta" report -type=json >"$work/$1"
  python3 - "$work/$1" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"{report['latencies']['99th'] / 1e6:.1f}", f"{report['success']:.4f}")
PY
}
log "a quiet store alone, then beside a flooding one"
read -r quiet_alone_p99 quiet_alone_success < <(quiet_p99 quiet-alone.json)
BENCH_AUTHORIZATION="Bearer $flood_key" wrk -t2 -c32 -d12s -s "$work/post.lua" \
  http://127.0.0.1:18085/v1/events >"$work/wrk-flood.txt" &
flood_pid=$!
sleep 1
read -r quiet_flood_p99 quiet_flood_success < <(quiet_p99 quiet-flood.json)
wait "$flood_pid" || true
flood_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk-flood.txt")
flood_non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk-flood.txt")
kill -TERM "$auth_pid"
wait "$auth_pid" || true

# 3. Consumers: drain a backlog of mixed events (bare JSON, as the original Lambda wrote),
# each alone, then both together; then the peers alone on the same backlog. Every event
# of it is distinct (kafka-producer-perf-test would repeat its payload file's 20,000
# events, which the consumers would rightly remove as resends): the generator's events
# written with kcat, lz4, no key.
# expect TOPIC EXPECT: what each tool must store of TOPIC, counted by a reader that is none of
# ours (scripts/bench/delivery.py), into the file EXPECT.
expect() {
  kcat -C -b 127.0.0.1:9092 -t "$1" -o beginning -e -q -f '%s\n' | scripts/py.sh python scripts/bench/delivery.py expect "$2"
}
# fill_backlog TOPIC SEED BAD_SHARE EXPECT: TOPIC made and filled with $backlog_events of the
# generator's events (SEED, BAD_SHARE), written with kcat, lz4, no key; then expect.
fill_backlog() {
  create_topic "$1"
  "$bin/producer" generate --count "$backlog_events" --seed "$2" --bad-share "$3" |
    kcat -P -b 127.0.0.1:9092 -t "$1" -z lz4 -X linger.ms=5 -X batch.size=524288 -X queue.buffering.max.messages=1000000
  expect "$1" "$4"
}
backlog_topic=bench-backlog-$run_id
log "Filling a backlog of $backlog_events events"
fill_backlog "$backlog_topic" 9 0.1 "$work/expected.json"
# expected_of KIND [EXPECT]: how many records of KIND the topic holds (EXPECT: delivery.py expect's file).
expected_of() { python3 -c 'import json, sys; print(sum(json.load(open(sys.argv[1]))[sys.argv[2]].values()))' "${2:-$work/expected.json}" "$1"; }
declare -A keeps=([sales-consumer]=sale_event [inventory-consumer]=inventory_event)
# Per run (`alone`, `together`, a peer's name): seconds until every record was read and
# until every one was stored, CPU seconds, peak RSS, and the delivery check's answer.
declare -A read_s stored_s cpu_s rss_mib delivery connections
# delivered RUN PREFIX KIND: the delivery check of what RUN stored under PREFIX; with
# DRAIN_TABLE (a catalog URI), of the rows of its Iceberg table through the current snapshot
# (scripts/bench/iceberg_table.py), against DRAIN_EXPECTED's records.
delivered() {
  if [ -n "${DRAIN_TABLE:-}" ]; then
    delivery[$1]=$(scripts/py.sh --iceberg python scripts/bench/iceberg_table.py check "$DRAIN_TABLE" "${DRAIN_EXPECTED:-$work/expected.json}" "$3")
  else
    delivery[$1]=$(scripts/py.sh python scripts/bench/delivery.py check "$work/expected.json" "$2" "$3")
  fi
}
# field RUN NAME: one number of RUN's delivery check.
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "${delivery[$1]}" "$2"; }

# progress RUN URL START READ_METRIC READ_TARGET STORED_METRIC STORED_TARGET: one look at
# a run's metrics, noting when it had read everything and when it had stored everything.
progress() {
  local run=$1 url=$2 start=$3
  if [ -z "${read_s[$run]:-}" ] && [ "$(metric_sum "$url" "$4" || echo 0)" -ge "$5" ]; then
    read_s[$run]=$(calc "$(now) - $start")
  fi
  if [ -n "${read_s[$run]:-}" ] && [ "$(metric_sum "$url" "$6" || echo 0)" -ge "$7" ]; then
    stored_s[$run]=$(calc "$(now) - $start")
  fi
}
# finish RUN PID PREFIX KIND: the run's CPU and peak RSS, its process stopped, and the
# delivery check of what it stored under PREFIX.
finish() {
  cpu_s[$1]=$(cpu_seconds "$2")
  rss_mib[$1]=$(peak_rss_mib "$2")
  kill -TERM "$2"
  wait "$2" || true
  delivered "$1" "$3" "$4"
}

# drain_ours RUN NAME...: the consumers NAME... drain the backlog at the same time, each
# under a prefix and in a consumer group of its own (never a running system's group). "Read" is when its consumer_position reached the end of the
# backlog, "stored" when its committed offsets did: the gap is mostly the last batch's
# BATCH_MAX_AGE.
drain_ours() {
  local run=$1 name port dedup_window=${DRAIN_DEDUP_WINDOW:-24h} topic=${DRAIN_TOPIC:-$backlog_topic} open
  local formats=${DRAIN_FORMATS:-json} stored_metric=${DRAIN_STORED_METRIC:-consumer_committed_offset}
  local stored_target=${DRAIN_STORED_TARGET:-$backlog_events}
  shift
  declare -A pid
  local start
  start=$(now)
  for name in "$@"; do
    port=${consumer_port[$name]}
    STORE_EVENTS_TOPIC=$topic S3_PREFIX=b$run_id-$run-$name HTTP_ADDR=127.0.0.1:$port DEDUP_WINDOW=$dedup_window OUTPUT_FORMATS=$formats \
      ICEBERG_CATALOG_URI=sqlite:$work/iceberg-$run.db CONSUMER_GROUP_ID=bench-$run_id-$run-$name LOG_FORMAT=json RUST_LOG=warn \
      "$bin/$name" >"$work/$name-$run.log" 2>&1 &
    pid[$name]=$!
    pids+=("${pid[$name]}")
  done
  local remaining=$# deadline=$((SECONDS + 1800))
  while [ $remaining -gt 0 ]; do
    [ $SECONDS -lt $deadline ] || { log "the consumers did not drain the backlog in 30 minutes"; exit 1; }
    remaining=0
    for name in "$@"; do
      [ -n "${stored_s[$run:$name]:-}" ] && continue
      # The most broker connections the process had open (kafka_broker_connections).
      open=$(metric_sum "http://127.0.0.1:${consumer_port[$name]}" kafka_broker_connections || echo 0)
      [ "${open:-0}" -le "${connections[$run:$name]:-0}" ] || connections[$run:$name]=$open
      progress "$run:$name" "http://127.0.0.1:${consumer_port[$name]}" "$start" \
        consumer_position "$backlog_events" "$stored_metric" "$stored_target"
      [ -n "${stored_s[$run:$name]:-}" ] || remaining=$((remaining + 1))
    done
    sleep 0.2
  done
  for name in "$@"; do
    finish "$run:$name" "${pid[$name]}" "b$run_id-$run-$name" "${keeps[$name]}"
  done
}
declare -A consumer_port=([sales-consumer]=18081 [inventory-consumer]=18082)
log "sales-consumer alone"
drain_ours alone sales-consumer
log "sales-consumer alone, resend removal off (DEDUP_WINDOW=0)"
DRAIN_DEDUP_WINDOW=0 drain_ours no-dedup sales-consumer
# Parquet instead of gzip JSON (issue #23): the same backlog, the same checks (delivery.py
# reads the rows with DuckDB); bytes per event and CPU against the JSON run above.
log "sales-consumer alone, Parquet (OUTPUT_FORMATS=parquet)"
DRAIN_FORMATS=parquet drain_ours parquet sales-consumer
# The Iceberg table (issue #23): "stored" is when every sale event was a row of a committed
# snapshot (consumer_iceberg_rows_total reached the JSON run's count); delivery.py reads the
# table's data files, and the consumer's audit checks them against the table's manifests.
log "sales-consumer alone, Iceberg table (OUTPUT_FORMATS=iceberg)"
DRAIN_FORMATS=iceberg DRAIN_STORED_METRIC=consumer_iceberg_rows_total DRAIN_STORED_TARGET=$(field alone:sales-consumer lines) \
  drain_ours iceberg sales-consumer
iceberg_audit=$(STORE_EVENTS_TOPIC=$backlog_topic S3_PREFIX=b$run_id-iceberg-sales-consumer OUTPUT_FORMATS=iceberg \
  ICEBERG_CATALOG_URI=sqlite:$work/iceberg-iceberg.db LOG_FORMAT=json RUST_LOG=warn "$bin/sales-consumer" audit | tail -n 1)
iceberg_snapshots=$(scripts/py.sh --iceberg python - "$work/iceberg-iceberg.db" <<'PY'
import os, sys
from pyiceberg.catalog.sql import SqlCatalog
props = {"s3.endpoint": os.environ["S3_ENDPOINT"], "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
         "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"], "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
         "s3.path-style-access": "true"}
table = SqlCatalog("store_events", uri=f"sqlite:///{sys.argv[1]}", **props).load_table(("store_events", "sale_events"))
files = table.inspect.files()
print(len(table.snapshots()), files.num_rows, sum(files.column("record_count").to_pylist()))
PY
)
log "inventory-consumer alone"
drain_ours alone inventory-consumer
log "both consumers together"
drain_ours together sales-consumer inventory-consumer
# The same backlog on 64 partitions (issue #27): the partitions share one connection per
# broker and one fetch request, so memory, CPU and connections should not grow with them.
wide_topic=bench-backlog64-$run_id
create_topic "$wide_topic" 64
log "Copying the backlog to a topic of 64 partitions"
kcat -C -b 127.0.0.1:9092 -t "$backlog_topic" -o beginning -e -q -f '%s\n' |
  kcat -P -b 127.0.0.1:9092 -t "$wide_topic" -z lz4 -X linger.ms=5 -X batch.size=524288 -X queue.buffering.max.messages=1000000
log "sales-consumer alone, 64 partitions"
DRAIN_TOPIC=$wide_topic drain_ours p64 sales-consumer
audit=$(S3_PREFIX=b$run_id-together-sales-consumer STORE_EVENTS_TOPIC=$backlog_topic "$bin/sales-consumer" audit | tail -n +2 | awk '{print $NF}' | sort -u | tr '\n' ' ')

# Benthos v4.27.0 (MIT): kafka_franz -> aws_s3, batches of 10,000 events / 8 MB / 5 s,
# archived as lines and gzipped like ours; built once from Go modules.
benthos=$cache/bin/benthos-v4.27.0
if [ ! -x "$benthos" ]; then
  log "Building Benthos v4.27.0 from Go modules (once)"
  (cd scripts/bench/benthos && go build -trimpath -o "$benthos.tmp" . && mv "$benthos.tmp" "$benthos")
fi
# drain_benthos RUN KIND: Benthos keeping KIND (`all`: every record). "Read" is its
# input_received, "stored" its output_sent (counted after the S3 write returned).
drain_benthos() {
  local run=$1 kind=$2 want start pid deadline=$((SECONDS + 1800)) url=http://127.0.0.1:4195
  want=$(expected_of "$kind")
  ! curl -s -o /dev/null "$url" || { log "127.0.0.1:4195, Benthos's HTTP address, is taken by another process"; exit 1; }
  BENCH_TOPIC=$backlog_topic BENCH_GROUP=benthos-$run-$run_id BENCH_PREFIX=n$run_id-$run BENCH_KEEP=$kind \
    "$benthos" -c scripts/bench/benthos/config.yaml >"$work/$run.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  start=$(now)
  while [ -z "${stored_s[$run]:-}" ]; do
    [ $SECONDS -lt $deadline ] || { log "Benthos did not drain the backlog in 30 minutes"; exit 1; }
    kill -0 "$pid" 2>/dev/null || { log "Benthos stopped: $(tail -n 5 "$work/$run.log")"; exit 1; }
    progress "$run" "$url" "$start" input_received "$backlog_events" output_sent "$want"
    sleep 0.2
  done
  finish "$run" "$pid" "n$run_id-$run" "$kind"
}
log "Benthos keeping sale_event"
drain_benthos benthos-filter sale_event
log "Benthos passing every record through"
drain_benthos benthos-all all

# Apache Flink 2.2: KafkaSource (bounded at the offsets of its start) -> FileSink on s3://,
# committed by checkpoints every 5 s; a local mini cluster in one JVM (1 GiB heap), with
# the default parallelism (one per core). Built once with Maven.
flink_job=$cache/flink-job-$(cat scripts/bench/flink/pom.xml scripts/bench/flink/src/main/java/storeevents/bench/*.java | sha256sum | cut -c1-12)
if [ ! -f "$flink_job/.complete" ]; then
  log "Building the Flink 2.2 job with Maven (once)"
  rm -rf "$flink_job"
  cp -r scripts/bench/flink "$flink_job"
  (cd "$flink_job" && mvn -B -q -Dmaven.repo.local="$cache/m2" package dependency:copy-dependencies -DincludeScope=runtime >&2)
  touch "$flink_job/.complete"
fi
log "Flink keeping sale_event"
start=$(now)
/usr/bin/time -f '%U %S %M' -o "$work/flink.time" java -Xmx1g -cp "$flink_job/target/classes:$flink_job/target/dependency/*" \
  storeevents.bench.KafkaToS3 127.0.0.1:9092 "$backlog_topic" "s3://$S3_BUCKET/f$run_id-flink" 5000 sale_event \
  >"$work/flink.log" 2>&1 || { log "the Flink job failed: $(tail -n 20 "$work/flink.log")"; exit 1; }
stored_s[flink]=$(calc "$(now) - $start")
read -r flink_user flink_sys flink_rss_kib <"$work/flink.time"
cpu_s[flink]=$(calc "$flink_user + $flink_sys")
rss_mib[flink]=$(calc "$flink_rss_kib / 1024")
flink_net_s=$(awk '/^net_runtime_ms/ {printf "%.2f", $2 / 1000}' "$work/flink.log")
delivered flink "f$run_id-flink" sale_event

# Beside the reference (issue #23): Apache Iceberg's Kafka Connect sink (1.11.0, from Maven
# Central; scripts/bench/connect/) against the sales-consumer writing its Iceberg table, on a
# backlog of their own: the same number of events, none bad (the sink validates nothing: a bad
# event's missing store_id would be a null in a required column, and the task dies). Both
# commit every 5 s into a SQL catalog on SQLite (Iceberg's JDBC catalog for the sink), the
# table the same (the sink's is created with our table's schema, partitioning and
# properties); both counted by pyiceberg through the table's current snapshot.
# shellcheck source=scripts/bench/connect/connect.sh
source scripts/bench/connect/connect.sh
connect_fetch
ref_topic=bench-ref-$run_id
log "Filling the reference backlog: $backlog_events events, none bad"
fill_backlog "$ref_topic" 10 0 "$work/expected-ref.json"
ref_sales=$(expected_of sale_event "$work/expected-ref.json")
log "sales-consumer alone, Iceberg table, the reference backlog"
DRAIN_TOPIC=$ref_topic DRAIN_FORMATS=iceberg DRAIN_STORED_METRIC=consumer_iceberg_rows_total DRAIN_STORED_TARGET=$ref_sales \
  DRAIN_TABLE=sqlite:$work/iceberg-ref.db DRAIN_EXPECTED=$work/expected-ref.json drain_ours ref sales-consumer
log "Iceberg's Kafka Connect sink, the reference backlog"
connect_table drain "$work/iceberg-ref.db"
start=$(now)
connect_start drain "$ref_topic" 0
# Its CPU once the sink's tasks run (the coordinator elected), to tell the JVM's start apart.
(
  until grep -q "elected leader" "$work/connect-drain-0.log"; do
    kill -0 "$connect_pid" 2>/dev/null || exit 0
    sleep 0.1
  done
  cpu_seconds "$connect_pid" >"$work/connect-drain-started.cpu"
) &
connect_wait drain "$ref_sales" 1800 "$work/connect-drain-0.log" || exit 1
stored_s[connect]=$(calc "$(now) - $start")
cpu_s[connect]=$(cpu_seconds "$connect_pid")
rss_mib[connect]=$(peak_rss_mib "$connect_pid")
kill -TERM "$connect_pid"
wait "$connect_pid" || true
DRAIN_TABLE=sqlite:$work/connect-drain.db DRAIN_EXPECTED=$work/expected-ref.json delivered connect "" sale_event

# The original design as the baseline: the same backlog, one S3 PUT per event.
log "one-PUT-per-event baseline: $baseline_events records"
read -r baseline_records baseline_stored baseline_seconds < <(
  kcat -C -b 127.0.0.1:9092 -t "$backlog_topic" -o beginning -c "$baseline_events" -e -q -f '%s\n' |
    scripts/py.sh python scripts/bench/one_put_per_event.py "p$run_id"
)
baseline_rate=$(calc "$baseline_records / $baseline_seconds")

# 4. Produce-to-S3 latency at a steady rate: the generator makes 1,000 events/s (none bad:
# Iceberg's sink reads them too), the sales consumer stores them with the default
# BATCH_MAX_AGE (5 s); for every stored event, the time from its ts to the moment its object
# could first be listed in S3 (polled every 100 ms).
latency_topic=bench-latency-$run_id
create_topic "$latency_topic"
# Beside it, on the same events, the consumer writing the Iceberg table and Iceberg's Kafka
# Connect sink, both committing every 5 s: produce-to-visible in a snapshot, for each row the
# commit time of the snapshot that added its file minus its ts (scripts/bench/iceberg_table.py).
# The sink first, until its coordinator runs: a worker's start is not what is measured.
connect_table latency "$work/iceberg-ref.db"
connect_start latency "$latency_topic" 0
latency_connect=$connect_pid
deadline=$((SECONDS + 120))
until grep -q "elected leader" "$work/connect-latency-0.log"; do
  [ $SECONDS -lt $deadline ] || { log "the Kafka Connect worker did not start its sink: $(tail -n 20 "$work/connect-latency-0.log")"; exit 1; }
  sleep 0.5
done
scripts/py.sh python scripts/bench/visibility.py "l$run_id" "$((latency_seconds + 10))" >"$work/visibility.txt" &
visibility=$!
pids+=("$visibility")
STORE_EVENTS_TOPIC=$latency_topic HTTP_ADDR=127.0.0.1:18083 GENERATOR_RATE=1000 GENERATOR_BAD_SHARE=0 LOG_FORMAT=json RUST_LOG=warn \
  "$bin/producer" >"$work/latency-producer.log" 2>&1 &
latency_producer=$!
pids+=("$latency_producer")
STORE_EVENTS_TOPIC=$latency_topic S3_PREFIX=l$run_id HTTP_ADDR=127.0.0.1:18084 CONSUMER_GROUP_ID=bench-$run_id-latency \
  LOG_FORMAT=json RUST_LOG=warn \
  "$bin/sales-consumer" >"$work/latency-consumer.log" 2>&1 &
latency_consumer=$!
pids+=("$latency_consumer")
STORE_EVENTS_TOPIC=$latency_topic S3_PREFIX=li$run_id HTTP_ADDR=127.0.0.1:18085 CONSUMER_GROUP_ID=bench-$run_id-latency-iceberg \
  OUTPUT_FORMATS=iceberg ICEBERG_CATALOG_URI=sqlite:$work/iceberg-latency.db LOG_FORMAT=json RUST_LOG=warn \
  "$bin/sales-consumer" >"$work/latency-iceberg-consumer.log" 2>&1 &
latency_iceberg=$!
pids+=("$latency_iceberg")
log "produce-to-S3 latency: ${latency_seconds}s at 1,000 events/s"
sleep "$latency_seconds"
kill -TERM "$latency_producer"
wait "$latency_producer" || true
sleep 7
kill -TERM "$latency_consumer" "$latency_iceberg"
wait "$latency_consumer" || true
wait "$latency_iceberg" || true
wait "$visibility"
# The sink until it has committed every sale event (a minute at most).
latency_sales=$(kcat -C -b 127.0.0.1:9092 -t "$latency_topic" -o beginning -e -q -f '%s\n' | grep -c '"sale_event"' || true)
connect_wait latency "$latency_sales" 60 "$work/connect-latency-0.log" || log "the sink had not committed every sale event of the latency run"
kill -TERM "$latency_connect"
wait "$latency_connect" || true
read -r latency_events latency_p50 latency_p99 <"$work/visibility.txt"
read -r iceberg_latency_events iceberg_latency_p50 iceberg_latency_p99 iceberg_latency_snapshots < <(
  scripts/py.sh --iceberg python scripts/bench/iceberg_table.py latency "sqlite:$work/iceberg-latency.db"
)
read -r connect_latency_events connect_latency_p50 connect_latency_p99 connect_latency_snapshots < <(
  scripts/py.sh --iceberg python scripts/bench/iceberg_table.py latency "sqlite:$work/connect-latency.db"
)

# 5. kill -9 in the middle (issue #23): two members each, two sales-consumers in one group and
# a Kafka Connect cluster of two workers running the sink (a task on each), write a
# table while the generator produces 2,000 events/s (none bad) for BENCH_FAULT_SECONDS; member 1
# is killed with -9 a third of the way in (counted from the table's first commit) and started
# again at once, member 2 at two thirds.
# Session timeouts 10 s for both. Once the producer has stopped and the table holds every
# sale event (or 5 minutes passed) and a commit interval more, pyiceberg counts the rows
# missing and duplicated through the table's current snapshot.
fault_seconds=${BENCH_FAULT_SECONDS:-45}
declare -A fault_caught_up
# fault_member_ours|connect MEMBER: member MEMBER (1 or 2) started, its pid in $member_pid.
fault_member_ours() {
  STORE_EVENTS_TOPIC=$fault_topic S3_PREFIX=x$run_id-ours HTTP_ADDR=127.0.0.1:1808$((6 + $1)) CONSUMER_GROUP_ID=bench-$run_id-fault \
    OUTPUT_FORMATS=iceberg ICEBERG_CATALOG_URI=sqlite:$work/fault-ours.db CONSUMER_SESSION_TIMEOUT=10s LOG_FORMAT=json RUST_LOG=warn \
    "$bin/sales-consumer" >>"$work/fault-ours-$1.log" 2>&1 &
  member_pid=$!
  pids+=("$member_pid")
}
fault_member_connect() {
  connect_start fault "$fault_topic" "$1"
  member_pid=$connect_pid
}
# fault_run ours|connect
fault_run() {
  local who=$1 third=$((fault_seconds / 3)) producer sales start m catalog
  local -a member
  fault_topic=bench-fault-$run_id-$who
  create_topic "$fault_topic"
  catalog=sqlite:$work/fault-ours.db
  if [ "$who" = connect ]; then
    connect_table fault "$work/iceberg-ref.db"
    catalog=sqlite:$work/connect-fault.db
  fi
  for m in 1 2; do
    "fault_member_$who" "$m"
    member[m]=$member_pid
  done
  STORE_EVENTS_TOPIC=$fault_topic HTTP_ADDR=127.0.0.1:18083 GENERATOR_RATE=2000 GENERATOR_BAD_SHARE=0 LOG_FORMAT=json RUST_LOG=warn \
    "$bin/producer" >"$work/fault-producer-$who.log" 2>&1 &
  producer=$!
  pids+=("$producer")
  # The kills fall among commits, not before the first: a sink whose first coordinator dies
  # before it ever committed loses what its workers had handed over (its successor reads the
  # control topic from the end), a start-up case apart from the one measured here.
  scripts/py.sh --iceberg python scripts/bench/iceberg_table.py wait "$catalog" 1 120 ||
    { log "$who: no commit within 2 minutes"; exit 1; }
  for m in 1 2; do
    sleep "$third"
    log "kill -9 $who member $m"
    kill -KILL "${member[m]}"
    wait "${member[m]}" 2>/dev/null || true
    "fault_member_$who" "$m"
    member[m]=$member_pid
  done
  sleep "$third"
  kill -TERM "$producer"
  wait "$producer" || true
  expect "$fault_topic" "$work/expected-fault-$who.json"
  sales=$(expected_of sale_event "$work/expected-fault-$who.json")
  start=$(now)
  if scripts/py.sh --iceberg python scripts/bench/iceberg_table.py wait "$catalog" "$sales" 300; then
    fault_caught_up[$who]=$(printf '%.1f' "$(calc "$(now) - $start")")
  else
    fault_caught_up[$who]=never
  fi
  sleep 10
  kill -TERM "${member[1]}" "${member[2]}"
  wait "${member[1]}" || true
  wait "${member[2]}" || true
  DRAIN_TABLE=$catalog DRAIN_EXPECTED=$work/expected-fault-$who.json delivered "fault:$who" "" sale_event
}
log "kill -9 in the middle: the sales-consumer's Iceberg table (${fault_seconds}s at 2,000 events/s)"
fault_run ours
log "kill -9 in the middle: Iceberg's Kafka Connect sink (${fault_seconds}s at 2,000 events/s)"
fault_run connect

# Results.
r() { printf '%.0f' "$1"; }
ratio() { printf '%.2f' "$(calc "$1 / $2")"; }
stored_rate() { calc "$backlog_events / ${stored_s[$1]}"; }
cpu_per_m() { calc "${cpu_s[$1]} * 1000000 / $backlog_events"; }
# drain_row RUN LABEL: one row of the drain table.
drain_row() {
  local run=$1 read_rate="—" read_secs="—" dead lines
  if [ -n "${read_s[$run]:-}" ]; then
    read_rate=$(r "$(calc "$backlog_events / ${read_s[$run]}")")
    read_secs=$(printf '%.1f' "${read_s[$run]}")
  fi
  lines=$(field "$run" lines)
  dead=$(field "$run" dead_letters)
  [ "$dead" = 0 ] || lines="$lines (+ $dead)"
  printf '| %s | %s | %s | %s | %.1f | %s | %.2f | %.1f | %s | %s / %s | %s | %s |' "$2" "$(r "$(stored_rate "$run")")" \
    "$(ratio "$(stored_rate "$run")" "$ceiling_consume")" "$read_rate" "${stored_s[$run]}" "$read_secs" "$(cpu_per_m "$run")" \
    "${rss_mib[$run]}" "$(field "$run" objects)" "$lines" "$(field "$run" expected)" "$(field "$run" missing)" "$(field "$run" duplicates)"
}
# per_m_rows RUN FIELD: FIELD of RUN's delivery check per million rows it stored.
per_m_rows() { calc "$(field "$1" "$2") * 1000000 / $(field "$1" lines)"; }
# The sink's CPU per million events once its tasks ran (its JVM's start left out).
connect_cpu_per_m_started=$(calc "(${cpu_s[connect]} - $(cat "$work/connect-drain-started.cpu")) * 1000000 / $backlog_events")
# The table beside Iceberg's Kafka Connect sink (issue #23, item 7).
reference_table() {
  local ours=ref:sales-consumer
  cat <<TABLE
#### Beside Apache Iceberg's Kafka Connect sink

The same backlog of $backlog_events events, none bad ($(field connect expected) sale events), into a table each
(\`store_events.sale_events\`, the sink's created with our table's schema, \`day(ts)\` partitioning and properties)
through a SQL catalog on SQLite (Iceberg's JDBC catalog for the sink), a commit every 5 s for both; the sink is
Apache Iceberg 1.11.0's (Maven Central) in a Kafka Connect 4.3.1 distributed worker, 2 tasks, 1 GiB heap
(\`scripts/bench/connect/\`). *Queryable*: until the table's current snapshot held every sale event. Rows counted
by pyiceberg through the current snapshot (\`scripts/bench/iceberg_table.py\`). The kill -9 run: two members
each (two consumers in a group; a Connect cluster of two workers), ${fault_seconds} s of 2,000 events/s, member 1 killed with -9 at a third and started again, member 2 at two
thirds, session timeouts 10 s.

| measure | sales-consumer, Iceberg table | Iceberg's Kafka Connect sink | sales-consumer ÷ sink |
| --- | ---: | ---: | ---: |
| events/s until queryable | $(r "$(stored_rate $ours)") | $(r "$(stored_rate connect)") | $(ratio "$(stored_rate $ours)" "$(stored_rate connect)") |
| CPU-s per million events | $(printf '%.2f' "$(cpu_per_m $ours)") | $(printf '%.2f' "$(cpu_per_m connect)"), $(printf '%.2f' "$connect_cpu_per_m_started") after its start | $(ratio "$(cpu_per_m $ours)" "$(cpu_per_m connect)"); $(ratio "$(cpu_per_m $ours)" "$connect_cpu_per_m_started") after its start |
| peak RSS (MiB) | ${rss_mib[$ours]} | ${rss_mib[connect]} | $(ratio "${rss_mib[$ours]}" "${rss_mib[connect]}") |
| data files per million rows | $(r "$(per_m_rows $ours objects)") | $(r "$(per_m_rows connect objects)") | |
| MB of data files per million rows | $(printf '%.1f' "$(calc "$(per_m_rows $ours data_bytes) / 1000000")") | $(printf '%.1f' "$(calc "$(per_m_rows connect data_bytes) / 1000000")") | |
| rows / expected, missing, duplicated | $(field $ours lines) / $(field $ours expected), $(field $ours missing), $(field $ours duplicates) | $(field connect lines) / $(field connect expected), $(field connect missing), $(field connect duplicates) | |
| produce-to-visible p50 / p99 at 1,000 events/s (s) | $iceberg_latency_p50 / $iceberg_latency_p99 | $connect_latency_p50 / $connect_latency_p99 | |
| kill -9 run: rows / expected, missing, duplicated | $(field fault:ours lines) / $(field fault:ours expected), $(field fault:ours missing), $(field fault:ours duplicates) | $(field fault:connect lines) / $(field fault:connect expected), $(field fault:connect missing), $(field fault:connect duplicates) | |
| kill -9 run: every row in the table, after the producer stopped (s) | ${fault_caught_up[ours]} | ${fault_caught_up[connect]} | |
TABLE
}
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
cat >"$out/latest.md" <<EOF
### Benchmark results ($(date -u +%Y-%m-%dT%H:%MZ))

Machine: $(nproc) cores ($cpu_model), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); broker, S3 server,
load generators and services all on it. Apache Kafka 4.3.1 (KRaft, one node), SeaweedFS ($seaweedfs) as the S3 server.
Records: the generator's events, 10% bad, $record_bytes bytes on average; acks=all, lz4.
Producer events: $produce_events; consumer backlog: $backlog_events (bare JSON, no key, no headers).

| measure | events/s | ratio | other |
| --- | ---: | ---: | --- |
| kafka-producer-perf-test (ceiling) | $(r "$ceiling_produce") | 1.00 | |
| producer, generator path (POST /v1/simulate) | $(r "$generator_rate") | $(ratio "$generator_rate" "$ceiling_produce") × ceiling | |
| producer, HTTP path (wrk, batches of 100, 32 connections) | $(r "$http_rate") | $(ratio "$http_rate" "$ceiling_produce") × ceiling | p50 $http_p50, p99 $http_p99 per request; non-2xx: ${http_non2xx:-0}; producer CPU $(printf '%.2f' "$(calc "$http_cpu * 1000000 / ($http_rate * $http_seconds)")") s per million events; wrk's own CPU $wrk_cpu s over the ${http_seconds} s |
| producer, HTTP path at a fixed rate (vegeta, batches of 100) | $(r "$(calc "$half_rps * 100")") | | p50 ${half_p50} ms, p99 ${half_p99} ms per request of 100; success ratio $half_success |
| producer, HTTP path with API keys (PRODUCER_AUTH=api-keys, wrk as above) | $(r "$auth_rate") | $(ratio "$auth_rate" "$ceiling_produce") × ceiling | $(ratio "$auth_rate" "$http_rate") × without keys; CPU $(printf '%.2f' "$(calc "$auth_cpu * 1000000 / ($auth_rate * $http_seconds)")") s per million events against $(printf '%.2f' "$(calc "$http_cpu * 1000000 / ($http_rate * $http_seconds)")") without; non-2xx: ${auth_non2xx:-0} |
| a quiet store (20 requests/s of 100) while another floods (wrk, 32 connections, over its 1,000 events/s) | | | p99 $quiet_flood_p99 ms against $quiet_alone_p99 ms alone ($(ratio "$quiet_flood_p99" "$quiet_alone_p99") ×); success $quiet_flood_success (alone $quiet_alone_success); the flood: $(r "$flood_rps") requests/s, ${flood_non2xx:-0} answered 429 |
| producer process | | | CPU $producer_cpu s, peak RSS $producer_rss MiB; broker connections after the HTTP load: $producer_connections |
| kafka-consumer-perf-test (ceiling, fetch rate) | $(r "$ceiling_consume") | 1.00 | |
| baseline: the original consumer's design, one S3 PUT per event (Python, boto3) | $(r "$baseline_rate") | sales-consumer = $(ratio "$(stored_rate alone:sales-consumer)" "$baseline_rate") × baseline | $baseline_stored of $baseline_records records stored (the rest were not JSON: lost, as in the original) |
| produce-to-S3 latency, sales-consumer, BATCH_MAX_AGE=5s, 1,000 events/s | | | p50 ${latency_p50} s, p99 ${latency_p99} s over $latency_events stored events |
| produce-to-visible latency in the Iceberg table, sales-consumer, ICEBERG_COMMIT_INTERVAL=5s, the same events | | | p50 ${iceberg_latency_p50} s, p99 ${iceberg_latency_p99} s over $iceberg_latency_events events in $iceberg_latency_snapshots snapshots |
| produce-to-visible latency in the Iceberg table, Iceberg's Kafka Connect sink 1.11.0, commit interval 5 s, the same events | | | p50 ${connect_latency_p50} s, p99 ${connect_latency_p99} s over $connect_latency_events events in $connect_latency_snapshots snapshots |


#### Draining the backlog: the consumers, alone and together, and their peers

Each run reads the whole backlog ($backlog_events records) from the first offset and stores what it keeps in S3
under a prefix of its own, on the same topic and S3 server, one run after another. *Stored* is when every kept
record was in S3 (the consumers' committed offsets, Benthos's \`output_sent\`, the Flink job's end); it includes
each tool's last partial batch waiting out its age (BATCH_MAX_AGE, Benthos's \`period\`, Flink's checkpoint
interval, 5 s each). *Read* is when every record had been read (the consumers' \`consumer_position\`,
Benthos's \`input_received\`). CPU is the process's user + system time over the run. The delivery check reads S3
with boto3 (\`scripts/bench/delivery.py\`): lines stored, dead letters, records of the kept type missing from
both, copies beyond those on the topic.

| run | events/s, stored | × perf-test | events/s, read | stored (s) | read (s) | CPU-s per M events | peak RSS (MiB) | objects | lines (+ dead letters) / expected | missing | duplicates |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(drain_row alone:sales-consumer "sales-consumer alone")
$(drain_row no-dedup:sales-consumer "sales-consumer alone, resend removal off (DEDUP_WINDOW=0)")
$(drain_row p64:sales-consumer "sales-consumer alone, the backlog on 64 partitions")
$(drain_row parquet:sales-consumer "sales-consumer alone, Parquet files (OUTPUT_FORMATS=parquet)")
$(drain_row iceberg:sales-consumer "sales-consumer alone, Iceberg table (OUTPUT_FORMATS=iceberg; stored = rows committed)")
$(drain_row alone:inventory-consumer "inventory-consumer alone")
$(drain_row together:sales-consumer "sales-consumer, both running")
$(drain_row together:inventory-consumer "inventory-consumer, both running")
$(drain_row benthos-filter "Benthos v4.27.0 keeping sale_event (parses each record)")
$(drain_row benthos-all "Benthos v4.27.0 passing every record")
$(drain_row flink "Flink 2.2 keeping sale_event (mini cluster, 1 GiB heap; job alone ${flink_net_s} s)")

sales-consumer alone against Benthos keeping sale_event: $(ratio "$(stored_rate alone:sales-consumer)" "$(stored_rate benthos-filter)") × its events/s,
$(ratio "$(cpu_per_m alone:sales-consumer)" "$(cpu_per_m benthos-filter)") × its CPU per event, $(ratio "${rss_mib[alone:sales-consumer]}" "${rss_mib[benthos-filter]}") × its peak RSS; against Flink:
$(ratio "$(stored_rate alone:sales-consumer)" "$(stored_rate flink)") × its events/s, $(ratio "$(cpu_per_m alone:sales-consumer)" "$(cpu_per_m flink)") × its CPU per event, $(ratio "${rss_mib[alone:sales-consumer]}" "${rss_mib[flink]}") × its peak RSS.
Removing resends (DEDUP_WINDOW=24h, the default, against 0): $(ratio "$(cpu_per_m alone:sales-consumer)" "$(cpu_per_m no-dedup:sales-consumer)") × the CPU per event,
$(ratio "$(stored_rate alone:sales-consumer)" "$(stored_rate no-dedup:sales-consumer)") × the events/s, $(ratio "${rss_mib[alone:sales-consumer]}" "${rss_mib[no-dedup:sales-consumer]}") × the peak RSS of the sales-consumer alone.
Parquet against gzip JSON (the sales-consumer alone): $(printf '%.1f' "$(calc "$(field parquet:sales-consumer data_bytes) / $(field parquet:sales-consumer lines)")") against $(printf '%.1f' "$(calc "$(field alone:sales-consumer data_bytes) / $(field alone:sales-consumer lines)")") bytes stored per event
($(ratio "$(field parquet:sales-consumer data_bytes)" "$(field alone:sales-consumer data_bytes)") ×), $(ratio "$(cpu_per_m parquet:sales-consumer)" "$(cpu_per_m alone:sales-consumer)") × the CPU per event, $(ratio "$(stored_rate parquet:sales-consumer)" "$(stored_rate alone:sales-consumer)") × the events/s, $(ratio "${rss_mib[parquet:sales-consumer]}" "${rss_mib[alone:sales-consumer]}") × the peak RSS.
Iceberg against gzip JSON (the sales-consumer alone): $(printf '%.1f' "$(calc "$(field iceberg:sales-consumer data_bytes) / $(field iceberg:sales-consumer lines)")") bytes of data files per event,
$(ratio "$(cpu_per_m iceberg:sales-consumer)" "$(cpu_per_m alone:sales-consumer)") × the CPU per event, $(ratio "$(stored_rate iceberg:sales-consumer)" "$(stored_rate alone:sales-consumer)") × the events/s, $(ratio "${rss_mib[iceberg:sales-consumer]}" "${rss_mib[alone:sales-consumer]}") × the peak RSS;
the table after it (pyiceberg: snapshots, live data files, rows): $iceberg_snapshots; its audit: $iceberg_audit
64 partitions against 2 (the sales-consumer alone): $(ratio "${rss_mib[p64:sales-consumer]}" "${rss_mib[alone:sales-consumer]}") × the peak RSS,
$(ratio "$(cpu_per_m p64:sales-consumer)" "$(cpu_per_m alone:sales-consumer)") × the CPU per event, $(ratio "$(stored_rate p64:sales-consumer)" "$(stored_rate alone:sales-consumer)") × the events/s;
broker connections open at most (\`kafka_broker_connections\`, one broker): ${connections[alone:sales-consumer]:-?} on 2 partitions, ${connections[p64:sales-consumer]:-?} on 64
(from the process's start: a restart opens no more).
Flink writes plain JSON lines (its row format has no gzip), the others gzip. Audit of the sales consumer's
output after the run of both: $audit

$(reference_table)
EOF
cat >"$out/latest.json" <<EOF
{
  "run": $run_id, "cores": $(nproc), "record_bytes": $record_bytes,
  "produce_events": $produce_events, "backlog_events": $backlog_events,
  "ceiling_produce_eps": $(r "$ceiling_produce"), "ceiling_consume_eps": $(r "$ceiling_consume"),
  "producer_generator_eps": $(r "$generator_rate"), "producer_http_eps": $(r "$http_rate"),
  "producer_http_p50": "$http_p50", "producer_http_p99": "$http_p99",
  "producer_http_half_rate_eps": $(r "$(calc "$half_rps * 100")"), "producer_http_half_rate_p50_ms": $half_p50,
  "producer_http_half_rate_p99_ms": $half_p99, "producer_http_half_rate_success": $half_success,
  "baseline_one_put_per_event_eps": $(r "$baseline_rate"), "baseline_records": $baseline_records,
  "producer_cpu_seconds": $producer_cpu, "producer_peak_rss_mib": $producer_rss,
  "producer_http_cpu_seconds": $http_cpu, "producer_http_auth_eps": $(r "$auth_rate"), "producer_http_auth_cpu_seconds": $auth_cpu,
  "quiet_store_p99_ms_alone": $quiet_alone_p99, "quiet_store_p99_ms_flooded": $quiet_flood_p99, "flood_rps": $flood_rps,
  "consumer_broker_connections_2_partitions": ${connections[alone:sales-consumer]:-null},
  "consumer_broker_connections_64_partitions": ${connections[p64:sales-consumer]:-null},
  "iceberg_latency_p50_seconds": $iceberg_latency_p50, "iceberg_latency_p99_seconds": $iceberg_latency_p99,
  "iceberg_latency_events": $iceberg_latency_events, "iceberg_table_snapshots_files_rows": "$iceberg_snapshots",
  "connect_latency_p50_seconds": $connect_latency_p50, "connect_latency_p99_seconds": $connect_latency_p99,
  "connect_latency_events": $connect_latency_events, "fault_seconds": $fault_seconds,
  "connect_cpu_per_m_after_start": $connect_cpu_per_m_started,
  "fault": {"ours": {"caught_up_seconds": "${fault_caught_up[ours]}", "delivery": ${delivery[fault:ours]}},
            "connect": {"caught_up_seconds": "${fault_caught_up[connect]}", "delivery": ${delivery[fault:connect]}}},
  "drain": {$(for run in alone:sales-consumer no-dedup:sales-consumer p64:sales-consumer parquet:sales-consumer iceberg:sales-consumer alone:inventory-consumer together:sales-consumer together:inventory-consumer benthos-filter benthos-all flink ref:sales-consumer connect; do
    printf '\n    "%s": {"stored_seconds": %s, "read_seconds": %s, "cpu_seconds": %s, "peak_rss_mib": %s, "delivery": %s},' \
      "$run" "${stored_s[$run]}" "${read_s[$run]:-null}" "${cpu_s[$run]}" "${rss_mib[$run]}" "${delivery[$run]}"
  done | sed '$ s/,$//')
  },
  "produce_to_s3_p50_seconds": $latency_p50, "produce_to_s3_p99_seconds": $latency_p99, "latency_events": $latency_events
}
EOF
cat "$out/latest.md"
# Every part must have produced a number (the smoke run in CI checks only this).
for value in "$ceiling_produce" "$ceiling_consume" "$generator_rate" "$http_rate" "$producer_rss" "$latency_p99" \
  "$latency_events" "$iceberg_latency_p99" "$iceberg_latency_events" "$connect_latency_p99" "$connect_latency_events" "$half_p99" "$auth_rate" "$quiet_alone_p99" "$quiet_flood_p99" "$baseline_rate" "${stored_s[@]}" "${cpu_s[@]}" "${rss_mib[@]}"; do
  [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN {exit !($value > 0)}" || { log "a measure is missing: '$value'"; exit 1; }
done
[ ${#stored_s[@]} -eq 13 ] || { log "a drain run is missing: ${!stored_s[*]}"; exit 1; }
# Every tool stored every record it keeps, and nothing twice.
# (Iceberg's Kafka Connect sink is the reference: its counts are reported, not judged.)
for run in "${!delivery[@]}"; do
  [[ $run == connect || $run == fault:connect ]] && continue
  [ "$(field "$run" missing)" = 0 ] && [ "$(field "$run" duplicates)" = 0 ] ||
    { log "$run did not deliver exactly once: ${delivery[$run]}"; exit 1; }
done
[ "$audit" = "ok " ] || { log "the audit after the run is not clean: $audit"; exit 1; }
[[ $iceberg_audit == *"; ok" ]] || { log "the Iceberg drain's audit is not clean: $iceberg_audit"; exit 1; }
log "benchmark complete: $out/latest.md"
