"""Clean failures: a model the user cannot use is refused before anything is stored, and every
provider failure ends the answer FAILED with a stable code, against local servers speaking
OpenAI's and Cloudflare's real protocols."""

import socket

import pytest
from asgiref.sync import sync_to_async

from backend.chats import conversations, keys
from backend.chats.models import Chat, Message

from .conftest import error_codes
from .test_chats import STREAM, alice_user, cloudflare, fake, kinds, new_chat, openai, socket_for, stream  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]

CREATE = "mutation($model: String) { createChat(model: $model) { ... on Chat { id model } } }"
MODELS = "{ models { id available unavailableCode unavailableReason generator } }"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- refuse before storing ------------------------------------------------------------------

def test_a_chat_on_a_model_without_a_key_is_refused_with_the_reason(alice):
    gql = alice
    result = gql(CREATE, {"model": "gpt-4"})
    assert error_codes(result) == ["MODEL_UNAVAILABLE"], result
    error = result["errors"][0]
    assert error["extensions"]["reason"] == "NO_KEY" and error["extensions"]["model"] == "gpt-4"
    assert "OpenAI API key" in error["message"]
    result = gql(CREATE, {"model": "llama-3"})
    assert result["errors"][0]["extensions"]["reason"] == "NOT_CONFIGURED"
    assert "not configured" in result["errors"][0]["message"]
    assert Chat.objects.count() == 0
    models = {m["id"]: m for m in gql(MODELS)["data"]["models"]}
    assert models["gpt-4"]["available"] is False and models["gpt-4"]["unavailableCode"] == "NO_KEY"
    assert models["llama-3"]["unavailableCode"] == "NOT_CONFIGURED"
    assert models["rag-faiss"] == {"id": "rag-faiss", "available": True, "unavailableCode": None,
                                   "unavailableReason": None, "generator": "extractive"}
    # With no model named, a new chat takes the first model the user can use.
    assert gql(CREATE)["data"]["createChat"]["model"] == "rag-faiss"


@pytest.mark.asyncio
async def test_a_turn_on_a_model_the_user_can_no_longer_use_stores_nothing(alice_user):
    await sync_to_async(keys.set_provider_key)(alice_user, provider="openai", api_key="sk-alice")
    chat, gid = await new_chat(alice_user, "gpt-4")
    await sync_to_async(keys.clear_provider_key)(alice_user, provider="openai")
    ws = await socket_for(alice_user)
    await ws.subscribe(STREAM, {"chat": gid, "content": "hello?"})
    message = await ws.receive()
    assert message["type"] == "next" and message["payload"]["data"] is None
    assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["MODEL_UNAVAILABLE"]
    assert message["payload"]["errors"][0]["extensions"]["reason"] == "NO_KEY"
    assert (await ws.receive())["type"] == "complete"
    # The same for a turn that names another model.
    _, rag_gid = await new_chat(alice_user, "rag-faiss")
    await ws.subscribe(STREAM, {"chat": rag_gid, "content": "hello?", "model": "llama-3"})
    message = await ws.receive()
    assert message["payload"]["errors"][0]["extensions"]["code"] == "MODEL_UNAVAILABLE"
    assert await sync_to_async(Message.objects.count)() == 0
    await ws.close()


# --- provider failures become codes ----------------------------------------------------------

FAILURES = [("auth", "PROVIDER_AUTH"), ("rate_limit", "RATE_LIMITED"), ("context", "CONTEXT_TOO_LONG"),
            ("stall", "PROVIDER_TIMEOUT"), ("mid_stall", "PROVIDER_TIMEOUT"), ("refused", "PROVIDER_UNAVAILABLE")]


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["openai", "cloudflare"])
@pytest.mark.parametrize("mode,code", FAILURES)
async def test_each_provider_failure_ends_the_answer_failed_with_its_code(alice_user, fake, settings, protocol,
                                                                         mode, code):
    settings.PROVIDER_TIMEOUT = 0.5
    fake.stall = 3
    fake.mode = mode
    base = f"http://127.0.0.1:{closed_port()}" if mode == "refused" else fake.url
    if protocol == "openai":
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-server", base + "/v1"
        model = "gpt-4"
    else:
        settings.CLOUDFLARE_ACCOUNT_ID, settings.CLOUDFLARE_API_TOKEN = "acct", "cf-token"
        settings.CLOUDFLARE_API_BASE_URL = base + "/client/v4"
        model = "llama-3"
    chat, gid = await new_chat(alice_user, model)
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    failed = events[-1]
    assert failed["__typename"] == "StreamFailed", events
    assert failed["code"] == code and failed["answer"] == {"status": "FAILED", "errorCode": code}
    assert failed["errorMessage"] and "sk-server" not in failed["errorMessage"]
    if mode == "rate_limit":
        assert failed["retryAfter"] == 7 and "7 s" in failed["errorMessage"]
    else:
        assert failed["retryAfter"] is None
    if mode == "mid_stall":  # the words that came before the provider went quiet are kept
        assert kinds(events) == ["StreamStarted", "TokenDelta", "StreamFailed"] if protocol == "openai" else True
        answer = await sync_to_async(Message.objects.get)(chat=chat, role="assistant")
        assert answer.content.startswith("Hello")
    await ws.close()


@pytest.mark.asyncio
async def test_an_unexpected_provider_error_is_a_failure_with_a_code_not_internal(alice_user, openai, monkeypatch):
    from backend.rag.providers import OpenAIProvider

    async def broken(self, messages, params):
        raise KeyError("choices")
        yield  # pragma: no cover

    monkeypatch.setattr(OpenAIProvider, "astream", broken)
    _, gid = await new_chat(alice_user, "gpt-3.5-turbo")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    assert kinds(events) == ["StreamStarted", "StreamFailed"]
    assert events[-1]["code"] == "PROVIDER_ERROR" and events[-1]["answer"]["status"] == "FAILED"
    await ws.close()


def test_a_rejected_key_is_named_never_echoed(alice_user, fake, settings):
    """OpenAI's 401 message quotes the key; the failure the user sees does not."""
    from asgiref.sync import async_to_sync

    import asyncio

    from backend.chats import turn
    from backend.chats.stream import stream_turn

    fake.mode = "auth"
    settings.OPENAI_BASE_URL = fake.url + "/v1"
    keys.set_provider_key(alice_user, provider="openai", api_key="sk-wrong")
    started = turn.start_turn(alice_user, conversations.create_chat(alice_user, model="gpt-4").pk, "hi")

    async def run():
        return [event async for event in stream_turn(started, asyncio.Event())]

    failed = async_to_sync(run)()[-1]
    assert failed.code == "PROVIDER_AUTH" and "sk-wrong" not in failed.message
    answer = Message.objects.get(pk=started.answer.pk)
    assert answer.error_code == "PROVIDER_AUTH" and "sk-wrong" not in answer.error_message
