#!/usr/bin/env bash
# The benchmark in one command on a fresh machine: installs danted and microsocks (the peers it
# compares against), builds release binaries (debug numbers mean nothing) and runs
# rsockd-bench with any arguments given, e.g. `scripts/bench.sh --quick --rounds 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked -q -p rsockd -p rsockd-bench
exec target/release/rsockd-bench "$@"
