"""What the search engines add to the database beside the models' tables.

SQLite: an FTS5 table over the chunks' text (external content, kept in step by triggers).
PostgreSQL: a generated ``tsvector`` column with a GIN index, and, when the ``vector`` extension
can be had, a ``vector`` column with an HNSW index. Idempotent: the migration runs it, and so does
every ``migrate`` afterwards (SQLite rebuilds a table that a later migration alters, dropping its
triggers; this puts them back and re-reads the text).
"""

import logging

from backend.rag.embeddings import DIMENSION

logger = logging.getLogger(__name__)

FTS_TABLE = "documents_chunk_fts"
FTS_VOCAB = "documents_chunk_fts_vocab"  # each stemmed term and how many chunks hold it
TSV_COLUMN = "search_vector"
VECTOR_COLUMN = "embedding"
TEXT_CONFIG = "english"


def _sqlite(cursor) -> None:
    cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s", [f"{FTS_TABLE}_%"])
    triggers = dict(cursor.fetchall())
    # The vocabulary table reads the FTS table when queried, so it may be declared before it.
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_VOCAB} USING fts5vocab({FTS_TABLE}, 'row')")
    cursor.execute("SELECT name FROM pragma_table_info('documents_chunk')")
    versions = "superseded" in {name for (name,) in cursor.fetchall()}  # from migration 0006 on
    cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [FTS_TABLE])
    if cursor.fetchone() and len(triggers) == 3 and all(("superseded" in (sql or "")) == versions
                                                        for sql in triggers.values()):
        return
    for name in triggers:  # older triggers indexed earlier versions' chunks too
        cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(text, content='documents_chunk', "
                   "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')")
    # Only the chunks search sees are indexed: a superseded version's chunks would count in every
    # term's document frequency and in the corpus's size and mean length (BM25's statistics).
    old, new = ("old.superseded = 0", "new.superseded = 0") if versions else ("1", "1")
    cursor.execute(f"CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON documents_chunk WHEN {new} "
                   f"BEGIN INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END")
    cursor.execute(f"CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON documents_chunk WHEN {old} "
                   f"BEGIN INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END")
    cursor.execute(f"CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE OF text{', superseded' if versions else ''} "
                   f"ON documents_chunk BEGIN "
                   f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) SELECT 'delete', old.id, old.text WHERE {old}; "
                   f"INSERT INTO {FTS_TABLE}(rowid, text) SELECT new.id, new.text WHERE {new}; END")
    cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # every row of the table,
    if versions:  # then the superseded ones out again
        cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) SELECT 'delete', id, text "
                       "FROM documents_chunk WHERE superseded = 1")


def has_vector_extension(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    return cursor.fetchone() is not None


def has_vector_column(cursor) -> bool:
    cursor.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'documents_chunk' "
                   "AND column_name = %s AND table_schema = current_schema()", [VECTOR_COLUMN])
    return cursor.fetchone() is not None


def add_vector_column(connection) -> bool:
    """The pgvector column and its HNSW index; False (and why, in the log) without the extension."""
    from django.db import DatabaseError, transaction

    with connection.cursor() as cursor:
        if not has_vector_extension(cursor):
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except DatabaseError as exc:
                logger.warning("pgvector is not available (%s): vectors stay in FAISS files. Install the "
                               "extension (e.g. the pgvector/pgvector image or apt install postgresql-NN-pgvector) "
                               "and run `manage.py move_vectors --to pgvector`.", str(exc).strip().splitlines()[0])
                return False
        cursor.execute(f"ALTER TABLE documents_chunk ADD COLUMN IF NOT EXISTS {VECTOR_COLUMN} vector({DIMENSION})")
        cursor.execute(f"CREATE INDEX IF NOT EXISTS documents_chunk_embedding_hnsw ON documents_chunk "
                       f"USING hnsw ({VECTOR_COLUMN} vector_ip_ops) WITH (m = 16, ef_construction = 64)")
    return True


