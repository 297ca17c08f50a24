#!/usr/bin/env bash
# A Docker engine for the container tests.
#
#   scripts/containers/engine.sh start   use the running engine; else, on CI or with
#                                        STORE_EVENTS_START_DOCKER=1, install Debian's
#                                        docker.io (and mmdebstrap, for the base images) and
#                                        start dockerd in the background; else explain
#   scripts/containers/engine.sh stop    stop the dockerd this script started (only that)
#
# It never starts a system daemon on a developer's machine unasked.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=$root/.local/docker
log() { printf '[engine] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

start() {
  if docker info >/dev/null 2>&1; then
    log "Using the running Docker engine ($(docker info -f '{{.ServerVersion}}'))"
  else
    [ "${CI:-}" = true ] || [ "${STORE_EVENTS_START_DOCKER:-}" = 1 ] || die \
      "No Docker engine answers. Start yours, or let this script install and start Debian's docker.io as root: STORE_EVENTS_START_DOCKER=1 make test-containers"
    [ "$(id -u)" = 0 ] || die "starting dockerd needs root"
    if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
      log "Installing docker.io and mmdebstrap from Debian's packages (about a minute)"
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io mmdebstrap >/dev/null
    fi
    mkdir -p "$state"
    log "Starting dockerd (log: $state/dockerd.log)"
    nohup dockerd >"$state/dockerd.log" 2>&1 &
    echo $! >"$state/dockerd.pid"
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { tail -n 20 "$state/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
      sleep 0.5
    done
    log "dockerd $(docker info -f '{{.ServerVersion}}') is up"
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap is needed to make the base images (apt-get install mmdebstrap)"
}

stop() {
  [ -f "$state/dockerd.pid" ] || return 0
  local pid
  pid=$(cat "$state/dockerd.pid")
  if kill -0 "$pid" 2>/dev/null; then
    log "Stopping the dockerd this script started"
    kill "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  fi
  rm -f "$state/dockerd.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
