#!/usr/bin/env bash
# The end-to-end suite alone: starts SeaweedFS and a local API server (unless KUBECONFIG
# names a cluster whose API server runs on this host), builds the binaries, and runs e2e/
# with its summaries printed. E2E_ROUNDS (default 50) sets the race/drain rounds.
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
cargo build --workspace --bins
# --nocapture: each test prints a one-line summary (rows, hand-off times, what was refused).
cargo test -p e2e -- --nocapture
