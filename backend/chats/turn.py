"""The turn: a question and its answer, started.

``start_turn`` checks that the model can answer, retrieves the passages (RAG, before any write),
then saves the user's message and an empty STREAMING answer; ``generation.launch`` then runs it to
its end (``stream.stream_turn``), whoever listens. A question sent again with the same client id
(a retried subscription, a second tab) is not stored again: its turn is returned, to follow.
``start_regeneration`` answers a question again: a new version of its answer, in its place.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from backend.core.errors import field_error as _field
from backend.core.throttle import throttle
from backend.rag import catalog, pipeline
from backend.rag.chunking import count_tokens
from backend.rag.providers import ChatMessage, Params

from . import generation
from .keys import credentials, rag_generator, require, require_model
from .models import Chat, Message
from .params import known_model, clean_settings, effective_params
from .conversations import get_chat, get_message
from .codes import ChatErrorCode

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
    attached: bool = False  # a question sent again (same client id): its turn, already started


CLIENT_ID_MAX = 64


def _history_sql(before: bool) -> str:
    """The last turns of a chat, newest first: its current, complete, non-system messages in
    conversation order (``Message.CONVERSATION_ORDER``, read backwards on the index that has it),
    before a question's position if ``before``. Written out, not built by the ORM: compiling the
    ordering expression (and its reverse) was a third of a turn's start-up statements' CPU."""
    position = "COALESCE(reply_to_id, id)"
    return (f"SELECT role, content FROM {connection.ops.quote_name(Message._meta.db_table)} "
            "WHERE chat_id = %s AND status = %s AND role <> %s AND superseded = %s"
            + (f" AND {position} < %s" if before else "")
            + f" ORDER BY {position} DESC, id DESC LIMIT %s")


def _history(chat: Chat, before: Message | None = None) -> list[ChatMessage]:
    """The last turns of the conversation (current versions), before question ``before`` if given.
    Only the two columns a prompt needs (an answer's sources and retrieval trace are JSON)."""
    params = [chat.pk, Message.Status.COMPLETE, Message.Role.SYSTEM, False]
    params += [before.pk] if before is not None else []
    with connection.cursor() as cursor:
        cursor.execute(_history_sql(before is not None), [*params, HISTORY_TURNS * 2])
        rows = cursor.fetchall()
    return [ChatMessage(role, content) for role, content in reversed(rows)]


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
                        "snippet": chunk.text[:300], "text": chunk.text, "score": round(hit.score, 4),
                        "version": chunk.version})
    retrieval = {"query": query, "original_question": question, "strategy": rag["strategy"], "settings": rag,
                 "passages": [{k: s[k] for k in ("number", "document_id", "chunk_id", "title", "page", "score")}
                              for s in sources]}
    return sources, retrieval


def start_turn(user, chat_id, content: str, *, client_id: str | None = None, model: str | None = None,
               parameters: dict | None = None, question: Message | None = None, adopt: int | None = None) -> Turn:
    """Validate; refuse a model the user cannot use and a used-up quota; retrieve (RAG: before any
    write, outside a transaction); then store the question and an empty STREAMING answer in one
    transaction. Nothing is stored when any check fails. A question already sent with
    ``client_id`` gives its turn (``attached``), stores nothing and counts against no limit.
    ``question``: answer this stored question again, as a new current version of its answer
    (``adopt``: an earlier answer of it stored before versions existed, made a version too)."""
    from backend.quotas import services as quotas

    chat = get_chat(user, chat_id)
    content = (content or "").strip() if question is None else question.content
    if client_id is not None:
        client_id = _clean_client_id(client_id)
        sent = _sent(chat, client_id, content)
        if sent is not None:
            return sent
    throttle("turn", f"user:{user.pk}", "Too many messages.")
    if not content:
        raise _field("content", "Type a message.", ChatErrorCode.REQUIRED)
    if len(content) > 32000:
        raise _field("content", "At most 32000 characters.", ChatErrorCode.TOO_LONG)
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
    history = _history(chat, before=question)
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
    try:
        with transaction.atomic():
            if not chat.title:
                chat.title = content.splitlines()[0][:80]
            chat.save(update_fields=["title", "model", "updated_at"])
            if question is None:
                question = Message.objects.create(chat=chat, role=Message.Role.USER, content=content,
                                                  model=chat.model, prompt_tokens=prompt_tokens, client_id=client_id)
            else:  # the answers so far become earlier versions
                if adopt is not None:
                    Message.objects.filter(pk=adopt, chat=chat, reply_to__isnull=True).update(reply_to=question)
                Message.objects.filter(chat=chat, role=Message.Role.ASSISTANT, reply_to=question).update(superseded=True)
            turn.user_message = question
            turn.answer = Message.objects.create(
                chat=chat, role=Message.Role.ASSISTANT, model=chat.model, status=Message.Status.STREAMING,
                retrieval=retrieval_trace, sources=turn.sources if retrieval_trace is not None else [],
                generator=generator, prompt_tokens=0 if turn.fixed_answer is not None else prompt_tokens,
                reply_to=question)
            quotas.record_tokens(user.pk, generator, turn.answer.prompt_tokens)
    except IntegrityError:
        sent = _sent(chat, client_id, content) if client_id is not None else None
        if sent is None:  # not a concurrent send of the same question
            raise
        return sent
    return turn


