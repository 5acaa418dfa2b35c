"""Who writes a RAG answer: the user's choice among the language models they can use, the chat's,
the server's default, the extractive generator when no model is available; the answer says which."""

import pytest
from asgiref.sync import sync_to_async

from backend.chats import conversations, keys
from backend.chats.models import Message
from backend.users.profile import update_preferences

from .test_chats import _ingest, fake, new_chat, socket_for, stream  # noqa: F401
from .test_documents import PHOTOSYNTHESIS_MD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

QUESTION = "How do plants make sugar from sunlight?"
MODELS = "{ models { id generator available } }"


@pytest.fixture
def alice_with_documents(make_user, fake, settings):
    settings.OPENAI_BASE_URL = fake.url + "/v1"
    settings.CLOUDFLARE_API_BASE_URL = fake.url + "/client/v4"
    fake.tokens = ["Plants make sugar ", "with chlorophyll ", "[1]."]
    return make_user("alice@example.com")


async def rag_answer(user, **variables):
    await _ingest(user, "plants.md", PHOTOSYNTHESIS_MD)
    chat, gid = await new_chat(user, "rag-faiss")
    ws = await socket_for(user)
    _, events = await stream(ws, gid, QUESTION, **variables)
    rag_model = [m for m in (await ws.execute(MODELS))["payload"]["data"]["models"] if m["id"] == "rag-faiss"][0]
    await ws.close()
    return events, rag_model


async def test_with_their_own_key_a_users_rag_answers_are_written_by_their_model(alice_with_documents, fake):
    user = alice_with_documents
    await sync_to_async(keys.set_provider_key)(user, provider="openai", api_key="sk-alice-own")
    events, rag_model = await rag_answer(user)
    done = events[-1]["message"]
    assert done["generator"] == "gpt-3.5-turbo" and done["content"] == "Plants make sugar with chlorophyll [1]."
    assert [s["number"] for s in events[-2]["sources"]] == [1] and done["sources"][0]["title"] == "plants"
    request = fake.requests[-1]
    assert request["authorization"] == "Bearer sk-alice-own" and request["body"]["model"] == "gpt-3.5-turbo"
    system = request["body"]["messages"][0]["content"]
    assert "[1] plants" in system and "chlorophyll" in system
    assert rag_model == {"id": "rag-faiss", "generator": "gpt-3.5-turbo", "available": True}


async def test_an_answer_that_cites_nothing_carries_no_sources(alice_with_documents, fake):
    user = alice_with_documents
    fake.tokens = ["The documents I found ", "do not answer this."]
    await sync_to_async(keys.set_provider_key)(user, provider="openai", api_key="sk-alice-own")
    events, _ = await rag_answer(user)
    assert [e["__typename"] for e in events][-1] == "StreamDone" and "StreamSources" not in str(events)
    assert events[-1]["message"]["sources"] == []


async def test_the_preference_then_the_chat_choose_the_generator(alice_with_documents, fake):
    user = alice_with_documents
    await sync_to_async(keys.set_provider_key)(user, provider="openai", api_key="sk-alice-own")
    await sync_to_async(update_preferences)(user, {"rag": {"generator": "extractive"}})
    events, rag_model = await rag_answer(user)
    assert events[-1]["message"]["generator"] == "extractive" and fake.requests == []
    assert rag_model["generator"] == "extractive"
    # A chat's own setting comes before the preference; a turn's parameters before both.
    events, _ = await rag_answer(user, p={"rag": {"generator": "gpt-4"}})
    assert events[-1]["message"]["generator"] == "gpt-4" and fake.requests[-1]["body"]["model"] == "gpt-4"


async def test_a_chosen_generator_the_user_cannot_use_is_refused_before_storing(alice_with_documents):
    user = alice_with_documents
    await sync_to_async(update_preferences)(user, {"rag": {"generator": "llama-3"}})
    await _ingest(user, "plants.md", PHOTOSYNTHESIS_MD)
    _, gid = await new_chat(user, "rag-faiss")
    ws = await socket_for(user)
    from .test_chats import STREAM

    await ws.subscribe(STREAM, {"chat": gid, "content": QUESTION})
    message = await ws.receive()
    error = message["payload"]["errors"][0]
    assert error["extensions"] == {"code": "MODEL_UNAVAILABLE", "model": "llama-3", "reason": "NOT_CONFIGURED"}
    assert (await ws.receive())["type"] == "complete"
    rag_model = [m for m in (await ws.execute(MODELS))["payload"]["data"]["models"] if m["id"] == "rag-faiss"][0]
    assert rag_model == {"id": "rag-faiss", "generator": "llama-3", "available": False}
    await ws.close()
    assert await sync_to_async(Message.objects.count)() == 0
    # A chat that names it is refused too.
    with pytest.raises(Exception) as refused:
        await sync_to_async(conversations.create_chat)(user, model="rag-faiss",
                                                  settings_={"rag": {"generator": "gpt-4"}})
    assert getattr(refused.value, "code", None) == "MODEL_UNAVAILABLE"


async def test_the_servers_default_generator_then_the_fallback(alice_with_documents, settings, fake):
    user = alice_with_documents
    settings.CLOUDFLARE_ACCOUNT_ID, settings.CLOUDFLARE_API_TOKEN = "acct", "cf-token"
    settings.RAG_GENERATOR = "llama-3"
    events, _ = await rag_answer(user)
    assert events[-1]["message"]["generator"] == "llama-3" and "/ai/run/" in fake.requests[-1]["path"]
    # The operator's extractive default holds until the user chooses a model.
    settings.RAG_GENERATOR = "extractive"
    events, _ = await rag_answer(user)
    assert events[-1]["message"]["generator"] == "extractive"
    # With no model available at all, the extractive generator writes.
    settings.RAG_GENERATOR = "auto"
    settings.CLOUDFLARE_ACCOUNT_ID = settings.CLOUDFLARE_API_TOKEN = ""
    events, _ = await rag_answer(user)
    assert events[-1]["message"]["generator"] == "extractive"
    assert "chlorophyll" in events[-1]["message"]["content"]


async def test_refusal_is_consistent_with_the_relevance_rule(alice_with_documents, settings):
    """A question whose words a many-topic chunk holds is answered from it; a question from another
    field is refused, with no sources and no provider call."""
    from .test_documents import CORPUS

    user = alice_with_documents
    await _ingest(user, "zen.pdf", (CORPUS / "pdf" / "google-doc-document.pdf").read_bytes())
    _, gid = await new_chat(user, "rag-faiss")
    ws = await socket_for(user)
    _, events = await stream(ws, gid, "Should errors pass silently?")
    done = events[-1]["message"]
    assert "Errors should never pass silently" in done["content"] and done["sources"][0]["title"] == "zen"
    _, events = await stream(ws, gid, "What is the capital of Mongolia?")
    done = events[-1]["message"]
    assert done["content"] == settings.RAG_NO_ANSWER_TEXT and done["sources"] == []
    assert "StreamSources" not in [e["__typename"] for e in events]
    await ws.close()
