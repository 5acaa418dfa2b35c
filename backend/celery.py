"""Celery workers run the same registered tasks as the in-process runner.

Start one with: celery -A backend worker --loglevel=INFO (with CELERY_BROKER_URL set).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

import django  # noqa: E402

django.setup()

from celery import Celery  # noqa: E402
from django.conf import settings  # noqa: E402

from backend.core.tasks import REGISTRY  # noqa: E402

app = Celery("backend", broker=settings.CELERY_BROKER_URL or None)
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                task_serializer="json", accept_content=["json"])

for _name, _fn in REGISTRY.items():
    app.task(name=_name, bind=False)(_fn)
