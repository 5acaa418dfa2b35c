"""Collections and documents: permissions, uploads, deletion, sharing.

Visibility comes from ``visible_to`` / ``editable_by`` on the querysets, the same methods the
GraphQL types use. Ingestion itself is in ``ingest.py`` (a task); search in ``search.py`` over the
engines of ``engines/`` (pgvector or FAISS, and full-text search).
"""

import hashlib
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from backend.core import events, tasks, userdata
from backend.core.errors import Forbidden, NotFound
from backend.core.scoping import require_user as _require
from backend.core.throttle import throttle
from backend.rag import loaders

from . import engines, vectors
from .models import Chunk, Collection, CollectionShare, Document, Role
from .codes import DocumentErrorCode

logger = logging.getLogger(__name__)

MAX_TAGS = 20
TAG_MAX = 50



# --- collections ----------------------------------------------------------------------------

def default_collection(user) -> Collection:
    _require(user)
    collection = Collection.objects.filter(owner=user, is_default=True).first()
    if collection is None:
        try:
            with transaction.atomic():
                collection = Collection.objects.create(owner=user, name="My documents", is_default=True)
        except IntegrityError:
            collection = Collection.objects.get(owner=user, is_default=True)
    return collection


def get_collection(user, pk, *, need: str = Role.VIEWER) -> Collection:
    """The collection if ``user`` may see it, checked for the role ``need``.

    A collection the user cannot see is NOT_FOUND (its existence is not revealed); one they can
    see but not change is FORBIDDEN.
    """
    _require(user)
    collection = Collection.objects.visible_to(user).filter(pk=pk).first()
    if collection is None:
        raise NotFound("No such collection.")
    role = collection.role_of(user)
    allowed = {Role.VIEWER: {Role.VIEWER, Role.EDITOR, Role.OWNER}, Role.EDITOR: {Role.EDITOR, Role.OWNER},
               Role.OWNER: {Role.OWNER}}[need]
    if role not in allowed:
        raise Forbidden("Your role in this collection does not allow this." if need != Role.OWNER
                        else "Only the collection's owner can do this.")
    return collection


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ValidationError("Give the collection a name.", code=DocumentErrorCode.REQUIRED)})
    if len(name) > 200:
        raise ValidationError({"name": ValidationError("At most 200 characters.", code=DocumentErrorCode.TOO_LONG)})
    return name


def create_collection(user, *, name: str, description: str = "") -> Collection:
    _require(user)
    if len(description or "") > 5000:
        raise ValidationError({"description": ValidationError("At most 5000 characters.", code=DocumentErrorCode.TOO_LONG)})
    return Collection.objects.create(owner=user, name=_clean_name(name), description=description or "")


def update_collection(user, pk, *, name=None, description=None) -> Collection:
    collection = get_collection(user, pk, need=Role.OWNER)
    if name is not None:
        collection.name = _clean_name(name)
    if description is not None:
        if len(description) > 5000:
            raise ValidationError({"description": ValidationError("At most 5000 characters.", code=DocumentErrorCode.TOO_LONG)})
        collection.description = description
    collection.save()
    return collection


def delete_collection(user, pk) -> None:
    collection = get_collection(user, pk, need=Role.OWNER)
    if collection.is_default:
        raise ValidationError(ValidationError("Your default collection cannot be deleted.", code=DocumentErrorCode.DEFAULT_COLLECTION))
    keys = list(collection.documents.values_list("storage_key", flat=True))
    index_key = vectors.key_for(collection)
    with transaction.atomic():
        collection_pk = collection.pk
        collection.delete()
        events.publish_group(events.collection_group(collection_pk), {"kind": ACCESS_CHANGED})
        transaction.on_commit(lambda: _remove_files(keys))
        transaction.on_commit(lambda: vectors.drop(index_key))


