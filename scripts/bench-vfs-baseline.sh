#!/usr/bin/env bash
# The VFS benchmark with before/after ratios from one run: builds the benchmark at a
# baseline commit (default: the previous commit touching vfs/) in a temporary worktree,
# then runs this tree's benchmark with BENCH_BASELINE pointing at it.
#   scripts/bench-vfs-baseline.sh [<baseline commit>]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
base="${1:-$(git log -n 1 --format=%H HEAD~1 -- vfs)}"
eval "$(scripts/test-deps.sh)"
export LITESTREAM_BIN WEED_BIN LITESTREAM_VFS_SO
work="$(mktemp -d "${TMPDIR:-/tmp}/vfs-baseline.XXXXXX")"
trap 'git worktree remove --force "$work/tree" 2>/dev/null || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/tree" "$base" >/dev/null
start=$(date +%s)
exe="$(cd "$work/tree" && CARGO_TARGET_DIR="$work/target" cargo bench -p sqlitekube-demo --bench vfs --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="vfs" and m.get("executable"): print(m["executable"])' | tail -n1)"
echo "baseline $base built in $(( $(date +%s) - start )) s: $exe"
cp "$exe" "$work/baseline-bench"
BENCH_BASELINE="$work/baseline-bench" cargo bench -p sqlitekube-demo --bench vfs
