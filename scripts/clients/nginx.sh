#!/usr/bin/env bash
# Debian's nginx-light for the reverse-proxy test of deploy/nginx.conf (tests/e2e/test_nginx_proxy.py) and the
# bench's nginx peer. Idempotent: does nothing when nginx exists. The package's own service is not started
# (a temporary policy-rc.d refuses it): the test runs its own nginx on a free port.
set -euo pipefail
command -v nginx >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/nginx ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "nginx missing and not root: the nginx reverse-proxy test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get -o DPkg::Lock::Timeout=600 install -y -q nginx-light >/dev/null 2>&1 || {
  apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -q nginx-light >/dev/null; }
