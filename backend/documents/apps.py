from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "backend.documents"
    label = "documents"

    def ready(self):
        from django.conf import settings
        from django.db.models.signals import post_migrate

        post_migrate.connect(_search_schema, sender=self)

        from backend.rag import embeddings

        from backend.core import metrics as core_metrics

        from . import ingest, portability  # noqa: F401  register the ingestion tasks and the export part
        from .metrics import DocumentFigures

        core_metrics.register_once(DocumentFigures())

        embeddings.configure(backend=settings.EMBEDDING_BACKEND, query_backend=settings.QUERY_EMBEDDING_BACKEND,
                             batch_size=settings.EMBEDDING_BATCH_SIZE, threads=settings.EMBEDDING_THREADS or None,
                             cache_dir=settings.MODEL_CACHE_DIR or None,
                             query_threads=settings.QUERY_EMBEDDING_THREADS or None)


def _search_schema(using="default", **kwargs):
    """Every migrate puts back what the search engines add beside the tables (idempotent)."""
    from django.db import connections

    from .engines import schema

    schema.ensure(connections[using])
