#!/usr/bin/env bash
# Runs Docker Compose: the `docker compose` plugin when this machine's Docker has one (v2 or
# newer), else Docker Compose built once from its Go module at the version
# scripts/compose/go.mod pins (about a minute, kept in ~/.cache/store-events), for machines
# that have neither the plugin nor a registry to fetch one from (CI here).
#
#   scripts/containers/compose.sh ARGS...   as `docker compose ARGS...`
#   scripts/containers/compose.sh --path    prints the command it runs, one word per line
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
log() { printf '[compose] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

module=github.com/docker/compose/v5
version=$(awk -v m="$module" '$1 == "require" && $2 == m {print $3; exit} $1 == m {print $2; exit}' "$root/scripts/compose/go.mod")
[ -n "$version" ] || die "scripts/compose/go.mod does not require $module"
bin=$cache/compose-$version/docker-compose

command=()
if docker compose version >/dev/null 2>&1 && [ -z "${STORE_EVENTS_PINNED_COMPOSE:-}" ]; then
  command=(docker compose)
else
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || die "Go (1.26 or newer) is needed to build Docker Compose $version (https://go.dev/doc/install), or install the docker compose plugin"
    log "Building Docker Compose $version from the Go module proxy (once, about a minute; two on an empty module cache)"
    mkdir -p "$(dirname "$bin")"
    start=$SECONDS
    # shellcheck source=scripts/lib/progress.sh
    source "$root/scripts/lib/progress.sh"
    build_log=$cache/compose-build.log
    progress "building Docker Compose" "usually one to three minutes" 'echo "$(grep -c "^go: downloading" "$build_log") modules downloaded, $(grep -vc "^go: " "$build_log") packages compiled"' -- \
      bash -c 'cd "$1" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -v -trimpath -ldflags "-s -w -X $2/internal.Version=$3" -o "$4" "$2/cmd"' \
      _ "$root/scripts/compose" "$module" "$version" "$bin.partial" 2>"$build_log" ||
      { tail -n 30 "$build_log" >&2; die "building Docker Compose failed (whole log: $build_log)"; }
    mv "$bin.partial" "$bin"
    log "Docker Compose $version built in $((SECONDS - start)) s"
  fi
  command=("$bin")
fi

if [ "${1:-}" = --path ]; then
  printf '%s\n' "${command[@]}"
else
  exec "${command[@]}" "$@"
fi
