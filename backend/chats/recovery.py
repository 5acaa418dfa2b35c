"""Answers whose process died while writing them: INTERRUPTED with the text saved so far (and
chats whose import stopped midway: removed).

A job saves its answer every half second and touches it every few seconds (``saves``); an
answer STREAMING and untouched for STREAM_STALE_AFTER has no process left. Web processes sweep
for them periodically; a process that is the only one (no shared channel layer: the embedded
set-up) finishes every STREAMING answer as it starts, since none can be running.
"""

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .imports import remove_abandoned_imports
from .models import Message

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "The server stopped while writing this answer; the text so far is kept."


def orphans(cutoff=None):
    """STREAMING answers untouched since ``cutoff`` (default: STREAM_STALE_AFTER s ago)."""
    if cutoff is None:
        cutoff = timezone.now() - timedelta(seconds=settings.STREAM_STALE_AFTER)
    return Message.objects.filter(status=Message.Status.STREAMING, updated_at__lte=cutoff)


def interrupt_orphans(cutoff=None) -> int:
    """Mark STREAMING answers untouched since ``cutoff`` (default: STREAM_STALE_AFTER s ago) INTERRUPTED."""
    count = orphans(cutoff).update(
        status=Message.Status.INTERRUPTED, error_message=INTERRUPTED_MESSAGE, updated_at=timezone.now())
    if count:
        logger.warning("%d answer(s) left STREAMING by a stopped process are now INTERRUPTED", count)
    return count


def start() -> threading.Thread | None:
    """At start-up, and every STREAM_SWEEP_INTERVAL s on a daemon thread of this web process."""
    from .saves import cross_process

    alone = not cross_process()
    started = timezone.now()

    def loop():
        first = True
        while True:
            try:
                # Alone, every answer STREAMING from before this process started is an orphan.
                interrupt_orphans(started if first and alone and settings.STREAM_RECOVER_ON_START else None)
                remove_abandoned_imports()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                logger.exception("the sweep for interrupted answers failed")
            finally:
                connection.close()
            first = False
            if settings.STREAM_SWEEP_INTERVAL <= 0:
                return
            time.sleep(settings.STREAM_SWEEP_INTERVAL)

    if settings.STREAM_SWEEP_INTERVAL <= 0 and not (alone and settings.STREAM_RECOVER_ON_START):
        return None
    thread = threading.Thread(target=loop, name="answer-sweeper", daemon=True)
    thread.start()
    return thread