def share_collection(user, pk, *, email: str, role: str) -> CollectionShare:
    """Share with an email address. The answer is the same whether or not an account has it: the
    share reaches the account whose verified address it is, now or when one verifies it."""
    from django.core.validators import validate_email

    from backend.users.models import User

    collection = get_collection(user, pk, need=Role.OWNER)
    if role not in (Role.VIEWER, Role.EDITOR):
        raise ValidationError({"role": ValidationError("Share as VIEWER or EDITOR.", code=DocumentErrorCode.INVALID_CHOICE)})
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ValidationError("Enter a valid email address.", code=DocumentErrorCode.INVALID_EMAIL)})
    if email == collection.owner.email.lower():
        raise ValidationError({"email": ValidationError("You own this collection already.", code=DocumentErrorCode.SELF_SHARE)})
    target = User.objects.filter(email__iexact=email, is_active=True, is_guest=False,
                                 email_verified_at__isnull=False).first()
    share, _ = CollectionShare.objects.update_or_create(collection=collection, email=email,
                                                        defaults={"role": role, "user": target})
    return share


def link_shares(user) -> None:
    """Shares waiting for ``user``'s address reach the account (its address was just verified)."""
    CollectionShare.objects.filter(email__iexact=user.email, user__isnull=True).update(user=user)


ACCESS_CHANGED = "ACCESS_CHANGED"
DELETED = "DELETED"  # a document's status in its last event


def unshare_collection(user, pk, *, email: str | None = None, user_id=None) -> Collection:
    """The owner removes a share (by its address); a member may leave (``user_id`` their own)."""
    _require(user)
    collection = Collection.objects.visible_to(user).filter(pk=pk).first()
    if collection is None:
        raise NotFound("No such collection.")
    shares = CollectionShare.objects.filter(collection=collection)
    if email is not None:
        shares = shares.filter(email__iexact=(email or "").strip())
    elif user_id is not None:
        shares = shares.filter(user_id=user_id)
    else:
        raise ValidationError({"email": ValidationError("Say whose access to remove.", code=DocumentErrorCode.REQUIRED)})
    if collection.owner_id != user.pk and not (shares.exists() and all(s.user_id == user.pk for s in shares)):
        raise Forbidden("Only the collection's owner can do this.")
    with transaction.atomic():
        deleted, _ = shares.delete()
        if not deleted:
            raise ValidationError({"email": ValidationError("This collection is not shared so.", code=DocumentErrorCode.NOT_SHARED)})
        # Subscribers of the collection's events check their access again: the removed member's end.
        events.publish_group(events.collection_group(collection.pk), {"kind": ACCESS_CHANGED})
    return collection


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


def _remove_files(keys) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:
            logger.exception("could not delete stored file %s", key)


def _event(document: Document) -> dict:
    return {"kind": "DOCUMENT", "document_id": document.pk, "status": str(document.status), "stage": document.stage,
            "progress": document.progress, "error_code": document.error_code}


def publish_document_event(document: Document) -> None:
    events.publish_group(events.collection_group(document.collection_id), _event(document))


@dataclass
class UploadResult:
    document: Document
    duplicate: bool


def upload_document(user, upload, *, collection_id=None, tags=None, title: str | None = None) -> UploadResult:
    """Store the file and a PENDING row; ingestion runs after commit, never in the request.
    Throttled per account; a new file must fit the user's document and storage quotas."""
    from backend.quotas.services import check_upload

    _require(user)
    throttle("upload", f"user:{user.pk}", "Too many uploads.")
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
    digest = hashlib.sha256(data).hexdigest()
    existing = Document.objects.filter(collection=collection, sha256=digest).first()
    if existing is not None:
        retried = _retry_broken(existing, user, data, name)
        return UploadResult(retried or existing, retried is None)

    check_upload(user, len(data))
    key = _store(collection, data)
    try:
        with transaction.atomic():
            document = Document.objects.create(
                collection=collection, uploaded_by=user, title=(title or PurePath(name).stem or name)[:300],
                original_name=name, file_type=kind, size=len(data), sha256=digest, storage_key=key, tags=tags,
                stage="queued")
            publish_document_event(document)
            tasks.enqueue("documents.ingest", document.pk)
    except IntegrityError:  # the same file won a concurrent race into this collection
        _remove_files([key])
        existing = Document.objects.filter(collection=collection, sha256=digest).first()
        if existing is None:
            raise
        return UploadResult(existing, True)
    except Exception:
        _remove_files([key])
        raise
    return UploadResult(document, False)


