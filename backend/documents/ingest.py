"""The ingestion task: extract -> chunk -> embed -> save chunks and vectors (one transaction).

Idempotent: a run starts only with the document's lease (``recovery.claim``), so a READY document
or one another live run holds is left alone, and a half-done one starts over (its chunks are
replaced in one transaction). Each stage is announced to the collection's subscribers as it
starts and written to the row at most every INGEST_PROGRESS_WRITE_INTERVAL (see ``_set``); the end
is always written, then announced. Whatever goes wrong ends the document FAILED with a code, never
PROCESSING.
"""

import hashlib
import logging
import time

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backend.core.tasks import stopping, task
from backend.rag import chunking, embeddings, loaders, ocr
from backend.rag.parsing import extract_with_timeout

from . import engines, recovery, vectors
from .models import Chunk, Collection, Document, DocumentVersion
from .events import publish_document_event
from .codes import DocumentErrorCode

logger = logging.getLogger(__name__)

FAILURE_HINT = "If the problem persists, try another copy of the file."


def _set(document: Document, *, write: bool = False, **fields) -> None:
    """Change the document's state: told to its collection's subscribers at once, written to its
    row when ``write`` or once INGEST_PROGRESS_WRITE_INTERVAL has passed since the run's last write.

    A short document goes through five stages in a few tens of milliseconds; a write for each was
    a turn of SQLite's one write lock (contended by the other ingestions and the uploads) for a
    state that the next write replaces. A write carries every change not written yet, and the
    run's end (READY or FAILED) is always written."""
    for name, value in fields.items():
        setattr(document, name, value)
    unwritten = document.__dict__.setdefault("_unwritten", {})
    unwritten.update(fields)
    now = time.monotonic()
    if not write and now - document.__dict__.get("_written_at", 0.0) < settings.INGEST_PROGRESS_WRITE_INTERVAL:
        publish_document_event(document)
        return
    with transaction.atomic():
        stamp = timezone.now()
        updated = Document.objects.filter(pk=document.pk).update(**unwritten, updated_at=stamp, heartbeat_at=stamp)
        unwritten.clear()
        document._written_at = now
        if updated:
            publish_document_event(document)


def fail(document: Document, code: str, message: str) -> None:
    _set(document, status=Document.Status.FAILED, stage="failed", error_code=code, error_message=message,
         processed_at=timezone.now(), write=True)


def _known(hashes, model: str) -> dict[str, bytes]:
    """Vectors stored for these texts (any chunk, any document: the same text, the same vector)."""
    found = Chunk.objects.filter(text_hash__in=set(hashes), embedding_model=model).values_list("text_hash", "vector")
    return {h: bytes(v) for h, v in found}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Ahead:
    """Vectors of a long PDF's chunks embedded while its later pages are still read
    (``extract_with_timeout``'s ``on_pages``): the chunks of the pages so far but the last two
    (they may still grow). The chunking of the whole text at the end cuts the same texts, and
    ``_embed`` takes their vectors; a text cut otherwise is only work lost, never a wrong vector."""

    OPEN = 2

    def __init__(self, document: Document):
        self.document = document
        self.vectors: dict[str, bytes] = {}
        self.embedded: set[str] = set()  # the hashes of vectors computed here (not found stored)

    def __call__(self, pages: list[tuple[int, str]], total: int) -> None:
        if sum(len(text) for _, text in pages) <= settings.DOCUMENT_MAX_CHARS:  # else it fails when read
            pieces = chunking.chunk(loaders.Extracted(loaders.PDF, pages), size=settings.CHUNK_SIZE,
                                    overlap=settings.CHUNK_OVERLAP)[:-self.OPEN]
            texts = {h: p.text for h, p in ((_hash(p.text), p) for p in pieces) if h not in self.vectors}
            embedder = embeddings.get_embedder()
            self.vectors.update(_known(texts, embedder.name))
            todo = [(h, t) for h, t in texts.items() if h not in self.vectors]
            if todo:
                for (h, _), vector in zip(todo, embedder.embed_documents([t for _, t in todo])):
                    self.vectors[h] = embeddings.to_bytes(vector)
                    self.embedded.add(h)
        _set(self.document, progress=5 + int(20 * pages[-1][0] / max(1, total)))


def _embed(texts: list[str], document: Document, ahead: _Ahead | None = None) -> tuple[list[bytes], int]:
    """Vectors for ``texts``, and how many were embedded in this run: text seen before (in this
    run, in any earlier chunk, an earlier version of this document's included) reuses its vector."""
    embedder = embeddings.get_embedder()
    hashes = [_hash(t) for t in texts]
    early = ahead.vectors if ahead is not None else {}
    known = {**_known([h for h in hashes if h not in early], embedder.name), **early}
    todo = []
    for h, t in zip(hashes, texts):
        if h not in known and h not in {x for x, _ in todo}:
            todo.append((h, t))
    batch = max(128, settings.EMBEDDING_BATCH_SIZE * 8)  # the embedder splits it further; progress in between
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        matrix = embedder.embed_documents([t for _, t in part])
        for (h, _), vector in zip(part, matrix):
            known[h] = embeddings.to_bytes(vector)
        done = min(len(todo), start + batch)
        _set(document, progress=40 + int(50 * done / max(1, len(todo))))
    ahead_used = len({h for h in hashes if ahead is not None and h in ahead.embedded})
    return [known[h] for h in hashes], len(todo) + ahead_used


