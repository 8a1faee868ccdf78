#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser test (Playwright drives it by executable_path; Playwright's
# own browser download is never used). Idempotent: does nothing when /usr/bin/chromium exists. Slow the
# first time (~150 MB of packages).
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "chromium missing and not root: the dashboard browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium >/dev/null 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium >/dev/null; }
