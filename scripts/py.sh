#!/usr/bin/env bash
# Runs a command of the project's Python tools (scripts/python-requirements.txt: the AWS CLI,
# boto3, DuckDB, sqlglot, pytest), installing them from PyPI into a cached virtual
# environment on first use. A new requirements file gets a new environment.
#
#   scripts/py.sh python deploy/athena/duckdb_local.py --check
#   scripts/py.sh aws --version
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements=$root/scripts/python-requirements.txt
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
venv=$cache/py-$(sha256sum "$requirements" | cut -c1-12)
if [ ! -f "$venv/.complete" ]; then
  command -v python3 >/dev/null || { echo "[py] error: python3 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
  echo "[py] Installing the Python tools from PyPI into $venv (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.complete"
fi
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
command=$1
shift
exec "$venv/bin/$command" "$@"
