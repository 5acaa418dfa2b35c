"""The turn: a question and its streamed answer.

``start_turn`` checks that the model can answer, retrieves the passages (RAG, before any write),
then saves the user's message and an empty STREAMING answer; ``stream_turn`` relays the provider's
tokens, saving the answer as it grows; ``finish_turn`` stores the outcome. A dropped connection
leaves the partial answer INTERRUPTED; completing the subscription or ``request_cancel`` leaves it
CANCELLED.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.core import metrics
from backend.core.errors import field_error as _field
from backend.core.throttle import throttle
from backend.rag import catalog, pipeline
from backend.rag.chunking import count_tokens
from backend.rag.providers import PROVIDER_ERROR, ChatMessage, Params, ProviderError

from .keys import credentials, rag_generator, require, require_model
from .models import Chat, Message
from .params import known_model, clean_settings, effective_params
from .services import get_chat, get_message

logger = logging.getLogger(__name__)

HISTORY_TURNS = 10


@dataclass
class Turn:
    chat: Chat
    user_message: Message
    answer: Message
    provider: object
    messages: list[ChatMessage]
    params: Params
    sources: list[dict] = field(default_factory=list)
    passages: dict[int, str] = field(default_factory=dict)
    fixed_answer: str | None = None
    generator: str = ""
    started: float = field(default_factory=time.monotonic)


_cancel_events: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}


def _history(chat: Chat, before_id: int | None = None) -> list[ChatMessage]:
    messages = chat.messages.filter(id__lt=before_id) if before_id is not None else chat.messages.all()
    rows = list(messages.filter(status=Message.Status.COMPLETE)
                .exclude(role=Message.Role.SYSTEM).order_by("-id")[: HISTORY_TURNS * 2])
    return [ChatMessage(m.role, m.content) for m in reversed(rows)]


def _retrieve(user, question: str, history: list[ChatMessage], rag: dict) -> tuple[list[dict], dict]:
    from backend.documents import search as documents

    query = pipeline.rewrite_follow_up(question, history)
    filters_raw = rag.get("filters") or {}
    filters = documents.SearchFilters(file_types=filters_raw.get("file_types"), tags=filters_raw.get("tags"),
                                      created_after=filters_raw.get("created_after"),
                                      created_before=filters_raw.get("created_before")) if filters_raw else None
    # Passages down to the lexical floor are fetched; those that neither reach the threshold nor
    # hold most of the question's words are dropped (pipeline.relevant).
    floor = min(rag["threshold"], pipeline.LEXICAL_FLOOR)
    hits = documents.search(user, query, collection_ids=rag.get("collection_ids") or None, k=rag["k"],
                            threshold=floor, filters=filters, strategy=rag["strategy"])
    hits = [hit for hit in hits if pipeline.relevant(hit.score, pipeline.term_coverage(query, hit.chunk.text),
                                                     rag["threshold"])]
    sources = []
    for number, hit in enumerate(hits, start=1):
        chunk, document = hit.chunk, hit.document
        sources.append({"number": number, "document_id": document.pk, "title": document.title,
                        "page": chunk.page_start, "chunk_id": chunk.pk, "chunk_position": chunk.position,
                        "snippet": chunk.text[:300], "text": chunk.text, "score": round(hit.score, 4)})
    retrieval = {"query": query, "original_question": question, "strategy": rag["strategy"], "settings": rag,
                 "passages": [{k: s[k] for k in ("number", "document_id", "chunk_id", "title", "page", "score")}
                              for s in sources]}
    return sources, retrieval


def start_turn(user, chat_id, content: str, *, model: str | None = None, parameters: dict | None = None) -> Turn:
    """Validate; refuse a model the user cannot use and a used-up quota; retrieve (RAG: before any
    write, outside a transaction); then store the question and an empty STREAMING answer in one
    transaction. Nothing is stored when any check fails."""
    from backend.quotas import services as quotas

    chat = get_chat(user, chat_id)
    throttle("turn", f"user:{user.pk}", "Too many messages.")
    content = (content or "").strip()
    if not content:
        raise _field("content", "Type a message.", "REQUIRED")
    if len(content) > 32000:
        raise _field("content", "At most 32000 characters.", "TOO_LONG")
    if model is not None and model != chat.model:
        known_model(model)
        chat.model = model
    overrides = clean_settings(chat.model, parameters or {})
    params = effective_params(user, chat, overrides)
    creds = credentials(user)
    uses_documents = catalog.BY_ID[chat.model].uses_documents
    if uses_documents:
        generator, available = rag_generator(user, creds, params["rag"].get("generator"))
        require(generator, available)
    else:
        generator = chat.model
        require_model(user, generator, creds)
    quotas.check_turn(user, generator, creds)
    history = _history(chat)
    call = Params(temperature=params["temperature"], top_p=params["top_p"], max_tokens=params["max_tokens"],
                  extra={"no_answer": settings.RAG_NO_ANSWER_TEXT})
    provider = catalog.provider_for(generator, creds, timeout=settings.PROVIDER_TIMEOUT)
    turn = Turn(chat, None, None, provider, [], call, generator=generator)
    retrieval_trace = None
    if uses_documents:
        rag = params["rag"]
        sources, retrieval_trace = _retrieve(user, content, history, rag)
        passages = [pipeline.Passage(s["number"], s["text"], s["title"], s["page"]) for s in sources]
        passages = pipeline.fit_budget(passages, rag["context_budget"])
        retrieval_trace["passages"] = retrieval_trace["passages"][: len(passages)]
        retrieval_trace["generator"] = generator
        turn.sources = [{k: v for k, v in s.items() if k != "text"} for s in sources[: len(passages)]]
        turn.passages = {p.number: p.text for p in passages}
        if not passages:
            turn.fixed_answer = settings.RAG_NO_ANSWER_TEXT
        call.extra["passages"] = [p.text for p in passages]
        turn.messages = pipeline.build_rag_messages(retrieval_trace["query"], history, passages,
                                                    system_prompt=params["system_prompt"],
                                                    include_metadata=rag.get("include_metadata", True))
    else:
        system = [ChatMessage("system", params["system_prompt"])] if params["system_prompt"] else []
        turn.messages = [*system, *history, ChatMessage("user", content)]
    prompt_tokens = sum(count_tokens(m.content) for m in turn.messages)
    with transaction.atomic():
        if not chat.title:
            chat.title = content.splitlines()[0][:80]
        chat.save()
        turn.user_message = Message.objects.create(
            chat=chat, role=Message.Role.USER, content=content, model=chat.model, prompt_tokens=prompt_tokens)
        turn.answer = Message.objects.create(
            chat=chat, role=Message.Role.ASSISTANT, model=chat.model, status=Message.Status.STREAMING,
            retrieval=retrieval_trace, sources=turn.sources if retrieval_trace is not None else [],
            generator=generator, prompt_tokens=0 if turn.fixed_answer is not None else prompt_tokens)
    return turn


def save_partials(contents: dict[int, str]) -> set[int]:
    """Save the answers so far of many streams in one transaction (still STREAMING ones only: a
    finished answer is never overwritten); returns those whose cancel was requested meanwhile.
    One prepared UPDATE run for every row (executemany): with hundreds of streams, building an
    ORM update per row, or one CASE expression for all, cost more than the writes."""
    from django.db import connection

    if not contents:
        return set()
    streaming = Message.Status.STREAMING
    field = Message._meta.get_field
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(Message._meta.db_table)} SET {quote(field('content').column)} = %s, "
           f"{quote(field('updated_at').column)} = %s WHERE {quote(field('id').column)} = %s "
           f"AND {quote(field('status').column)} = %s")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.executemany(sql, [(content, now, pk, streaming) for pk, content in contents.items()])
        return set(Message.objects.filter(pk__in=list(contents), status=streaming, cancel_requested=True)
                   .values_list("pk", flat=True))


class _PartialSaves:
    """The growing answers of every stream on an event loop, written together every SAVE_EVERY:
    one transaction for all of them, not two queries per stream (with hundreds of streams the
    per-stream writes were half of the server's time). A cancel requested from another process
    is seen at the next write, as before."""

    def __init__(self):
        self.pending: dict[int, list[str]] = {}
        self.task: asyncio.Task | None = None

    def put(self, message_id: int, parts: list[str]) -> None:
        """``parts``: the stream's growing list of deltas, joined when written."""
        self.pending[message_id] = parts
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())

    def discard(self, message_id: int) -> None:
        self.pending.pop(message_id, None)

    async def _flush(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(SAVE_EVERY)
                contents = {pk: "".join(parts) for pk, parts in self.pending.items()}
                self.pending = {}
                try:
                    cancelled = await sync_to_async(save_partials)(contents)
                except Exception:  # noqa: BLE001 - a missed partial save is made good by the final one
                    logger.exception("saving %d growing answers failed", len(contents))
                    continue
                for pk in cancelled:
                    local = _cancel_events.get(pk)
                    if local is not None:
                        local[1].set()
        finally:
            self.task = None  # no reference to the loop once idle (the registry is keyed weakly by it)


_partial_saves: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PartialSaves]" = weakref.WeakKeyDictionary()


