#!/usr/bin/env bash
# Lints: formatting and clippy with warnings as errors, for every target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
