#!/usr/bin/env bash
# Runs a command of the project's Python tools (scripts/python-requirements.txt: the AWS CLI,
# boto3, DuckDB, sqlglot, pytest), installing them from PyPI into a cached virtual
# environment on first use. A new requirements file gets a new environment.
#
#   scripts/py.sh python deploy/athena/duckdb_local.py --check
#   scripts/py.sh aws --version
#
# With --iceberg first, the Iceberg readers instead (scripts/python-iceberg-requirements.txt:
# pyiceberg, and DuckDB pinned to the release its iceberg extension is built for):
#
#   scripts/py.sh --iceberg python deploy/iceberg/iceberg_local.py --catalog sqlite:.local/iceberg-catalog.db
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements=$root/scripts/python-requirements.txt
if [ "${1:-}" = --iceberg ]; then
  requirements=$root/scripts/python-iceberg-requirements.txt
  shift
fi
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
venv=$cache/py-$(sha256sum "$requirements" | cut -c1-12)
if [ ! -f "$venv/.complete" ]; then
  command -v python3 >/dev/null || { echo "[py] error: python3 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
  # shellcheck source=scripts/lib/progress.sh
  source "$root/scripts/lib/progress.sh"
  echo "[py] Installing the Python tools of $(basename "$requirements") from PyPI into $venv (once, a minute or two)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip_log=$venv/pip-install.log
  start=$SECONDS
  if ! progress "installing the Python tools" "usually a minute or two" 'echo "$(grep -c "^Collecting" "$pip_log") packages collected"' -- \
    "$venv/bin/pip" install --disable-pip-version-check --progress-bar off -r "$requirements" >"$pip_log" 2>&1; then
    tail -n 30 "$pip_log" >&2
    echo "[py] error: installing the Python tools failed (whole log: $pip_log)" >&2
    exit 1
  fi
  touch "$venv/.complete"
  echo "[py] Python tools installed in $((SECONDS - start)) s" >&2
fi
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
command=$1
shift
exec "$venv/bin/$command" "$@"
