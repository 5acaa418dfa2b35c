from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "backend.documents"
    label = "documents"

    def ready(self):
        from . import ingest, services  # noqa: F401  registers the ingest task and the export part
