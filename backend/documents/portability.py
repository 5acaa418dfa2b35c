"""The documents part of a user's data export and import (collections and their metadata)."""

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage

from backend.core import userdata

from . import vectors
from .versions import storage_keys
from .models import Collection, Document
from .codes import DocumentErrorCode
from .collections import clean_name, default_collection


# --- account data ---------------------------------------------------------------------------

def _export(user) -> dict:
    return {
        "collections": [
            {"uid": str(c.uid), "name": c.name, "description": c.description, "is_default": c.is_default,
             "documents": [{"uid": str(d.uid), "title": d.title, "original_name": d.original_name,
                            "file_type": d.file_type, "size": d.size, "sha256": d.sha256, "tags": d.tags,
                            "page_count": d.page_count, "word_count": d.word_count, "status": d.status,
                            "created_at": d.created_at.isoformat()} for d in c.documents.all()]}
            for c in Collection.objects.filter(owner=user).prefetch_related("documents")
        ]
    }


def _import(user, data) -> dict:
    """Collections by name (files are not part of an export, so documents are not recreated)."""
    if not isinstance(data, dict) or not isinstance(data.get("collections", []), list):
        raise ValidationError({"data.documents": ValidationError("Must be an object with 'collections'.",
                                                                 code=DocumentErrorCode.WRONG_TYPE)})
    created = 0
    for item in data.get("collections", []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValidationError({"data.documents": ValidationError("Each collection needs a name.", code=DocumentErrorCode.WRONG_TYPE)})
        if item.get("is_default"):
            default_collection(user)
            continue
        _, was_created = Collection.objects.get_or_create(
            owner=user, name=clean_name(item["name"]), is_default=False,
            defaults={"description": str(item.get("description", ""))[:5000]})
        created += was_created
    return {"collections_created": created}


def _files(user):
    """Stored originals and index files of the user's collections, removed after the rows."""
    keys = storage_keys(Document.objects.filter(collection__owner=user))
    indexes = [vectors.key_for(c) for c in Collection.objects.filter(owner=user)]
    return [(default_storage, key) for key in keys] + [(vectors.index_files, key) for key in indexes]


userdata.register(userdata.UserDataPart(name="documents", export=_export, import_=_import, files=_files))
