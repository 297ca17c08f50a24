#!/usr/bin/env bash
# Makes stand-ins for the third-party images docker-compose.yml names, under those names,
# for machines that reach no container image registry (CI here). Users with a registry
# pull the real ones and never need this. Each is made once (kept by Docker), from
# Debian's packages and from the very builds the local stack (scripts/stack.sh) runs. An
# image already there that is no stand-in is kept; a missing one is pulled if a registry
# answers (it fails at once where none does):
#
#   apache/kafka:<v>             Apache Kafka <v>'s jars (the stack's Maven download; <v>
#                                must be the stack's version), Debian's OpenJDK 17 JRE, and
#                                the real image's layout and start: user appuser (1000),
#                                /etc/kafka/docker/run rendering the KAFKA_* variables with
#                                the release's own kafka.docker.KafkaDockerWrapper,
#                                /var/lib/kafka/data, and /opt/kafka/bin/kafka-*.sh for the
#                                tools the compose file and its users call
#                                (scripts/containers/stand-ins/kafka)
#   chrislusf/seaweedfs:<v>      the stack's pinned SeaweedFS build (reports version <v>) as
#                                /usr/bin/weed, with that release's own docker/entrypoint.sh
#                                (from the Go module), user seaweed (1000), /data, curl
#   prom/prometheus:<v>          Debian's Prometheus (2.42; the compose file names 3.x:
#                                configuration and API used here are the same) as
#                                /bin/prometheus, user nobody, /prometheus
#
# What the stand-ins do not copy: the real images' sizes, Alpine, and Kafka's class data
# sharing archives. Grafana has no stand-in: `make test-compose` leaves it out.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/scripts/containers/stand-ins
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
log() { printf '[stand-ins] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

command -v mmdebstrap >/dev/null || die "mmdebstrap is needed (apt-get install mmdebstrap)"
# made IMAGE: the image is there and was made from this script and its files as they are now
# (a label holds their hash), so that a change to them makes it again.
inputs=$(cat "${BASH_SOURCE[0]}" "$here"/kafka/* | sha256sum | cut -c1-16)
# An image that is there and is no stand-in (pulled from a registry) is the real one: kept.
# Missing, it is pulled when a registry answers, else made.
made() {
  local label
  label=$(docker image inspect -f '{{index .Config.Labels "store-events.stand-in"}}' "$1" 2>/dev/null) || {
    timeout 300 docker pull -q "$1" >/dev/null 2>&1 && { log "$1 pulled"; return 0; }
    return 1
  }
  [ "$label" = "$inputs" ] || [ "$label" = "<no value>" ] || [ -z "$label" ]
}
# compose_image NAME: the image the compose file gives the service NAME.
compose_image() {
  awk -v svc="  $1:" '$0 == svc {found = 1; next} found && /^    image:/ {print $2; exit}' "$root/docker-compose.yml"
}

kafka_image=$(compose_image kafka)
seaweedfs_image=$(compose_image seaweedfs)
prometheus_image=$(compose_image prometheus)
[ -n "$kafka_image" ] && [ -n "$seaweedfs_image" ] && [ -n "$prometheus_image" ] ||
  die "docker-compose.yml must name the images of kafka, seaweedfs and prometheus"

# The stack's builds, installed by `scripts/stack.sh install` (the same versions as `make up`).
"$root/scripts/stack.sh" install >&2
kafka_version=$(sed -n 's/^kafka_version=//p' "$root/scripts/stack.sh")
[ "${kafka_image#*:}" = "$kafka_version" ] ||
  die "docker-compose.yml runs $kafka_image, but the stack (and this stand-in) runs Kafka $kafka_version: make them agree"
kafka_libs=$cache/kafka-$kafka_version/libs
seaweedfs_version=$(awk '$2 == "github.com/seaweedfs/seaweedfs" {print $3; exit}' "$root/scripts/seaweedfs/go.mod")
weed_bin=$cache/seaweedfs-$seaweedfs_version/weed
weed_release=$("$weed_bin" version 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+$/) {print $i; exit}}')
[ "${seaweedfs_image#*:}" = "$weed_release" ] ||
  die "docker-compose.yml runs $seaweedfs_image, but the stack's SeaweedFS build reports version ${weed_release:-?}: make them agree"
weed_entrypoint=$(cd "$root/scripts/seaweedfs" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/seaweedfs/seaweedfs)/docker/entrypoint.sh
[ -f "$weed_entrypoint" ] || die "SeaweedFS's docker/entrypoint.sh is not in the Go module cache ($weed_entrypoint)"

# Kafka's tools, as the release's bin/ names them, and the class each runs.
kafka_tools="kafka-broker-api-versions.sh org.apache.kafka.tools.BrokerApiVersionsCommand
kafka-consumer-groups.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
kafka-topics.sh org.apache.kafka.tools.TopicCommand
kafka-console-consumer.sh org.apache.kafka.tools.consumer.ConsoleConsumer
kafka-console-producer.sh org.apache.kafka.tools.ConsoleProducer
kafka-get-offsets.sh org.apache.kafka.tools.GetOffsetShell
kafka-metadata-quorum.sh org.apache.kafka.tools.MetadataQuorumCommand
kafka-configs.sh kafka.admin.ConfigCommand
kafka-storage.sh kafka.tools.StorageTool"

users_hook() { # users_hook NAME UID HOME: a user and group of that id, as adduser makes them
  printf '%s' "echo '$1:x:$2:$2::$3:/bin/bash' >> \"\$1/etc/passwd\" && echo '$1:x:$2:' >> \"\$1/etc/group\" && mkdir -p \"\$1$3\" && chown $2:$2 \"\$1$3\""
}

if made "$kafka_image"; then
  log "$kafka_image is there"
else
  log "Making $kafka_image from Apache Kafka $kafka_version's jars and Debian's OpenJDK 17 (about two minutes)"
  start=$SECONDS
  wrappers=$(while read -r name class; do
    printf 'printf "#!/bin/bash\\nexec \\"\\$(dirname \\"\\$0\\")/kafka-run-class.sh\\" %s \\"\\$@\\"\\n" > "$1/opt/kafka/bin/%s" && chmod 755 "$1/opt/kafka/bin/%s"; ' "$class" "$name" "$name"
  done <<<"$kafka_tools")
  mmdebstrap --quiet --variant=minbase --include=openjdk-17-jre-headless \
    --customize-hook="$(users_hook appuser 1000 /home/appuser)" \
    --customize-hook='mkdir -p "$1/opt/kafka/bin" "$1/opt/kafka/config" "$1/opt/kafka/libs" "$1/etc/kafka/docker" "$1/etc/kafka/secrets" "$1/var/lib/kafka/data" "$1/mnt/shared/config" "$1/usr/logs"' \
    --customize-hook="cp '$kafka_libs'/*.jar \"\$1/opt/kafka/libs/\"" \
    --customize-hook="cp '$here/kafka/kafka-run-class.sh' '$here/kafka/kafka-server-start.sh' \"\$1/opt/kafka/bin/\"" \
    --customize-hook="cp '$here/kafka/run' '$here/kafka/server.properties' '$here/kafka/log4j2.yaml' '$here/kafka/tools-log4j2.yaml' \"\$1/etc/kafka/docker/\"" \
    --customize-hook="cp '$here/kafka/log4j2.yaml' '$here/kafka/tools-log4j2.yaml' \"\$1/opt/kafka/config/\"" \
    --customize-hook="$wrappers" \
    --customize-hook='chown -R 1000:1000 "$1/opt/kafka" "$1/usr/logs" "$1/mnt/shared/config" && chown -R 1000:0 "$1/var/lib/kafka" "$1/etc/kafka" && chmod -R ug+w "$1/var/lib/kafka" "$1/etc/kafka"' \
    --customize-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
    "$suite" - "$mirror" |
    docker import \
      --change 'USER appuser' --change 'EXPOSE 9092' \
      --change 'VOLUME ["/etc/kafka/secrets", "/var/lib/kafka/data", "/mnt/shared/config"]' \
      --change 'CMD ["/etc/kafka/docker/run"]' \
      --change "LABEL store-events.stand-in=$inputs" --change "LABEL org.opencontainers.image.description=\"Stand-in for apache/kafka:$kafka_version, made by store-events' scripts/containers/stand-ins.sh\"" \
      - "$kafka_image" >/dev/null
  log "$kafka_image made in $((SECONDS - start)) s"
fi

if made "$seaweedfs_image"; then
  log "$seaweedfs_image is there"
else
  log "Making $seaweedfs_image from the stack's SeaweedFS build (about a minute)"
  start=$SECONDS
  # The release's entrypoint drops root with su-exec (Alpine's); Debian has gosu, which
  # takes the same arguments.
  mmdebstrap --quiet --variant=minbase --include=curl,gosu \
    --customize-hook="$(users_hook seaweed 1000 /home/seaweed)" \
    --customize-hook="cp '$weed_bin' \"\$1/usr/bin/weed\" && cp '$weed_entrypoint' \"\$1/entrypoint.sh\" && chmod 755 \"\$1/entrypoint.sh\"" \
    --customize-hook='ln -s gosu "$1/usr/sbin/su-exec" && mkdir -p "$1/data/filerldb2" "$1/etc/seaweedfs" && chown -R 1000:1000 "$1/data" "$1/etc/seaweedfs"' \
    --customize-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
    "$suite" - "$mirror" |
    docker import \
      --change 'VOLUME /data' --change 'WORKDIR /data' \
      --change 'EXPOSE 8333 8888 9333 8080 18888 19333 18080' \
      --change 'ENTRYPOINT ["/entrypoint.sh"]' --change 'CMD ["mini", "-dir=/data"]' \
      --change "LABEL store-events.stand-in=$inputs" --change "LABEL org.opencontainers.image.description=\"Stand-in for $seaweedfs_image, made by store-events' scripts/containers/stand-ins.sh\"" \
      - "$seaweedfs_image" >/dev/null
  log "$seaweedfs_image made in $((SECONDS - start)) s"
fi

if made "$prometheus_image"; then
  log "$prometheus_image is there"
else
  log "Making $prometheus_image from Debian's Prometheus (about a minute)"
  start=$SECONDS
  mmdebstrap --quiet --variant=minbase --include=prometheus \
    --customize-hook='mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"' \
    --customize-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
    "$suite" - "$mirror" |
    docker import \
      --change 'USER nobody' --change 'EXPOSE 9090' --change 'VOLUME ["/prometheus"]' --change 'WORKDIR /prometheus' \
      --change 'ENTRYPOINT ["/bin/prometheus"]' \
      --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
      --change "LABEL store-events.stand-in=$inputs" --change "LABEL org.opencontainers.image.description=\"Stand-in for $prometheus_image, made by store-events' scripts/containers/stand-ins.sh\"" \
      - "$prometheus_image" >/dev/null
  log "$prometheus_image made in $((SECONDS - start)) s"
fi
