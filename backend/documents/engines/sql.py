"""A retrieval ``Filter`` as SQL over ``documents_chunk c JOIN documents_document d``.

The same clause serves every engine that searches in the database (pgvector, PostgreSQL full-text
search, SQLite FTS5) and the FAISS engine's list of allowed chunks, so "what a search may see" is
written once. Table and column names come from the models.
"""

from django.db import connection

from backend.core.jsonsql import contains_all_sql

from backend.rag.retrieval import Filter

from ..models import Chunk, Document


def tables() -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(Chunk._meta.db_table), quote(Document._meta.db_table)


def in_clause(column: str, values) -> tuple[str, list]:
    values = list(values)
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values


def collections_clause(where: Filter, alias: str = "c") -> tuple[str, list]:
    if not where.collection_ids:
        return "1 = 0", []
    return in_clause(f"{alias}.collection_id", where.collection_ids)


def documents_clause(where: Filter) -> tuple[str, list]:
    """Conditions on ``d`` (the chunk's document): every filter that is set. Not its status: the
    chunks not superseded are what search sees, the last version that became READY (while a new
    version is processed, or after it failed, the one before it still answers)."""
    ops = connection.ops
    clauses, params = ["1 = 1"], []
    if where.file_types:
        clause, values = in_clause("d.file_type", where.file_types)
        clauses.append(clause)
        params += values
    if where.document_ids:
        clause, values = in_clause("d.id", where.document_ids)
        clauses.append(clause)
        params += values
    if where.created_after:
        clauses.append("d.created_at >= %s")
        params.append(ops.adapt_datetimefield_value(where.created_after))
    if where.created_before:
        clauses.append("d.created_at < %s")
        params.append(ops.adapt_datetimefield_value(where.created_before))
    if where.tags:
        clause, values = contains_all_sql("d.tags", where.tags)
        clauses.append(clause)
        params += values
    return " AND ".join(clauses), params


def filters_documents(where: Filter) -> bool:
    """Does ``where`` test the chunks' documents (else the chunks' own columns answer it)?"""
    return bool(where.file_types or where.document_ids or where.created_after or where.created_before or where.tags)


def document_join(where: Filter, cross: bool = False) -> str:
    """The join to ``d`` that ``where_clause`` needs after ``chunk c``, or nothing: a search without
    document filters reads no document row (an index lookup per candidate chunk otherwise)."""
    if not filters_documents(where):
        return ""
    _, document = tables()
    return f"{'CROSS ' if cross else ''}JOIN {document} d ON d.id = c.document_id"


def where_clause(where: Filter) -> tuple[str, list]:
    """Everything ``where`` asks, for ``FROM chunk c`` and ``document_join(where)``."""
    first, params = collections_clause(where)
    second, more = documents_clause(where)
    # Chunks of a document's earlier versions are kept (old answers cite them), never searched.
    return f"{first} AND c.superseded = %s AND {second}", params + [False] + more


def allowed_chunks(where: Filter) -> dict[int, list[int]]:
    """Chunk ids ``where`` allows, by collection (for engines that filter outside the database).
    The documents are chosen first (tags and dates tested once per document, not per chunk)."""
    chunk, document = tables()
    collections, params = collections_clause(where, alias="d")
    documents, more = documents_clause(where)
    found: dict[int, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT c.collection_id, c.id FROM {chunk} c WHERE c.superseded = %s AND c.document_id IN "
                       f"(SELECT d.id FROM {document} d WHERE {collections} AND {documents})", [False] + params + more)
        for collection_id, chunk_id in cursor.fetchall():
            found.setdefault(collection_id, []).append(chunk_id)
    return found
