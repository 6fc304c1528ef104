#!/usr/bin/env bash
# Runs every test of xvs: formatting and lints, the unit, golden and property tests of the core,
# and (as root) the dataplane and end-to-end tests in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --quiet
echo "== all tests passed"