# How many chunks of each collection hold each lexeme, kept by statement triggers in the
# transactions that write chunks: keyword search reads its document frequencies here instead of
# counting postings (the count of a common word is most of the work of a search). Rows are
# upserted in (collection, lexeme) order, so concurrent writers lock them in one order.
STATS_TABLE = "documents_keyword_stats"
def _stats_function(versions: bool) -> str:
    """The trigger function; with ``versions`` (migration 0006 on), superseded chunks count in no
    frequency: they are never searched."""
    live_o, live_w = ("NOT o.superseded AND ", "NOT w.superseded AND ") if versions else ("", "")
    moved = " OR o.superseded <> w.superseded" if versions else ""
    live = "WHERE NOT superseded " if versions else ""
    return f"""
CREATE OR REPLACE FUNCTION {STATS_TABLE}_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    INSERT INTO {STATS_TABLE} AS s (collection_id, lexeme, df)
      SELECT collection_id, lexeme, sum(n) FROM (
        SELECT o.collection_id, l.lexeme, -1 AS n FROM old_rows o JOIN new_rows w ON w.id = o.id,
               unnest(tsvector_to_array(o.{TSV_COLUMN})) AS l(lexeme)
         WHERE {live_o}(o.collection_id <> w.collection_id OR o.{TSV_COLUMN} <> w.{TSV_COLUMN}{moved})
        UNION ALL
        SELECT w.collection_id, l.lexeme, 1 FROM old_rows o JOIN new_rows w ON w.id = o.id,
               unnest(tsvector_to_array(w.{TSV_COLUMN})) AS l(lexeme)
         WHERE {live_w}(o.collection_id <> w.collection_id OR o.{TSV_COLUMN} <> w.{TSV_COLUMN}{moved})) AS d
      GROUP BY collection_id, lexeme HAVING sum(n) <> 0 ORDER BY collection_id, lexeme
    ON CONFLICT (collection_id, lexeme) DO UPDATE SET df = s.df + excluded.df;
    DELETE FROM {STATS_TABLE} s USING (
        SELECT DISTINCT o.collection_id, l.lexeme FROM old_rows o, unnest(tsvector_to_array(o.{TSV_COLUMN})) AS l(lexeme)
      ) AS gone WHERE s.collection_id = gone.collection_id AND s.lexeme = gone.lexeme AND s.df <= 0;
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO {STATS_TABLE} AS s (collection_id, lexeme, df)
      SELECT collection_id, lexeme, count(*) FROM new_rows, unnest(tsvector_to_array({TSV_COLUMN})) AS l(lexeme)
      {live}GROUP BY collection_id, lexeme ORDER BY collection_id, lexeme
    ON CONFLICT (collection_id, lexeme) DO UPDATE SET df = s.df + excluded.df;
  ELSE
    INSERT INTO {STATS_TABLE} AS s (collection_id, lexeme, df)
      SELECT collection_id, lexeme, -count(*) FROM old_rows, unnest(tsvector_to_array({TSV_COLUMN})) AS l(lexeme)
      {live}GROUP BY collection_id, lexeme ORDER BY collection_id, lexeme
    ON CONFLICT (collection_id, lexeme) DO UPDATE SET df = s.df + excluded.df;
    -- A count that reached 0 is a row no search needs: a deleted collection (an expired guest's)
    -- or a word no chunk holds any more would otherwise leave its rows for good.
    DELETE FROM {STATS_TABLE} s USING (
        SELECT DISTINCT collection_id, lexeme FROM old_rows, unnest(tsvector_to_array({TSV_COLUMN})) AS l(lexeme)
      ) AS gone WHERE s.collection_id = gone.collection_id AND s.lexeme = gone.lexeme AND s.df <= 0;
  END IF;
  RETURN NULL;
END $$"""


def _keyword_stats(cursor) -> None:
    cursor.execute("SELECT to_regclass(%s)", [STATS_TABLE])
    exists = cursor.fetchone()[0] is not None
    cursor.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'documents_chunk' "
                   "AND column_name = 'superseded' AND table_schema = current_schema()")
    versions = cursor.fetchone() is not None
    cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [f"{STATS_TABLE}_change"])
    function = cursor.fetchone()
    # Counted by a function that knew no versions: earlier versions' chunks are in the counts.
    stale = exists and versions and (function is None or "superseded" not in function[0])
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {STATS_TABLE} (collection_id bigint NOT NULL, lexeme text NOT NULL, "
                   "df bigint NOT NULL, PRIMARY KEY (collection_id, lexeme))")
    cursor.execute(_stats_function(versions))
    for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("DELETE", "OLD TABLE AS old_rows"),
                          ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
        name = f"{STATS_TABLE}_{event.lower()}"
        cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON documents_chunk")
        cursor.execute(f"CREATE TRIGGER {name} AFTER {event} ON documents_chunk REFERENCING {tables} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {STATS_TABLE}_change()")
    if stale:
        cursor.execute(f"DELETE FROM {STATS_TABLE}")
    elif exists and "df <= 0" not in (function[0] if function else ""):  # counts left at 0 by the older function
        cursor.execute(f"DELETE FROM {STATS_TABLE} WHERE df <= 0")
    if not exists or stale:  # chunks written before the table (or counted by the older function): once
        cursor.execute(f"INSERT INTO {STATS_TABLE} (collection_id, lexeme, df) SELECT collection_id, lexeme, count(*) "
                       f"FROM documents_chunk, unnest(tsvector_to_array({TSV_COLUMN})) AS l(lexeme) "
                       f"{'WHERE NOT superseded ' if versions else ''}GROUP BY collection_id, lexeme")


def _postgresql(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE documents_chunk ADD COLUMN IF NOT EXISTS {TSV_COLUMN} tsvector "
                       f"GENERATED ALWAYS AS (to_tsvector('{TEXT_CONFIG}', text)) STORED")
        cursor.execute(f"CREATE INDEX IF NOT EXISTS documents_chunk_search_vector ON documents_chunk "
                       f"USING gin ({TSV_COLUMN})")
        _keyword_stats(cursor)
    add_vector_column(connection)


def ensure(connection) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            _sqlite(cursor)
    elif connection.vendor == "postgresql":
        _postgresql(connection)
