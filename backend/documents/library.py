"""A collection's documents: upload (processed in the background by ``ingest.py``), read, edit,
move, delete and download. Search is in ``search.py``.
"""

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from backend.core.errors import NotFound
from backend.core.jsonsql import contains_all
from backend.core.scoping import require_user as _require
from backend.core.throttle import throttle
from backend.rag import loaders

from . import engines, vectors, versions
from .models import Chunk, Collection, Document, DocumentVersion, Role
from .codes import DocumentErrorCode
from .collections import default_collection, get_collection
from .events import publish_document_event
from .files import remove_files, store_file
from .ingest import ingest, ocr_options


MAX_TAGS = 20
TAG_MAX = 50


# --- documents ------------------------------------------------------------------------------

def sanitize_filename(name: str) -> str:
    name = PurePath((name or "").replace("\\", "/")).name
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[-255:] or "document"


def _clean_tags(tags) -> list[str]:
    clean = []
    for tag in tags or []:
        tag = re.sub(r"\s+", " ", str(tag)).strip().lower()
        if not tag:
            continue
        if len(tag) > TAG_MAX:
            raise ValidationError({"tags": ValidationError(f"Tags have at most {TAG_MAX} characters.", code=DocumentErrorCode.TOO_LONG)})
        if tag not in clean:
            clean.append(tag)
    if len(clean) > MAX_TAGS:
        raise ValidationError({"tags": ValidationError(f"At most {MAX_TAGS} tags.", code=DocumentErrorCode.TOO_MANY)})
    return clean


def list_documents(user, *, collection_id=None, status=None, file_type=None, tags=None, created_after=None,
                   created_before=None, title_contains=None, order_by: str = "-created_at"):
    """The documents ``user`` may read, filtered (``tags``: every one of them)."""
    _require(user)
    documents = Document.objects.visible_to(user)
    if collection_id is not None:
        documents = documents.filter(collection_id=collection_id)
    if status is not None:
        documents = documents.filter(status=status)
    if file_type is not None:
        documents = documents.filter(file_type=file_type)
    if created_after is not None:
        documents = documents.filter(created_at__gte=created_after)
    if created_before is not None:
        documents = documents.filter(created_at__lt=created_before)
    if title_contains:
        documents = documents.filter(title__icontains=title_contains)
    if tags:
        documents = contains_all(documents, "tags", [t.strip().lower() for t in tags])
    return documents.order_by(order_by, "-id")


@dataclass
class UploadResult:
    document: Document
    duplicate: bool


def upload_document(user, upload, *, collection_id=None, tags=None, title: str | None = None,
                    version_of=None) -> UploadResult:
    """Store the file and a PENDING row; ingestion runs after commit, never in the request.
    Throttled per account; a new file must fit the user's document and storage quotas.

    A file named as a document of the collection already is (or any file with ``version_of``, a
    document's id) becomes that document's new version (versions.py)."""
    from backend.quotas.services import check_upload

    _require(user)
    throttle("upload", f"user:{user.pk}", "Too many uploads.")
    target = get_document(user, version_of, need=Role.EDITOR) if version_of is not None else None
    if target is not None:
        collection = target.collection
    else:
        collection = (get_collection(user, collection_id, need=Role.EDITOR) if collection_id is not None
                      else default_collection(user))
    tags = _clean_tags(tags)
    name = sanitize_filename(getattr(upload, "name", ""))
    if upload.size > settings.DOCUMENT_MAX_BYTES:
        raise ValidationError({"file": ValidationError(
            f"This file is larger than {settings.DOCUMENT_MAX_BYTES // (1024 * 1024)} MB. Split it or compress it.",
            code=DocumentErrorCode.FILE_TOO_LARGE)})
    data = upload.read()
    if not data:
        raise ValidationError({"file": ValidationError("This file is empty.", code=DocumentErrorCode.EMPTY_FILE)})
    try:
        kind = loaders.detect_type(data, name)
    except loaders.ExtractionError as exc:
        raise ValidationError({"file": ValidationError(exc.message, code=exc.code)})
    if kind == loaders.IMAGE and ocr_options() is None:
        raise ValidationError({"file": ValidationError(loaders.IMAGES_NEED_OCR, code=DocumentErrorCode.OCR_UNAVAILABLE)})
    digest = hashlib.sha256(data).hexdigest()
    existing = Document.objects.filter(collection=collection, sha256=digest).first()
    if existing is not None:
        retried = _retry_broken(existing, user, data, name)
        return UploadResult(retried or existing, retried is None)

    check_upload(user, len(data))
    if target is None:
        target = Document.objects.filter(collection=collection, original_name=name).order_by("-id").first()
    if target is not None:
        return UploadResult(versions.add_version(user, target, data=data, name=name, kind=kind, digest=digest), False)
    key = store_file(collection, data)
    try:
        with transaction.atomic():
            document = Document.objects.create(
                collection=collection, uploaded_by=user, title=(title or PurePath(name).stem or name)[:300],
                original_name=name, file_type=kind, size=len(data), sha256=digest, storage_key=key, tags=tags,
                stage="queued")
            versions.first_version(document)
            publish_document_event(document)
            ingest.enqueue(document.pk)
    except IntegrityError:  # the same file won a concurrent race into this collection
        remove_files([key])
        existing = Document.objects.filter(collection=collection, sha256=digest).first()
        if existing is None:
            raise
        return UploadResult(existing, True)
    except Exception:
        remove_files([key])
        raise
    return UploadResult(document, False)


