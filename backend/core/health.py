"""Health: /livez (the process answers), /readyz and /healthz (each part it depends on is ready).

Liveness checks nothing but the process itself, so an orchestrator restarts a wedged process and
not one whose database is briefly away; readiness (the same report under both names) takes a
process out of the load balancer while a part it needs is down: the database, the cache, the
channel layer, the embedding model, the file storage (the bucket, with S3), and the task broker when
Celery is configured. A small module rather than django-health-check: the channel layer and the
embedding model are checks of our own, and the rest is a query or a call each.
"""

import asyncio

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


async def _channel_layer() -> dict:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    return {"ok": message.get("type") == "healthz.ping", "backend": type(layer).__name__}


def _cache() -> dict:
    from django.core.cache import caches

    cache = caches["default"]
    key = f"readyz:{id(object())}"
    cache.set(key, 1, 10)
    ok = cache.get(key) == 1
    cache.delete(key)
    return {"ok": ok, "backend": type(cache).__name__}


def _storage() -> dict:
    """The uploads' storage answers (S3: the bucket exists and the credentials may read it)."""
    from django.core.files.storage import storages

    storage = storages["default"]
    storage.exists("readyz-probe")  # a HEAD on S3, a stat on disk; raises when unreachable
    return {"ok": True, "backend": type(storage).__name__}


def _broker() -> dict:
    from django.conf import settings

    if not settings.CELERY_BROKER_URL:
        return {"ok": True, "backend": "in-process"}
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as broker:
        broker.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "backend": "celery"}


def _embeddings() -> dict:
    from backend.core import readiness

    return readiness.embedding_status()


def _ocr() -> dict:
    """OCR is optional: missing, it is reported unavailable (with why), and the server is still ok."""
    from backend.rag import ocr

    reason = ocr.unavailable(settings.OCR_LANGUAGES) if settings.OCR_ENABLED else "off (OCR_ENABLED)"
    return {"ok": True, "available": reason is None, "languages": settings.OCR_LANGUAGES,
            **({"reason": reason} if reason else {})}


async def healthz(request):
    checks = {}
    for name, check in (
        ("database", sync_to_async(_database)),
        ("cache", sync_to_async(_cache)),
        ("channel_layer", _channel_layer),
        ("storage", sync_to_async(_storage)),
        ("embedding_model", sync_to_async(_embeddings)),
        ("broker", sync_to_async(_broker)),
        ("ocr", sync_to_async(_ocr)),
    ):
        try:
            checks[name] = await check()
        except Exception as exc:  # report, never raise: this page exists to say what is wrong
            checks[name] = {"ok": False, "error": type(exc).__name__}
    ok = all(item.get("ok") for item in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)


async def livez(request):
    return JsonResponse({"status": "ok"})
