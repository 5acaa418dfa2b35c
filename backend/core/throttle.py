"""Throttles: at most N uses of an action per period by one client address, account or email.

Counted with django-ratelimit's fixed windows in Django's cache (Redis when configured, so a limit
holds across web processes). Rates are settings (``THROTTLES``: name -> "count/period"); a used-up
throttle raises ``RateLimited`` with ``retry_after``, the seconds until its window ends. The
identity is hashed into the cache key, so no email address is stored in the cache.
"""

import hashlib

from django.conf import settings
from django_ratelimit.core import get_usage

from .errors import RateLimited


def _usage(name: str, ident: str, increment: bool, rate: str | None = None):
    """``rate`` given: a counter of its own (login protection), whatever THROTTLES_ENABLED says."""
    if rate is None:
        rate = settings.THROTTLES.get(name) if settings.THROTTLES_ENABLED else None
    if not rate:
        return None
    digest = hashlib.sha256(f"{name}:{ident}".encode()).hexdigest()[:32]
    return get_usage(None, group=f"throttle:{name}", key=lambda group, request: digest, rate=rate,
                     increment=increment)


def allow(name: str, ident: str) -> bool:
    """Count one use; False when it is over the rate (for actions refused silently)."""
    usage = _usage(name, ident, increment=True)
    return usage is None or not usage["should_limit"]


def throttle(name: str, ident: str, message: str = "Too many requests. Please wait and try again.") -> None:
    """Count one use; ``RateLimited`` (with ``retry_after`` seconds) when it is over the rate."""
    usage = _usage(name, ident, increment=True)
    if usage is not None and usage["should_limit"]:
        wait = max(1, usage["time_left"])
        raise RateLimited(f"{message} Try again in {wait} s.", retry_after=wait)


def count(name: str, ident: str, rate: str) -> int:
    """How many uses of ``name`` by ``ident`` the current window of ``rate`` holds."""
    usage = _usage(name, ident, increment=False, rate=rate)
    return usage["count"] if usage else 0


def record(name: str, ident: str, rate: str) -> None:
    """Count one use of ``name`` by ``ident`` in the window of ``rate``."""
    _usage(name, ident, increment=True, rate=rate)
