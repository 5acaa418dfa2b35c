"""The answer streams: ``chatStream`` sends a question and follows its answer, ``answerStream``
follows an answer again (after a dropped socket, a reload, on another device).

An answer is written to its end whoever listens (``backend/chats/generation.py``); these
subscriptions only follow it. Completing a ``chatStream`` (graphql-ws ``complete``: the client
unsubscribed) stops its answer, CANCELLED; a closed socket does not.
"""

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from strawberry import relay

from backend.chats import following, generation, turn
from backend.chats.models import Message
from backend.chats.stream import Done, Failed, Sources, Token
from backend.core.concurrency import in_thread_pool

from .chats import ChatParametersInput, ChatType, Citation, MessageType, StreamErrorCode, parameters_dict
from .base import decode_id
from .context import Info


@strawberry.type
class StreamStarted:
    user_message: MessageType
    message_id: relay.GlobalID = strawberry.field(description="The answer being written; cancel it by this id.")
    chat: ChatType = strawberry.field(description="The chat now: its title is set by its first question.")


@strawberry.type
class TokenDelta:
    delta: str
    length: int = strawberry.field(
        description="The answer's length (characters) with this delta: resume from it with answerStream(offset:).")


@strawberry.type
class StreamSources:
    sources: list[Citation]


@strawberry.type
class StreamDone:
    message: MessageType
    chat: ChatType


@strawberry.type
class StreamFailed:
    code: StreamErrorCode
    error_message: str
    answer: MessageType | None
    chat: ChatType
    retry_after: float | None = strawberry.field(
        description="RATE_LIMITED: seconds to wait before trying again, when the provider says.")


ChatStreamEvent = Annotated[StreamStarted | TokenDelta | StreamSources | StreamDone | StreamFailed,
                            strawberry.union("ChatStreamEvent")]


def _graphql(event):
    kind = type(event)
    if kind is Token:
        return TokenDelta(delta=event.delta, length=event.length)
    if kind is Sources:
        return StreamSources(sources=[Citation.from_dict(s) for s in event.sources])
    if kind is Done:
        return StreamDone(message=event.message, chat=event.chat)
    return StreamFailed(code=StreamErrorCode(event.code), error_message=event.message, answer=event.answer,
                        retry_after=event.retry_after, chat=event.chat)


async def _follow(info: Info, answer: Message, offset: int, *, stop_on_complete: bool):
    task = asyncio.current_task()
    finished = False
    try:
        async for event in following.follow(answer, offset):
            finished = isinstance(event, (Done, Failed))
            yield _graphql(event)
    finally:
        if stop_on_complete and not finished and task in info.context.completed:
            generation.stop(answer.pk)


@strawberry.type
class Subscription:
    @strawberry.subscription(description=(
        "Send a message and follow the answer: started, tokens, sources, done. With clientMessageId (a UUID the "
        "client makes per message), sending again — a retry after a dropped socket, a second tab — stores nothing "
        "new: it follows the same answer from its start. Unsubscribing stops the answer (CANCELLED); a closed "
        "socket does not (follow it again with answerStream)."))
    async def chat_stream(self, info: Info, chat_id: relay.GlobalID, content: str, model: str | None = None,
                          parameters: ChatParametersInput | None = None, client_message_id: str | None = None
                          ) -> AsyncGenerator[ChatStreamEvent, None]:
        user = info.context.get_user()
        started = await in_thread_pool(turn.start_turn)(
            user, decode_id(chat_id, "Chat"), content, client_id=client_message_id, model=model,
            parameters=parameters_dict(parameters))
        if not started.attached:
            generation.launch(started)
        yield StreamStarted(user_message=started.user_message, chat=started.chat,
                            message_id=relay.GlobalID("Message", str(started.answer.pk)))
        async for event in _follow(info, started.answer, 0, stop_on_complete=True):
            yield event

    @strawberry.subscription(description=(
        "Follow an answer of yours from character `offset` (the `length` of the last delta you have): the text you "
        "miss, then live deltas, then its final event; at once for a finished answer. Works from any server and "
        "device. Unsubscribing stops following, not the answer (cancelGeneration does)."))
    async def answer_stream(self, info: Info, message_id: relay.GlobalID, offset: int = 0
                            ) -> AsyncGenerator[ChatStreamEvent, None]:
        user = info.context.get_user()
        answer, question = await in_thread_pool(turn.followable)(user, decode_id(message_id, "Message"))
        if question is not None:
            yield StreamStarted(user_message=question, chat=answer.chat, message_id=message_id)
        async for event in _follow(info, answer, offset, stop_on_complete=False):
            yield event
