"""The periodic sweeps (answers left STREAMING, documents whose worker is gone) run in every web
process every 30 s: they must read an index, not every message and document ever written. Checked
on the engine's own plan (PostgreSQL: with sequential scans priced out, so a usable index shows
even on the test's small tables)."""

import pytest
from django.db import connection

from backend.chats import recovery as answers
from backend.documents import recovery as documents
from backend.documents.models import Document

pytestmark = pytest.mark.django_db


def plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return " ".join(row[-1] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return " ".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("sweep, index", [
    (lambda: answers.orphans(), "message_streaming"),
    (lambda: Document.objects.filter(documents._lost()), "document_status"),
], ids=["answers", "documents"])
def test_the_sweeps_read_an_index(sweep, index):
    found = plan(sweep())
    assert index in found, found
    assert "SCAN chats_message" not in found and "SCAN documents_document" not in found
