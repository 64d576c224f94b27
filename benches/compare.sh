#!/usr/bin/env bash
# The standard benchmark matrix, zoocore vs Apache ZooKeeper on this
# machine: installs Apache ZooKeeper if missing (scripts/install-deps.sh),
# builds zoocore, loadgen and the compare tool, runs the matrix and writes
# benches/RESULTS.md, then the ensemble section (3 members each: throughput
# and failover; target/release/ensemble). Arguments go to the compare tool
# (`--help` lists them; `--headline` runs only the README's rows and skips
# the ensemble section).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p zoocore -p zoocore-loadgen -p zoocore-benches --bins
target/release/compare "$@"
case " $* " in
    *" --headline "*) ;;
    *) target/release/ensemble ;;
esac
