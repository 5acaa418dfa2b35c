"""A chat exported (JSON or Markdown), and the chats part of a user's data export and import."""

import json


from backend.core import userdata
from backend.core.errors import field_error as _field
from backend.rag import catalog

from .models import AiPreset, Chat, Message
from .imports import clean_chats, import_chats
from .codes import ChatErrorCode
from .conversations import get_chat


# --- export, import, retention --------------------------------------------------------------

MESSAGE_FIELDS = ("uid", "role", "content", "model", "status", "sources", "rating", "created_at")


def _message_rows(messages):
    """(chat id, the message as exported) of ``messages``' current ones, chat by chat in conversation
    order: read as values in one query (model instances cost ~10 times as much: a user's export of
    50,000 messages took seconds)."""
    rows = messages.filter(superseded=False).order_by("chat_id", *Message.CONVERSATION_ORDER)
    for chat_id, *values in rows.values_list("chat_id", *MESSAGE_FIELDS).iterator(chunk_size=2000):
        row = dict(zip(MESSAGE_FIELDS, values))
        row["uid"], row["created_at"] = str(row["uid"]), row["created_at"].isoformat()
        yield chat_id, row


def chat_dict(chat: Chat, messages: list[dict] | None = None) -> dict:
    if messages is None:
        messages = [row for _, row in _message_rows(chat.messages.all())]
    return {"uid": str(chat.uid), "title": chat.title, "model": chat.model, "settings": chat.settings,
            "pinned": chat.pinned, "archived": chat.archived, "created_at": chat.created_at.isoformat(),
            "messages": messages}


def export_chat(user, pk, fmt: str = "json") -> str:
    chat = get_chat(user, pk)
    if fmt == "json":
        return json.dumps(chat_dict(chat), indent=2, ensure_ascii=False)
    if fmt != "markdown":
        raise _field("format", "json or markdown.", ChatErrorCode.INVALID_CHOICE)
    lines = [f"# {chat.title or 'Chat'}", "", f"Model: {chat.model}", ""]
    for m in Message.in_order(chat.messages.all()):
        lines += [f"## {m.role.capitalize()}", "", m.content, ""]
        for s in m.sources:
            page = f", page {s['page']}" if s.get("page") else ""
            lines.append(f"[{s['number']}] {s['title']}{page}")
        if m.sources:
            lines.append("")
    return "\n".join(lines)


def _chat_dicts(user):
    """Each of the user's chats with its messages, in the order they were made: a generator, so a
    download holds one chat at a time (the messages are read in one query, merged chat by chat)."""
    rows = _message_rows(Message.objects.filter(chat__owner=user, chat__importing=False))
    pending = next(rows, None)
    for chat in Chat.objects.filter(owner=user, importing=False).order_by("pk").iterator(chunk_size=500):
        messages = []
        while pending is not None and pending[0] <= chat.pk:
            if pending[0] == chat.pk:
                messages.append(pending[1])
            pending = next(rows, None)
        yield chat_dict(chat, messages)


def _export_all(user) -> dict:
    return {"chats": _chat_dicts(user),
            "presets": [{"name": p.name, "model": p.model, "temperature": p.temperature, "top_p": p.top_p,
                         "max_tokens": p.max_tokens, "system_prompt": p.system_prompt}
                        for p in AiPreset.objects.filter(owner=user)]}


def _check_all(data) -> None:
    if not isinstance(data, dict):
        raise _field("data.chats", "Must be an object.", ChatErrorCode.WRONG_TYPE)
    clean_chats(data.get("chats", []))


def _import_all(user, data) -> dict:
    if not isinstance(data, dict):
        raise _field("data.chats", "Must be an object.", ChatErrorCode.WRONG_TYPE)
    created = import_chats(user, data.get("chats", []))
    presets = 0
    for p in data.get("presets", []):
        if isinstance(p, dict) and p.get("name") and p.get("model") in catalog.BY_ID:
            _, made = AiPreset.objects.get_or_create(owner=user, name=str(p["name"])[:100], defaults={
                "model": p["model"], "temperature": p.get("temperature", 0.7), "top_p": p.get("top_p"),
                "max_tokens": p.get("max_tokens", 1024), "system_prompt": p.get("system_prompt", "")})
            presets += made
    return {"chats_created": created, "presets_created": presets}


userdata.register(userdata.UserDataPart(name="chats", export=_export_all, import_=_import_all, check=_check_all))
