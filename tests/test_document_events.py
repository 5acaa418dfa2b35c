"""The documentEvents subscription relays status and progress, in order, over a websocket."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from strawberry import relay

from backend.core.tasks import runner
from backend.documents import collections, library

from .ws import GraphQLWS, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EVENTS = """subscription($id: ID!) { documentEvents(collectionId: $id) {
  documentId status stage progress errorCode document { title status stage progress chunkCount } } }"""
TEXT = b"# Notes\n\nThe quick brown fox jumps over the lazy dog. " * 40


async def _socket_for(user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    ws = GraphQLWS(cookie=session_cookie(client))
    assert await ws.connect() == {"type": "connection_ack"}
    return ws


async def test_progress_events_arrive_in_order_until_ready(make_user):
    alice = await sync_to_async(make_user)("alice@example.com")
    collection = await sync_to_async(collections.default_collection)(alice)
    ws = await _socket_for(alice)
    op = await ws.subscribe(EVENTS, {"id": str(relay.GlobalID("Collection", str(collection.pk)))})
    await asyncio.sleep(0.2)
    result = await sync_to_async(library.upload_document)(alice, SimpleUploadedFile("notes.md", TEXT))
    events = []
    while not events or events[-1]["status"] not in ("READY", "FAILED"):
        message = await ws.receive(timeout=120)
        assert message["id"] == op and message["type"] == "next", message
        events.append(message["payload"]["data"]["documentEvents"])
    await sync_to_async(runner().wait_idle)()
    assert events[0]["status"] == "PENDING"
    statuses = [e["status"] for e in events]
    assert statuses == sorted(statuses, key=["PENDING", "PROCESSING", "READY"].index)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    stages = [e["stage"] for e in events]
    assert stages.index("extracting") < stages.index("chunking") < stages.index("embedding") < stages.index("ready")
    # The document in each event is as the event says (its row is written at intervals).
    assert all((e["document"]["status"], e["document"]["stage"], e["document"]["progress"])
               == (e["status"], e["stage"], e["progress"]) for e in events)
    final = events[-1]
    assert final["documentId"] == str(relay.GlobalID("Document", str(result.document.pk)))
    assert final["document"]["status"] == "READY" and final["document"]["chunkCount"] > 0
    await ws.complete(op)
    await ws.close()


async def test_strangers_cannot_follow_a_collection(make_user):
    alice = await sync_to_async(make_user)("alice@example.com")
    bob = await sync_to_async(make_user)("bob@example.com")
    collection = await sync_to_async(collections.default_collection)(alice)
    ws = await _socket_for(bob)
    await ws.subscribe(EVENTS, {"id": str(relay.GlobalID("Collection", str(collection.pk)))})
    message = await ws.receive()
    assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    await ws.close()
