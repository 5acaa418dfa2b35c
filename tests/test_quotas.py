"""Quotas: per user, defaults in settings (smaller for guests), overrides in the admin; the user
sees their usage; going over gives QUOTA_EXCEEDED before any provider call or storage."""

import copy
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.test import Client
from strawberry import relay

from backend.chats import keys
from backend.chats.models import Message
from backend.documents.models import Document
from backend.quotas.models import QuotaOverride
from backend.quotas.services import record_tokens

from .conftest import GraphQLClient, error_codes
from .test_chats import STREAM, alice_user, fake, new_chat, openai, socket_for, stream  # noqa: F401
from .test_documents import PHOTOSYNTHESIS_MD, TRAINS_TXT, UPLOAD

pytestmark = [pytest.mark.django_db(transaction=True)]

QUOTAS = "{ quotas { quota model used limit resetsAt } }"


@pytest.fixture
def quotas(settings):
    """Editable copies of the default and guest quotas."""
    settings.QUOTAS = copy.deepcopy(django_settings.QUOTAS)
    settings.GUEST_QUOTAS = copy.deepcopy(django_settings.GUEST_QUOTAS)
    return settings


def upload(client, name, content):
    return client.upload(UPLOAD, {"file": None}, {"variables.file": (name, content, "text/plain")})


async def refused_turn(ws, gid):
    await ws.subscribe(STREAM, {"chat": gid, "content": "one more"})
    message = await ws.receive()
    assert message["type"] == "next" and message["payload"]["data"] is None, message
    assert (await ws.receive())["type"] == "complete"
    return message["payload"]["errors"][0]


@pytest.mark.asyncio
async def test_chat_turns_per_minute(alice_user, openai, quotas):
    quotas.QUOTAS["turns_per_minute"] = 2
    user = alice_user
    _, gid = await new_chat(user, "gpt-3.5-turbo")
    ws = await socket_for(user)
    for _ in range(2):
        await stream(ws, gid, "hi")
    calls = len(openai.requests)
    error = await refused_turn(ws, gid)
    ext = error["extensions"]
    assert ext["code"] == "QUOTA_EXCEEDED" and ext["quota"] == "TURNS_PER_MINUTE" and ext["limit"] == 2
    resets = datetime.fromisoformat(ext["resetsAt"])
    assert datetime.now(timezone.utc) < resets <= datetime.now(timezone.utc) + timedelta(minutes=1)
    assert "turns per minute" in error["message"]
    assert len(openai.requests) == calls  # no provider call
    assert await sync_to_async(Message.objects.count)() == 4  # nothing stored for the refused turn
    await ws.close()


@pytest.mark.asyncio
async def test_tokens_per_day_per_model_paid_by_the_server(alice_user, openai, quotas):
    quotas.QUOTAS["tokens_per_day"]["gpt-4"] = 10
    user = alice_user
    _, gid = await new_chat(user, "gpt-4")
    _, cheap_gid = await new_chat(user, "gpt-3.5-turbo")
    ws = await socket_for(user)
    await stream(ws, gid, "Write me a rather long question so that the prompt alone is over ten tokens")
    ext = (await refused_turn(ws, gid))["extensions"]
    assert ext["quota"] == "TOKENS_PER_DAY" and ext["model"] == "gpt-4" and ext["used"] > 10
    tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
    assert ext["resetsAt"] == datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=timezone.utc).isoformat()
    # Another model has its own quota.
    _, events = await stream(ws, cheap_gid, "hi")
    assert events[-1]["__typename"] == "StreamDone"
    # With their own key the user pays: no token quota.
    await sync_to_async(keys.set_provider_key)(user, provider="openai", api_key="sk-own")
    _, events = await stream(ws, gid, "hi again")
    assert events[-1]["__typename"] == "StreamDone"
    await ws.close()


@pytest.mark.asyncio
async def test_deleting_the_chat_does_not_give_the_days_tokens_back(alice_user, openai, quotas):
    openai.tokens = ["A ", "short ", "answer."]
    quotas.QUOTAS["tokens_per_day"]["gpt-4"] = 1000
    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "How many tokens does this question take?")
    answer = events[-1]["message"]
    rows = (await ws.execute(QUOTAS))["payload"]["data"]["quotas"]
    used = next(r["used"] for r in rows if r["model"] == "gpt-4")
    stored = await sync_to_async(Message.objects.get)(pk=relay.GlobalID.from_id(answer["id"]).node_id)
    assert used == stored.prompt_tokens + stored.completion_tokens > 0  # the prompt and the answer
    await ws.execute("mutation($id: ID!) { deleteChat(id: $id) { __typename } }", {"id": gid})
    rows = (await ws.execute(QUOTAS))["payload"]["data"]["quotas"]
    assert next(r["used"] for r in rows if r["model"] == "gpt-4") == used
    quotas.QUOTAS["tokens_per_day"]["gpt-4"] = used
    _, gid = await new_chat(alice_user, "gpt-4")
    ext = (await refused_turn(ws, gid))["extensions"]
    assert ext["quota"] == "TOKENS_PER_DAY" and ext["used"] == used
    await ws.close()


