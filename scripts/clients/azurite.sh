#!/usr/bin/env bash
# Azurite 3.35.0: the Blob reference server of tests/clients/test_azurite_diff.py and the Azure Blob server the
# azure byte store's tests run against (tests/azurite.py starts it). Idempotent: nothing to do once
# node_modules matches package.json. 3.35.0 is the last release that runs on Node 20.
set -euo pipefail
cd "$(dirname "$0")/../../tests/clients/azurite"
if ! command -v npm >/dev/null 2>&1; then
  echo "azurite.sh: npm not found; the Azurite differential test will be skipped" >&2
  exit 0
fi
if [ -x node_modules/.bin/azurite-blob ] && grep -q '"version": "3.35.0"' node_modules/azurite/package.json 2>/dev/null; then
  exit 0
fi
npm install --no-audit --no-fund --silent
