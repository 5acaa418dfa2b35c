"""Overload is not a bug: a request that cannot get a database connection in time is answered
503 with Retry-After (a client may retry), never 500.

Django turns an exception raised anywhere in the middleware or view into a response through
``handler500``; this module's ``server_error`` is that handler, and ``classify`` in the GraphQL
error extension asks ``is_unavailable`` too, so an operation gets ``extensions.code: UNAVAILABLE``
and the view turns the response into a 503.
"""

import sys

from django.db import OperationalError
from django.http import JsonResponse
from .codes import ErrorCode

RETRY_AFTER_SECONDS = 2
MESSAGE = "The service is busy. Try again in a few seconds."

# Transient states of the database that say "not now", not "your request is wrong".
_TRANSIENT = ("couldn't get a connection", "remaining connection slots", "too many clients",
              "database is locked", "the database system is starting up", "the database system is shutting down")


def is_unavailable(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in {"PoolTimeout", "TooManyRequests"}:
            return True
        if isinstance(exc, OperationalError) and any(text in str(exc).lower() for text in _TRANSIENT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def unavailable_response() -> JsonResponse:
    response = JsonResponse({"errors": [{"message": MESSAGE, "extensions": {"code": ErrorCode.UNAVAILABLE}}]}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def server_error(request, *args, **kwargs):
    """handler500: 503 for an unavailable database, a plain JSON 500 for anything else."""
    if is_unavailable(sys.exc_info()[1]):
        return unavailable_response()
    return JsonResponse({"errors": [{"message": "Unexpected error.", "extensions": {"code": ErrorCode.INTERNAL}}]},
                        status=500)
