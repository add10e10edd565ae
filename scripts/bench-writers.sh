#!/usr/bin/env bash
# Writer benchmark: webhook admission latency and drain hand-off time on a real API server
# (started here unless KUBECONFIG names one) and SeaweedFS; prints ratios to baselines.
#   BENCH_PODS=200 BENCH_HANDOFFS=10 scripts/bench-writers.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/test-deps.sh)"
s3dir="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-s3.XXXXXX")"
cleanup() {
  scripts/seaweedfs.sh stop "$s3dir"
  if [ "${own_k8s:-0}" = 1 ]; then scripts/k8s-testenv.sh stop; fi
}
trap cleanup EXIT
eval "$(scripts/seaweedfs.sh start "$s3dir")"
export TEST_S3_ENDPOINT TEST_S3_FILER
if [ -z "${KUBECONFIG:-}" ]; then
  export SQLITE_KUBE_K8S_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-k8s.XXXXXX")"
  own_k8s=1
  eval "$(scripts/k8s-testenv.sh start)"
  export KUBECONFIG
fi
cargo build --release --workspace --bins
cargo bench -p e2e --bench writers