def _clean_client_id(value) -> str:
    value = str(value)
    if not 1 <= len(value) <= CLIENT_ID_MAX or not value.isascii() or not value.isprintable():
        raise _field("clientMessageId", f"1 to {CLIENT_ID_MAX} printable ASCII characters (a UUID, say).",
                     ChatErrorCode.INVALID_CLIENT_ID)
    return value


def _sent(chat: Chat, client_id: str, content: str) -> Turn | None:
    """The turn of the question already sent with ``client_id``, or None."""
    question = chat.messages.filter(role=Message.Role.USER, client_id=client_id).first()
    if question is None:
        return None
    if question.content != content:
        raise _field("clientMessageId", "This id was sent with another message; make a new one per message.",
                     ChatErrorCode.CLIENT_ID_REUSED)
    answer = (Message.objects.filter(reply_to=question, superseded=False).order_by("-id").first()
              or Message.objects.filter(reply_to=question).order_by("-id").first())
    if answer is None:
        raise _field("clientMessageId", "This message has no answer to follow.", ChatErrorCode.NO_ANSWER)
    return Turn(chat, question, answer, None, [], Params(), attached=True)


# --- regenerate, versions, cancel ------------------------------------------------------------

def question_of(answer: Message) -> Message | None:
    if answer.reply_to_id is not None:
        return answer.reply_to
    return (answer.chat.messages.filter(role=Message.Role.USER, id__lt=answer.pk, superseded=False)
            .order_by("-id").first())


def start_regeneration(user, message_id) -> Turn:
    """Answer the question of answer ``message_id`` again: a new version, current, in the same place
    (the earlier ones are kept, with their ratings). A refused turn (model, quota) changes nothing."""
    old = get_message(user, message_id)
    if old.role != Message.Role.ASSISTANT:
        raise _field("id", "Only answers can be regenerated.", ChatErrorCode.NOT_AN_ANSWER)
    if old.status == Message.Status.STREAMING:
        raise _field("id", "This answer is still being written: stop it first.", ChatErrorCode.STILL_STREAMING)
    question = question_of(old)
    if question is None:
        raise _field("id", "There is no question to answer.", ChatErrorCode.NO_QUESTION)
    # An answer from before versions becomes the first version, in the turn's transaction.
    return start_turn(user, old.chat_id, question.content, question=question,
                      adopt=old.pk if old.reply_to_id is None else None)


def followable(user, message_id) -> tuple[Message, Message | None]:
    """An answer of ``user`` to follow (``answerStream``), and its question."""
    answer = get_message(user, message_id)
    if answer.role != Message.Role.ASSISTANT:
        raise _field("messageId", "Only answers can be followed.", ChatErrorCode.NOT_AN_ANSWER)
    return answer, question_of(answer)


def versions(answer: Message) -> list[Message]:
    """Every answer to the same question, oldest first (just this one for a question)."""
    if answer.role != Message.Role.ASSISTANT or answer.reply_to_id is None:
        return [answer]
    return list(Message.objects.filter(reply_to_id=answer.reply_to_id).order_by("id"))


def select_version(user, message_id) -> Message:
    """Make answer ``message_id`` the current version of its question's answer."""
    answer = get_message(user, message_id)
    if answer.role != Message.Role.ASSISTANT:
        raise _field("id", "Only answers have versions.", ChatErrorCode.NOT_AN_ANSWER)
    if answer.reply_to_id is not None:
        with transaction.atomic():
            Message.objects.filter(reply_to_id=answer.reply_to_id).exclude(pk=answer.pk).update(superseded=True)
            Message.objects.filter(pk=answer.pk).update(superseded=False)
        answer.superseded = False
    return answer


def request_cancel(user, message_id) -> Message:
    """Stop an answer being written, wherever it runs (``generation.settled`` then waits for its
    final state). An answer whose process died is finished here, CANCELLED."""
    message = get_message(user, message_id)
    if message.status != Message.Status.STREAMING:
        raise _field("id", "This answer is not being generated.", ChatErrorCode.NOT_STREAMING)
    generation.record_cancel(message.pk)
    if not generation.cancel_here(message.pk):
        stale = timezone.now() - timedelta(seconds=settings.STREAM_STALE_AFTER)
        Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING, updated_at__lt=stale).update(
            status=Message.Status.CANCELLED)
    return message
