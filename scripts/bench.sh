#!/usr/bin/env bash
# The xvs benchmark: xvs (NAT and direct routing) against iptables as kube-proxy writes it,
# nftables with a verdict map, HAProxy in TCP mode and a bare XDP forwarder, for 1, 1000,
# 10000 and 100000 services, in a network-namespace lab. Needs root; about 15 minutes
# (`--quick`: about 1 minute). Results: bench-results/<time>/ (JSON, markdown, PNG plots).
# Extra arguments go to xvs-bench (see `target/release/xvs-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --quiet -p xvsd -p xvsadm -p xvs-bench
exec target/release/xvs-bench "$@"
