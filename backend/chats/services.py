"""Chats, messages, presets, export and import, retention.

The turn (a question and its streamed answer) is in ``turn.py``, chat parameters in ``params.py``,
provider keys and who may use which model in ``keys.py``.
"""

import json
from datetime import timedelta

from django.utils import timezone

from backend.core import userdata
from backend.core.errors import NotFound
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require
from backend.rag import catalog

from .models import AiPreset, Chat, Message
from .imports import import_chats
from .keys import default_model, require_chat_model
from .params import known_model, clean_settings
from .codes import ChatErrorCode

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
    model = model or default_model(user, effective(user.preferences)["default_model"])
    known_model(model)
    clean = clean_settings(model, {**base, **(settings_ or {})})
    if len(title or "") > 200:
        raise _field("title", "At most 200 characters.", ChatErrorCode.TOO_LONG)
    require_chat_model(user, model, clean)
    return Chat.objects.create(owner=user, title=(title or "").strip(), model=model, settings=clean)


def update_chat(user, pk, *, title=None, model=None, settings_=None, pinned=None, archived=None) -> Chat:
    chat = get_chat(user, pk)
    if title is not None:
        if len(title) > 200:
            raise _field("title", "At most 200 characters.", ChatErrorCode.TOO_LONG)
        chat.title = title.strip()
    if model is not None:
        known_model(model)
        chat.model = model
    if settings_ is not None:
        chat.settings = clean_settings(chat.model, {**chat.settings, **settings_})
    if model is not None or settings_ is not None:
        require_chat_model(user, chat.model, chat.settings)
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
        raise _field("id", "Only answers can be rated.", ChatErrorCode.NOT_AN_ANSWER)
    if rating not in (1, -1, None):
        raise _field("rating", "1 (up), -1 (down) or null.", ChatErrorCode.INVALID_CHOICE)
    if len(comment or "") > 2000:
        raise _field("comment", "At most 2000 characters.", ChatErrorCode.TOO_LONG)
    message.rating = rating
    message.feedback_comment = comment or ""
    message.save(update_fields=["rating", "feedback_comment", "updated_at"])
    return message


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
        raise _field("name", "Between 1 and 100 characters.", ChatErrorCode.INVALID_LENGTH)
    if AiPreset.objects.filter(owner=user, name=name).exists():
        raise _field("name", "You already have a preset with this name.", ChatErrorCode.DUPLICATE)
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
            raise _field("name", "Between 1 and 100 characters.", ChatErrorCode.INVALID_LENGTH)
        if AiPreset.objects.filter(owner=user, name=name).exclude(pk=preset.pk).exists():
            raise _field("name", "You already have a preset with this name.", ChatErrorCode.DUPLICATE)
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
                          "created_at": m.created_at.isoformat()} for m in Message.in_order(chat.messages.all())]}


def export_chat(user, pk, fmt: str = "json") -> str:
    chat = get_chat(user, pk)
    if fmt == "json":
        return json.dumps(_chat_dict(chat), indent=2, ensure_ascii=False)
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
    return {"chats": [_chat_dict(c) for c in Chat.objects.filter(owner=user, importing=False)],
            "presets": [{"name": p.name, "model": p.model, "temperature": p.temperature, "top_p": p.top_p,
                         "max_tokens": p.max_tokens, "system_prompt": p.system_prompt}
                        for p in AiPreset.objects.filter(owner=user)]}


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


userdata.register(userdata.UserDataPart(name="chats", export=_export_all, import_=_import_all))
