#!/usr/bin/env bash
# Headless Chromium for the fleet page's browser tests (tests/server/fleet_browser.rs).
set -euo pipefail
if ! command -v chromium >/dev/null; then
  apt-get update && apt-get install -y chromium chromium-driver
fi
