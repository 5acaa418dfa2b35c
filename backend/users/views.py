"""A user's data export as a file, downloaded with the session cookie or a Bearer token."""

import io
import tempfile

from backend.core.downloads import file_response, sign_in_first
from backend.core.scoping import is_signed_in

from . import portability


def export_my_data(request):
    """The same JSON as ``exportMyData``, written chat by chat to a file that spools to disk past
    8 MB, then sent a block at a time: an account of any size in bounded memory."""
    if not is_signed_in(request.user):
        return sign_in_first()
    target = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    text = io.TextIOWrapper(target, encoding="utf-8", write_through=True)
    portability.write_export(request.user, text.write)
    text.detach()  # the bytes stay in ``target``, which the response reads and closes
    target.seek(0)
    return file_response(request, target, filename="my-data.json", content_type="application/json")
