"""Chats, messages, presets, provider keys, and the streamed turn.

A turn: ``start_turn`` retrieves the passages (RAG, before any write), then saves the user's
message and an empty STREAMING answer; ``stream_turn`` relays the provider's tokens, saving the answer as it
grows; ``finish_turn`` stores the outcome. A dropped connection leaves the partial answer
INTERRUPTED; completing the subscription or ``request_cancel`` leaves it CANCELLED.
"""

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.core import userdata
from backend.core.errors import NotFound
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require
from backend.rag import catalog, pipeline, retrieval
from backend.rag.chunking import count_tokens
from backend.rag.providers import ChatMessage, Params, ProviderError

from .models import AiPreset, Chat, Message, ProviderKey

logger = logging.getLogger(__name__)

RAG_DEFAULTS = {**retrieval.DEFAULTS, "collection_ids": [], "filters": {}}
HISTORY_TURNS = 10




# --- parameters -----------------------------------------------------------------------------

def _model(model_id: str, field_name: str = "model") -> catalog.ModelInfo:
    if model_id not in catalog.BY_ID:
        raise _field(field_name, f"Unknown model; use one of {', '.join(catalog.BY_ID)}.", "UNKNOWN_MODEL")
    return catalog.BY_ID[model_id]


def clean_settings(model_id: str, raw: dict | None) -> dict:
    """Validated chat settings; unknown keys and bad values are field errors."""
    info = _model(model_id)
    raw = dict(raw or {})
    clean = {}
    allowed = {"temperature", "top_p", "max_tokens", "system_prompt", "rag"}
    for key in set(raw) - allowed:
        raise _field(f"settings.{key}", f"Unknown setting '{key}'.", "UNKNOWN_KEY")
    if raw.get("temperature") is not None:
        t = raw["temperature"]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 2:
            raise _field("settings.temperature", "Between 0 and 2.", "OUT_OF_RANGE")
        clean["temperature"] = float(t)
    if raw.get("top_p") is not None:
        p = raw["top_p"]
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
            raise _field("settings.topP", "Greater than 0, at most 1.", "OUT_OF_RANGE")
        clean["top_p"] = float(p)
    if raw.get("max_tokens") is not None:
        m = raw["max_tokens"]
        if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= info.max_tokens:
            raise _field("settings.maxTokens", f"Between 1 and {info.max_tokens} for {info.name}.", "OUT_OF_RANGE")
        clean["max_tokens"] = m
    if raw.get("system_prompt") is not None:
        if not isinstance(raw["system_prompt"], str) or len(raw["system_prompt"]) > 4000:
            raise _field("settings.systemPrompt", "Text of at most 4000 characters.", "TOO_LONG")
        clean["system_prompt"] = raw["system_prompt"]
    if raw.get("rag") is not None:
        clean["rag"] = clean_rag(raw["rag"])
    return clean


def clean_rag(raw: dict) -> dict:
    if not isinstance(raw, dict):
        raise _field("settings.rag", "Must be an object.", "WRONG_TYPE")
    clean = {}
    for key, value in raw.items():
        path = f"settings.rag.{key}"
        if value is None:
            continue
        if key == "strategy":
            if value not in retrieval.STRATEGIES:
                raise _field(path, f"One of {', '.join(retrieval.STRATEGIES)}.", "INVALID_CHOICE")
        elif key == "k":
            if not isinstance(value, int) or not 1 <= value <= 20:
                raise _field(path, "Between 1 and 20.", "OUT_OF_RANGE")
        elif key == "threshold":
            if not isinstance(value, (int, float)) or not -1 <= value <= 1:
                raise _field(path, "Between -1 and 1.", "OUT_OF_RANGE")
            value = float(value)
        elif key == "context_budget":
            if not isinstance(value, int) or not 100 <= value <= 16000:
                raise _field(path, "Between 100 and 16000 tokens.", "OUT_OF_RANGE")
        elif key == "include_metadata":
            if not isinstance(value, bool):
                raise _field(path, "Must be true or false.", "WRONG_TYPE")
        elif key == "collection_ids":
            if not isinstance(value, list):
                raise _field(path, "Must be a list of collection ids.", "WRONG_TYPE")
            value = [str(v) for v in value]
        elif key == "filters":
            if not isinstance(value, dict) or set(value) - {"file_types", "tags", "created_after", "created_before"}:
                raise _field(path, "file_types, tags, created_after, created_before.", "UNKNOWN_KEY")
        else:
            raise _field(path, f"Unknown RAG setting '{key}'.", "UNKNOWN_KEY")
        clean[key] = value
    return clean


