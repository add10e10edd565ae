#!/usr/bin/env bash
# Operator scale benchmark: 1,000 SqliteDatabase objects on a real API server (started here
# unless KUBECONFIG names one); prints time-to-all-Ready and operator RSS.
#   BENCH_DATABASES=1000 scripts/bench-operator.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${KUBECONFIG:-}" ]; then
  export SQLITE_KUBE_K8S_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-k8s.XXXXXX")"
  eval "$(scripts/k8s-testenv.sh start)"
  export KUBECONFIG
  trap 'scripts/k8s-testenv.sh stop' EXIT
fi
cargo bench -p operator --bench scale
