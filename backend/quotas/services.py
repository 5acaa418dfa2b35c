"""Quotas: what a user may use, what they have used, and the checks made before a provider call
or a stored file.

Limits come from settings (``QUOTAS``, ``GUEST_QUOTAS`` for guests) with the user's
``QuotaOverride`` over them; a limit of None is unlimited. Usage is read from the database, so it
holds across processes: a day's tokens from ``DailyTokens`` (added to as turns start and end, in
the database, and kept when chats are deleted: counting the stored answers gave a deleted chat's
tokens back), the answers of the last minute, the documents a user uploaded. Tokens count
against a model only when the server's key pays for them: a user's own provider key has no token
quota.

The checks are made before anything is stored; two requests arriving together can both pass the
last unit of a quota (a soft limit, by at most the concurrent requests).
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, Sum
from django.utils import timezone

from backend.core.errors import QuotaExceeded
from backend.rag import catalog

TOKENS_PER_DAY = "TOKENS_PER_DAY"
TURNS_PER_MINUTE = "TURNS_PER_MINUTE"
DOCUMENTS = "DOCUMENTS"
STORED_BYTES = "STORED_BYTES"
KINDS = (TOKENS_PER_DAY, TURNS_PER_MINUTE, DOCUMENTS, STORED_BYTES)


@dataclass(frozen=True)
class Usage:
    quota: str
    used: int
    limit: int | None  # None: unlimited
    model: str | None = None  # TOKENS_PER_DAY: the model
    resets_at: datetime | None = None  # None: it does not reset by itself (delete documents to free it)

    @property
    def exceeded(self) -> bool:
        return self.limit is not None and self.used >= self.limit


def limits(user) -> dict:
    """The user's limits: settings' defaults (guests' smaller ones) under their override."""
    from .models import QuotaOverride

    base = settings.GUEST_QUOTAS if getattr(user, "is_guest", False) else settings.QUOTAS
    result = {"tokens_per_day": dict(base["tokens_per_day"]), "turns_per_minute": base["turns_per_minute"],
              "documents": base["documents"], "stored_bytes": base["stored_bytes"]}
    override = QuotaOverride.objects.filter(user=user).first()
    if override is not None:
        if override.unlimited:
            return {"tokens_per_day": {}, "turns_per_minute": None, "documents": None, "stored_bytes": None}
        for model_id, value in (override.tokens_per_day or {}).items():
            if model_id in catalog.LANGUAGE_MODELS and (value is None or isinstance(value, int)):
                result["tokens_per_day"][model_id] = value
        for name in ("turns_per_minute", "documents", "stored_bytes"):
            if getattr(override, name) is not None:
                result[name] = getattr(override, name)
    return result


def _day_end(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(dt_timezone.utc).date() + timedelta(days=1), time.min, dt_timezone.utc)


def _answers(user):
    from backend.chats.models import Message

    return Message.objects.filter(chat__owner=user, role=Message.Role.ASSISTANT)


def _day(now: datetime):
    return now.astimezone(dt_timezone.utc).date()


def record_tokens(user_id: int, model_id: str, tokens: int, now: datetime | None = None) -> None:
    """Add ``tokens`` to the user's count for ``model_id`` today (UTC): a turn's prompt as it
    starts, its completion as it ends."""
    from .models import DailyTokens

    if tokens <= 0 or not model_id:
        return
    day = _day(now or timezone.now())
    row = DailyTokens.objects.filter(user_id=user_id, day=day, model=model_id)
    if row.update(tokens=F("tokens") + tokens):
        return
    try:
        with transaction.atomic():
            DailyTokens.objects.create(user_id=user_id, day=day, model=model_id, tokens=tokens)
    except IntegrityError:  # a concurrent turn made the day's row first
        row.update(tokens=F("tokens") + tokens)


def tokens_today(user, now: datetime) -> dict[str, int]:
    """The user's tokens of today (UTC), per model."""
    from .models import DailyTokens

    return dict(DailyTokens.objects.filter(user=user, day=_day(now)).values_list("model", "tokens"))


def turns_usage(user, limit: int | None, now: datetime) -> Usage:
    figures = (_answers(user).filter(created_at__gt=now - timedelta(minutes=1))
               .aggregate(n=Count("id"), oldest=Min("created_at")))
    resets = figures["oldest"] + timedelta(minutes=1) if figures["oldest"] else None
    return Usage(TURNS_PER_MINUTE, figures["n"], limit, resets_at=resets)


def storage_usage(user, limits_: dict) -> list[Usage]:
    from backend.documents.models import Document

    figures = Document.objects.filter(uploaded_by=user).aggregate(n=Count("id"), size=Sum("size"))
    return [Usage(DOCUMENTS, int(figures["n"] or 0), limits_["documents"]),
            Usage(STORED_BYTES, int(figures["size"] or 0), limits_["stored_bytes"])]


def _paid_by_server(model_id: str, creds: catalog.Credentials) -> bool:
    provider = catalog.BY_ID[model_id].provider
    return provider not in creds.own


def usage(user) -> list[Usage]:
    """Every quota of the user with its usage (a query shows them)."""
    from backend.chats.keys import credentials

    now = timezone.now()
    limits_ = limits(user)
    creds = credentials(user)
    rows = []
    used = tokens_today(user, now)
    for model_id in catalog.LANGUAGE_MODELS:
        limit = limits_["tokens_per_day"].get(model_id) if _paid_by_server(model_id, creds) else None
        rows.append(Usage(TOKENS_PER_DAY, used.get(model_id, 0), limit, model=model_id,
                          resets_at=_day_end(now)))
    rows.append(turns_usage(user, limits_["turns_per_minute"], now))
    rows.extend(storage_usage(user, limits_))
    return rows


def _refuse(row: Usage, what: str) -> QuotaExceeded:
    when = f" It resets at {row.resets_at:%H:%M:%S} UTC." if row.resets_at else ""
    return QuotaExceeded(f"You have used your quota of {what} ({row.limit}).{when}", quota=row.quota,
                         model=row.model, limit=row.limit, used=row.used,
                         resets_at=row.resets_at.isoformat() if row.resets_at else None)


def check_turn(user, generator: str, creds: catalog.Credentials) -> None:
    """Before a turn stores anything or calls a provider: turns per minute, then the generator's
    tokens of the day (when the server pays for them)."""
    if not settings.QUOTAS_ENABLED:
        return
    now = timezone.now()
    limits_ = limits(user)
    if limits_["turns_per_minute"] is not None:
        turns = turns_usage(user, limits_["turns_per_minute"], now)
        if turns.exceeded:
            raise _refuse(turns, "chat turns per minute")
    if generator in catalog.LANGUAGE_MODELS and _paid_by_server(generator, creds):
        limit = limits_["tokens_per_day"].get(generator)
        if limit is not None:
            row = Usage(TOKENS_PER_DAY, tokens_today(user, now).get(generator, 0), limit, model=generator,
                        resets_at=_day_end(now))
            if row.exceeded:
                raise _refuse(row, f"{catalog.BY_ID[generator].name} tokens per day")


def check_upload(user, size: int) -> None:
    """Before a new file is stored: one more document, and its bytes, must fit."""
    if not settings.QUOTAS_ENABLED:
        return
    documents, stored = storage_usage(user, limits(user))
    if documents.exceeded:
        raise _refuse(documents, "documents")
    if stored.limit is not None and stored.used + size > stored.limit:
        raise QuotaExceeded(f"This file does not fit your storage quota ({stored.used} of {stored.limit} bytes "
                            "used). Delete documents to make room.", quota=STORED_BYTES, limit=stored.limit,
                            used=stored.used)
