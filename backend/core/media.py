"""Public avatar images, read through the storage API (local files or S3 alike)."""

from django.core.files.storage import default_storage
from django.http import Http404

from .downloads import file_response


def avatar(request, name: str):
    key = f"avatars/{name}"
    if not default_storage.exists(key):
        raise Http404()
    return file_response(request, default_storage.open(key, "rb"), content_type="image/png", attachment=False,
                         cache="public, max-age=86400, immutable")