def _store(collection: Collection, data: bytes) -> str:
    """Save an uploaded file under an opaque key of its collection."""
    return default_storage.save(f"documents/{collection.uid.hex}/{uuid.uuid4().hex}", ContentFile(data))


def _retry_broken(document: Document, user, data: bytes, name: str) -> Document | None:
    """The same file again after its document FAILED or lost its worker: process it again.

    A file that failed (or whose run died) is not a duplicate of a good document: the new copy
    replaces the stored one (the old may be what was missing) and ingestion starts over.
    """
    from .recovery import is_stuck

    if document.status != Document.Status.FAILED and not is_stuck(document):
        return None
    key = _store(document.collection, data)
    with transaction.atomic():
        updated = Document.objects.filter(pk=document.pk, status=document.status).update(
            status=Document.Status.PENDING, stage="queued", progress=0, error_code="", error_message="",
            storage_key=key, original_name=name, uploaded_by=user, attempts=0, heartbeat_at=timezone.now(),
            updated_at=timezone.now())
        if not updated:  # someone else retried it first
            transaction.on_commit(lambda: _remove_files([key]))
            return None
        old_key = document.storage_key
        document.refresh_from_db()
        publish_document_event(document)
        tasks.enqueue("documents.ingest", document.pk)
        transaction.on_commit(lambda: _remove_files([old_key]))
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
            moving = Chunk.objects.filter(document=document)
            moving.update(collection=target)
            ids, matrix = vectors.vectors_of(moving)
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
        Document.objects.filter(pk=document.pk).delete()
        if had_vectors:
            _bump(collection_id)
        key = document.storage_key
        transaction.on_commit(lambda: _remove_files([key]))
        if had_vectors:
            engines.engine().vectors.delete(collection_id, chunk_ids)
        events.publish_group(events.collection_group(collection_id), {
            "kind": "DOCUMENT", "document_id": document.pk, "status": DELETED, "stage": "", "progress": 100,
            "error_code": ""})
    return document


def rebuild_index(user, collection_id) -> vectors.Stats:
    collection = get_collection(user, collection_id, need=Role.EDITOR)
    engines.engine().vectors.rebuild(collection.pk)
    return engines.engine().stats(collection)


def vector_store_stats(user) -> list[vectors.Stats]:
    _require(user)
    return [engines.engine().stats(c) for c in Collection.objects.visible_to(user).order_by("pk")]


def open_original(user, uid):
    """(file, document) for download, if ``user`` may read it."""
    _require(user)
    document = Document.objects.visible_to(user).filter(uid=uid).first()
    if document is None:
        raise NotFound("No such document.")
    return default_storage.open(document.storage_key, "rb"), document


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
            owner=user, name=_clean_name(item["name"]), is_default=False,
            defaults={"description": str(item.get("description", ""))[:5000]})
        created += was_created
    return {"collections_created": created}


def _files(user):
    """Stored originals and index files of the user's collections, removed after the rows."""
    keys = Document.objects.filter(collection__owner=user).values_list("storage_key", flat=True)
    indexes = [vectors.key_for(c) for c in Collection.objects.filter(owner=user)]
    return [(default_storage, key) for key in keys] + [(vectors.index_files, key) for key in indexes]


userdata.register(userdata.UserDataPart(name="documents", export=_export, import_=_import, files=_files))
