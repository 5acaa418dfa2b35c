"""Portable knowledge bases: a collection exported as one archive (archive.py), imported on any
instance. With the same embedding model the imported documents are READY at once, their vectors
taken from the archive; with another model they are re-read and re-embedded in the background.
An import is all or nothing: a refused archive leaves no collection, row or stored file behind.
"""

import tempfile
from collections import Counter
from itertools import groupby

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from backend.core.errors import NotFound
from backend.core.scoping import require_user
from backend.core.writes import let_other_writers_in
from backend.rag import embeddings

from . import archive, engines
from .codes import DocumentErrorCode
from .collections import clean_name, purge
from .files import collection_folder, remove_files, store_file
from .ingest import ingest
from .models import Chunk, Collection, Document, DocumentVersion

IMPORT_BATCH = 500  # chunks (and documents) written per transaction of an import (~0.2 s of SQLite's lock)
CHUNK_FIELDS = ("position", "text", "text_hash", "page_start", "page_end", "char_start", "char_end", "token_count",
                "section", "embedding_model")


def export_collection(user, uid) -> tuple[object, Collection]:
    """(a temporary file holding the archive, the collection ``uid``), for anyone who may read it."""
    require_user(user)
    collection = Collection.objects.visible_to(user).filter(uid=uid).first()
    if collection is None:
        raise NotFound("No such collection.")
    documents = list(collection.documents.order_by("pk"))
    versions: dict[int, list[DocumentVersion]] = {}
    for version in DocumentVersion.objects.filter(document__in=documents).order_by("number"):
        versions.setdefault(version.document_id, []).append(version)
    files, described, ready = {}, [], {}
    for index, document in enumerate(documents):
        described.append({
            "title": document.title, "tags": document.tags, "metadata": document.metadata,
            "version": document.version, "ready": document.status == Document.Status.READY,
            "page_count": document.page_count, "word_count": document.word_count,
            "versions": [{"number": v.number, "original_name": v.original_name, "file_type": v.file_type,
                          "size": v.size, "sha256": v.sha256, "created_at": v.created_at.isoformat(),
                          "restored_from": v.restored_from} for v in versions.get(document.pk, [])],
        })
        for v in versions.get(document.pk, []):
            files.setdefault(v.sha256, lambda key=v.storage_key: default_storage.open(key, "rb"))
        if document.status == Document.Status.READY:
            ready[document.pk] = index
    current = Chunk.objects.filter(collection=collection, document__status=Document.Status.READY, superseded=False)
    models = Counter(dict(current.values_list("embedding_model").annotate(n=Count("pk")).order_by()))
    manifest = {
        "exported_at": timezone.now().isoformat(),
        "embedding": {"model": models.most_common(1)[0][0] if models else embeddings.MODEL_NAME,
                      "dimension": embeddings.DIMENSION},
        "chunking": {"size": settings.CHUNK_SIZE, "overlap": settings.CHUNK_OVERLAP},
        "collection": {"name": collection.name, "description": collection.description},
        "documents": described,
    }
    target = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # larger archives are written to disk
    archive.write(target, manifest, files, _chunk_rows(current, ready))
    target.seek(0)
    return target, collection


def _chunk_rows(current, ready: dict[int, int]):
    """(document index, its current chunks as archive rows), read a few thousand chunks at a time."""
    rows = current.order_by("document_id", "position").values_list("document_id", "vector", *CHUNK_FIELDS)
    for document_id, group in groupby(rows.iterator(chunk_size=2000), key=lambda row: row[0]):
        if document_id not in ready:  # READY since the documents were listed: not in this archive
            continue
        yield ready[document_id], [{**dict(zip(CHUNK_FIELDS, row[2:])), "vector": archive.vector_to_text(bytes(row[1]))}
                                   for row in group]


def _refuse(code: str, message: str):
    return ValidationError({"file": ValidationError(message, code=DocumentErrorCode(code))})


def import_collection(user, upload, *, name: str | None = None) -> Collection:
    """A new collection of ``user`` from an archive; refused whole when anything in it is wrong."""
    from backend.quotas.services import check_upload

    require_user(user)
    if upload.size > settings.KB_ARCHIVE_MAX_BYTES:
        raise _refuse("ARCHIVE_TOO_LARGE", f"This archive is larger than {settings.KB_ARCHIVE_MAX_BYTES >> 20} MB.")
    try:
        found = archive.read(upload, max_bytes=settings.KB_ARCHIVE_MAX_BYTES,
                             file_types=set(Document.FileType.values))
    except archive.ArchiveError as exc:
        raise _refuse(exc.code, exc.message)
    manifest = found.manifest
    embedder = embeddings.get_embedder()
    same_model = (manifest["embedding"]["model"] == embedder.name
                  and manifest["embedding"]["dimension"] == embeddings.DIMENSION)
    shas = {v["sha256"]: v["size"] for d in manifest["documents"] for v in d["versions"]}
    check_upload(user, sum(shas.values()))
    collection = Collection(owner=user, name=clean_name(name or manifest["collection"]["name"]),
                            description=str(manifest["collection"].get("description") or "")[:5000], importing=True)
    stored: dict[str, str] = {}
    try:
        for sha256 in shas:
            stored[sha256] = store_file(collection, found.file(sha256))
        collection.save()
        indexed, to_read = _create_documents(user, collection, found, stored, same_model)
        with transaction.atomic():  # shown, whole, in one moment
            Collection.objects.filter(pk=collection.pk).update(
                importing=False, **({"index_version": F("index_version") + 1} if indexed else {}))
            for pk in to_read:
                ingest.enqueue(pk)
    except Exception:
        discard(collection, list(stored.values()))
        raise
    collection.importing = False
    return collection


