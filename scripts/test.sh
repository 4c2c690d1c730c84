#!/usr/bin/env bash
# Runs every test: installs what the tests need, then the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=4
# The benchmark is not a test, but a short run keeps it from rotting: it must start every
# proxy and complete each scenario (no thresholds; numbers from debug builds mean nothing).
target/debug/rsockd-bench --quick --rounds 1 --strict >/dev/null
# The Debian package: builds, installs, and its config, man pages and units check out.
scripts/check-package.sh
