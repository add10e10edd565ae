#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the real-pod tests and the
# README's main job. Everything runs inside a network namespace this script makes: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables), containerd
# with runc, and a kubelet; pods get their own namespaces on a CNI bridge inside it. The
# host reaches the cluster through a veth pair on a private /30 ($NODE_IP). Cluster DNS is
# not run: the product needs none (pods reach the API server through the `kubernetes`
# Service's IP, and replicas by the URLs they are given).
#
#   bash scripts/k8s-cluster.sh start            # prints `export KUBECONFIG=...`
#   bash scripts/k8s-cluster.sh load A.tar ...   # import docker-archive images
#   bash scripts/k8s-cluster.sh stop             # stops everything by PID, removes its state
#
# Binaries: scripts/k8s-testenv.sh install-node (built once from Debian's kubernetes source
# and cached; containerd, runc, CNI plugins and iptables from Debian). Needs root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SQLITE_KUBE_K8S_CACHE:-$HOME/.cache/sqlite-kube/k8s}"
BIN="$CACHE/bin"
RUN="${SQLITE_KUBE_CLUSTER_DIR:-${TMPDIR:-/tmp}/sqlite-kube-cluster}"
NETNS="${SQLITE_KUBE_NETNS:-sqlitekube-node}"
HOST_IF=skhost0 NODE_IF=sknode0
HOST_IP=10.200.0.1 NODE_IP=10.200.0.2
POD_CIDR=10.244.0.0/24 SVC_CIDR=10.96.0.0/24 SVC_IP=10.96.0.1
NODE_NAME=sqlitekube-node
API_PORT=6443
SOCK="$RUN/containerd/containerd.sock"
PAUSE_IMAGE=docker.io/local/pause:3.2

. "$ROOT/scripts/k8s-pki.sh"

