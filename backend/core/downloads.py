"""File downloads that stream a block at a time, whatever the server.

Under ASGI (daphne), Django serves a response whose content is a synchronous iterator (which a
``FileResponse`` is) by reading it whole into memory first: a 40 MB download cost the server ~80
MiB for its duration, a knowledge-base archive up to its 512 MB. There a response reads its file
through an asynchronous iterator instead, a block at a time on a worker thread. Under WSGI (and
Django's test client) ``FileResponse`` already streams, and is kept.
"""

import os

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from .codes import ErrorCode

BLOCK = 256 * 1024


def file_response(request, handle, *, filename: str = "", content_type: str, attachment: bool = True,
                  cache: str = "private, no-store"):
    """The open binary file ``handle`` (closed once sent), as a download (``attachment``) or inline,
    never sniffed for another type; ``cache``: its Cache-Control (a user's own file by default)."""
    if not isinstance(request, ASGIRequest):
        response = FileResponse(handle, as_attachment=attachment, filename=filename, content_type=content_type)
    else:
        response = StreamingHttpResponse(_blocks(handle), content_type=content_type)
        disposition = content_disposition_header(attachment, filename)  # None: inline, no name
        if disposition:
            response["Content-Disposition"] = disposition
        size = _size(handle)
        if size is not None:
            response["Content-Length"] = str(size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = cache
    return response


def sign_in_first() -> JsonResponse:
    """A download asked without a signed-in user (session or Bearer token)."""
    return JsonResponse({"error": {"code": ErrorCode.UNAUTHENTICATED, "message": "Sign in to download."}}, status=401)


def _size(handle) -> int | None:
    """The bytes left to send: a storage file's size, or measured by seeking (not ``fileno()``: a
    spooled temporary file still in memory would be written to disk for it)."""
    size = getattr(handle, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = handle.tell()
        end = handle.seek(0, os.SEEK_END)
        handle.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


async def _blocks(handle):
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while block := await read(BLOCK):
            yield block
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()
