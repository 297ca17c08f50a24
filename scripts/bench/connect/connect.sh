# shellcheck shell=bash disable=SC2154 # root, cache, work, run_id, pids: set by scripts/bench.sh
# Apache Iceberg's Kafka Connect sink for make bench (issue #23, item 7), sourced by
# scripts/bench.sh: the plugin fetched once from Maven Central (pom.xml), and Kafka Connect
# distributed workers running it (Apache Kafka's own classpath, the one scripts/stack.sh
# fetched for the broker), a Connect cluster of their own per run. Uses bench.sh's $cache,
# $work, $root, $run_id, $pids, log() and create_topic().

connect_dir=$root/scripts/bench/connect
# Kafka Connect is the broker's Kafka release (scripts/stack.sh's kafka_version).
connect_kafka_libs=$cache/kafka-$(awk -F= '$1 == "kafka_version" {print $2; exit}' "$root/scripts/stack.sh")/libs

# connect_fetch: the plugin folder (Connect's plugin.path) holding the sink and what it needs,
# copied from Maven Central once per pom.xml.
connect_fetch() {
  local plugins
  plugins=$cache/iceberg-connect-$(sha256sum "$connect_dir/pom.xml" | cut -c1-12)
  if [ ! -f "$plugins/.complete" ]; then
    log "Fetching Apache Iceberg's Kafka Connect sink and its dependencies from Maven Central (once)"
    rm -rf "$plugins"
    mvn -B -q -Dmaven.repo.local="$cache/m2" -f "$connect_dir/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$plugins/iceberg" >&2
    touch "$plugins/.complete"
  fi
  [ -d "$connect_kafka_libs" ] || { log "no Kafka classpath in $connect_kafka_libs: scripts/stack.sh up fetches it"; exit 1; }
  connect_plugins=$plugins
}

# connect_render FILE KEY=VALUE...: FILE with each @KEY@ replaced by VALUE.
connect_render() {
  local text pair
  text=$(<"$1")
  shift
  for pair in "$@"; do text=${text//@${pair%%=*}@/${pair#*=}}; done
  printf '%s\n' "$text"
}

# connect_table NAME FROM_DB: a catalog for the sink's run NAME ($work/connect-NAME.db) holding
# store_events.sale_events with the schema, partitioning and properties of our table in FROM_DB,
# its data under s3://$S3_BUCKET/k$run_id-NAME/; and the run's control topic.
connect_table() {
  rm -f "$work/connect-$1.db"
  scripts/py.sh --iceberg python scripts/bench/iceberg_table.py create "sqlite:$work/connect-$1.db" "sqlite:$2" \
    "s3://$S3_BUCKET/k$run_id-$1/sale_events"
  create_topic "bench-control-$run_id-$1" 1
}

# connect_start NAME TOPIC MEMBER: a distributed worker (REST on 127.0.0.1:1809MEMBER) of run
# NAME's Connect cluster; its pid in $connect_pid, its log in $work/connect-NAME-MEMBER.log
# (appended to: a restarted member keeps one log). The first to start in a run is given the
# sink (on TOPIC, into run NAME's table) through Connect's REST API; the cluster keeps it.
# Heap as the Flink peer's: 1 GiB.
declare -A connect_submitted
connect_start() {
  local name=$1 topic=$2 member=$3 port=$((18090 + $3)) deadline=$((SECONDS + 120))
  ! curl -s -o /dev/null "http://127.0.0.1:$port" || { log "127.0.0.1:$port, a Connect worker's address, is taken by another process"; exit 1; }
  connect_render "$connect_dir/worker.properties" PORT="$port" PLUGINS="$connect_plugins" GROUP="bench-connect-$run_id-$name" \
    >"$work/connect-$name-$member-worker.properties"
  java -Xms256m -Xmx1g -Dlog4j2.configurationFile="$connect_dir/log4j2.properties" -cp "$connect_kafka_libs/*" \
    org.apache.kafka.connect.cli.ConnectDistributed "$work/connect-$name-$member-worker.properties" \
    >>"$work/connect-$name-$member.log" 2>&1 &
  connect_pid=$!
  pids+=("$connect_pid")
  [ -z "${connect_submitted[$name]:-}" ] || return 0
  until curl -sf -o /dev/null "http://127.0.0.1:$port/connectors"; do
    kill -0 "$connect_pid" 2>/dev/null && [ $SECONDS -lt $deadline ] ||
      { log "the Connect worker did not start: $(tail -n 20 "$work/connect-$name-$member.log")"; exit 1; }
    sleep 0.5
  done
  connect_render "$connect_dir/sink.properties" NAME="bench-$run_id-$name" TOPIC="$topic" \
    CONTROL_TOPIC="bench-control-$run_id-$name" CATALOG="$work/connect-$name.db" WAREHOUSE="s3://$S3_BUCKET/k$run_id-$name" \
    S3_ENDPOINT="$S3_ENDPOINT" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    AWS_REGION="${AWS_REGION:-us-east-1}" |
    python3 -c 'import json, sys; print(json.dumps(dict(l.split("=", 1) for l in sys.stdin.read().splitlines() if l and not l.startswith("#"))))' \
      >"$work/connect-$name-sink.json"
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/json' --data-binary "@$work/connect-$name-sink.json" \
    "http://127.0.0.1:$port/connectors/bench-$run_id-$name/config" ||
    { log "Connect refused the sink's configuration: $(curl -s -X PUT -H 'Content-Type: application/json' \
      --data-binary "@$work/connect-$name-sink.json" "http://127.0.0.1:$port/connectors/bench-$run_id-$name/config")"; exit 1; }
  connect_submitted[$name]=1
}

# connect_wait NAME ROWS TIMEOUT_S LOG...: until run NAME's table holds ROWS rows; fails early,
# with the lines that say why, when a worker's log shows its task died.
connect_wait() {
  local name=$1 rows=$2 timeout=$3
  shift 3
  scripts/py.sh --iceberg python scripts/bench/iceberg_table.py wait "sqlite:$work/connect-$name.db" "$rows" "$timeout" "$@"
}
