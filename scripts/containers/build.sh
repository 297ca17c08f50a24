#!/usr/bin/env bash
# Builds the project's image from the Dockerfile users build, as IMAGE (default
# store-events:local), with BuildKit. The host's CA bundle goes to the build as the secret
# `ca-certificates` (cargo uses it while building behind a TLS-inspecting proxy); it is
# never copied into an image. Prints the build's time, the image's size and its layers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=${IMAGE:-store-events:local}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
log() { printf '[build] %s\n' "$*" >&2; }

# BuildKit (for the secret) needs the buildx plugin with Docker 23 and later; Debian's
# docker.io CLI (20.10) has it built in, so that one is used when the first lacks it.
docker_cli=docker
if ! docker buildx version >/dev/null 2>&1; then
  if [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
    docker_cli=/usr/bin/docker
  else
    log "this docker CLI has no buildx plugin, which BuildKit builds need: install it (docker-buildx-plugin)"
    exit 1
  fi
fi
secret=()
[ -f "$ca" ] && secret=(--secret "id=ca-certificates,src=$ca")
log "Building $image from $root/Dockerfile (the first build compiles every dependency in release mode: 10 to 20 minutes on 2 cores; later builds reuse that layer)"
mkdir -p "$root/.local/docker"
build_log=$root/.local/docker/build.log
start=$SECONDS
if ! DOCKER_BUILDKIT=1 "$docker_cli" build --progress=plain "${secret[@]}" -t "$image" "$root" >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  log "the build failed; its whole output: $build_log"
  exit 1
fi
grep -E '^#[0-9]+ DONE [0-9.]+s$' -B1 "$build_log" | grep -E '^#[0-9]+ \[' | cut -c1-120 >&2 || true
log "Built $image in $((SECONDS - start)) s; $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1 / 1e6}')"
docker history --format '  {{.Size}}\t{{.CreatedBy}}' "$image" | cut -c1-150 >&2
