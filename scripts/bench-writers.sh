#!/usr/bin/env bash
# Writer benchmark: webhook admission latency and drain hand-off time on a real API server
# (started here unless KUBECONFIG names one) and SeaweedFS; prints ratios to baselines.
#   BENCH_PODS=200 BENCH_HANDOFFS=10 scripts/bench-writers.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec scripts/with-test-servers.sh bash -c \
  'cargo build --release --workspace --bins && cargo bench -p e2e --bench writers'