def effective_params(user, chat: Chat, overrides: dict) -> dict:
    """User defaults < chat settings < this turn's parameters."""
    from backend.users.preferences import effective

    prefs = effective(user.preferences)
    ai = prefs["ai"]
    merged = {"temperature": ai["temperature"], "max_tokens": ai["max_tokens"], "system_prompt": ai["system_prompt"],
              "top_p": None, "rag": {**RAG_DEFAULTS, **prefs["rag"]}}
    for layer in (chat.settings, overrides):
        for key, value in (layer or {}).items():
            if key == "rag":
                merged["rag"].update(value or {})
            elif value is not None:
                merged[key] = value
    merged["max_tokens"] = min(merged["max_tokens"], catalog.BY_ID[chat.model].max_tokens)
    return merged


# --- provider keys --------------------------------------------------------------------------

def _fernet():
    from cryptography.fernet import Fernet

    key = base64.urlsafe_b64encode(hashlib.sha256(("provider-keys:" + settings.SECRET_KEY).encode()).digest())
    return Fernet(key)


def set_provider_key(user, *, provider: str, api_key: str, account_id: str = "") -> ProviderKey:
    _require(user)
    if provider not in ("openai", "cloudflare"):
        raise _field("provider", "openai or cloudflare.", "INVALID_CHOICE")
    if not api_key or len(api_key) > 500:
        raise _field("apiKey", "Paste the key (at most 500 characters).", "REQUIRED")
    if provider == "cloudflare" and not account_id:
        raise _field("accountId", "Cloudflare needs your account id too.", "REQUIRED")
    key, _ = ProviderKey.objects.update_or_create(
        owner=user, provider=provider,
        defaults={"secret": _fernet().encrypt(api_key.encode()), "account_id": account_id or ""})
    return key


def clear_provider_key(user, *, provider: str) -> None:
    _require(user)
    ProviderKey.objects.visible_to(user).filter(provider=provider).delete()


def credentials(user) -> catalog.Credentials:
    creds = catalog.Credentials(
        openai_api_key=settings.OPENAI_API_KEY, openai_base_url=settings.OPENAI_BASE_URL,
        cloudflare_account_id=settings.CLOUDFLARE_ACCOUNT_ID, cloudflare_api_token=settings.CLOUDFLARE_API_TOKEN,
        cloudflare_base_url=settings.CLOUDFLARE_API_BASE_URL)
    if user is not None and user.is_authenticated:
        for key in ProviderKey.objects.visible_to(user):
            secret = _fernet().decrypt(bytes(key.secret)).decode()
            if key.provider == "openai":
                creds.openai_api_key = secret
            else:
                creds.cloudflare_api_token, creds.cloudflare_account_id = secret, key.account_id
    return creds


def models_for(user) -> list[tuple[catalog.ModelInfo, bool, str | None]]:
    creds = credentials(user)
    return [(m, *catalog.availability(m.id, creds, settings.RAG_GENERATOR)) for m in catalog.MODELS]


# --- chats ----------------------------------------------------------------------------------

def get_chat(user, pk) -> Chat:
    _require(user)
    chat = Chat.objects.visible_to(user).filter(pk=pk).first()
    if chat is None:
        raise NotFound("No such chat.")
    return chat


def get_message(user, pk) -> Message:
    _require(user)
    message = Message.objects.visible_to(user).select_related("chat").filter(pk=pk).first()
    if message is None:
        raise NotFound("No such message.")
    return message


