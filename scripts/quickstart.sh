#!/usr/bin/env bash
# The main job on the embedded default, no cloud account: first a local file:// replica
# (builds the hydrator, creates a SQLite database, publishes it in LTX — Litestream 0.5's
# format — as a snapshot plus incrementals, lists the replica, restores the latest state and
# a point in time, checks both with SQLite; then an app writing through the VFS). Then, as
# root, the product on real pods: the local single-node cluster the project builds
# (scripts/k8s-cluster.sh), the images built here, `kubectl apply -k config/legacy`, a
# SqliteDatabase and the sample app; it prints what to look at and leaves the cluster running.
# SQLITE_KUBE_QUICKSTART_CLUSTER=0 skips the cluster part.
#   scripts/quickstart.sh [WORKDIR]      (default: ./quickstart-demo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(realpath -m "${1:-$root/quickstart-demo}")"
cargo build --quiet --release -p hydrator -p sqlitekube-demo -p kubectl-sqlite --manifest-path "$root/Cargo.toml"
hydrator="$root/target/release/hydrator"
demo="$root/target/release/sqlitekube-demo"
# A cluster left running by an earlier quickstart in this directory is stopped first.
if [ -d "$work/cluster" ] && [ "$(id -u)" = 0 ]; then
  SQLITE_KUBE_CLUSTER_DIR="$work/cluster" bash "$root/scripts/k8s-cluster.sh" stop || true
fi
rm -rf "$work" && mkdir -p "$work"
db="$work/app.db"
replica="file://$work/replica"
sql() { # sql DB STATEMENTS… — with Python's sqlite3 module, no sqlite3 CLI needed
  python3 - "$@" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for s in sys.argv[2:]:
    rows = c.execute(s).fetchall()
    if rows: print(*[r[0] for r in rows])
c.commit()
PY
}

echo "== create $db and publish it as TXID 1 (a snapshot)"
sql "$db" "PRAGMA journal_mode=WAL" >/dev/null
sql "$db" "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INT)" \
  "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v+1 FROM n WHERE v < 1000) INSERT INTO orders(item, qty) SELECT 'item-' || v, v % 7 FROM n"
"$hydrator" --log-level warn sync --db "$db" --replica "$replica"

echo "== two more transactions, each published as the next TXID"
sql "$db" "UPDATE orders SET qty = qty + 1 WHERE id % 10 = 0"
"$hydrator" --log-level warn sync --db "$db" --replica "$replica"
sql "$db" "DELETE FROM orders WHERE id > 900"
"$hydrator" --log-level warn sync --db "$db" --replica "$replica"

echo "== the replica"
"$hydrator" ls --replica "$replica"

echo "== restore the latest state and TXID 2"
"$hydrator" --log-level warn restore --replica "$replica" -o "$work/restored.db"
"$hydrator" --log-level warn restore --replica "$replica" -o "$work/restored-txid2.db" --txid 0000000000000002
echo "latest:  rows=$(sql "$work/restored.db" "SELECT count(*) FROM orders") integrity=$(sql "$work/restored.db" "PRAGMA integrity_check")"
echo "TXID 2:  rows=$(sql "$work/restored-txid2.db" "SELECT count(*) FROM orders") integrity=$(sql "$work/restored-txid2.db" "PRAGMA integrity_check")"
src=$(sql "$db" "SELECT count(*), sum(qty) FROM orders")
got=$(sql "$work/restored.db" "SELECT count(*), sum(qty) FROM orders")
[ "$src" = "$got" ] || { echo "MISMATCH: source $src, restored $got" >&2; exit 1; }
echo "OK: the restored database matches the source. The replica is readable by 'litestream restore $replica'."

echo
echo "== the VFS: an application writes through it; the database lives in the replica"
vreplica="file://$work/vfs-replica"
LITESTREAM_LOG_LEVEL=warn "$demo" write "$work/vfs/app.db" "$vreplica" 2000 | tail -1 | sed 's/^/last committed id: /'
echo "status: $(cat "$work/vfs/app.db-status.json")"
echo "== a fresh process on another path reads it from the replica (ranged reads)"
echo "rows max_id integrity: $(LITESTREAM_LOG_LEVEL=warn "$demo" count "$work/reader/app.db" "$vreplica")"
"$hydrator" ls --replica "$vreplica" > "$work/vfs-ls.txt"
head -3 "$work/vfs-ls.txt"
"$hydrator" --log-level warn restore --replica "$vreplica" -o "$work/vfs-restored.db"
echo "restored rows: $(sql "$work/vfs-restored.db" "SELECT count(*) FROM t")"

