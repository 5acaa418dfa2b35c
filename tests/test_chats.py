"""Chats and streamed answers over a real websocket, against local provider servers."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from strawberry import relay

from backend.chats import conversations, keys
from backend.chats.models import Chat, Message
from backend.core.tasks import runner
from backend.documents import library

from .fake_providers import FakeProvider
from .test_documents import CORPUS, PHOTOSYNTHESIS_MD
from .ws import GraphQLWS, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

STREAM = """subscription($chat: ID!, $content: String!, $model: String, $p: ChatParametersInput) {
  chatStream(chatId: $chat, content: $content, model: $model, parameters: $p) {
    __typename
    ... on StreamStarted { messageId userMessage { content role } }
    ... on TokenDelta { delta }
    ... on StreamSources { sources { number title page snippet documentId } }
    ... on StreamDone { message { id content status generator groundedness unsupportedSentences
                                  retrieval { query strategy generator settings { k strategy }
                                              passages { number title documentId } }
                                  sources { number title page } } }
    ... on StreamFailed { code errorMessage retryAfter answer { status errorCode } }
  }
}"""


@pytest.fixture
def fake():
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def openai(settings, fake):
    settings.OPENAI_API_KEY = "sk-server-key"
    settings.OPENAI_BASE_URL = fake.url + "/v1"
    return fake


@pytest.fixture
def cloudflare(settings, fake):
    settings.CLOUDFLARE_ACCOUNT_ID = "acct123"
    settings.CLOUDFLARE_API_TOKEN = "cf-token"
    settings.CLOUDFLARE_API_BASE_URL = fake.url + "/client/v4"
    return fake


async def socket_for(user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    ws = GraphQLWS(cookie=session_cookie(client))
    assert await ws.connect() == {"type": "connection_ack"}
    return ws


async def new_chat(user, model):
    chat = await sync_to_async(conversations.create_chat)(user, model=model)
    return chat, str(relay.GlobalID("Chat", str(chat.pk)))


async def events_until_complete(ws, timeout=60):
    events = []
    while True:
        message = await ws.receive(timeout=timeout)
        if message["type"] == "complete":
            return events
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        events.append(message["payload"]["data"]["chatStream"])


async def stream(ws, chat_gid, content, **variables):
    op = await ws.subscribe(STREAM, {"chat": chat_gid, "content": content, **variables})
    return op, await events_until_complete(ws)


async def long_answer(user, openai, words):
    """A gpt-4 chat of ``user`` streaming "word0 word1 ...", a word every 20 ms: (chat, socket, operation id)."""
    openai.tokens = [f"word{i} " for i in range(words)]
    openai.delay = 0.02
    chat, gid = await new_chat(user, "gpt-4")
    ws = await socket_for(user)
    op = await ws.subscribe(STREAM, {"chat": gid, "content": "Write a long text"})
    return chat, ws, op


def kinds(events):
    return [e["__typename"] for e in events]


@pytest.fixture
def alice_user(make_user):
    return make_user("alice@example.com")


async def test_gpt4_answer_streams_token_by_token_and_is_saved(alice_user, openai):
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    openai.delay = 0.02  # a model writing: a client that keeps up gets every token as it comes
    _, events = await stream(ws, gid, "Say hello", p={"systemPrompt": "Be brief.", "temperature": 0.1})
    assert kinds(events) == ["StreamStarted"] + ["TokenDelta"] * 5 + ["StreamDone"]
    assert "".join(e["delta"] for e in events if e["__typename"] == "TokenDelta") == "Hello from the model."
    done = events[-1]["message"]
    assert done["status"] == "COMPLETE" and done["content"] == "Hello from the model."
    request = openai.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["authorization"] == "Bearer sk-server-key"
    assert request["body"]["model"] == "gpt-4" and request["body"]["stream"] is True
    assert request["body"]["temperature"] == 0.1
    assert request["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Say hello"}]
    # The next turn carries the conversation so far.
    await stream(ws, gid, "Again")
    # (the system prompt was a parameter of the first turn only)
    assert [m["role"] for m in openai.requests[-1]["body"]["messages"]] == ["user", "assistant", "user"]
    saved = await sync_to_async(lambda: list(Message.objects.filter(chat=chat).values_list("role", "status")))()
    assert saved == [("user", "COMPLETE"), ("assistant", "COMPLETE")] * 2
    assert (await sync_to_async(Chat.objects.get)(pk=chat.pk)).title == "Say hello"
    await ws.close()


async def test_a_users_own_key_takes_precedence(alice_user, openai):
    await sync_to_async(keys.set_provider_key)(alice_user, provider="openai", api_key="sk-alice-own")
    _, gid = await new_chat(alice_user, "gpt-3.5-turbo")
    ws = await socket_for(alice_user)
    await stream(ws, gid, "hi")
    assert openai.requests[-1]["authorization"] == "Bearer sk-alice-own"
    result = await ws.execute("query { providerKeys { provider isSet } }")
    assert {"provider": "OPENAI", "isSet": True} in result["payload"]["data"]["providerKeys"]
    assert "sk-alice-own" not in json.dumps(result)
    await ws.close()


@pytest.mark.parametrize("mode,code", [("rate_limit", "RATE_LIMITED"), ("context", "CONTEXT_TOO_LONG")])
async def test_provider_errors_become_failure_events(alice_user, openai, mode, code):
    openai.mode = mode
    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    assert kinds(events) == ["StreamStarted", "StreamFailed"]
    assert events[-1]["code"] == code and events[-1]["answer"]["status"] == "FAILED"
    await ws.close()


async def test_unreachable_provider_is_provider_unavailable(alice_user, settings):
    settings.OPENAI_API_KEY = "sk-x"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    _, gid = await new_chat(alice_user, "gpt-3.5-turbo")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    assert events[-1]["code"] == "PROVIDER_UNAVAILABLE"
    await ws.close()


async def test_llama3_streams_from_cloudflare(alice_user, cloudflare):
    _, gid = await new_chat(alice_user, "llama-3")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi", p={"maxTokens": 100})
    assert events[-1]["message"]["content"] == "Hello from the model."
    request = cloudflare.requests[-1]
    assert request["path"] == "/client/v4/accounts/acct123/ai/run/@cf/meta/llama-3-8b-instruct"
    assert request["authorization"] == "Bearer cf-token" and request["body"]["stream"] is True
    assert request["body"]["max_tokens"] == 100
    await ws.close()


async def test_models_say_what_is_available(alice_user, settings):
    ws = await socket_for(alice_user)
    models = {m["id"]: m for m in (await ws.execute("{ models { id available unavailableReason usesDocuments } }"))
              ["payload"]["data"]["models"]}
    assert set(models) == {"llama-3", "gpt-3.5-turbo", "gpt-4", "rag-faiss"}
    assert models["gpt-4"]["available"] is False and "OpenAI" in models["gpt-4"]["unavailableReason"]
    assert models["rag-faiss"] == {"id": "rag-faiss", "available": True, "unavailableReason": None,
                                   "usesDocuments": True}
    await ws.close()


async def _ingest(user, name, content):
    await sync_to_async(library.upload_document)(user, SimpleUploadedFile(name, content))
    await sync_to_async(runner().wait_idle)()


async def test_rag_answers_from_the_users_documents_with_citations(alice_user):
    await _ingest(alice_user, "plants.md", PHOTOSYNTHESIS_MD)
    await _ingest(alice_user, "four-pages.pdf", (CORPUS / "pdf" / "pdflatex-4-pages.pdf").read_bytes())
    chat, gid = await new_chat(alice_user, "rag-faiss")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "How do plants store the energy of sunlight?")
    order = kinds(events)
    assert order[0] == "StreamStarted" and order[-2:] == ["StreamSources", "StreamDone"]
    assert order.count("TokenDelta") > 3  # tokens arrive before the final event
    sources = events[-2]["sources"]
    assert sources[0]["title"] == "plants" and sources[0]["number"] == 1
    done = events[-1]["message"]
    assert "[1]" in done["content"] and "sugar" in done["content"]
    assert done["generator"] == "extractive"  # no language model is available to alice
    assert {s["number"] for s in done["sources"]} == {1}  # the passages the answer cites, no more
    assert done["groundedness"] == 1.0 and done["unsupportedSentences"] == []
    retrieval = done["retrieval"]
    assert retrieval["strategy"] == "HYBRID" and retrieval["passages"][0]["title"] == "plants"
    assert retrieval["passages"][0]["documentId"] == sources[0]["documentId"]  # a global ID, like every id
    assert retrieval["generator"] == "extractive" and retrieval["settings"]["strategy"] == "HYBRID"
    assert retrieval["query"] == "How do plants store the energy of sunlight?"

    # A follow-up is rewritten with the earlier question's terms before retrieval.
    _, events = await stream(ws, gid, "And what about its roots?")
    assert "plants" in events[-1]["message"]["retrieval"]["query"]
    await ws.close()


async def test_rag_says_so_without_calling_a_provider_when_nothing_passes(alice_user, openai, settings):
    settings.RAG_GENERATOR = "gpt-4"
    await _ingest(alice_user, "plants.md", PHOTOSYNTHESIS_MD)
    _, gid = await new_chat(alice_user, "rag-faiss")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "Who won the 1998 football world cup?", p={"rag": {"threshold": 0.6}})
    done = events[-1]["message"]
    assert done["content"] == settings.RAG_NO_ANSWER_TEXT and done["sources"] == []
    assert openai.requests == []
    # Nor is anything counted against the generator's tokens of the day.
    usage = (await ws.execute('{ quotas { model used } }'))["payload"]["data"]["quotas"]
    assert next(row["used"] for row in usage if row["model"] == "gpt-4") == 0
    # With a passage that passes, the configured generator gets the app's prompt.
    _, events = await stream(ws, gid, "How do plants make sugar?", p={"rag": {"threshold": 0.2, "strategy": "DENSE"}})
    system = openai.requests[-1]["body"]["messages"][0]["content"]
    assert "Base your answer only on the context" in system and "[1] plants" in system and "chlorophyll" in system
    assert "say so" in system and "Cite the passages" in system
    await ws.close()


async def test_dropping_the_connection_does_not_stop_the_answer(alice_user, openai):
    chat, ws, _ = await long_answer(alice_user, openai, 60)
    for _ in range(10):
        await ws.receive()
    await ws.close()
    for _ in range(200):
        answer = await sync_to_async(Message.objects.filter(chat=chat, role="assistant").first)()
        if answer.status != "STREAMING":
            break
        await asyncio.sleep(0.05)
    assert answer.status == "COMPLETE"
    assert answer.content == "".join(f"word{i} " for i in range(60))


async def test_completing_the_subscription_cancels_and_keeps_the_partial_answer(alice_user, openai):
    chat, ws, op = await long_answer(alice_user, openai, 200)
    for _ in range(10):
        await ws.receive()
    await ws.complete(op)
    for _ in range(100):
        answer = await sync_to_async(Message.objects.filter(chat=chat, role="assistant").first)()
        if answer.status != "STREAMING":
            break
        await asyncio.sleep(0.05)
    assert answer.status == "CANCELLED" and answer.content.startswith("word0")
    assert openai.disconnected.wait(5)
    await ws.close()


async def test_cancel_generation_stops_the_stream(alice_user, openai):
    chat, ws, _ = await long_answer(alice_user, openai, 300)
    control = await socket_for(alice_user)
    started = (await ws.receive())["payload"]["data"]["chatStream"]
    await ws.receive()
    result = await control.execute("mutation($id: ID!) { cancelGeneration(messageId: $id) { ... on Message { id } } }",
                                   {"id": started["messageId"]})
    assert "errors" not in result["payload"], result
    events = await events_until_complete(ws, timeout=30)
    assert events[-1]["__typename"] == "StreamDone" and events[-1]["message"]["status"] == "CANCELLED"
    assert len(events[-1]["message"]["content"].split()) < 300
    await ws.close()
    await control.close()


async def test_nobody_streams_into_rates_or_exports_another_users_chat(alice_user, make_user, openai):
    bob = await sync_to_async(make_user)("bob@example.com")
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    answer_id = events[-1]["message"]["id"]
    intruder = await socket_for(bob)
    op = await intruder.subscribe(STREAM, {"chat": gid, "content": "let me in"})
    message = await intruder.receive()
    assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await intruder.receive() == {"id": op, "type": "complete"}
    for query, variables in (
        ("mutation($id: ID!) { rateMessage(id: $id, rating: 1) { __typename } }", {"id": answer_id}),
        ("query($id: ID!) { exportChat(id: $id) }", {"id": gid}),
        ("mutation($id: ID!) { deleteChat(id: $id) { __typename } }", {"id": gid}),
        ("mutation($id: ID!) { cancelGeneration(messageId: $id) { __typename } }", {"id": answer_id}),
    ):
        result = await intruder.execute(query, variables)
        assert result["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND", (query, result)
    listed = await intruder.execute("{ chats { totalCount } node(id: \"%s\") { id } }" % gid)
    assert listed["payload"]["data"] == {"chats": {"totalCount": 0}, "node": None}
    assert await sync_to_async(Message.objects.filter(chat=chat).count)() == 2
    await ws.close()
    await intruder.close()


async def test_provider_keys_are_encrypted_at_rest_and_never_logged(alice_user, openai, caplog):
    import logging

    from backend.chats.models import ProviderKey

    caplog.set_level(logging.DEBUG)
    await sync_to_async(keys.set_provider_key)(alice_user, provider="openai", api_key="sk-alice-secret-123")
    stored = await sync_to_async(ProviderKey.objects.get)()
    assert b"sk-alice-secret-123" not in bytes(stored.secret)
    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    _, events = await stream(ws, gid, "hi")
    assert openai.requests[-1]["authorization"] == "Bearer sk-alice-secret-123"
    assert "sk-alice-secret-123" not in json.dumps(events)
    assert "sk-alice-secret-123" not in caplog.text and "sk-server-key" not in caplog.text
    await ws.close()


async def test_growing_answers_of_concurrent_streams_are_written_together(alice_user, openai, monkeypatch):
    """A page reloaded mid-answer shows the answer so far; hundreds of streams cost one write
    every half second between them, not two queries each."""
    from backend.chats import saves

    writes = []
    real = saves.save_partials
    monkeypatch.setattr(saves, "save_partials",
                        lambda contents, *rest: (contents and writes.append(dict(contents))) or real(contents, *rest))
    streams = [await long_answer(alice_user, openai, 60) for _ in range(4)]
    chats, sockets = [chat for chat, _, _ in streams], [ws for _, ws, _ in streams]
    await asyncio.sleep(0.8)
    midway = await sync_to_async(list)(Message.objects.filter(chat__in=chats, role="assistant"))
    assert [m.status for m in midway] == ["STREAMING"] * 4
    assert all(m.content.startswith("word0 word1") and len(m.content.split()) < 60 for m in midway), midway

    await asyncio.gather(*(events_until_complete(ws, timeout=30) for ws in sockets))
    final = await sync_to_async(list)(Message.objects.filter(chat__in=chats, role="assistant"))
    assert {m.status for m in final} == {"COMPLETE"} and {len(m.content.split()) for m in final} == {60}
    assert writes and max(len(w) for w in writes) == 4  # the four streams in one write
    assert len(writes) <= 6  # about one per half second, not one per token or per stream
    for ws in sockets:
        await ws.close()


async def test_a_cancel_recorded_by_another_server_process_stops_the_stream(alice_user, openai):
    chat, ws, _ = await long_answer(alice_user, openai, 300)
    started = (await ws.receive())["payload"]["data"]["chatStream"]
    assert started["__typename"] == "StreamStarted"
    await ws.receive()
    # What cancelGeneration does when the stream runs in another process: only the row changes.
    await sync_to_async(Message.objects.filter(chat=chat, role="assistant").update)(cancel_requested=True)
    events = await events_until_complete(ws, timeout=30)
    assert events[-1]["__typename"] == "StreamDone" and events[-1]["message"]["status"] == "CANCELLED"
    assert len(events[-1]["message"]["content"].split()) < 100  # stopped within about a second
    await ws.close()
