#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need (idempotent),
# checks formatting and lints, then every unit and integration test.
# Integration tests start the real binaries and servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/setup-test-deps.sh ]; then
  ./scripts/setup-test-deps.sh
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
