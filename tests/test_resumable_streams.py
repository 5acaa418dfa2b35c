"""Answers that outlive the socket: retried sends, resume, cancel by both routes, crash recovery,
regenerated versions and the chat on stream events, through real graphql-transport-ws sockets."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from strawberry import relay

from backend.chats import recovery
from backend.chats.models import Message

from .test_chats import fake, openai, socket_for, new_chat  # noqa: F401 - fixtures
from .ws import GraphQLWS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EVENT = """
    __typename
    ... on StreamStarted { messageId userMessage { id content clientMessageId } chat { id title updatedAt } }
    ... on TokenDelta { delta length }
    ... on StreamSources { sources { number } }
    ... on StreamDone { message { id content status } chat { id title updatedAt } }
    ... on StreamFailed { code answer { status } }
"""
SEND = ("subscription($chat: ID!, $content: String!, $id: String) { chatStream(chatId: $chat, content: $content, "
        "clientMessageId: $id) {" + EVENT + "} }")
RESUME = "subscription($id: ID!, $offset: Int!) { answerStream(messageId: $id, offset: $offset) {" + EVENT + "} }"


@pytest.fixture
def alice_user(make_user):
    return make_user("alice@example.com")


async def next_event(ws, timeout=10):
    message = await ws.receive(timeout=timeout)
    if message["type"] == "complete":
        return None
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return next(iter(message["payload"]["data"].values()))


async def rest(ws, timeout=30):
    events = []
    while (event := await next_event(ws, timeout)) is not None:
        events.append(event)
    return events


def text_of(events):
    return "".join(e["delta"] for e in events if e["__typename"] == "TokenDelta")


def answer_id(events):
    return next(e["messageId"] for e in events if e["__typename"] == "StreamStarted")


async def answers(chat):
    return await sync_to_async(list)(Message.objects.filter(chat=chat, role="assistant").order_by("id"))


async def settle(chat, timeout=20):
    for _ in range(int(timeout / 0.05)):
        rows = await answers(chat)
        if rows and all(m.status != "STREAMING" for m in rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError("still streaming")


def slow(openai, words, delay=0.02):
    openai.tokens = [f"word{i} " for i in range(words)]
    openai.delay = delay
    return "".join(openai.tokens)


async def test_a_retried_send_attaches_to_the_same_answer_and_stores_nothing_twice(alice_user, openai):
    full = slow(openai, 80)
    chat, gid = await new_chat(alice_user, "gpt-4")
    first = await socket_for(alice_user)
    await first.subscribe(SEND, {"chat": gid, "content": "Write", "id": "c0ffee-1"})
    started = await next_event(first)
    assert started["userMessage"]["clientMessageId"] == "c0ffee-1"
    seen = [await next_event(first) for _ in range(10)]
    await first.close()  # the phone loses signal; graphql-ws retries the same subscription

    retry = await socket_for(alice_user)
    await retry.subscribe(SEND, {"chat": gid, "content": "Write", "id": "c0ffee-1"})
    second_tab = await socket_for(alice_user)
    await second_tab.subscribe(SEND, {"chat": gid, "content": "Write", "id": "c0ffee-1"})
    for ws in (retry, second_tab):
        events = await rest(ws)
        assert events[0]["__typename"] == "StreamStarted"
        assert answer_id(events) == started["messageId"]  # the same answer, followed
        assert events[0]["userMessage"]["id"] == started["userMessage"]["id"]
        assert text_of(events) == full  # from its start: what was written, then the rest live
        assert events[-1]["message"]["content"] == full and events[-1]["message"]["status"] == "COMPLETE"
        await ws.close()
    assert text_of(seen).startswith("word0 ") and len(openai.requests) == 1  # one answer generated
    rows = await sync_to_async(list)(Message.objects.filter(chat=chat).values_list("role", flat=True))
    assert rows == ["user", "assistant"]

    # The same id with other words is a client bug, refused; a new id is a new message.
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Something else", "id": "c0ffee-1"})
    refused = (await ws.receive())["payload"]["errors"][0]
    assert refused["extensions"]["code"] == "BAD_USER_INPUT" and "another message" in refused["message"]
    await ws.receive()
    await ws.close()


async def test_concurrent_retries_store_the_question_once(alice_user, openai):
    slow(openai, 20, 0.01)
    chat, gid = await new_chat(alice_user, "gpt-4")
    sockets = [await socket_for(alice_user) for _ in range(6)]
    for ws in sockets:
        await ws.subscribe(SEND, {"chat": gid, "content": "Once", "id": "same-id"})
    results = await asyncio.gather(*(rest(ws) for ws in sockets))
    assert len({answer_id(events) for events in results}) == 1
    assert all(events[-1]["message"]["status"] == "COMPLETE" for events in results)
    assert await sync_to_async(Message.objects.filter(chat=chat, role="user").count)() == 1
    for ws in sockets:
        await ws.close()


async def test_resume_from_an_offset_gives_exactly_the_saved_answer(alice_user, openai):
    full = slow(openai, 120)
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    started = await next_event(ws)
    have, length = "", 0
    for drop in range(3):  # drops and resumes three times while the answer is written
        for _ in range(8):
            event = await next_event(ws)
            have += event["delta"]
            length = event["length"]
        assert length == len(have)
        await ws.close()
        await asyncio.sleep(0.1)
        ws = await socket_for(alice_user)
        await ws.subscribe(RESUME, {"id": started["messageId"], "offset": length})
        resumed_start = await next_event(ws)
        assert resumed_start["__typename"] == "StreamStarted" and resumed_start["messageId"] == started["messageId"]
    events = await rest(ws)
    have += text_of(events)
    saved = (await answers(chat))[0]
    assert have == saved.content == full and saved.status == "COMPLETE"
    assert events[-1]["message"]["content"] == full
    # A finished answer: its text from the offset and its final event at once.
    await ws.subscribe(RESUME, {"id": started["messageId"], "offset": 6})
    replay = await rest(ws)
    assert [e["__typename"] for e in replay] == ["StreamStarted", "TokenDelta", "StreamDone"]
    assert replay[1] == {"__typename": "TokenDelta", "delta": full[6:], "length": len(full)}
    await ws.close()


async def test_nobody_follows_another_users_answer(alice_user, make_user, openai):
    slow(openai, 30)
    bob = await sync_to_async(make_user)("bob@example.com")
    _, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Private", "id": "alice-1"})
    started = await next_event(ws)
    intruder = await socket_for(bob)
    await intruder.subscribe(RESUME, {"id": started["messageId"], "offset": 0})
    refused = await intruder.receive()
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert (await intruder.receive())["type"] == "complete"
    await intruder.subscribe(SEND, {"chat": gid, "content": "Private", "id": "alice-1"})
    refused = await intruder.receive()
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    await rest(ws)
    await ws.close()
    await intruder.close()


async def test_completing_then_closing_at_once_cancels(alice_user, openai):
    """graphql-ws's lazy close: the client unsubscribes ("complete") and closes the socket at once."""
    slow(openai, 300)
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    op = await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    for _ in range(5):
        await next_event(ws)
    await ws.complete(op)
    await ws.close()
    (answer,) = await settle(chat)
    assert answer.status == "CANCELLED" and answer.content.startswith("word0") and len(answer.content.split()) < 300
    assert openai.disconnected.wait(5), "the provider call was not stopped"


