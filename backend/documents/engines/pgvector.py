"""The PostgreSQL vector engine: chunk vectors in a pgvector column with an HNSW index.

Vectors are written in the transaction that writes their chunks, so every web process and worker
sees them at once and nothing lives outside the database. A search is one SQL query with every
filter in its WHERE clause: the HNSW scan runs iteratively (pgvector 0.8's ``iterative_scan``)
until k rows pass the filter; when the graph cannot supply k (a very selective filter), the same
query runs exactly over the rows the filter allows. Collections with few chunks in all are
searched exactly at once (``_few_rows``).
"""

import functools
import math
import time
from datetime import datetime, timezone

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from backend.rag.embeddings import DIMENSION, MODEL_NAME, from_bytes
from backend.rag.retrieval import Filter, Ranking, VectorIndex

from .. import vectors
from ..models import Collection
from . import sql
from .schema import VECTOR_COLUMN

BATCH = 2000
INSERT_BATCH = 500  # rows per INSERT: 16 parameters each


def literal(vector) -> str:
    """pgvector's text form, 7 significant digits (one format operation: 2.5 times as fast as a
    format per number, a query's vector in every search, every chunk's in ingestion)."""
    values = np.asarray(vector, dtype=np.float32).ravel().tolist()
    return "[" + ",".join(["%.7g"] * len(values)) % tuple(values) + "]"


def ef_search_for(rows: int) -> int:
    """pgvector's HNSW candidate list (``hnsw.ef_search``) for a graph of ``rows`` vectors.

    A graph's recall at a fixed list falls as it grows. Measured on corpus-shaped vectors
    (bench/README.md, "A search's fixed cost, cut where it was found"): a list of 40, pgvector's
    default, finds 99.4% of the exact top 10 at 100,000 rows but 87% at 1,000,000, where 100 found
    93.5-98% (three builds of the graph) and 150 97.4%. So 40 up to 100,000 rows, then growing
    with the logarithm of the size (the depth of the graph's search): 150 at 1,000,000, 260 at
    10,000,000. Each step of the list is CPU on the database for every search."""
    if rows <= 100_000:
        return 40
    return min(1000, round(40 + 110 * math.log10(rows / 100_000)))


_table_rows = {"rows": 0, "read_at": None}
ROWS_READ_EVERY = 60.0  # seconds


def _ef_search(cursor) -> int:
    """The list for the chunk table's size: PostgreSQL's live estimate of its rows (its statistics,
    no scan), read at most once a minute per process."""
    now = time.monotonic()
    if _table_rows["read_at"] is None or now - _table_rows["read_at"] > ROWS_READ_EVERY:
        chunk, _ = sql.tables()
        cursor.execute("SELECT greatest(coalesce(s.n_live_tup, 0), c.reltuples::bigint) FROM pg_class c "
                       "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = %s::regclass", [chunk])
        row = cursor.fetchone()
        _table_rows.update(rows=int(row[0]) if row else 0, read_at=now)
    return ef_search_for(_table_rows["rows"])


def _use_ef_search(cursor) -> None:
    """Sets the connection's ``hnsw.ef_search`` when it is not what this search needs (a fixed
    ``PGVECTOR_EF_SEARCH`` is set when the connection opens). Once per connection while the table
    keeps its size class; inside a transaction for that transaction only (a rollback would undo a
    session setting and leave this connection's note of it wrong)."""
    if settings.PGVECTOR_EF_SEARCH != "auto":
        return
    ef = _ef_search(cursor)
    raw = connection.connection
    if connection.in_atomic_block:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
    elif getattr(raw, "_hnsw_ef_search", None) != ef:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(ef)])
        raw._hnsw_ef_search = ef


