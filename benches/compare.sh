#!/usr/bin/env bash
# The standard benchmark matrix, zoocore vs Apache ZooKeeper on this
# machine: installs Apache ZooKeeper if missing (scripts/install-deps.sh),
# builds zoocore, loadgen and the compare tool, runs the matrix and writes
# benches/RESULTS.md. Arguments go to the compare tool (`--help` lists them;
# `--headline` runs only the README's rows).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p zoocore -p zoocore-loadgen -p zoocore-benches --bins
exec target/release/compare "$@"
