#!/bin/bash
# bin/kafka-server-start.sh of the stand-in for Apache Kafka's image: the broker, with the
# real script's default heap (1 GiB) unless KAFKA_HEAP_OPTS says otherwise.
set -euo pipefail
[ $# -ge 1 ] || { echo "USAGE: $0 server.properties [--override property=value]*" >&2; exit 1; }
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml}
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
