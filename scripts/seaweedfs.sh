#!/usr/bin/env bash
# Starts/stops a SeaweedFS S3 gateway on 127.0.0.1 for tests (binary from scripts/test-deps.sh).
#
#   eval "$(scripts/seaweedfs.sh start DIR)"   # exports TEST_S3_ENDPOINT, TEST_S3_FILER, SEAWEEDFS_PID
#   scripts/seaweedfs.sh stop DIR              # stops the server started in DIR (by its PID) and removes DIR
set -euo pipefail
cmd="${1:?usage: seaweedfs.sh start|stop DIR}"
dir="${2:?usage: seaweedfs.sh start|stop DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
weed="${WEED_BIN:-$root/.deps/seaweedfs/bin/weed}"
# The address to serve on (default 127.0.0.1; the local cluster uses its node's address
# inside its own network namespace).
ip="${SEAWEEDFS_IP:-127.0.0.1}"

free_pair() { # a port p with p and p+10000 free (SeaweedFS's gRPC port is p+10000)
  python3 - "$ip" <<'PY'
import random, socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind((sys.argv[1], p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randrange(20000, 45000)
    if free(p) and free(p + 10000):
        print(p); break
PY
}

case "$cmd" in
start)
  [ -x "$weed" ] || { echo "seaweedfs.sh: $weed missing; run scripts/test-deps.sh" >&2; exit 1; }
  mkdir -p "$dir/data"
  cat > "$dir/s3.json" <<'JSON'
{"identities":[{"name":"test","credentials":[{"accessKey":"testkey","secretKey":"testsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  s3=$(free_pair); filer=$(free_pair); master=$(free_pair); volume=$(free_pair)
  # Each bucket is a collection growing its own volumes: one at a time (not 7), and room for
  # the hundreds of buckets the tests make (the default cap is 8 volumes). By default every
  # volume turns read-only (PUT -> 500 InternalError) when the disk has < 1% free, which on a
  # big shared disk is gigabytes while a cargo build is still writing: the floor is 256 MiB.
  WEED_MASTER_VOLUME_GROWTH_COPY_1=1 "$weed" -logdir="$dir" server -ip="$ip" -ip.bind="$ip" -dir="$dir/data" \
    -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
    -s3 -s3.port="$s3" -s3.config="$dir/s3.json" -master.volumeSizeLimitMB=64 -volume.max=2000 \
    -volume.minFreeSpace=256MiB \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    >"$dir/weed.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$dir/pid"
  for _ in $(seq 1 300); do
    if python3 - "$s3" "$filer" "$ip" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
s3, filer, ip = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    urllib.request.urlopen(f"http://{ip}:{s3}/", timeout=2)
except urllib.error.HTTPError:
    pass  # 403 to an unsigned request: the gateway is up
# Plain POST without a Content-Type (urllib would add a form type, which the filer refuses).
import http.client
c = http.client.HTTPConnection(ip, int(filer), timeout=2)
c.request("POST", "/buckets/.ready/", body=b"")
sys.exit(0 if c.getresponse().status < 300 else 1)
PY
    then
      echo "export TEST_S3_ENDPOINT=http://$ip:$s3"
      echo "export TEST_S3_FILER=http://$ip:$filer"
      echo "export SEAWEEDFS_PID=$pid"
      exit 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "seaweedfs.sh: weed exited; log:" >&2; tail -20 "$dir/weed.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "seaweedfs.sh: not ready after 60s; log:" >&2; tail -20 "$dir/weed.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*) echo "usage: seaweedfs.sh start|stop DIR" >&2; exit 2 ;;
esac
