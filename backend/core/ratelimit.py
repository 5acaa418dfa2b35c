"""Fixed-window counters in Django's cache (shared across processes when the cache is Redis)."""

import hashlib

from django.core.cache import cache


def _key(scope: str, ident: str) -> str:
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}"


def hits(scope: str, ident: str) -> int:
    return int(cache.get(_key(scope, ident), 0))


def hit(scope: str, ident: str, window: int) -> int:
    key = _key(scope, ident)
    if cache.add(key, 1, timeout=window):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def reset(scope: str, ident: str) -> None:
    cache.delete(_key(scope, ident))