def ocr_options() -> ocr.OcrOptions | None:
    """OCR's settings, or None where it is off or cannot run here (Tesseract or its data missing)."""
    if not settings.OCR_ENABLED or ocr.unavailable(settings.OCR_LANGUAGES):
        return None
    return ocr.OcrOptions(languages=settings.OCR_LANGUAGES, max_pages=settings.OCR_MAX_PAGES,
                          page_timeout=settings.OCR_PAGE_TIMEOUT, time_budget=settings.OCR_TIME_BUDGET,
                          dpi=settings.OCR_DPI, workers=settings.OCR_WORKERS)


@task("documents.ingest")
def ingest(document_id: int) -> None:
    document = recovery.claim(document_id)
    if document is None:
        return  # finished, deleted, or in the hands of a live run
    document._written_at = time.monotonic()  # the claim wrote the row
    publish_document_event(document)
    try:
        with recovery.heartbeat(document.pk):
            _process(document)
    except Exception:  # an unexpected error must not leave the document PROCESSING
        if stopping():  # the server is stopping, not the file broken: the next start takes it up
            recovery.release(document.pk)
            logger.warning("ingestion of document %s stopped with the process; it resumes at the next start",
                           document_id)
            return
        logger.exception("ingestion of document %s failed", document_id)
        fail(document, DocumentErrorCode.INTERNAL, f"Something went wrong while processing this file. {FAILURE_HINT}")
        return


def _process(document: Document) -> None:
    try:
        with default_storage.open(document.storage_key, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError):
        fail(document, DocumentErrorCode.FILE_MISSING, "The uploaded file is missing from storage. Upload it again.")
        return
    ahead = _Ahead(document)  # a long PDF's chunks are embedded while its later pages are read
    try:
        extracted = extract_with_timeout(data, document.file_type, timeout=settings.DOCUMENT_PARSE_TIMEOUT,
                                         max_pages=settings.DOCUMENT_MAX_PAGES, max_chars=settings.DOCUMENT_MAX_CHARS,
                                         memory_mb=settings.DOCUMENT_PARSE_MEMORY_MB, ocr=ocr_options(),
                                         progress=lambda done, total: _set(
                                             document, stage="ocr", progress=5 + int(20 * done / total)),
                                         on_pages=ahead)
    except loaders.ExtractionError as exc:
        fail(document, exc.code, exc.message)
        return
    _set(document, stage="chunking", progress=30, page_count=extracted.page_count,
         word_count=len(extracted.text.split()), metadata=extracted.metadata)
    pieces = chunking.chunk(extracted, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP)
    _set(document, stage="embedding", progress=40)
    blobs, embedded = _embed([p.text for p in pieces], document, ahead)
    _set(document, stage="indexing", progress=95)
    model = embeddings.get_embedder().name
    version = document.version
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document.pk).values_list("version", flat=True).first()
        if current != version:
            return  # deleted while we worked, or a newer version arrived (its own run follows)
        Chunk.objects.filter(document=document, version=version).delete()  # a retried run of this version
        earlier = list(Chunk.objects.filter(document=document, superseded=False).values_list("pk", flat=True))
        if earlier:  # kept for the answers that cite them, never searched again
            Chunk.objects.filter(pk__in=earlier).update(superseded=True)
            engines.engine().vectors.delete(document.collection_id, earlier)
        matrix = (np.vstack([embeddings.from_bytes(blob) for blob in blobs]) if blobs
                  else np.zeros((0, embeddings.DIMENSION), dtype=np.float32))
        created = engines.engine().create_chunks(document.collection_id, [
            Chunk(document=document, collection_id=document.collection_id, position=p.position, text=p.text,
                  text_hash=_hash(p.text), page_start=p.page_start,
                  page_end=p.page_end, char_start=p.char_start, char_end=p.char_end,
                  token_count=p.token_count, section=p.section[:500], vector=blob, embedding_model=model,
                  version=version)
            for p, blob in zip(pieces, blobs)
        ], matrix)
        DocumentVersion.objects.filter(document=document, number=version).update(
            chunk_count=len(created), vectors_embedded=embedded, vectors_reused=len(created) - embedded)
        Collection.objects.filter(pk=document.collection_id).update(index_version=F("index_version") + 1)
        _set(document, status=Document.Status.READY, stage="ready", progress=100, chunk_count=len(created),
             processed_at=timezone.now(), write=True)
    logger.info("document %s ingested: %d pages, %d chunks", document.pk, extracted.page_count, len(created),
                extra={"document_id": document.pk, "file_type": document.file_type})


@task("documents.sync_index")
def sync_index(collection_id: int) -> None:
    """Idempotent: brings the collection's FAISS file to the database's version (FAISS engine)."""
    vectors.run_scheduled_sync(collection_id)
