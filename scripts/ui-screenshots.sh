#!/usr/bin/env bash
# Screenshots of the web UI for the docs (docs/ui/*.png), from a zoocore
# started on free loopback ports with a small Kafka-like tree, in headless
# Chromium. Needs scripts/install-deps.sh (Chromium, chromedriver, the venv
# with kazoo and selenium); builds target/debug/zoocore if missing
# (ZOOCORE_BIN picks another binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${ZOOCORE_BIN:-}" && ! -x target/debug/zoocore ]]; then
    cargo build -p zoocore --features kerberos
fi
exec .venv/bin/python scripts/ui_screenshots.py
