"""Chat parameters: validation of a chat's settings and a turn's overrides, and the layering of
user defaults < chat settings < turn parameters."""

from backend.core.errors import field_error as _field
from backend.rag import catalog, retrieval

from .models import Chat
from .codes import ChatErrorCode

RAG_DEFAULTS = {**retrieval.DEFAULTS, "collection_ids": [], "filters": {}}


def known_model(model_id: str, field_name: str = "model") -> catalog.ModelInfo:
    if model_id not in catalog.BY_ID:
        raise _field(field_name, f"Unknown model; use one of {', '.join(catalog.BY_ID)}.", ChatErrorCode.UNKNOWN_MODEL)
    return catalog.BY_ID[model_id]


def clean_settings(model_id: str, raw: dict | None) -> dict:
    """Validated chat settings; unknown keys and bad values are field errors."""
    info = known_model(model_id)
    raw = dict(raw or {})
    clean = {}
    allowed = {"temperature", "top_p", "max_tokens", "system_prompt", "rag"}
    for key in set(raw) - allowed:
        raise _field(f"settings.{key}", f"Unknown setting '{key}'.", ChatErrorCode.UNKNOWN_KEY)
    if raw.get("temperature") is not None:
        t = raw["temperature"]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 2:
            raise _field("settings.temperature", "Between 0 and 2.", ChatErrorCode.OUT_OF_RANGE)
        clean["temperature"] = float(t)
    if raw.get("top_p") is not None:
        p = raw["top_p"]
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
            raise _field("settings.topP", "Greater than 0, at most 1.", ChatErrorCode.OUT_OF_RANGE)
        clean["top_p"] = float(p)
    if raw.get("max_tokens") is not None:
        m = raw["max_tokens"]
        if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= info.max_tokens:
            raise _field("settings.maxTokens", f"Between 1 and {info.max_tokens} for {info.name}.", ChatErrorCode.OUT_OF_RANGE)
        clean["max_tokens"] = m
    if raw.get("system_prompt") is not None:
        if not isinstance(raw["system_prompt"], str) or len(raw["system_prompt"]) > 4000:
            raise _field("settings.systemPrompt", "Text of at most 4000 characters.", ChatErrorCode.TOO_LONG)
        clean["system_prompt"] = raw["system_prompt"]
    if raw.get("rag") is not None:
        clean["rag"] = clean_rag(raw["rag"])
    return clean


def clean_rag(raw: dict) -> dict:
    if not isinstance(raw, dict):
        raise _field("settings.rag", "Must be an object.", ChatErrorCode.WRONG_TYPE)
    clean = {}
    for key, value in raw.items():
        path = f"settings.rag.{key}"
        if value is None:
            continue
        if key == "strategy":
            if value not in retrieval.STRATEGIES:
                raise _field(path, f"One of {', '.join(retrieval.STRATEGIES)}.", ChatErrorCode.INVALID_CHOICE)
        elif key == "k":
            if not isinstance(value, int) or not 1 <= value <= 20:
                raise _field(path, "Between 1 and 20.", ChatErrorCode.OUT_OF_RANGE)
        elif key == "threshold":
            if not isinstance(value, (int, float)) or not -1 <= value <= 1:
                raise _field(path, "Between -1 and 1.", ChatErrorCode.OUT_OF_RANGE)
            value = float(value)
        elif key == "context_budget":
            if not isinstance(value, int) or not 100 <= value <= 16000:
                raise _field(path, "Between 100 and 16000 tokens.", ChatErrorCode.OUT_OF_RANGE)
        elif key == "generator":
            if value not in catalog.GENERATOR_CHOICES:
                raise _field(path, f"One of {', '.join(catalog.GENERATOR_CHOICES)}.", ChatErrorCode.INVALID_CHOICE)
        elif key == "include_metadata":
            if not isinstance(value, bool):
                raise _field(path, "Must be true or false.", ChatErrorCode.WRONG_TYPE)
        elif key == "collection_ids":
            if not isinstance(value, list):
                raise _field(path, "Must be a list of collection ids.", ChatErrorCode.WRONG_TYPE)
            value = [str(v) for v in value]
        elif key == "filters":
            if not isinstance(value, dict) or set(value) - {"file_types", "tags", "created_after", "created_before"}:
                raise _field(path, "file_types, tags, created_after, created_before.", ChatErrorCode.UNKNOWN_KEY)
        else:
            raise _field(path, f"Unknown RAG setting '{key}'.", ChatErrorCode.UNKNOWN_KEY)
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

