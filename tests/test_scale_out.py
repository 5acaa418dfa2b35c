"""Scale-out parts for real: a Redis server, a Celery worker process, events across processes.

With CELERY_BROKER_URL set, an upload's ingestion runs in a separate Celery worker; with
REDIS_URL set, the worker's progress events reach a websocket subscriber of this process.
"""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from strawberry import relay

from backend.core import tasks
from bench.services import COMPOSE_WORKER, Redis
from backend.documents import collections, library
from backend.documents.models import Document

from .ws import GraphQLWS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (scripts/test.sh installs it)"),
]


@pytest.fixture
def redis_url(tmp_path):
    server = Redis(tmp_path)
    yield server.url(0)
    server.stop()


@pytest.fixture
def celery_worker(redis_url, settings, tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "DJANGO_ENV": "development",
           "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url,
           "DATA_DIR": str(tmp_path), "MEDIA_ROOT": settings.MEDIA_ROOT, "INDEX_DIR": str(tmp_path / "indexes")}
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = connection.settings_dict["NAME"]
    else:  # the test database on the server the suite runs against
        env["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    log = open(tmp_path / "worker.log", "w")
    # Exactly docker-compose.yml's worker command (the default prefork pool).
    proc = subprocess.Popen([str(Path(sys.executable).with_name("celery")), *COMPOSE_WORKER[1:]],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    settings.CELERY_BROKER_URL = redis_url
    settings.REDIS_URL = redis_url
    settings.INDEX_DIR = str(tmp_path / "indexes")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 15}]}}}
    previous, tasks._runner = tasks._runner, None
    yield proc
    tasks._runner = previous
    proc.terminate()  # warm shutdown: the prefork children finish and exit
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.asyncio
async def test_celery_worker_ingests_and_its_events_reach_this_process(celery_worker, make_user, tmp_path):
    from django.test import Client

    from .ws import session_cookie

    alice = await sync_to_async(make_user)("alice@example.com")
    collection = await sync_to_async(collections.default_collection)(alice)
    client = Client()
    await sync_to_async(client.force_login)(alice)
    ws = GraphQLWS(cookie=session_cookie(client))
    await ws.connect()
    op = await ws.subscribe("subscription($id: ID!) { documentEvents(collectionId: $id) { status stage progress } }",
                            {"id": str(relay.GlobalID("Collection", str(collection.pk)))})
    await asyncio.sleep(0.3)

    assert isinstance(tasks.runner(), tasks.CeleryRunner)
    text = b"Celery workers read this file in another process. " * 30
    result = await sync_to_async(library.upload_document)(alice, SimpleUploadedFile("remote.txt", text))
    statuses = []
    while not statuses or statuses[-1] not in ("READY", "FAILED"):
        message = await ws.receive(timeout=120)
        assert message.get("type") == "next", (message, (tmp_path / "worker.log").read_text()[-3000:])
        statuses.append(message["payload"]["data"]["documentEvents"]["status"])
    assert statuses[0] == "PENDING" and statuses[-1] == "READY", statuses
    assert "PROCESSING" in statuses
    document = await sync_to_async(Document.objects.get)(pk=result.document.pk)
    assert document.chunk_count > 0
    assert "documents.ingest" in (tmp_path / "worker.log").read_text()
    await ws.complete(op)
    await ws.close()
