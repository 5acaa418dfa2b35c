"""Figures whose truth is in the database: documents by status and failure code, and the
ingestion queue, read at scrape time (registered with the metrics registry when the app starts)."""

from prometheus_client.core import GaugeMetricFamily


class DocumentFigures:
    """Documents by status and failure code, and the ingestion queue, from the database."""

    def describe(self):  # what it exports, without reading the database (registration, start-up)
        return [GaugeMetricFamily("chat_documents", "Documents by status and failure code", labels=["status", "code"]),
                GaugeMetricFamily("chat_ingestion_queue", "Documents waiting for or in ingestion")]

    def collect(self):
        from django.db.models import Count

        from backend.documents.models import Document

        rows = Document.objects.values_list("status", "error_code").annotate(n=Count("id"))
        documents = GaugeMetricFamily("chat_documents", "Documents by status and failure code",
                                      labels=["status", "code"])
        queue = 0
        for status, code, count in rows:
            documents.add_metric([status, code or ""], count)
            if status in (Document.Status.PENDING, Document.Status.PROCESSING):
                queue += count
        yield documents
        yield GaugeMetricFamily("chat_ingestion_queue", "Documents waiting for or in ingestion", value=queue)


