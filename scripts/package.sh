#!/usr/bin/env bash
# Builds a Debian package of rsockd: target/debian/rsockd_VERSION_ARCH.deb (release build,
# systemd units, the safe default /etc/rsockd.conf, logrotate, man pages). Plain dpkg-deb:
# nothing to install but what Debian has.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
cargo build --release --locked -p rsockd
stage=target/debian/rsockd_${version}_${arch}
rm -rf "$stage"
install -D -m 0755 target/release/rsockd "$stage/usr/sbin/rsockd"
# The release profile keeps debug info for profiling; the package does not need it.
if command -v strip >/dev/null; then strip --strip-debug "$stage/usr/sbin/rsockd"; fi
install -D -m 0644 packaging/rsockd.service "$stage/lib/systemd/system/rsockd.service"
install -D -m 0644 packaging/rsockd.socket "$stage/lib/systemd/system/rsockd.socket"
install -D -m 0644 packaging/rsockd.conf "$stage/etc/rsockd.conf"
install -D -m 0644 packaging/rsockd.logrotate "$stage/etc/logrotate.d/rsockd"
install -d "$stage/usr/share/man/man8" "$stage/usr/share/man/man5" "$stage/usr/share/doc/rsockd"
gzip -9n -c packaging/man/rsockd.8 > "$stage/usr/share/man/man8/rsockd.8.gz"
gzip -9n -c packaging/man/rsockd.conf.5 > "$stage/usr/share/man/man5/rsockd.conf.5.gz"
cat > "$stage/usr/share/doc/rsockd/copyright" <<'TXT'
rsockd is distributed under the BSD 3-clause licence. It reads configuration files written
for Dante (Copyright (c) Inferno Nettverk A/S); rsockd contains no Dante code.
TXT
install -d "$stage/DEBIAN"
echo /etc/rsockd.conf > "$stage/DEBIAN/conffiles"
echo /etc/logrotate.d/rsockd >> "$stage/DEBIAN/conffiles"
size=$(du -sk "$stage" --exclude=DEBIAN | cut -f1)
cat > "$stage/DEBIAN/control" <<TXT
Package: rsockd
Version: ${version}
Architecture: ${arch}
Maintainer: rsockd developers <rsockd@localhost>
Depends: libc6, libpam0g, libcrypt1, libwrap0
Section: net
Priority: optional
Installed-Size: ${size}
Description: SOCKS v4/v4a/v5 proxy server that reads Dante's sockd.conf
 A drop-in for Dante's sockd (danted): the same configuration file, command line,
 signals and log lines, with process-level redundancy (-N), graceful stop,
 zero-downtime upgrades, systemd readiness and socket activation.
TXT
cat > "$stage/DEBIAN/postinst" <<'TXT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
TXT
chmod 0755 "$stage/DEBIAN/postinst"
dpkg-deb --root-owner-group --build "$stage" >/dev/null
echo "$stage.deb"
