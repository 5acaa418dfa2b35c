"""Bearer-token authentication for HTTP requests.

A request with ``Authorization: Bearer <secret>`` is authenticated by the token alone: the session
is ignored and CSRF does not apply (a browser never attaches that header on its own). An unknown,
revoked or expired token leaves the request anonymous, so the API answers UNAUTHENTICATED.
"""

from typing import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth.models import AnonymousUser

# Who a bearer secret belongs to (None: nobody): the accounts app sets it when it starts (core
# imports no app).
token_owner: Callable[[str], object | None] = lambda secret: None  # noqa: E731


def bearer_secret(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or ""


def _authenticate(request) -> None:
    secret = bearer_secret(request.headers.get("Authorization"))
    if secret is None:
        return
    user = token_owner(secret) or AnonymousUser()
    request.user = user
    request._cached_user = user
    request._acached_user = user
    request.auth_method = "token"
    request._dont_enforce_csrf_checks = True


class BearerTokenMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        _authenticate(request)
        return self.get_response(request)

    async def __acall__(self, request):
        if request.headers.get("Authorization"):
            await sync_to_async(_authenticate)(request)
        return await self.get_response(request)


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"