# --- On Kubernetes: the local single-node cluster the project builds (needs root) ---
if [ "${SQLITE_KUBE_QUICKSTART_CLUSTER:-1}" != 1 ]; then
  echo; echo "(skipping the local cluster: SQLITE_KUBE_QUICKSTART_CLUSTER=0)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo; echo "(skipping the local cluster: it needs root for its network namespace, containerd and the kubelet)"; exit 0
fi
echo
echo "== Kubernetes: a local single-node cluster (binaries built once from Debian's kubernetes source and cached; ~15 min the first time)"
bash "$root/scripts/k8s-testenv.sh" install-node
cargo build --quiet --release -p operator -p hydrator -p vfs -p preload -p sqlitekube-demo --manifest-path "$root/Cargo.toml"
python3 "$root/scripts/images.py" build --bin-dir "$root/target/release" --out "$work/images"
cluster="$work/cluster"
SQLITE_KUBE_CLUSTER_DIR="$cluster" bash "$root/scripts/k8s-cluster.sh" start >"$work/cluster.env"
. "$work/cluster.env"
bash "$root/scripts/k8s-cluster.sh" load "$work/images/operator.tar" "$work/images/hydrator.tar" "$work/images/demo.tar"
echo "== install the operator as a user would: kubectl apply -k config/legacy (the cluster is 1.20)"
kubectl apply -k "$root/config/legacy"
kubectl -n sqlite-kube-system rollout status deployment/sqlite-kube-operator --timeout=180s
echo "== a database on the cluster's S3 store (SeaweedFS at $SQLITE_KUBE_CLUSTER_S3) and the sample app"
curl -fsS -X POST "$SQLITE_KUBE_CLUSTER_S3_FILER/buckets/quickstart/" >/dev/null
kubectl apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: s3-creds, namespace: default}
stringData: {AWS_ACCESS_KEY_ID: testkey, AWS_SECRET_ACCESS_KEY: testsecret}
---
apiVersion: sqlitekube.dev/v1alpha1
kind: SqliteDatabase
metadata: {name: orders, namespace: default}
spec:
  replica:
    s3: {bucket: quickstart, path: default/orders, endpoint: "$SQLITE_KUBE_CLUSTER_S3", region: us-east-1,
         forcePathStyle: true, credentialsSecretRef: {name: s3-creds}}
  syncInterval: 1s
YAML
kubectl apply -f "$root/config/samples/app-rbac.yaml" -f "$root/config/samples/app-deployment.yaml"
kubectl rollout status deployment/orders-app --timeout=180s
sleep 5
url="s3://quickstart/default/orders?endpoint=$SQLITE_KUBE_CLUSTER_S3&region=us-east-1&forcePathStyle=true"
echo "== what to look at"
echo "\$ kubectl get pods -o wide";           kubectl get pods -o wide
echo "\$ kubectl get sqldb";                  kubectl get sqldb
echo "\$ kubectl get lease orders-writer";    kubectl get lease orders-writer
# The plugin, as kubectl finds it on PATH.
export PATH="$root/target/release:$PATH"
echo "\$ kubectl sqlite status";              kubectl sqlite status
echo "\$ hydrator ls --replica $url"
AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret "$hydrator" ls --replica "$url" > "$work/cluster-ls.txt"
tail -5 "$work/cluster-ls.txt"
echo
echo "The cluster keeps running. Use it with:  export KUBECONFIG=$KUBECONFIG PATH=$root/target/release:\$PATH"
echo "Then: kubectl sqlite status | kubectl sqlite switchover orders | kubectl rollout restart deployment/orders-app"
echo "Stop it (every process by PID, its network namespace and mounts) with:"
echo "  sudo SQLITE_KUBE_CLUSTER_DIR=$cluster $root/scripts/k8s-cluster.sh stop"