def discard(collection: Collection, files: list[str]) -> None:
    """Remove an import that did not finish: its collection (if it was made) and the files it stored."""
    if collection.pk is None:
        remove_files(files)
    else:
        purge(collection, files)


def _batches(found: archive.Archive, same_model: bool):
    """The archive's documents with their chunk rows, in groups of about IMPORT_BATCH chunks."""
    batch, size = [], 0
    for index, entry in enumerate(found.manifest["documents"]):
        rows = found.chunks(index) if same_model and entry.get("ready") else []
        batch.append((entry, rows))
        size += len(rows) + 1
        if size >= IMPORT_BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _create_documents(user, collection: Collection, found: archive.Archive, stored: dict[str, str],
                      same_model: bool) -> tuple[bool, list[int]]:
    """The documents, a batch per transaction (a large archive never holds SQLite's one write lock
    for long); returns (whether any vectors came with them, the documents left to read and embed)."""
    dimension, indexed, to_read = found.manifest["embedding"]["dimension"], False, []
    for batch in _batches(found, same_model):
        with transaction.atomic():
            for entry, rows in batch:
                document = _create_document(user, collection, entry, rows, stored, dimension)
                indexed |= bool(rows)
                if not rows:  # another embedding model, or not READY where it came from
                    to_read.append(document.pk)
            Collection.objects.filter(pk=collection.pk).update(updated_at=timezone.now())  # alive, for the sweep
        let_other_writers_in()
    return indexed, to_read


def _create_document(user, collection: Collection, entry: dict, rows: list[dict], stored: dict[str, str],
                     dimension: int) -> Document:
    current = next(v for v in entry["versions"] if v["number"] == entry["version"])
    document = Document.objects.create(
        collection=collection, uploaded_by=user, title=entry["title"][:300], original_name=current["original_name"],
        file_type=current["file_type"], size=current["size"], sha256=current["sha256"],
        storage_key=stored[current["sha256"]], tags=entry.get("tags") or [], metadata=entry.get("metadata") or {},
        version=entry["version"], page_count=entry.get("page_count"), word_count=entry.get("word_count"),
        status=Document.Status.READY if rows else Document.Status.PENDING, stage="ready" if rows else "queued",
        progress=100 if rows else 0, chunk_count=len(rows))
    DocumentVersion.objects.bulk_create([
        DocumentVersion(document=document, number=v["number"], original_name=v["original_name"],
                        file_type=v["file_type"], size=v["size"], sha256=v["sha256"],
                        storage_key=stored[v["sha256"]], uploaded_by=user, restored_from=v.get("restored_from"),
                        chunk_count=len(rows) if v["number"] == entry["version"] and rows else None,
                        vectors_embedded=0 if v["number"] == entry["version"] and rows else None,
                        vectors_reused=len(rows) if v["number"] == entry["version"] and rows else None)
        for v in entry["versions"]])
    if rows:
        built = [Chunk(document=document, collection=collection, version=entry["version"],
                       vector=archive.vector_from_text(row["vector"], dimension),
                       **{name: row.get(name) for name in CHUNK_FIELDS if name in row})
                 for row in rows]
        engines.engine().create_chunks(collection.pk, built, np.vstack([embeddings.from_bytes(bytes(c.vector))
                                                                        for c in built]))
    return document


def abandoned():
    """Collections whose import stopped midway: hidden, silent for IMPORT_STALE_AFTER s."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER)
    return Collection.objects.filter(importing=True, updated_at__lt=cutoff)


def abandoned_imports() -> int:
    """Remove the collections whose import stopped midway (its process died): hidden, and silent
    for IMPORT_STALE_AFTER seconds. With them go the files their import stored: all of them are
    in the collection's own folder (``store_file``), and a hidden collection's documents never moved."""
    removed = 0
    for collection in abandoned():
        folder = collection_folder(collection)
        try:
            keys = [f"{folder}/{name}" for name in default_storage.listdir(folder)[1]]
        except FileNotFoundError:
            keys = []
        discard(collection, keys)
        removed += 1
    return removed
