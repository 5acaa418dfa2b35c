"""Migrations: they match the models, and an index added to a table in use does not stop its writes.

On PostgreSQL a plain CREATE INDEX blocks every write to the table while it builds (an upgrade of
an instance with millions of messages would stop every chat meanwhile); the project's indexes on
existing tables are built CONCURRENTLY (``backend/core/online_index.py``), and a build a killed
``migrate`` left INVALID is built again by the next one.
"""

import io

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddIndex, CreateModel

from backend.core.online_index import AddIndexOnline

PROJECT_APPS = {config.label for config in apps.get_app_configs() if config.name.startswith("backend.")}


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on a change
    assert "No changes detected" in out.getvalue()


def test_indexes_on_existing_tables_are_built_online():
    """A new index on a table an earlier migration made must be AddIndexOnline, in a migration
    that runs outside a transaction (what CONCURRENTLY needs)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    offline = []
    for (label, name), migration in loader.disk_migrations.items():
        if label not in PROJECT_APPS:
            continue
        created = {op.name_lower for op in migration.operations if isinstance(op, CreateModel)}
        for op in migration.operations:
            if isinstance(op, AddIndex) and op.model_name_lower not in created:
                if type(op) is not AddIndexOnline or migration.atomic:
                    offline.append(f"{label}.{name}: {op.index.name}")
    assert offline == []


@pytest.mark.django_db(transaction=True)
def test_migrating_builds_the_index_again_after_an_interrupted_build():
    def index():
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("SELECT sql, 1 FROM sqlite_master WHERE type = 'index' AND name = %s",
                               ["message_conversation_order"])
            else:
                cursor.execute("SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                               "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
                               ["message_conversation_order"])
            return cursor.fetchone()

    quiet = {"verbosity": 0, "stdout": io.StringIO()}
    call_command("migrate", "chats", "0007", **quiet)
    assert index() is None
    if connection.vendor == "postgresql":  # what a killed CREATE INDEX CONCURRENTLY leaves
        with connection.cursor() as cursor:
            cursor.execute("CREATE INDEX message_conversation_order ON chats_message (id)")
            cursor.execute("UPDATE pg_index SET indisvalid = false "
                           "WHERE indexrelid = 'message_conversation_order'::regclass")
        assert index()[1] is False
    call_command("migrate", "chats", **quiet)
    definition, valid = index()
    assert valid
    assert "COALESCE" in definition.upper() and "reply_to_id" in definition
    if connection.vendor == "postgresql":
        sql = io.StringIO()
        call_command("sqlmigrate", "chats", "0008", stdout=sql)
        assert "CREATE INDEX CONCURRENTLY" in sql.getvalue()
