#!/usr/bin/env bash
# The xvs demo: builds xvsd, xvsadm and the lab, then balances real HTTP requests between two
# nginx servers in network namespaces, in direct-routing and in NAT mode. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --quiet -p xvsd -p xvsadm -p xvs-demo
exec target/release/xvs-demo
