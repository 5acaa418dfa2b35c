"""The HTTP view and the websocket consumer for ``/graphql/``, both building the same Context."""

import asyncio
import json

from channels.db import database_sync_to_async
from cross_web import HTTPException
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.middleware.csrf import get_token
from strawberry.channels import GraphQLWSConsumer
from strawberry.django.views import AsyncGraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types.unset import UNSET

from backend.core import events, metrics, unavailable
from backend.core.concurrency import in_thread_pool
from backend.core.auth import bearer_secret

from . import persisted
from .context import Context
from backend.core.codes import ErrorCode


class GraphQLView(AsyncGraphQLView):
    """Sessions, CSRF and bearer tokens apply as for any Django view.

    Every response to a browser (a request without a bearer token) sets the ``csrftoken`` cookie
    and carries the token in an ``X-CSRFToken`` header, so a browser client (same origin: from the
    cookie; another origin: from the header, exposed by CORS) can send it back as ``X-CSRFToken``
    on mutations after its first GET query. A request with a bearer token is exempt from CSRF and
    gets neither: masking a token draws 32 random characters, a fifteenth of a search's CPU under
    load (py-spy), for a header no token client reads.
    """

    async def dispatch(self, request, *args, **kwargs):
        if isinstance(request, ASGIRequest):  # served by daphne: the loop lives as long as the server
            events.bind_server_loop(asyncio.get_running_loop())  # answers started here run on it
        response = await super().dispatch(request, *args, **kwargs)
        if _unavailable(response):
            response.status_code = 503
            response["Retry-After"] = str(unavailable.RETRY_AFTER_SECONDS)
        metrics.HTTP_RESPONSES.labels(f"{response.status_code // 100}xx").inc()
        if getattr(request, "auth_method", None) != "token":
            # For a frontend on another origin, which cannot read this host's csrftoken cookie;
            # get_token also has CsrfViewMiddleware set the cookie.
            response["X-CSRFToken"] = get_token(request)
        return response

    def decode_json(self, data):
        """JSON no client nests deeply: past MAX_JSON_DEPTH levels the request is refused (400)."""
        try:
            value = json.loads(data)
        except RecursionError:
            value = None
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = _depth(value)
        if depth > MAX_JSON_DEPTH:
            raise HTTPException(400, f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.")
        return value

    async def parse_multipart(self, request):
        """The GraphQL multipart request spec's ``map``: an object of file keys to lists of paths
        into the operations; anything else is a 400, never an error deeper in."""
        form = await request.get_form_data()
        files_map = form.form.get("map", "{}")
        files_map = self.parse_json(files_map) if isinstance(files_map, (bytes, str)) else files_map
        if not (isinstance(files_map, dict) and all(
                isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths)
                for paths in files_map.values())):
            raise HTTPException(400, "The multipart 'map' must be an object of file keys to lists of paths.")
        try:
            return await super().parse_multipart(request)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise HTTPException(400, "The multipart 'map' names a path the operations do not have.") from exc

    async def get_context(self, request, response) -> Context:
        from django.contrib.auth.models import AnonymousUser

        from backend.users.credentials import usable

        user = await request.auser()
        if user.is_authenticated and not usable(user):  # a guest past its expiry signs in no more
            user = AnonymousUser()
        request.user = user  # resolved once; later checks must not re-read the session
        if user.is_authenticated:
            from backend.users.accounts import last_active_stale, touch_last_active

            if last_active_stale(user):  # at most every few minutes: no thread hop otherwise
                await database_sync_to_async(touch_last_active)(user)
        return Context(request=request, response=response, user=user)


MAX_JSON_DEPTH = 64


