#!/usr/bin/env bash
# tuspy 1.1.0 (the official Python tus client) in its own venv: its pins (requests, aiohttp, tinydb) stay
# out of chunkd's environment. Idempotent: does nothing when the right version is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-tuspy
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("tuspy") != "1.1.0")' 2>/dev/null; then
  exit 0
fi
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
[ -x "$venv/bin/python" ] || uv venv -q "$venv" --python 3.11
uv pip install -q --python "$venv/bin/python" 'tuspy==1.1.0'
