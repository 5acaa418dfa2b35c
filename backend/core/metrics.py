"""Prometheus metrics: what an operator of this service watches, at ``/metrics``.

Counters and histograms live in each web process (scrape every instance, as for any container);
the figures whose truth is in the database — documents by status and failure code, the ingestion
queue — are read from it at scrape time, so they hold whichever process or worker changed them.
In production the endpoint answers only with ``Authorization: Bearer <METRICS_TOKEN>`` (404 without
a token configured); outside production it is open.
"""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

GRAPHQL_OPERATIONS = Counter("chat_graphql_operations_total", "GraphQL operations by name, type and outcome "
                             "(ok, or the first error code)", ["operation", "type", "outcome"], registry=REGISTRY)
HTTP_RESPONSES = Counter("chat_http_responses_total", "HTTP responses by status class", ["status"], registry=REGISTRY)
WEBSOCKETS = Gauge("chat_websockets_active", "Open websockets", registry=REGISTRY)
STREAMS = Gauge("chat_streams_active", "Answers being streamed", registry=REGISTRY)
TOKENS = Counter("chat_tokens_streamed_total", "Answer deltas streamed to clients", ["generator"], registry=REGISTRY)
FIRST_TOKEN = Histogram("chat_first_token_seconds", "Time from a question to its answer's first token",
                        ["generator"], buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32), registry=REGISTRY)
TURNS = Counter("chat_turns_total", "Finished answers by status and error code", ["status", "code"],
                registry=REGISTRY)
SEARCH = Histogram("chat_search_seconds", "searchDocuments and RAG retrieval latency", ["strategy"],
                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=REGISTRY)


def register_once(collector) -> None:
    """Add an app's collector (apps register theirs as they start; core imports no app)."""
    try:
        REGISTRY.register(collector)
    except ValueError:  # its series are registered already (an app made ready twice)
        pass


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return not settings.PRODUCTION
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def metrics_view(request):
    if not _allowed(request):
        raise Http404()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
