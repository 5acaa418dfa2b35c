"""Celery workers run the same registered tasks as the in-process runner.

Start one with: celery -A backend worker --loglevel=INFO --concurrency=2 (with CELERY_BROKER_URL
set), the command of docker-compose.yml; every pool works (prefork, the default, included: text
extraction runs in a subprocess, not a multiprocessing child). A task is acknowledged after it
finishes and rejected back to the queue when its pool process dies; a message whose whole worker
died is redelivered after CELERY_VISIBILITY_TIMEOUT, and the web processes' ingestion sweep
requeues such documents sooner (backend/documents/recovery.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

import django  # noqa: E402

django.setup()

from celery import Celery, signals  # noqa: E402
from django.conf import settings  # noqa: E402

from backend.core.tasks import REGISTRY  # noqa: E402
from backend.documents.engines import startup_check  # noqa: E402

startup_check()

app = Celery("backend", broker=settings.CELERY_BROKER_URL or None)
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                task_serializer="json", accept_content=["json"],
                broker_transport_options={"visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT},
                broker_connection_retry_on_startup=True)

for _name, _fn in REGISTRY.items():
    app.task(name=_name, bind=False)(_fn)


@signals.task_prerun.connect
def _bind_log_ids(task=None, **_):
    """The ids of the request or operation that queued the task, on the task's logs."""
    from structlog.contextvars import bind_contextvars, clear_contextvars

    clear_contextvars()
    ids = task.request.get("log_ids") if task is not None else None
    if isinstance(ids, dict):
        bind_contextvars(**{k: str(v)[:64] for k, v in ids.items() if k.endswith("_id")})


@signals.task_postrun.connect
def _send_events(**_):
    """A task's events are handed to the process's event loop without waiting; they are out before
    the task counts as done (and before a pool process that is recycled exits)."""
    from backend.core import events

    events.flush(10)
