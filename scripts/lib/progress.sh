# shellcheck shell=bash
# progress WHAT ABOUT COUNTER -- COMMAND...: runs COMMAND and, while it runs, says every 30
# seconds on stderr that WHAT is still going, how long so far against ABOUT (the usual
# time, e.g. "about 10 minutes"), and what the shell snippet COUNTER prints (e.g. how many
# packages are built); the exit status is COMMAND's. For the long first-time steps (Kafka's
# download, the SeaweedFS and Compose builds, the Python tools), which print nothing of
# their own for minutes.
progress() {
  local what=$1 about=$2 counter=$3
  shift 4
  local start=$SECONDS next=$((SECONDS + 30)) pid status
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $SECONDS -ge $next ]; then
      printf '  ... still %s: %d s so far (%s); %s\n' "$what" $((SECONDS - start)) "$about" "$(eval "$counter" 2>/dev/null)" >&2
      next=$((next + 30))
    fi
  done
  status=0
  wait "$pid" || status=$?
  return $status
}
