"""Structured logs (structlog) and error reports (Sentry), with ids and without secrets.

Every log record, Django's and libraries' included, goes through structlog's ``ProcessorFormatter``:
one JSON object per line in production (``LOG_FORMAT=json``), readable lines in development. Each
carries the ids bound for the work it belongs to (structlog's context variables):

- ``request_id``: an HTTP request's (the client's ``X-Request-ID`` when it sends a sane one, else a
  new one; sent back in the response header), carried into the background tasks it queues (the
  in-process runner and Celery) and the answers it starts;
- ``socket_id`` and ``operation_id`` on websockets: a socket's, and each operation's on it (an
  answer's job inherits its operation's).

Values under keys that name secrets or users' content (passwords, keys, tokens, cookies, document
and message text) are replaced before anything is written or sent; the same scrubbing applies to
Sentry events (``SENTRY_DSN``), whose default PII collection stays off.
"""

import logging
import re
import uuid

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

REDACTED = "[redacted]"
SENSITIVE = re.compile(r"pass(word|phrase)?|secret|token$|api_?key|authori[sz]ation|cookie|csrf|session|"
                       r"^(content|text|delta|chunk|passages?|snippet|document_text)$", re.IGNORECASE)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _scrub(value, depth: int = 0):
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and SENSITIVE.search(k) and v not in (None, "", [], {})
                    else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(_logger, _method, event_dict: dict) -> dict:
    """A structlog processor: sensitive keys' values replaced (the message itself is kept)."""
    return {k: (v if k in ("event", "logger", "level", "timestamp") else _scrub({k: v})[k])
            for k, v in event_dict.items()}


_CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact,
]


def _formatter_options(fmt: str) -> dict:
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    return {"foreign_pre_chain": _CHAIN,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                           structlog.processors.format_exc_info, renderer]}


def formatter(fmt: str) -> dict:
    """A ``logging`` formatter config: ``json`` (one object per line) or ``console``."""
    return {"()": structlog.stdlib.ProcessorFormatter, **_formatter_options(fmt)}


def make_formatter(fmt: str) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(**_formatter_options(fmt))


def configure_structlog() -> None:
    """structlog's own loggers hand their events to ``logging`` (and so to the formatter above)."""
    structlog.configure(
        processors=[*_CHAIN[:2], structlog.stdlib.add_logger_name,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(), wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)


# --- ids ------------------------------------------------------------------------------------------

def new_id() -> str:
    return uuid.uuid4().hex


def bind(**ids) -> None:
    bind_contextvars(**ids)


def current_ids() -> dict:
    return {k: v for k, v in get_contextvars().items() if k.endswith("_id")}


class RequestIdMiddleware:
    """Binds a request id for the request's logs (and what it queues), returned as X-Request-ID."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import markcoroutinefunction

        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        sent = request.headers.get("X-Request-ID", "")
        request_id = sent if REQUEST_ID.match(sent) else new_id()
        tokens = bind_contextvars(request_id=request_id)
        try:
            response = await self.get_response(request)
        finally:
            reset_contextvars(**tokens)
        response["X-Request-ID"] = request_id
        return response


# --- Sentry ---------------------------------------------------------------------------------------

HEADERS_DROPPED = {"authorization", "cookie", "x-csrftoken", "x-api-key", "proxy-authorization"}


def scrub_event(event: dict, _hint=None) -> dict:
    """Sentry's ``before_send``: the same keys scrubbed, and credentials out of request headers."""
    request = event.get("request") or {}
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {k: (REDACTED if k.lower() in HEADERS_DROPPED else v) for k, v in headers.items()}
    for key in ("cookies", "data"):
        if request.get(key):
            request[key] = REDACTED
    return _scrub(event)


def init_sentry(dsn: str, environment: str, traces_sample_rate: float = 0.0) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    # No local variables in stack traces: a frame of the login, an ingestion or a turn holds the
    # password, the document or the prompt, under names no scrubbing can foresee.
    sentry_sdk.init(dsn=dsn, environment=environment, send_default_pii=False, before_send=scrub_event,
                    traces_sample_rate=traces_sample_rate, max_request_body_size="never",
                    include_local_variables=False,
                    integrations=[DjangoIntegration(), LoggingIntegration(event_level=logging.ERROR)])
