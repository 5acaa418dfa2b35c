"""An index added to a table in use: on PostgreSQL built ``CONCURRENTLY``, elsewhere as usual.

A plain ``CREATE INDEX`` holds a lock that blocks every write to the table while it builds: on an
instance with millions of messages, an upgrade's ``migrate`` would stop every chat for minutes.
``CONCURRENTLY`` lets writes go on (it reads the table twice and waits for older transactions).
It cannot run in a transaction, so a migration using it says ``atomic = False``. A build that was
interrupted (a killed ``migrate``) leaves an INVALID index of that name, which PostgreSQL keeps
maintaining but never reads; it is dropped and built again here. SQLite builds the index in the
migration as usual (its one writer is the migration anyway).
"""

from django.db import NotSupportedError
from django.db.migrations.operations import AddIndex


class AddIndexOnline(AddIndex):
    def describe(self):
        return super().describe() + " (concurrently on PostgreSQL)"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        _outside_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if _invalid(schema_editor, self.index.name):
                schema_editor.remove_index(model, self.index, concurrently=True)
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        _outside_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


def _outside_transaction(schema_editor) -> None:
    if schema_editor.atomic_migration or schema_editor.connection.in_atomic_block:
        raise NotSupportedError("AddIndexOnline builds CONCURRENTLY: its migration needs atomic = False.")


def _invalid(schema_editor, name: str) -> bool:
    """Whether an interrupted concurrent build left an index of this name INVALID."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = %s AND pg_table_is_visible(c.oid)", [name])
        row = cursor.fetchone()
    return bool(row and row[0])
