#!/usr/bin/env bash
# scripts/bench/sockets.sh TOPIC RECORDS [BINARY]: the sockets a consumer opens (issue #27).
#
# A sales-consumer (BINARY, default target/release/sales-consumer) drains TOPIC, which holds
# RECORDS records, from the local stack (`scripts/stack.sh up`) under a consumer group and
# S3 prefix of its own; then a second process, same group and prefix, starts again (a
# restart). For each: the most TCP connections it had to the broker (127.0.0.1:9092, from
# `ss`) and the most sockets it had open (/proc/PID/fd: the broker's, S3's, its HTTP
# listener's), sampled every 100 ms until its committed offsets reach RECORDS (2 s at least).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ $# -ge 2 ] || { echo "usage: $0 TOPIC RECORDS [BINARY]" >&2; exit 2; }
topic=$1 records=$2 binary=${3:-target/release/sales-consumer}
set -a && . scripts/local.env && set +a
id=sockets-$(date +%s)-$$ port=18098
sample() {
  local name=$1 pid kafka=0 all=0 k a committed
  STORE_EVENTS_TOPIC=$topic S3_PREFIX=$id CONSUMER_GROUP_ID=$id HTTP_ADDR=127.0.0.1:$port RUST_LOG=warn \
    "$binary" >"/tmp/$id-$name.log" 2>&1 &
  pid=$!
  for i in $(seq 1 1200); do
    k=$(ss -tnp 2>/dev/null | grep "pid=$pid," | grep -c "127.0.0.1:9092" || true)
    a=$(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
    [ "$k" -le "$kafka" ] || kafka=$k
    [ "$a" -le "$all" ] || all=$a
    committed=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 ~ /^consumer_committed_offset/ {s += $2} END {print s + 0}')
    # At least 2 s: a restart has nothing to read, its connections still count.
    [ "$committed" -lt "$records" ] || [ "$i" -lt 20 ] || break
    sleep 0.1
  done
  kill "$pid" && wait "$pid" || true
  echo "$topic, $name: at most $kafka connections to the broker, $all sockets open"
}
sample start
sample restart
