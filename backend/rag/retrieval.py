"""Retrieval: the index interfaces and the strategies written once over them.

An engine supplies a ``VectorIndex`` (dense search over chunk vectors) and a ``KeywordIndex``
(full-text search); both take a ``Filter`` and apply it *before* the top k, so a selective filter
still returns k hits whenever k exist. The strategies only combine rankings: dense, keyword
(bm25), hybrid (both, by score fusion: on SciFact it beat reciprocal rank fusion, 0.728 against
0.712 nDCG@10, see bench/README.md) and multi-query (phrasings, by reciprocal rank fusion). Plain Python: the documents app adapts a database to
these interfaces and decides who may see what.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

STRATEGIES = ("dense", "bm25", "hybrid", "multi_query")
# The defaults of every RAG answer and of searchDocuments: one place.
# threshold: a RAG answer uses a passage whose cosine similarity to the question reaches it (or
# that holds most of the question's words, pipeline.relevant), and refuses without one. 0.47: on
# SciFact's held-out half it refuses 4.3% of answerable questions and answers 4.0% of off-topic
# ones (bench/refusal.py; the README says what it costs on documents of many topics per chunk).
DEFAULTS = {"strategy": "hybrid", "k": 5, "threshold": 0.47, "context_budget": 2000, "include_metadata": True}
# A search box shows the closest passages with their scores, as search engines do: no floor but
# unrelatedness (a short query such as "columns" scores well below an answerable question).
SEARCH_THRESHOLD = 0.0
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)

Ranking = list[tuple[int, float]]  # (chunk id, score), best first


@dataclass(frozen=True)
class Filter:
    """What a search may return: chunks of READY documents in ``collection_ids`` (never empty
    for a real search) that match every other field that is set."""

    collection_ids: tuple[int, ...]
    versions: tuple[int, ...] = ()  # each collection's index version, as read: keys of engines' caches
    file_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # every tag must be on the document
    created_after: datetime | None = None
    created_before: datetime | None = None
    document_ids: tuple[int, ...] = ()

    @property
    def narrows_documents(self) -> bool:
        """True when more than the collections restricts the documents."""
        return bool(self.file_types or self.tags or self.created_after or self.created_before or self.document_ids)


class VectorIndex(ABC):
    """Chunk vectors of a set of collections, searchable by inner product (vectors are unit)."""

    name: str

    @abstractmethod
    def add(self, collection_id: int, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Chunks ``ids`` of the collection now have these vectors (called in the writing transaction)."""

    @abstractmethod
    def delete(self, collection_id: int, ids: Sequence[int]) -> None:
        """These chunks are gone (called in the deleting transaction)."""

    @abstractmethod
    def search(self, vector: np.ndarray, k: int, where: Filter) -> Ranking:
        """The k chunks allowed by ``where`` nearest to ``vector``."""

    @abstractmethod
    def count(self, collection_id: int) -> int:
        """Vectors of the collection's ready chunks that the index holds."""

    @abstractmethod
    def rebuild(self, collection_id: int) -> None:
        """Rebuild whatever the index derives from the database for the collection."""


class KeywordIndex(ABC):
    """Full-text search over chunk texts, ranked by Okapi BM25 or the engine's equivalent."""

    name: str

    @abstractmethod
    def search(self, query: str, k: int, where: Filter, exact: bool = True) -> Ranking:
        """The k best chunks for ``query`` allowed by ``where``. ``exact`` False: the best among
        the chunks holding the query's rarer terms (``TermPlan``'s first pass, bounded work), where
        another ranking covers the rest (hybrid search's dense side)."""


