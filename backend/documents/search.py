"""Search over the collections a user may read: the adapter between the documents app and
``backend.rag.retrieval`` (visibility becomes a ``Filter``; hits are loaded as chunks)."""

import time
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError

from backend.core import metrics
from backend.core.errors import NotFound
from backend.core.scoping import require_user
from backend.core.throttle import throttle
from backend.rag import retrieval

from . import engines, passages
from .models import Chunk, Collection, Document
from .codes import DocumentErrorCode


@dataclass
class SearchFilters:
    file_types: list[str] | None = None
    tags: list[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    document_ids: list[int] | None = None


@dataclass
class Hit:
    chunk: Chunk
    score: float

    @property
    def document(self) -> Document:
        return self.chunk.document


def search(user, query: str, *, collection_ids=None, k: int = retrieval.DEFAULTS["k"],
           threshold: float = retrieval.SEARCH_THRESHOLD,
           filters: SearchFilters | None = None, strategy: str = retrieval.DEFAULTS["strategy"]) -> list[Hit]:
    """Passages from the collections ``user`` may read, best first.

    ``strategy``: dense (vectors), bm25 (keywords), hybrid (both, scores fused) or multi_query
    (several phrasings, ranks fused). Filters apply inside the engines, before the top k.
    Every hit's score is its cosine similarity to the query, and ``threshold`` applies to it
    whatever the strategy.
    """
    import numpy as np

    from backend.rag.embeddings import embed_query_soon, from_bytes

    require_user(user)
    query = (query or "").strip()
    if not query:
        raise ValidationError({"query": ValidationError("Type something to search for.", code=DocumentErrorCode.REQUIRED)})
    if len(query) > 2000:
        raise ValidationError({"query": ValidationError("At most 2000 characters.", code=DocumentErrorCode.TOO_LONG)})
    if not 1 <= k <= 100:
        raise ValidationError({"k": ValidationError("Between 1 and 100.", code=DocumentErrorCode.OUT_OF_RANGE)})
    if not -1.0 <= threshold <= 1.0:
        raise ValidationError({"threshold": ValidationError("Between -1 and 1.", code=DocumentErrorCode.OUT_OF_RANGE)})
    if strategy not in retrieval.STRATEGIES:
        raise ValidationError({"strategy": ValidationError(f"One of {', '.join(retrieval.STRATEGIES)}.",
                                                           code=DocumentErrorCode.INVALID_CHOICE)})
    # The query is embedded on another thread while the database answers (visible collections,
    # keyword search); the vector is taken where it is first needed.
    pending = embed_query_soon(query)
    # No ordering wanted of either query (hits follow the ranking): compiling ORDER BY was an
    # eighth of the ORM's time on this path.
    collections = list(Collection.objects.visible_to(user).only("pk", "index_version").order_by())
    if collection_ids:
        wanted = {str(c) for c in collection_ids}
        collections = [c for c in collections if str(c.pk) in wanted]
        if len(collections) != len(wanted):
            raise NotFound("No such collection.")
    if not collections:
        return []
    started = time.perf_counter()
    where = where_for(collections, filters)
    # Fused rankings and a score threshold cut the list after ranking: ask for more than k.
    fetch = k if strategy == "dense" and threshold <= -1.0 else max(k * 4, 20)
    ranked = engines.retriever().rank(strategy, query, pending.result, where, fetch)
    query_vector = pending.result()
    hits = []
    # The best k first, the rest of the ranking only if some of them are gone or under the
    # threshold: most searches load k rows, not the 4k fetched for fusion.
    for part in (ranked[:k], ranked[k:]):
        if not part:
            continue
        chunks = passages.load(part, where.collection_ids)
        for cid in part:
            chunk = chunks.get(cid)
            if chunk is None:
                continue
            score = float(np.dot(from_bytes(bytes(chunk.vector)), query_vector))
            if score < threshold:
                continue
            hits.append(Hit(chunk, score))
            if len(hits) == k:
                break
        if len(hits) == k:
            break
    metrics.SEARCH.labels(strategy).observe(time.perf_counter() - started)
    return hits


def search_documents(user, query: str, **options) -> list[Hit]:
    """``search`` as the searchDocuments operation asks it: throttled per account."""
    require_user(user)
    throttle("search", f"user:{user.pk}", "Too many searches.")
    return search(user, query, **options)


def where_for(collections, filters: SearchFilters | None) -> retrieval.Filter:
    f = filters or SearchFilters()
    return retrieval.Filter(
        collection_ids=tuple(c.pk for c in collections), versions=tuple(c.index_version for c in collections),
        file_types=tuple(f.file_types or ()), tags=tuple(sorted({t.strip().lower() for t in f.tags or ()})),
        created_after=f.created_after, created_before=f.created_before, document_ids=tuple(f.document_ids or ()))