def _depth(value) -> int:
    """How deeply a decoded JSON value nests (iteratively: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _unavailable(response) -> bool:
    """An operation stopped by an unavailable database: HTTP 503 with Retry-After, not 200."""
    content = getattr(response, "content", b"") if not getattr(response, "streaming", False) else b""
    if b'"UNAVAILABLE"' not in content:
        return False
    try:
        errors = json.loads(content).get("errors") or []
    except ValueError:
        return False
    return any((error.get("extensions") or {}).get("code") == ErrorCode.UNAVAILABLE for error in errors)


def _user_for_secret(secret):
    from backend.users.accounts import touch_last_active
    from backend.users.credentials import user_for_token

    user = user_for_token(secret)
    if user is not None:
        touch_last_active(user)
    return user


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws, telling a subscription the client completed from one whose socket
    closed: graphql-ws's lazy close sends "complete" and closes at once, and the operation's
    cleanup would otherwise find the socket already gone. Each operation's text is resolved as
    over HTTP (persisted queries, trusted documents) before it runs."""

    async def handle_subscribe(self, message) -> None:
        payload = message.get("payload") or {}
        try:
            query = persisted.resolve(payload.get("query"), payload.get("extensions"))
        except persisted.PersistedQueryError as error:
            if self.connection_acknowledged and message["id"] not in self.operations:
                await self.send_message({"id": message["id"], "type": "error",
                                         "payload": [error.as_graphql().formatted]})
                return
        else:
            message = {**message, "payload": {**payload, "query": query}}
        await super().handle_subscribe(message)

    async def handle_complete(self, message) -> None:
        operation = self.operations.get(message["id"])
        if operation is not None and operation.task is not None:
            self.context.completed.add(operation.task)
        await super().handle_complete(message)


class GraphQLWebSocketConsumer(GraphQLWSConsumer):
    """graphql-transport-ws on ``/graphql/``.

    The user comes from the session cookie (Channels' AuthMiddlewareStack), or from the
    ``connection_init`` payload ``{"authorization": "Bearer <token>"}``, which wins when given.
    A payload with a bad token closes the socket with 4403.
    """

    graphql_transport_ws_handler_class = TransportWSHandler

    async def connect(self) -> None:
        from backend.core.logs import bind, new_id

        bind(socket_id=new_id())  # on this socket's logs, and its operations'
        events.bind_server_loop(asyncio.get_running_loop())
        metrics.WEBSOCKETS.inc()
        self.counted = True
        await super().connect()

    async def disconnect(self, code) -> None:
        if getattr(self, "counted", False):
            metrics.WEBSOCKETS.dec()
            self.counted = False
        if getattr(self, "expiry", None) is not None:
            self.expiry.cancel()
        if getattr(self, "auth_group", None):
            await self.channel_layer.group_discard(self.auth_group, self.channel_name)
        await super().disconnect(code)

    async def get_context(self, request, response) -> Context:
        return Context(request=request, ws=request, user=request.scope.get("user"))

    async def on_ws_connect(self, context: Context):
        from backend.users.credentials import usable

        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        if header:
            secret = bearer_secret(str(header))
            user = await in_thread_pool(_user_for_secret)(secret) if secret else None
            if user is None:
                raise ConnectionRejectionError({"code": ErrorCode.UNAUTHENTICATED})
            context.user = user
            context.credential = ("token", secret, user.pk)
        elif getattr(context.user, "is_authenticated", False):
            session = self.scope.get("session")
            if not usable(context.user) or session is None or not session.session_key:
                context.user = None
            else:
                context.credential = ("session", session.session_key, context.user.pk)
        if context.credential is not None:
            await self._watch(context)
        return UNSET

    # --- revocation: the socket's credential is checked again when it may have changed ----------

    async def _watch(self, context: Context) -> None:
        """Hear the user's credential changes (from any process, through the channel layer), and
        check again when a guest's account expires."""
        self.ws_context = context
        self.auth_group = events.auth_group(context.credential[2])
        await self.channel_layer.group_add(self.auth_group, self.channel_name)
        expires = getattr(context.user, "guest_expires_at", None)
        if expires is not None:
            from django.utils import timezone

            delay = max(0.0, (expires - timezone.now()).total_seconds()) + 0.5
            self.expiry = asyncio.get_running_loop().call_later(
                delay, lambda: asyncio.ensure_future(self._check_credential()))

    async def dispatch(self, message) -> None:
        if message.get("type") == events.AUTH_CHANGED:
            await self._check_credential()
            return
        await super().dispatch(message)

    async def _check_credential(self) -> None:
        from backend.users.credentials import credential_valid

        context = getattr(self, "ws_context", None)
        if context is None or context.credential is None:
            return
        if not await in_thread_pool(credential_valid)(context.credential):
            context.user, context.credential = None, None
            await self.close(code=REVOKED)


REVOKED = 4401  # the socket's credential was revoked: sign in again


def graphql_ide():
    return "graphiql" if settings.GRAPHIQL else None
