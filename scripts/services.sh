#!/usr/bin/env bash
# Starts or stops the three services natively against the local stack, in the background,
# with logs in .local/logs/ and pid files in .local/pids/.
#
#   scripts/services.sh up     build (dev profile) and start producer, sales-consumer, inventory-consumer
#   scripts/services.sh down   stop them (SIGTERM: each flushes its work before it exits)
#   scripts/services.sh status each one's /readyz; exit 1 unless every one is running and ready
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/local.env
source "$root/scripts/local.env"
state=$root/.local
services=("producer:8080" "sales-consumer:8081" "inventory-consumer:8082")

log() { printf '[services] %s\n' "$*" >&2; }

up() {
  mkdir -p "$state/logs" "$state/pids"
  log "Building the services (the first build takes several minutes; cargo shows its progress)"
  (cd "$root" && cargo build --bins)
  local entry name port
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if [ -f "$state/pids/$name" ] && kill -0 "$(cat "$state/pids/$name")" 2>/dev/null; then
      log "$name already runs (pid $(cat "$state/pids/$name"))"
      continue
    fi
    HTTP_ADDR=127.0.0.1:$port LOG_FORMAT=${LOG_FORMAT:-json} GENERATOR_RATE=${GENERATOR_RATE:-20} \
      nohup "$root/target/debug/$name" >"$state/logs/$name.log" 2>&1 &
    echo $! >"$state/pids/$name"
  done
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    local deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
      if ! kill -0 "$(cat "$state/pids/$name")" 2>/dev/null; then
        log "$name exited; last lines of $state/logs/$name.log:"
        tail -n 20 "$state/logs/$name.log" >&2
        exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        log "$name is not ready after 60s; /readyz says:"
        curl -sS "http://127.0.0.1:$port/readyz" >&2 || true
        exit 1
      fi
      sleep 0.5
    done
    log "$name is ready on http://127.0.0.1:$port"
  done
}

down() {
  local entry name pidfile
  for entry in "${services[@]}"; do
    name=${entry%%:*} pidfile=$state/pids/$name
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "Stopping $name"
      kill "$(cat "$pidfile")"
      local deadline=$((SECONDS + 30))
      while kill -0 "$(cat "$pidfile")" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    fi
    rm -f "$pidfile"
  done
}

status() {
  local entry name port body failed=0
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if body=$(curl -fsS "http://127.0.0.1:$port/readyz" 2>&1); then
      log "$name is ready on http://127.0.0.1:$port"
    else
      log "$name is not ready on http://127.0.0.1:$port: $(curl -sS "http://127.0.0.1:$port/readyz" 2>&1 || echo "$body")"
      failed=1
    fi
  done
  return $failed
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
