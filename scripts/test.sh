#!/usr/bin/env bash
# Runs every test of xvs: formatting and lints, the unit, golden and property tests of the core,
# and (as root) the dataplane and end-to-end tests in network namespaces, and the Debian package
# built, installed into a throwaway root, run and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== the Debian package (scripts/package.sh; installed and removed by crates/xvs-package/tests)"
deb=$(./scripts/package.sh | tail -1)
export XVS_DEB="$PWD/$deb"
echo "== cargo test"
cargo test --workspace --quiet
echo "== all tests passed"
