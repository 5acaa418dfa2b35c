"""ASGI entry point: Django for HTTP, Channels for websockets, one ``/graphql/`` path for both."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

from backend.core.handler import get_asgi_application  # noqa: E402

# Django's ASGI handler, keeping the threads that run requests' sync code (backend/core/handler.py).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from backend.schema import schema  # noqa: E402
from backend.schema.views import GraphQLWebSocketConsumer  # noqa: E402

# Browsers attach cookies to websocket handshakes from any page, so the consumer accepts only
# same-origin pages and WEBSOCKET_ALLOWED_ORIGINS (clients that send no Origin are not browsers).
websocket_urlpatterns = [
    path("graphql/", GraphQLWebSocketConsumer.as_asgi(
        schema=schema, allowed_origins=settings.WEBSOCKET_ALLOWED_ORIGINS, keep_alive=True, keep_alive_interval=15)),
]

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
})

# The search engines, resolved now: VECTOR_BACKEND=pgvector without the extension stops here.
from backend.documents.engines import startup_check  # noqa: E402

startup_check()

# Ingestion survives its worker: documents left behind by a dead run are found and queued again
# (the embedded runner also resumes everything at start-up: this process was its only worker).
if settings.INGEST_RESUME_ON_START and not settings.CELERY_BROKER_URL:
    import threading

    from backend.documents.recovery import resume_unfinished

    threading.Thread(target=resume_unfinished, name="resume-ingestion", daemon=True).start()
if settings.WARM_QUERY_ENCODER:  # the first search does not wait for the model to load (/readyz: 503 meanwhile)
    from backend.rag.embeddings import warm_in_background

    warm_in_background()

from backend.documents.recovery import start_sweeper  # noqa: E402

start_sweeper()

# Answers left STREAMING by a stopped process become INTERRUPTED (backend/chats/recovery.py).
from backend.chats import recovery as answer_recovery  # noqa: E402

answer_recovery.start()
