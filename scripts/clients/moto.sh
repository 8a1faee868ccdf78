#!/usr/bin/env bash
# moto 5.2.5 in server mode (an S3 emulator for the S3 byte-store tests and bench/object_store_clients.py) in
# its own venv: Flask, Werkzeug and moto's other pins stay out of chunkd's environment. It enforces the S3
# rules chunkd's assembly depends on (EntityTooSmall, UploadPartCopy with ranges, ListParts, abort).
# Idempotent: does nothing when the right version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-moto
if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("moto") != "5.2.5")' 2>/dev/null; then
  exit 0
fi
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
[ -x "$venv/bin/python" ] || uv venv -q "$venv" --python 3.11
uv pip install -q --python "$venv/bin/python" 'moto[server]==5.2.5'
