"""The test profile: every part in-process (SQLite file, in-memory layer, local files, thread pool)."""

import os

os.environ["DJANGO_ENV"] = "test"
for _name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND", "EMAIL_HOST", "OPENAI_API_KEY",
              "OPENAI_BASE_URL", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_BASE_URL",
              "RAG_GENERATOR"):
    os.environ.pop(_name, None)

from .settings import *  # noqa: E402,F403