async def test_cancel_generation_returns_the_final_state_and_followers_end(alice_user, openai):
    slow(openai, 300)
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    started = await next_event(ws)
    await next_event(ws)
    follower = await socket_for(alice_user)
    await follower.subscribe(RESUME, {"id": started["messageId"], "offset": 0})
    control = await socket_for(alice_user)
    result = await control.execute("mutation($id: ID!) { cancelGeneration(messageId: $id) { "
                                   "... on Message { status content } } }", {"id": started["messageId"]})
    cancelled = result["payload"]["data"]["cancelGeneration"]
    assert cancelled["status"] == "CANCELLED" and cancelled["content"].startswith("word0")
    for socket in (ws, follower):
        events = await rest(socket)
        assert events[-1]["message"]["status"] == "CANCELLED"
        assert events[-1]["message"]["content"] == cancelled["content"]
        await socket.close()
    await control.close()


async def test_a_provider_that_stops_sending_cannot_hold_a_cancel(alice_user, openai, settings):
    """The provider goes quiet mid-answer: cancelGeneration still ends it at once, CANCELLED."""
    settings.PROVIDER_TIMEOUT = 30
    openai.tokens = ["Hello ", "there "]
    openai.mode, openai.stall = "mid_stall", 20  # one token, then nothing
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    started = await next_event(ws)
    await next_event(ws)
    control = await socket_for(alice_user)
    result = await control.execute("mutation($id: ID!) { cancelGeneration(messageId: $id) { "
                                   "... on Message { status content } } }", {"id": started["messageId"]})
    assert result["payload"]["data"]["cancelGeneration"]["status"] == "CANCELLED"
    events = await rest(ws, timeout=10)
    assert events[-1]["message"]["status"] == "CANCELLED"
    await ws.close()
    await control.close()