@functools.lru_cache(maxsize=4096)
def _few_rows(collection_ids: tuple[int, ...], versions: tuple[int, ...] | None, limit: int) -> bool:
    """Do these collections hold at most ``limit`` chunks (PGVECTOR_EXACT_BELOW)? Counted once per
    index version of theirs (a change to a collection's chunks bumps it), reading at most
    ``limit + 1`` entries of the collection index.

    Such collections are searched exactly: their rows come by that index and are compared one by
    one. The HNSW graph is one for the whole instance; for a small collection in a large table its
    iterative scan visits up to hnsw.max_scan_tuples rows and still finds fewer than k of them,
    and the exact query runs anyway. Most users' knowledge bases are small."""
    chunk, _ = sql.tables()
    clause, params = sql.collections_clause(Filter(collection_ids=collection_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {chunk} c WHERE {clause} LIMIT %s) s", [*params, limit + 1])
        return cursor.fetchone()[0] <= limit


class PgVectors(VectorIndex):
    name = "pgvector"

    def add(self, collection_id: int, ids, matrix) -> None:
        chunk, _ = sql.tables()
        ids = [int(i) for i in ids]
        with connection.cursor() as cursor:
            for start in range(0, len(ids), BATCH):
                part = ids[start:start + BATCH]
                cursor.execute(
                    f"UPDATE {chunk} SET {VECTOR_COLUMN} = v.e::vector FROM "
                    f"(SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS e) AS v WHERE {chunk}.id = v.id",
                    [part, [literal(row) for row in matrix[start:start + BATCH]]])

    def insert_chunks(self, collection_id: int, chunks: list, matrix) -> list:
        """``chunks`` (unsaved) written with their vectors by INSERT ... RETURNING id, as
        ``bulk_create`` writes them plus the vector column; their ids are set. Each row is written
        once (an UPDATE per row after the insert wrote every row, and its text's index entries, twice)."""
        from ..models import Chunk

        fields = [f for f in Chunk._meta.concrete_fields if not f.primary_key]
        columns = ", ".join([connection.ops.quote_name(f.column) for f in fields] + [VECTOR_COLUMN])
        row = "(" + ", ".join(["%s"] * len(fields)) + ", %s::vector)"
        chunk, _ = sql.tables()
        with connection.cursor() as cursor:
            for start in range(0, len(chunks), INSERT_BATCH):
                part = chunks[start:start + INSERT_BATCH]
                params = []
                for c, vector in zip(part, matrix[start:start + INSERT_BATCH]):
                    params += [f.get_db_prep_save(getattr(c, f.attname), connection) for f in fields]
                    params.append(literal(vector))
                cursor.execute(f"INSERT INTO {chunk} ({columns}) VALUES {', '.join([row] * len(part))} RETURNING id",
                               params)
                for c, (pk,) in zip(part, cursor.fetchall()):
                    c.pk = pk
                    c._state.adding, c._state.db = False, connection.alias
        return chunks

    def delete(self, collection_id: int, ids) -> None:
        """Nothing to do: the vectors are columns of the deleted rows."""

    def _query(self, vector, k: int, where: Filter, exact: bool) -> Ranking:
        chunk, _ = sql.tables()
        clause, params = sql.where_clause(where)
        q = literal(vector)
        # ``+ 0`` hides the ordering from the HNSW index: the planner scans the filtered rows exactly.
        order = f"(c.{VECTOR_COLUMN} <#> %s::vector)" + (" + 0" if exact else "")
        with connection.cursor() as cursor:  # hnsw.iterative_scan: the connection's (settings.py)
            if not exact:
                _use_ef_search(cursor)
            cursor.execute(f"SELECT c.id, -(c.{VECTOR_COLUMN} <#> %s::vector) FROM {chunk} c "
                           f"{sql.document_join(where)} WHERE {clause} "
                           f"AND c.{VECTOR_COLUMN} IS NOT NULL ORDER BY {order} LIMIT %s", [q, *params, q, k])
            rows = cursor.fetchall()
        return sorted(((int(i), float(s)) for i, s in rows), key=lambda item: -item[1])

    def search(self, vector, k: int, where: Filter) -> Ranking:
        if not where.collection_ids:
            return []
        versions = where.versions if len(where.versions) == len(where.collection_ids) else None  # None: uncached
        few = (_few_rows if versions else _few_rows.__wrapped__)(
            where.collection_ids, versions, settings.PGVECTOR_EXACT_BELOW)
        if few:  # exactly, in one query
            return self._query(vector, k, where, exact=True)
        found = self._query(vector, k, where, exact=False)
        if len(found) < k:  # the graph ran out before k rows passed the filter
            found = self._query(vector, k, where, exact=True)
        return found

    def count(self, collection_id: int) -> int:
        chunk, _ = sql.tables()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {chunk} WHERE collection_id = %s AND {VECTOR_COLUMN} IS NOT NULL",
                           [collection_id])
            return cursor.fetchone()[0]

    def rebuild(self, collection_id: int) -> None:
        """Fill the column from the stored vectors where it is empty (e.g. after a move from FAISS)."""
        chunk, _ = sql.tables()
        while True:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id, vector FROM {chunk} WHERE collection_id = %s AND {VECTOR_COLUMN} IS NULL "
                               f"ORDER BY id LIMIT %s", [collection_id, BATCH])
                rows = cursor.fetchall()
            if not rows:
                return
            with transaction.atomic():
                self.add(collection_id, [i for i, _ in rows], np.vstack([from_bytes(bytes(v)) for _, v in rows]))

    def stats(self, collection: Collection) -> vectors.Stats:
        """Vectors held, and their bytes in the table (the HNSW index is one for all collections)."""
        chunk, _ = sql.tables()
        version = Collection.objects.values_list("index_version", flat=True).get(pk=collection.pk)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), count({VECTOR_COLUMN}), coalesce(sum(pg_column_size({VECTOR_COLUMN})), 0) "
                           f"FROM {chunk} WHERE collection_id = %s", [collection.pk])
            total, held, size = cursor.fetchone()
        return vectors.Stats(collection, held, DIMENSION, MODEL_NAME, int(size), datetime.now(timezone.utc), version,
                             held != total)
