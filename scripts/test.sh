#!/usr/bin/env bash
# Runs every check the project has: installs the test dependencies (Apache
# ZooKeeper, kazoo; idempotent), then formatting, clippy, the whole Rust test
# suite (including the differential tests against Apache ZooKeeper), and the
# kazoo suite, which runs against both zoocore and Apache ZooKeeper.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --all-features -- -D warnings
cargo test --workspace --locked --all-features
bash scripts/test-kazoo.sh
