"""The search engines, chosen by settings and the database: one ``Engine`` per process.

``VECTOR_BACKEND``: ``pgvector`` (vectors in PostgreSQL; an error at start-up when the database
lacks the extension), ``faiss`` (index files, a cache of the database), or ``auto`` (pgvector when
the database has it, else FAISS, saying why in the log). Keyword search always runs in the
database: FTS5 on SQLite, full-text search on PostgreSQL.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from backend.rag.retrieval import KeywordIndex, Retriever, VectorIndex

from . import schema

logger = logging.getLogger(__name__)

CHOICES = ("auto", "faiss", "pgvector")
INSTALL_HINT = ("Install the PostgreSQL extension `vector` (pgvector: the pgvector/pgvector Docker image, or "
                "apt install postgresql-<version>-pgvector), then run `manage.py migrate` and "
                "`manage.py move_vectors --to pgvector`; or set VECTOR_BACKEND=faiss.")


@dataclass
class Engine:
    vectors: VectorIndex
    keywords: KeywordIndex

    def stats(self, collection):
        return self.vectors.stats(collection)

    def create_chunks(self, collection_id: int, chunks: list, matrix) -> list:
        """Write ``chunks`` (unsaved ``Chunk`` rows) with their vectors, in the caller's transaction."""
        return self.vectors.insert_chunks(collection_id, chunks, matrix)


_engines: dict[tuple, Engine] = {}


def pgvector_ready() -> tuple[bool, str]:
    """(usable, why not) for the pgvector engine on the default database."""
    if connection.vendor != "postgresql":
        return False, f"the database is {connection.vendor}, not PostgreSQL"
    with connection.cursor() as cursor:
        if not schema.has_vector_extension(cursor):
            return False, "the PostgreSQL extension `vector` is not installed in this database"
        if not schema.has_vector_column(cursor):
            return False, "the chunk table has no vector column yet (run `manage.py migrate`)"
    return True, ""


def _resolve() -> Engine:
    from .keywords import Fts5Keywords, PgKeywords

    choice = settings.VECTOR_BACKEND
    if choice not in CHOICES:
        raise ImproperlyConfigured(f"VECTOR_BACKEND must be one of {', '.join(CHOICES)}, not {choice!r}.")
    keywords = PgKeywords() if connection.vendor == "postgresql" else Fts5Keywords()
    use_pgvector = False
    if choice != "faiss":
        ready, why = pgvector_ready()
        if choice == "pgvector" and not ready:
            raise ImproperlyConfigured(f"VECTOR_BACKEND=pgvector, but {why}. {INSTALL_HINT}")
        if choice == "auto" and not ready and connection.vendor == "postgresql":
            logger.warning("Vectors are searched in FAISS files: %s. %s", why, INSTALL_HINT)
        use_pgvector = ready
    if use_pgvector:
        from .pgvector import PgVectors

        return Engine(PgVectors(), keywords)
    from .faiss_engine import FaissVectors

    return Engine(FaissVectors(), keywords)


def engine() -> Engine:
    key = (settings.VECTOR_BACKEND, connection.vendor, connection.settings_dict.get("NAME"))
    if key not in _engines:
        _engines[key] = _resolve()
    return _engines[key]


def retriever() -> Retriever:
    from backend.rag.embeddings import get_embedder
    from backend.rag.pipeline import query_variants

    current = engine()
    return Retriever(current.vectors, current.keywords, lambda texts: get_embedder().embed_documents(texts),
                     query_variants)


def startup_check() -> Engine | None:
    """Resolve the engine now (web and worker start-up): VECTOR_BACKEND=pgvector on a database
    without the extension fails here, not at the first search. A database that cannot be reached
    yet is left to the first request (and the readiness probe) unless pgvector was asked for."""
    import threading

    outcome: list = []

    def run():  # on its own thread: start-up may import this inside an event loop (tests do)
        try:
            outcome.append(_check())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="search-engines-check")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _check() -> Engine | None:
    from django.db import DatabaseError, connections

    try:
        current = engine()
    except DatabaseError as exc:
        if settings.VECTOR_BACKEND == "pgvector":
            raise ImproperlyConfigured(f"VECTOR_BACKEND=pgvector, but the database cannot be reached: {exc}")
        logger.warning("search engines chosen at the first search: the database cannot be reached (%s)", exc)
        return None
    finally:
        connections.close_all()  # nothing opened here outlives start-up (or crosses a worker's fork)
    logger.info("search engines: vectors %s, keywords %s", current.vectors.name, current.keywords.name)
    return current
