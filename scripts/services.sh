#!/usr/bin/env bash
# Starts or stops the three services natively against the local stack, in the background,
# with logs in .local/logs/ and pid files in .local/pids/.
#
#   scripts/services.sh up     build (dev profile) and start producer, sales-consumer,
#                              inventory-consumer; one that runs is left alone, one that died
#                              is started again; a port another program holds stops it before
#                              anything starts, naming the program
#   scripts/services.sh down   stop them (SIGTERM: each flushes its work before it exits)
#   scripts/services.sh status each one's /readyz; exit 1 unless every one is running and ready
#
# The consumers are static members of their consumer groups (CONSUMER_GROUP_INSTANCE_ID
# <service>-local): one restarted after a crash gets its partitions back at once instead of
# waiting for its old session to time out.
#
# Settings (defaults are `make up`'s; the tests give their own):
#   PRODUCER_PORT, SALES_CONSUMER_PORT, INVENTORY_CONSUMER_PORT   8080, 8081, 8082
#   SERVICES_STATE         where logs/ and pids/ go (.local)
#   CONSUMER_GROUP_PREFIX  the consumers' groups are <prefix>-<service> (store-events)
#   OUTPUT_FORMATS         the consumers' files (json,parquet,iceberg here; json is the services' default)
#   ICEBERG_CATALOG_URI    the Iceberg tables' SQL catalog (sqlite:<SERVICES_STATE>/iceberg-catalog.db)
#   and every variable of the services themselves (README, Configuration), passed through.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/local.env
source "$root/scripts/local.env"
state=${SERVICES_STATE:-$root/.local}
services=("producer:${PRODUCER_PORT:-8080}" "sales-consumer:${SALES_CONSUMER_PORT:-8081}" "inventory-consumer:${INVENTORY_CONSUMER_PORT:-8082}")

log() { printf '[services] %s\n' "$*" >&2; }

# pid_of NAME: the pid of NAME's running process, or nothing (exit 1) when it does not run:
# no pid file, no such process, a zombie (killed but not yet reaped), or a pid the system
# has since given to another program.
pid_of() {
  local name=$1 pid stat exe
  [ -f "$state/pids/$name" ] || return 1
  pid=$(cat "$state/pids/$name")
  [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # A rebuilt binary shows as "<path> (deleted)"; the process is still ours.
  [ "${exe% (deleted)}" = "$root/target/debug/$name" ] || return 1
  echo "$pid"
}

# holder PORT: who listens on 127.0.0.1:PORT (or any address), as ss names it; empty if nobody.
holder() {
  local port=$1 line
  if command -v ss >/dev/null; then
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 1)
    [ -n "$line" ] || return 0
    if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
      echo "${BASH_REMATCH[1]} (pid ${BASH_REMATCH[2]})"
    else
      echo "a process this user may not see"
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "a program (install iproute2's ss to see which)"
  fi
}

# error_block LOG: a service's last words: its error block (from its last `Error:` or
# `configuration error:` line to the end), else the log's last 20 lines.
error_block() {
  local log=$1 start
  start=$(grep -n -E '^(Error: |configuration error: )' "$log" | tail -n 1 | cut -d: -f1)
  if [ -n "$start" ]; then
    tail -n "+$start" "$log"
  else
    tail -n 20 "$log"
  fi
}

up() {
  mkdir -p "$state/logs" "$state/pids"
  local entry name port pid who var busy=0
  # Ports first: nothing starts if one is taken by another program.
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    pid_of "$name" >/dev/null && continue
    who=$(holder "$port")
    if [ -n "$who" ]; then
      var=$(tr 'a-z-' 'A-Z_' <<<"${name}_port")
      log "port $port, where $name would listen, is taken by $who: stop it, or give $name another port ($var=<port> make up)"
      busy=1
    fi
  done
  [ $busy -eq 0 ] || { log "Nothing started."; exit 1; }

  log "Building the services (the first build takes several minutes; cargo shows its progress)"
  # With the tests' targets: dev-dependencies turn on features of shared dependencies
  # (tokio's test-util, libc's extra_traits, ...), and a build without them is a second copy
  # of nearly every dependency. Built together, `make test` after `make up` reuses all of it
  # (on two cores: about 50 s more here, against a 13-minute second build there).
  (cd "$root" && cargo build --workspace --all-targets)
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if pid=$(pid_of "$name"); then
      log "$name already runs (pid $pid)"
      continue
    fi
    if [ -f "$state/pids/$name" ]; then
      log "$name is not running (pid $(cat "$state/pids/$name") exited); starting it again. Its last words, from $state/logs/$name.log:"
      error_block "$state/logs/$name.log" | sed 's/^/    /' >&2 || true
      mv -f "$state/logs/$name.log" "$state/logs/$name.previous.log" 2>/dev/null || true
    fi
    local extra=()
    if [ "$name" != producer ]; then
      # JSON, Parquet and the Iceberg tables from each batch, so that `make up` shows them all
      # (scripts/show.sh); both consumers' tables in one SQLite catalog.
      extra=(CONSUMER_GROUP_ID="${CONSUMER_GROUP_PREFIX:-store-events}-$name" CONSUMER_GROUP_INSTANCE_ID="$name-local"
        OUTPUT_FORMATS="${OUTPUT_FORMATS:-json,parquet,iceberg}"
        ICEBERG_CATALOG_URI="${ICEBERG_CATALOG_URI:-sqlite:$state/iceberg-catalog.db}")
    fi
    env HTTP_ADDR="127.0.0.1:$port" LOG_FORMAT="${LOG_FORMAT:-json}" GENERATOR_RATE="${GENERATOR_RATE:-20}" "${extra[@]}" \
      nohup "$root/target/debug/$name" >"$state/logs/$name.log" 2>&1 &
    echo $! >"$state/pids/$name"
  done
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    local deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
      if ! pid_of "$name" >/dev/null; then
        log "$name exited at start; its error, from $state/logs/$name.log:"
        error_block "$state/logs/$name.log" | sed 's/^/    /' >&2
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
  local entry name pid
  for entry in "${services[@]}"; do
    name=${entry%%:*}
    if pid=$(pid_of "$name"); then
      log "Stopping $name"
      kill "$pid"
      local deadline=$((SECONDS + 30))
      while pid_of "$name" >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    fi
    rm -f "$state/pids/$name"
  done
}

status() {
  local entry name port body failed=0
  for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if ! pid_of "$name" >/dev/null; then
      log "$name is not running (see $state/logs/$name.log)"
      failed=1
    elif body=$(curl -fsS "http://127.0.0.1:$port/readyz" 2>&1); then
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
