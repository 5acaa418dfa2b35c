"""Download of an original file by someone who may read it."""

from django.http import FileResponse, Http404, JsonResponse

from backend.core.errors import NotFound, Unauthenticated
from backend.rag.loaders import CONTENT_TYPES

from . import library
from backend.core.codes import ErrorCode


def download(request, uid):
    try:
        handle, document = library.open_original(request.user, uid)
    except Unauthenticated:
        return JsonResponse({"error": {"code": ErrorCode.UNAUTHENTICATED, "message": "Sign in to download."}}, status=401)
    except (NotFound, FileNotFoundError):
        raise Http404()
    response = FileResponse(handle, as_attachment=True, filename=document.original_name,
                            content_type=CONTENT_TYPES[document.file_type])
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response
