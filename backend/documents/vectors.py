"""The bridge between the database (the source of truth for vectors) and the FAISS files.

Each collection has one index file stamped with ``Collection.index_version``. A change to a
collection's vectors bumps that version in its own transaction; after commit the file is brought
up to date: by applying the difference between the ids in the file and the ready chunks in the
database when it is small, or by a rebuild. Ingestion schedules that sync once for a burst of
documents (``schedule_sync``), so a bulk upload writes the file a few times, not once per file.
A search loads the file lazily and syncs it first when it is missing, stale or corrupt.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from django.conf import settings

from backend.rag.embeddings import DIMENSION, MODEL_NAME, from_bytes
from backend.rag.index import FaissStore

from .models import Chunk, Collection

# Beyond this many changed vectors a rebuild (one sequential read) beats a diff.
MAX_DIFF = 20_000

_stores: dict[str, FaissStore] = {}


def store() -> FaissStore:
    directory = settings.INDEX_DIR or str(Path(settings.DATA_DIR) / "indexes")
    key = f"{directory}|{settings.FAISS_HNSW_MIN_VECTORS}|{settings.FAISS_EF_SEARCH}"
    if key not in _stores:
        _stores[key] = FaissStore(directory, hnsw_min_vectors=settings.FAISS_HNSW_MIN_VECTORS,
                                  ef_search=settings.FAISS_EF_SEARCH)
    return _stores[key]


def key_for(collection: Collection) -> str:
    return f"collection-{collection.uid.hex}"


class _IndexFiles:
    """Looks like a storage to the account-deletion code: ``delete(key)`` drops an index."""

    def delete(self, key: str) -> None:
        store().delete(key)


index_files = _IndexFiles()


def drop(key: str) -> None:
    store().delete(key)


def vectors_of(queryset) -> tuple[np.ndarray, np.ndarray]:
    rows = list(queryset.values_list("pk", "vector"))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, DIMENSION), dtype=np.float32)
    ids = np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows))
    matrix = np.vstack([from_bytes(bytes(blob)) for _, blob in rows])
    return ids, matrix


def _searchable_chunks(collection_id: int):
    return Chunk.objects.filter(collection_id=collection_id, superseded=False)  # what search sees


def rebuild(collection_id: int):
    collection = Collection.objects.get(pk=collection_id)
    st = store()
    key = key_for(collection)
    with st.writing(key):
        # Read the version first: the chunks read next are at least as new as it.
        version = Collection.objects.values_list("index_version", flat=True).get(pk=collection_id)
        ids, matrix = vectors_of(_searchable_chunks(collection_id))
        return st.build(key, version, ids, matrix, model=MODEL_NAME, dimension=DIMENSION)


def _current(collection_id: int) -> tuple[Collection, int] | None:
    collection = Collection.objects.filter(pk=collection_id).first()
    return (collection, collection.index_version) if collection else None


def sync(collection_id: int) -> None:
    """Bring the file to the database's version, by applying the difference or by a rebuild."""
    current = _current(collection_id)
    if current is None:
        return
    collection, version = current
    st = store()
    key = key_for(collection)
    with st.writing(key):
        info = st.info(key)
        if info is not None and info.version == version:
            return
        # A file ahead of the database (a restored backup, a hand-edited header) is not to be
        # trusted: rebuilt, as a missing or corrupt one is.
        found = st.load(key, info.version) if info is not None and info.version < version else None
        if found is not None:
            import faiss

            have = set(faiss.vector_to_array(found[0].id_map).tolist())
            want = set(_searchable_chunks(collection_id).values_list("pk", flat=True))
            add, remove = sorted(want - have), sorted(have - want)
            if len(add) + len(remove) <= MAX_DIFF:
                parts = [vectors_of(_searchable_chunks(collection_id).filter(pk__in=add[i:i + 5000]))
                         for i in range(0, len(add), 5000)]
                ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
                matrix = (np.concatenate([p[1] for p in parts]) if parts
                          else np.zeros((0, DIMENSION), dtype=np.float32))
                if st.update(key, info.version, version, add_ids=ids, add_vectors=matrix,
                             remove_ids=np.asarray(remove, dtype=np.int64)):
                    return
    rebuild(collection_id)


def _sync_key(collection_id: int) -> str:
    return f"index-sync:{collection_id}"


def schedule_sync(collection_id: int) -> None:
    """Sync the collection's file soon, once for however many changes land before it runs."""
    from django.core.cache import cache

    if cache.add(_sync_key(collection_id), 1, timeout=600):
        from .ingest import sync_index  # ingest uses this module

        sync_index.enqueue(collection_id)


def run_scheduled_sync(collection_id: int) -> None:
    from django.core.cache import cache

    cache.delete(_sync_key(collection_id))  # changes committed from now on schedule another sync
    sync(collection_id)


def index_for(collection: Collection):
    """The collection's FAISS index at its version as read with ``collection`` (this request's
    view of the database: one query fewer per collection and search), rebuilt if need be."""
    version = collection.index_version
    found = store().load(key_for(collection), version)
    if found is None:
        sync(collection.pk)
        found = store().load(key_for(collection), version) or store()._read(key_for(collection))
    return found[0] if found else None


@dataclass
class Stats:
    collection: Collection
    vectors: int
    dimension: int
    model: str
    bytes_on_disk: int
    built_at: datetime | None
    version: int
    stale: bool


def stats(collection: Collection) -> Stats:
    info = store().info(key_for(collection))
    version = Collection.objects.values_list("index_version", flat=True).get(pk=collection.pk)
    if info is None:
        return Stats(collection, 0, DIMENSION, MODEL_NAME, 0, None, version, True)
    return Stats(collection, info.vectors, info.dimension, info.model, info.bytes_on_disk,
                 datetime.fromtimestamp(info.built_at, tz=timezone.utc), info.version, info.version != version)
