#!/usr/bin/env bash
# Builds the .deb and checks it as an administrator would: it installs with dpkg -i, the
# installed rsockd accepts the shipped configuration, both man pages render without warnings,
# and systemd-analyze accepts the units. Removes the package again (dpkg -r) even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(scripts/package.sh)
if [ "$(id -u)" -ne 0 ]; then
	echo "check-package: built $deb; installing it needs root, skipped" >&2
	exit 0
fi
cleanup() { dpkg -r rsockd >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null
/usr/sbin/rsockd -V -f /etc/rsockd.conf
diff -u <(/usr/sbin/rsockd --print-default-config) /etc/rsockd.conf
for page in rsockd.8 rsockd.conf.5; do
	warnings=$(MANWIDTH=80 man --warnings -l "packaging/man/$page" 2>&1 >/dev/null)
	[ -z "$warnings" ] || { echo "man $page: $warnings" >&2; exit 1; }
done
man -w rsockd >/dev/null && man -w rsockd.conf >/dev/null
systemd-analyze verify /lib/systemd/system/rsockd.service /lib/systemd/system/rsockd.socket
echo "check-package: $deb installs, -V accepts /etc/rsockd.conf, man pages and units verified"
