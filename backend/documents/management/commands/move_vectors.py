"""Move the chunk vectors to another engine: ``manage.py move_vectors --to pgvector|faiss``.

The database's stored vectors are the source; the target is filled from them, collection by
collection (safe to run again, and while the server runs). To pgvector, the extension and the
column are created first when missing; to FAISS, every collection's file is rebuilt. Then set
VECTOR_BACKEND to the target (``auto`` picks pgvector whenever the database has it).
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from backend.documents import vectors
from backend.documents.engines import INSTALL_HINT, pgvector_ready, schema
from backend.documents.models import Collection


class Command(BaseCommand):
    help = "Fill the chosen vector engine (pgvector or faiss) from the vectors stored in the database."

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, choices=["pgvector", "faiss"])

    def handle(self, *args, to, **options):
        ids = list(Collection.objects.order_by("pk").values_list("pk", flat=True))
        if to == "pgvector":
            if connection.vendor != "postgresql":
                raise CommandError("pgvector needs a PostgreSQL database (DATABASE_URL=postgres://...).")
            if not schema.add_vector_column(connection):
                raise CommandError(f"The PostgreSQL extension `vector` cannot be created. {INSTALL_HINT}")
            ready, why = pgvector_ready()
            if not ready:
                raise CommandError(why)
            from backend.documents.engines.pgvector import PgVectors

            target = PgVectors()
            for pk in ids:
                target.rebuild(pk)
            self.stdout.write(f"{len(ids)} collections: vectors in pgvector. Set VECTOR_BACKEND=pgvector (or auto).")
        else:
            for pk in ids:
                vectors.rebuild(pk)
            self.stdout.write(f"{len(ids)} collections: FAISS files rebuilt in {vectors.store().directory}. "
                              "Set VECTOR_BACKEND=faiss.")
