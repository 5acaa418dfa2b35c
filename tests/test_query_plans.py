"""Queries that would otherwise read a whole table, checked on the engine's own plan (PostgreSQL:
with sequential scans priced out, so a usable index shows even on the test's small tables).

- The periodic sweeps (answers left STREAMING, documents whose worker is gone, imports that stopped
  midway) run in every web process every 30 s: they read an index, not every row ever written.
- Chat search on PostgreSQL reads its trigram index, not every user's messages.
"""

import pytest
from django.db import connection

from backend.chats import imports as chat_imports
from backend.chats import recovery as answers
from backend.chats.conversations import list_chats
from backend.chats.models import Chat, Message
from backend.documents import recovery as documents
from backend.documents import transfer
from backend.documents.models import Document

pytestmark = pytest.mark.django_db


def plan(queryset) -> str:
    return plan_sql(*queryset.query.sql_with_params())


def plan_sql(sql, params) -> str:
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
    (lambda: chat_imports.abandoned(), "chat_importing"),
    (lambda: transfer.abandoned(), "collection_importing"),
], ids=["answers", "documents", "chat imports", "collection imports"])
def test_the_sweeps_read_an_index(sweep, index):
    found = plan(sweep())
    assert index in found, found
    assert not any(f"SCAN {table}" in found for table in (
        "chats_message", "documents_document", "chats_chat", "documents_collection")), found


def test_chat_search_does_not_read_every_message(alice, bob):
    """A user with many messages beside another one's: the search neither scans the table
    (PostgreSQL: it reads the trigram index) nor every message of the others (SQLite)."""
    for user in (alice.user, bob.user):
        for c in range(30):
            chat = Chat.objects.create(owner=user, title=f"chat {c}", model="gpt-4")
            Message.objects.bulk_create([Message(chat=chat, role="user", content=f"about trains {i} " * 8)
                                         for i in range(100)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    sql, params = list_chats(alice.user, search="photosynthesis").query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            found = " ".join(row[-1] for row in cursor.fetchall())
            assert "SCAN chats_message" not in found, found
        else:  # at this size reading the table is cheaper; at 350,000 messages PostgreSQL picks
            # the index by itself (bench/queries_at_scale.py). The rows just written wait in the
            # index's pending list (priced high) until a vacuum or that list fills: flushed here.
            cursor.execute("SELECT gin_clean_pending_list('chats_message_content_trgm')")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            found = " ".join(row[0] for row in cursor.fetchall())
            assert "chats_message_content_trgm" in found, found


def test_a_page_of_a_long_chat_reads_its_messages_in_order(alice):
    """A chat's messages in conversation order, a page at a time: read in index order, not sorted
    whole for every page (12 ms → 0.1 ms for a page of a 20,000-message chat on SQLite)."""
    chat = Chat.objects.create(owner=alice.user, title="long", model="gpt-4")
    Message.objects.bulk_create([Message(chat=chat, role="user", content=f"m {i}") for i in range(500)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    found = plan(Message.in_order(chat.messages.all())[:51])
    assert "message_conversation_order" in found, found
    assert "TEMP B-TREE" not in found and "Sort" not in found, found


@pytest.mark.parametrize("before", [False, True], ids=["last turns", "turns before a question"])
def test_a_turns_history_reads_the_conversation_index_backwards(alice, before):
    """A turn's prompt history (``turn._history``, its SQL written out): a long chat's newest turns
    straight from the index in conversation order, no sort of the chat's messages."""
    from backend.chats.turn import _history_sql

    chat = Chat.objects.create(owner=alice.user, title="long", model="gpt-4")
    Message.objects.bulk_create([Message(chat=chat, role="user", content=f"m {i}") for i in range(500)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    last = chat.messages.order_by("-id").values_list("id", flat=True)[0]
    params = [chat.pk, Message.Status.COMPLETE, Message.Role.SYSTEM, False, *([last] if before else []), 20]
    found = plan_sql(_history_sql(before), params)
    assert "message_conversation_order" in found, found
    assert "TEMP B-TREE" not in found and "Sort" not in found, found