def _partials() -> _PartialSaves:
    loop = asyncio.get_running_loop()
    if loop not in _partial_saves:
        _partial_saves[loop] = _PartialSaves()
    return _partial_saves[loop]


def finish_turn(turn: Turn, content: str, status: str, *, first_token_ms=None, error: ProviderError | None = None
                ) -> Message:
    answer = Message.objects.get(pk=turn.answer.pk)
    answer.content = content
    answer.status = status
    answer.completion_tokens = count_tokens(content)
    answer.latency_ms = int((time.monotonic() - turn.started) * 1000)
    answer.first_token_ms = first_token_ms
    if error is not None:
        answer.error_code, answer.error_message = error.code, error.message
    if turn.sources:  # an answer's sources are the passages it cites: a refusal cites none
        answer.sources = cited_sources(turn, content)
    if turn.passages and content:
        score, unsupported = pipeline.groundedness(content, turn.passages)
        answer.groundedness, answer.unsupported_sentences = round(score, 4), unsupported
    answer.save()
    metrics.TURNS.labels(status, answer.error_code or "").inc()
    Chat.objects.filter(pk=turn.chat.pk).update(updated_at=timezone.now())
    return answer


def cited_sources(turn: Turn, content: str) -> list[dict]:
    numbers = pipeline.cited(content)
    return [source for source in turn.sources if source["number"] in numbers]


