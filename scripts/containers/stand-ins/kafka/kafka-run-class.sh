#!/bin/bash
# bin/kafka-run-class.sh of the stand-in for Apache Kafka's image: runs one of the
# release's classes with its jars, honouring the variables the real script reads
# (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS).
set -euo pipefail
# shellcheck disable=SC2086 # the *_OPTS variables are lists of JVM flags, split on purpose
exec java ${KAFKA_HEAP_OPTS:--Xmx256M} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
  ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml} ${KAFKA_OPTS:-} \
  -cp '/opt/kafka/libs/*' "$@"
