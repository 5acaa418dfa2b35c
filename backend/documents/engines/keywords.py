"""Keyword search in the database: SQLite FTS5 or PostgreSQL full-text search, both Okapi BM25.

SQLite: FTS5's own ``bm25()`` (k1 1.2, b 0.75) over the Porter-stemmed FTS table.
PostgreSQL: its ``ts_rank`` has no inverse document frequency, so BM25 is computed in the query:
the GIN index finds the chunks of the allowed collections holding any query term (a superset of
every term's postings there, so the document frequencies are exact), and the chunk count and mean
length of those collections come from a small cache keyed by their index versions. Filters on
documents apply in the same query, before the top k.
"""

import re

from django.db import connection

from backend.rag.providers import STOP
from backend.rag.retrieval import Filter, KeywordIndex, Ranking

from . import sql
from .schema import FTS_TABLE, TEXT_CONFIG, TSV_COLUMN

K1, B = 1.2, 0.75
WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 64


def terms(query: str) -> list[str]:
    """The query's distinct words without stop words (FTS5's tokenizer splits the same way)."""
    seen: list[str] = []
    for word in WORD.findall(query.lower()):
        if word not in STOP and word not in seen:
            seen.append(word)
    return seen[:MAX_TERMS]


class Fts5Keywords(KeywordIndex):
    name = "sqlite-fts5"

    def search(self, query: str, k: int, where: Filter) -> Ranking:
        words = terms(query)
        if not words or not where.collection_ids:
            return []
        chunk, document = sql.tables()
        clause, params = sql.where_clause(where)
        match = " OR ".join(f'"{w}"' for w in words)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT c.id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} "
                           f"JOIN {chunk} c ON c.id = {FTS_TABLE}.rowid JOIN {document} d ON d.id = c.document_id "
                           f"WHERE {FTS_TABLE} MATCH %s AND {clause} ORDER BY rank LIMIT %s", [match, *params, k])
            return [(int(i), -float(rank)) for i, rank in cursor.fetchall()]


class PgKeywords(KeywordIndex):
    name = "postgresql-fts"

    def __init__(self):
        self._stats: dict[tuple[int, int], tuple[int, int]] = {}  # (collection, version) -> (chunks, tokens)

    def _corpus(self, where: Filter) -> tuple[int, float]:
        """(chunks, mean length) of the collections, each cached at the version the search read."""
        chunk, _ = sql.tables()
        keys = list(zip(where.collection_ids, where.versions or [None] * len(where.collection_ids)))
        missing = [cid for cid, version in keys if version is None or (cid, version) not in self._stats]
        found: dict[int, tuple[int, int]] = {}
        if missing:
            clause, params = sql._in("collection_id", missing)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT collection_id, count(*), coalesce(sum(token_count), 0) FROM {chunk} "
                               f"WHERE {clause} GROUP BY collection_id", params)
                found = {cid: (n, tokens) for cid, n, tokens in cursor.fetchall()}
            if len(self._stats) > 10_000:
                self._stats.clear()
        totals = [0, 0]
        for cid, version in keys:
            value = self._stats.get((cid, version)) if cid not in missing else found.get(cid, (0, 0))
            if version is not None:
                self._stats[(cid, version)] = value
            totals[0] += value[0]
            totals[1] += value[1]
        return totals[0], (totals[1] / totals[0] if totals[0] else 1.0)

    def search(self, query: str, k: int, where: Filter) -> Ranking:
        if not terms(query) or not where.collection_ids:
            return []
        n, avgdl = self._corpus(where)
        if not n:
            return []
        chunk, document = sql.tables()
        collections, params = sql.collections_clause(where)
        documents, more = sql.documents_clause(where)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""WITH q AS (
                      SELECT array_agg(lexeme) AS lexemes, string_agg(quote_literal(lexeme), ' | ')::tsquery AS tsq
                      FROM unnest(to_tsvector('{TEXT_CONFIG}', %s))),
                    cand AS (
                      SELECT c.id, c.document_id, c.token_count AS len, c.{TSV_COLUMN} AS v FROM {chunk} c, q
                      WHERE {collections} AND c.{TSV_COLUMN} @@ q.tsq),
                    tf AS (
                      SELECT cand.id, cand.document_id, cand.len, u.lexeme,
                             greatest(coalesce(cardinality(u.positions), 1), 1) AS tf
                      FROM cand, q, unnest(cand.v) AS u WHERE u.lexeme = ANY(q.lexemes)),
                    df AS (SELECT lexeme, count(*) AS n FROM tf GROUP BY lexeme)
                    SELECT tf.id, sum(ln(1 + (%s - df.n + 0.5) / (df.n + 0.5))
                                      * tf.tf * {K1 + 1} / (tf.tf + {K1} * ({1 - B} + {B} * tf.len / %s))) AS score
                    FROM tf JOIN df USING (lexeme) JOIN {document} d ON d.id = tf.document_id
                    WHERE {documents} GROUP BY tf.id ORDER BY score DESC, tf.id LIMIT %s""",
                [query, *params, n, avgdl, *more, k])
            return [(int(i), float(score)) for i, score in cursor.fetchall()]
