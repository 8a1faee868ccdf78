#!/usr/bin/env bash
# rclone from Debian (bookworm: 1.60.1) for tests/clients/test_rclone.py: its azureblob backend is the Azure Go
# SDK, which reads a URL on an IP host as /{account}/{container}/{blob} (the emulator layout).
# Idempotent: does nothing once rclone is on PATH.
set -euo pipefail
if command -v rclone >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "rclone.sh: rclone not found and apt-get unusable here; the rclone test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# an up-to-date package list is needed only if the cached one lost the package
apt-get -o DPkg::Lock::Timeout=600 -y -qq install --no-install-recommends rclone >/dev/null 2>&1 \
  || { apt-get -o DPkg::Lock::Timeout=600 -qq update >/dev/null && apt-get -o DPkg::Lock::Timeout=600 -y -qq install --no-install-recommends rclone >/dev/null; }
