#!/usr/bin/env bash
# Runs the kazoo suite (server/tests/kazoo): kazoo's recipes and API with
# concurrent clients, once against zoocore and once against Apache ZooKeeper.
# Needs scripts/install-deps.sh to have run (venv with kazoo and pytest,
# ZooKeeper). Builds target/debug/zoocore first if it is missing; set
# ZOOCORE_BIN to test another binary. Extra arguments go to pytest
# (e.g. -k zoocore, -x, -v). The exit code is pytest's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${ZOOCORE_BIN:-}" && ! -x target/debug/zoocore ]]; then
    cargo build -p zoocore --features kerberos
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "test-kazoo: .venv missing; run scripts/install-deps.sh" >&2
    exit 2
fi

exec .venv/bin/python -m pytest -q server/tests/kazoo "$@"
