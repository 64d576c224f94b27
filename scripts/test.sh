#!/usr/bin/env bash
# Runs every check the project has: installs the test dependencies (Apache
# ZooKeeper, kazoo; idempotent), then formatting, clippy, and the whole test
# suite, including the differential test against Apache ZooKeeper.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
