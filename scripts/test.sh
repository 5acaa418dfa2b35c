#!/usr/bin/env bash
# Install into .venv and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3.11 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
export DJANGO_ENV=test
exec .venv/bin/python -m pytest "$@"
