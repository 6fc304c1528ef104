#!/usr/bin/env bash
# Builds xvsd and xvsadm and installs them with the systemd unit, as root:
#   /usr/local/sbin/{xvsd,xvsadm,xvs-decap} (xvs-decap is for tunnel real servers), /etc/systemd/system/xvsd.service,
#   /etc/default/xvsd and /etc/xvs/xvs.toml (kept if present).
# Then edit /etc/default/xvsd (interfaces) and run `systemctl enable --now xvsd`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --quiet -p xvsd -p xvsadm
install -m 0755 target/release/xvsd target/release/xvsadm target/release/xvs-decap /usr/local/sbin/
install -m 0644 packaging/xvsd.service /etc/systemd/system/xvsd.service
[ -e /etc/default/xvsd ] || install -m 0644 packaging/xvsd.default /etc/default/xvsd
install -d -m 0755 /etc/xvs
[ -e /etc/xvs/xvs.toml ] || install -m 0644 packaging/xvs.toml /etc/xvs/xvs.toml
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed: set the interfaces in /etc/default/xvsd, then: systemctl enable --now xvsd"
