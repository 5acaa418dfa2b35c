"""The embedded vector engine: one FAISS file per collection (``vectors.py``), a cache of the
database's vectors. Changes are applied to the files after commit; a filter narrower than the
collections becomes the list of chunk ids the search may return (``sql.allowed_chunks``)."""

import logging

import numpy as np
from django.db import transaction

from backend.rag.retrieval import Filter, Ranking, VectorIndex

from .. import vectors
from ..models import Collection
from . import sql

logger = logging.getLogger(__name__)


def _sync_after_commit(collection_id: int) -> None:
    def schedule():
        try:
            vectors.schedule_sync(collection_id)
        except Exception:  # the file is a cache: the next search brings it up to date
            logger.exception("could not schedule the index update of collection %s", collection_id)

    transaction.on_commit(schedule)


class FaissVectors(VectorIndex):
    name = "faiss"

    def __init__(self):
        self._uids: dict[int, object] = {}  # collection id -> uid (names its file; never changes)

    def add(self, collection_id: int, ids, matrix) -> None:
        _sync_after_commit(collection_id)

    def insert_chunks(self, collection_id: int, chunks: list, matrix) -> list:
        """The rows, then their vectors into the collection's file after commit."""
        from ..models import Chunk

        created = Chunk.objects.bulk_create(chunks)
        if created:
            self.add(collection_id, [c.pk for c in created], matrix)
        return created

    def delete(self, collection_id: int, ids) -> None:
        _sync_after_commit(collection_id)

    def _collections(self, where: Filter) -> list[Collection]:
        """The collections at the versions the search read (no query once their uids are known)."""
        ids = where.collection_ids
        missing = [pk for pk in ids if pk not in self._uids]
        if missing:
            self._uids.update(Collection.objects.filter(pk__in=missing).values_list("pk", "uid"))
        versions = (dict(zip(ids, where.versions)) if where.versions
                    else dict(Collection.objects.filter(pk__in=ids).values_list("pk", "index_version")))
        return [Collection(pk=pk, uid=self._uids[pk], index_version=versions[pk])
                for pk in ids if pk in self._uids and pk in versions]

    def search(self, vector: np.ndarray, k: int, where: Filter) -> Ranking:
        allowed = sql.allowed_chunks(where) if where.narrows_documents else None
        found: Ranking = []
        for collection in self._collections(where):
            if allowed is not None and collection.pk not in allowed:
                continue
            subset = allowed[collection.pk] if allowed is not None else None
            index = vectors.index_for(collection)
            if index is not None:  # None: the collection was deleted meanwhile
                found += vectors.store().search(index, vector, k, subset)
        return sorted(found, key=lambda item: -item[1])[:k]

    def count(self, collection_id: int) -> int:
        index = vectors.index_for(Collection.objects.get(pk=collection_id))
        return int(index.ntotal) if index is not None else 0

    def rebuild(self, collection_id: int) -> None:
        vectors.rebuild(collection_id)

    def stats(self, collection: Collection) -> vectors.Stats:
        return vectors.stats(collection)