@dataclass
class TermPlan:
    """Which query terms find the candidates of a keyword search (MaxScore, Turtle and Flood 1995).

    A chunk holding none of the ``essential`` terms scores at most ``rest_bound`` (each other
    term adds at most its idf times k1 + 1), so once the k-th best candidate scores at least
    that, no chunk outside the candidates can enter the top k: the search is exact while reading
    the postings of the rare terms only. Otherwise ``widen`` moves the rarest other terms in until
    their bound is below the k-th score found (a score the wider search can only beat), and one
    more search is exact.
    """

    essential: list[str]
    rest: list[str]
    bounds: dict[str, float]  # term -> the most it adds to a chunk's score

    @property
    def rest_bound(self) -> float:
        return sum(self.bounds[t] for t in self.rest)

    def kth(self, scores: Sequence[float], k: int) -> float | None:
        """The k-th best score, or None when there are fewer than k."""
        return sorted(scores, reverse=True)[k - 1] if len(scores) >= k else None

    def exact(self, scores: Sequence[float], k: int) -> bool:
        kth = self.kth(scores, k)
        return not self.rest or (kth is not None and kth >= self.rest_bound)

    def widen(self, scores: Sequence[float], k: int) -> "TermPlan":
        kth = self.kth(scores, k) or 0.0
        essential, rest = list(self.essential), list(self.rest)
        while rest and sum(self.bounds[t] for t in rest) > kth:
            essential.append(rest.pop(0))
        return TermPlan(essential, rest, self.bounds)


def plan_terms(df: dict[str, int], idf: Callable[[int], float], budget: int, k1: float = 1.2) -> TermPlan:
    """Rarest terms first, as long as their postings add up to at most ``budget`` (at least one);
    terms no chunk holds are dropped."""
    present = sorted((t for t in df if df[t] > 0), key=lambda t: (df[t], t))
    essential, total = [], 0
    for term in present:
        if essential and total + df[term] > budget:
            break
        essential.append(term)
        total += df[term]
    return TermPlan(essential, present[len(essential):], {t: idf(df[t]) * (k1 + 1) for t in present})


def score_fusion(rankings: Sequence[Ranking], weights: Sequence[float] | None = None) -> Ranking:
    """Convex combination of min-max normalised scores (Bruch, Gai and Ingber, "An Analysis of
    Fusion Functions for Hybrid Retrieval", ACM TOIS 2023): unlike reciprocal rank fusion it keeps
    how far apart the scores are, not only their order. Equal weights unless given. An item
    missing from a ranking gets 0 there; a ranking whose scores are all equal counts 1 for each."""
    weights = list(weights or [1.0 / len(rankings)] * len(rankings))
    fused: dict[int, float] = {}
    for weight, ranking in zip(weights, rankings):
        if not ranking:
            continue
        values = [score for _, score in ranking]
        low, high = min(values), max(values)
        for item, score in ranking:
            normalised = (score - low) / (high - low) if high > low else 1.0
            fused[item] = fused.get(item, 0.0) + weight * normalised
    return sorted(fused.items(), key=lambda item: -item[1])


def reciprocal_rank_fusion(rankings: Sequence[Ranking], k: int = RRF_K) -> Ranking:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


@dataclass
class Retriever:
    vectors: VectorIndex
    keywords: KeywordIndex
    embed_many: Callable[[list[str]], np.ndarray]  # for multi-query's extra phrasings
    variants: Callable[[str], list[str]]

    def rank(self, strategy: str, query: str, query_vector: np.ndarray | Callable[[], np.ndarray], where: Filter,
             fetch: int) -> list[int]:
        """Chunk ids for ``query`` by ``strategy``, best first, at most ``fetch`` of them.

        ``query_vector`` may be a callable that returns it (e.g. a future's ``result``, the query
        being embedded meanwhile): it is called only once the keyword search, which needs no
        vector, has run."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        vector = query_vector if callable(query_vector) else (lambda: query_vector)
        if strategy == "dense":
            ranking = self.vectors.search(vector(), fetch, where)
        elif strategy == "bm25":
            ranking = self.keywords.search(query, fetch, where)
        elif strategy == "hybrid":  # the keyword pass bounded: over a large collection, proving the
            # exact BM25 top k read every common word's postings (100k chunks: 150 ms against 49)
            keywords = self.keywords.search(query, fetch, where, exact=False)
            ranking = score_fusion([self.vectors.search(vector(), fetch, where), keywords])
        else:
            extra = self.variants(query)[1:]
            vectors = [vector(), *(self.embed_many(extra) if extra else [])]
            ranking = reciprocal_rank_fusion([self.vectors.search(v, fetch, where) for v in vectors])
        return [chunk_id for chunk_id, _ in ranking[:fetch]]
