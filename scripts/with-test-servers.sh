#!/usr/bin/env bash
# Runs a command with the test servers up, and stops them (by PID) when it ends: the test
# dependencies from scripts/test-deps.sh, a SeaweedFS S3 server, and a local kube-apiserver
# unless KUBECONFIG already names a cluster; all on 127.0.0.1.
#   scripts/with-test-servers.sh cargo test -p e2e
# (scripts/test.sh does the same itself, overlapping the first API server build with cargo.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || { echo "usage: scripts/with-test-servers.sh COMMAND [ARGS...]" >&2; exit 2; }
eval "$(scripts/test-deps.sh)"
export LITESTREAM_BIN WEED_BIN LITESTREAM_VFS_SO
s3dir="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-s3.XXXXXX")"
own_k8s=0
cleanup() {
  scripts/seaweedfs.sh stop "$s3dir"
  if [ "$own_k8s" = 1 ]; then scripts/k8s-testenv.sh stop; fi
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
"$@"
