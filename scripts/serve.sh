#!/usr/bin/env bash
# Install into .venv, migrate and serve the API with GraphiQL on http://127.0.0.1:8000/graphql/
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3.11 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
# GraphiQL's scripts are served from this project, not a CDN: install them from the npm registry.
npm ci --prefix backend/graphiql --no-audit --no-fund --loglevel=error
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py prepare_models  # ONNX exports of the embedding model, once
exec .venv/bin/python -m backend.serve -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" backend.asgi:application