def create_chat(user, *, title: str = "", model: str | None = None, settings_: dict | None = None,
                preset_id=None) -> Chat:
    from backend.users.preferences import effective

    _require(user)
    base = {}
    if preset_id is not None:
        preset = AiPreset.objects.visible_to(user).filter(pk=preset_id).first()
        if preset is None:
            raise NotFound("No such preset.")
        model = model or preset.model
        base = {"temperature": preset.temperature, "top_p": preset.top_p, "max_tokens": preset.max_tokens,
                "system_prompt": preset.system_prompt}
    model = model or effective(user.preferences)["default_model"]
    _model(model)
    clean = clean_settings(model, {**base, **(settings_ or {})})
    if len(title or "") > 200:
        raise _field("title", "At most 200 characters.", "TOO_LONG")
    return Chat.objects.create(owner=user, title=(title or "").strip(), model=model, settings=clean)


def update_chat(user, pk, *, title=None, model=None, settings_=None, pinned=None, archived=None) -> Chat:
    chat = get_chat(user, pk)
    if title is not None:
        if len(title) > 200:
            raise _field("title", "At most 200 characters.", "TOO_LONG")
        chat.title = title.strip()
    if model is not None:
        _model(model)
        chat.model = model
    if settings_ is not None:
        chat.settings = clean_settings(chat.model, {**chat.settings, **settings_})
    if pinned is not None:
        chat.pinned = pinned
    if archived is not None:
        chat.archived = archived
    chat.save()
    return chat


def delete_chat(user, pk) -> None:
    get_chat(user, pk).delete()


def rate_message(user, pk, *, rating: int | None, comment: str = "") -> Message:
    message = get_message(user, pk)
    if message.role != Message.Role.ASSISTANT:
        raise _field("id", "Only answers can be rated.", "NOT_AN_ANSWER")
    if rating not in (1, -1, None):
        raise _field("rating", "1 (up), -1 (down) or null.", "INVALID_CHOICE")
    if len(comment or "") > 2000:
        raise _field("comment", "At most 2000 characters.", "TOO_LONG")
    message.rating = rating
    message.feedback_comment = comment or ""
    message.save(update_fields=["rating", "feedback_comment", "updated_at"])
    return message


# --- the turn -------------------------------------------------------------------------------

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
    hits = documents.search(user, query, collection_ids=rag.get("collection_ids") or None, k=rag["k"],
                            threshold=rag["threshold"], filters=filters, strategy=rag["strategy"])
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
    """Validate, retrieve (RAG: before any write, outside a transaction), then store the question
    and an empty STREAMING answer in one transaction."""
    chat = get_chat(user, chat_id)
    content = (content or "").strip()
    if not content:
        raise _field("content", "Type a message.", "REQUIRED")
    if len(content) > 32000:
        raise _field("content", "At most 32000 characters.", "TOO_LONG")
    if model is not None and model != chat.model:
        _model(model)
        chat.model = model
    overrides = clean_settings(chat.model, parameters or {})
    params = effective_params(user, chat, overrides)
    history = _history(chat)
    provider = catalog.provider_for(chat.model, credentials(user), settings.RAG_GENERATOR)
    call = Params(temperature=params["temperature"], top_p=params["top_p"], max_tokens=params["max_tokens"])
    turn = Turn(chat, None, None, provider, [], call)
    retrieval_trace = None
    if catalog.BY_ID[chat.model].uses_documents:
        rag = params["rag"]
        sources, retrieval_trace = _retrieve(user, content, history, rag)
        passages = [pipeline.Passage(s["number"], s["text"], s["title"], s["page"]) for s in sources]
        passages = pipeline.fit_budget(passages, rag["context_budget"])
        retrieval_trace["passages"] = retrieval_trace["passages"][: len(passages)]
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
    with transaction.atomic():
        if not chat.title:
            chat.title = content.splitlines()[0][:80]
        chat.save()
        turn.user_message = Message.objects.create(
            chat=chat, role=Message.Role.USER, content=content, model=chat.model,
            prompt_tokens=sum(count_tokens(m.content) for m in turn.messages))
        turn.answer = Message.objects.create(chat=chat, role=Message.Role.ASSISTANT, model=chat.model,
                                             status=Message.Status.STREAMING, retrieval=retrieval_trace,
                                             sources=turn.sources if retrieval_trace is not None else [])
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
    if turn.passages and content:
        score, unsupported = pipeline.groundedness(content, turn.passages)
        answer.groundedness, answer.unsupported_sentences = round(score, 4), unsupported
    answer.save()
    Chat.objects.filter(pk=turn.chat.pk).update(updated_at=timezone.now())
    return answer


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
                parts.append(delta)
                yield Token(delta)
                partials.put(turn.answer.pk, parts)
            else:
                status = Message.Status.COMPLETE
        except ProviderError as exc:
            partials.discard(turn.answer.pk)
            answer = await sync_to_async(finish_turn)(turn, "".join(parts), Message.Status.FAILED,
                                                      first_token_ms=first_token_ms, error=exc)
            status = None
            yield Failed(exc.code, exc.message, answer)
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # stops the provider call
        partials.discard(turn.answer.pk)
        if status == Message.Status.COMPLETE and turn.sources:
            yield Sources(turn.sources)
        answer = await sync_to_async(finish_turn)(turn, "".join(parts), status, first_token_ms=first_token_ms)
        status = None
        yield Done(answer)
    finally:
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
    with transaction.atomic():
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


