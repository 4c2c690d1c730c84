#!/usr/bin/env bash
# Runs every test: installs what the tests need, then the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=4
