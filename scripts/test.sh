#!/usr/bin/env bash
# Install into .venv and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The scale-out tests start a real Redis server (Debian's package).
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
fi
[ -x .venv/bin/python ] || python3.11 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
export DJANGO_ENV=test
exec .venv/bin/python -m pytest "$@"
