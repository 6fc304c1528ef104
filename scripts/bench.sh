#!/usr/bin/env bash
# The xvs benchmark: xvs (NAT, direct routing, tunnels) against iptables as kube-proxy writes it,
# nftables with a verdict map, HAProxy in TCP mode, Katran (built from third_party/katran; the
# per-packet yardstick) and a bare XDP forwarder, for 1, 1000,
# 10000 and 100000 services, in a network-namespace lab. Needs root; about 15 minutes
# (`--quick`: about 1 minute). Results: bench-results/<time>/ (JSON, markdown, PNG plots).
# Extra arguments go to xvs-bench (see `target/release/xvs-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --quiet -p xvsd -p xvsadm -p xvs-bench
exec target/release/xvs-bench "$@"
