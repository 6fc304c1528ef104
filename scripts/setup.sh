#!/usr/bin/env bash
# Installs what xvs needs on a Debian 12 machine, as root. Idempotent and quiet: packages that
# are present are not touched, and apt runs only when something is missing.
set -euo pipefail

packages=(
  clang llvm libbpf-dev bpftool          # compile and inspect the eBPF programs
  iproute2 iptables nftables ethtool     # network-namespace labs and the benchmark's peers
  iputils-ping curl nginx-light wrk      # real clients and servers in end-to-end tests
  iperf3 haproxy python3 python3-matplotlib  # throughput tests, the HAProxy peer, plotting
  hping3                                 # spoofed SYN floods in the flood lab test
  keepalived                             # the VRRP peer of the failover tests
  bird2                                  # the BGP speakers of the scale-out lab
  tmux chromium                          # a terminal and a browser for xvsadm top and the status page
  dpkg-dev binutils                      # the Debian package (dpkg-shlibdeps, strip)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx-light starts a service on installation on some systems; the tests run their own.
# So do keepalived where it finds a configuration and BIRD; the tests start their own, in
# namespaces.
for svc in nginx keepalived bird; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
