"""A search's hits loaded as chunks with their documents: one SQL query whose text and column
converters are made once per database, not compiled by the ORM for every search.

A search loads its k best chunks after ranking them, on the request's critical path. Built by the
ORM (``filter(pk__in=...).select_related("document")``), the query's compilation and the filter's
construction were more than half of that step (1.4 ms in-process for five chunks; 2-2.6 ms under
daphne). The rows are turned into models as the ORM turns them (``from_db``, the database's and the
fields' converters, the document cached on its chunk as ``select_related`` caches it), so a hit's
chunk and document are the same objects either way.
"""

import functools

from django.db import connection

from .engines import sql
from .models import Chunk, Document


@functools.lru_cache(maxsize=8)
def _plan(alias: str, vendor: str):
    """The SELECT list and, per column, its converters, for the connection ``alias``."""
    quote = connection.ops.quote_name
    chunk_fields, document_fields = list(Chunk._meta.concrete_fields), list(Document._meta.concrete_fields)
    columns = ([f"c.{quote(f.column)}" for f in chunk_fields] + [f"d.{quote(f.column)}" for f in document_fields])
    converters = []
    for position, (field, table) in enumerate(
            [(f, Chunk._meta.db_table) for f in chunk_fields] + [(f, Document._meta.db_table) for f in document_fields]):
        expression = field.get_col(table)
        found = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if found:
            converters.append((position, found, expression))
    return ", ".join(columns), [f.attname for f in chunk_fields], [f.attname for f in document_fields], converters


def load(ids, collection_ids) -> dict[int, Chunk]:
    """The chunks of ``ids`` that are in ``collection_ids`` and not superseded, each with its
    document, by id (ids that are gone are missing)."""
    ids = [int(i) for i in ids]
    if not ids or not collection_ids:
        return {}
    select, chunk_names, document_names, converters = _plan(connection.alias, connection.vendor)
    chunk, document = sql.tables()
    by_id, id_params = sql.in_clause("c.id", ids)
    in_collections, collection_params = sql.in_clause("c.collection_id", (int(c) for c in collection_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM {chunk} c INNER JOIN {document} d ON d.id = c.document_id "
                       f"WHERE {by_id} AND {in_collections} AND c.superseded = %s",
                       [*id_params, *collection_params, False])
        rows = cursor.fetchall()
    db, split = connection.alias, len(chunk_names)
    cache_document = Chunk._meta.get_field("document").set_cached_value
    found = {}
    for row in rows:
        row = list(row)
        for position, functions, expression in converters:
            value = row[position]
            for convert in functions:
                value = convert(value, expression, connection)
            row[position] = value
        chunk = Chunk.from_db(db, chunk_names, row[:split])
        cache_document(chunk, Document.from_db(db, document_names, row[split:]))
        found[chunk.pk] = chunk
    return found
