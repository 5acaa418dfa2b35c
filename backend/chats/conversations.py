"""Chats and their messages: read, create, edit, delete, rate; retention.

The turn (a question and its streamed answer) is in ``turn.py``, chat parameters in ``params.py``,
provider keys and who may use which model in ``keys.py``, presets in ``presets.py``, export and
import in ``portability.py``.
"""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from backend.core.errors import NotFound
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require

from .models import AiPreset, Chat, Message
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


def list_chats(user, *, search: str | None = None, archived: bool | None = False):
    """The user's chats, pinned first, then the latest; ``search``: in their titles and finished
    messages (the user's own: matching every user's first read every message stored; finished:
    PostgreSQL's trigram index holds those, migration 0007)."""
    _require(user)
    chats = Chat.objects.visible_to(user)
    if archived is not None:
        chats = chats.filter(archived=archived)
    if search:
        matching = (Message.objects.visible_to(user).filter(~Q(status=Message.Status.STREAMING),
                                                            content__icontains=search).values("chat_id"))
        chats = chats.filter(Q(title__icontains=search) | Q(pk__in=matching))
    return chats.order_by("-pinned", "-updated_at", "-id")


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


def purge_expired_chats(now=None) -> int:
    """Delete the chats each user's retention has passed (the daily ``purge_chats``). Only users who
    set a retention are read (the default, 0, keeps chats forever), a few hundred at a time."""
    from backend.users.models import User
    from backend.users.preferences import effective

    now = now or timezone.now()
    removed = 0
    users = User.objects.filter(preferences__privacy__chat_history_retention_days__gt=0)
    for pk, preferences in users.values_list("pk", "preferences").iterator(chunk_size=500):
        days = effective(preferences)["privacy"]["chat_history_retention_days"]
        if days:
            removed += Chat.objects.filter(owner_id=pk, updated_at__lt=now - timedelta(days=days)).delete()[1].get(
                "chats.Chat", 0)
    return removed
