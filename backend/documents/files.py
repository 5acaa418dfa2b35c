"""The stored originals of documents, under opaque keys."""

import logging
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


from .models import Collection

logger = logging.getLogger(__name__)


def remove_files(keys) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:
            logger.exception("could not delete stored file %s", key)


def collection_folder(collection: Collection) -> str:
    """Where the files uploaded into a collection are stored (a document moved away keeps its key)."""
    return f"documents/{collection.uid.hex}"


def store_file(collection: Collection, data: bytes) -> str:
    """Save an uploaded file under an opaque key of its collection."""
    return default_storage.save(f"{collection_folder(collection)}/{uuid.uuid4().hex}", ContentFile(data))
