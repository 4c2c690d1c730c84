#!/usr/bin/env bash
# Runs rsockd in the foreground on its built-in safe default: listening on 127.0.0.1:1080
# only, clients only from loopback, so it is never an open proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
conf=$(mktemp --suffix=.conf)
trap 'rm -f "$conf"' EXIT
target/release/rsockd --print-default-config > "$conf"
echo "rsockd: listening on 127.0.0.1:1080 (loopback clients only). Try, in another shell:"
echo "  curl --socks5-hostname 127.0.0.1:1080 http://example.org/"
echo "Stop with Ctrl-C."
exec target/release/rsockd -f "$conf" -p "${TMPDIR:-/tmp}/rsockd.pid"
