#!/usr/bin/env bash
# msgraph-beta-sdk 1.66.0 (with msgraph-core's LargeFileUploadTask, kiota, httpx, azure-identity) in its own venv:
# it is a large install (~750 MB) with its own pins, so it stays out of chunkd's environment.
# Idempotent: does nothing when the right version is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-msgraph
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("msgraph-beta-sdk") != "1.66.0")' 2>/dev/null; then
  exit 0
fi
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
[ -x "$venv/bin/python" ] || uv venv -q "$venv" --python 3.11
uv pip install -q --python "$venv/bin/python" 'msgraph-beta-sdk==1.66.0'
