#!/usr/bin/env bash
# TLS against plaintext, zoocore and Apache ZooKeeper each on both of its
# ports: installs what is missing (scripts/install-deps.sh: ZooKeeper,
# openssl), builds zoocore, loadgen and the tls tool, and writes the "TLS
# against plaintext" section of benches/RESULTS.md. Arguments go to the tls
# tool (`--help` lists them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p zoocore -p zoocore-loadgen -p zoocore-benches --bins
target/release/tls "$@"
