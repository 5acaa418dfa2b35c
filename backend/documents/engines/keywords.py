"""Keyword search in the database: SQLite FTS5 or PostgreSQL full-text search, both Okapi BM25.

SQLite: FTS5's own ``bm25()`` (k1 1.2, b 0.75) over the Porter-stemmed FTS table, its document
frequencies from the FTS5 vocabulary table.
PostgreSQL: its ``ts_rank`` has no inverse document frequency, so BM25 is computed in the query,
with document frequencies per collection from a table the chunk triggers keep, and the chunk
count and mean length of the collections from a small cache keyed by their index versions. Only
the rare terms' postings are read (``retrieval.plan_terms``: exact unless a chunk with common
words only could still reach the top k, and then every term's are). Filters on documents apply
in the same query, before the top k.
"""

import math
import re
import unicodedata

from django.conf import settings
from django.db import connection

from backend.rag.providers import STOP
from backend.rag.retrieval import Filter, KeywordIndex, Ranking, plan_terms

from . import sql
from .schema import FTS_TABLE, FTS_VOCAB, STATS_TABLE, TEXT_CONFIG, TSV_COLUMN

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


def _fold(word: str) -> str:
    """As FTS5's unicode61 tokenizer (remove_diacritics 2) folds a word."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch))


class Fts5Keywords(KeywordIndex):
    """FTS5's ``bm25()``; its document frequencies are the vocabulary table's, instance-wide."""

    name = "sqlite-fts5"

    def __init__(self):
        import Stemmer

        self._stemmer = Stemmer.Stemmer("porter")  # the algorithm of FTS5's porter tokenizer

    def _frequencies(self, words: list[str]) -> dict[str, int]:
        stems = {w: self._stemmer.stemWord(_fold(w)) for w in words}
        wanted = sorted(set(stems.values()))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT term, doc FROM {FTS_VOCAB} WHERE term IN ({', '.join(['%s'] * len(wanted))})",
                           wanted)
            found = dict(cursor.fetchall())
        return {w: int(found.get(stem, 0)) for w, stem in stems.items()}

    def _query(self, match: str, where: Filter, limit: int | None) -> list[tuple[int, float]]:
        chunk, _ = sql.tables()
        clause, params = sql.where_clause(where)
        tail = "ORDER BY rank, c.id LIMIT %s" if limit else ""
        with connection.cursor() as cursor:
            # CROSS JOIN keeps the FTS table outermost: SQLite would otherwise start from the chunks
            # of the collection and run the match once per chunk (seconds instead of milliseconds).
            cursor.execute(f"SELECT c.id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} CROSS JOIN {chunk} c "
                           f"ON c.id = {FTS_TABLE}.rowid {sql.document_join(where, cross=True)} "
                           f"WHERE {FTS_TABLE} MATCH %s AND {clause} {tail}",
                           [match, *params, *([limit] if limit else [])])
            return [(int(i), -float(rank)) for i, rank in cursor.fetchall()]

    def _partial(self, match: str) -> dict[int, float]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT rowid, bm25({FTS_TABLE}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [match])
            return {int(i): -float(rank) for i, rank in cursor.fetchall()}

    def search(self, query: str, k: int, where: Filter, exact: bool = True) -> Ranking:
        words = terms(query)
        if not words or not where.collection_ids:
            return []

        def match(chosen: list[str]) -> str:
            return " OR ".join(f'"{w}"' for w in chosen)

        df = self._frequencies(words)
        chunk, _ = sql.tables()
        with connection.cursor() as cursor:  # at least FTS5's row count: idf bounds err upwards
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {chunk}")
            rows = cursor.fetchone()[0]

        def idf(f: int) -> float:  # FTS5's own
            return max(math.log((rows - f + 0.5) / (f + 0.5)), 1e-6)

        plan = plan_terms(df, idf, settings.KEYWORD_CANDIDATE_BUDGET, K1)
        unknown = [w for w in words if not df[w]]  # a stem not found as we spell it: FTS5 finds it
        every = match(plan.essential + plan.rest + unknown)
        found = self._candidates(match(plan.essential + unknown), every, where, k) if plan.rest else []
        if plan.rest and exact and not plan.exact([score for _, score in found], k):
            plan = plan.widen([score for _, score in found], k)
            found = self._candidates(match(plan.essential + unknown), every, where, k) if plan.rest else []
        if not plan.rest:
            return self._query(every, where, k) if plan.essential or unknown else []
        return found

    def _candidates(self, essential: str, every: str, where: Filter, k: int) -> Ranking:
        """Chunks holding an essential term, scored over every term. bm25() adds one term per
        phrase: over "E AND (E OR R)" it counts E twice, so the score of E and R together is that
        minus the score over E alone (exact, to the last bit)."""
        partial = self._partial(essential)
        combined = self._query(f"({essential}) AND ({every})", where, None)
        return sorted(((i, score - partial.get(i, 0.0)) for i, score in combined),
                      key=lambda item: (-item[1], item[0]))[:k]


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
            clause, params = sql.in_clause("collection_id", missing)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT collection_id, count(*), coalesce(sum(token_count), 0) FROM {chunk} "
                               f"WHERE {clause} AND NOT superseded GROUP BY collection_id", params)
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

    def _frequencies(self, query: str, where: Filter) -> dict[str, int]:
        """The query's lexemes (PostgreSQL's english stemmer) and how many chunks of the
        collections hold each (from the statistics table the triggers keep)."""
        collections, params = sql.collections_clause(where, alias="s")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT t.lexeme, coalesce(sum(s.df), 0) FROM "
                           f"(SELECT DISTINCT lexeme FROM unnest(to_tsvector('{TEXT_CONFIG}', %s))) AS t "
                           f"LEFT JOIN {STATS_TABLE} s ON s.lexeme = t.lexeme AND {collections} GROUP BY t.lexeme",
                           [query, *params])
            return {lexeme: int(df) for lexeme, df in cursor.fetchall()[:MAX_TERMS]}

    def _score(self, essential: list[str], idfs: dict[str, float], avgdl: float, k: int, where: Filter) -> Ranking:
        """BM25 of the chunks holding an essential term: every term's idf, presence first, then
        exact term frequencies for the best 4k."""
        chunk, _ = sql.tables()
        clause, params = sql.where_clause(where)
        norm = f"{K1 + 1} / (1 + {K1} * ({1 - B} + {B} * cand.len / %(avgdl)s))"
        with connection.cursor() as cursor:
            cursor.execute(
                f"""WITH terms AS (
                      SELECT t.lexeme, t.idf, quote_literal(t.lexeme)::tsquery AS tq
                      FROM unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS t(lexeme, idf)),
                    cand AS MATERIALIZED (
                      SELECT c.id, c.token_count AS len, c.{TSV_COLUMN} AS v
                      FROM {chunk} c {sql.document_join(where)}
                      WHERE {clause % tuple(f"%(p{i})s" for i in range(len(params)))} AND c.{TSV_COLUMN} @@
                        (SELECT string_agg(quote_literal(x), ' | ')::tsquery FROM unnest(%(essential)s::text[]) AS x)),
                    rough AS (
                      SELECT cand.id, sum(terms.idf * {norm}) AS score FROM cand JOIN terms ON cand.v @@ terms.tq
                      GROUP BY cand.id ORDER BY score DESC, cand.id LIMIT %(rough)s)
                    SELECT c.id, sum(terms.idf * u.tf * {K1 + 1}
                                     / (u.tf + {K1} * ({1 - B} + {B} * c.token_count / %(avgdl)s))) AS score
                    FROM rough JOIN {chunk} c ON c.id = rough.id,
                         LATERAL (SELECT lexeme, greatest(coalesce(cardinality(positions), 1), 1) AS tf
                                  FROM unnest(c.{TSV_COLUMN})) AS u JOIN terms ON terms.lexeme = u.lexeme
                    GROUP BY c.id ORDER BY score DESC, c.id LIMIT %(k)s""",
                {"lexemes": list(idfs), "idfs": list(idfs.values()), "essential": essential, "avgdl": avgdl,
                 "rough": 4 * k, "k": k, **{f"p{i}": value for i, value in enumerate(params)}})
            return [(int(i), float(score)) for i, score in cursor.fetchall()]

    def search(self, query: str, k: int, where: Filter, exact: bool = True) -> Ranking:
        if not terms(query) or not where.collection_ids:
            return []
        n, avgdl = self._corpus(where)
        if not n:
            return []
        df = self._frequencies(query, where)

        def idf(f: int) -> float:
            return math.log(1 + (n - f + 0.5) / (f + 0.5))

        plan = plan_terms(df, idf, settings.KEYWORD_CANDIDATE_BUDGET, K1)
        if not plan.essential:
            return []
        idfs = {t: idf(df[t]) for t in plan.essential + plan.rest}
        found = self._score(plan.essential, idfs, avgdl, k, where)
        if exact and not plan.exact([score for _, score in found], k):
            found = self._score(plan.widen([score for _, score in found], k).essential, idfs, avgdl, k, where)
        return found
