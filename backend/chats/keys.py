"""Provider keys (stored encrypted, never returned) and who may use which model."""

import base64
import hashlib
from dataclasses import dataclass

from django.conf import settings

from backend.core.errors import ModelUnavailable
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require
from backend.rag import catalog

from .models import ProviderKey
from .codes import ChatErrorCode


def _fernet():
    from cryptography.fernet import Fernet

    key = base64.urlsafe_b64encode(hashlib.sha256(("provider-keys:" + settings.SECRET_KEY).encode()).digest())
    return Fernet(key)


def set_provider_key(user, *, provider: str, api_key: str, account_id: str = "") -> ProviderKey:
    _require(user)
    if provider not in catalog.PROVIDERS:
        raise _field("provider", f"One of {', '.join(catalog.PROVIDERS)}.", ChatErrorCode.INVALID_CHOICE)
    if not api_key or len(api_key) > 500:
        raise _field("apiKey", "Paste the key (at most 500 characters).", ChatErrorCode.REQUIRED)
    if provider == catalog.CLOUDFLARE and not account_id:
        raise _field("accountId", "Cloudflare needs your account id too.", ChatErrorCode.REQUIRED)
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
            if key.provider == catalog.OPENAI:
                creds.openai_api_key = secret
            else:
                creds.cloudflare_api_token, creds.cloudflare_account_id = secret, key.account_id
            creds.own |= {key.provider}
    return creds


@dataclass(frozen=True)
class ModelStatus:
    info: catalog.ModelInfo
    availability: catalog.Availability
    generator: str | None = None  # RAG: who would write its answers for this user


def rag_generator(user, creds: catalog.Credentials, chosen: str | None = None) -> tuple[str, catalog.Availability]:
    """Who writes this user's RAG answers: ``chosen`` (a chat's setting), else their preference,
    else the server's ``RAG_GENERATOR``, else their default model or the first one available, else
    the extractive generator (see ``catalog.rag_generator``)."""
    from backend.users.preferences import effective

    prefs = effective(user.preferences) if user is not None and user.is_authenticated else {}
    if not chosen or chosen == catalog.AUTO:
        chosen = (prefs.get("rag") or {}).get("generator")
    return catalog.rag_generator(creds, chosen=chosen, server_default=settings.RAG_GENERATOR,
                                 user_default=prefs.get("default_model"))


def require(model_id: str, availability: catalog.Availability) -> None:
    """Refuse a model the user cannot use (before anything is saved)."""
    if not availability.available:
        name = catalog.BY_ID[model_id].name if model_id in catalog.BY_ID else model_id
        raise ModelUnavailable(f"{name} is not available to you. {availability.message}",
                               model=model_id, reason=availability.reason)


def require_model(user, model_id: str, creds: catalog.Credentials | None = None) -> None:
    require(model_id, catalog.availability(model_id, creds or credentials(user)))


def models_for(user) -> list[ModelStatus]:
    creds = credentials(user)
    statuses = []
    for info in catalog.MODELS:
        if info.uses_documents:
            generator, available = rag_generator(user, creds)  # unavailable: a choice whose key is gone
            statuses.append(ModelStatus(info, available, generator))
        else:
            statuses.append(ModelStatus(info, catalog.availability(info.id, creds)))
    return statuses


def require_chat_model(user, model_id: str, chat_settings: dict) -> None:
    """Refuse a chat on a model the user cannot use, or a RAG chat whose chosen generator they cannot."""
    creds = credentials(user)
    if catalog.BY_ID[model_id].uses_documents:
        chosen = (chat_settings.get("rag") or {}).get("generator")
        if chosen and chosen != catalog.AUTO:
            require(chosen, catalog.availability(chosen, creds))
    else:
        require_model(user, model_id, creds)


def default_model(user, preferred: str) -> str:
    """A new chat's model when none is named: the preferred one when the user can use it, else the
    first model they can (the RAG model always can)."""
    creds = credentials(user)
    for model_id in (preferred, *catalog.MODEL_IDS):
        if model_id in catalog.BY_ID and (catalog.BY_ID[model_id].uses_documents
                                          or catalog.availability(model_id, creds).available):
            return model_id
    return catalog.MODEL_IDS[-1]
