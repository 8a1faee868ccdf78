#!/usr/bin/env bash
# tus-js-client 4.3.1, @uppy/core 6.3.1 and @uppy/tus 6.0.0 for the Node client tests
# (tests/clients/node-tus/package.json pins them). Idempotent: skips npm when node_modules matches.
set -euo pipefail
cd "$(dirname "$0")/../../tests/clients/node-tus"
command -v npm >/dev/null 2>&1 || { echo "node-tus: npm not found; the tus-js-client/Uppy tests will be skipped" >&2; exit 0; }
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package.json ] \
   && [ -d node_modules/tus-js-client ] && [ -d node_modules/@uppy/tus ]; then
  exit 0
fi
npm install --no-audit --no-fund --loglevel=error
