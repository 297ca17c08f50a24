#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka (KRaft, one node) on 127.0.0.1:9092 and an
# S3 server on 127.0.0.1:9000 (SeaweedFS: master, volume server, filer and S3 gateway in one
# process), installed from the package registries on first use and cached between runs.
# Every command is idempotent.
#
# Kafka also listens the ways Amazon MSK does, for the security tests: SSL with client
# certificates on 9094, SASL_SSL with SCRAM-SHA-512 on 9096, and SASL_PLAINTEXT with
# OAUTHBEARER (Kafka's unsecured JWT validator) on 9097. The CA, the certificates and the
# SCRAM user are made here; they live in .local/kafka/tls and are for loopback tests only.
# A plain listener on 9095 advertises 9099, where the fault tests put a TCP proxy.
#
#   scripts/stack.sh up              install what is missing, start Kafka and S3, wait
#   scripts/stack.sh down            stop both (data is kept)
#   scripts/stack.sh start kafka|s3  start one part (tests use these to inject faults)
#   scripts/stack.sh stop kafka|s3   stop one part
#   scripts/stack.sh start kafka-3.9 a second, plain single-node broker, Apache Kafka 3.9, on
#                                    127.0.0.1:9192 (most MSK clusters run 3.x; the consumer
#                                    group tests run against it too); stop kafka-3.9 stops it
#   scripts/stack.sh cluster up      a three-node KRaft cluster of Apache Kafka (each node broker
#                                    and controller) beside the single node, for the fault and
#                                    authorization tests: replication factor 3,
#                                    min.insync.replicas=2, StandardAuthorizer with ACLs
#   scripts/stack.sh cluster stop|kill|start N   SIGTERM, kill -9 or start node N (1-3)
#   scripts/stack.sh cluster down|status|reset   stop all nodes, say which run, delete their data
#   scripts/stack.sh cluster elect   a preferred-leader election on every partition
#   scripts/stack.sh cluster acl ARGS...  Kafka's kafka-acls.sh against the cluster, as super user
#   scripts/stack.sh status          say what runs
#   scripts/stack.sh reset           stop both and delete their data
#   scripts/stack.sh damage KEY      append bytes to a stored object behind the S3 API, keeping
#                                    its recorded checksum (tests of damaged objects)
#
# Data and logs live in .local/ (git-ignored); installed tools in $STORE_EVENTS_CACHE
# (default ~/.cache/store-events), so a fresh clone on the same machine reuses them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/local.env
source "$root/scripts/local.env"
# shellcheck source=scripts/lib/progress.sh
source "$root/scripts/lib/progress.sh"

cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
state=$root/.local
kafka_version=4.3.1
kafka_libs=$cache/kafka-$kafka_version/libs
# SeaweedFS is built from the Go module proxy at the version scripts/seaweedfs/go.mod pins.
seaweedfs_version=$(awk '$2 == "github.com/seaweedfs/seaweedfs" {print $3; exit}' "$root/scripts/seaweedfs/go.mod")
weed_bin=$cache/seaweedfs-$seaweedfs_version/weed
kafka_port=9092
controller_port=9093
# The Kafka 3.x broker beside it (PLAINTEXT only).
kafka3_version=3.9.1
kafka3_libs=$cache/kafka-$kafka3_version/libs
kafka3_port=9192
kafka3_controller_port=9193
ssl_port=9094
scram_port=9096
oauth_port=9097
# A plain listener that advertises 127.0.0.1:9099, where the fault tests' TCP proxy listens
# (shared/testkit/src/faults.rs): a client bootstrapped through the proxy stays behind it.
proxied_port=9095
proxy_port=9099
tls=$state/kafka/tls
s3_port=9000
# SeaweedFS's own parts, on loopback only; each also listens for gRPC on its port + 10000.
seaweed_master_port=9333
seaweed_volume_port=9340
seaweed_filer_port=8888

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for NAME SECONDS LOG COMMAND...: poll COMMAND until it succeeds, or fail with the log tail.
wait_for() {
  local name=$1 seconds=$2 logfile=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not become ready within ${seconds}s; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# fetch_kafka VERSION LIBS: Apache Kafka VERSION's runtime classpath from Maven Central.
fetch_kafka() {
  local version=$1 libs=$2
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is needed to fetch Apache Kafka from Maven Central (apt-get install maven)"
  command -v java >/dev/null || die "a Java 17+ JDK is needed to run Apache Kafka and the tests' Java producer (apt-get install openjdk-17-jdk-headless)"
  log "Fetching Apache Kafka $version from Maven Central into $libs (once: about 55 MB, a minute or two)"
  rm -rf "$libs" && mkdir -p "$libs"
  local start=$SECONDS
  progress "fetching Kafka $version" "usually a minute or two" 'echo "$(ls "$libs" | wc -l) jars, $(du -sh "$libs" | cut -f1) so far"' -- \
    mvn -B -q -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$version" -DincludeScope=runtime -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
  log "Kafka $version fetched in $((SECONDS - start)) s"
}

install_kafka() { fetch_kafka "$kafka_version" "$kafka_libs"; }

kafka3_ready() { port_open $kafka3_port && grep -q "Kafka Server started" "$state/kafka-3/kafka.out"; }

start_kafka3() {
  if port_open $kafka3_port; then
    log "Kafka $kafka3_version already answers on 127.0.0.1:$kafka3_port"
    return 0
  fi
  fetch_kafka "$kafka3_version" "$kafka3_libs"
  mkdir -p "$state/kafka-3"
  cat >"$state/kafka-3/server.properties" <<PROPERTIES
# Written by scripts/stack.sh: Apache Kafka $kafka3_version, one combined node, KRaft, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka3_controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka3_port,CONTROLLER://127.0.0.1:$kafka3_controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka3_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state/kafka-3/data
num.partitions=2
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
  local java_opts=(-Xms128m "-Xmx${KAFKA_HEAP:-512m}" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties"
    -Dkafka.logs.dir="$state/kafka-3" -cp "$kafka3_libs/*")
  if [ ! -f "$state/kafka-3/data/meta.properties" ]; then
    log "Formatting Kafka $kafka3_version storage in $state/kafka-3/data"
    java "${java_opts[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$state/kafka-3/server.properties" >"$state/kafka-3/format.out" 2>&1 ||
      { tail -n 20 "$state/kafka-3/format.out" >&2; die "formatting Kafka $kafka3_version storage failed"; }
  fi
  log "Starting Apache Kafka $kafka3_version on 127.0.0.1:$kafka3_port"
  : >"$state/kafka-3/kafka.out"
  nohup java "${java_opts[@]}" kafka.Kafka "$state/kafka-3/server.properties" >"$state/kafka-3/kafka.out" 2>&1 &
  echo $! >"$state/kafka-3/pid"
  wait_for "Kafka $kafka3_version" 90 "$state/kafka-3/kafka.out" kafka3_ready
  log "Kafka $kafka3_version is ready"
}

install_s3() {
  [ -x "$weed_bin" ] && return 0
  command -v go >/dev/null || die "Go (1.26 or newer) is needed to build the S3 server SeaweedFS (https://go.dev/doc/install)"
  log "Building the S3 server SeaweedFS $seaweedfs_version from the Go module proxy (once: its modules, then about 1,000 packages; 10 minutes or so on two cores)"
  mkdir -p "$(dirname "$weed_bin")"
  local start=$SECONDS build_log=$cache/seaweedfs-build.log
  # `go build -v` names each package as it compiles it: the count shows the build moving.
  if ! progress "building SeaweedFS" "usually about 10 minutes on two cores" 'echo "$(grep -c "^go: downloading" "$build_log") modules downloaded, $(grep -vc "^go: " "$build_log") packages compiled"' -- \
    bash -c 'cd "$1" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -v -o "$2" github.com/seaweedfs/seaweedfs/weed' \
    _ "$root/scripts/seaweedfs" "$weed_bin.partial" 2>"$build_log"; then
    tail -n 30 "$build_log" >&2
    die "building SeaweedFS failed (whole log: $build_log)"
  fi
  mv "$weed_bin.partial" "$weed_bin"
  log "SeaweedFS built in $((SECONDS - start)) s"
}

# kcat, an independent Kafka client (Debian's package), reads back what the producer wrote.
install_kcat() {
  command -v kcat >/dev/null && return 0
  log "Installing kcat from Debian's packages"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >&2 && apt-get install -y -qq kcat >&2
  else
    sudo apt-get update -qq >&2 && sudo apt-get install -y -qq kcat >&2
  fi
}

# Runs one of Kafka's own Java entry points with the cached classpath.
kafka_java() {
  java -Xms128m -Xmx${KAFKA_HEAP:-768m} -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.yaml" \
    -Dkafka.logs.dir="$state/kafka/logs" -cp "$kafka_libs/*" "$@"
}

# make_tls: a CA, a broker certificate for 127.0.0.1 only (so "localhost" fails host-name
# verification, on purpose), a client certificate for mutual TLS, and a second CA that
# signed nothing here (the "wrong CA" of the tests). Made once; PEM files.
make_tls() {
  [ -f "$tls/.complete" ] && return 0
  command -v openssl >/dev/null || die "openssl is needed to make the test certificates (apt-get install openssl)"
  log "Making the test CA and certificates in $tls"
  rm -rf "$tls" && mkdir -p "$tls"
  (
    cd "$tls"
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=store-events test $ca" \
        -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
    done
    # name EXTENSIONS: a key and a certificate signed by ca.
    issue() {
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key.rsa" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$2" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      openssl pkcs8 -topk8 -nocrypt -in "$1.key.rsa" -out "$1.key"
      rm -f "$1.csr" "$1.ext" "$1.key.rsa"
    }
    issue broker "$(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth')"
    issue client "extendedKeyUsage=clientAuth"
    cat broker.key broker.crt >broker.pem
  )
  touch "$tls/.complete"
}

# internal_topics RF MIN_ISR: the broker settings of Kafka's own topics (group offsets,
# transactions, share groups), and no wait before a new group's first rebalance.
internal_topics() {
  cat <<EOF
offsets.topic.replication.factor=$1
transaction.state.log.replication.factor=$1
transaction.state.log.min.isr=$2
share.coordinator.state.topic.replication.factor=$1
share.coordinator.state.topic.min.isr=$2
group.initial.rebalance.delay.ms=0
EOF
}

write_kafka_config() {
  mkdir -p "$state/kafka/logs"
  make_tls
  cat >"$state/kafka/server.properties" <<EOF
# Written by scripts/stack.sh: one combined broker + controller node, KRaft, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port,SSL://127.0.0.1:$ssl_port,SASL_SSL://127.0.0.1:$scram_port,OAUTH://127.0.0.1:$oauth_port,PROXIED://127.0.0.1:$proxied_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SSL://127.0.0.1:$ssl_port,SASL_SSL://127.0.0.1:$scram_port,OAUTH://127.0.0.1:$oauth_port,PROXIED://127.0.0.1:$proxy_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,OAUTH:SASL_PLAINTEXT,PROXIED:PLAINTEXT
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
log.dirs=$state/kafka/data
num.partitions=2
auto.create.topics.enable=false
$(internal_topics 1 1)
EOF
}

kafka_ready() { port_open $kafka_port && grep -q "Kafka Server started" "$state/kafka/kafka.out"; }

start_kafka() {
  if port_open $kafka_port; then
    log "Kafka already answers on 127.0.0.1:$kafka_port"
    return 0
  fi
  install_kafka
  write_kafka_config
  if [ ! -f "$state/kafka/data/meta.properties" ]; then
    log "Formatting Kafka storage in $state/kafka/data"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_TEST_SCRAM_USER,password=$KAFKA_TEST_SCRAM_PASSWORD]" \
      -c "$state/kafka/server.properties" >"$state/kafka/format.out" 2>&1 ||
      { tail -n 20 "$state/kafka/format.out" >&2; die "formatting Kafka storage failed"; }
  fi
  log "Starting Apache Kafka $kafka_version on 127.0.0.1:$kafka_port"
  : >"$state/kafka/kafka.out"
  nohup "$(command -v java)" -Xms128m -Xmx${KAFKA_HEAP:-768m} \
    -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.yaml" \
    -Dkafka.logs.dir="$state/kafka/logs" -cp "$kafka_libs/*" \
    kafka.Kafka "$state/kafka/server.properties" >"$state/kafka/kafka.out" 2>&1 &
  echo $! >"$state/kafka/pid"
  wait_for Kafka 90 "$state/kafka/kafka.out" kafka_ready
  log "Kafka is ready"
}

# Ready when the bucket exists: made, or found made, with a real CreateBucket (SigV4 by curl).
s3_ready() {
  port_open $s3_port || return 1
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "http://127.0.0.1:$s3_port/$S3_BUCKET") || return 1
  [ "$status" = 200 ] || [ "$status" = 409 ]
}

start_s3() {
  if port_open $s3_port; then
    log "The S3 server already answers on 127.0.0.1:$s3_port"
    return 0
  fi
  install_s3
  mkdir -p "$state/s3/data"
  # One identity, the local credentials of scripts/local.env, allowed everything.
  cat >"$state/s3/identities.json" <<JSON
{"identities": [{"name": "store-events-local",
  "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  log "Starting SeaweedFS $seaweedfs_version: S3 on 127.0.0.1:$s3_port (bucket $S3_BUCKET)"
  : >"$state/s3/s3.out"
  nohup "$weed_bin" -logtostderr=true -v="${S3_SERVER_LOG_LEVEL:-0}" server \
    -dir="$state/s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$seaweed_master_port -master.volumeSizeLimitMB=64 \
    -volume.port=$seaweed_volume_port -volume.max=0 \
    -filer -filer.port=$seaweed_filer_port \
    -s3 -s3.port=$s3_port -s3.config="$state/s3/identities.json" \
    >"$state/s3/s3.out" 2>&1 &
  echo $! >"$state/s3/pid"
  wait_for "The S3 server" 90 "$state/s3/s3.out" s3_ready
  log "The S3 server is ready"
}

# damage KEY: appends bytes to the object KEY through SeaweedFS's filer, which keeps the
# object's S3 metadata and recorded checksum: afterwards S3 serves bytes that fail that
# checksum, as after bit rot. For the tests of recovery and of the deep audit.
damage() {
  local key=${1:?usage: $0 damage KEY}
  local path
  path=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$key")
  curl -fsS -o /dev/null -X PUT --data-binary 'damaged' \
    "http://127.0.0.1:$seaweed_filer_port/buckets/$S3_BUCKET/$path?op=append" ||
    die "could not damage $key"
}

# stop_part NAME PIDFILE PORT: SIGTERM, then SIGKILL after 20 s; waits until the port is free.
stop_part() {
  local name=$1 pidfile=$2 port=$3
  if pid_alive "$pidfile"; then
    log "Stopping $name"
    kill "$(cat "$pidfile")" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_alive "$pidfile" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  local deadline=$((SECONDS + 20))
  while port_open "$port" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if port_open "$port"; then die "$name stopped, but port $port still answers (not started by this script?)"; fi
}

stop_kafka() { stop_part Kafka "$state/kafka/pid" $kafka_port; }
stop_s3() { stop_part "The S3 server" "$state/s3/pid" $s3_port; }
stop_kafka3() { stop_part "Kafka $kafka3_version" "$state/kafka-3/pid" $kafka3_port; }

# The three-node cluster. Node N (1-3) listens on 127.0.0.1: PLAINTEXT 930N (the tests' and the
# brokers' own listener; its principal, ANONYMOUS, is a super user), CONTROLLER 931N and
# SASL_SSL with SCRAM-SHA-512 932N (where ACLs apply: the users below, password
# $KAFKA_TEST_SCRAM_PASSWORD), and a plain listener on 936N that advertises 937N, where
# the fault tests put a TCP proxy in front of each node (tests/cluster/kafka_cluster.py).
# Small heaps: three JVMs share the 2-core CI machine.
cluster_nodes="1 2 3"
cluster_users="producer sales-consumer inventory-consumer stranger"
cluster_port() { echo $((9300 + $1)); }
cluster_sasl_port() { echo $((9320 + $1)); }
cluster_dir() { echo "$state/cluster/node-$1"; }

write_cluster_config() {
  local node=$1 dir voters="" n
  dir=$(cluster_dir "$node")
  for n in $cluster_nodes; do voters="$voters${voters:+,}$n@127.0.0.1:$((9310 + n))"; done
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
# Written by scripts/stack.sh: node $node of a three-node KRaft cluster (broker + controller), loopback only.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$node"),CONTROLLER://127.0.0.1:$((9310 + node)),SASL_SSL://127.0.0.1:$(cluster_sasl_port "$node"),PROXIED://127.0.0.1:$((9360 + node))
advertised.listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$node"),SASL_SSL://127.0.0.1:$(cluster_sasl_port "$node"),PROXIED://127.0.0.1:$((9370 + node))
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,PROXIED:PLAINTEXT
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=$dir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
$(internal_topics 3 2)
# Leaders move only when a test asks (cluster elect), not on a five-minute timer.
auto.leader.rebalance.enable=false
EOF
}

cluster_node_ready() { port_open "$(cluster_port "$1")" && grep -q "Kafka Server started" "$(cluster_dir "$1")/kafka.out"; }

cluster_launch() {
  local node=$1 dir
  dir=$(cluster_dir "$node")
  if port_open "$(cluster_port "$node")"; then
    log "Cluster node $node already answers on 127.0.0.1:$(cluster_port "$node")"
    return 0
  fi
  log "Starting cluster node $node on 127.0.0.1:$(cluster_port "$node")"
  : >"$dir/kafka.out"
  nohup "$(command -v java)" -Xms96m -Xmx${KAFKA_CLUSTER_HEAP:-320m} -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.yaml" \
    -Dkafka.logs.dir="$dir" -cp "$kafka_libs/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/kafka.out" 2>&1 &
  echo $! >"$dir/pid"
}

cluster_wait() {
  local node
  for node in "$@"; do
    wait_for "Cluster node $node" 120 "$(cluster_dir "$node")/kafka.out" cluster_node_ready "$node"
  done
}

cluster_up() {
  install_kafka
  make_tls
  local node id scram=()
  for node in $cluster_nodes; do write_cluster_config "$node"; done
  if [ ! -f "$(cluster_dir 1)/data/meta.properties" ]; then
    id=$(kafka_java kafka.tools.StorageTool random-uuid)
    for user in $cluster_users; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$KAFKA_TEST_SCRAM_PASSWORD]")
    done
    for node in $cluster_nodes; do
      log "Formatting cluster node $node's storage"
      kafka_java kafka.tools.StorageTool format --ignore-formatted -t "$id" "${scram[@]}" \
        -c "$(cluster_dir "$node")/server.properties" >"$(cluster_dir "$node")/format.out" 2>&1 ||
        { tail -n 20 "$(cluster_dir "$node")/format.out" >&2; die "formatting cluster node $node failed"; }
    done
  fi
  for node in $cluster_nodes; do cluster_launch "$node"; done
  # shellcheck disable=SC2086
  cluster_wait $cluster_nodes
  log "The three-node cluster is ready: 127.0.0.1:9301,127.0.0.1:9302,127.0.0.1:9303 (SASL_SSL 9321-9323)"
}

cluster_node_arg() {
  case "${1:-}" in 1 | 2 | 3) ;; *) die "usage: $0 cluster start|stop|kill 1|2|3" ;; esac
}

cluster_stop() { stop_part "Cluster node $1" "$(cluster_dir "$1")/pid" "$(cluster_port "$1")"; }

# kill -9: no controlled shutdown, no flush; the others notice when its session expires.
cluster_kill() {
  local pidfile
  pidfile="$(cluster_dir "$1")/pid"
  pid_alive "$pidfile" || die "cluster node $1 is not running"
  log "Killing cluster node $1 (SIGKILL)"
  kill -9 "$(cat "$pidfile")"
  while pid_alive "$pidfile"; do sleep 0.1; done
  rm -f "$pidfile"
}

cluster() {
  local bootstrap=127.0.0.1:9301,127.0.0.1:9302,127.0.0.1:9303
  case "${1:-}" in
    up) cluster_up ;;
    down) for node in $cluster_nodes; do cluster_stop "$node"; done ;;
    start) cluster_node_arg "${2:-}"; install_kafka; cluster_launch "$2"; cluster_wait "$2" ;;
    stop) cluster_node_arg "${2:-}"; cluster_stop "$2" ;;
    kill) cluster_node_arg "${2:-}"; cluster_kill "$2" ;;
    status)
      for node in $cluster_nodes; do
        if port_open "$(cluster_port "$node")"; then echo "node $node: up on 127.0.0.1:$(cluster_port "$node")"; else echo "node $node: down"; fi
      done
      ;;
    reset) for node in $cluster_nodes; do cluster_stop "$node"; done; rm -rf "$state/cluster"; log "Cluster data deleted" ;;
    elect) shift; kafka_java org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$bootstrap" \
      --election-type PREFERRED --all-topic-partitions "$@" ;;
    acl) shift; kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "$bootstrap" "$@" ;;
    *) die "usage: $0 cluster up|down|status|reset|elect|acl ARGS|start N|stop N|kill N" ;;
  esac
}

status() {
  local part port
  for part in kafka:$kafka_port s3:$s3_port; do
    port=${part#*:}
    if port_open "$port"; then echo "${part%%:*}: up on 127.0.0.1:$port"; else echo "${part%%:*}: down"; fi
  done
}

mkdir -p "$state/kafka" "$state/s3"
case "${1:-}" in
  up) install_kcat; start_kafka; start_s3 ;;
  down) stop_kafka; stop_s3; stop_kafka3; cluster down ;;
  install) install_kafka; install_s3; install_kcat ;;
  start | stop)
    case "${2:-}" in
      kafka | s3) "$1_$2" ;;
      kafka-3.9) "$1_kafka3" ;;
      *) die "usage: $0 $1 kafka|s3|kafka-3.9" ;;
    esac
    ;;
  status) status ;;
  # The Iceberg catalog of `make up` goes with the S3 data its tables live in.
  reset) stop_kafka; stop_s3; stop_kafka3; cluster down; rm -rf "$state/kafka" "$state/s3" "$state/kafka-3" "$state/cluster" "$state/iceberg-catalog.db"; log "Local data deleted" ;;
  damage) damage "${2:-}" ;;
  kafka-tool) shift; install_kafka; kafka_java "$@" ;;
  cluster) shift; cluster "$@" ;;
  *) die "usage: $0 up|down|start|stop|status|reset|install|kafka-tool|damage|cluster" ;;
esac
