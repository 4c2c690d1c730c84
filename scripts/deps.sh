#!/usr/bin/env bash
# Installs the Debian packages the tests use: real SOCKS clients (curl, ncat, python3-socks,
# python3-prometheus-client to parse /metrics, prlimit and unshare from util-linux, dnsmasq
# as the DNS server of the srchost tests,
# socksify from dante-client), danted for differential tests, microsocks for benchmarks.
set -euo pipefail
pkgs=(curl ncat python3-socks python3-prometheus-client util-linux dnsmasq-base dante-server dante-client socat microsocks procps iproute2 haproxy systemd man-db binutils libpam0g-dev libwrap0-dev libcrypt-dev passwd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
