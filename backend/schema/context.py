"""The request context every resolver gets, over HTTP and over websockets alike."""

import weakref
from dataclasses import dataclass, field
from typing import Any

import strawberry
from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host

from backend.core.auth import client_address
from backend.core.errors import Unauthenticated


@dataclass
class Context:
    request: Any  # HttpRequest over HTTP, the consumer over websockets
    response: Any = None
    user: Any = None
    ws: Any = None
    connection_params: dict = field(default_factory=dict)
    # A websocket's credential, checked again on every operation and on every change:
    # ("token", secret, user id) or ("session", session key, user id).
    credential: tuple | None = None
    # Operation tasks whose subscription the client completed (graphql-transport-ws "complete"),
    # as opposed to ended by a closed socket: a completed chatStream stops its answer.
    completed: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    @property
    def http_request(self) -> HttpRequest | None:
        return self.request if isinstance(self.request, HttpRequest) else None

    @property
    def client_address(self) -> str:
        """The client's address, over HTTP (``REMOTE_ADDR``) and over websockets (the ASGI scope)."""
        if self.http_request is not None:
            return client_address(self.http_request)
        client = (getattr(self.request, "scope", None) or {}).get("client")
        return str(client[0]) if client else "unknown"

    def absolute_url(self, path: str) -> str:
        """``path`` on the API's public origin: PUBLIC_URL when set, else the origin the client
        reached (over HTTP as Django builds it; over a websocket from its Host header, checked
        against ALLOWED_HOSTS). URLs that are absolute already (S3) are returned as they are."""
        if path.startswith(("https://", "http://")):
            return path
        if settings.PUBLIC_URL:
            return settings.PUBLIC_URL.rstrip("/") + path
        if self.http_request is not None:
            return self.http_request.build_absolute_uri(path)
        scope = getattr(self.request, "scope", None) or {}
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return path
        forwarded = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
        secure = scope.get("scheme") in ("wss", "https") or (getattr(settings, "BEHIND_TLS_PROXY", False) and forwarded == "https")
        return f"{'https' if secure else 'http'}://{host}{path}"

    def get_user(self, required: bool = True):
        user = self.user
        if user is None or not getattr(user, "is_authenticated", False):
            if required:
                raise Unauthenticated()
            return None
        return user


Info = strawberry.Info[Context, None]
