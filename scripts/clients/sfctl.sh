#!/usr/bin/env bash
# sfctl 11.2.1 (the Service Fabric CLI) in its own venv: it pins azure-servicefabric, knack, adal, msrestazure...
# that must stay out of chunkd's environment. Idempotent: does nothing when the right version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-sfctl
marker="$venv/.chunkd-sfctl-11.2.1"
if [ -f "$marker" ] && [ -x "$venv/bin/sfctl" ]; then
  exit 0
fi
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
[ -x "$venv/bin/python" ] || uv venv -q "$venv" --python 3.11
# sfctl imports pkg_resources, which setuptools 81 removes.
# Bytecode compiled once here: every sfctl run imports ~500 modules, and with PYTHONDONTWRITEBYTECODE set
# (as on CI machines) Python would otherwise recompile them all on every run (~3 s each time).
uv pip install -q --python "$venv/bin/python" 'sfctl==11.2.1' 'setuptools<81'
"$venv/bin/python" -m compileall -q -j 0 "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
"$venv/bin/python" -W ignore -c 'import importlib.metadata as m, sys, pkg_resources; sys.exit(m.version("sfctl") != "11.2.1")'
touch "$marker"
