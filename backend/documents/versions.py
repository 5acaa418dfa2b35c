"""Document versions: a changed file uploaded again, or an earlier version restored.

The document keeps one identity (its id, title, tags, collection) and a numbered history. The new
version is extracted and chunked again; chunks whose text did not change reuse their vectors (no
embedding). Search and answers see the current version only; the earlier versions keep their
files and their chunks (superseded) so that the answers citing them still resolve.
"""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .codes import DocumentErrorCode
from .events import publish_document_event
from .files import remove_files, store_file
from .ingest import ingest
from .models import Document, DocumentVersion, Role


def first_version(document: Document) -> DocumentVersion:
    """Version 1 of a new document (in its creating transaction)."""
    return DocumentVersion.objects.create(
        document=document, number=1, original_name=document.original_name, file_type=document.file_type,
        size=document.size, sha256=document.sha256, storage_key=document.storage_key,
        uploaded_by=document.uploaded_by)


def _busy(document: Document) -> bool:
    from .recovery import is_stuck

    return document.status in (Document.Status.PENDING, Document.Status.PROCESSING) and not is_stuck(document)


def _make_current(document: Document, user, *, name: str, kind: str, size: int, digest: str, key: str,
                  restored_from: int | None = None) -> Document:
    """The next version, current, queued for ingestion; inside the caller's transaction."""
    locked = Document.objects.select_for_update().get(pk=document.pk)
    if _busy(locked):
        raise ValidationError({"file": ValidationError(
            "This document is still being processed: upload its new version once it is READY or FAILED.",
            code=DocumentErrorCode.STILL_PROCESSING)})
    number = locked.version + 1
    DocumentVersion.objects.create(document=locked, number=number, original_name=name, file_type=kind, size=size,
                                   sha256=digest, storage_key=key, uploaded_by=user, restored_from=restored_from)
    now = timezone.now()
    Document.objects.filter(pk=locked.pk).update(
        version=number, original_name=name, file_type=kind, size=size, sha256=digest, storage_key=key,
        status=Document.Status.PENDING, stage="queued", progress=0, error_code="", error_message="", attempts=0,
        heartbeat_at=now, updated_at=now)
    locked.refresh_from_db()
    publish_document_event(locked)
    ingest.enqueue(locked.pk)
    return locked


def add_version(user, document: Document, *, data: bytes, name: str, kind: str, digest: str) -> Document:
    """``data`` as the new current version of ``document`` (the caller checked access and quotas)."""
    key = store_file(document.collection, data)
    try:
        with transaction.atomic():
            return _make_current(document, user, name=name, kind=kind, size=len(data), digest=digest, key=key)
    except IntegrityError:  # the same file reached the collection meanwhile, as another document
        remove_files([key])
        raise ValidationError({"file": ValidationError("The collection already holds this file.",
                                                       code=DocumentErrorCode.DUPLICATE)})
    except Exception:
        remove_files([key])
        raise


def restore_version(user, document_pk, number: int) -> Document:
    """Make version ``number`` current again, as a new version with its file (re-chunked; its
    vectors are reused, nothing is embedded again)."""
    from .library import get_document

    document = get_document(user, document_pk, need=Role.EDITOR)
    old = DocumentVersion.objects.filter(document=document, number=number).first()
    if old is None:
        raise ValidationError({"version": ValidationError(f"This document has no version {number}.",
                                                          code=DocumentErrorCode.NO_SUCH_VERSION)})
    if number == document.version:
        raise ValidationError({"version": ValidationError("This version is the current one.",
                                                          code=DocumentErrorCode.CURRENT_VERSION)})
    try:
        with transaction.atomic():
            return _make_current(document, user, name=old.original_name, kind=old.file_type, size=old.size,
                                 digest=old.sha256, key=old.storage_key, restored_from=number)
    except IntegrityError:
        raise ValidationError({"version": ValidationError("Another document of the collection holds this file.",
                                                          code=DocumentErrorCode.DUPLICATE)})


def storage_keys(documents) -> list[str]:
    """Every stored file of these documents, all versions."""
    return list(DocumentVersion.objects.filter(document__in=documents).values_list("storage_key", flat=True)
                .distinct())
