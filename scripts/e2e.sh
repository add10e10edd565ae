#!/usr/bin/env bash
# The end-to-end suite alone: starts SeaweedFS and a local API server (unless KUBECONFIG
# names a cluster whose API server runs on this host), builds the binaries, and runs e2e/
# with its summaries printed. E2E_ROUNDS (default 50) sets the race/drain rounds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# --nocapture: each test prints a one-line summary (rows, hand-off times, what was refused).
exec scripts/with-test-servers.sh bash -c \
  'cargo build --workspace --bins && cargo test -p e2e -- --nocapture'