async def test_answers_of_a_dead_process_become_interrupted(alice_user, openai):
    chat, gid = await new_chat(alice_user, "gpt-4")
    question = await sync_to_async(Message.objects.create)(chat=chat, role="user", content="Write")
    orphan = await sync_to_async(Message.objects.create)(
        chat=chat, role="assistant", content="half an ans", status="STREAMING", reply_to=question)
    long_ago = timezone.now() - timedelta(minutes=5)
    await sync_to_async(Message.objects.filter(pk=orphan.pk).update)(updated_at=long_ago)
    fresh = await sync_to_async(Message.objects.create)(
        chat=chat, role="assistant", content="still going", status="STREAMING", reply_to=question, superseded=True)
    ws = await socket_for(alice_user)
    gid_orphan = str(relay.GlobalID("Message", str(orphan.pk)))
    await ws.subscribe(RESUME, {"id": gid_orphan, "offset": 5})
    assert (await next_event(ws))["__typename"] == "StreamStarted"
    assert (await next_event(ws)) == {"__typename": "TokenDelta", "delta": "an ans", "length": 11}

    assert await sync_to_async(recovery.interrupt_orphans)() == 1
    events = await rest(ws)  # the follower sees the end
    assert events[-1]["message"]["status"] == "INTERRUPTED" and events[-1]["message"]["content"] == "half an ans"
    assert (await sync_to_async(Message.objects.get)(pk=fresh.pk)).status == "STREAMING"

    # A process that is the only one finishes every answer from before it started.
    assert await sync_to_async(recovery.interrupt_orphans)(timezone.now()) == 1
    # cancelGeneration on an answer nobody writes any more ends it at once.
    await sync_to_async(Message.objects.filter(pk=fresh.pk).update)(status="STREAMING", updated_at=long_ago)
    result = await ws.execute("mutation($id: ID!) { cancelGeneration(messageId: $id) { ... on Message { status } } }",
                              {"id": str(relay.GlobalID("Message", str(fresh.pk)))})
    assert result["payload"]["data"]["cancelGeneration"] == {"status": "CANCELLED"}
    await ws.close()