log() { printf '[k8s-cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# Enter only the network namespace: `ip netns exec` also remounts /sys, which hides the
# cgroup mounts runc and the kubelet need.
in_ns() { nsenter --net="/run/netns/$NETNS" "$@"; }

# run NAME CMD...: starts CMD inside the node's network namespace, in its own session.
run() {
  local name="$1"; shift
  setsid nsenter --net="/run/netns/$NETNS" "$@" </dev/null >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_for() { # WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "$what not ready after ${secs}s"
    sleep 0.5
  done
}

network() {
  ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NODE_IF"
    ip link set "$NODE_IF" netns "$NETNS"
    ip addr add "$HOST_IP/30" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    in_ns ip addr add "$NODE_IP/30" dev "$NODE_IF"
    in_ns ip link set "$NODE_IF" up
    in_ns ip link set lo up
    in_ns ip route add default via "$HOST_IP" dev "$NODE_IF"
  fi
  # Host → pods (tests read pod IPs), through the node.
  ip route replace "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  in_ns sysctl -qw net.ipv4.ip_forward=1
}

pki() {
  k8s_pki "$RUN/pki" sqlite-kube-cluster-ca \
    "IP:127.0.0.1,IP:$NODE_IP,IP:$SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
}

kubeconfig() { k8s_kubeconfig "$1" "$2" "$RUN/pki"; }

pause_image() {
  [ -f "$RUN/images/pause.tar" ] && return
  mkdir -p "$RUN/images"
  [ -f "$CACHE/src/pause.c" ] || die "$CACHE/src/pause.c missing: run scripts/k8s-testenv.sh install-node"
  gcc -Os -static -o "$RUN/images/pause" "$CACHE/src/pause.c"
  python3 "$ROOT/scripts/images.py" single --tag "$PAUSE_IMAGE" \
    --file "$RUN/images/pause:/pause" --entrypoint /pause --out "$RUN/images/pause.tar" >&2
}

containerd_up() {
  mkdir -p "$RUN/containerd" "$RUN/cni" "$RUN/cni-state"
  cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE (absent on this machine kind).
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /run/netns: nothing left outside $RUN.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni"
EOF
  cat >"$RUN/cni/10-sqlitekube.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "sqlitekube", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$RUN/cni-state"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  run containerd containerd --config "$RUN/containerd/config.toml"
  wait_for containerd 30 ctr -a "$SOCK" version
  ctr -a "$SOCK" -n k8s.io images import "$RUN/images/pause.tar" >&2
}

control_plane() {
  local p="$RUN/pki" etcd_port=2379
  run etcd "$BIN/etcd" --name node --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:2380" --initial-advertise-peer-urls "http://127.0.0.1:2380" \
    --initial-cluster "node=http://127.0.0.1:2380" --unsafe-no-fsync --log-level=warn
  wait_for etcd 60 in_ns curl -fsS "http://127.0.0.1:$etcd_port/health"
  # Webhooks and the aggregator are reached at their endpoints (pod IPs), not through
  # Service IPs: the API server does not depend on kube-proxy.
  run kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-cluster-ip-range="$SVC_CIDR" --endpoint-reconciler-type=lease \
    --enable-aggregator-routing=true --kubelet-preferred-address-types=InternalIP \
    --profiling=false --cert-dir="$p/generated" --v=1
  wait_for kube-apiserver 180 in_ns curl -fsS --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz"
  run kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$RUN/kubeconfig.node" \
    --leader-elect=false --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=false --service-cluster-ip-range="$SVC_CIDR" \
    --bind-address=127.0.0.1 --secure-port=10257 --port=0 --v=1
  run kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$RUN/kubeconfig.node" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=10259 --port=0 --v=1
}

node() {
  mkdir -p "$RUN/kubelet" "$RUN/manifests"
  cat >"$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
staticPodPath: "$RUN/manifests"
readOnlyPort: 0
resolvConf: /etc/resolv.conf
EOF
  run kubelet "$BIN/kubelet" --config="$RUN/kubelet.yaml" --kubeconfig="$RUN/kubeconfig.node" \
    --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
    --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  run kube-proxy "$BIN/kube-proxy" --kubeconfig="$RUN/kubeconfig.node" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$POD_CIDR" --conntrack-max-per-core=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 --v=1
  export KUBECONFIG="$RUN/kubeconfig"
  wait_for "node $NODE_NAME Ready" 180 sh -c \
    "kubectl get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
}

# The cluster's object store: SeaweedFS on the node's address, reachable from pods and host.
store() {
  eval "$(bash "$ROOT/scripts/test-deps.sh")"
  nsenter --net="/run/netns/$NETNS" env SEAWEEDFS_IP="$NODE_IP" WEED_BIN="$WEED_BIN" \
    bash "$ROOT/scripts/seaweedfs.sh" start "$RUN/s3" >"$RUN/s3.env"
  . "$RUN/s3.env"
  S3_ENDPOINT="$TEST_S3_ENDPOINT" S3_FILER="$TEST_S3_FILER"
}

start() {
  [ "$(id -u)" = 0 ] || die "a real node needs root"
  if alive "$RUN/kubelet.pid" && [ -f "$RUN/env" ]; then log "already running"; cat "$RUN/env"; return; fi
  local t0=$SECONDS
  bash "$ROOT/scripts/k8s-testenv.sh" install-node >&2
  stop
  mkdir -p "$RUN/logs"
  network
  pki
  kubeconfig "$RUN/kubeconfig.node" "https://127.0.0.1:$API_PORT"
  kubeconfig "$RUN/kubeconfig" "https://$NODE_IP:$API_PORT"
  store
  pause_image
  containerd_up
  control_plane
  node
  cat >"$RUN/env" <<EOF
export KUBECONFIG='$RUN/kubeconfig'
export SQLITE_KUBE_CLUSTER_DIR='$RUN'
export SQLITE_KUBE_NODE_IP='$NODE_IP'
export SQLITE_KUBE_CLUSTER_S3='$S3_ENDPOINT'
export SQLITE_KUBE_CLUSTER_S3_FILER='$S3_FILER'
EOF
  log "node $NODE_NAME Ready in $((SECONDS - t0)) s (API server https://$NODE_IP:$API_PORT)"
  cat "$RUN/env"
}

load() {
  local f
  for f in "$@"; do
    ctr -a "$SOCK" -n k8s.io images import "$f" >&2
  done
}

stop() {
  local n pid id
  if [ -f "$RUN/kubeconfig" ] && alive "$RUN/kube-apiserver.pid"; then
    # Controllers first (they would recreate pods), then pods, so the kubelet removes their
    # sandboxes, network namespaces and mounts itself.
    export KUBECONFIG="$RUN/kubeconfig"
    timeout 30 kubectl delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1 || true
    timeout 60 kubectl delete pods --all -A --grace-period=2 --wait=true >/dev/null 2>&1 || true
  fi
  # Whatever is still running in our containerd: kill the tasks (the containers' processes)
  # before their shims, so none is orphaned.
  if [ -S "$SOCK" ]; then
    for id in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
    done
  fi
  for n in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
    [ -f "$RUN/$n.pid" ] || continue
    pid="$(cat "$RUN/$n.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$n.pid"
  done
  # Left-over container shims of our containerd (their command line names our socket),
  # by PID; then the mounts under our directory (the kubelet's, the pods' netns).
  for pid in $(grep -l -- "$SOCK" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -d "$RUN" ]; then
    { grep " $RUN/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  if ip netns list 2>/dev/null | grep -qw "$NETNS"; then
    in_ns ip link del cni0 2>/dev/null || true
    ip netns del "$NETNS" 2>/dev/null || true
  fi
  ip link del "$HOST_IF" 2>/dev/null || true
  ip route del "$POD_CIDR" 2>/dev/null || true
  if [ -d "$RUN/s3" ]; then bash "$ROOT/scripts/seaweedfs.sh" stop "$RUN/s3"; fi
  rm -rf "$RUN/etcd-data" "$RUN/env" "$RUN/containerd/state" "$RUN/cni-state"
}

# Sourcing defines the functions only (for debugging one step at a time).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    start) start ;;
    load) shift; load "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 start|load IMAGE.tar...|stop" >&2; exit 2 ;;
  esac
fi
