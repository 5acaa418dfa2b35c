"""Downloads by someone who may read them: a document's original file, a collection's archive."""

from django.http import Http404

from backend.core.downloads import file_response, sign_in_first
from backend.core.errors import NotFound, Unauthenticated
from backend.rag.loaders import CONTENT_TYPES

from . import library, transfer


def download(request, uid):
    try:
        handle, document = library.open_original(request.user, uid)
    except Unauthenticated:
        return sign_in_first()
    except (NotFound, FileNotFoundError):
        raise Http404()
    response = file_response(request, handle, filename=document.original_name,
                             content_type=CONTENT_TYPES[document.file_type])
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


def export_collection(request, uid):
    """The collection as a knowledge-base archive (see transfer.py), built for this request."""
    try:
        handle, collection = transfer.export_collection(request.user, uid)
    except Unauthenticated:
        return sign_in_first()
    except NotFound:
        raise Http404()
    name = "".join(ch if ch.isalnum() or ch in " ._-" else "_" for ch in collection.name).strip() or "collection"
    return file_response(request, handle, filename=f"{name}.kb.zip", content_type="application/zip")
