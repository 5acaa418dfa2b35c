"""Chats from an export (``exportChat(format: JSON)`` or a data export), validated whole first.

Every chat and message is checked against the export's shape and limits before anything is
written; one wrong field refuses the import with the path of the first problem (INVALID_FORMAT)
and nothing is stored. Then each chat is written in its own short transaction (its messages in
bulk inserts), so a large import never holds the database's write lock for long: the chat is
written hidden (``importing``), its messages in batches of BATCH rows, each in its own transaction,
then it is shown with its uid in a last one. A chat already present (same uid) is skipped, so an
interrupted import can simply be sent again (a new chat is made; the interrupted one, hidden, is
removed by the answers' sweep once silent for IMPORT_STALE_AFTER).
"""

import uuid

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require
from backend.core.writes import let_other_writers_in
from backend.rag import catalog

from .models import Chat, Message
from .params import clean_settings
from .codes import ChatErrorCode

MAX_CHATS = 1000
MAX_MESSAGES = 100_000  # in one import, all chats together
MAX_CONTENT = 100_000  # characters of one message
ROLES = ("user", "assistant", "system")
BATCH = 500  # messages per insert and per transaction (~0.1 s of SQLite's write lock)


def _fail(path: str, message: str):
    return _field("data", f"{path}: {message}", ChatErrorCode.INVALID_FORMAT)


def _text(value, path: str, limit: int, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise _fail(path, "must be text.")
    if len(value) > limit:
        raise _fail(path, f"at most {limit} characters.")
    return value


def _flag(value, path: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise _fail(path, "must be true or false.")
    return bool(value)


def _uid(value, path: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _fail(path, "must be a UUID.")


def _message(m, path: str) -> dict:
    if not isinstance(m, dict):
        raise _fail(path, "must be an object.")
    if m.get("role") not in ROLES:
        raise _fail(f"{path}.role", f"one of {', '.join(ROLES)}.")
    sources = m.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources) or len(sources) > 50:
        raise _fail(f"{path}.sources", "a list of at most 50 objects.")
    rating = m.get("rating")
    if rating not in (None, 1, -1) or isinstance(rating, bool):
        raise _fail(f"{path}.rating", "1, -1 or null.")
    return {"role": m["role"], "content": _text(m.get("content"), f"{path}.content", MAX_CONTENT),
            "model": _text(m.get("model"), f"{path}.model", 40), "sources": sources,
            "rating": rating if m["role"] == "assistant" else None}


def clean_chat(item, path: str) -> dict:
    if not isinstance(item, dict):
        raise _fail(path, "must be a chat object.")
    messages = item.get("messages", [])
    if not isinstance(messages, list):
        raise _fail(f"{path}.messages", "must be a list.")
    model = item.get("model") if item.get("model") in catalog.BY_ID else catalog.DEFAULT_MODEL
    settings = item.get("settings") or {}
    if not isinstance(settings, dict):
        raise _fail(f"{path}.settings", "must be an object.")
    try:
        settings = clean_settings(model, settings)
    except ValidationError as exc:
        raise _fail(f"{path}.settings", "; ".join(exc.messages))
    return {"uid": _uid(item.get("uid"), f"{path}.uid"), "title": _text(item.get("title"), f"{path}.title", 200),
            "model": model, "settings": settings, "pinned": _flag(item.get("pinned"), f"{path}.pinned"),
            "archived": _flag(item.get("archived"), f"{path}.archived"),
            "messages": [_message(m, f"{path}.messages[{i}]") for i, m in enumerate(messages)]}


def clean_chats(data) -> list[dict]:
    """One chat or a list, checked whole (INVALID_FORMAT with the path of the first problem)."""
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_CHATS:
        raise _fail("data", f"at most {MAX_CHATS} chats in one import.")
    chats = [clean_chat(item, f"[{i}]") for i, item in enumerate(items)]
    if sum(len(c["messages"]) for c in chats) > MAX_MESSAGES:
        raise _fail("data", f"at most {MAX_MESSAGES} messages in one import.")
    return chats


def import_chats(user, data) -> int:
    """Import one chat or a list; returns how many were created (those present are skipped)."""
    _require(user)
    chats = clean_chats(data)
    created = 0
    for chat in chats:
        uid = chat["uid"]
        if uid and Chat.objects.filter(uid=uid).exclude(owner=user).exists():
            # Another user's chat: a copy under an id derived from both, so a re-import matches it.
            uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"chat-import:{user.pk}:{uid}"))
        if uid and Chat.objects.filter(uid=uid, owner=user).exists():
            continue
        row = Chat.objects.create(owner=user, title=chat["title"].strip(), model=chat["model"],
                                  settings=chat["settings"], pinned=chat["pinned"], archived=chat["archived"],
                                  importing=True)
        messages = chat["messages"]
        for start in range(0, len(messages), BATCH):
            rows = [Message(chat=row, status=Message.Status.COMPLETE, **m) for m in messages[start:start + BATCH]]
            with transaction.atomic():
                Message.objects.bulk_create(rows)
                Chat.objects.filter(pk=row.pk).update(updated_at=timezone.now())  # alive, for the sweep
            let_other_writers_in()
        with transaction.atomic():
            if uid and Chat.objects.filter(uid=uid).exists():  # a concurrent import of the same chat won
                row.delete()
                continue
            Chat.objects.filter(pk=row.pk).update(importing=False, **({"uid": uid} if uid else {}))
        created += 1
    return created


def abandoned():
    """Chats whose import stopped midway: hidden, silent for IMPORT_STALE_AFTER s."""
    from datetime import timedelta

    from django.conf import settings

    return Chat.objects.filter(importing=True,
                               updated_at__lt=timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER))


def remove_abandoned_imports() -> int:
    """Delete the chats whose import stopped midway (the answers' sweep, every web process)."""
    return abandoned().delete()[1].get("chats.Chat", 0)
