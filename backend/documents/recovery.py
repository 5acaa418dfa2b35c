"""Ingestion that survives its worker: a lease on each document, a heartbeat, a periodic sweep.

A task claims a document before it works on it (PENDING, or PROCESSING with a lapsed heartbeat)
and touches ``heartbeat_at`` while it runs. A worker that dies (SIGKILL, OOM, a lost host) stops
the heartbeat; the sweep, run every INGEST_SWEEP_INTERVAL by each web process whatever the task
runner, puts such documents back to PENDING and queues them again, or fails them with
``INTERRUPTED`` after INGEST_MAX_ATTEMPTS claims. Every transition is a compare-and-set on the
row, so any number of sweepers and redelivered messages start one run at a time, and a re-run
replaces a half-done run's chunks (see ``ingest``).
"""

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from .models import Document
from .codes import DocumentErrorCode

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = ("Processing this file was interrupted {n} times (the worker stopped). Upload it again, or "
                       "split it if it is very large.")


def claim(document_id: int) -> Document | None:
    """Take the lease on a document, or None when it is finished or another run holds it."""
    now = timezone.now()
    lapsed = now - timedelta(seconds=settings.INGEST_STALE_AFTER)
    claimable = Q(status=Document.Status.PENDING) | Q(status=Document.Status.PROCESSING) & (
        Q(heartbeat_at__lt=lapsed) | Q(heartbeat_at__isnull=True))
    updated = Document.objects.filter(claimable, pk=document_id).update(
        status=Document.Status.PROCESSING, stage="extracting", progress=5, error_code="", error_message="",
        heartbeat_at=now, updated_at=now, attempts=F("attempts") + 1)
    return Document.objects.filter(pk=document_id).first() if updated else None


def release(document_id: int) -> None:
    """Give a run's lease back (its process is exiting): PENDING again, for the next start or worker."""
    Document.objects.filter(pk=document_id, status=Document.Status.PROCESSING).update(
        status=Document.Status.PENDING, stage="requeued", heartbeat_at=timezone.now(), attempts=F("attempts") - 1)


@contextmanager
def heartbeat(document_id: int):
    """Touch the lease every INGEST_HEARTBEAT seconds while the body runs (extraction can be long)."""
    stop = threading.Event()

    def beat():
        while not stop.wait(settings.INGEST_HEARTBEAT):
            try:
                Document.objects.filter(pk=document_id, status=Document.Status.PROCESSING).update(
                    heartbeat_at=timezone.now())
            except Exception:  # the next beat tries again; a lapsed lease only means a redelivery
                logger.warning("heartbeat of document %s failed", document_id, exc_info=True)
            finally:
                connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{document_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _lost() -> Q:
    now = timezone.now()
    processing = now - timedelta(seconds=settings.INGEST_STALE_AFTER)
    pending = now - timedelta(seconds=settings.INGEST_PENDING_STALE_AFTER)
    lost = (Q(status=Document.Status.PROCESSING)
            & (Q(heartbeat_at__lt=processing) | Q(heartbeat_at__isnull=True, updated_at__lt=processing))
            | Q(status=Document.Status.PENDING)
            & (Q(heartbeat_at__lt=pending) | Q(heartbeat_at__isnull=True, updated_at__lt=pending)))
    # The first term lets the sweep read the status index (models.Document.Meta) for both cases.
    return Q(status__in=[Document.Status.PROCESSING, Document.Status.PENDING]) & lost


def is_stuck(document: Document) -> bool:
    """Is this unfinished document's run gone (the sweep would requeue it)?"""
    return Document.objects.filter(_lost(), pk=document.pk).exists()


def sweep() -> dict:
    """Requeue or fail documents whose worker is gone; returns the counts (for logs and tests)."""

    from .ingest import fail, ingest
    from .events import publish_document_event

    counts = {"requeued": 0, "failed": 0}
    for pk, status, beat, attempts in Document.objects.filter(_lost()).values_list(
            "pk", "status", "heartbeat_at", "attempts")[:500]:
        row = Document.objects.filter(pk=pk, status=status, heartbeat_at=beat)  # None matches IS NULL
        if status == Document.Status.PROCESSING and attempts >= settings.INGEST_MAX_ATTEMPTS:
            document = row.first()
            if document is not None:
                fail(document, DocumentErrorCode.INTERRUPTED, INTERRUPTED_MESSAGE.format(n=attempts))
                counts["failed"] += 1
            continue
        if row.update(status=Document.Status.PENDING, stage="requeued", heartbeat_at=timezone.now()):
            ingest.submit(pk)
            counts["requeued"] += 1
            document = Document.objects.filter(pk=pk).first()
            if document is not None:
                publish_document_event(document)
    from .transfer import abandoned_imports

    counts["abandoned_imports"] = abandoned_imports()
    if counts["requeued"] or counts["failed"] or counts["abandoned_imports"]:
        logger.warning("ingestion sweep: %(requeued)s document(s) requeued, %(failed)s failed, %(abandoned_imports)s "
                       "unfinished collection import(s) removed", counts)
    return counts


def resume_unfinished() -> int:
    """Embedded runner, at start-up: this process was the only worker, so nothing still runs."""
    from .ingest import ingest

    Document.objects.filter(status=Document.Status.PROCESSING).update(
        status=Document.Status.PENDING, stage="requeued", heartbeat_at=timezone.now())
    ids = list(Document.objects.filter(status=Document.Status.PENDING).values_list("pk", flat=True))
    for pk in ids:
        ingest.submit(pk)
    return len(ids)


def start_sweeper() -> threading.Thread | None:
    """The periodic sweep on a daemon thread of this (web) process."""
    interval = settings.INGEST_SWEEP_INTERVAL
    if interval <= 0:
        return None

    def loop():
        while True:
            try:
                sweep()
            except Exception:
                logger.exception("ingestion sweep failed")
            finally:
                connection.close()
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="ingestion-sweeper", daemon=True)
    thread.start()
    return thread