def test_documents_and_stored_bytes(alice, quotas, settings):
    quotas.QUOTAS["documents"] = 1
    assert upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["data"]["uploadDocument"]["document"]
    result = upload(alice, "trains.txt", TRAINS_TXT)
    assert error_codes(result) == ["QUOTA_EXCEEDED"]
    assert result["errors"][0]["extensions"]["quota"] == "DOCUMENTS"
    assert result["errors"][0]["extensions"].get("resetsAt") is None
    # The same file again is no new document: answered as the duplicate it is.
    assert upload(alice, "plants.md", PHOTOSYNTHESIS_MD)["data"]["uploadDocument"]["duplicate"] is True
    quotas.QUOTAS["documents"] = None
    quotas.QUOTAS["stored_bytes"] = len(PHOTOSYNTHESIS_MD) + 10
    result = upload(alice, "trains.txt", TRAINS_TXT)
    assert result["errors"][0]["extensions"]["quota"] == "STORED_BYTES"
    assert Document.objects.count() == 1
    stored = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert len(stored) == 1  # the refused files were never written


def test_the_user_sees_their_usage_against_each_quota(alice, quotas):
    quotas.QUOTAS["documents"] = 5
    upload(alice, "plants.md", PHOTOSYNTHESIS_MD)
    rows = alice(QUOTAS)["data"]["quotas"]
    by_kind = {(r["quota"], r["model"]): r for r in rows}
    assert set(by_kind) == {("TOKENS_PER_DAY", "llama-3"), ("TOKENS_PER_DAY", "gpt-3.5-turbo"),
                            ("TOKENS_PER_DAY", "gpt-4"), ("TURNS_PER_MINUTE", None), ("DOCUMENTS", None),
                            ("STORED_BYTES", None)}
    assert by_kind[("DOCUMENTS", None)] | {} == {"quota": "DOCUMENTS", "model": None, "used": 1, "limit": 5,
                                                "resetsAt": None}
    assert by_kind[("STORED_BYTES", None)]["used"] == len(PHOTOSYNTHESIS_MD)
    assert by_kind[("TOKENS_PER_DAY", "gpt-4")]["limit"] == quotas.QUOTAS["tokens_per_day"]["gpt-4"]
    assert by_kind[("TURNS_PER_MINUTE", None)]["used"] == 0
    assert error_codes(GraphQLClient()(QUOTAS)) == ["UNAUTHENTICATED"]


def test_guests_get_smaller_defaults_and_the_admin_overrides_them(quotas, make_user):
    guest = GraphQLClient()
    guest("mutation { startGuestSession { ... on User { id } } }")
    rows = {(r["quota"], r["model"]): r["limit"] for r in guest(QUOTAS)["data"]["quotas"]}
    assert rows[("DOCUMENTS", None)] == quotas.GUEST_QUOTAS["documents"] < quotas.QUOTAS["documents"]
    assert rows[("TOKENS_PER_DAY", "gpt-4")] == quotas.GUEST_QUOTAS["tokens_per_day"]["gpt-4"]

    # An operator raises one user's limits in the Django admin (the user page has the quota inline).
    user = make_user("carol@example.com")
    staff = make_user("ops@example.com", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/users/user/{user.pk}/change/")
    assert page.status_code == 200 and b"quota_override" in page.content
    QuotaOverride.objects.create(user=user, documents=5000, tokens_per_day={"gpt-4": None})
    client = GraphQLClient()
    client.client.force_login(user)
    rows = {(r["quota"], r["model"]): r["limit"] for r in client(QUOTAS)["data"]["quotas"]}
    assert rows[("DOCUMENTS", None)] == 5000 and rows[("TOKENS_PER_DAY", "gpt-4")] is None
    assert rows[("TURNS_PER_MINUTE", None)] == quotas.QUOTAS["turns_per_minute"]  # untouched: the default
    QuotaOverride.objects.filter(user=user).update(unlimited=True)
    rows = client(QUOTAS)["data"]["quotas"]
    assert all(r["limit"] is None for r in rows)

    # The operator sees what each user used, per day and model (read-only).
    record_tokens(user.pk, "gpt-4", 1234)
    page = admin.get("/admin/quotas/dailytokens/")
    assert page.status_code == 200 and b"carol@example.com" in page.content and b"1234" in page.content
    assert admin.get("/admin/quotas/dailytokens/add/").status_code == 403
