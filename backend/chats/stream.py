"""One answer's generation: the provider's tokens relayed as events, the outcome stored.

``stream_turn`` runs a started turn (``turn.start_turn``) to its end and yields ``Token``... then
``Sources`` (RAG) and ``Done``, or ``Failed``. It stops early only when ``cancel`` is set
(CANCELLED; its task is cancelled too when the provider sends nothing more) or when its task is
cancelled without it (the server shutting down: INTERRUPTED). The growing
text is saved by the job that drives it (``generation``); the final text here.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from backend.core import metrics
from backend.core.concurrency import in_thread_pool
from backend.quotas import services as quotas
from backend.rag import pipeline
from backend.rag.chunking import count_tokens
from backend.rag.providers import PROVIDER_ERROR, ProviderError, typed_out

from .models import Chat, Message

logger = logging.getLogger(__name__)


@dataclass
class Token:
    delta: str
    length: int = 0  # the answer's length (characters) after this delta


@dataclass
class Sources:
    sources: list[dict]


@dataclass
class Done:
    message: Message
    chat: Chat | None = None


@dataclass
class Failed:
    code: str
    message: str
    answer: Message | None
    retry_after: float | None = None
    chat: Chat | None = None


FINAL = (Done, Failed)


def finish_turn(turn, content: str, status: str, *, first_token_ms=None, error: ProviderError | None = None
                ) -> tuple[Message, Chat]:
    """Store the answer's outcome; returns it and its chat (updated now), or (None, None) when the
    answer is gone (its chat was deleted while it was written). Only the outcome's columns are
    written: a version picked meanwhile (``superseded``) is not overwritten."""
    answer = turn.answer
    now = timezone.now()
    fields = {"content": content, "status": status, "completion_tokens": count_tokens(content),
              "latency_ms": int((time.monotonic() - turn.started) * 1000), "first_token_ms": first_token_ms,
              "updated_at": now}
    if error is not None:
        fields.update(error_code=error.code, error_message=error.message)
    if turn.sources:  # an answer's sources are the passages it cites: a refusal cites none
        fields["sources"] = cited_sources(turn, content)
    if turn.passages and content:
        score, unsupported = pipeline.groundedness(content, turn.passages)
        fields.update(groundedness=round(score, 4), unsupported_sentences=unsupported)
    with transaction.atomic():  # one commit: the answer, the day's tokens, the chat's time
        if not Message.objects.filter(pk=answer.pk).update(**fields):
            return None, None
        if turn.fixed_answer is None:  # the app's own refusal called no model: nothing to count
            quotas.record_tokens(turn.chat.owner_id, turn.generator, fields["completion_tokens"], now)
        Chat.objects.filter(pk=turn.chat.pk).update(updated_at=now)
    for name, value in fields.items():
        setattr(answer, name, value)
    metrics.TURNS.labels(status, answer.error_code or "").inc()
    logger.info("answer %s %s", answer.pk, status, extra={
        "answer_id": answer.pk, "status": status, "error_code": answer.error_code or None,
        "generator": turn.generator, "completion_tokens": answer.completion_tokens,
        "latency_ms": answer.latency_ms, "first_token_ms": first_token_ms})
    chat = Chat.objects.filter(pk=turn.chat.pk).first()
    return (answer, chat) if chat is not None else (None, None)


def cited_sources(turn, content: str) -> list[dict]:
    numbers = pipeline.cited(content)
    return [source for source in turn.sources if source["number"] in numbers]


_finish = in_thread_pool(finish_turn)


async def stream_turn(turn, cancel: asyncio.Event):
    """Yield Token..., then Sources (RAG), then Done; or Failed."""
    parts: list[str] = []
    first_token_ms = None
    status = Message.Status.CANCELLED
    metrics.STREAMS.inc()
    tokens = metrics.TOKENS.labels(turn.generator or "none")
    length = 0
    try:
        if turn.fixed_answer is not None:  # nothing passed the threshold: no provider call
            stream = typed_out(turn.fixed_answer)
        else:
            stream = turn.provider.astream(turn.messages, turn.params)
        try:
            async for delta in stream:
                if cancel.is_set():
                    break
                if first_token_ms is None:
                    first_token_ms = int((time.monotonic() - turn.started) * 1000)
                    metrics.FIRST_TOKEN.labels(turn.generator or "none").observe(first_token_ms / 1000)
                parts.append(delta)
                length += len(delta)
                tokens.inc()
                yield Token(delta, length)
            else:
                status = Message.Status.COMPLETE
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the turn FAILED with a code
            if not isinstance(exc, ProviderError):
                logger.exception("the %s provider failed unexpectedly", turn.generator)
                exc = ProviderError(PROVIDER_ERROR, "The model provider failed unexpectedly.")
            answer, chat = await _finish(turn, "".join(parts), Message.Status.FAILED,
                                         first_token_ms=first_token_ms, error=exc)
            status = None
            if answer is not None:
                yield Failed(exc.code, exc.message, answer, exc.retry_after, chat)
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # stops the provider call
        sources = cited_sources(turn, "".join(parts)) if status == Message.Status.COMPLETE else []
        if sources:
            yield Sources(sources)
        answer, chat = await _finish(turn, "".join(parts), status, first_token_ms=first_token_ms)
        status = None
        if answer is not None:
            yield Done(answer, chat)
    finally:
        metrics.STREAMS.dec()
        if status is not None:  # the task was cancelled: cut off after a cancel, or the server stopping
            final = Message.Status.CANCELLED if cancel.is_set() else Message.Status.INTERRUPTED
            await asyncio.shield(_finish(turn, "".join(parts), final, first_token_ms=first_token_ms))