async def test_regenerate_streams_a_new_version_in_place(alice_user, openai):
    openai.tokens = ["First ", "answer."]
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "One?"})
    one = await rest(ws)
    await ws.subscribe(SEND, {"chat": gid, "content": "Two?"})
    await rest(ws)
    first_answer = one[-1]["message"]["id"]
    await ws.execute("mutation($id: ID!) { rateMessage(id: $id, rating: 1) { __typename } }", {"id": first_answer})

    slow(openai, 40, 0.01)
    result = await ws.execute("mutation($id: ID!) { regenerateMessage(id: $id) { ... on Message { id status } } }",
                              {"id": first_answer})
    new = result["payload"]["data"]["regenerateMessage"]
    assert new["status"] == "STREAMING"
    await ws.subscribe(RESUME, {"id": new["id"], "offset": 0})
    events = await rest(ws)
    assert events[0]["userMessage"]["content"] == "One?"
    assert text_of(events) == "".join(openai.tokens) == events[-1]["message"]["content"]
    # The history the model got is what came before the question, not the later turns.
    assert [m["content"] for m in openai.requests[-1]["body"]["messages"]] == ["One?"]

    listed = await ws.execute('query($id: ID!) { node(id: $id) { ... on Chat { messages { edges { node { '
                              'id content versions { id rating current } } } } } } }', {"id": gid})
    rows = [e["node"] for e in listed["payload"]["data"]["node"]["messages"]["edges"]]
    assert [r["content"] for r in rows] == ["One?", "".join(openai.tokens), "Two?", "First answer."]
    assert [(v["id"], v["rating"], v["current"]) for v in rows[1]["versions"]] == [
        (first_answer, 1, False), (new["id"], None, True)]
    await ws.close()


async def test_a_version_picked_while_an_answer_is_written_stays_picked(alice_user, openai):
    openai.tokens = ["First."]
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "One?"})
    first = (await rest(ws))[-1]["message"]["id"]
    slow(openai, 40, 0.02)
    result = await ws.execute("mutation($id: ID!) { regenerateMessage(id: $id) { ... on Message { id } } }",
                              {"id": first})
    new = result["payload"]["data"]["regenerateMessage"]["id"]
    await ws.execute("mutation($id: ID!) { selectMessageVersion(id: $id) { __typename } }", {"id": first})
    await ws.subscribe(RESUME, {"id": new, "offset": 0})
    events = await rest(ws)
    assert events[-1]["message"]["status"] == "COMPLETE"
    listed = await ws.execute('query($id: ID!) { node(id: $id) { ... on Chat { messages { edges { node { '
                              'id versions { id current } } } } } } }', {"id": gid})
    rows = [e["node"] for e in listed["payload"]["data"]["node"]["messages"]["edges"]]
    # The finished answer did not make itself current again: the one picked is shown, once.
    assert [r["id"] for r in rows][1] == first
    assert [(v["id"], v["current"]) for v in rows[1]["versions"]] == [(first, True), (new, False)]
    await ws.close()


async def test_stream_events_carry_the_chat_for_the_cache(alice_user, openai):
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Plan a trip to Lisbon\nin May"})
    events = await rest(ws)
    started, done = events[0], events[-1]
    assert started["chat"]["id"] == gid and started["chat"]["title"] == "Plan a trip to Lisbon"
    assert done["chat"]["id"] == gid and done["chat"]["updatedAt"] >= started["chat"]["updatedAt"]
    await ws.close()


async def test_the_stream_protocol_survives_a_client_that_never_reads(alice_user, openai):
    """A follower that falls behind gets the missed deltas merged: the same text, in order."""
    slow(openai, 200, 0)
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    await asyncio.sleep(1.0)  # reads nothing while the answer is written
    events = await rest(ws)
    assert text_of(events) == "".join(openai.tokens) == events[-1]["message"]["content"]
    lengths = [e["length"] for e in events if e["__typename"] == "TokenDelta"]
    assert lengths == sorted(lengths) and lengths[-1] == len(text_of(events))
    await ws.close()


async def test_deleting_the_chat_mid_answer_ends_its_stream_quietly(alice_user, openai, caplog):
    slow(openai, 200)
    chat, gid = await new_chat(alice_user, "gpt-4")
    ws = await socket_for(alice_user)
    await ws.subscribe(SEND, {"chat": gid, "content": "Write"})
    await next_event(ws)
    await next_event(ws)
    control = await socket_for(alice_user)
    await control.execute("mutation($id: ID!) { deleteChat(id: $id) { __typename } }", {"id": gid})
    events = await rest(ws)  # the stream ends: no final event for an answer that is gone
    assert all(e["__typename"] == "TokenDelta" for e in events)
    assert not await sync_to_async(Message.objects.filter(chat_id=chat.pk).exists)()
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.text  # nothing logged as an error
    await ws.close()
    await control.close()
