#!/usr/bin/env bash
# @tus/server 2.4.5 + @tus/file-store (tests/clients/tus_server/package.json) for the chunkd client's tus tests.
# Idempotent: skips npm when node_modules is newer than package.json.
set -euo pipefail
cd "$(dirname "$0")/../../tests/clients/tus_server"
command -v npm >/dev/null 2>&1 || { echo "tus-server: npm not found; the @tus/server tests will be skipped" >&2; exit 0; }
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package.json ] \
   && [ -d node_modules/@tus/server ] && [ -d node_modules/@tus/file-store ]; then
  exit 0
fi
npm install --no-audit --no-fund --loglevel=error