def request_cancel(user, message_id) -> Message:
    message = get_message(user, message_id)
    if message.status != Message.Status.STREAMING:
        raise _field("id", "This answer is not being generated.", "NOT_STREAMING")
    Message.objects.filter(pk=message.pk).update(cancel_requested=True)
    local = _cancel_events.get(message.pk)
    if local is not None:
        loop, event = local
        loop.call_soon_threadsafe(event.set)
    message.cancel_requested = True
    return message


@dataclass
class Token:
    delta: str


@dataclass
class Sources:
    sources: list[dict]


@dataclass
class Done:
    message: Message


@dataclass
class Failed:
    code: str
    message: str
    answer: Message | None
    retry_after: float | None = None


SAVE_EVERY = 0.5  # seconds between saves of the growing answer


async def stream_turn(turn: Turn, *, interrupted=lambda: False):
    """Yield Token..., then Sources (RAG), then Done; or Failed. Saves the answer as it grows."""
    loop = asyncio.get_running_loop()
    cancel = asyncio.Event()
    _cancel_events[turn.answer.pk] = (loop, cancel)
    parts: list[str] = []
    first_token_ms = None
    partials = _partials()
    status = Message.Status.CANCELLED
    metrics.STREAMS.inc()
    tokens = metrics.TOKENS.labels(turn.generator or "none")
    try:
        if turn.fixed_answer is not None:  # nothing passed the threshold: no provider call
            stream = _words(turn.fixed_answer)
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
                tokens.inc()
                yield Token(delta)
                partials.put(turn.answer.pk, parts)
            else:
                status = Message.Status.COMPLETE
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the turn FAILED with a code
            if not isinstance(exc, ProviderError):
                logger.exception("the %s provider failed unexpectedly", turn.generator)
                exc = ProviderError(PROVIDER_ERROR, "The model provider failed unexpectedly.")
            partials.discard(turn.answer.pk)
            answer = await sync_to_async(finish_turn)(turn, "".join(parts), Message.Status.FAILED,
                                                      first_token_ms=first_token_ms, error=exc)
            status = None
            yield Failed(exc.code, exc.message, answer, exc.retry_after)
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # stops the provider call
        partials.discard(turn.answer.pk)
        sources = cited_sources(turn, "".join(parts)) if status == Message.Status.COMPLETE else []
        if sources:
            yield Sources(sources)
        answer = await sync_to_async(finish_turn)(turn, "".join(parts), status, first_token_ms=first_token_ms)
        status = None
        yield Done(answer)
    finally:
        metrics.STREAMS.dec()
        _cancel_events.pop(turn.answer.pk, None)
        partials.discard(turn.answer.pk)
        if status is not None:  # left early: the client completed the subscription or went away
            final = Message.Status.INTERRUPTED if interrupted() else Message.Status.CANCELLED
            await asyncio.shield(sync_to_async(finish_turn)(turn, "".join(parts), final,
                                                            first_token_ms=first_token_ms))


async def _words(text: str):
    import re

    for token in re.findall(r"\S+\s*", text):
        yield token


def regenerate(user, message_id) -> Message:
    """Answer the question before ``message_id`` again (not streamed); the old answer is replaced."""
    from asgiref.sync import async_to_sync

    old = get_message(user, message_id)
    if old.role != Message.Role.ASSISTANT:
        raise _field("id", "Only answers can be regenerated.", "NOT_AN_ANSWER")
    question = old.chat.messages.filter(role=Message.Role.USER, id__lt=old.pk).order_by("-id").first()
    if question is None:
        raise _field("id", "There is no question to answer.", "NO_QUESTION")
    chat = old.chat
    with transaction.atomic():  # a refused turn (model, quota) keeps the old question and answer
        old.delete()
        question_text = question.content
        question.delete()
        turn = start_turn(user, chat.pk, question_text)

    async def run():
        result = None
        async for event in stream_turn(turn):
            if isinstance(event, (Done, Failed)):
                result = event
        return result

    event = async_to_sync(run)()
    return event.message if isinstance(event, Done) else event.answer