# --- presets --------------------------------------------------------------------------------

def _preset_fields(model, temperature, top_p, max_tokens, system_prompt) -> dict:
    clean = clean_settings(model, {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                                   "system_prompt": system_prompt})
    return {"model": model, "temperature": clean.get("temperature", 0.7), "top_p": clean.get("top_p"),
            "max_tokens": clean.get("max_tokens", 1024), "system_prompt": clean.get("system_prompt", "")}


def create_preset(user, *, name: str, model: str, temperature=0.7, top_p=None, max_tokens=1024,
                  system_prompt="") -> AiPreset:
    _require(user)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise _field("name", "Between 1 and 100 characters.", "INVALID_LENGTH")
    if AiPreset.objects.filter(owner=user, name=name).exists():
        raise _field("name", "You already have a preset with this name.", "DUPLICATE")
    return AiPreset.objects.create(owner=user, name=name,
                                   **_preset_fields(model, temperature, top_p, max_tokens, system_prompt))


def update_preset(user, pk, **changes) -> AiPreset:
    _require(user)
    preset = AiPreset.objects.visible_to(user).filter(pk=pk).first()
    if preset is None:
        raise NotFound("No such preset.")
    name = changes.pop("name", None)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 100:
            raise _field("name", "Between 1 and 100 characters.", "INVALID_LENGTH")
        if AiPreset.objects.filter(owner=user, name=name).exclude(pk=preset.pk).exists():
            raise _field("name", "You already have a preset with this name.", "DUPLICATE")
        preset.name = name
    current = {"model": preset.model, "temperature": preset.temperature, "top_p": preset.top_p,
               "max_tokens": preset.max_tokens, "system_prompt": preset.system_prompt}
    current.update({k: v for k, v in changes.items() if v is not None})
    for key, value in _preset_fields(**current).items():
        setattr(preset, key, value)
    preset.save()
    return preset


def delete_preset(user, pk) -> None:
    _require(user)
    if not AiPreset.objects.visible_to(user).filter(pk=pk).delete()[0]:
        raise NotFound("No such preset.")


# --- export, import, retention --------------------------------------------------------------

def _chat_dict(chat: Chat) -> dict:
    return {"uid": str(chat.uid), "title": chat.title, "model": chat.model, "settings": chat.settings,
            "pinned": chat.pinned, "archived": chat.archived, "created_at": chat.created_at.isoformat(),
            "messages": [{"uid": str(m.uid), "role": m.role, "content": m.content, "model": m.model,
                          "status": m.status, "sources": m.sources, "rating": m.rating,
                          "created_at": m.created_at.isoformat()} for m in chat.messages.all()]}


