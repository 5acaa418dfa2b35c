"""User preferences: the one definition of their keys, types, limits and defaults.

Stored as JSON on the user; validated here whether they arrive from the API or from an import.
An unknown key or a wrong type is a field error (``ValidationError`` keyed by the dotted path).
"""

import copy
import re
import zoneinfo

from django.core.exceptions import ValidationError

from backend.rag import catalog, retrieval
from .codes import AccountErrorCode

THEMES = ("light", "dark", "system")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _choice(options):
    def check(value):
        if value not in options:
            raise ValidationError(f"Must be one of: {', '.join(options)}.", code=AccountErrorCode.INVALID_CHOICE)
    return str, check


def _range(kind, low, high):
    def check(value):
        if not low <= value <= high:
            raise ValidationError(f"Must be between {low} and {high}.", code=AccountErrorCode.OUT_OF_RANGE)
    return kind, check


def _max_len(n):
    def check(value):
        if len(value) > n:
            raise ValidationError(f"At most {n} characters.", code=AccountErrorCode.TOO_LONG)
    return str, check


def _language(value):
    if not LANGUAGE_RE.match(value):
        raise ValidationError("Use a language tag such as 'en' or 'pt-BR'.", code=AccountErrorCode.INVALID_LANGUAGE)


def _timezone(value):
    if value not in zoneinfo.available_timezones():
        raise ValidationError("Unknown time zone; use a name such as 'Europe/Paris'.", code=AccountErrorCode.INVALID_TIMEZONE)


BOOL = (bool, None)

# key -> (type, extra check) or a nested section
SPEC = {
    "theme": _choice(THEMES),
    "language": (str, _language),
    "timezone": (str, _timezone),
    "default_model": _choice(catalog.MODEL_IDS),
    "ai": {
        "temperature": _range(float, 0.0, 2.0),
        "max_tokens": _range(int, 1, 32768),
        "system_prompt": _max_len(4000),
    },
    "rag": {
        "strategy": _choice(retrieval.STRATEGIES),
        "k": _range(int, 1, 20),
        "threshold": _range(float, -1.0, 1.0),
        "context_budget": _range(int, 100, 16000),
        "include_metadata": BOOL,
        "generator": _choice(catalog.GENERATOR_CHOICES),
    },
    "privacy": {
        "chat_history_retention_days": _range(int, 0, 3650),
    },
}

DEFAULTS = {
    "theme": "system",
    "language": "en",
    "timezone": "UTC",
    "default_model": catalog.DEFAULT_MODEL,
    "ai": {"temperature": 0.7, "max_tokens": 1024, "system_prompt": ""},
    # generator: who writes RAG answers (a language model's id, "extractive", or "auto": the
    # server's RAG_GENERATOR, else your default model or the first language model you can use).
    "rag": {**retrieval.DEFAULTS, "generator": catalog.AUTO},
    "privacy": {"chat_history_retention_days": 0},
}


def _type_ok(kind, value):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _validate(patch, spec, prefix, errors):
    if not isinstance(patch, dict):
        errors.setdefault(prefix or "preferences", []).append(
            ValidationError("Must be an object.", code=AccountErrorCode.WRONG_TYPE))
        return {}
    clean = {}
    for key, value in patch.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in spec:
            errors.setdefault(path, []).append(ValidationError(f"Unknown preference '{path}'.", code=AccountErrorCode.UNKNOWN_KEY))
            continue
        rule = spec[key]
        if isinstance(rule, dict):
            clean[key] = _validate(value, rule, path, errors)
            continue
        kind, check = rule
        if not _type_ok(kind, value):
            errors.setdefault(path, []).append(
                ValidationError(f"Must be of type {kind.__name__}.", code=AccountErrorCode.WRONG_TYPE))
            continue
        if kind is float:
            value = float(value)
        if check is not None:
            try:
                check(value)
            except ValidationError as exc:
                errors.setdefault(path, []).append(exc)
                continue
        clean[key] = value
    return clean


def validate_patch(patch: dict) -> dict:
    """Return the cleaned patch or raise ``ValidationError`` with one entry per bad key."""
    errors: dict[str, list] = {}
    clean = _validate(patch, SPEC, "", errors)
    if errors:
        raise ValidationError({f"preferences.{k}": v for k, v in errors.items()})
    return clean


def merge(base: dict, patch: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict):
            result[key] = merge(result.get(key) or {}, value)
        else:
            result[key] = value
    return result


def effective(stored: dict) -> dict:
    """Stored preferences over the defaults (keys unknown to this version are dropped)."""
    errors: dict[str, list] = {}
    clean = _validate(stored or {}, SPEC, "", errors)
    return merge(DEFAULTS, clean)
