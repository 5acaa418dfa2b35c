"""The test profile: every part in-process (SQLite file, in-memory layer, local files, thread pool).

``TEST_DATABASE_URL`` (e.g. a PostgreSQL server) points the suite at another database; the
deployment tests (tests/test_deployment.py) start their own PostgreSQL whatever this says.
"""

import os

os.environ["DJANGO_ENV"] = "test"
_test_database = os.environ.get("TEST_DATABASE_URL")
for _name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND", "EMAIL_HOST", "OPENAI_API_KEY",
              "OPENAI_BASE_URL", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_BASE_URL",
              "RAG_GENERATOR"):
    os.environ.pop(_name, None)

if _test_database:
    os.environ["DATABASE_URL"] = _test_database

from .settings import *  # noqa: E402,F403