def export_chat(user, pk, fmt: str = "json") -> str:
    chat = get_chat(user, pk)
    if fmt == "json":
        return json.dumps(_chat_dict(chat), indent=2, ensure_ascii=False)
    if fmt != "markdown":
        raise _field("format", "json or markdown.", "INVALID_CHOICE")
    lines = [f"# {chat.title or 'Chat'}", "", f"Model: {chat.model}", ""]
    for m in chat.messages.all():
        lines += [f"## {m.role.capitalize()}", "", m.content, ""]
        for s in m.sources:
            page = f", page {s['page']}" if s.get("page") else ""
            lines.append(f"[{s['number']}] {s['title']}{page}")
        if m.sources:
            lines.append("")
    return "\n".join(lines)


def import_chats(user, data) -> int:
    """Chats from an export (one chat or a list); chats already present (same uid) are skipped."""
    _require(user)
    items = data if isinstance(data, list) else [data]
    created = 0
    with transaction.atomic():
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("messages", []), list):
                raise _field("data", "Not a chat export.", "INVALID_FORMAT")
            uid = item.get("uid")
            if uid and Chat.objects.filter(uid=uid).exclude(owner=user).exists():
                # Another user's chat: a copy under an id derived from both, so a re-import matches it.
                uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"chat-import:{user.pk}:{uid}"))
            if uid and Chat.objects.filter(uid=uid, owner=user).exists():
                continue
            model = item.get("model") if item.get("model") in catalog.BY_ID else "gpt-3.5-turbo"
            chat = Chat.objects.create(owner=user, title=str(item.get("title", ""))[:200], model=model,
                                       settings=clean_settings(model, item.get("settings") or {}),
                                       pinned=bool(item.get("pinned")), archived=bool(item.get("archived")),
                                       **({"uid": uid} if uid else {}))
            for m in item.get("messages", []):
                if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
                    raise _field("data", "Each message needs a role and content.", "INVALID_FORMAT")
                Message.objects.create(chat=chat, role=m["role"], content=str(m.get("content", "")),
                                       model=str(m.get("model", ""))[:40], sources=m.get("sources") or [],
                                       status=Message.Status.COMPLETE)
            created += 1
    return created


def purge_expired_chats(now=None) -> int:
    from backend.users.models import User
    from backend.users.preferences import effective

    now = now or timezone.now()
    removed = 0
    for user in User.objects.filter(chats__isnull=False).distinct():
        days = effective(user.preferences)["privacy"]["chat_history_retention_days"]
        if days:
            removed += Chat.objects.filter(owner=user, updated_at__lt=now - timedelta(days=days)).delete()[1].get(
                "chats.Chat", 0)
    return removed


def _export_all(user) -> dict:
    return {"chats": [_chat_dict(c) for c in Chat.objects.filter(owner=user).prefetch_related("messages")],
            "presets": [{"name": p.name, "model": p.model, "temperature": p.temperature, "top_p": p.top_p,
                         "max_tokens": p.max_tokens, "system_prompt": p.system_prompt}
                        for p in AiPreset.objects.filter(owner=user)]}


def _import_all(user, data) -> dict:
    if not isinstance(data, dict):
        raise _field("data.chats", "Must be an object.", "WRONG_TYPE")
    created = import_chats(user, data.get("chats", []))
    presets = 0
    for p in data.get("presets", []):
        if isinstance(p, dict) and p.get("name") and p.get("model") in catalog.BY_ID:
            _, made = AiPreset.objects.get_or_create(owner=user, name=str(p["name"])[:100], defaults={
                "model": p["model"], "temperature": p.get("temperature", 0.7), "top_p": p.get("top_p"),
                "max_tokens": p.get("max_tokens", 1024), "system_prompt": p.get("system_prompt", "")})
            presets += made
    return {"chats_created": created, "presets_created": presets}


userdata.register(userdata.UserDataPart(name="chats", export=_export_all, import_=_import_all))
