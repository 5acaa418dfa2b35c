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
TSV_COLUMN = "search_vector"
VECTOR_COLUMN = "embedding"
TEXT_CONFIG = "english"


def _sqlite(cursor) -> None:
    cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s", [f"{FTS_TABLE}_%"])
    triggers = {name for (name,) in cursor.fetchall()}
    cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [FTS_TABLE])
    if cursor.fetchone() and len(triggers) == 3:
        return
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(text, content='documents_chunk', "
                   "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')")
    cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_insert AFTER INSERT ON documents_chunk BEGIN "
                   f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END")
    cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_delete AFTER DELETE ON documents_chunk BEGIN "
                   f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END")
    cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_update AFTER UPDATE OF text ON documents_chunk BEGIN "
                   f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); "
                   f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END")
    cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")


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


def _postgresql(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE documents_chunk ADD COLUMN IF NOT EXISTS {TSV_COLUMN} tsvector "
                       f"GENERATED ALWAYS AS (to_tsvector('{TEXT_CONFIG}', text)) STORED")
        cursor.execute(f"CREATE INDEX IF NOT EXISTS documents_chunk_search_vector ON documents_chunk "
                       f"USING gin ({TSV_COLUMN})")
    add_vector_column(connection)


def ensure(connection) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            _sqlite(cursor)
    elif connection.vendor == "postgresql":
        _postgresql(connection)