def _retry_broken(document: Document, user, data: bytes, name: str) -> Document | None:
    """The same file again after its document FAILED or lost its worker: process it again.

    A file that failed (or whose run died) is not a duplicate of a good document: the new copy
    replaces the stored one (the old may be what was missing) and ingestion starts over.
    """
    from .recovery import is_stuck

    if document.status != Document.Status.FAILED and not is_stuck(document):
        return None
    key = store_file(document.collection, data)
    with transaction.atomic():
        updated = Document.objects.filter(pk=document.pk, status=document.status).update(
            status=Document.Status.PENDING, stage="queued", progress=0, error_code="", error_message="",
            storage_key=key, original_name=name, uploaded_by=user, attempts=0, heartbeat_at=timezone.now(),
            updated_at=timezone.now())
        if not updated:  # someone else retried it first
            transaction.on_commit(lambda: remove_files([key]))
            return None
        old_key = document.storage_key
        DocumentVersion.objects.filter(document=document, number=document.version).update(
            storage_key=key, original_name=name, uploaded_by=user)
        document.refresh_from_db()
        publish_document_event(document)
        ingest.enqueue(document.pk)
        transaction.on_commit(lambda: remove_files([old_key]))
    return document


def get_document(user, pk, *, need: str = Role.VIEWER) -> Document:
    _require(user)
    document = Document.objects.visible_to(user).select_related("collection").filter(pk=pk).first()
    if document is None:
        raise NotFound("No such document.")
    get_collection(user, document.collection_id, need=need)
    return document


def update_document(user, pk, *, title=None, tags=None, collection_id=None) -> Document:
    document = get_document(user, pk, need=Role.EDITOR)
    old_collection = document.collection
    with transaction.atomic():
        if title is not None:
            title = title.strip()
            if not title or len(title) > 300:
                raise ValidationError({"title": ValidationError("Between 1 and 300 characters.", code=DocumentErrorCode.INVALID_LENGTH)})
            document.title = title
        if tags is not None:
            document.tags = _clean_tags(tags)
        moved = collection_id is not None and str(collection_id) != str(document.collection_id)
        if moved:
            target = get_collection(user, collection_id, need=Role.EDITOR)
            if target.owner_id != old_collection.owner_id:
                # An editor of someone's collection cannot carry the owner's document to a place the
                # owner cannot see (or the editor's own document into theirs): moves stay with one owner.
                raise ValidationError({"collectionId": ValidationError(
                    "A document moves only between collections of the same owner.", code=DocumentErrorCode.OTHER_OWNER)})
            if Document.objects.filter(collection=target, sha256=document.sha256).exists():
                raise ValidationError({"collectionId": ValidationError(
                    "The target collection already holds this file.", code=DocumentErrorCode.DUPLICATE)})
            document.collection = target
            Chunk.objects.filter(document=document).update(collection=target)  # earlier versions' too
            ids, matrix = vectors.vectors_of(Chunk.objects.filter(document=document, superseded=False))
            index = engines.engine().vectors
            index.delete(old_collection.pk, ids)
            index.add(target.pk, ids, matrix)
            _bump(old_collection.pk, target.pk)
        document.save()
    return document


def _bump(*collection_ids) -> None:
    Collection.objects.filter(pk__in=collection_ids).update(index_version=F("index_version") + 1)


def delete_document(user, pk) -> Document:
    document = get_document(user, pk, need=Role.EDITOR)
    collection_id = document.collection_id
    with transaction.atomic():
        chunk_ids = list(Chunk.objects.filter(document=document).values_list("pk", flat=True))
        had_vectors = bool(chunk_ids)
        keys = versions.storage_keys([document])  # every version's file
        Document.objects.filter(pk=document.pk).delete()
        if had_vectors:
            _bump(collection_id)
        transaction.on_commit(lambda: remove_files(keys))
        if had_vectors:
            engines.engine().vectors.delete(collection_id, chunk_ids)
        publish_document_event(document, deleted=True)
    return document


def open_original(user, uid):
    """(file, document) for download, if ``user`` may read it."""
    _require(user)
    document = Document.objects.visible_to(user).filter(uid=uid).first()
    if document is None:
        raise NotFound("No such document.")
    return default_storage.open(document.storage_key, "rb"), document
