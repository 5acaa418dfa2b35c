"""PostgreSQL: a trigram index for chat search (``chats(search:)``, ``content ILIKE '%…%'``).

Without it PostgreSQL reads every message of every user for a search (it expects a substring to be
rare, so it filters the whole table before narrowing to the user's chats): 0.4 s at 350,000
messages, growing with the instance. Only finished messages are indexed: an answer being written
is saved every half second, and those saves then touch no index of its text. Built CONCURRENTLY
(writes go on while it builds). Without the pg_trgm extension search still works, unindexed.
SQLite has no such index; its plan starts from the user's chats.
"""

import logging

from django.db import DatabaseError, migrations, transaction

INDEX = "chats_message_content_trgm"


def create_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            logging.getLogger(__name__).warning(
                "pg_trgm is not available (%s): chat search reads messages without an index.",
                str(exc).strip().splitlines()[0])
            return
        cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON chats_message "
                       "USING gin (upper(content) gin_trgm_ops) WHERE status <> 'STREAMING'")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [("chats", "0006_message_time_index")]

    operations = [migrations.RunPython(create_index, drop_index)]
